"""Search efficiency in trainings and in cost, on replayed full grids: our proposer (the rule
before costs as issue 20 found it, "old", and the cost-aware one with its near miss, "new",
with and without early stopping) against the paper's fixed training grid and Optuna's TPE /
NSGA-II / random samplers given the same cost.

    .venv/bin/python benchmarks/bench_search.py [--seeds 10] [--accuracy-noise 0] \
        [--near-miss 0.01]
    .venv/bin/python benchmarks/bench_search.py --grid studies/results/sst2-tiny-grid.json \
        --budgets 0.01 0.02 0.03 0.04 0.05 0.06 0.08 0.10

Grids: ``autoprumux.testing.synthetic`` families (PruMUX loss = DataMUX loss + CoFi loss + noise,
points whose loss is too high fail to train), one per seed, on the paper's 4 x 9 grid; or a recorded
full grid with ``--grid`` (then one grid, the paper's training grid does not apply, and the fastest
point within each budget is printed for CoFi alone, DataMUX alone and PruMUX). Throughput is known
for every point (the family's expected speedup; the recorded throughput with --grid). A training of
(N, s) also gives (N, 0), the teacher it fine-tuned on the way.

Costs: a training pays for its N's warm-up unless a point of the row was trained, its (N, 0)
teacher unless trained, and its own phases. With --grid they are the seconds measured by
bench_learning_curves.py (``--costs``: each N's warm-up and teacher from its (N, 0) training,
each row's own part from its pruned training), and early stopping replays the recorded teacher
curves with the margins of ``autoprumux.core.early_stop``. On the synthetic family the cost model is
``synthetic_costs``: the forward units of studies/sst2.toml's recipe at the family's
throughput (no curves, so no early stopping). The proposer predicts costs as the search does
(``CostModel.for_study`` on the replayed records). For each budget: trainings and total cost
until each method stops, whether its verified best is the true best, the final recommendation's
top-1 / top-3, the paper's protocol, and each Optuna sampler's chance to train the true best
within the cost new+stop spent.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from autoprumux.core.budget import NEAR_MISS, Budget, BudgetKind, budget_sweep
from autoprumux.core.early_stop import Curve, StopRule
from autoprumux.core.grid import BASELINE, PAPER_GRID, PAPER_TRAIN_GRID, Grid, GridPoint
from autoprumux.core.recommender import Recommender
from autoprumux.core.records import Observations, TrialRecord, TrialStatus
from autoprumux.core.study import load_study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import read_results, read_throughput_table
from autoprumux.loop.costs import CostModel, PartCosts, Recipe, forward_units, recipe_of
from autoprumux.loop.proposer import ProbeRule, Proposer, SearchState
from autoprumux.testing.synthetic import SyntheticFamily, synthetic_results


@dataclass(frozen=True, kw_only=True)
class Costs:
    """What each training really costs in a replay: the seconds of every point's parts with
    nothing built (``parts``), and the learning curves of the (N, 0) teachers' fine-tuning
    that early stopping reads (``teacher_curves``, by N)."""

    parts: Mapping[GridPoint, PartCosts]
    recipe: Recipe  # what the proposer's cost model predicts from
    teacher_curves: Mapping[int, Curve] = field(default_factory=dict)
    # a dev evaluation, in training steps, by N (StopRule.checks)
    evaluation_steps: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Run:
    trained: int
    cost: float  # seconds (or the synthetic model's units)
    found: GridPoint | None
    top: list[GridPoint]
    stopped: int  # trainings stopped early


def simulate(
    truth: dict,  # type: ignore[type-arg]
    speed: dict,  # type: ignore[type-arg]
    budget: float,
    costs: Costs,
    proposer: Proposer,
    early_stop: bool,
) -> Run:
    """One search replayed on a full grid: the proposer's choices, what each training costs
    given what earlier ones built, and (with ``early_stop``) teachers stopped where their
    recorded curve shows they cannot reach the threshold."""
    accuracy: dict[GridPoint, float] = {}
    failed: set[GridPoint] = set()
    bounds: dict[GridPoint, float] = {}
    records: list[TrialRecord] = []
    threshold, spent, stopped = None, 0.0, 0
    warm_rows: set[int] = set()
    rule = proposer.rule
    while True:
        state = _state(speed, accuracy, failed, bounds, threshold, costs, records, rule)
        batch = proposer.propose(state)
        if not batch:
            break
        point = batch[0]
        teacher = GridPoint(point.n, 0.0)
        warmup, teacher_s, own = charged(costs, point, point.n in warm_rows, teacher in accuracy)
        warm_rows.add(point.n)
        stop: Stop | None = None
        curve = _teacher_stop(costs, point.n, threshold) if early_stop and teacher_s else None
        if curve is not None:  # the teacher's fine-tuning stops: a miss for both
            stop, stop_bounds = _stopped(*curve, point, teacher)
            teacher_s, own = teacher_s * stop.fraction, 0.0
        elif early_stop and point != teacher and _misses(truth.get(teacher), threshold):
            # its teacher ends more than a near miss under the threshold: it stops before its
            # own phases (early_stop.StopPhase.TEACHER_MISSED), a miss bounded by the teacher's
            # accuracy + NEAR_MISS
            stop, stop_bounds = _stopped(1.0, truth.get(teacher, 0.0) + NEAR_MISS, point)
            own = 0.0
            if teacher in truth:
                accuracy[teacher] = truth[teacher]
        if stop is not None:
            bounds.update(stop_bounds)
            stopped += 1
        spent += warmup + teacher_s + own
        record_costs = {"warmup_s": warmup, "teacher_s": teacher_s, "own_s": own}
        if stop is not None:
            records.append(_stopped_record(point, stop.bound, record_costs))
        elif point in truth:
            accuracy[point] = truth[point]
            # as the search driver does: an (N, s) training's (N, 0) teacher is recorded free
            if teacher in truth and teacher in speed:
                accuracy.setdefault(teacher, truth[teacher])
            records.append(
                TrialRecord(
                    task="t",
                    n=point.n,
                    sparsity=point.sparsity,
                    accuracy=truth[point],
                    throughput=speed[point],
                    **record_costs,
                )
            )
        else:
            failed.add(point)
        if point == BASELINE:
            threshold = accuracy[point] - budget
    state = _state(speed, accuracy, failed, bounds, threshold, costs, records, rule)
    missed = failed | set(state.stopped_short())
    top = recommend(accuracy, missed, speed, budget, list(speed))
    return Run(
        trained=len(records) + len(failed),
        cost=spent,
        found=proposer.status(state).best,
        top=top,
        stopped=stopped,
    )


class Stop(NamedTuple):
    """Where a replayed training stopped early."""

    fraction: float  # of its teacher's fine-tuning done
    bound: float  # the most its accuracy can be


def _stopped(
    fraction: float, bound: float, *missed: GridPoint
) -> tuple[Stop, dict[GridPoint, float]]:
    """A training stopped early, and the accuracy bound of each point it shows to miss."""
    return Stop(fraction, bound), dict.fromkeys(missed, bound)


def _misses(accuracy: float | None, threshold: float | None) -> bool:
    """A teacher that stops its pruned points (``StopRule.teacher_misses``)."""
    if threshold is None:
        return False
    return accuracy is None or StopRule(threshold=threshold).teacher_misses(accuracy)


def _state(speed, accuracy, failed, bounds, threshold, costs, records, rule) -> SearchState:  # type: ignore[no-untyped-def]
    model = (
        CostModel.for_study(costs.recipe, speed, records)
        if rule is ProbeRule.SETTLED_PER_SECOND
        else None
    )
    return SearchState(
        candidates=speed,
        accuracy=dict(accuracy),
        failed=frozenset(failed),
        threshold=threshold,
        bounds=dict(bounds),
        costs=model,
    )


def _teacher_stop(costs: Costs, n: int, threshold: float | None) -> tuple[float, float] | None:
    """(fraction of the fine-tuning done, accuracy bound) where the recorded curve of the
    (N, 0) teacher stops under the threshold; None where it runs to the end."""
    curve = costs.teacher_curves.get(n)
    if threshold is None or curve is None:
        return None
    rule = StopRule(threshold=threshold)
    checks = rule.checks(curve.steps, costs.evaluation_steps.get(n, 0.0))
    for step, margin in sorted(checks.items()):
        accuracy = next((a for s, a in curve.points if s == step), None)
        if accuracy is not None and rule.hopeless(accuracy, margin):
            return step / curve.steps, accuracy + margin
    return None


def _stopped_record(point: GridPoint, bound: float, record_costs: dict) -> TrialRecord:  # type: ignore[type-arg]
    return TrialRecord(
        task="t",
        n=point.n,
        sparsity=point.sparsity,
        status=TrialStatus.STOPPED,
        stop_step=0,
        stop_accuracy=bound,
        stop_margin=0.0,
        **record_costs,
    )


def charged(
    costs: Costs, point: GridPoint, warm: bool, teacher_built: bool
) -> tuple[float, float, float]:
    """Seconds a training of ``point`` pays for (warm-up, teacher, own phases): its warm-up
    unless its row is ``warm``, its (N, 0) teacher unless built, and its own phases."""
    teacher = GridPoint(point.n, 0.0)
    return (
        0.0 if warm else costs.parts[point].warmup,
        0.0 if teacher_built else costs.parts[teacher].teacher,
        costs.parts[point].own,
    )


def training_cost(costs: Costs, point: GridPoint, built: set[GridPoint]) -> float:
    """What training ``point`` costs after the points in ``built`` (no early stopping)."""
    warm = any(p.n == point.n for p in built)
    return sum(charged(costs, point, warm, GridPoint(point.n, 0.0) in built))


def least_cost(
    truth: dict,  # type: ignore[type-arg]
    failed: set,  # type: ignore[type-arg]
    speed: dict,  # type: ignore[type-arg]
    threshold: float,
    costs: Costs,
    best: GridPoint | None,
    near_miss: float,
) -> float:
    """The least any search pays, in full trainings, to verify the true best: the cheapest set
    of points (with the baseline) whose true results leave the proposer's monotone rules
    (``Proposer.status`` without surface predictions) nothing open and ``best`` as the best
    verified point. Exhaustive over the grid's subsets (smallest first, skipping any set that
    costs more than the cheapest found), so for small grids only: the tiny grid's 17 points
    take seconds. Each row's warm-up and teacher are paid
    once; a training of (N, s) also gives (N, 0)."""
    others = sorted(p for p in speed if p != BASELINE)
    oracle = Proposer(min_chance=0.0, near_miss=near_miss)

    def cost(points: tuple[GridPoint, ...]) -> float:
        total, opened = 0.0, set()  # rows whose warm-up and teacher are paid
        for point in (BASELINE, *points):
            total += sum(charged(costs, point, point.n in opened, point.n in opened))
            opened.add(point.n)
        return total

    def verifies(points: tuple[GridPoint, ...]) -> bool:
        trained = {BASELINE, *points, *(GridPoint(p.n, 0.0) for p in points)}
        state = SearchState(
            candidates=speed,
            accuracy={p: truth[p] for p in trained if p in truth},
            failed=frozenset(p for p in trained if p in failed),
            threshold=threshold,
        )
        status = oracle.status(state)
        return status.done and status.best == best

    least = math.inf
    for size in range(len(others) + 1):
        for points in itertools.combinations(others, size):
            if (spent := cost(points)) < least and verifies(points):
                least = spent
    return least


def recommend(accuracy: dict, failed: set, speed: dict, budget: float, points: list) -> list:  # type: ignore[type-arg]
    table = ThroughputTable(speed)
    observations = Observations(
        accuracy=accuracy, throughput={p: speed[p] for p in accuracy}, failed=frozenset(failed)
    )
    decision = (
        Recommender(3)
        .fit("t", observations, table)
        .recommend(Budget(BudgetKind.ABSOLUTE, budget), points)
    )
    return [r.point for r in decision.recommendations]


def sampler_hit(
    name: str,
    truth: dict,  # type: ignore[type-arg]
    speed: dict,  # type: ignore[type-arg]
    threshold: float,
    cost_budget: float,
    costs: Costs,
    best: GridPoint,
    seed: int,
    grid: Grid,
) -> bool:
    """Whether an Optuna sampler trains the true best before it has spent ``cost_budget``
    (each training charged as ours are: its warm-up and teacher unless built, its own part)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    constraints = lambda t: [t.user_attrs["violation"]]  # noqa: E731
    built: set[GridPoint] = set()
    hit = False
    spent = 0.0

    def objective(trial):  # type: ignore[no-untyped-def]
        nonlocal spent, hit
        point = GridPoint(
            trial.suggest_categorical("n", list(grid.n_values)),
            trial.suggest_categorical("sparsity", list(grid.sparsities)),
        )
        cost = training_cost(costs, point, built)
        if spent + cost > cost_budget * (1 + 1e-9):
            trial.study.stop()  # the next training would not fit: it is not trained
            trial.set_user_attr("violation", 1.0)
            return 0.0
        spent += cost
        built.update({point, GridPoint(point.n, 0.0)})  # its teacher comes free, as in ours
        hit = hit or point == best
        accuracy = truth.get(point, 0.0)
        trial.set_user_attr("violation", threshold - accuracy)
        return speed[point]

    with warnings.catch_warnings():  # constraints_func is deprecated in Optuna 5, still works
        warnings.simplefilter("ignore")
        sampler = {
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constraints_func=constraints),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        }[name]()
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=len(grid) * 4)
    return hit


