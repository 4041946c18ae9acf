"""Checks every tool runs before any work starts: the command line split into Hydra's
flags and overrides, `resume=` expanded, the config composed and checked, and the run
or sweep folder protected. Every user-fixable problem ends as one line on stderr.
Torch is imported only where a check needs it: the search workers and the folder tools
(rlgen-runs, -plot) load this module and start in a fraction of torch's import time."""

import os
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from conf.compose import compose
from nn.config import explain_config_error, import_trainer, instantiate
from nn.errors import UserError
from nn.schema import check_ranges

# Hydra flags that take the next word as their value
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp",
                          "--config-name", "-cn", "--config-dir", "-cd",
                          "--experimental-rerun", "--shell-completion", "-sc"}
HYDRA_INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


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
    if not existing.is_dir():
        raise UserError(f"cannot make the run dir {run_dir}: {existing} is a file, not a "
                        "folder; write runs elsewhere (hydra.run.dir=... or hydra.sweep.dir=...)")
    if not os.access(existing, os.W_OK):
        raise UserError(f"cannot write the run dir {run_dir}: {existing} is read-only; write "
                        "runs elsewhere (hydra.run.dir=... or hydra.sweep.dir=...)")


def validate_overrides(overrides: list[str], multirun: bool = False):
    """Compose the config now and check it, so a bad override, a value out of range or an
    env that cannot be built fails in one line before any run dir is made. Returns the
    (last) composed config."""
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
            from nn.checkpoint import resume_payload

            resume_payload(cfg.resume, cfg.name, mmap=True)
    return cfg


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
    from nn.contracts import ChecksConfig

    trainer = import_trainer(cfg.trainer)
    if isinstance(trainer, ChecksConfig):
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
    from nn.run import FINISHED, recorded

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
    from nn.run import FINISHED, run_status

    finished = [d for d in sorted(sweep_dir.glob("*")) if run_status(d) == FINISHED]
    if finished:
        raise UserError(f"{sweep_dir} already holds finished runs ({finished[0].name}, ...); "
                        "choose another hydra.sweep.dir")


def folders_and_keys(command: str, schema: type, argv: list[str], about: str):
    """A folder tool's command line (rlgen-runs, rlgen-plot): folders (default runs/, each
    one that exists), then `key=value` against `schema` as every rlgen tool takes them.
    The `--key value`, `--key=value` and `--flag` spellings of earlier versions are read
    as `key=value` too. `--help` prints `about` and the keys, and returns None."""
    from dataclasses import fields

    from nn.config import describe_keys, parse_key_values

    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {command} [DIR ...] [key=value ...]\n\n{about}\n\nkeys:\n"
              f"{describe_keys(schema)}")
        return None
    flags = {f.name for f in fields(schema) if f.type in (bool, "bool")}
    folders, pairs, rest = [], [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("--"):
            key, has_value, value = arg[2:].partition("=")
            if not has_value and key not in flags:
                if not rest:
                    raise UserError(f"{arg} needs a value: write {key}=VALUE")
                value = rest.pop(0)
            pairs.append(f"{key}={value if has_value or key not in flags else 'true'}")
        elif "=" in arg:
            pairs.append(arg)
        else:
            folders.append(arg)
    missing = [folder for folder in folders if not Path(folder).is_dir()]
    if missing:
        raise UserError(f"no such folder: {', '.join(missing)}")
    args = parse_key_values(schema, pairs)
    return [Path(folder) for folder in folders or ["runs"]], args
