"""The data of the HTML report: one pure function per figure or table (the renderer is
:mod:`autoprumux.report.html`). Everything here is tested on known inputs.

Every ``accuracy`` here holds the study's metric (:mod:`autoprumux.core.metrics`), which the
report names by :attr:`ReportInput.metric_label`: the dev figure, what the search chose on.
Where the study has a held-out test split, :attr:`ReportInput.test_scores` holds the figures the
search measured on it once it had answered (what to expect); no function here decides by them.

Candidates are (N, s, precision) points (:mod:`autoprumux.core.precision`): as ``predict`` and
the search rank them, the points the throughput table times, in each precision it times and the
trained models were evaluated in (:func:`ranked_precisions`, narrowed by
:attr:`ReportInput.precisions`); a study's within its grid. Results without such figures rank
fp32 only, as before precisions were an axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoprumux.core.answer import ModelPointer, TrainCommand, locate_model
from autoprumux.core.budget import FEASIBILITY_TOLERANCE, Budget, BudgetKind, budget_sweep
from autoprumux.core.evaluation import accuracy_within, throughput_within
from autoprumux.core.grid import BASELINE, Family, Grid, GridPoint
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Decision, Objective, Recommender
from autoprumux.core.records import HeldOutScore, Observations, TrialRecord, TrialStatus
from autoprumux.core.surface import AccuracySurface, ServedSurface
from autoprumux.core.surrogate import Source
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.driver import is_failure
from autoprumux.loop.store_contract import is_abandoned


def ranked_precisions(
    table: ThroughputTable | None, observations: Observations
) -> tuple[Precision, ...]:
    """The precisions worth ranking, fp32 first: fp32, and each other one that ``table``
    times and the trained models were evaluated in (a precision without a measured figure
    predicts no accuracy, one without a row no throughput)."""
    measured = {p.precision for p in observations.served_accuracy}
    timed = table.precisions if table is not None else (Precision.FP32,)
    return tuple(p for p in timed if p is Precision.FP32 or p in measured)


@dataclass(frozen=True, kw_only=True)
class ReportInput:
    title: str  # the study's name (user text: escaped by the renderer)
    task: str
    grid: Grid
    budget: Budget  # the budget the user asked for, in the metric's units
    observations: Observations  # measured metric / throughput, failed points
    table: ThroughputTable | None  # throughput of every candidate; None: no (1, 0) throughput
    records: Sequence[TrialRecord] = ()  # every training: the cost, and the models' folders
    provenance: Mapping[str, Any] = field(default_factory=dict)
    # how the search trained its points (a study's report); None for a results file, whose
    # study is unknown: a predicted answer then has no command to train it
    train: TrainCommand | None = None
    # what every "accuracy" of the report is: the study's metric ([study] metric), and for F1
    # the label it is of; a results file's is accuracy
    metric: Metric = Metric.ACCURACY
    positive_label: str = ""
    # the held-out test figures of the search's answer and top-3s (empty: no test split)
    test_scores: Mapping[GridPoint, HeldOutScore] = field(default_factory=dict)
    # the study's precisions ([deploy] precisions); empty: every one that ranked_precisions
    # finds in the table and the observations
    precisions: tuple[Precision, ...] = ()
    objective: Objective = Objective.THROUGHPUT  # what "fastest" means for the top-k
    # rank only the table's points within ``grid``, as the search ranks its study's (False: a
    # results file's, whose grid is only the one its rows form: every point the table times,
    # as predict ranks them without --grid)
    within_grid: bool = True
    # what the reader should know of where the figures come from (a recorded throughput table
    # gone, ...), in words: shown beside what is missing
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.table is not None:  # a static int8 model's row scaled to its file
            scaled = self.table.with_recipe_speeds(self.observations.recipe_speed)
            object.__setattr__(self, "table", scaled)

    @property
    def served(self) -> tuple[Precision, ...]:
        """The precisions the report ranks and draws, fp32 first."""
        found = ranked_precisions(self.table, self.observations)
        return tuple(p for p in found if not self.precisions or p in self.precisions)

    @property
    def candidates(self) -> tuple[GridPoint, ...]:
        """Every (N, s, precision) the report ranks, as predict and the search rank them: each
        point the throughput table times in a served precision (within the grid unless
        ``within_grid`` is False); none without a table (missing() says so)."""
        if self.table is None:
            return ()
        return tuple(
            p
            for p in self.table.points
            if p.precision in self.served and (not self.within_grid or p.trained in self.grid)
        )

    @property
    def timed_latency(self) -> bool:
        """Whether the throughput table measured any batch-1 latency of a served precision."""
        return self.table is not None and any(
            p.precision in self.served for p in self.table.latency
        )

    def recommender(self, top_k: int) -> Recommender:
        """The recommender of the report's tables (its inputs must not be missing())."""
        assert self.table is not None  # missing() says so otherwise
        return Recommender(top_k, self.objective).fit(self.task, self.observations, self.table)

    @property
    def metric_label(self) -> str:
        """How the report names the metric: ``accuracy``, ``macro-F1``, ``F1 of 'pos'``, ..."""
        return self.metric.label(self.positive_label)

    @property
    def baseline_accuracy(self) -> float | None:
        return self.observations.accuracy.get(BASELINE)

    @property
    def threshold(self) -> float | None:
        """The requested budget's threshold; None while it needs a baseline not yet trained."""
        base = self.baseline_accuracy
        if base is None and self.budget.needs_baseline:
            return None
        return self.budget.threshold(base)

    def missing(self) -> list[str]:
        """What the report cannot show, in words (empty when everything is there)."""
        problems = []
        if BASELINE in self.observations.failed:
            problems.append(self._baseline_failed())
        elif not self.observations.accuracy:
            problems.append("no trained point yet: the study is empty")
        elif BASELINE not in self.observations.accuracy:
            problems.append(f"no (1, 0) baseline: {self.metric_label} budgets and speedups need it")
        if self.table is None:
            problems.append("no (1, 0) throughput: speedups need it")
        return problems

    def _baseline_failed(self) -> str:
        """The (1, 0) baseline failed (and never completed): how often, and why the last time,
        in the words the search stops with."""
        failures = [r for r in self.records if r.point == BASELINE and is_failure(r)]
        tries = f" to train {len(failures)} time(s)" if failures else ""
        why = f", the last with {failures[-1].reason!r}" if failures and failures[-1].reason else ""
        need = f"{self.metric_label} budgets and speedups need it"
        return f"the (1, 0) baseline failed{tries}{why}: {need}"


