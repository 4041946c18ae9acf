"""Console entry points: `rlgen-train` (a Hydra app) and `rlgen-eval`, `rlgen-watch`,
`rlgen-generate` (key=value tools that read a run dir back).

The experiment's config names its trainer module (e.g. `rl.reinforce`); the tools
dispatch to that module's `train`, `evaluate`, `watch` and `generate`, so this file
knows no experiment. Every user-fixable problem ends as one line on stderr, exit 2.
"""

import os
import sys
import warnings
from pathlib import Path

import yaml
from omegaconf import OmegaConf, open_dict

from conf.compose import CONF_DIR, compose, register_resolvers
from conf.schemas import check_ranges
from envs.gymnasium_env import allow_module_of
from nn.checkpoint import checkpoint_path, load_checkpoint, resume_payload
from nn.config import explain_config_error, import_trainer, instantiate, parse_key_values
from nn.errors import UserError
from nn.preemption import pass_on
from nn.run import FINISHED, STOPPED, recorded, run_status
from nn.runs import optimized_value

# Hydra flags that take the next word as their value
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp",
                          "--config-name", "-cn", "--config-dir", "-cd",
                          "--experimental-rerun", "--shell-completion", "-sc"}
HYDRA_INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
# Our launcher presets (conf/hydra/launcher/) share their names with the plugin's schemas
# on purpose, so they are checked against them; Hydra warns about that on every run.
warnings.filterwarnings("ignore", message="(?s).*validated against ConfigStore schema")
HYDRA_NO_VALIDATE = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc"}


def fail(command: str, message: str) -> None:
    print(f"{command}: error: {message}", file=sys.stderr)
    sys.exit(2)


def split_hydra_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's own flags (kept in order) from config overrides."""
    flags, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            flags.append(arg)
            takes_value = arg in HYDRA_FLAGS_WITH_VALUE or (
                arg in ("--info", "-i") and i + 1 < len(argv) and argv[i + 1] in HYDRA_INFO_VALUES)
            if takes_value and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def expand_resume(overrides: list[str]) -> list[str]:
    """`resume=RUN_DIR` replays that run's own overrides first, so it continues the same
    config; overrides given now come after them and win (e.g. more iterations)."""
    resume = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if not resume or not resume[-1] or resume[-1] == "null":
        return overrides
    run_dir = Path(resume[-1])
    if not run_dir.is_dir():
        raise UserError(f"resume={run_dir}: no such run dir")
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise UserError(f"resume={run_dir}: not an rlgen run dir (no .hydra/overrides.yaml)")
    original = [o for o in (yaml.safe_load(saved.read_text()) or [])
                if not o.startswith(("resume=", "hydra"))]
    return original + [o for o in overrides if not o.startswith("resume=")] + [
        f"resume={run_dir}"]


