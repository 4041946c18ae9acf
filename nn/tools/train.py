"""`rlgen-train`: the Hydra app that trains one experiment, or a sweep with `-m`.

The experiment's config names its trainer module (e.g. `rl.reinforce`); this tool
checks the config (nn/tools/checks.py) and calls that module's `train`, so it knows no
experiment. Every user-fixable problem ends as one line on stderr, exit 2.
"""

import os
import sys
import warnings
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from conf.compose import CONF_DIR, compose, register_resolvers
from envs.gymnasium_env import allow_module_of
from nn import run_lock
from nn.config import explain_config_error, import_trainer
from nn.errors import UserError
from nn.preemption import pass_on
from nn.run import STOPPED, run_status
from nn.tools.checks import expand_resume, fail, protect_run_dir, split_hydra_args, validate_overrides
from nn.tools.runs import optimized_value

# Our launcher presets (conf/hydra/launcher/) share their names with the plugin's schemas
# on purpose, so they are checked against them; Hydra warns about that on every run.
warnings.filterwarnings("ignore", message="(?s).*validated against ConfigStore schema")
HYDRA_NO_VALIDATE = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc"}


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


def hold_run_dir(run_dir: Path, cfg) -> None:
    """The run folder's lock (nn/run_lock.py), before Hydra writes into it; what the
    checks found on disk is checked again under it, as another writer may have just
    finished there."""
    note = run_lock.take(run_dir)
    if note:
        print(f"rlgen-train: {note}", flush=True)
    protect_run_dir(run_dir, cfg.name, cfg.get("resume"))


def _train_task(cfg) -> float | None:
    """One run; returns its `optimized_metric` (or headline) figure, for Hydra's sweepers."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        note = run_lock.take(run_dir)  # a sweep's job (a single run holds it already)
        if note:
            print(f"rlgen-train: {note}", flush=True)
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


def main() -> None:
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
        from nn.tools.search import main as search_main

        search_main(overrides)  # the Optuna search drives its own rlgen-train runs
        return
    if {"-m", "--multirun"} & set(flags) and {"-c", "--cfg", "-i", "--info"} & set(flags):
        fail("rlgen-train", "-m cannot go with --cfg or --info; drop -m to print the config "
             "(e.g. --cfg job, or --cfg hydra -p hydra.launcher for a launcher preset)")
    for override in overrides:  # a `module:EnvId` typed here may import its module
        if override.startswith("env.id="):
            allow_module_of(override.split("=", 1)[1])
    if not HYDRA_NO_VALIDATE.intersection(flags):
        multirun = bool({"-m", "--multirun"} & set(flags))
        try:
            overrides = expand_resume(overrides)
            cfg = validate_overrides(overrides, multirun=multirun)
            if not multirun and not {"-c", "--cfg", "-i", "--info"} & set(flags):
                hold_run_dir(Path(cfg.hydra.run.dir), cfg)
        except UserError as err:
            fail("rlgen-train", str(err))
    sys.argv = [sys.argv[0], *flags, *overrides]
    try:
        hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(
            _train_task)()
    except KeyboardInterrupt:  # Ctrl-C before a run took over the signal, or after it ended
        close_progress_bars()
        print("rlgen-train: interrupted", file=sys.stderr)
        sys.exit(130)


GROUPS = ("env", "model", "algo", "data")  # the config groups a run's settings come from


def group_choices() -> dict[str, list[str]]:
    """Every config group under conf/ and its choices (the schemas Hydra also lists under
    these groups are types to check against, not choices)."""
    return {str(d.relative_to(CONF_DIR)): sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(CONF_DIR.rglob("*")) if d.is_dir() and any(d.glob("*.yaml"))}


def train_help(overrides: list[str]) -> str:
    """rlgen-train's help: the groups' real choices, then every setting of the experiment
    these overrides pick, with its value, range and description."""
    from nn.config import describe_keys
    from nn.run import RunConfig

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


