"""The accuracy model of Auto-PruMUX (paper section 4.1): piecewise bilinear interpolation.

Fitted on the measured accuracies of one task over an (N, s) grid, it predicts the accuracy of
points that were not trained. On a full grid, inside each cell ``[N_{i-1}, N_i] x [s_{j-1}, s_j]``
the prediction is ``sum_{a,b in {0,1}} k_ab N^a s^b`` fitted to the cell's four corners, and
at a measured point it is the measurement itself.

Where the grid is not full, the rule (see :mod:`autoprumux.core.interpolation`) is:

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

from collections.abc import Iterable, Mapping
from statistics import fmean
from typing import Self

from autoprumux.core.grid import GridPoint
from autoprumux.core.interpolation import across, grid_lines
from autoprumux.core.precision import Precision
from autoprumux.core.surrogate import GridModel, Prediction, Source


class AccuracySurface(GridModel):
    """Piecewise bilinear accuracy model over (N, s), fitted on accuracies (fractions)."""

    def _fit_rule(self) -> None:
        self.rows_ = grid_lines(self.measured_, self.failed_, by_n=True)
        self.columns_ = grid_lines(self.measured_, self.failed_, by_n=False)

    def interpolate(self, n: float, sparsity: float) -> float | None:
        """The continuous surface at any (n, s), N not necessarily an integer; None where the
        rule gives no value. Equals the measurement at measured points."""
        value = across(self.rows_, n, sparsity)
        return value if value is not None else across(self.columns_, sparsity, n)


class ServedSurface:
    """The accuracy of every (N, s, precision) (:mod:`autoprumux.core.precision`).

    fp32 is the :class:`AccuracySurface` of the trained models. In another precision a trained
    model's figure is measured (each is evaluated in every precision after its training); an
    untrained point's is its fp32 prediction plus the precision's *delta* (its figure minus
    fp32's), interpolated by the same rule over the deltas measured so far, or, where that rule
    gives none, their mean. A precision with no delta measured yet predicts nothing, and a
    point that failed to train fails in every precision. A trained model without a figure in
    a precision (its int8 file was refused: its labels differed from fp32's) has none there.
    """

    def fit(
        self,
        accuracy: Mapping[GridPoint, float],
        failed: Iterable[GridPoint] = (),
        served: Mapping[GridPoint, float] | None = None,
    ) -> Self:
        """``accuracy``: fp32 figures by (N, s); ``served``: the other precisions' by
        (N, s, precision)."""
        self.fp32_ = AccuracySurface().fit(accuracy, failed)
        self.served_ = dict(served or {})
        deltas: dict[Precision, dict[GridPoint, float]] = {}
        for point, value in self.served_.items():
            base = accuracy.get(point.trained)
            if base is not None:
                deltas.setdefault(point.precision, {})[point.trained] = value - base
        self.deltas_ = {p: AccuracySurface().fit(d) for p, d in deltas.items()}
        self.mean_delta_ = {p: fmean(d.values()) for p, d in deltas.items()}
        return self

    def predict(self, point: GridPoint) -> Prediction:
        if point.precision is Precision.FP32:
            return self.fp32_.predict(point)
        if point in self.served_:
            return Prediction(self.served_[point], Source.MEASURED)
        base = self.fp32_.predict(point.trained)
        if base.source is Source.MEASURED:  # trained, and not evaluated in this precision
            return Prediction(None, Source.UNKNOWN)
        delta = self.delta(point)
        if base.value is None or delta is None:
            failed = base.source is Source.FAILED
            return Prediction(None, Source.FAILED if failed else Source.UNKNOWN)
        return Prediction(base.value + delta, Source.INTERPOLATED)

    def delta(self, point: GridPoint) -> float | None:
        """The predicted change from fp32 to ``point.precision`` at ``point``."""
        surface = self.deltas_.get(point.precision)
        if surface is None:
            return None
        value = surface.predict(point.trained).value
        return self.mean_delta_[point.precision] if value is None else value
