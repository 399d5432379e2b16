"""Length buckets on the tiny study: the buckets chosen for SST-2, and fine-tuning examples/s
with dynamic padding (each batch cut to its longest row: the CPU's default) against batches
padded to the chosen buckets (the GPU's default, forced here on the CPU), side by side.

    .venv/bin/python benchmarks/bench_buckets.py [--study studies/sst2-tiny.toml] \
        [--blocks 12] [--steps 10] [--threads 2] [--widths 1 2]

First, for the study's full SST-2 training split at its ``max_seq_length`` (64 in the tiny
study) and batches of ``batch_rows`` rows of N sentences, random and grouped by length: the
chosen buckets (:func:`trainers.data.splits.chosen_buckets`), the mean cut of a batch (dynamic
padding) and its mean padded length with the buckets (tokens per row). Then it fine-tunes the
study's pretrained model on its first 4,096 training sentences with the study's recipe (its
``group_by_length``), twice in one process: one model per padding, the same batches in the same
order, taking turns block by block (``--steps`` steps a block, which goes first alternating),
so that the machine's load hits both alike; it prints the median examples/s of each padding's
blocks and their ratio (buckets / dynamic).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import torch

from autoprumux.core.data_spec import data_spec
from autoprumux.core.study import Study, load_study
from trainers.data.buckets import mean_padded
from trainers.data.splits import Encoded, batch_cuts, chosen_buckets
from trainers.data.tables import load_tables
from trainers.data.token_cache import encoded_table
from trainers.model.architecture import Pooling
from trainers.model.checkpoints import load_pretrained, load_tokenizer
from trainers.model.classifier import Classifier
from trainers.runtime.device import Engine
from trainers.training.loop import train_step
from trainers.training.phases import finetune_phase


def print_choices(study: Study, train: Encoded, widths: list[int]) -> None:
    rows = study.training.batch_rows
    print(
        f"SST-2 train ({len(train)} sentences) at max_seq_length {study.model.max_seq_length}, "
        f"batches of {rows} rows x N; lengths in tokens per row"
    )
    print(f"{'N':>2} {'batches':<8} {'buckets':<34} {'cut (dynamic)':>14} {'padded':>8}")
    for n in widths:
        for grouped in (False, True):
            group_rows = n if grouped else 0
            buckets = chosen_buckets(train, rows * n, group_rows)
            cuts = batch_cuts(train, rows * n, group_rows)
            print(
                f"{n:>2} {'grouped' if grouped else 'random':<8} {str(list(buckets)):<34} "
                f"{sum(cuts) / len(cuts):>14.1f} {mean_padded(cuts, buckets):>8.1f}"
            )


def model_of(study: Study, n: int) -> Classifier:
    torch.manual_seed(0)
    extra: dict[str, Any] = (
        {
            "mux_width": n,
            "key_norm": study.multiplexing.key_norm,
            "pooling": Pooling(study.multiplexing.pooling),
        }
        if n > 1
        else {}
    )
    model, _ = load_pretrained(study.model.name_or_path, num_layers=study.model.num_layers, **extra)
    if study.training.freeze_word_embeddings:
        model.encoder.embeddings.word.weight.requires_grad_(False)
    return model


def timed_blocks(
    study: Study, train: Encoded, n: int, buckets: tuple[int, ...], blocks: int, steps: int
) -> dict[str, list[float]]:
    """Examples/s of each block of ``steps`` fine-tuning steps, per padding: the two phases
    (one model each, the same initial weights, the same batches in the same order) take turns
    block by block, the first alternating, after two untimed steps each."""
    rows = study.training.batch_rows
    runs = {}
    for name, given in (("dynamic", ()), ("buckets", buckets)):
        training = dataclasses.replace(study.training, length_buckets=given)
        phase = finetune_phase(
            model_of(study, n), train, blocks * steps + 2, 3e-4, rows, 0, training
        )
        trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
        runs[name] = (phase, phase.data(0), trained)
    engine, done = Engine(), 0

    def run(name: str, count: int) -> float:
        phase, data, trained = runs[name]
        start = time.perf_counter()
        for step in range(done, done + count):
            train_step(phase, next(data), step, engine, None, trained)
        return count * rows * n / (time.perf_counter() - start)

    for name in runs:
        run(name, 2)  # untimed: allocations, caches
    done = 2
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for block in range(blocks):
        for name in sorted(runs, reverse=block % 2 == 1):
            rates[name].append(run(name, steps))
        done += steps
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=12, help="timed blocks per padding")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    study = load_study(args.study)
    tokenizer = load_tokenizer(study.model.name_or_path)
    tables = load_tables(data_spec(study))
    full = encoded_table(tables.train, tokenizer, study.model.max_seq_length)
    print_choices(study, full, [1, 2, 4])

    train = full.rows(torch.arange(4096))
    print(
        f"\nfine-tuning, {args.blocks} blocks of {args.steps} steps per padding, "
        f"{args.threads} threads, group_by_length = "
        f"{str(study.training.group_by_length).lower()}: examples/s (median of the blocks)"
    )
    for n in args.widths:
        rows, group_rows = study.training.batch_rows * n, n if study.training.group_by_length else 0
        buckets = chosen_buckets(train, rows, group_rows)
        rates = timed_blocks(study, train, n, buckets, args.blocks, args.steps)
        dynamic, padded = (statistics.median(rates[k]) for k in ("dynamic", "buckets"))
        wins = sum(b > d for b, d in zip(rates["buckets"], rates["dynamic"], strict=True))
        print(
            f"N = {n}: dynamic {dynamic:6.1f}  buckets {padded:6.1f}  ratio {padded / dynamic:.3f}"
            f"  (buckets {list(buckets)}; faster in {wins} of {args.blocks} blocks; block range "
            f"dynamic {min(rates['dynamic']):.0f}-{max(rates['dynamic']):.0f}, buckets "
            f"{min(rates['buckets']):.0f}-{max(rates['buckets']):.0f})"
        )


if __name__ == "__main__":
    main()
