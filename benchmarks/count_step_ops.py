"""The aten ops one training step dispatches, counted on a CPU: what a GPU step launches.

    PYTHONPATH=TREE .venv/bin/python benchmarks/count_step_ops.py [--layers 12] [--n 1]

A BERT-shaped classifier (``--layers`` layers, small widths: the count depends on the layers,
not the widths) with all five CoFi gates sampled (``L0Module.sample``), forward and backward
of one batch, in fp32 and under bf16 autocast, on the masked LayerNorm's GPU path (the
kept-dims indicator, forced here on the CPU). Every op that reaches the dispatcher counts,
views included (they launch no kernel, but each costs the host a dispatch). ``TREE`` may be
an older checkout (before the fused kernels, whose masks had ``kept_hidden``): the count is
that engine's.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import trainers.model.masks as masks
from trainers.model.architecture import Architecture
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module


class OpCount(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.total += 1
        return func(*args, **(kwargs or {}))


def gpu_path() -> None:
    """The masked LayerNorm as on a GPU: statistics weighted by the kept-dims indicator."""
    if hasattr(masks, "KeptHidden"):
        of = masks.KeptHidden.of.__func__  # type: ignore[attr-defined]

        def indicator(cls: Any, hidden: torch.Tensor) -> Any:
            return dataclasses.replace(of(cls, hidden), index=None)

        masks.KeptHidden.of = classmethod(indicator)  # type: ignore[assignment]
    else:  # the engine before: Masks.kept_hidden gave indices on a CPU

        def kept(self: Any) -> torch.Tensor | None:
            return None if self.hidden is None else (self.hidden.detach() != 0).float()

        masks.Masks.kept_hidden = kept  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--n", type=int, default=1)
    args = parser.parse_args()
    gpu_path()
    for name, autocast in (("fp32", False), ("bf16 autocast", True)):
        torch.manual_seed(0)
        arch = Architecture.dense(
            num_layers=args.layers,
            hidden_size=64,
            num_heads=4,
            intermediate_size=128,
            vocab_size=200,
            max_positions=64,
        )
        arch = dataclasses.replace(arch, mux_width=args.n) if args.n > 1 else arch
        model, l0 = Classifier(arch), L0Module(arch)
        ids = torch.randint(1, 200, (4 * args.n, 12))
        with OpCount() as count:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(ids, torch.ones_like(ids), masks=l0.sample())
            logits.float().sum().backward()
        print(f"{args.layers} layers, N = {args.n}, {name}: {count.total} aten ops a step")


if __name__ == "__main__":
    main()
