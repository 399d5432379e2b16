"""Repeat-to-repeat spread of the throughput harness on this machine.

    .venv/bin/python benchmarks/bench_harness.py [--study FILE] [--repeats 5]

Runs the harness REPEATS times on the study's (1, 0), (1, 0.5) and (2, 0) estimate models with
the study's [throughput] settings, and prints each run's median examples/s, the coefficient of
variation of those medians across runs, the mean within-run CV, and the spread of the same-run
speedup ratios (which is what the tables use).
"""

from __future__ import annotations

import argparse
import statistics

from autoprumux.core.grid import GridPoint
from autoprumux.core.study import load_study
from autoprumux.measurement import estimate_models
from trainers.deploy.timing import measure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    study = load_study(args.study)
    points = [GridPoint(1, 0.0), GridPoint(1, 0.5), GridPoint(2, 0.0)]
    models = estimate_models(study, points)
    medians: dict[GridPoint, list[float]] = {p: [] for p in points}
    within: dict[GridPoint, list[float]] = {p: [] for p in points}
    for repeat in range(args.repeats):
        results = measure(models, study.throughput, study.model.max_seq_length, "estimate")
        for point in points:
            medians[point].append(results[point].timing.median)
            within[point].append(results[point].timing.cv)
        print(
            f"run {repeat + 1}: " + ", ".join(f"{p} {medians[p][-1]:.1f}/s" for p in points),
            flush=True,
        )
    print(f"\n{'(N, s)':<10} {'median of runs':>15} {'CV across runs':>15} {'mean CV within':>15}")
    for point in points:
        values = medians[point]
        cv = statistics.stdev(values) / statistics.fmean(values)
        spread = statistics.fmean(within[point])
        print(f"{str(point):<10} {statistics.median(values):>15.1f} {cv:>15.1%} {spread:>15.1%}")
    base = medians[points[0]]
    for point in points[1:]:
        ratios = [m / b for m, b in zip(medians[point], base, strict=True)]
        cv = statistics.stdev(ratios) / statistics.fmean(ratios)
        middle = statistics.median(ratios)
        print(f"speedup {point} / (1, 0): median {middle:.3f}, CV across runs {cv:.1%}")


if __name__ == "__main__":
    main()
