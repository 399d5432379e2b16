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

A table may time each point in several precisions (rows (N, s, precision), each in the runtime
that serves it: :mod:`autoprumux.core.precision`), and the latency of one request at batch 1
(``latency_s``: a multiplexed model then runs with N - 1 empty slots). Each precision has its
own rows and rules; a precision's speedup is still a ratio to the (1, 0) fp32 row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autoprumux.core.errors import DataError
from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.interpolation import grid_lines
from autoprumux.core.precision import Precision
from autoprumux.core.records import RecipeSpeed, ResultsTable
from autoprumux.core.surrogate import ByPrecision, GridModel

THROUGHPUT_COLUMNS = ("n", "sparsity", "throughput")
OPTIONAL_THROUGHPUT_COLUMNS = ("precision", "latency_s")
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


class LatencyModel(GridModel):
    """Seconds for one request at batch 1 at (N, s): linear in s within each N, as above."""

    def _fit_rule(self) -> None:
        self.rows_ = grid_lines(self.measured_, self.failed_, by_n=True)

    def interpolate(self, n: float, sparsity: float) -> float | None:
        row = self.rows_.get(n)
        return row.at(sparsity) if row is not None else None


@dataclass(frozen=True)
class ThroughputTable:
    """Measured throughput (examples per second) per (N, s, precision) on one hardware.

    ``fingerprint`` describes how it was measured (device, dtype, batch, sequence length, ...);
    ``source`` names where it came from, for messages and the report; ``latency`` holds the
    seconds of one request at batch 1, where measured.
    """

    throughput: Mapping[GridPoint, float]
    fingerprint: Mapping[str, object] = field(default_factory=dict)
    source: str = "throughput table"
    latency: Mapping[GridPoint, float] = field(default_factory=dict)
    # rows scaled to the file their trained model is served by (with_recipe_speeds)
    rescaled: tuple[GridPoint, ...] = ()

    def __post_init__(self) -> None:
        if BASELINE not in self.throughput:
            timed = sorted({p.precision.value for p in self.throughput})
            only = f" (it times {', '.join(timed)} only)" if timed and timed != ["fp32"] else ""
            raise DataError(
                self.source, f"has no fp32 (1, 0) row{only}; speedups are ratios to fp32's (1, 0)"
            )

    @property
    def baseline(self) -> float:
        return self.throughput[BASELINE]

    @property
    def points(self) -> tuple[GridPoint, ...]:
        return tuple(sorted(self.throughput))

    @property
    def precisions(self) -> tuple[Precision, ...]:
        """The precisions it times, fp32 first."""
        return tuple(p for p in Precision if any(q.precision is p for q in self.throughput))

    def serving(self, precisions: tuple[Precision, ...]) -> ThroughputTable:
        """The table's rows of ``precisions`` only (the study's)."""
        return ThroughputTable(
            {p: v for p, v in self.throughput.items() if p.precision in precisions},
            self.fingerprint,
            self.source,
            {p: v for p, v in self.latency.items() if p.precision in precisions},
            tuple(p for p in self.rescaled if p.precision in precisions),
        )

    def with_recipe_speeds(self, speeds: Mapping[GridPoint, RecipeSpeed]) -> ThroughputTable:
        """The table with the rows of trained models served by another file than it times
        (int8 made by a static recipe, where it times dynamic int8) scaled to that file: the
        row's examples/s and batch-1 latency times the file's ratios to the table's file,
        timed side by side (:class:`RecipeSpeed`). A point the table has no row of is left as
        it is (its interpolation is the table's file's); a row already scaled is not again."""
        scaled = {  # a row scaled once: a table handed on is not scaled again
            p: speed
            for p, speed in speeds.items()
            if p in self.throughput and p not in self.rescaled
        }
        if not scaled:
            return self
        return ThroughputTable(
            {p: v * scaled[p].throughput if p in scaled else v for p, v in self.throughput.items()},
            self.fingerprint,
            self.source,
            {p: v * scaled[p].latency if p in scaled else v for p, v in self.latency.items()},
            tuple(sorted({*self.rescaled, *scaled})),
        )

    def model(self) -> ByPrecision:
        return ByPrecision(ThroughputModel).fit(self.throughput)

    def latency_model(self) -> ByPrecision:
        return ByPrecision(LatencyModel).fit(self.latency)

    def describe(self) -> str:
        """Where these throughputs come from, in words: what a table's caption names."""
        stamp = self.fingerprint
        if stamp.get("timed") == TIMED_IN_TRIALS:
            return f"timed inside each trial, beside whatever else ran ({self.source})"
        how = ", ".join(str(stamp[k]) for k in ("device", "device_name", "dtype") if k in stamp)
        # a fingerprint with a device is ``autoprumux measure``'s: one run, round robin
        described = f"the throughput table {self.source}" + (
            f" (every point timed in one run, round robin: {how})" if how else ""
        )
        if self.rescaled:
            points = ", ".join(str(p) for p in self.rescaled)
            described += (
                f"; {points} scaled to the static int8 file its model is served by, timed "
                "against dynamic int8 side by side"
            )
        return described

    @classmethod
    def from_results(cls, results: ResultsTable, task: str) -> ThroughputTable:
        """The measured throughput of one task's complete trials, as a table."""
        observed = results.observations(task).throughput
        return cls(
            observed,
            {"task": task, "timed": TIMED_IN_TRIALS},
            source=f"{results.source} (task {task})",
        )
