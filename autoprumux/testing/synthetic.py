"""Synthetic full grids that follow the paper's observations, for tests and benchmarks.

PruMUX's accuracy loss is close to the sum of DataMUX's loss at N and CoFi's loss at s
(paper section 3.3); throughput grows about N-fold with multiplexing and with the fraction of
weights removed by pruning, up to a fixed cost. A point whose total loss exceeds
``untrainable_loss`` "does not train" (a failed record), as (10, 0.90) did on the paper's QNLI.
These tables are labelled synthetic wherever they are used; they are not measurements.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from autoprumux.core.grid import PAPER_GRID, Grid, GridPoint
from autoprumux.core.records import ResultsTable, TrialRecord, TrialStatus


@dataclass(frozen=True, kw_only=True)
class SyntheticFamily:
    task: str = "sst2"
    baseline_accuracy: float = 0.93  # (1, 0)
    mux_loss_per_doubling: float = 0.015  # DataMUX loss = this * log2(N)
    prune_loss_at_095: float = 0.02  # CoFi loss = small constant + this * (s / 0.95)^6
    prune_loss_floor: float = 0.003  # any pruning costs at least this
    untrainable_loss: float = 0.062  # total loss above this: the point fails to train
    accuracy_noise: float = 0.003  # standard deviation, accuracy points
    baseline_throughput: float = 1000.0  # examples per second at (1, 0)
    fixed_cost: float = 0.06  # fraction of (1, 0) time per example that pruning cannot remove
    mux_overhead: float = 0.005  # each extra instance costs this fraction of N-fold speedup
    throughput_noise: float = 0.02  # relative standard deviation

    def expected_loss(self, point: GridPoint) -> float:
        mux = self.mux_loss_per_doubling * math.log2(point.n)
        prune = (
            self.prune_loss_floor + self.prune_loss_at_095 * (point.sparsity / 0.95) ** 6
            if point.sparsity > 0
            else 0.0
        )
        return mux + prune

    def expected_speedup(self, point: GridPoint) -> float:
        mux = point.n * (1.0 - self.mux_overhead * (point.n - 1))
        return mux / (self.fixed_cost + (1.0 - self.fixed_cost) * (1.0 - point.sparsity))


def synthetic_results(
    grid: Grid = PAPER_GRID, family: SyntheticFamily = SyntheticFamily(), seed: int = 0
) -> ResultsTable:
    """One record per grid point; (1, 0) is noise-free so budgets are exact."""
    rng = random.Random(seed)
    records = []
    for point in grid:
        accuracy_noise = rng.gauss(0.0, family.accuracy_noise)
        throughput_noise = rng.gauss(0.0, family.throughput_noise)
        loss = family.expected_loss(point)
        if loss > family.untrainable_loss:
            records.append(
                TrialRecord(
                    task=family.task,
                    n=point.n,
                    sparsity=point.sparsity,
                    status=TrialStatus.FAILED,
                    reason="synthetic: did not train",
                )
            )
            continue
        if point.n == 1 and point.sparsity == 0:
            accuracy_noise = throughput_noise = 0.0
        accuracy = min(1.0, max(0.0, family.baseline_accuracy - loss + accuracy_noise))
        speedup = family.expected_speedup(point) * (1.0 + throughput_noise)
        records.append(
            TrialRecord(
                task=family.task,
                n=point.n,
                sparsity=point.sparsity,
                accuracy=round(accuracy, 4),
                throughput=round(family.baseline_throughput * speedup, 1),
                seed=seed,
            )
        )
    return ResultsTable.from_records(records, source=f"synthetic(seed={seed})")