def ground_truths(args: argparse.Namespace) -> list[tuple[dict, set, dict, Grid]]:  # type: ignore[type-arg]
    """(accuracy, failed points, throughput, grid) of each replayed full grid."""
    if args.grid:
        results = read_results(args.grid)
        observed = results.observations(results.resolve_task(None))
        points = set(observed.accuracy) | set(observed.failed)
        grid = Grid(tuple({p.n for p in points}), tuple({p.sparsity for p in points}))
        if set(grid) != points:
            raise SystemExit(f"{args.grid} is not a full grid: {len(points)} of {len(grid)}")
        speed = dict(observed.throughput)
        if observed.failed:  # a failed point has no measured throughput: the table's estimate
            if not args.throughput:
                raise SystemExit("the grid has failed points: give --throughput TABLE for them")
            table = read_throughput_table(args.throughput)
            missing = [p for p in observed.failed if p not in table.throughput]
            if missing:
                raise SystemExit(f"{args.throughput} has no throughput for {missing[0]}")
            speed.update({p: table.throughput[p] for p in observed.failed})
        return [(dict(observed.accuracy), set(observed.failed), speed, grid)]
    family = SyntheticFamily()
    if args.accuracy_noise is not None:
        family = dataclasses.replace(family, accuracy_noise=args.accuracy_noise)
    speed = {p: 1000 * family.expected_speedup(p) for p in PAPER_GRID}
    truths = []
    for seed in range(args.seeds):
        observed = synthetic_results(family=family, seed=seed).observations("sst2")
        truths.append((dict(observed.accuracy), set(observed.failed), speed, PAPER_GRID))
    return truths


