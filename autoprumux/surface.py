"""The accuracy model of Auto-PruMUX (paper section 4.1): piecewise bilinear interpolation.

Fitted on the measured accuracies of one task over an (N, s) grid, it predicts the accuracy of
points that were not trained. On a full grid, inside each cell ``[N_{i-1}, N_i] x [s_{j-1}, s_j]``
the prediction is ``sum_{a,b in {0,1}} k_ab N^a s^b`` fitted to the cell's four corners, and
at a measured point it is the measurement itself.

Where the grid is not full, the rule (see :mod:`autoprumux.interpolation`) is:

1. Rows first: within each measured N, interpolate linearly in s between the nearest measured
   sparsities (skipping sparsities never trained); then linearly in N between the two rows
   nearest the query. Rows come first because accuracy along s within one multiplexed model
   is the smooth, densely sampled direction.
2. If that gives no value, columns first (within each s, linear in N; then linear in s).
3. No value otherwise: the point is ``UNKNOWN`` and is never recommended. This covers every
   point outside the measured hull (no extrapolation) and every point whose neighbourhood
   holds a *failed* model (the paper drops e.g. (10, 0.90) on QNLI): interpolation never
   crosses a failed point, and a failed point itself is ``FAILED``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from autoprumux.grid import GridPoint
from autoprumux.interpolation import Line, across


class Source(enum.Enum):
    """Where a predicted value comes from."""

    MEASURED = "measured"  # the point was trained and measured: the value is the measurement
    INTERPOLATED = "interpolated"  # interpolated between measured points
    FAILED = "failed"  # the point was trained and failed: no value
    UNKNOWN = "unknown"  # outside the measured hull, or next to a failed point: no value


@dataclass(frozen=True)
class Prediction:
    value: float | None  # None unless source is MEASURED or INTERPOLATED
    source: Source

    @property
    def known(self) -> bool:
        return self.value is not None


class AccuracySurface:
    """Piecewise bilinear accuracy model over (N, s). Estimator-style: ``fit`` returns self."""

    def fit(
        self, accuracy: Mapping[GridPoint, float], failed: Iterable[GridPoint] = ()
    ) -> AccuracySurface:
        self.measured_ = dict(accuracy)
        self.failed_ = frozenset(failed) - self.measured_.keys()
        self.rows_ = _lines(self.measured_, self.failed_, by_n=True)
        self.columns_ = _lines(self.measured_, self.failed_, by_n=False)
        return self

    def predict(self, point: GridPoint) -> Prediction:
        if point in self.measured_:
            return Prediction(self.measured_[point], Source.MEASURED)
        if point in self.failed_:
            return Prediction(None, Source.FAILED)
        value = self.interpolate(point.n, point.sparsity)
        if value is None:
            return Prediction(None, Source.UNKNOWN)
        return Prediction(value, Source.INTERPOLATED)

    def interpolate(self, n: float, sparsity: float) -> float | None:
        """The continuous surface at any (n, s), N not necessarily an integer; None where the
        rule gives no value. Equals the measurement at measured points."""
        value = across(self.rows_, n, sparsity)
        return value if value is not None else across(self.columns_, sparsity, n)


def _lines(
    measured: Mapping[GridPoint, float], failed: frozenset[GridPoint], by_n: bool
) -> dict[float, Line]:
    """The grid's rows (``by_n``: one line along s per N) or columns (one line along N per s)."""
    measured_by: dict[float, list[tuple[float, float]]] = {}
    failed_by: dict[float, list[float]] = {}
    for point, value in measured.items():
        major, minor = (point.n, point.sparsity) if by_n else (point.sparsity, point.n)
        measured_by.setdefault(major, []).append((minor, value))
    for point in failed:
        major, minor = (point.n, point.sparsity) if by_n else (point.sparsity, point.n)
        failed_by.setdefault(major, []).append(minor)
    majors = measured_by.keys() | failed_by.keys()
    return {m: Line.of(measured_by.get(m, ()), failed_by.get(m, ())) for m in majors}
