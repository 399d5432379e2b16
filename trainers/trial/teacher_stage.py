"""The teacher stage's build: the task fine-tuning of the (N, 0) model, from the warm-up or a
checkpoint (and, with ``distill_from_n1``, learning the (1, 0) teacher's logits too); the
trial's result when s = 0, and the teacher of every (N, s). Its record, ``teacher.json``,
holds the dev accuracy and curve, the warm-up's token recovery and the phase's steps. Keyed
by :func:`trainers.trial.cache_keys.teacher_key`."""

from __future__ import annotations

from pathlib import Path

import torch

from autoprumux.core.grid import GridPoint
from trainers.model.checkpoints import save_model
from trainers.runtime.device import numerics
from trainers.training.phases import finetune_phase, steps_for
from trainers.trial.artifacts import write_json
from trainers.trial.stages import RunningTrial
from trainers.trial.trial_results import FINETUNE_TIMER, TEACHER_EVALUATE_TIMER


def build_teacher(trial: RunningTrial, partial: Path) -> None:
    training = trial.study.training
    model, recovery = trial.initial_model()
    model = trial.prepared(model, task=True)
    guide = trial.guide()
    torch.manual_seed(trial.seed)  # whether the warm-up and guide were built or reused
    batch = training.batch_rows * trial.n  # sentences a step
    steps = steps_for(training.finetune_steps, training.finetune_epochs, len(trial.train), batch)
    phase = finetune_phase(
        model,
        trial.train,
        steps,
        training.finetune_learning_rate,
        training.batch_rows,
        trial.seed,
        training,
        teacher=guide,
    )
    point = GridPoint(trial.n, 0.0)
    with trial.timer(FINETUNE_TIMER):
        trial.run_checked_phase(phase, partial / "finetune-checkpoint", model, point, partial)
    save_model(model, partial)
    with trial.timer(TEACHER_EVALUATE_TIMER):
        final = trial.accuracy(model)
        write_json(
            partial / "teacher.json",
            {
                "accuracy": final,
                "curve": trial.finish_curve(point, phase.name, steps, final, partial).to_json(),
                "token_recovery": recovery,
                "steps": steps,
                "numerics": numerics(trial.engine),
            },
        )