@dataclass(frozen=True, kw_only=True)
class TradeoffPoint:
    point: GridPoint
    accuracy: float
    speedup: float
    measured: bool  # trained (accuracy measured) or predicted by the surface


def tradeoff(data: ReportInput) -> dict[Family, list[TradeoffPoint]]:
    """Figure 1's points, by family: measured and predicted accuracy vs speedup over (1, 0)
    fp32, for each (N, s, precision) the table times (its precision in ``point``)."""
    obs = data.observations
    surface = ServedSurface().fit(obs.accuracy, obs.failed, obs.served_accuracy)
    series: dict[Family, list[TradeoffPoint]] = {family: [] for family in Family}
    if data.table is None:
        return series
    base = data.table.baseline
    for point in sorted(data.candidates):
        throughput = data.table.throughput.get(point)
        prediction = surface.predict(point)
        if throughput is None or prediction.value is None:
            continue
        measured = prediction.source is Source.MEASURED
        series[point.family].append(
            TradeoffPoint(
                point=point, accuracy=prediction.value, speedup=throughput / base, measured=measured
            )
        )
    return series


def pareto_frontier(points: Sequence[TradeoffPoint]) -> list[TradeoffPoint]:
    """The points no other point beats on both accuracy and speedup, by accuracy descending
    (the renderer draws one per family and precision)."""
    frontier: list[TradeoffPoint] = []
    for candidate in sorted(points, key=lambda p: (-p.accuracy, -p.speedup)):
        if not frontier or candidate.speedup > frontier[-1].speedup:
            frontier.append(candidate)
    return frontier


