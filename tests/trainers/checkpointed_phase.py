"""A CoFi pruning phase of a tiny random BERT (dropout 0.1, sampled L0 gates), checkpointed
at every step into a folder and resumed from it: the process ``test_checkpoints.py`` kills.

    python tests/trainers/checkpointed_phase.py STEPS [FOLDER]

prints ``<step> <loss>`` after each step (the loss's exact decimal form), then ``done``.
Without FOLDER it runs uninterrupted and without checkpoints (the reference curve). One
thread, fp32, a fixed seed: the curve is the same in every process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "support"))  # run as a script too
from random_batches import random_encoded  # noqa: E402

from autoprumux.core.study import TrainingSection
from trainers.model.architecture import Architecture
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.training.loop import run_phase
from trainers.training.phases import identity_map, pruning_phase

ARCH = Architecture.dense(
    num_layers=2,
    hidden_size=32,
    num_heads=4,
    intermediate_size=64,
    vocab_size=200,
    max_positions=64,
)


def main(steps: int, folder: Path | None) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same weights in every process; the draws come from the checkpoint
    student, teacher, l0 = Classifier(ARCH), Classifier(ARCH).eval(), L0Module(ARCH)
    assert ARCH.hidden_dropout > 0  # the masks a resumed phase must draw again
    phase = pruning_phase(
        student, teacher, l0, identity_map(32), random_encoded(64), TrainingSection(batch_rows=4),
        steps, steps // 2, 0.5, 0,
    )  # fmt: skip
    run_phase(
        phase,
        folder,
        checkpoint_every=0,
        checkpoint_minutes=0.0,  # a checkpoint at every step the writer is free
        progress=lambda p: print(p.step, repr(p.loss), flush=True),
    )
    print("done", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
