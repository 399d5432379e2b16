"""Accuracy budgets: how much accuracy a user gives up for throughput.

Every recommendation states which kind of budget is in force and the threshold it implies.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from autoprumux.core.errors import FieldError

# A point whose accuracy equals the threshold is feasible: compare with this slack so that
# 0.92 - 0.03 computed in floating point does not reject an accuracy of exactly 0.89.
FEASIBILITY_TOLERANCE = 1e-9
# A training that misses the threshold by less than this (a point) may be noise: training the
# same point on another seed moves dev accuracy by about as much (13 seed pairs of the tiny
# study's recipes, docs/measurements.md: 0.83 points RMS, up to 1.84). So such a near miss does
# not rule out its neighbours (the next s of its row, the next N of its column), which noise may
# lift above it; it still rules out the points further on.
NEAR_MISS = 0.01


class BudgetKind(enum.Enum):
    ABSOLUTE = "absolute"  # accuracy points below the baseline: threshold = base - b
    RELATIVE = "relative"  # a fraction of the baseline: threshold = base * (1 - b)
    MIN_ACCURACY = "min-accuracy"  # a floor that needs no baseline: threshold = b


@dataclass(frozen=True)
class Budget:
    kind: BudgetKind
    value: float  # a fraction: 0.03 is 3 points (absolute), 3% (relative) or 3% accuracy (floor)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, BudgetKind):  # a typed kind is refused as a bad value is
            kinds = ", ".join(kind.name for kind in BudgetKind)
            raise FieldError("kind", f"{self.kind!r} is not a BudgetKind ({kinds})")
        field = {
            BudgetKind.ABSOLUTE: "budget",
            BudgetKind.RELATIVE: "relative_budget",
            BudgetKind.MIN_ACCURACY: "min_accuracy",
        }[self.kind]
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise FieldError(field, f"{value!r} is not a number")
        if self.kind is BudgetKind.MIN_ACCURACY:
            if not 0.0 <= value <= 1.0:
                raise FieldError(field, f"{value!r} is outside [0, 1] (accuracy is a fraction)")
        elif not 0.0 <= value < 1.0:
            raise FieldError(field, f"{value!r} is outside [0, 1) (0.03 means 3 points)")

    @property
    def needs_baseline(self) -> bool:
        return self.kind is not BudgetKind.MIN_ACCURACY

    def threshold(self, baseline_accuracy: float | None) -> float:
        """The lowest accuracy allowed. ``baseline_accuracy`` is the task's (1, 0) accuracy."""
        if self.kind is BudgetKind.MIN_ACCURACY:
            return self.value
        if baseline_accuracy is None:
            raise FieldError("baseline", "a (1, 0) accuracy is needed for this budget")
        if self.kind is BudgetKind.ABSOLUTE:
            return baseline_accuracy - self.value
        return baseline_accuracy * (1.0 - self.value)

    def describe(
        self, baseline_accuracy: float | None, metric: str = "accuracy", lowest: float = 0.0
    ) -> str:
        """The budget in words and the threshold it gives; ``metric`` names what the values
        are (:meth:`Metric.label <autoprumux.core.metrics.Metric.label>`: accuracy, macro-F1,
        ...) and ``lowest`` is its worst value (:attr:`Metric.lowest`: MCC's is -1), at or
        below which every point meets the threshold, as the words then say."""
        threshold = self.threshold(baseline_accuracy)
        if self.kind is BudgetKind.ABSOLUTE:
            how = f"baseline {baseline_accuracy:.4f} - {self.value:g}"
            name = f"absolute budget {self.value:g} ({metric} points below (1, 0))"
        elif self.kind is BudgetKind.RELATIVE:
            how = f"baseline {baseline_accuracy:.4f} x (1 - {self.value:g})"
            name = f"relative budget {self.value:g} (fraction of the (1, 0) {metric})"
        else:
            how = "given"
            name = f"minimum {metric} {self.value:g}"
        words = f"{name}: threshold {threshold:.4f} ({how})"
        if threshold <= lowest and self.needs_baseline:
            why = (
                f"the (1, 0) baseline scores {lowest:g} in {metric}"
                if baseline_accuracy == lowest
                else f"the budget is as large as the baseline's {metric}"
            )
            words += f"; every point meets it: {why}"
        return words


def budget_sweep(stop: float = 0.10, step: float = 0.005) -> tuple[float, ...]:
    """Budgets 0, step, ..., stop: the paper's 0%, 0.5%, ..., 10% (21 budgets)."""
    count = round(stop / step)
    return tuple(round(i * step, 6) for i in range(count + 1))
