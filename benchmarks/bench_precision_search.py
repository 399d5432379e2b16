"""The search over (N, s, precision), replayed on a recorded grid: does it find the true best at
every budget, and what does the third axis cost in trainings and evaluations?

    .venv/bin/python benchmarks/bench_precision_search.py \
        --grid studies/results/sst2-tiny-precisions.json \
        --throughput studies/throughput/sst2-tiny-cpu-float32.json \
        [--study studies/sst2-tiny.toml] [--budgets 0.01 0.02 ...]

``--grid``: every (N, s) trained once, with its dev figure in fp32 (``accuracy``) and in the
other precisions (``accuracy_int8``, ...); ``--throughput``: a table timing every (N, s) in
each of them (``autoprumux measure``). For each budget (absolute, points under (1, 0) fp32):

- the true best: the Recommender on every recorded point, over fp32 alone and over every
  precision (the grid and the table know them all);
- two real searches (``autoprumux.search``: session, driver, proposer, an Optuna SQLite study
  in a temporary folder), their trainings answered from the grid (``replay:``): the study
  searching fp32 only (``[deploy] precisions = ["fp32"]``) and the study searching every
  precision of the grid. Each prints its answer, whether it is its space's true best, its
  trainings (free teachers not counted), and its evaluations in other precisions (one per
  trained model and precision: what the third axis adds to a training, no training of its
  own).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import autoprumux
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Decision, Recommender
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import load_study
from autoprumux.files.results_io import read_results, read_throughput_table
from autoprumux.session.summary import SearchResult


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", required=True)
    parser.add_argument("--throughput", required=True)
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS))
    args = parser.parse_args()
    logging.getLogger("autoprumux").setLevel(logging.WARNING)
    results = read_results(args.grid)
    table = read_throughput_table(args.throughput)
    study = load_study(args.study)
    task = results.resolve_task(study.task)
    observed = results.observations(task)
    measured = {p.precision for p in observed.served_accuracy}
    spaces = {
        "fp32": (Precision.FP32,),
        "all": (Precision.FP32, *(p for p in Precision if p in measured)),
    }
    print(
        f"grid {args.grid}: {len(observed.accuracy)} points in "
        f"{', '.join(p.value for p in spaces['all'])}; table {args.throughput}"
    )
    columns = ("budget", "true best fp32", "true best all", "search", "answer", "best?",
               "trainings", "evaluations")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as scratch:
        for value in args.budgets:
            budget = Budget(BudgetKind.ABSOLUTE, value)
            best = {
                name: _top(
                    Recommender(top_k=1)
                    .fit(task, observed, table)
                    .recommend(budget, study.grid.grid.served(space))
                )
                for name, space in spaces.items()
            }
            for name, space in spaces.items():
                result = _search(Path(scratch) / f"{name}-{value:g}", args, space, budget)
                trained = [
                    r
                    for r in result.records
                    if r.from_trial is None and r.status is not TrialStatus.FAILED
                ]
                complete = [r for r in result.records if r.status is TrialStatus.COMPLETE]
                answer = _top(result.decision) if result.decision else None
                rows.append(
                    (
                        f"{value:g}",
                        str(best["fp32"]),
                        str(best["all"]),
                        name,
                        str(answer),
                        "yes" if answer == best[name] else "NO",
                        str(len(trained)),
                        str(sum(p.precision in space for r in complete for p in r.served_accuracy)),
                    )
                )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for line in (columns, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


BUDGETS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08)


def _top(decision: Decision) -> GridPoint | None:
    return decision.recommendations[0].point if decision.recommendations else None


def _search(
    folder: Path, args: argparse.Namespace, space: tuple[Precision, ...], budget: Budget
) -> SearchResult:
    """The real search of the study with ``[deploy] precisions = space``, its trainings
    answered from the grid, in a study of its own under ``folder``."""
    folder.mkdir()
    listed = ", ".join(f'"{p.value}"' for p in space)
    study_file = folder / "study.toml"
    study_file.write_text(Path(args.study).read_text() + f"\n[deploy]\nprecisions = [{listed}]\n")
    return autoprumux.search(
        study_file,
        budget,
        trainer=f"replay:{Path(args.grid).resolve()}",
        throughput=Path(args.throughput).resolve(),
        gpus=0,
        progress=lambda line: None,
    )


if __name__ == "__main__":
    main()