def sweep_combinations(overrides: list[str]) -> list[list[str]]:
    """Enough single-valued override lists to try every value of every sweep once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    width = max((len(c) for c in choices), default=1)
    return [[c[min(i, len(c) - 1)] for c in choices] for i in range(width)]


def check_writable(run_dir: Path) -> None:
    """A run dir on a read-only disk fails now, in one line, before anything is made."""
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise UserError(f"cannot write the run dir {run_dir}: {existing} is read-only; write "
                        "runs elsewhere (hydra.run.dir=... or hydra.sweep.dir=...)")


def validate_overrides(overrides: list[str], multirun: bool = False) -> None:
    """Compose the config now and check it, so a bad override, a value out of range or an
    env that cannot be built fails in one line before any run dir is made."""
    try:
        combos = sweep_combinations(overrides)
    except Exception as err:
        raise UserError(f"bad override syntax: {explain_config_error(err)}") from err
    for combo in combos:
        try:
            cfg = compose(combo, return_hydra_config=True)
        except Exception as err:
            raise UserError(explain_config_error(err)) from err
        check_config(cfg)
        if multirun:
            check_writable(Path(cfg.hydra.sweep.dir))
            protect_sweep_dir(Path(cfg.hydra.sweep.dir))
        else:
            check_writable(Path(cfg.hydra.run.dir))
            protect_run_dir(Path(cfg.hydra.run.dir), cfg.name, cfg.resume)
        if cfg.get("resume"):  # only the experiment is read: the tensors stay on disk
            resume_payload(cfg.resume, cfg.name, mmap=True)


def check_config(cfg) -> None:
    """Values inside their schema's ranges, the trainer's own rules (its optional
    `check_config`), and an env its constructor accepts (envs are cheap to build)."""
    run_keys = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    missing = sorted(OmegaConf.missing_keys(run_keys))
    if missing:
        example = " (e.g. env.id=Acrobot-v1)" if missing[0] == "env.id" else ""
        raise UserError(f"{missing[0]} has no value: pass {missing[0]}=...{example}")
    problem = check_ranges(cfg)
    if problem:
        raise UserError(problem)
    trainer = import_trainer(cfg.trainer)
    if hasattr(trainer, "check_config"):
        trainer.check_config(cfg)
    if cfg.get("env") is not None:
        try:
            instantiate(cfg.env).close()
        except UserError:
            raise
        except Exception as err:
            raise UserError(f"bad env settings: {explain_config_error(err)}") from err


def protect_run_dir(run_dir: Path, experiment: str, resume: str | None) -> None:
    """A finished run, or another experiment's, is never written over; a run a signal
    stopped continues in place (see `continues_itself`)."""
    found = recorded(run_dir)
    if resume or not found:
        return
    if found.get("experiment") not in (None, experiment):
        raise UserError(f"{run_dir} holds a run of experiment {found['experiment']!r}; "
                        "choose another hydra.run.dir")
    if found.get("status") == FINISHED:
        raise UserError(f"{run_dir} holds a finished run; continue it with rlgen-train "
                        f"resume={run_dir} or choose another hydra.run.dir")


def protect_sweep_dir(sweep_dir: Path) -> None:
    finished = [d for d in sorted(sweep_dir.glob("*")) if run_status(d) == FINISHED]
    if finished:
        raise UserError(f"{sweep_dir} already holds finished runs ({finished[0].name}, ...); "
                        "choose another hydra.sweep.dir")


def close_progress_bars() -> None:
    from tqdm import tqdm

    for bar in list(tqdm._instances):
        bar.close()


def continues_itself(run_dir: Path) -> bool:
    """Whether this job should continue the run already in its run dir: one that a signal
    stopped (metrics status "stopped"), or, inside a submitit job (a requeued one lands in
    its old run dir), any run with a checkpoint, so a finished or killed one is not redone."""
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        return False
    return "SUBMITIT_FOLDER" in os.environ or run_status(run_dir) == STOPPED


def _train_task(cfg) -> float | None:
    """One run; returns its `optimized_metric` (or headline) figure, for Hydra's sweepers."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if not cfg.resume and continues_itself(run_dir):
            with open_dict(cfg):
                cfg.resume = str(run_dir)
            print(f"rlgen-train: continuing the run in {run_dir}", flush=True)
        if cfg.threads is not None:
            import torch

            torch.set_num_threads(cfg.threads)
        trainer = import_trainer(cfg.trainer)
        metrics = trainer.train(cfg, run_dir)
    except UserError as err:
        close_progress_bars()  # so the error is the last line on the terminal
        fail("rlgen-train", str(err))
    pass_on()  # a scheduler's handler (submitit's requeue) gets the stop signal now
    if run_status(run_dir) == STOPPED:
        sys.exit(0)  # a stop signal ends the process: a sweep starts no further job
    try:
        return optimized_value(metrics, cfg.optimized_metric)
    except UserError:
        return None  # nothing to optimise in this run; the run itself is fine


def train_main() -> None:
    import hydra

    register_resolvers()
    flags, overrides = split_hydra_args(sys.argv[1:])
    if {"-h", "--help"} & set(flags):
        try:
            print(train_help(overrides))
        except UserError as err:
            fail("rlgen-train", str(err))
        return
    if {"-m", "--multirun"} & set(flags) and any(o.startswith("hparams_search=") for o in overrides):
        from nn.search import main as search_main

        search_main(overrides)  # the Optuna search drives its own rlgen-train runs
        return
    if {"-m", "--multirun"} & set(flags) and {"-c", "--cfg", "-i", "--info"} & set(flags):
        fail("rlgen-train", "-m cannot go with --cfg or --info; drop -m to print the config "
             "(e.g. --cfg job, or --cfg hydra -p hydra.launcher for a launcher preset)")
    for override in overrides:  # a `module:EnvId` typed here may import its module
        if override.startswith("env.id="):
            allow_module_of(override.split("=", 1)[1])
    if not HYDRA_NO_VALIDATE.intersection(flags):
        try:
            overrides = expand_resume(overrides)
            validate_overrides(overrides, multirun=bool({"-m", "--multirun"} & set(flags)))
        except UserError as err:
            fail("rlgen-train", str(err))
    sys.argv = [sys.argv[0], *flags, *overrides]
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(
        _train_task)()


