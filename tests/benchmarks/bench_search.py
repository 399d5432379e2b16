"""Search efficiency on replayed synthetic full grids, against the paper's fixed training grid
and Optuna's TPE / NSGA-II / random samplers given the same number of trainings.

    .venv/bin/python tests/benchmarks/bench_search.py [--seeds 10]
    .venv/bin/python tests/benchmarks/bench_search.py --grid studies/results/sst2-tiny-grid.json \
        --budgets 0.01 0.02 0.03 0.05

Grids: ``autoprumux.synthetic`` families (PruMUX loss = DataMUX loss + CoFi loss + noise, points
whose loss is too high fail to train), one per seed, on the paper's 4 x 9 grid; or a recorded
full grid with ``--grid`` (then one grid, the paper's training grid does not apply, and the
fastest point within each budget is printed for CoFi alone, DataMUX alone and PruMUX).
Throughput is known for every point (the family's expected speedup; the recorded throughput with
--grid). For each budget: our proposer's trainings until it stops, whether its verified best is
the true best, and whether the final recommendation's top-1 / top-3 hold the true best; the
paper's protocol (train the 24-point training grid, recommend with the surface); and each
Optuna sampler's chance to have trained the true best within as many trainings as ours needed.
A training of (N, s) also gives (N, 0), the teacher it fine-tuned on the way, to every method.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

from autoprumux.budget import Budget, BudgetKind, budget_sweep
from autoprumux.grid import BASELINE, PAPER_GRID, PAPER_TRAIN_GRID, Grid, GridPoint
from autoprumux.proposer import Proposer, SearchState
from autoprumux.recommender import Recommender
from autoprumux.records import Observations
from autoprumux.results_io import read_results
from autoprumux.synthetic import SyntheticFamily, synthetic_results
from autoprumux.throughput import ThroughputTable, read_throughput_table


def simulate(
    truth: dict, failed_truth: set, speed: dict, budget: float
) -> tuple[int, GridPoint | None, list]:  # type: ignore[type-arg]
    accuracy, failed, threshold, trained = {}, set(), None, 0
    proposer = Proposer()
    while True:
        batch = proposer.propose(
            SearchState(speed, accuracy, frozenset(failed), frozenset(), threshold)
        )
        if not batch:
            break
        point = batch[0]
        trained += 1
        if point in truth:
            accuracy[point] = truth[point]
            # as the search driver does: an (N, s) training's (N, 0) teacher is recorded free
            teacher = GridPoint(point.n, 0.0)
            if teacher in truth and teacher in speed:
                accuracy.setdefault(teacher, truth[teacher])
        else:
            failed.add(point)
        if point == BASELINE:
            threshold = accuracy[point] - budget
    state = SearchState(speed, accuracy, frozenset(failed), frozenset(), threshold)
    top = recommend(accuracy, failed, speed, budget, list(speed))
    return trained, proposer.status(state).best, top


def recommend(accuracy: dict, failed: set, speed: dict, budget: float, points: list) -> list:  # type: ignore[type-arg]
    table = ThroughputTable(speed)
    observations = Observations(accuracy, {p: speed[p] for p in accuracy}, frozenset(failed))
    decision = (
        Recommender(3)
        .fit("t", observations, table)
        .recommend(Budget(BudgetKind.ABSOLUTE, budget), points)
    )
    return [r.point for r in decision.recommendations]


def sampler_hit(
    name: str,
    truth: dict,
    speed: dict,
    threshold: float,
    trials: int,
    best: GridPoint,
    seed: int,
    grid: Grid,
) -> bool:  # type: ignore[type-arg]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    constraints = lambda t: [t.user_attrs["violation"]]  # noqa: E731
    seen = set()

    def objective(trial):  # type: ignore[no-untyped-def]
        point = GridPoint(
            trial.suggest_categorical("n", list(grid.n_values)),
            trial.suggest_categorical("sparsity", list(grid.sparsities)),
        )
        seen.update({point, GridPoint(point.n, 0.0)})  # its teacher comes free, as in ours
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
        study.optimize(objective, n_trials=trials)
    return best in seen


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--samplers", nargs="*", default=["tpe", "nsga2", "random"])
    parser.add_argument("--grid", help="a recorded full-grid results table to replay")
    parser.add_argument("--throughput", help="table for the grid's failed points")
    parser.add_argument(
        "--budgets", nargs="*", type=float, help="absolute budgets (default: 0, 0.5%%, ..., 10%%)"
    )
    args = parser.parse_args()
    budgets = tuple(args.budgets) if args.budgets else budget_sweep()
    rows = []
    truths = ground_truths(args)
    for seed, (truth, failed_truth, speed, grid) in enumerate(truths):
        for budget in budgets:
            threshold = truth[BASELINE] - budget
            best = best_of(truth, speed, threshold, lambda p: True)
            trained, found, top = simulate(truth, failed_truth, speed, budget)
            row = {
                "seed": seed,
                "budget": budget,
                "trained": trained,
                "exact": found == best,
                "top1": bool(top) and top[0] == best,
                "top3": best in top,
                "best": best,
                "found": found,
            }
            if not args.grid:
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
            for name in args.samplers:
                row[name] = sampler_hit(name, truth, speed, threshold, trained, best, seed, grid)
            rows.append(row)
        print(f"grid {seed} done", flush=True)

    def rate(key: str, subset: list) -> str:  # type: ignore[type-arg]
        return f"{sum(r[key] for r in subset) / len(subset):.0%}"

    grid = truths[0][3]
    source = args.grid or f"{args.seeds} synthetic grids"
    print(
        f"\n{len(rows)} searches ({source} x {len(budgets)} budgets), "
        f"grid {len(grid.n_values)} x {len(grid.sparsities)} = {len(grid)} points"
        + ("" if args.grid else f", paper training grid {len(PAPER_TRAIN_GRID)} points")
    )
    paper = not args.grid
    header = (
        f"{'budget':>7} {'trainings (median)':>19} {'exact best':>11} {'top-1':>6} {'top-3':>6}"
        + (f" {'paper top-1/3':>14}" if paper else f" {'true best':>12} {'found':>12}")
    )
    header += "".join(f" {name + ' hit':>10}" for name in args.samplers)
    print(header)
    for budget in [*budgets, None]:
        subset = [r for r in rows if budget is None or r["budget"] == budget]
        line = (
            f"{'all' if budget is None else f'{budget:.3f}':>7} "
            f"{statistics.median(r['trained'] for r in subset):>19} "
            f"{rate('exact', subset):>11} {rate('top1', subset):>6} {rate('top3', subset):>6}"
        )
        if paper:
            line += f" {rate('paper_top1', subset) + ' / ' + rate('paper_top3', subset):>14}"
        elif budget is not None:
            line += f" {_point(subset[0]['best']):>12} {_point(subset[0]['found']):>12}"
        else:
            line += f" {'':>12} {'':>12}"
        line += "".join(f" {rate(name, subset):>10}" for name in args.samplers)
        print(line)
    if args.grid:
        print_families(truths[0][0], truths[0][2], budgets)


def _point(point: GridPoint | None) -> str:
    return "-" if point is None else f"({point.n}, {point.sparsity:g})"


if __name__ == "__main__":
    main()
