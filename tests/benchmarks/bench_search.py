"""Search efficiency on replayed synthetic full grids, against the paper's fixed training grid
and Optuna's TPE / NSGA-II / random samplers given the same number of trainings.

    .venv/bin/python tests/benchmarks/bench_search.py [--seeds 10] [--grid FILE]

Grids: ``autoprumux.synthetic`` families (PruMUX loss = DataMUX loss + CoFi loss + noise, points
whose loss is too high fail to train), one per seed, on the paper's 4 x 9 grid; or a recorded
results table with ``--grid`` (then one "seed"). Throughput is known for every point (the
family's expected speedup; the table's throughput with --grid). For each budget 0, 0.5%, ...,
10%: our proposer's trainings until it stops, whether its verified best is the true best, and
whether the final recommendation's top-1 / top-3 hold the true best; the paper's protocol
(train the 24-point training grid, recommend with the surface); and each Optuna sampler's
chance to have trained the true best within as many trainings as ours needed.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

from autoprumux.budget import Budget, BudgetKind, budget_sweep
from autoprumux.grid import BASELINE, PAPER_GRID, PAPER_TRAIN_GRID, GridPoint
from autoprumux.proposer import Proposer, SearchState
from autoprumux.recommender import Recommender
from autoprumux.records import Observations
from autoprumux.synthetic import SyntheticFamily, synthetic_results
from autoprumux.throughput import ThroughputTable


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
    name: str, truth: dict, speed: dict, threshold: float, trials: int, best: GridPoint, seed: int
) -> bool:  # type: ignore[type-arg]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    constraints = lambda t: [t.user_attrs["violation"]]  # noqa: E731
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constraints_func=constraints),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }[name]()
    study = optuna.create_study(direction="maximize", sampler=sampler)
    seen = set()

    def objective(trial):  # type: ignore[no-untyped-def]
        point = GridPoint(
            trial.suggest_categorical("n", [1, 2, 5, 10]),
            trial.suggest_categorical("sparsity", list(PAPER_GRID.sparsities)),
        )
        seen.add(point)
        accuracy = truth.get(point, 0.0)
        trial.set_user_attr("violation", threshold - accuracy)
        return speed[point]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(objective, n_trials=trials)
    return best in seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--samplers", nargs="*", default=["tpe", "nsga2", "random"])
    args = parser.parse_args()
    family = SyntheticFamily()
    speed = {p: 1000 * family.expected_speedup(p) for p in PAPER_GRID}
    rows = []
    for seed in range(args.seeds):
        observed = synthetic_results(family=family, seed=seed).observations("sst2")
        truth, failed_truth = dict(observed.accuracy), set(observed.failed)
        for budget in budget_sweep():
            threshold = truth[BASELINE] - budget
            best = max((p for p, a in truth.items() if a >= threshold - 1e-9), key=speed.get)
            trained, found, top = simulate(truth, failed_truth, speed, budget)
            paper_train = {p: a for p, a in truth.items() if p in PAPER_TRAIN_GRID}
            paper_top = recommend(
                paper_train,
                {p for p in failed_truth if p in PAPER_TRAIN_GRID},
                speed,
                budget,
                list(truth),
            )
            row = {
                "seed": seed,
                "budget": budget,
                "trained": trained,
                "exact": found == best,
                "top1": bool(top) and top[0] == best,
                "top3": best in top,
                "paper_top1": bool(paper_top) and paper_top[0] == best,
                "paper_top3": best in paper_top,
            }
            for name in args.samplers:
                row[name] = sampler_hit(name, truth, speed, threshold, trained, best, seed)
            rows.append(row)
        print(f"seed {seed} done", flush=True)

    def rate(key: str, subset: list) -> str:  # type: ignore[type-arg]
        return f"{sum(r[key] for r in subset) / len(subset):.0%}"

    print(
        f"\n{len(rows)} searches ({args.seeds} grids x 21 budgets), paper grid 4 x 9 = 36 points, "
        f"paper training grid {len(PAPER_TRAIN_GRID)} points"
    )
    header = (
        f"{'budget':>7} {'trainings (median)':>19} {'exact best':>11} {'top-1':>6} {'top-3':>6} "
        f"{'paper top-1/3':>14}"
    )
    header += "".join(f" {name + ' hit':>10}" for name in args.samplers)
    print(header)
    for budget in budget_sweep():
        subset = [r for r in rows if r["budget"] == budget]
        line = (
            f"{budget:>7.3f} {statistics.median(r['trained'] for r in subset):>19} "
            f"{rate('exact', subset):>11} "
            f"{rate('top1', subset):>6} {rate('top3', subset):>6} "
            f"{rate('paper_top1', subset) + ' / ' + rate('paper_top3', subset):>14}"
        )
        line += "".join(f" {rate(name, subset):>10}" for name in args.samplers)
        print(line)
    line = (
        f"{'all':>7} {statistics.median(r['trained'] for r in rows):>19} {rate('exact', rows):>11} "
        f"{rate('top1', rows):>6} {rate('top3', rows):>6} "
        f"{rate('paper_top1', rows) + ' / ' + rate('paper_top3', rows):>14}"
    )
    line += "".join(f" {rate(name, rows):>10}" for name in args.samplers)
    print(line)


if __name__ == "__main__":
    main()
