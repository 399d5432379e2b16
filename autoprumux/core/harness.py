"""Timing passes the way the paper measures throughput, independent of what is timed.

A *pass* runs a fixed amount of inference (e.g. every batch of the dev set) and returns how many
examples it processed. Models are timed round-robin - pass 1 of every model, then pass 2 of
every model, ... - so that drift in the machine's speed hits them alike, and every speedup is a
ratio measured in the same run. Before timing, each model runs ``warmup_passes`` untimed passes;
the first timed pass is discarded as well (the paper's protocol). ``sync`` is called before
every clock read (``torch.cuda.synchronize`` on a GPU: kernels run asynchronously).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

Pass = Callable[[], int]  # runs one pass, returns the number of examples it processed
Key = TypeVar("Key", bound=Hashable)  # names one run


@dataclass(frozen=True)
class Timing:
    """Examples per second of one model's timed passes."""

    rates: tuple[float, ...]  # the kept passes
    discarded: float  # the first timed pass

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def low(self) -> float:
        return min(self.rates)

    @property
    def high(self) -> float:
        return max(self.rates)

    @property
    def cv(self) -> float:
        """Coefficient of variation of the kept passes (standard deviation / mean)."""
        if len(self.rates) < 2:
            return 0.0
        return statistics.stdev(self.rates) / statistics.fmean(self.rates)


def time_round_robin(
    runs: Mapping[Key, Pass],
    passes: int = 5,
    warmup_passes: int = 1,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Key, Timing]:
    """Time every run ``passes`` times (plus one discarded pass), interleaved."""
    if passes < 1:
        raise ValueError("passes must be >= 1")
    for run in runs.values():
        for _ in range(warmup_passes):
            run()
    rates: dict[Key, list[float]] = {key: [] for key in runs}
    for index in range(passes + 1):
        for key, run in runs.items():
            sync()
            start = clock()
            examples = run()
            sync()
            elapsed = clock() - start
            rates[key].append(examples / elapsed if elapsed > 0 else math.inf)
        if progress is not None:
            progress(index + 1, passes + 1)
    return {key: Timing(tuple(values[1:]), values[0]) for key, values in rates.items()}
