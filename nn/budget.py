"""Sizing a run to a wall-time budget on the machine it runs on: time the loop's steady
pace on scratch copies, then plan the work that fills a share of what is left."""

import time
from collections.abc import Callable

from nn.seeding import global_rng_state, set_global_rng_state


def measure_pace(step: Callable[[], int], seconds: float, warmup: int = 1,
                 min_steps: int = 3) -> float:
    """Units of work per second of `step()`, which does one piece of the loop on scratch
    objects and returns the units it did (0 while it is still warming up: a first update
    not yet due, say). The first `warmup` calls that did work warm allocators and kernels
    and are not timed; then it is timed for at least `seconds` and `min_steps` calls.
    The global random streams are left as they were, so the run repeats with or
    without the measurement."""
    rng = global_rng_state()
    warm, units, steps, timed_from = 0, 0, 0, None
    while True:
        done = step()
        if timed_from is None:
            warm += bool(done)
            if warm >= warmup:
                timed_from = time.perf_counter()
            continue
        units, steps = units + done, steps + 1
        if steps >= min_steps and time.perf_counter() - timed_from >= seconds:
            break
    pace = units / (time.perf_counter() - timed_from)
    set_global_rng_state(rng)
    return pace


def seconds_of(work: Callable[[], object]) -> float:
    """Seconds one call of `work()` takes (an evaluation, say), the global random streams
    left as they were."""
    rng = global_rng_state()
    began = time.perf_counter()
    work()
    seconds = time.perf_counter() - began
    set_global_rng_state(rng)
    return seconds


def plan(pace: float, max_seconds: float, spent: float, share: float, minimum: int = 1) -> int:
    """Units that fill `share` of the budget left after `spent` seconds at `pace` units/s
    (the rest is slack for evaluations and changes of pace)."""
    return max(minimum, int(pace * share * (max_seconds - spent)))