def best_of(truth: dict, speed: dict, threshold: float, family) -> GridPoint | None:  # type: ignore[no-untyped-def,type-arg]
    feasible = [p for p, a in truth.items() if a >= threshold - 1e-9 and family(p)]
    return max(feasible, key=lambda p: (speed[p], truth[p]), default=None)


FAMILIES = {
    "CoFi (N=1)": lambda p: p.n == 1,
    "DataMUX (s=0)": lambda p: p.sparsity == 0,
    "PruMUX (any)": lambda p: True,
}


def print_families(truth: dict, speed: dict, budgets: tuple[float, ...]) -> None:  # type: ignore[type-arg]
    """The paper's headline on the ground truth: the fastest point within each budget, of all
    points and of each method alone, as a speedup over (1, 0)."""
    base = speed[BASELINE]
    print(f"\nfastest point within the budget (baseline accuracy {truth[BASELINE]:.4f}):")
    print(f"{'budget':>7} " + " ".join(f"{name:>26}" for name in FAMILIES))
    for budget in budgets:
        cells = []
        for family in FAMILIES.values():
            best = best_of(truth, speed, truth[BASELINE] - budget, family)
            cells.append(
                "-"
                if best is None
                else f"({best.n}, {best.sparsity:g}) {speed[best] / base:.2f}x {truth[best]:.4f}"
            )
        print(f"{budget:>7.3f} " + " ".join(f"{c:>26}" for c in cells))


