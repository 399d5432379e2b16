"""Timing of the decision core: `predict`, `evaluate` and `import autoprumux`.

    .venv/bin/python benchmarks/bench_decision_core.py

Grids: the paper's 4 x 9 (N in {1, 2, 5, 10} x s in {0, 0.60, ..., 0.95}) and a 20 x 40
(N = 1..20 x s in {0, 0.5, 0.5125, ..., 0.975}), both synthetic full grids. Command times
are wall-clock medians of REPEATS runs of the real console command in a fresh interpreter
(Python start-up and file reading included); "in-process" times are the decision core alone.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.evaluation import evaluate
from autoprumux.core.grid import PAPER_GRID, PAPER_TRAIN_GRID, Grid, sparsity_range
from autoprumux.core.recommender import Recommender
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import write_results
from autoprumux.testing.synthetic import SyntheticFamily, synthetic_results

REPEATS = 5
BIG_GRID = Grid(tuple(range(1, 21)), (0.0, *sparsity_range(0.5, 0.975, 0.0125)))
# every other N and s, with both ends, so the training hull covers the whole grid
BIG_TRAIN = Grid(BIG_GRID.n_values[::2] + (20,), BIG_GRID.sparsities[::2] + (0.975,))


def median_seconds(function, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def predict_once(observations, table, grid) -> None:
    budget = Budget(BudgetKind.ABSOLUTE, 0.03)
    Recommender().fit("sst2", observations, table).recommend(budget, grid)


def command_seconds(*args: str) -> float:
    command = [sys.executable, "-m", "autoprumux", *args]
    return median_seconds(lambda: subprocess.run(command, check=True, capture_output=True))


def main() -> None:
    # no options: a parser all the same, so that --help describes the run instead of starting it
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    code = "import time; t = time.perf_counter(); import autoprumux; print(time.perf_counter() - t)"
    imports = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(REPEATS)
    ]
    print(
        f"import autoprumux: median {statistics.median(imports) * 1000:.0f} ms "
        f"(min {min(imports) * 1000:.0f}, max {max(imports) * 1000:.0f}) over {REPEATS} runs"
    )
    print()
    print("grid      points  train  predict (s)  evaluate (s)  in-process predict / evaluate (s)")
    family = SyntheticFamily(untrainable_loss=0.1)
    with tempfile.TemporaryDirectory() as folder:
        for name, grid, train in (
            ("4 x 9", PAPER_GRID, PAPER_TRAIN_GRID),
            ("20 x 40", BIG_GRID, BIG_TRAIN),
        ):
            results = synthetic_results(grid, family)
            path = write_results(results, Path(folder) / f"{len(grid)}.csv")
            predict = command_seconds(
                "predict",
                "--results",
                str(path),
                "--budget",
                "0.03",
                "--grid",
                grid.spec(),
                "--json",
            )
            full = command_seconds(
                "evaluate", "--results", str(path), "--train-grid", train.spec(), "--json"
            )
            table = ThroughputTable.from_results(results, "sst2")
            observations = results.observations("sst2")
            core_predict = median_seconds(partial(predict_once, observations, table, grid))
            core_evaluate = median_seconds(partial(evaluate, results, "sst2", train))
            print(
                f"{name:<9} {len(grid):>6}  {len(set(train) & set(grid)):>5}  "
                f"{predict:>10.3f}  {full:>12.3f}  {core_predict:>12.4f} / {core_evaluate:.4f}"
            )


if __name__ == "__main__":
    main()
