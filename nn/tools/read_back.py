"""`rlgen-eval`, `rlgen-watch`, `rlgen-generate`: key=value tools that read a run dir back.

The run's checkpoint names its trainer module (e.g. `rl.reinforce`); these tools
dispatch to that module's `evaluate`, `watch` and `generate` (the contract in
nn/contracts.py), so this file knows no experiment.
"""

import sys

from conf.compose import compose
from envs.gymnasium_env import allow_module_of
from nn.checkpoint import checkpoint_path, load_checkpoint
from nn.config import explain_config_error, import_trainer, parse_key_values
from nn.contracts import READ_BACK
from nn.errors import UserError
from nn.export import read_export
from nn.tools.checks import fail


def tool_help(command: str, values: dict[str, str]) -> str:
    """A key=value tool's help: the keys it takes for the given run's trainer (or the
    given experiment's, or the default experiment's), with defaults and descriptions."""
    from nn.config import describe_keys

    if "run" in values:
        payload = load_checkpoint(checkpoint_path(values["run"], values.get("checkpoint", "best")),
                                  mmap=True)
        trainer_name, about = payload.get("trainer", ""), f"the run {values['run']}"
    else:
        experiment = values.get("experiment", "cartpole_demo")
        try:
            trainer_name = compose([f"experiment={experiment}"]).trainer
        except Exception as err:
            raise UserError(explain_config_error(err)) from err
        about = f"runs of experiment {experiment}"
    trainer = import_trainer(trainer_name)
    contract, function, schema = READ_BACK[command]
    usage = f"usage: {command} run=RUN_DIR [key=value ...]"
    if not isinstance(trainer, contract):
        body = f"{command} does not apply to {about} (trainer {trainer_name})"
    else:
        body = (f"keys for {about} (trainer {trainer_name}):\n"
                f"{describe_keys(getattr(trainer, schema))}")
    by_hand = ("\nplay by hand instead: rlgen-watch env=snake (or env=cartpole, env=gymnasium "
               "env.id=ID)" if function == "watch" else "")
    return (f"{usage}\n\n{body}\n\nthe keys for another run or experiment: {command} "
            f"run=RUN_DIR --help, or {command} experiment=NAME --help{by_hand}")


def run_tool(command: str, argv: list[str] | None = None):
    """Shared body of eval/watch/generate: load the run's checkpoint, dispatch to its
    trainer module, parse the remaining key=value args against that module's schema."""
    argv = sys.argv[1:] if argv is None else argv
    contract, function, schema = READ_BACK[command]
    values = dict(a.split("=", 1) for a in argv if "=" in a)
    try:
        if any(a in ("-h", "--help") for a in argv):
            print(tool_help(command, values))
            return None
        if function == "watch" and "run" not in values and "env" in values:
            from nn.tools.by_hand import play_env_by_hand

            play_env_by_hand(argv)
            return None
        if "run" not in values:
            raise UserError("pass run=RUN_DIR, a run dir made by rlgen-train (see runs/)")
        payload = read_export(values["run"])
        if (payload is not None) != (values.get("backend") == "onnx"):
            raise UserError("backend=onnx goes with run=EXPORT_DIR, a folder rlgen-export made "
                            "(e.g. RUN_DIR/export-best-none), and an export only with it")
        if payload is None:
            payload = load_checkpoint(checkpoint_path(values["run"],
                                                      values.get("checkpoint", "best")))
        trainer = import_trainer(payload.get("trainer", ""))
        if not isinstance(trainer, contract):
            raise UserError(f"{command} does not apply to experiment "
                            f"{payload.get('experiment')!r}")
        args = parse_key_values(getattr(trainer, schema), argv)
        if "export" in payload:  # the checkpoint the export was made from, not a default
            args.checkpoint = payload["checkpoint"]
        if getattr(args, "import_env_module", False):
            env_cfg = (payload.get("config") or {}).get("env") or {}
            allow_module_of(str(env_cfg.get("id", "")))
        return getattr(trainer, function)(payload, args)
    except UserError as err:
        fail(command, str(err))


def eval_main() -> None:
    run_tool("rlgen-eval")


def watch_main() -> None:
    run_tool("rlgen-watch")


def generate_main() -> None:
    run_tool("rlgen-generate")