def tiny_grid_costs(
    path: str,
    study_path: str,
    grid: Grid,
    speed: dict,  # type: ignore[type-arg]
    predicted_rows: frozenset[int] = frozenset(),
) -> Costs:
    """The real costs of the tiny grid, as far as they were measured (``--costs``, written by
    bench_learning_curves.py, plus the bare command's pruned trainings): each N's warm-up and
    teacher from its (N, 0) training, each pruned point's own part from its training or, in a
    row with pruned trainings, the linear interpolation in s of their own parts (the nearest
    one beyond the ends). What was not measured — a row without its (N, 0) training, or without
    any pruned one — is the search's own cost model (``CostModel.for_study``) calibrated on the
    measured trainings: the forward units of the study's recipe at the grid's throughput, times
    the seconds per unit those trainings took. So are the rows in ``predicted_rows`` (measured
    beside other work, their seconds say little); their curves are used all the same."""
    data = json.loads(Path(path).read_text())
    recorded = {GridPoint(t["n"], t["sparsity"]): t for t in data["trainings"]}
    trainings = {p: t for p, t in recorded.items() if p.n not in predicted_rows}
    study = load_study(study_path)
    recipe = recipe_of(study)
    measured_records = [
        TrialRecord(
            task="sst2",
            n=p.n,
            sparsity=p.sparsity,
            accuracy=t["accuracy"],
            throughput=speed[p],
            warmup_s=t["warmup_s"],
            teacher_s=t["teacher_s"],
            own_s=t["own_s"],
        )
        for p, t in trainings.items()
        if t["status"] == "complete"
    ]
    model = CostModel.for_study(recipe, speed, measured_records)
    parts: dict[GridPoint, PartCosts] = {}
    curves: dict[int, Curve] = {}
    for n in grid.n_values:
        teacher = trainings.get(GridPoint(n, 0.0))
        curved = recorded.get(GridPoint(n, 0.0))
        for curve in curved["curves"] if curved else []:
            if curve["label"].startswith(f"({n}, 0)"):
                curves[n] = Curve.from_json(curve)
        measured = sorted(
            (p.sparsity, t["own_s"]) for p, t in trainings.items() if p.n == n and p.sparsity > 0
        )
        for sparsity in grid.sparsities:
            point = GridPoint(n, sparsity)
            predicted = model.parts[point]
            if sparsity == 0:
                own = teacher["own_s"] if teacher else predicted.own
            else:
                own = _interpolate(measured, sparsity) if measured else predicted.own
            parts[point] = PartCosts(
                warmup=teacher["warmup_s"] if teacher else predicted.warmup,
                teacher=teacher["teacher_s"] if teacher else predicted.teacher,
                own=own,
            )
    dev_examples, rows = 872, study.training.batch_rows  # SST-2's dev set
    evaluation = {n: math.ceil(dev_examples / (rows * n)) / 3 for n in grid.n_values}
    return Costs(parts=parts, recipe=recipe, teacher_curves=curves, evaluation_steps=evaluation)


