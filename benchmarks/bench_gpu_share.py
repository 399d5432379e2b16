"""Trials sharing one GPU: the aggregate training examples/s of K fine-tunings side by side,
each in a process of its own capped to 1/K of the GPU's memory (as ``--gpus-per-trial 1/K``
runs them), against one alone, in one run.

    python3 benchmarks/bench_gpu_share.py --study STUDY [--device cuda] [--trials 1 4]
        [--steps 300] [--warmup 40] [--num-layers 0] [--max-seq-length 128] [--json FILE]

Each process builds the study's N = 1 fine-tuning phase (its model, its SST-2 batches, the
engine as a trial's: compiled on a GPU, bf16) and runs ``--warmup`` steps (compiling), waits
for the others, then runs ``--steps`` more, timed. The aggregate rate is every process's timed
examples over the span from the first start to the last end; an out-of-memory process reports
it. On a CPU (``--device cpu``) it only checks that the script runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
from pathlib import Path
from typing import Any

import torch
from bench_compile import phases, timed, training_sentences

from autoprumux.core.study import Compile, load_study
from trainers.runtime.device import Engine, cap_memory


def worker(args: argparse.Namespace, share: float, barrier: Any, out: Any) -> None:
    """One fine-tuning: warm-up steps, the barrier, the timed steps; reports to ``out``."""
    study = load_study(args.study)
    model = dataclasses.replace(
        study.model, num_layers=args.num_layers, max_seq_length=args.max_seq_length
    )
    study = dataclasses.replace(study, model=model)
    engine = Engine.resolve(args.device, study.training.precision, Compile.AUTO)
    cap_memory(engine, share)
    train = training_sentences(study, args.rows, engine.device)
    build = phases(study, train, 1, engine.device)["finetune"]
    try:
        # one phase: its first --warmup steps compile every bucket they meet (a new phase
        # would compile its own step again), then the timed steps start together
        timing = timed(build, engine, args.warmup, args.steps, at_warm=barrier.wait)
        out.put({"examples": timing.examples, "began": timing.began, "ended": timing.ended})
    except torch.OutOfMemoryError as err:
        barrier.abort()
        out.put({"error": f"out of memory at share {share:g}: {str(err).splitlines()[0]}"})


def side_by_side(args: argparse.Namespace, trials: int) -> dict[str, Any]:
    context = mp.get_context("spawn")
    barrier, out = context.Barrier(trials), context.Queue()
    processes = [
        context.Process(target=worker, args=(args, 1.0 / trials, barrier, out))
        for _ in range(trials)
    ]
    for process in processes:
        process.start()
    reports = [out.get() for _ in processes]
    for process in processes:
        process.join()
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        return {"trials": trials, "errors": errors}
    span = max(r["ended"] for r in reports) - min(r["began"] for r in reports)
    rate = sum(r["examples"] for r in reports) / span
    return {"trials": trials, "examples_per_s": rate, "span_s": span}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--trials", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--num-layers", type=int, default=0, help="0: all the model's")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--rows", type=int, default=16384, help="training sentences used")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for trials in args.trials:
        rows.append(side_by_side(args, trials))
        print(json.dumps(rows[-1]), flush=True)
    alone = next((r for r in rows if r["trials"] == 1 and "examples_per_s" in r), None)
    for row in rows:
        if alone and "examples_per_s" in row and row["trials"] > 1:
            gain = row["examples_per_s"] / alone["examples_per_s"]
            print(f"{row['trials']} trials side by side: {gain:.2f}x one alone", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
