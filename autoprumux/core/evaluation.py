"""The paper's evaluation protocol for Auto-PruMUX (section 4.4, Tables 1-3).

Given a full results table of one task and which points count as training points:

- M_A: leave-one-out over the training points the accuracy model exists to predict (N > 1 and
  s > 0): fit the surface on the other training points, predict the one left out, and count
  predictions within ``accuracy_tolerance`` (1.5 points) of the measurement.
- M_T: with a throughput table from another task or run ("task 0"), the fraction of those
  points whose table throughput is within ``throughput_tolerance`` (20%) of this task's
  measurement; without one, leave-one-out on this task's own throughputs with the rule of
  :mod:`autoprumux.core.throughput`.
- Top-k: for each budget (0, 0.5%, ..., 10%) the true best point is the fastest measured point
  that meets the threshold (measured accuracy and measured throughput of this task); the
  prediction ranks all measured points with the accuracy model fitted on the training points
  only and the throughput model. Top-1 / top-3 hits count whether the true best is first / in
  the top 3.

A point that cannot be predicted (outside the hull once left out) is counted apart as
``unpredictable``, not as a hit or a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoprumux.core.budget import Budget, BudgetKind, budget_sweep
from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import BASELINE, PAPER_TRAIN_GRID, Grid, GridPoint
from autoprumux.core.recommender import Recommender
from autoprumux.core.records import Observations, ResultsTable
from autoprumux.core.surface import AccuracySurface
from autoprumux.core.throughput import ThroughputModel, ThroughputTable

PAPER_BUDGETS = budget_sweep()


@dataclass(frozen=True, kw_only=True)
class PointCheck:
    point: GridPoint
    measured: float
    predicted: float | None  # None: unpredictable
    within: bool


@dataclass(frozen=True, kw_only=True)
class ModelCheck:
    """One of M_A / M_T: how many held-out predictions fell within the tolerance."""

    tolerance: float  # absolute for accuracy, relative for throughput
    method: str  # "leave-one-out" or "table"
    checks: tuple[PointCheck, ...]

    @property
    def evaluated(self) -> int:
        return sum(c.predicted is not None for c in self.checks)

    @property
    def within(self) -> int:
        return sum(c.within for c in self.checks)

    @property
    def unpredictable(self) -> int:
        return len(self.checks) - self.evaluated

    @property
    def fraction(self) -> float | None:
        return self.within / self.evaluated if self.evaluated else None


@dataclass(frozen=True, kw_only=True)
class BudgetOutcome:
    budget: float
    threshold: float
    true_best: GridPoint
    predicted: tuple[GridPoint, ...]  # the predicted top-k, best first

    @property
    def top1_hit(self) -> bool:
        return bool(self.predicted) and self.predicted[0] == self.true_best

    @property
    def topk_hit(self) -> bool:
        return self.true_best in self.predicted


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    task: str
    train_points: tuple[GridPoint, ...]  # measured training points
    test_points: tuple[GridPoint, ...]  # every measured point (the candidates)
    budget_kind: BudgetKind
    top_k: int
    accuracy: ModelCheck  # M_A
    throughput: ModelCheck  # M_T
    budgets: tuple[BudgetOutcome, ...]

    @property
    def top1_rate(self) -> float:
        return sum(b.top1_hit for b in self.budgets) / len(self.budgets)

    @property
    def topk_rate(self) -> float:
        return sum(b.topk_hit for b in self.budgets) / len(self.budgets)


# a prediction exactly at the tolerance is within it, whatever the float rounding of the difference
TOLERANCE_SLACK = 1e-12


def accuracy_within(predicted: float | None, measured: float, tolerance: float) -> bool:
    """M_A's test: the predicted accuracy within ``tolerance`` (absolute) of the measured."""
    return predicted is not None and abs(predicted - measured) <= tolerance + TOLERANCE_SLACK


def throughput_within(predicted: float | None, measured: float, tolerance: float) -> bool:
    """M_T's test: the predicted throughput within ``tolerance`` (relative) of the measured."""
    return (
        predicted is not None
        and abs(predicted - measured) <= tolerance * measured + TOLERANCE_SLACK
    )


def results_grid(results: ResultsTable, task: str) -> Grid:
    """The grid a results table covers: the N values and sparsities of the task's rows, failed
    ones included (a failed point was trained: it belongs to the grid the table covers). The
    table has a row (1, 0) where evaluation is possible; without one, 1 and 0 are added so that
    the evaluation names that missing row rather than an empty grid."""
    records = results.for_task(task)
    return Grid(
        tuple(sorted({1} | {r.n for r in records})),
        tuple(sorted({0.0} | {r.sparsity for r in records})),
    )


def paper_rule_train_grid(grid: Grid) -> Grid:
    """The paper's training points (section 4.4) chosen by its rule from ``grid``: the
    baselines (every N at s = 0, and the N = 1 row), and for the sparsities every other
    non-zero one from the smallest, plus the largest, so the fitted surface spans the whole
    range. On the paper's grid 1,2,5,10 x 0,0.6,0.65,...,0.95 this is its training grid
    1,2,5,10 x 0,0.6,0.7,0.8,0.9,0.95."""
    pruned = [s for s in grid.sparsities if s > 0]
    chosen = {0.0, *pruned[::2], *pruned[-1:]}
    return Grid(grid.n_values, tuple(sorted(chosen)))