def _interpolate(measured: list[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in zip(measured, measured[1:], strict=False):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return measured[0][1] if x < measured[0][0] else measured[-1][1]


def _change(cost: float, old: float) -> str:
    """The change from ``old`` in words: "28% less" or "7% more"."""
    return f"{abs(1 - cost / old):.0%} {'less' if cost <= old else 'more'}"


def synthetic_costs(speed: dict) -> Costs:  # type: ignore[type-arg]
    """The synthetic family's cost model: the forward units of the paper-scale recipe
    (studies/sst2.toml: BERT-base epochs on all of SST-2) at the family's throughput, i.e.
    seconds on a machine whose inference runs at the synthetic table's speed. No curves: no
    early stopping."""
    recipe = recipe_of(load_study("studies/sst2.toml"))
    return Costs(parts={p: forward_units(recipe, speed, p) for p in speed}, recipe=recipe)


METHOD_NAMES = ("old", "new", "new+stop")


def methods(near_miss: float) -> dict[str, tuple[Proposer, bool]]:
    """name -> (proposer, early stopping). "old" is the proposer before costs as it was (issue
    20's "today's proposer"): throughput x chance, a 1-point spread, every miss ruling out the
    more compressed points; "new" is the search's own with ``near_miss``."""
    new = Proposer(near_miss=near_miss)
    return {
        "old": (Proposer(0.01, rule=ProbeRule.THROUGHPUT_X_CHANCE, near_miss=0.0), False),
        "new": (new, False),
        "new+stop": (new, True),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--accuracy-noise",
        type=float,
        help="the synthetic family's accuracy noise (standard deviation; default 0.003); at 0 "
        "its grids are exactly monotone",
    )
    parser.add_argument(
        "--near-miss",
        type=float,
        default=NEAR_MISS,
        help="new's near miss: a miss by less leaves its neighbours open (default %(default)s; "
        "0: every miss rules out every more compressed point)",
    )
    parser.add_argument("--samplers", nargs="*", default=["tpe", "nsga2", "random"])
    parser.add_argument("--grid", help="a recorded full-grid results table to replay")
    parser.add_argument(
        "--costs",
        default="studies/results/sst2-tiny-curves.json",
        help="with --grid: the learning-curves run whose measured costs and curves it uses",
    )
    parser.add_argument("--study", default="studies/sst2-tiny.toml", help="with --grid")
    parser.add_argument(
        "--predicted-rows",
        nargs="*",
        type=int,
        default=[],
        help="with --grid: N values whose measured seconds are not used (priced by the cost "
        "model: measured beside other work); their learning curves still are",
    )
    parser.add_argument("--throughput", help="table for the grid's failed points")
    parser.add_argument(
        "--budgets", nargs="*", type=float, help="absolute budgets (default: 0, 0.5%%, ..., 10%%)"
    )
    args = parser.parse_args()
    budgets = tuple(args.budgets) if args.budgets else budget_sweep()
    rows = []
    truths = ground_truths(args)
    for seed, (truth, failed_truth, speed, grid) in enumerate(truths):
        costs = (
            tiny_grid_costs(args.costs, args.study, grid, speed, frozenset(args.predicted_rows))
            if args.grid
            else synthetic_costs(speed)
        )
        for budget in budgets:
            threshold = truth[BASELINE] - budget
            best = best_of(truth, speed, threshold, lambda p: True)
            row: dict = {"seed": seed, "budget": budget, "best": best}  # type: ignore[type-arg]
            for method, (proposer, early_stop) in methods(args.near_miss).items():
                run = simulate(truth, speed, budget, costs, proposer, early_stop)
                row[method] = run
                row[method + " exact"] = run.found == best
                row[method + " top1"] = bool(run.top) and run.top[0] == best
                row[method + " top3"] = best in run.top
            if args.grid:
                row["least"] = least_cost(
                    truth, failed_truth, speed, threshold, costs, best, args.near_miss
                )
            else:
                paper_train = {p: a for p, a in truth.items() if p in PAPER_TRAIN_GRID}
                paper_top = recommend(
                    paper_train,
                    {p for p in failed_truth if p in PAPER_TRAIN_GRID},
                    speed,
                    budget,
                    list(truth),
                )
                row["paper_top1"] = bool(paper_top) and paper_top[0] == best
                row["paper_top3"] = best in paper_top
            ours = row["new+stop"].cost
            for name in args.samplers:
                row[name] = sampler_hit(
                    name, truth, speed, threshold, ours, costs, best, seed, grid
                )
            rows.append(row)
        print(f"grid {seed} done", flush=True)
    report(rows, truths, budgets, args)


def report(rows: list, truths: list, budgets: tuple, args: argparse.Namespace) -> None:  # type: ignore[type-arg]
    def rate(key: str, subset: list) -> str:  # type: ignore[type-arg]
        return f"{sum(r[key] for r in subset) / len(subset):.0%}"

    unit = "s" if args.grid else "u"
    grid = truths[0][3]
    source = args.grid or f"{args.seeds} synthetic grids"
    print(
        f"\n{len(rows)} searches ({source} x {len(budgets)} budgets), "
        f"grid {len(grid.n_values)} x {len(grid.sparsities)} = {len(grid)} points; cost in "
        + (
            f"measured seconds ({args.costs})"
            if args.grid
            else "units of the stated model (bench_search.synthetic_costs)"
        )
        + "; old = throughput x chance, every training one; new = settled per predicted "
        "second; +stop = early stopping (where curves were recorded); a sampler hits if it "
        "trains the true best within new+stop's cost"
    )
    header = f"{'budget':>7}"
    for method in METHOD_NAMES:
        header += f" {method + ' trainings':>18} {method + ' cost':>15} {'exact':>6}"
    header += f" {'top-1':>6} {'top-3':>6}"
    header += f" {'paper top-1/3':>14}" if not args.grid else f" {'true best':>10} {'least':>8}"
    header += "".join(f" {name + ' hit':>10}" for name in args.samplers)
    print(header)
    for budget in [*budgets, None]:
        subset = [r for r in rows if budget is None or r["budget"] == budget]
        line = f"{'all' if budget is None else f'{budget:.3f}':>7}"
        for method in METHOD_NAMES:
            trained = statistics.median(r[method].trained for r in subset)
            cost = sum(r[method].cost for r in subset) / (1 if args.grid else len(subset))
            line += f" {trained:>18g} {cost:>14,.0f}{unit} {rate(method + ' exact', subset):>6}"
        line += f" {rate('new+stop top1', subset):>6} {rate('new+stop top3', subset):>6}"
        if not args.grid:
            line += f" {rate('paper_top1', subset) + ' / ' + rate('paper_top3', subset):>14}"
        else:
            best = _point(subset[0]["best"]) if budget is not None else ""
            line += f" {best:>10} {sum(r['least'] for r in subset):>7,.0f}{unit}"
        line += "".join(f" {rate(name, subset):>10}" for name in args.samplers)
        print(line)
    old = sum(r["old"].cost for r in rows)
    for method in ("new", "new+stop"):
        new = sum(r[method].cost for r in rows)
        more = sum(r[method].cost > r["old"].cost * (1 + 1e-9) for r in rows)
        lost = sum(r["old exact"] and not r[method + " exact"] for r in rows)
        won = sum(r[method + " exact"] and not r["old exact"] for r in rows)
        print(
            f"{method}: total cost {new:,.0f}{unit} vs old {old:,.0f}{unit} "
            f"({_change(new, old)}); costs more than old in {more} of {len(rows)} searches; "
            f"wrong where old is right in {lost}, right where old is wrong in {won}"
        )
    if args.grid:
        least = sum(r["least"] for r in rows)
        print(
            f"least possible (full trainings that verify the true best, bench_search.least_cost): "
            f"total {least:,.0f}{unit} ({_change(least, old)} than old)"
        )
    stopped = sum(r["new+stop"].stopped for r in rows)
    print(f"trainings stopped early by new+stop: {stopped}")
    if args.grid:
        print_families(truths[0][0], truths[0][2], budgets)


def _point(point: GridPoint | None) -> str:
    return "-" if point is None else f"({point.n}, {point.sparsity:g})"


if __name__ == "__main__":
    main()