GROUPS = ("env", "model", "algo", "data")  # the config groups a run's settings come from


def group_choices() -> dict[str, list[str]]:
    """Every config group under conf/ and its choices (the schemas Hydra also lists under
    these groups are types to check against, not choices)."""
    return {str(d.relative_to(CONF_DIR)): sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(CONF_DIR.rglob("*")) if d.is_dir() and any(d.glob("*.yaml"))}


def train_help(overrides: list[str]) -> str:
    """rlgen-train's help: the groups' real choices, then every setting of the experiment
    these overrides pick, with its value, range and description."""
    from conf.schemas import RunConfig
    from nn.config import describe_keys

    try:
        cfg = compose(overrides, return_hydra_config=True)
    except Exception as err:
        raise UserError(explain_config_error(err)) from err
    choices = cfg.hydra.runtime.choices
    lines = ["usage: rlgen-train [experiment=NAME] [GROUP=CHOICE ...] [KEY=VALUE ...]",
             "       rlgen-train -m KEY=A,B ... (a sweep); rlgen-train -m hparams_search=NAME "
             "(an Optuna search, as rlgen-search)", "", "config groups and their choices:"]
    lines += [f"  {group}: {', '.join(names)}" for group, names in group_choices().items()]
    lines += ["", f"run settings (experiment={cfg.name}):",
              describe_keys(RunConfig, cfg, leave_out=(*GROUPS, "search"))]
    for group in GROUPS:
        node = cfg.get(group)
        schema = OmegaConf.get_type(node) if node is not None else None
        if schema is not None and schema is not dict:
            lines += ["", f"{group} settings ({group}={choices.get(group)}):",
                      describe_keys(schema, node, f"{group}.")]
    lines += ["", "another experiment's settings: rlgen-train experiment=NAME --help; the "
              "whole config: rlgen-train experiment=NAME --cfg job; Hydra's flags: --hydra-help"]
    return "\n".join(lines)


def tool_help(command: str, function: str, schema: str, values: dict[str, str]) -> str:
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
    usage = f"usage: {command} run=RUN_DIR [key=value ...]"
    if not hasattr(trainer, function):
        body = f"{command} does not apply to {about} (trainer {trainer_name})"
    else:
        body = (f"keys for {about} (trainer {trainer_name}):\n"
                f"{describe_keys(getattr(trainer, schema))}")
    by_hand = ("\nplay by hand instead: rlgen-watch env=snake (or env=cartpole, env=gymnasium "
               "env.id=ID)" if function == "watch" else "")
    return (f"{usage}\n\n{body}\n\nthe keys for another run or experiment: {command} "
            f"run=RUN_DIR --help, or {command} experiment=NAME --help{by_hand}")


def run_tool(command: str, function: str, schema: str, argv: list[str] | None = None):
    """Shared body of eval/watch/generate: load the run's checkpoint, dispatch to its
    trainer module, parse the remaining key=value args against that module's schema."""
    argv = sys.argv[1:] if argv is None else argv
    values = dict(a.split("=", 1) for a in argv if "=" in a)
    try:
        if any(a in ("-h", "--help") for a in argv):
            print(tool_help(command, function, schema, values))
            return None
        if function == "watch" and "run" not in values and "env" in values:
            from envs.by_hand import play_env_by_hand

            play_env_by_hand(argv)
            return None
        if "run" not in values:
            raise UserError("pass run=RUN_DIR, a run dir made by rlgen-train (see runs/)")
        path = checkpoint_path(values["run"], values.get("checkpoint", "best"))
        payload = load_checkpoint(path)
        trainer = import_trainer(payload.get("trainer", ""))
        if not hasattr(trainer, function):
            raise UserError(f"{command} does not apply to experiment "
                            f"{payload.get('experiment')!r}")
        args = parse_key_values(getattr(trainer, schema), argv)
        if getattr(args, "import_env_module", False):
            env_cfg = (payload.get("config") or {}).get("env") or {}
            allow_module_of(str(env_cfg.get("id", "")))
        return getattr(trainer, function)(payload, args)
    except UserError as err:
        fail(command, str(err))


def eval_main() -> None:
    run_tool("rlgen-eval", "evaluate", "EvalArgs")


def watch_main() -> None:
    run_tool("rlgen-watch", "watch", "WatchArgs")


def generate_main() -> None:
    run_tool("rlgen-generate", "generate", "GenerateArgs")
