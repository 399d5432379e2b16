"""The early-stopping margins, calibrated on recorded learning curves.

A training is stopped at the check after fraction f of its last phase when its best dev accuracy
so far + margin(f) is under the threshold (:mod:`autoprumux.core.early_stop`). ``calibrate``
sets margin(f) to the largest gain from f to the end of a phase over the recorded curves, plus
``SLACK``; ``count_stops`` replays the rule on curves, to count the stops it would have made.
The curves come from benchmarks/bench_learning_curves.py (``load_curves``);
tests/autoprumux/test_early_stop_margins.py checks that ``early_stop.MARGINS`` is what the
committed curves give.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoprumux.core.budget import FEASIBILITY_TOLERANCE
from autoprumux.core.early_stop import CHECK_FRACTIONS, Curve, StopRule, check_step

# 3 points: one more than the least whole number of points (2) for which, leave-one-out (each of
# the first three recorded curves judged by the margins of the other two), no training that met
# a threshold of budgets 1-10% (or its own final accuracy) would have been stopped
SLACK = 0.03


def accuracy_at(curve: Curve, fraction: float) -> float | None:
    """The accuracy recorded after ``fraction`` of the phase, if it was."""
    step = check_step(fraction, curve.steps)
    return next((a for s, a in curve.points if s == step), None)


def best_until(curve: Curve, fraction: float) -> float | None:
    """The best accuracy of the checks up to ``fraction`` (None if none was there): the
    statistic the rule compares, steadier than the last check while the learning rate is high."""
    if accuracy_at(curve, fraction) is None:
        return None
    step = check_step(fraction, curve.steps)
    return max(a for s, a in curve.points if s <= step)


def gain(curve: Curve, fraction: float) -> float | None:
    """How much the phase gained from its best accuracy up to ``fraction`` to its end."""
    value = best_until(curve, fraction)
    return None if value is None else curve.final - value


def calibrate(
    curves: Sequence[Curve], fractions: Sequence[float] = CHECK_FRACTIONS, slack: float = SLACK
) -> dict[float, float]:
    """margin(f) = the largest gain from f to the end over the curves, plus ``slack``, rounded
    up to half a point."""
    margins = {}
    for fraction in fractions:
        gains = [g for c in curves if (g := gain(c, fraction)) is not None]
        if not gains:
            raise ValueError(f"no curve has a point at fraction {fraction}")
        margins[fraction] = math.ceil((max(0.0, max(gains)) + slack) * 200 - 1e-9) / 200
    return margins


def load_curves(path: str | Path) -> list[Curve]:
    """The curves of a learning-curves run (benchmarks/bench_learning_curves.py), each
    phase once (a teacher comes with each of its row's trainings)."""
    data = json.loads(Path(path).read_text())
    curves = [Curve.from_json(c) for t in data["trainings"] for c in t["curves"]]
    return list({c.label: c for c in curves}.values())


@dataclass(frozen=True, kw_only=True)
class StopCount:
    """How a margin table does on curves, over thresholds: ``wrong`` stops of trainings that in
    the end met the threshold, ``right`` stops of ones that missed it, and the steps saved."""

    wrong: int
    right: int
    misses: int  # (curve, threshold) pairs whose training missed the threshold
    steps_saved: int
    steps_of_misses: int


def count_stops(
    curves: Sequence[Curve], margins: Mapping[float, float], thresholds: Sequence[float]
) -> StopCount:
    """Replay the rule on recorded curves: for every (curve, threshold), the first check where
    it would have stopped the training, if any."""
    wrong = right = misses = saved = of_misses = 0
    for curve in curves:
        for threshold in thresholds:
            rule = StopRule(threshold=threshold, margins=tuple(sorted(margins.items())))
            met = curve.final >= threshold - FEASIBILITY_TOLERANCE
            misses += not met
            of_misses += 0 if met else curve.steps
            stop = next(
                (
                    check_step(f, curve.steps)
                    for f, m in rule.margins
                    if (a := best_until(curve, f)) is not None and rule.hopeless(a, m)
                ),
                None,
            )
            if stop is None:
                continue
            wrong += met
            right += not met
            saved += curve.steps - stop
    return StopCount(
        wrong=wrong, right=right, misses=misses, steps_saved=saved, steps_of_misses=of_misses
    )
