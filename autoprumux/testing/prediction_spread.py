"""How far the proposer's accuracy predictions can fall under the truth, measured on recorded
full grids: it sets the spread of their chance of feasibility
(``autoprumux.loop.proposer.PREDICTION_SPREAD``, which tests/autoprumux/test_prediction_spread.py
checks against the committed grids).

The proposer closes a point as a *confident miss* when its chance of feasibility is under
``min_chance`` (5%): with a logistic spread ``u``, when its prediction is more than
``ln(1 / min_chance - 1) x u`` (2.94 u) under the threshold. A point whose true accuracy just
meets the threshold is closed wrongly when its prediction falls under the truth by more than
that. So the spread is calibrated as the largest such fall on the recorded grids, divided by
2.94 and rounded up to 0.001.

The falls measured are those of the predictions the search makes from few trained points,
where they are largest (accuracy is concave in s: flat, then falling fast, so a straight line
from (N, 0) to (N, 0.9) passes under the middle):

- the surface (:mod:`autoprumux.core.surface`) fitted on the corners of every box of the grid,
  (N1, s1), (N1, s2), (N2, s1), (N2, s2) with N1 <= N2, s1 <= s2 (a row or a column segment
  when N1 = N2 or s1 = s2), at every grid point inside it;
- the paper's additive rule at every (N > 1, s > 0), from (N, 0), (1, s) and (1, 0) alone.

The spread added for a precision's predicted delta from fp32
(``autoprumux.loop.proposer.DELTA_SPREAD``) is calibrated the same way, on the predictions of
the delta that the search first makes: at every pruned point, from the deltas of (1, 0) and of
the point's row teacher (N, 0) alone (:func:`delta_falls`, :func:`calibrate_delta_spread`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping

from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.surface import AccuracySurface, ServedSurface
from autoprumux.loop.proposer import Proposer, SearchState


def prediction_falls(accuracy: Mapping[GridPoint, float]) -> list[float]:
    """truth - prediction for each prediction described in the module docstring, on one full
    grid's measured accuracies (fractions); positive where the prediction falls under."""
    ns = sorted({p.n for p in accuracy})
    sparsities = sorted({p.sparsity for p in accuracy})
    falls = []
    for (n1, n2), (s1, s2) in itertools.product(
        itertools.combinations_with_replacement(ns, 2),
        itertools.combinations_with_replacement(sparsities, 2),
    ):
        corners = {GridPoint(n, s) for n in (n1, n2) for s in (s1, s2)}
        if len(corners) == 1 or not corners <= accuracy.keys():
            continue
        surface = AccuracySurface().fit({p: accuracy[p] for p in corners})
        for point in accuracy:
            inside = n1 <= point.n <= n2 and s1 <= point.sparsity <= s2
            if inside and point not in corners:
                falls.append(accuracy[point] - surface.predict(point).require())
    proposer = Proposer()
    for point in accuracy:
        parts = {GridPoint(point.n, 0.0), GridPoint(1, point.sparsity), BASELINE}
        if point.n > 1 and point.sparsity > 0 and parts <= accuracy.keys():
            state = SearchState(candidates={}, accuracy={p: accuracy[p] for p in parts})
            predicted = proposer.predicted(point, state.surface(), state)
            assert predicted is not None  # the additive rule has its three parts
            falls.append(accuracy[point] - predicted)
    return falls


def calibrate_spread(grids: Iterable[Mapping[GridPoint, float]], min_chance: float) -> float:
    """The smallest spread, in steps of 0.001, under which no prediction on ``grids`` falls far
    enough under the truth to close a point that meets the threshold."""
    largest = max(max(prediction_falls(g), default=0.0) for g in grids)
    return math.ceil(1000 * largest / math.log(1 / min_chance - 1)) / 1000


def delta_falls(
    accuracy: Mapping[GridPoint, float], served: Mapping[GridPoint, float]
) -> list[float]:
    """true delta - predicted delta of a precision (its figure minus fp32's) at every trained
    point, predicted as the search first does: from the deltas of the (1, 0) model and of the
    point's row teacher (N, 0) alone, by :class:`~autoprumux.core.surface.ServedSurface`;
    positive where the prediction falls under. ``accuracy``: one full grid's fp32 figures;
    ``served``: its figures in other precisions, (N, s, precision) keys."""
    falls = []
    for point, value in served.items():
        trained = point.trained
        if trained not in accuracy or trained.sparsity == 0:
            continue
        known = {BASELINE, GridPoint(trained.n, 0.0)}
        seen = {
            p: v for p, v in served.items() if p.trained in known and p.precision is point.precision
        }
        if not seen:
            continue
        surface = ServedSurface().fit(accuracy, (), seen)
        predicted = surface.delta(point)
        assert predicted is not None  # a measured delta of this precision is known
        falls.append((value - accuracy[trained]) - predicted)
    return falls


def calibrate_delta_spread(
    grids: Iterable[tuple[Mapping[GridPoint, float], Mapping[GridPoint, float]]],
    min_chance: float,
) -> float:
    """The smallest spread, in steps of 0.001, under which no predicted delta on ``grids``
    ((fp32 figures, other precisions' figures) each) falls far enough under the truth to close
    a point that meets the threshold: the spread added for a predicted delta."""
    largest = max(max(delta_falls(*g), default=0.0) for g in grids)
    return math.ceil(1000 * max(largest, 0.0) / math.log(1 / min_chance - 1)) / 1000
