"""The throughput model of Auto-PruMUX (paper section 4.2) and the table it reads.

Throughput is measured once, on one task ("task 0") and one hardware, at every (N, s), and the
table is reused for every task: throughput depends on the architecture, not on the weights.
Speedup is always a ratio to the (1, 0) row of the same table (measured in the same run).

Rule for a sparsity the table lacks: within the same N, the time per example (1 / throughput)
is interpolated linearly in s between the nearest measured sparsities. Time per example is
close to affine in the fraction of weights kept (a fixed cost for embeddings, attention scores
and the demultiplexer, plus a part proportional to the kept weights), so this rule is exact
when that holds. There is no rule across N (each N is its own model) and no extrapolation:
such points are ``UNKNOWN``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autoprumux.core.errors import DataError
from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.interpolation import grid_lines
from autoprumux.core.records import ResultsTable
from autoprumux.core.surrogate import GridModel

THROUGHPUT_COLUMNS = ("n", "sparsity", "throughput")
# A table's fingerprint["timed"] when its throughputs are the trials' own: each timed inside its
# trial, at another moment and beside whatever else ran, so ratios between them are not
# speedups measured side by side like ``autoprumux measure``'s.
TIMED_IN_TRIALS = "inside each trial"


class ThroughputModel(GridModel):
    """Throughput (examples per second) at (N, s) from measured points of one table."""

    def _fit_rule(self) -> None:
        # One line of seconds per example along s for each N.
        latency = {point: 1.0 / value for point, value in self.measured_.items()}
        self.latency_rows_ = grid_lines(latency, self.failed_, by_n=True)

    def interpolate(self, n: float, sparsity: float) -> float | None:
        row = self.latency_rows_.get(n)
        latency = row.at(sparsity) if row is not None else None
        return None if latency is None else 1.0 / latency


@dataclass(frozen=True)
class ThroughputTable:
    """Measured throughput (examples per second) per (N, s) on one hardware.

    ``fingerprint`` describes how it was measured (device, dtype, batch, sequence length, ...);
    ``source`` names where it came from, for messages and the report.
    """

    throughput: Mapping[GridPoint, float]
    fingerprint: Mapping[str, object] = field(default_factory=dict)
    source: str = "throughput table"

    def __post_init__(self) -> None:
        if BASELINE not in self.throughput:
            raise DataError(self.source, "has no (1, 0) row; speedups are ratios to (1, 0)")

    @property
    def baseline(self) -> float:
        return self.throughput[BASELINE]

    @property
    def points(self) -> tuple[GridPoint, ...]:
        return tuple(sorted(self.throughput))

    def model(self) -> ThroughputModel:
        return ThroughputModel().fit(self.throughput)

    def describe(self) -> str:
        """Where these throughputs come from, in words: what a table's caption names."""
        stamp = self.fingerprint
        if stamp.get("timed") == TIMED_IN_TRIALS:
            return f"timed inside each trial, beside whatever else ran ({self.source})"
        how = ", ".join(str(stamp[k]) for k in ("device", "device_name", "dtype") if k in stamp)
        # a fingerprint with a device is ``autoprumux measure``'s: one run, round robin
        return f"the throughput table {self.source}" + (
            f" (every point timed in one run, round robin: {how})" if how else ""
        )

    @classmethod
    def from_results(cls, results: ResultsTable, task: str) -> ThroughputTable:
        """The measured throughput of one task's complete trials, as a table."""
        observed = results.observations(task).throughput
        return cls(
            observed,
            {"task": task, "timed": TIMED_IN_TRIALS},
            source=f"{results.source} (task {task})",
        )
