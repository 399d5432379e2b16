"""Auto-PruMUX selection (paper section 4.3): the fastest (N, s) that meets the threshold.

zeta(N, s) = throughput(N, s) * g(accuracy(N, s)), with g = 1 when the accuracy is at least the
threshold and 0 otherwise. Candidates are ranked by predicted throughput, then by predicted
accuracy, then by (N, s) ascending, so ties always resolve the same way.

The candidates are (N, s, precision) points (:mod:`autoprumux.core.precision`): their accuracy
comes from the :class:`~autoprumux.core.surface.ServedSurface`, their throughput from the
table's rows of their precision. With ``Objective.LATENCY`` they are ranked by the seconds of
one request at batch 1 instead (lowest first; then throughput), where the table measured it.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from autoprumux.core.budget import FEASIBILITY_TOLERANCE, Budget
from autoprumux.core.errors import DataError, parse_choice
from autoprumux.core.grid import BASELINE, Family, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.records import Observations
from autoprumux.core.surface import ServedSurface
from autoprumux.core.surrogate import Prediction, Source
from autoprumux.core.throughput import ThroughputTable


class Objective(enum.Enum):
    """What "fastest" means: examples per second at full batches (the paper's), or the
    latency of one request at batch 1."""

    THROUGHPUT = "throughput"
    LATENCY = "latency"

    @classmethod
    def parse(cls, text: str, field: str = "objective") -> Objective:
        """An objective from its name; one line naming the allowed ones otherwise."""
        return parse_choice(cls, text, field)


class Exclusion(enum.Enum):
    """Why a candidate cannot be recommended."""

    BELOW_THRESHOLD = "below_threshold"
    STOPPED_SHORT = "stopped_short"  # its training stopped early, its bound under the threshold
    FAILED = "failed"  # the point was trained and failed
    # outside the measured hull, next to a failed point, or trained without a figure in its
    # precision (its int8 file refused)
    ACCURACY_UNKNOWN = "accuracy_unknown"
    THROUGHPUT_UNKNOWN = "throughput_unknown"  # no rule gives its throughput from the table
    LATENCY_UNKNOWN = "latency_unknown"  # ranked by latency, and the table has none for it

    @property
    def description(self) -> str:
        return {
            Exclusion.BELOW_THRESHOLD: "below the threshold",
            Exclusion.STOPPED_SHORT: "stopped early: cannot reach the threshold",
            Exclusion.FAILED: "failed to train",
            Exclusion.ACCURACY_UNKNOWN: "accuracy unknown (outside the measured hull, next to "
            "a failed point, or trained without a figure in its precision: its int8 file "
            "refused, or trained by a release that did not evaluate that precision)",
            Exclusion.THROUGHPUT_UNKNOWN: "throughput unknown (no row of the throughput table)",
            Exclusion.LATENCY_UNKNOWN: "latency unknown (the throughput table has no batch-1 "
            "latency for it)",
        }[self]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    point: GridPoint
    accuracy: Prediction
    throughput: Prediction
    latency: Prediction  # seconds for one request at batch 1
    exclusion: Exclusion | None  # None: feasible


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    rank: int  # 1 is best
    point: GridPoint
    accuracy: float  # fraction; measured or predicted, see accuracy_source
    accuracy_source: Source
    throughput: float  # examples per second, from the throughput model
    throughput_source: Source
    speedup: float  # throughput / throughput of (1, 0) in the same table
    measured_throughput: float | None  # this task's own measurement, where trained
    latency_s: float | None = None  # one request at batch 1, where the table measured it

    @property
    def family(self) -> Family:
        return self.point.family

    @property
    def precision(self) -> Precision:
        return self.point.precision


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The top-k for one budget, with everything needed to explain it."""

    task: str
    budget: Budget
    baseline_accuracy: float | None  # measured (1, 0) accuracy of the task
    threshold: float
    recommendations: tuple[Recommendation, ...]
    candidates: tuple[Candidate, ...]
    objective: Objective = Objective.THROUGHPUT

    @property
    def exclusions(self) -> dict[Exclusion, int]:
        counts = Counter(c.exclusion for c in self.candidates if c.exclusion is not None)
        return {reason: counts[reason] for reason in Exclusion if counts[reason]}

    @property
    def best_accuracy_candidate(self) -> Candidate | None:
        """The most accurate candidate with a known value: what to say when nothing is feasible."""
        known = [(c.accuracy.value, c) for c in self.candidates if c.accuracy.value is not None]
        return max(known, key=lambda known: known[0])[1] if known else None


class Recommender:
    """Fit on one task's observations and a throughput table; recommend the top-k per budget."""

    def __init__(self, top_k: int = 3, objective: Objective = Objective.THROUGHPUT) -> None:
        self.top_k = top_k
        self.objective = objective

    def fit(
        self, task: str, observations: Observations, throughput: ThroughputTable
    ) -> Recommender:
        self.task_ = task
        self.observations_ = observations
        # a trained model served by a static int8 file is ranked by that file's speed
        throughput = throughput.with_recipe_speeds(observations.recipe_speed)
        self.table_ = throughput
        self.surface_ = ServedSurface().fit(
            observations.accuracy, observations.failed, observations.served_accuracy
        )
        self.throughput_model_ = throughput.model()
        self.latency_model_ = throughput.latency_model()
        self.baseline_accuracy_ = observations.accuracy.get(BASELINE)
        return self

    def candidate(self, point: GridPoint, threshold: float) -> Candidate:
        accuracy = self.surface_.predict(point)
        throughput = self.throughput_model_.predict(point)
        latency = self.latency_model_.predict(point)
        # a training stopped early bounds its model's figure in every precision
        bound = self.observations_.bounds.get(point.trained, 1.0)
        if accuracy.source is Source.FAILED:
            exclusion: Exclusion | None = Exclusion.FAILED
        elif accuracy.value is None:
            exclusion = Exclusion.ACCURACY_UNKNOWN
        elif not throughput.known:
            exclusion = Exclusion.THROUGHPUT_UNKNOWN
        elif self.objective is Objective.LATENCY and not latency.known:
            exclusion = Exclusion.LATENCY_UNKNOWN
        elif accuracy.value < threshold - FEASIBILITY_TOLERANCE:
            exclusion = Exclusion.BELOW_THRESHOLD
        elif bound < threshold - FEASIBILITY_TOLERANCE:
            exclusion = Exclusion.STOPPED_SHORT  # predicted feasible, known not to be
        else:
            exclusion = None
        return Candidate(
            point=point,
            accuracy=accuracy,
            throughput=throughput,
            latency=latency,
            exclusion=exclusion,
        )

    def rank_key(self, candidate: Candidate) -> tuple[float, float, float, GridPoint]:
        """The order of feasible candidates, best first, by the objective."""
        speed, accuracy = -candidate.throughput.require(), -candidate.accuracy.require()
        if self.objective is Objective.LATENCY:
            return (candidate.latency.require(), speed, accuracy, candidate.point)
        return (speed, accuracy, 0.0, candidate.point)

    def recommend(self, budget: Budget, points: Iterable[GridPoint] | None = None) -> Decision:
        """Rank ``points`` (default: the throughput table's points, in all its precisions)
        for ``budget``."""
        if budget.needs_baseline and self.baseline_accuracy_ is None:
            raise DataError(
                self.observations_.source,
                f"has no complete (1, 0) row for task {self.task_!r}; the baseline accuracy "
                "is needed for this budget (or use --min-accuracy)",
            )
        threshold = budget.threshold(self.baseline_accuracy_)
        points = sorted(set(self.table_.points if points is None else points))
        candidates = tuple(self.candidate(p, threshold) for p in points)
        feasible = sorted((c for c in candidates if c.exclusion is None), key=self.rank_key)
        baseline_throughput = self.table_.baseline
        recommendations = tuple(
            Recommendation(
                rank=rank,
                point=c.point,
                accuracy=c.accuracy.require(),
                accuracy_source=c.accuracy.source,
                throughput=c.throughput.require(),
                throughput_source=c.throughput.source,
                speedup=c.throughput.require() / baseline_throughput,
                measured_throughput=self.observations_.throughput.get(c.point),
                latency_s=c.latency.value,
            )
            for rank, c in enumerate(feasible[: self.top_k], start=1)
        )
        return Decision(
            task=self.task_,
            budget=budget,
            baseline_accuracy=self.baseline_accuracy_,
            threshold=threshold,
            recommendations=recommendations,
            candidates=candidates,
            objective=self.objective,
        )
