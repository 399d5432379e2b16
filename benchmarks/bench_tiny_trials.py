"""Train points of the tiny study on real SST-2 and print accuracy, wall time and throughput.

    .venv/bin/python benchmarks/bench_tiny_trials.py [--points 1:0 2:0 4:0 1:0.5 2:0.5]
        [--study studies/sst2-tiny.toml] [--set training.finetune_steps=1200 ...] [--threads 1]

``--set SECTION.KEY=VALUE`` changes one field of the study file for this run (the value in TOML
syntax: 1200, true, "cls"); the artifacts are keyed by the recipe, so a changed run trains its
own warm-ups and teachers beside the study's.

Each point is one ``run_trial`` (warm-ups and teachers are built once and cached under
studies/artifacts/, so a rerun reuses them; delete that folder for cold timings). Throughput is
measured afterwards for all points side by side (round-robin, median of 7 rounds, batch 32 * N
dev examples of the study's length) and reported relative to (1, 0).
"""

from __future__ import annotations

import argparse
import statistics
import time
import tomllib
from pathlib import Path

import torch

from autoprumux.core.errors import FieldError
from autoprumux.core.study import Study, read_study_document, study_from_dict
from trainers.model.checkpoints import load_classifier
from trainers.trial.run import TrialSpec, run_trial
from trainers.trial.task_data import task_data as _task_data
from trainers.trial.task_data import task_tokenizer as _tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--points", nargs="+", default=["1:0", "2:0", "4:0", "1:0.5", "2:0.5"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        study = _changed_study(Path(args.study), args.set)
    except FieldError as err:
        parser.error(str(err))  # one line, exit 2
    results = []
    for text in args.points:
        n, s = text.split(":")
        start = time.perf_counter()
        result = run_trial(TrialSpec(study=study, n=int(n), sparsity=float(s)))
        print(
            f"trained ({n}, {s}) in {time.perf_counter() - start:.0f}s: {result.status.value} "
            f"accuracy {result.accuracy} reused {result.reused}",
            flush=True,
        )
        results.append(result)

    _, dev = _task_data(study, _tokenizer(study.model.name_or_path))
    models = [load_classifier(r.artifact_path) for r in results]
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for round_index in range(args.rounds + 1):
            for i, model in enumerate(models):
                batch = dev.rows(torch.arange(32 * model.arch.mux_width) % len(dev))
                start = time.perf_counter()
                model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
                if round_index:
                    times[i].append(time.perf_counter() - start)
    rates = [
        32 * m.arch.mux_width / statistics.median(t) for m, t in zip(models, times, strict=True)
    ]
    base = next(
        (rate for r, rate in zip(results, rates, strict=True) if (r.n, r.sparsity) == (1, 0)),
        rates[0],
    )  # without (1, 0), ratios to the first point
    print(
        f"\n{'(N, s)':<10} {'dev acc':>8} {'sparsity':>9} {'recovery':>9} {'trial s':>8} "
        f"{'ex/s':>8} {'speedup':>8}  phases (s)"
    )
    for result, rate in zip(results, rates, strict=True):
        recovery = "-" if result.token_recovery is None else f"{result.token_recovery:.3f}"
        phases = ", ".join(f"{k} {v:.0f}" for k, v in result.phase_seconds.items() if v >= 1)
        print(
            f"({result.n}, {result.sparsity:g}){'':<3} {result.accuracy:>8.4f} "
            f"{result.achieved_sparsity:>9.3f} {recovery:>9} {result.wall_time_s:>8.0f} "
            f"{rate:>8.0f} {rate / base:>7.2f}x  {phases}"
        )


def _changed_study(path: Path, changes: list[str]) -> Study:
    """The study file with each ``SECTION.KEY=VALUE`` applied (VALUE parsed as TOML)."""
    document = read_study_document(path)
    for change in changes:
        key, _, value = change.partition("=")
        section, _, field = key.partition(".")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise FieldError(key, f'{value} is not a TOML value: 1200, true, "cls"') from None
        document.setdefault(section, {})[field] = parsed
        print(f"study change: [{section}] {field} = {value}")
    return study_from_dict(document, path)


if __name__ == "__main__":
    main()
