"""Train every (N, s) of a study once and write the ground-truth results table.

    .venv/bin/python benchmarks/bench_tiny_grid.py \
        [--study studies/sst2-tiny.toml] [--out studies/results/sst2-tiny-grid.json] [--n 1 ...]

Each point is one ``run_trial`` (warm-ups, teachers and finished trials are cached under
studies/artifacts/, so an interrupted run continues where it stopped). When all points are
trained, the trained models are timed side by side in one round-robin run with the study's
throughput harness, and the table is written as JSON with its fingerprint (the harness
settings, the machine, the study file's hash, the code's git commit, the wall time of every
trial). ``autoprumux predict --results`` and ``bench_search.py --ground-truth`` read it.
``--n`` trains and writes only those rows of the grid (e.g. a row re-measured on its own).
On 2 CPU cores the tiny study's 18 points take about an hour (docs/measurements.md).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

from autoprumux.core.grid import GridPoint
from autoprumux.core.records import RECORD_FIELDS, TrialStatus
from autoprumux.core.study import load_study
from autoprumux.files.results_io import write_table
from autoprumux.measurement import fingerprint, resolve_device
from trainers.deploy.timing import measure
from trainers.model.checkpoints import load_classifier
from trainers.trial.run import TrialSpec, run_trial


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--out", default="studies/results/sst2-tiny-grid.json")
    parser.add_argument("--n", nargs="+", type=int, help="only these rows (default: all)")
    args = parser.parse_args()
    study = load_study(args.study)
    points = sorted(p for p in study.grid.grid if not args.n or p.n in args.n)
    started = time.perf_counter()
    results = {}
    for i, point in enumerate(points, start=1):
        start = time.perf_counter()
        result = run_trial(TrialSpec(study=study, n=point.n, sparsity=point.sparsity))
        results[point] = result
        print(
            f"[{i}/{len(points)}] ({point.n}, {point.sparsity:g}) {result.status.value} "
            f"accuracy {result.accuracy} in {time.perf_counter() - start:.0f}s "
            f"(reused: {', '.join(result.reused) or 'nothing'}) | "
            f"elapsed {(time.perf_counter() - started) / 60:.1f} min",
            flush=True,
        )
    trained = {
        p: load_classifier(r.artifact_path)
        for p, r in results.items()
        if r.status is TrialStatus.COMPLETE and r.artifact_path
    }
    print(f"timing {len(trained)} trained models side by side", flush=True)
    timed = measure(
        trained,
        study.throughput,
        study.model.max_seq_length,
        "trained",
        lambda done, total: print(f"  measurement pass {done}/{total}", file=sys.stderr),
    )
    rows = []
    for point, result in results.items():
        row = result.to_record().to_row()
        row["throughput"] = timed[point].timing.median if point in timed else None
        row["artifact_path"] = None  # machine-local; the cache key is in the artifact's name
        rows.append(row)
    stamp = {
        **fingerprint(study.throughput, resolve_device(study.throughput), study),
        "accuracy": f"{study.task} dev, full split",
        "study_file_sha256": hashlib.sha256(study.path.read_bytes()).hexdigest()[:16]
        if study.path
        else None,
        "commit": _git_commit(),
        "trial_wall_time_s": {
            f"{p.n}:{p.sparsity:g}": round(r.wall_time_s, 1) for p, r in results.items()
        },
        "grid_wall_time_s": round(time.perf_counter() - started, 1),
    }
    path = write_table(rows, args.out, RECORD_FIELDS, {"fingerprint": stamp})
    base = timed[GridPoint(1, 0.0)].timing.median if GridPoint(1, 0.0) in timed else None
    print(f"\nwrote {path}\n{'(N, s)':<10} {'dev acc':>8} {'achieved s':>10} {'speedup':>8}")
    for point, result in results.items():
        speed = (
            f"{timed[point].timing.median / base:>7.2f}x" if base and point in timed else "      -"
        )
        acc = f"{result.accuracy:.4f}" if result.accuracy is not None else result.status.value
        achieved = (
            f"{result.achieved_sparsity:.3f}" if result.achieved_sparsity is not None else "-"
        )
        print(f"({point.n}, {point.sparsity:g}){'':<4} {acc:>8} {achieved:>10} {speed}")


if __name__ == "__main__":
    main()
