"""Config helpers: trusted instantiation, one-line config errors, `key=value` CLI args."""

import dataclasses
import difflib
import importlib
import re
import typing
from dataclasses import fields, is_dataclass
from types import SimpleNamespace
from typing import Any

import hydra.utils
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from nn.errors import UserError

# A config read back from a run dir or checkpoint may only name these.
TRUSTED_TARGET_PREFIXES = ("nn.", "rl.", "envs.", "generative.", "torch.optim.", "torch.nn.")
TRAINER_PATTERN = re.compile(r"^(rl|generative)\.[a-z_][a-z0-9_]*$")


def check_targets(node: Any, where: str = "") -> None:
    """Refuse any `_target_` outside the project's packages and torch.optim / torch.nn."""
    if isinstance(node, (DictConfig, dict)):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_" and not str(value).startswith(TRUSTED_TARGET_PREFIXES):
                raise UserError(f"{path}={value!r} is not a trusted target; only "
                                f"{', '.join(TRUSTED_TARGET_PREFIXES)} may be instantiated")
            check_targets(value, path)
    elif isinstance(node, (ListConfig, list)):
        for i, value in enumerate(node):
            check_targets(value, f"{where}[{i}]")


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, limited to trusted targets; a constructor's error is one
    line naming the target, not Hydra's multi-line "Error in call to target" block."""
    from hydra.errors import InstantiationException

    check_targets(node)
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        if isinstance(cause, UserError):  # already says what to do
            raise cause from err
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        target = node.get("_target_", "?") if isinstance(node, (DictConfig, dict)) else "?"
        raise UserError(f"cannot build {target}: {lines[0] if lines else type(cause).__name__}"
                        ) from err


def plain(node: DictConfig) -> Any:
    """A config node as plain Python objects (its schema's dataclass where it has one), for
    hot loops: each attribute read of a DictConfig costs tens of microseconds."""
    value = OmegaConf.to_object(node)
    return SimpleNamespace(**value) if isinstance(value, dict) else value