@dataclass(frozen=True, kw_only=True)
class Answer:
    """The top-1 for the budget asked for: the report's answer box, marked in figure 1."""

    point: GridPoint  # (N, s, precision): the model and the precision to serve it in
    accuracy: float  # the metric; measured where trained, else predicted by the surface
    accuracy_measured: bool
    speedup: float  # throughput over (1, 0) fp32's, both from the report's throughput table
    threshold: float
    model: ModelPointer  # its model folder, or the command that trains it
    latency_s: float | None = None  # one request at batch 1, where the table measured it

    @property
    def bound(self) -> float | None:
        """Where its training stopped early (status stopped): the most its figure can be; the
        figure above is then predicted, and under this (None: not stopped, or trained since)."""
        return self.model.bound


@dataclass(frozen=True, kw_only=True)
class NoAnswer:
    """The budget asked for, met by no candidate: what ``predict`` says then."""

    threshold: float
    closest: GridPoint | None  # the candidate of highest metric (None: no figure known)
    closest_accuracy: float | None


def decision(data: ReportInput, top_k: int = 1) -> Decision | None:
    """The top-k for ``data.budget`` over the report's candidates; None where missing()."""
    if data.missing():
        return None
    return data.recommender(top_k).recommend(data.budget, data.candidates)


def answer(data: ReportInput) -> Answer | None:
    """The recommended point for ``data.budget``; None when nothing can be recommended."""
    ranked = decision(data)
    if ranked is None or not ranked.recommendations:
        return None
    top = ranked.recommendations[0]
    measured = top.accuracy_source is Source.MEASURED
    return Answer(
        point=top.point,
        accuracy=top.accuracy,
        accuracy_measured=measured,
        speedup=top.speedup,
        threshold=ranked.threshold,
        model=locate_model(top.point, data.records, data.train),
        latency_s=top.latency_s,
    )


def no_answer(data: ReportInput) -> NoAnswer | None:
    """When no candidate meets ``data.budget``: its threshold and the candidate closest to it
    (as predict names it); None when one does, or the inputs are missing (missing() says so)."""
    ranked = decision(data)
    if ranked is None or ranked.recommendations:
        return None
    closest = ranked.best_accuracy_candidate
    return NoAnswer(
        threshold=ranked.threshold,
        closest=closest.point if closest is not None else None,
        closest_accuracy=closest.accuracy.value if closest is not None else None,
    )


@dataclass(frozen=True, kw_only=True)
class BudgetRow:
    budget: float  # in ``kind``'s terms: 0.03 (absolute, relative) or a floor, 0.8
    requested: bool  # the budget the user asked for
    threshold: float
    # rank, point (N, s, precision), accuracy, accuracy_measured, bound (a training stopped
    # early: the most its figure can be; else None), and throughput (examples/s), speedup
    # (over (1, 0) fp32) and latency_s (one request at batch 1, None where not timed): from
    # the report's throughput table alone (a trial's own timing is another source)
    top: tuple[dict[str, Any], ...]
    kind: BudgetKind = BudgetKind.ABSOLUTE


def recommendations(data: ReportInput, top_k: int = 3) -> list[BudgetRow]:
    """Top-k over (N, s, precision) per budget 0, 0.5%, ..., 10% of the requested kind (a
    floor's: absolute), and the requested one; by threshold, highest first (a floor's row
    falls among the absolute ones by its threshold)."""
    if data.missing():
        return []
    recommender = data.recommender(top_k)
    kind = (
        data.budget.kind if data.budget.kind is not BudgetKind.MIN_ACCURACY else BudgetKind.ABSOLUTE
    )
    budgets = {Budget(kind, value) for value in budget_sweep()} | {data.budget}
    rows = [_budget_row(data, recommender, budget) for budget in budgets]
    return sorted(rows, key=lambda row: (-row.threshold, row.requested, row.budget))


def _budget_row(data: ReportInput, recommender: Recommender, budget: Budget) -> BudgetRow:
    """One budget's top-k (:func:`recommendations`)."""
    assert data.table is not None  # missing() says so otherwise
    ranked = recommender.recommend(budget, data.candidates)
    top = tuple(
        {
            "rank": r.rank,
            "point": r.point,
            "accuracy": r.accuracy,
            "accuracy_measured": r.accuracy_source is Source.MEASURED,
            "bound": data.observations.bounds.get(r.point.trained)
            if r.accuracy_source is not Source.MEASURED
            else None,
            "throughput": r.throughput,
            "speedup": r.throughput / data.table.baseline,
            "latency_s": r.latency_s,
        }
        for r in ranked.recommendations
    )
    return BudgetRow(
        budget=budget.value,
        kind=budget.kind,
        requested=budget == data.budget,
        threshold=ranked.threshold,
        top=top,
    )


