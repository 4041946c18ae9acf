"""How a config schema says the range of each setting.

Every schema (a dataclass beside the code it configures, registered for Hydra by
`conf/schemas.py`) gives names and types; a yaml file in conf/ names its schema in its
defaults list, so a misspelt key or a value of the wrong type fails when the config is
composed. Values live in the yaml files (the book's numbers); a schema's fields give
the range each number must lie in (`at_least`, `above`, `between`) or the choices of
a setting (`one_of`): `check_ranges`
refuses a value outside it in one line, before a run dir is made.
"""

import math
from dataclasses import field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from nn.errors import UserError


def at_least(low: float, default: Any = MISSING):
    return field(default=default, metadata={"low": low, "rule": f">= {low:g}"})


def above(low: float, default: Any = MISSING):
    return field(default=default, metadata={"low": low, "low_open": True, "rule": f"> {low:g}"})


def between(low: float, high: float, default: Any = MISSING, lower_open: bool = False,
            upper_open: bool = False):
    rule = f"in {'(' if lower_open else '['}{low:g}, {high:g}{')' if upper_open else ']'}"
    return field(default=default, metadata={"low": low, "low_open": lower_open, "high": high,
                                            "high_open": upper_open, "rule": rule})


def one_of(*choices: str, default: Any = MISSING):
    return field(default=default, metadata={"choices": choices,
                                            "rule": f"one of {', '.join(choices)}"})


def sizes():
    """A list of layer sizes, each at least 1."""
    return field(default_factory=list, metadata={"low": 1, "rule": ">= 1 each"})


def temperatures():
    """Sampling temperatures, each at least 0 (0: always the likeliest character)."""
    return field(default_factory=list, metadata={"low": 0, "rule": ">= 0 each"})


def shares():
    """Shares of a whole (of a time budget, say), each strictly between 0 and 1."""
    return field(default_factory=list, metadata={"low": 0, "low_open": True, "high": 1,
                                                 "high_open": True, "rule": "in (0, 1) each"})


def in_range(value: Any, rule: dict) -> bool:
    if "choices" in rule:
        return value in rule["choices"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    low, high = rule.get("low"), rule.get("high")
    if low is not None and (value <= low if rule.get("low_open") else value < low):
        return False
    return high is None or (value < high if rule.get("high_open") else value <= high)


def check_ranges(node: DictConfig, where: str = "") -> str | None:
    """The first value outside its schema's range, as one line naming the key and the
    range; None when every value is inside. Walks the run config and its groups."""
    schema = OmegaConf.get_type(node)
    for item in fields(schema) if is_dataclass(schema) else []:
        value = node.get(item.name)
        key = f"{where}{item.name}"
        if "rule" in item.metadata and value is not None:
            values = list(value) if isinstance(value, ListConfig) else [value]
            bad = next((v for v in values if not in_range(v, item.metadata)), MISSING)
            if bad is not MISSING and "choices" in item.metadata:
                return f"{key}={value} is not a choice: it must be {item.metadata['rule']}"
            if bad is not MISSING:
                return (f"{key}={value} is out of range: it must be {item.metadata['rule']}"
                        f"{'' if bad is value else f' (not {bad})'}")
    for key, value in node.items_ex(resolve=False):
        if isinstance(value, DictConfig) and key != "hydra":
            problem = check_ranges(value, f"{where}{key}.")
            if problem:
                return problem
    return None


def positive(text: str) -> float | None:
    """The number `text` spells if it is one above 0 (the settings written as text with
    a prefix: lin_X, auto_X), else None."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number > 0 else None


def schedule(value, name: str):
    """RL Zoo's forms of a setting that may change over a run: a number, constant, or
    "lin_X", X at the start falling linearly to 0 at the end. A function of the share
    of the run still ahead (1 at the start)."""
    text = str(value)
    start = positive(text[4:] if text.startswith("lin_") else text)
    if start is None:
        raise UserError(f"algo.{name}={value!r} is not a number above 0 or lin_X (X above 0, "
                        f"falling linearly to 0 over the run), e.g. algo.{name}=lin_0.001")
    return (lambda left: start * left) if text.startswith("lin_") else (lambda left: start)
