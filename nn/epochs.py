"""Where a run is inside an epoch, so that a stop between two batches loses nothing.

A trainer that goes through its data in epochs checks for a stop request after every
batch (a few seconds at most), saves its checkpoint with an `EpochPosition` in it, and a
resumed run goes on with the very batches the stopped one had left:

    position = EpochPosition(shuffle_rng)             # position.load_state_dict(...) on resume
    for epoch in range(start + 1, epochs + 1):
        order = position.draw_order(lambda: torch.randperm(n, generator=shuffle_rng))
        for index in position.remaining(order.split(batch_size)):
            ...                                       # one optimizer step
            position.add(loss=value)                  # this batch is done, and its sums
            if run.stop_requested(...):
                break
        if run.stopped:                               # save "last" with position.state_dict()
            break
        sums = position.finish()                      # the whole epoch's sums
"""

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import MISSING

from nn.schema import above, at_least


@dataclass
class EpochRecipe:
    """What every epoch-based recipe sets; each trainer's schema adds its own settings."""

    epochs: int = at_least(1)
    batch_size: int = at_least(1)
    lr: float = above(0)
    optimizer: Any = MISSING  # a `_partial_: true` torch.optim target; lr comes from `lr`


class EpochPosition:
    """The batches done in the current epoch, their running sums, and the state of the
    stream the epoch's order was drawn from when it began."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator
        self.done = 0  # batches of the current epoch already trained on
        self.sums: dict[str, float] = {}
        self.start_state: torch.Tensor | None = None  # the stream at the epoch's start
        self.earlier_seconds = 0.0  # time spent on this epoch before a stop
        self.began = time.perf_counter()

    @property
    def inside(self) -> bool:
        """Whether the run stands between two batches of an epoch (not at its end)."""
        return self.done > 0

    def draw_order(self, draw: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The epoch's order from `draw()`, which draws from the generator. At a resumed
        epoch it is drawn again from the stream as it was when the epoch began, and the
        stream is then put back where the stop left it (later draws in the epoch, such as
        augmentation, continue from there)."""
        if self.generator is None:
            return draw()
        if not self.inside:
            self.start_state = self.generator.get_state()
            return draw()
        now = self.generator.get_state()
        self.generator.set_state(self.start_state)
        order = draw()
        self.generator.set_state(now)
        return order

    def remaining(self, batches: Iterable) -> Iterator:
        """The epoch's batches the run has not trained on yet. Starts the epoch's clock."""
        self.began = time.perf_counter()
        for i, batch in enumerate(batches):
            if i >= self.done:
                yield batch

    def add(self, **values: float) -> None:
        """One more batch done; `values` add to the epoch's sums."""
        self.done += 1
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    @property
    def seconds(self) -> float:
        """Time spent on this epoch so far, before a stop included."""
        return self.earlier_seconds + time.perf_counter() - self.began

    def finish(self) -> dict[str, float]:
        """The epoch's sums and its `seconds`; the next epoch starts afresh."""
        sums = {**self.sums, "seconds": self.seconds}
        self.sums, self.done, self.start_state, self.earlier_seconds = {}, 0, None, 0.0
        return sums

    def state_dict(self) -> dict:
        state = {"done": torch.tensor(self.done), "seconds": torch.tensor(self.seconds),
                 "sums": {k: torch.tensor(v, dtype=torch.float64) for k, v in self.sums.items()}}
        if self.start_state is not None:
            state["start_state"] = self.start_state
        return state

    def load_state_dict(self, state: dict) -> None:
        self.done = int(state["done"])
        self.sums = {k: float(v) for k, v in state["sums"].items()}
        self.start_state = state.get("start_state")
        self.earlier_seconds = float(state["seconds"]) if self.inside else 0.0
