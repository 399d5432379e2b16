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

from autoprumux.core.interpolation import across, grid_lines
from autoprumux.core.surrogate import GridModel


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
