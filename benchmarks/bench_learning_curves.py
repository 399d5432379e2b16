"""Record learning curves and training costs of a study's points (early stopping's calibration).

    .venv/bin/python benchmarks/bench_learning_curves.py \
        [--study studies/sst2-tiny.toml] [--out studies/results/sst2-tiny-curves.json] \
        [--points 1:0 1:0.5 ...] [--curve-points 8] [--calibrate-with OTHER.json ...]

Each point is one ``run_trial`` without early stopping, with dev accuracy evaluated at every
k/8 of its last phases (the (N, 0) teacher's fine-tuning, the pruned model's fine-tuning). The
output holds, per trained point, its curves and what the training cost (seconds of warm-up,
teacher and own phases, as the search records them). It is rewritten after every point, and a
rerun skips the points it holds. (The committed file holds (1, 0) and (2, 0), and the
bare command's pruned N = 1 trainings for their costs: docs/measurements.md.)
``autoprumux.testing.stop_margins.calibrate`` reads the curves; the margins in
``autoprumux.core.early_stop.MARGINS`` are checked against them by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from autoprumux.core.grid import GridPoint
from autoprumux.core.study import load_study
from autoprumux.files.atomic import write_text_atomic
from autoprumux.testing.stop_margins import calibrate, count_stops, gain, load_curves
from trainers.trial.run import TrialSpec, run_trial

# every N's teacher (its warm-up and fine-tuning curve), then one pruned point per N (its own
# phases' cost)
DEFAULT_POINTS = ["1:0", "2:0", "4:0", "1:0.7", "2:0.7", "4:0.7"]


def _point(text: str) -> GridPoint:
    n, s = text.split(":")
    return GridPoint(int(n), float(s))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--out", default="studies/results/sst2-tiny-curves.json")
    parser.add_argument("--points", nargs="+", default=DEFAULT_POINTS)
    parser.add_argument("--curve-points", type=int, default=8)
    parser.add_argument(
        "--calibrate-with",
        nargs="*",
        default=[],
        help="curve files of the study's earlier recipes, calibrated on together with --out",
    )
    args = parser.parse_args()
    study = load_study(args.study)
    out = Path(args.out)
    data = (
        json.loads(out.read_text())
        if out.exists()
        else {
            "study": study.name,
            "study_recipe": study.recipe,
            "threads": os.cpu_count(),
            "curve_points": args.curve_points,
            "trainings": [],
        }
    )
    done = {(t["n"], t["sparsity"]) for t in data["trainings"]}
    started = time.perf_counter()
    for text in args.points:
        point = _point(text)
        if (point.n, point.sparsity) in done:
            continue
        spec = TrialSpec(
            study=study, n=point.n, sparsity=point.sparsity, curve_points=args.curve_points
        )
        result = run_trial(spec)
        warmup, teacher, own = result.cost_parts()
        curves = [c.to_json() for c in (result.teacher and result.teacher.curve, result.curve) if c]
        data["trainings"].append(
            {
                "n": point.n,
                "sparsity": point.sparsity,
                "status": result.status.value,
                "accuracy": result.accuracy,
                "reused": list(result.reused),
                "wall_time_s": result.wall_time_s,
                "warmup_s": warmup,
                "teacher_s": teacher,
                "own_s": own,
                "phase_seconds": result.phase_seconds,
                "curves": curves,
            }
        )
        write_text_atomic(out, json.dumps(data, indent=1) + "\n")
        print(
            f"{point}: {result.status.value} accuracy {result.accuracy} in "
            f"{result.wall_time_s:.0f}s (warm-up {warmup:.0f}s, teacher {teacher:.0f}s, own "
            f"{own:.0f}s; reused {', '.join(result.reused) or 'nothing'}) | elapsed "
            f"{(time.perf_counter() - started) / 60:.1f} min",
            flush=True,
        )
    files = [out, *map(Path, args.calibrate_with)]
    by_file = [load_curves(path) for path in files]
    curves = [c for group in by_file for c in group]
    margins = calibrate(curves)
    print(f"{len(curves)} curves; calibrated margins: {margins}", file=sys.stderr)
    # per file (one recipe): the thresholds of the budgets 1-10% below its baseline, and each
    # curve's own final accuracy
    thresholds = {}
    for path, group in zip(files, by_file, strict=True):
        baseline = next(c for c in group if c.label.startswith("(1, 0)")).final
        thresholds[path] = [baseline - b / 100 for b in range(1, 11)] + [c.final for c in group]
        counted = count_stops(group, margins, thresholds[path])
        print(f"{path.name}, over {len(thresholds[path])} thresholds: {counted}")
    # leave-one-out: each curve judged by the margins of the others
    wrong = right = 0
    for path, group in zip(files, by_file, strict=True):
        for curve in group:
            others = calibrate([c for c in curves if c is not curve])
            counted = count_stops([curve], others, thresholds[path])
            wrong, right = wrong + counted.wrong, right + counted.right
            for fraction in others:
                print(
                    f"  {path.name} {curve.label} gain after {fraction:g}: "
                    f"{gain(curve, fraction):+.4f} "
                    f"(the others' margin {others[fraction]:.3f})"
                )
    print(f"leave-one-out: {wrong} wrong stops, {right} right stops")


if __name__ == "__main__":
    main()