def check_train_grid_covered(train_grid: Grid, covered: Grid, source: str) -> None:
    """Refuse training points the results do not hold, which would silently fit the models on
    fewer points than asked (the baseline's 1 and 0 are left to the evaluation's own check)."""
    n_missing = [str(n) for n in train_grid.n_values if n not in covered.n_values]
    s_missing = [f"{s:g}" for s in train_grid.sparsities if s not in covered.sparsities]
    if n_missing or s_missing:
        missing = "; ".join(
            f"{name} {', '.join(values)}"
            for name, values in (("N", n_missing), ("s", s_missing))
            if values
        )
        raise FieldError(
            "--train-grid",
            f"{missing}: in no row of {source} (its grid: {covered.spec()}); give training "
            "points the results hold, or leave --train-grid out for the paper's rule on them",
        )


def evaluate(
    results: ResultsTable,
    task: str,
    train_grid: Grid = PAPER_TRAIN_GRID,
    throughput_table: ThroughputTable | None = None,
    budgets: Sequence[float] = PAPER_BUDGETS,
    budget_kind: BudgetKind = BudgetKind.ABSOLUTE,
    accuracy_tolerance: float = 0.015,
    throughput_tolerance: float = 0.20,
    top_k: int = 3,
) -> Evaluation:
    """Section 4.4: fit the models on ``train_grid``'s points of a full grid's ``results``,
    then check them against every measured point: M_A and M_T on the PruMUX points (N > 1,
    s > 0; leave-one-out), and the top-1 / top-k hits of each budget's recommendation."""
    if BASELINE not in train_grid:
        raise FieldError(
            "train_grid", f"{train_grid.spec()!r} lacks (1, 0); the threshold needs it"
        )
    full = results.observations(task)
    if BASELINE not in full.accuracy:
        raise DataError(results.source, f"has no complete (1, 0) row for task {task!r}")
    train = Observations(
        accuracy={p: v for p, v in full.accuracy.items() if p in train_grid},
        throughput={p: v for p, v in full.throughput.items() if p in train_grid},
        failed=frozenset(p for p in full.failed if p in train_grid),
        source=full.source,
    )
    loo_points = sorted(p for p in train.accuracy if p.n > 1 and p.sparsity > 0)
    own_throughput = ThroughputTable(full.throughput, {"task": task}, results.source)
    test_points = tuple(sorted(full.accuracy))
    truth = Recommender(top_k=1).fit(task, full, own_throughput)
    model = Recommender(top_k=top_k).fit(task, train, throughput_table or own_throughput)
    outcomes = []
    for value in budgets:
        budget = Budget(budget_kind, value)
        best = truth.recommend(budget, test_points)
        ranked = model.recommend(budget, test_points)
        outcomes.append(
            BudgetOutcome(
                budget=value,
                threshold=best.threshold,
                # (1, 0) is always feasible for a budget >= 0: there is a true best
                true_best=best.recommendations[0].point,
                predicted=tuple(r.point for r in ranked.recommendations),
            )
        )
    return Evaluation(
        task=task,
        train_points=tuple(sorted(train.accuracy)),
        test_points=test_points,
        budget_kind=budget_kind,
        top_k=top_k,
        accuracy=accuracy_check(full, train, loo_points, accuracy_tolerance),
        throughput=throughput_check(full, loo_points, throughput_table, throughput_tolerance),
        budgets=tuple(outcomes),
    )


def accuracy_check(
    full: Observations, train: Observations, points: Sequence[GridPoint], tolerance: float
) -> ModelCheck:
    """M_A: each point predicted by the accuracy surface fitted on the other training points."""
    checks = []
    for point in points:
        rest = train.without(point)
        predicted = AccuracySurface().fit(rest.accuracy, rest.failed).predict(point).value
        measured = full.accuracy[point]
        within = accuracy_within(predicted, measured, tolerance)
        checks.append(
            PointCheck(point=point, measured=measured, predicted=predicted, within=within)
        )
    return ModelCheck(tolerance=tolerance, method="leave-one-out", checks=tuple(checks))


def throughput_check(
    full: Observations,
    points: Sequence[GridPoint],
    table: ThroughputTable | None,
    tolerance: float,
) -> ModelCheck:
    """M_T: each point's throughput from ``table``, or without one predicted by the
    throughput model fitted on every other measured point."""
    checks = []
    for point in points:
        measured = full.throughput[point]
        if table is None:
            rest = full.without(point)
            predicted = ThroughputModel().fit(rest.throughput, rest.failed).predict(point).value
        else:
            predicted = table.model().predict(point).value
        within = throughput_within(predicted, measured, tolerance)
        checks.append(
            PointCheck(point=point, measured=measured, predicted=predicted, within=within)
        )
    method = "leave-one-out" if table is None else "table"
    return ModelCheck(tolerance=tolerance, method=method, checks=tuple(checks))