def points_to_score(data: ReportInput, answer: GridPoint | None, top_k: int = 3) -> list[GridPoint]:
    """The points a held-out test scores: ``answer`` (the search's top-1) and the trained
    points of every budget's top-k (section 2's table, :func:`recommendations`); sorted.
    Each is the trained fp32 model (``GridPoint.trained``): a test figure is fp32's, and a
    top-k row served in another precision shows none."""
    points = {answer.trained} if answer is not None else set()
    for row in recommendations(data, top_k):
        points |= {item["point"].trained for item in row.top if item["accuracy_measured"]}
    return sorted(points)


@dataclass(frozen=True, kw_only=True)
class Heatmap:
    precision: Precision
    n_values: tuple[int, ...]
    sparsities: tuple[float, ...]
    accuracy: tuple[tuple[float | None, ...], ...]  # [len(n_values)][len(sparsities)]
    trained: tuple[GridPoint, ...]  # (N, s) whose figure in this precision is measured
    boundary: tuple[tuple[int, float | None], ...]  # per N: largest s predicted feasible


def surface_heatmaps(data: ReportInput) -> tuple[Heatmap, ...]:
    """The metric over the grid in each precision the report ranks, fp32 first: measured where
    trained, else predicted as the search predicts it (:class:`ServedSurface`)."""
    obs = data.observations
    surface = ServedSurface().fit(obs.accuracy, obs.failed, obs.served_accuracy)
    return tuple(_heatmap(data, surface, precision) for precision in data.served)


def _heatmap(data: ReportInput, surface: ServedSurface, precision: Precision) -> Heatmap:
    threshold = data.threshold
    rows, boundary = [], []
    for n in data.grid.n_values:
        values = tuple(
            surface.predict(GridPoint(n, s, precision)).value for s in data.grid.sparsities
        )
        rows.append(values)
        feasible = [
            s
            for s, v in zip(data.grid.sparsities, values, strict=True)
            if v is not None and threshold is not None and v >= threshold - FEASIBILITY_TOLERANCE
        ]
        boundary.append((n, max(feasible) if feasible else None))
    obs = data.observations
    measured = obs.accuracy if precision is Precision.FP32 else obs.served_accuracy
    trained = sorted(p.trained for p in measured if p.precision is precision)
    return Heatmap(
        precision=precision,
        n_values=data.grid.n_values,
        sparsities=data.grid.sparsities,
        accuracy=tuple(rows),
        trained=tuple(p for p in trained if p in data.grid),
        boundary=tuple(boundary),
    )


@dataclass(frozen=True, kw_only=True)
class QualityRow:
    point: GridPoint
    measured_accuracy: float
    predicted_accuracy: float | None
    measured_throughput: float | None
    table_throughput: float | None


def surrogate_quality(
    data: ReportInput, accuracy_tolerance: float = 0.015, throughput_tolerance: float = 0.20
) -> tuple[list[QualityRow], float | None, float | None]:
    """Leave-one-out accuracy predictions of trained PruMUX points (N > 1, s > 0) and the
    table's throughput against the measured one; returns (rows, M_A, M_T) - None when no
    point can be predicted."""
    obs = data.observations
    rows = []
    for point in sorted(p for p in obs.accuracy if p.n > 1 and p.sparsity > 0):
        rest = obs.without(point)
        estimate = AccuracySurface().fit(rest.accuracy, rest.failed).predict(point).value
        table = data.table.throughput.get(point) if data.table is not None else None
        rows.append(
            QualityRow(
                point=point,
                measured_accuracy=obs.accuracy[point],
                predicted_accuracy=estimate,
                measured_throughput=obs.throughput.get(point),
                table_throughput=table,
            )
        )
    predicted = [r for r in rows if r.predicted_accuracy is not None]
    m_a = (
        sum(
            accuracy_within(r.predicted_accuracy, r.measured_accuracy, accuracy_tolerance)
            for r in predicted
        )
        / len(predicted)
        if predicted
        else None
    )
    paired = [r for r in rows if r.measured_throughput and r.table_throughput]
    m_t = (
        sum(
            throughput_within(r.table_throughput, r.measured_throughput, throughput_tolerance)
            for r in paired
            if r.measured_throughput is not None
        )
        / len(paired)
        if paired
        else None
    )
    return rows, m_a, m_t


