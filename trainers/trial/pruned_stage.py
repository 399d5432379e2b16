"""The pruned stage's build: CoFi pruning of the (N, 0) teacher towards sparsity s, with
distillation from it; the model materialized at the target; then its fine-tuning with the
teacher's logits. Its record, ``result.json``, holds the dev accuracy and curve and the
sparsities (achieved, expected by the gates, by CoFi's own rule). Keyed by
:func:`trainers.trial.cache_keys.trial_key`."""

from __future__ import annotations

from pathlib import Path

import torch

from autoprumux.core.grid import GridPoint
from trainers.model.architecture import prunable_params
from trainers.model.checkpoints import load_classifier, save_model
from trainers.model.classifier import Classifier, frozen_copy
from trainers.pruning.l0 import L0Module
from trainers.pruning.materialize import materialize, materialized_architecture
from trainers.training.phases import finetune_phase, identity_map, pruning_phase, steps_for
from trainers.trial.artifacts import write_json
from trainers.trial.stages import RunningTrial


def build_pruned(
    trial: RunningTrial,
    partial: Path,
    *,
    teacher: Classifier,  # the (N, 0) model, on the device: distilled from, never trained
    teacher_folder: Path,  # where it was saved: the student starts as its copy
    sparsity: float,  # the target, of the prunable parameters
) -> None:
    training, device = trial.study.training, trial.engine.device
    torch.manual_seed(trial.seed)  # the same gates and samples, built fresh or resumed
    student = trial.prepared(load_classifier(teacher_folder, device), task=True)
    l0 = L0Module(student.arch).to(device)
    layer_map = identity_map(student.arch.hidden_size).to(device)
    batch, examples = training.batch_rows * trial.n, len(trial.train)  # sentences a step
    steps = steps_for(training.pruning_steps, training.pruning_epochs, examples, batch)
    warmup = steps_for(
        training.lagrangian_warmup_steps, training.lagrangian_warmup_epochs, examples, batch
    )
    frozen = frozen_copy(teacher, trial.engine)  # bf16 on a bf16 GPU: no per-step weight casts
    phase = pruning_phase(
        student,
        frozen,
        l0,
        layer_map,
        trial.train,
        training,
        steps,
        min(warmup, steps),
        sparsity,
        trial.seed,
    )
    with trial.timer("prune"):
        trial.run_phase(phase, partial / "prune-checkpoint")
    cofi_rule = prunable_params(materialized_architecture(student.arch, l0.deterministic()))
    small = trial.prepared(materialize(student, l0.calibrated(sparsity)), task=True)
    post = steps_for(training.post_pruning_steps, training.post_pruning_epochs, examples, batch)
    phase = finetune_phase(
        small,
        trial.train,
        post,
        training.finetune_learning_rate,
        training.batch_rows,
        trial.seed + 1,
        training,
        teacher=frozen,
        name="post-finetune",
    )
    point = GridPoint(trial.n, sparsity)
    with trial.timer("post-finetune"):
        trial.run_checked_phase(phase, partial / "post-checkpoint", small, point, partial)
    save_model(small, partial)
    dense = prunable_params(student.arch)
    with trial.timer("evaluate"):
        final = trial.accuracy(small)
        write_json(
            partial / "result.json",
            {
                "accuracy": final,
                "curve": trial.finish_curve(point, phase.name, post, final, partial).to_json(),
                "achieved_sparsity": 1 - prunable_params(small.arch) / dense,
                "expected_sparsity": float(l0.expected_sparsity().detach()),
                "cofi_rule_sparsity": 1 - cofi_rule / dense,
                "numerics": trial.numerics(),
            },
        )