def import_trainer(name: str):
    """The module that trains/evaluates/watches an experiment, e.g. `rl.reinforce`. A
    trainer whose read-back tools (evaluate, generate, export, their *Args) live in a
    module of their own names it as `TOOLS`; the two are then seen as one."""
    if not TRAINER_PATTERN.match(str(name)):
        raise UserError(f"trainer={name!r} is not a module of rl/ or generative/")
    try:
        trainer = importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise UserError(f"trainer module {name!r} does not exist in this rlgen") from err
    if not hasattr(trainer, "TOOLS"):
        return trainer
    tools = importlib.import_module(trainer.TOOLS)
    return SimpleNamespace(**{**vars(tools), **vars(trainer)})


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, [str(o) for o in options], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def explain_config_error(err: BaseException) -> str:
    """Turn Hydra/OmegaConf errors into one line that says what to do."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException):
        missing = err.missing_cfg_file or ""
        group, _, choice = missing.rpartition("/")
        options = sorted(o for o in (err.options or []) if not o.endswith("_schema"))
        if group and options:
            return (f"unknown {group} '{choice}'{_suggest(choice, options)}; "
                    f"choose one of: {', '.join(options)}")
        return str(err).strip().splitlines()[0]
    # Hydra links the OmegaConf error as the cause, or (for a config file it is
    # composing) only as the context; "In 'experiment/x'" names that file
    cause = err
    while not isinstance(cause, OmegaConfBaseException):
        linked = cause.__cause__ or cause.__context__
        if linked is None:
            break
        cause = linked
    found = re.match(r"In '([^']+)'", str(err))
    where = f"{found.group(1)}.yaml: " if found else ""
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        full_key = getattr(cause, "full_key", None) or getattr(cause, "key", "?")
        parent = getattr(cause, "parent_node", None)
        prefix, _, leaf = str(full_key).rpartition(".")
        if isinstance(parent, DictConfig):
            siblings = parent.keys()
        elif is_dataclass(getattr(cause, "object_type", None)):
            siblings = [f.name for f in fields(cause.object_type)]
        else:
            siblings = []
        keys = [f"{prefix}.{k}" if prefix else str(k) for k in siblings]
        if isinstance(parent, DictConfig) and OmegaConf.get_type(parent) is dict:
            # an open mapping such as env.kwargs: new keys are added with Hydra's `+`
            return f"'{full_key}' is a new key there: add it with a leading +, +{full_key}=..."
        hint = _suggest(str(full_key), keys)
        return (f"{where}unknown config key '{full_key}'{hint}; list the keys with "
                "`rlgen-train experiment=NAME --cfg job`")
    if isinstance(cause, ValidationError):
        full_key = getattr(cause, "full_key", None) or "?"
        message = str(cause.msg if hasattr(cause, "msg") else cause).strip().splitlines()[0]
        return f"{where}bad value for '{full_key}': {message}"
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def parse_key_values(schema: type, argv: list[str]) -> DictConfig:
    """Parse `key=value` arguments against a dataclass: unknown keys and bad types fail."""
    assert is_dataclass(schema)
    config = OmegaConf.structured(schema)
    OmegaConf.set_struct(config, True)
    hints = typing.get_type_hints(schema)
    for arg in argv:
        if "=" not in arg:
            raise UserError(f"argument {arg!r} is not key=value; keys: "
                            f"{', '.join(f.name for f in fields(schema))}")
        key, value = arg.split("=", 1)
        if key not in config.keys():  # `in` is False for a MISSING value
            raise UserError(f"unknown argument '{key}'"
                            f"{_suggest(key, config.keys())}; keys: "
                            f"{', '.join(f.name for f in fields(schema))}")
        try:
            if hints[key] in (str, str | None) and value != "null":
                config[key] = value  # text as typed: `seed_text="ROMEO:"` is not YAML
            else:
                config.merge_with(OmegaConf.from_dotlist([f"{key}={value}"]))
        except OmegaConfBaseException as err:
            raise UserError(f"bad value for '{key}': "
                            f"{str(err).strip().splitlines()[0]}") from err
    missing = OmegaConf.missing_keys(config)
    if missing:
        raise UserError(f"missing required argument(s): "
                        f"{', '.join(f'{k}=...' for k in sorted(missing))}")
    from nn.schema import check_ranges  # the tools' arguments have ranges as configs do

    problem = check_ranges(config)
    if problem:
        raise UserError(problem)
    return config


def key_comments(schema: type) -> dict[str, str]:
    """Each field's description, read from the class's source: its trailing comment, or
    the comment lines just above it (the schemas document their keys that way)."""
    import inspect

    comments: dict[str, str] = {}
    for cls in reversed(schema.__mro__[:-1]):  # a subclass's comment wins
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in lines[1:]:
            text = line.strip()
            if text.startswith("#"):
                above.append(text.lstrip("# "))
                continue
            match = re.match(r"^([A-Za-z_]\w*)\s*:", text)
            if match and not text.startswith(("def ", "class ")):
                trailing = text.split("  # ", 1)[1] if "  # " in text else ""
                comments[match.group(1)] = " ".join([*above, trailing]).strip()
            above = []
    return comments


def describe_keys(schema: type, values: Any = None, prefix: str = "",
                  leave_out: tuple[str, ...] = ()) -> str:
    """`key=default  description` lines for a dataclass's fields: the default from
    `values` (a config) or the field, the allowed range, the description from the code."""
    comments = key_comments(schema)
    rows = []
    for item in fields(schema):
        if item.name.startswith("_") or item.name in leave_out:
            continue
        if values is not None and item.name in values:
            value = OmegaConf.select(values, item.name, throw_on_missing=False)
            value = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) \
                else value
        elif item.default is not dataclasses.MISSING:
            value = item.default
        elif item.default_factory is not dataclasses.MISSING:
            value = item.default_factory()
        else:
            value = "???"
        if value == "???":
            shown = "(required)" if values is None else "???"
        else:
            shown = "null" if value is None else str(value).replace(", ", ",")
        rule = item.metadata.get("rule", "")
        about = "; ".join(part for part in (rule, comments.get(item.name, "")) if part)
        if isinstance(value, dict) and value and "_target_" in value:
            continue  # a nested group (optimizer): see --cfg job
        rows.append((f"{prefix}{item.name}={shown}", about))
    width = min(34, max((len(key) for key, _ in rows), default=0))
    return "\n".join(f"  {key:<{width}}  {about}".rstrip() for key, about in rows)
