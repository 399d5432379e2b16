"""The teacher stage's build: the task fine-tuning of the (N, 0) model, from the warm-up or a
checkpoint (and, with ``distill_from_n1``, learning the (1, 0) teacher's logits too); the
trial's result when s = 0, and the teacher of every (N, s). Its record, ``teacher.json``,
holds the dev accuracy and curve, the warm-up's token recovery and the phase's steps. Keyed
by :func:`trainers.trial.cache_keys.teacher_key`.

Where the study's checkpoint is a classifier already fine-tuned on the task (``[model]
fine_tuned``), the (1, 0) teacher is that checkpoint as is (:func:`build_checkpoint_teacher`):
its head's rows put in the data's label order, evaluated on dev, never trained (0 steps; its
record says ``"teacher": "checkpoint"``)."""

from __future__ import annotations

from pathlib import Path

import torch

from autoprumux.core.grid import GridPoint
from trainers.model.checkpoints import load_pretrained, save_model
from trainers.model.classifier import frozen_copy
from trainers.model.label_map import permute_head
from trainers.training.phases import finetune_phase, steps_for
from trainers.trial.artifacts import write_json
from trainers.trial.stages import RunningTrial
from trainers.trial.task_data import checkpoint_label_order
from trainers.trial.trial_results import FINETUNE_TIMER, TEACHER_EVALUATE_TIMER

# teacher.json's "teacher": where the (N, 0) model came from
TRAINED, CHECKPOINT = "trained", "checkpoint"


def build_teacher(trial: RunningTrial, partial: Path, from_checkpoint: bool = False) -> None:
    """``from_checkpoint``: the (1, 0) teacher is the study's fine-tuned checkpoint
    (:func:`trainers.trial.cache_keys.teacher_is_checkpoint`)."""
    if from_checkpoint:
        build_checkpoint_teacher(trial, partial)
        return
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
        teacher=None if guide is None else frozen_copy(guide, trial.engine),
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
                "numerics": trial.numerics(),
                "teacher": TRAINED,
            },
        )


def build_checkpoint_teacher(trial: RunningTrial, partial: Path) -> None:
    """The fine-tuned checkpoint as the (1, 0) teacher: loaded with its head, the head's rows
    permuted into the data's label order (a label count or name that differs is refused),
    evaluated on dev. No phase runs: 0 steps, and no curve (a curve is a phase's)."""
    study = trial.study
    order = checkpoint_label_order(study, trial.label_names)
    model, _ = load_pretrained(study.model.name_or_path, seed=trial.seed, **trial.overrides())
    model = trial.prepared(permute_head(model, order)).eval()
    with trial.timer(TEACHER_EVALUATE_TIMER):
        final = trial.accuracy(model)
    save_model(model, partial)
    write_json(
        partial / "teacher.json",
        {
            "accuracy": final,
            "curve": None,
            "token_recovery": None,
            "steps": 0,
            "numerics": trial.numerics(),
            "teacher": CHECKPOINT,
            "checkpoint": study.model.name_or_path,
            # the checkpoint's label id of each of the data's labels, in the data's order
            "label_order": list(order),
        },
    )