@dataclass(frozen=True, kw_only=True)
class DeltaCheck:
    """How well another precision's figure is predicted from fp32's: each trained model's
    change from fp32 in ``precision``, predicted leave-one-out from the other models' changes
    (the rule :class:`ServedSurface` predicts untrained points with), against the measured."""

    precision: Precision
    checked: int  # trained models with a figure in the precision and a predicted change
    within: int  # of them, predicted within the tolerance (absolute, in metric points)
    largest_error: float | None  # the largest |predicted - measured| change


def precision_quality(data: ReportInput, tolerance: float = 0.015) -> list[DeltaCheck]:
    """A :class:`DeltaCheck` for each precision but fp32 that the report ranks."""
    obs = data.observations
    checks = []
    for precision in data.served[1:]:
        pairs = []  # (predicted, measured) figures in the precision
        for point, value in obs.served_accuracy.items():
            base = obs.accuracy.get(point.trained)
            if point.precision is not precision or base is None:
                continue
            rest = {q: v for q, v in obs.served_accuracy.items() if q != point}
            delta = ServedSurface().fit(obs.accuracy, obs.failed, rest).delta(point)
            if delta is not None:
                pairs.append((base + delta, value))
        checks.append(
            DeltaCheck(
                precision=precision,
                checked=len(pairs),
                within=sum(accuracy_within(p, m, tolerance) for p, m in pairs),
                largest_error=max((abs(p - m) for p, m in pairs), default=None),
            )
        )
    return checks


@dataclass(frozen=True, kw_only=True)
class Hours:
    """Hours the study's trainings took, and the exhaustive grid's estimate: the mean of a
    training (those that recorded it) x the grid's size; None without a recorded training."""

    spent: float
    exhaustive: float | None

    @classmethod
    def of(cls, recorded: list[float], grid_size: int) -> Hours:
        mean = sum(recorded) / len(recorded) if recorded else None
        return cls(spent=sum(recorded), exhaustive=mean * grid_size if mean is not None else None)


@dataclass(frozen=True, kw_only=True)
class Cost:
    trained: int
    free: int  # recorded free: the (N, 0) teachers that trainings of (N, s) produced
    failed: int
    stopped: int  # stopped early: they could not reach the threshold in force
    skipped: int  # grid points never trained
    grid_size: int
    wall: Hours  # wall-clock hours of the trainings, on any device
    gpu: Hours  # GPU-hours: wall time x each trial's GPU share (0 for a CPU trial)


def cost(data: ReportInput) -> Cost:
    """What the study's records cost, counted as the search counts them: a trial closed
    untrained (interrupted, never started, superseded) is neither a training nor a failure.
    A free record (a teacher a training built) has no time of its own: it does not lower the
    mean cost of a training."""
    complete = [r for r in data.records if r.status is TrialStatus.COMPLETE]
    free = [r for r in complete if r.from_trial is not None]
    failed = [r for r in data.records if is_failure(r)]
    stopped = [r for r in data.records if r.status is TrialStatus.STOPPED and r.from_trial is None]
    touched = {r.point for r in data.records if not is_abandoned(r)}  # trained, or tried
    walls = [r.wall_time_s / 3600 for r in data.records if r.wall_time_s is not None]
    return Cost(
        trained=len(complete) - len(free) + len(stopped),
        free=len(free),
        failed=len(failed),
        stopped=len(stopped),
        skipped=len([p for p in data.grid if p not in touched]),
        grid_size=len(data.grid),
        wall=Hours.of(walls, len(data.grid)),
        gpu=Hours.of(
            [r.gpu_hours for r in data.records if r.gpu_hours is not None], len(data.grid)
        ),
    )
