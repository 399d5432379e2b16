"""What checkpoints cost a phase: the same fine-tuning run without checkpoints and with a
checkpoint every ``--minutes`` minutes (written in the background), side by side.

    .venv/bin/python benchmarks/bench_checkpoints.py [--steps 2000] [--minutes 0.05]
        [--size tiny|base] [--device cpu|cuda] [--precision fp32|bf16] [--rounds 2] [--threads 1]
        [--compile auto|true|false] [--warmup 20]

Each round runs the phase once without checkpoints and once with them (alternating which goes
first, so that the machine's drift hits both alike), each from the same weights and data; the
clock starts after its first ``--warmup`` steps (untimed: caches, and a compiled step's
compiling, which ``--compile auto`` does on a GPU as a trial does). It prints each run's
wall seconds, the checkpoints written, the seconds the step loop itself spent on them
(``run_phase``'s ``checkpoint_seconds``: snapshots and waits for the writer), and the median
overhead (with / without − 1). ``tiny`` is the tests' 3-layer, 32-wide encoder; ``base`` is
BERT-base's shape (the issue's "≤ 2 % over 2,000 steps" is about that one, on a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import trainers.training.loop as loop
from autoprumux.core.study import Compile, TrainingSection
from trainers.data.splits import Encoded
from trainers.model.architecture import Architecture
from trainers.model.classifier import Classifier
from trainers.runtime.device import Engine
from trainers.training.phases import finetune_phase

SIZES = {
    "tiny": {"num_layers": 3, "hidden_size": 32, "num_heads": 4, "intermediate_size": 64},
    "base": {"num_layers": 12, "hidden_size": 768, "num_heads": 12, "intermediate_size": 3072},
}
VOCAB = 30522


def random_data(rows: int, length: int, device: torch.device) -> Encoded:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, VOCAB, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[::3, length // 2 :] = 0  # some padding, as real batches have
    labels = torch.randint(0, 2, (rows,), generator=generator)
    return Encoded(ids, mask, torch.zeros_like(ids), labels).to(device)


def timed_run(
    args: argparse.Namespace, engine: Engine, folder: Path | None
) -> tuple[float, int, float]:
    """(wall seconds, checkpoints written, seconds the step loop spent on them) of one run."""
    arch = Architecture.dense(vocab_size=VOCAB, max_positions=512, **SIZES[args.size])
    torch.manual_seed(0)
    model = engine.prepared(Classifier(arch))  # dropout 0.1: the draws a checkpoint keeps
    data = random_data(4096, args.length, engine.device)
    training = TrainingSection(batch_rows=args.batch_rows)
    steps = args.warmup + args.steps
    phase = finetune_phase(model, data, steps, 2e-5, args.batch_rows, 0, training)
    marks: dict[str, float] = {}

    def start_clock(step: int) -> None:  # after the untimed steps
        engine.synchronize()
        marks["start"] = time.perf_counter()

    written: list[int] = []
    real = loop.write_checkpoint

    def counted(snapshot: loop.Snapshot, folder: Path) -> None:
        written.append(snapshot.step)
        real(snapshot, folder)

    loop.write_checkpoint = counted
    overhead: list[float] = []
    try:
        loop.run_phase(
            phase,
            folder,
            checkpoint_every=0,  # by time only
            checkpoint_minutes=args.minutes,
            engine=engine,
            checkpoint_seconds=overhead.append,
            check=start_clock,
            check_steps={args.warmup},
        )
        engine.synchronize()
        seconds = time.perf_counter() - marks["start"]
    finally:
        loop.write_checkpoint = real
    return seconds, len(written), overhead[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=0.05)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-rows", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = Engine.resolve(args.device, args.precision, Compile(args.compile))
    device = torch.cuda.get_device_name() if engine.on_gpu else f"CPU, {args.threads} thread(s)"
    print(
        f"{args.size} encoder, {args.steps} steps of batch {args.batch_rows} x {args.length}, "
        f"{engine.precision.value} on {device}; checkpoints every {args.minutes} min",
        flush=True,
    )
    ratios = []
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            arms = ["off", "on"] if round_ % 2 == 0 else ["on", "off"]
            times: dict[str, float] = {}
            for arm in arms:
                folder = Path(scratch) / "ckpt" if arm == "on" else None
                seconds, written, spent = timed_run(args, engine, folder)
                times[arm] = seconds
                print(
                    f"  round {round_ + 1} checkpoints {arm:3}: {seconds:8.2f} s wall, "
                    f"{written:3d} written, step loop spent {spent:.3f} s on them",
                    flush=True,
                )
            ratios.append(times["on"] / times["off"])
    overhead = statistics.median(ratios) - 1
    print(f"overhead (median of {args.rounds}): {100 * overhead:+.2f} % of the phase's wall time")


if __name__ == "__main__":
    main()
