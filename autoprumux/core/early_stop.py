"""Early stopping of hopeless trainings, and the learning curves the engine records.

A training evaluates dev accuracy after every eighth of the second half of its last phase (the
(N, 0) teacher's fine-tuning, the pruned model's fine-tuning); at the check after fraction f,
with best(f) the best dev accuracy of the checks so far, if

    best(f) + margin(f) < threshold - FEASIBILITY_TOLERANCE

the model cannot reach the threshold by the end: ``margin(f)`` bounds what a phase gains from
best(f) to its end, on this project's recorded learning curves (``MARGINS``, calibrated by
:mod:`autoprumux.testing.stop_margins`). The best so far, not the last check, because dev
accuracy at one check swings by points while the learning rate is high: the best so far is
steadier, and so needs a smaller margin. The training stops,
its record carries the evidence (step, accuracy, margin), and the search applies the monotone
rules as for a full miss. A check costs one pass over the dev set, so a phase is checked only
where that pays: when its checks cost at most ``MAX_CHECK_SHARE`` of the phase.

An (N, s) training also stops before its pruning when the (N, 0) teacher it fine-tuned or
reused ends more than ``NEAR_MISS`` under the threshold (``StopPhase.TEACHER_MISSED``): by the
search's monotone rule the pruned model cannot meet it either (its bound: the teacher's
accuracy + ``NEAR_MISS``, the noise of one training).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoprumux.core.budget import FEASIBILITY_TOLERANCE, NEAR_MISS
from autoprumux.core.grid import GridPoint

# of the last phase's steps: its second half. Earlier, the recorded curves gain too much and too
# unevenly (up to 12.7 points after 1/8, 8.5 after 1/4) for a margin that stops anything
# without stopping a training that would have made it
CHECK_FRACTIONS = (0.5, 0.625, 0.75, 0.875)
# margin(f): the largest gain from f to the end of a phase on the recorded curves plus a slack
# of 3 points, rounded up to half a point (autoprumux.testing.stop_margins.calibrate on the
# tiny study's (1, 0), (2, 0) and (4, 0) teachers under both recipes it has had:
# studies/results/sst2-tiny-curves.json, batches of random lengths, and
# sst2-tiny-curves-grouped.json, grouped by length; tests/autoprumux/test_early_stop_margins.py
# recomputes them from the committed curves)
MARGINS: Mapping[float, float] = {0.5: 0.09, 0.625: 0.055, 0.75: 0.05, 0.875: 0.05}
# a phase is checked when its evaluations of the dev set cost at most this share of its steps
MAX_CHECK_SHARE = 0.1


class StopPhase(enum.Enum):
    """Where a training stopped (the value: the checked phase's name in the engine, as the
    evidence's text and its JSON say it)."""

    FINETUNE = "finetune"  # the (N, 0) teacher's fine-tuning
    POST_FINETUNE = "post-finetune"  # the pruned model's fine-tuning
    # an (N, s) training stopped before its pruning: its (N, 0) teacher, trained to its end,
    # missed the threshold by more than NEAR_MISS (the margin: the noise of one training)
    TEACHER_MISSED = "teacher missed"


@dataclass(frozen=True, kw_only=True)
class Curve:
    """Dev accuracy during one phase: ``points`` are (step, accuracy), the last one at
    ``steps`` (the phase's end, the model's final accuracy)."""

    label: str  # e.g. "(2, 0) finetune"
    steps: int
    points: tuple[tuple[int, float], ...]

    @property
    def final(self) -> float:
        return self.points[-1][1]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Curve:  # Any: decoded JSON
        points = tuple((int(s), float(a)) for s, a in data["points"])
        return cls(label=str(data["label"]), steps=int(data["steps"]), points=points)

    def to_json(self) -> dict[str, object]:
        return {"label": self.label, "steps": self.steps, "points": [list(p) for p in self.points]}


def check_step(fraction: float, steps: int) -> int:
    """The step after which ``fraction`` of a phase of ``steps`` steps is done."""
    return round(fraction * steps)


@dataclass(frozen=True, kw_only=True)
class StopEvidence:
    """Why a training stopped: at ``step`` of ``steps`` of its ``phase`` (the model of
    ``point``), the best dev accuracy so far + margin was under the threshold."""

    point: GridPoint
    phase: StopPhase
    step: int
    steps: int
    accuracy: float
    margin: float
    threshold: float

    @property
    def bound(self) -> float:
        """The most the model's final accuracy can be."""
        return self.accuracy + self.margin

    def reason(self) -> str:
        if self.phase is StopPhase.TEACHER_MISSED:
            return (
                f"stopped before pruning: its teacher {self.point} ended at dev score "
                f"{self.accuracy:.4f}; + near miss {self.margin:.3f} = {self.bound:.4f} < "
                f"threshold {self.threshold:.4f}, and a pruned model does not beat its teacher"
            )
        return (
            f"stopped early: {self.point} {self.phase.value} at step {self.step}/{self.steps} had "
            f"best dev score {self.accuracy:.4f}; + margin {self.margin:.3f} = "
            f"{self.bound:.4f} < threshold {self.threshold:.4f}"
        )


class StoppedEarly(Exception):
    """Raised by a check that found the training hopeless; carries the evidence."""

    def __init__(self, evidence: StopEvidence) -> None:
        super().__init__(evidence.reason())
        self.evidence = evidence


@dataclass(frozen=True, kw_only=True)
class StopRule:
    """What a training needs to stop itself: the threshold in force and the margins."""

    threshold: float
    margins: tuple[tuple[float, float], ...] = tuple(sorted(MARGINS.items()))

    def checks(self, steps: int, evaluation_steps: float) -> dict[int, float]:
        """step -> margin, for a phase of ``steps`` steps whose dev evaluation costs about
        ``evaluation_steps`` training steps (a forward pass is about a third of a step); {}
        where the checks would cost more than ``MAX_CHECK_SHARE`` of the phase."""
        if evaluation_steps * len(self.margins) > MAX_CHECK_SHARE * steps:
            return {}
        return {
            check_step(f, steps): m for f, m in self.margins if 0 < check_step(f, steps) < steps
        }

    def hopeless(self, accuracy: float, margin: float) -> bool:
        return accuracy + margin < self.threshold - FEASIBILITY_TOLERANCE

    def teacher_misses(self, accuracy: float) -> bool:
        """Whether an (N, 0) teacher that ended at ``accuracy`` stops its pruned model before
        the pruning: when it misses by more than ``NEAR_MISS`` (a pruned model does not beat its
        teacher by more than the noise of one training)."""
        return self.hopeless(accuracy, NEAR_MISS)
