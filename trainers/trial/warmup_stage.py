"""The warm-up stage's build: the base model made N wide and trained to recover each
instance's tokens from the mixed hidden states (retrieval), then optionally masked-LM steps;
its record, ``warmup.json``, holds the token recovery on the dev sentences. Keyed by
:func:`trainers.trial.cache_keys.warmup_key`."""

from __future__ import annotations

from pathlib import Path

from trainers.data.splits import encode, read_unlabelled_text
from trainers.model.checkpoints import load_pretrained, save_model
from trainers.training.phases import warmup_phase
from trainers.training.retrieval import RetrievalHead, token_recovery
from trainers.trial.artifacts import write_json
from trainers.trial.stages import RunningTrial
from trainers.trial.trial_results import WARMUP_TIMER


def build_warmup(trial: RunningTrial, partial: Path) -> None:
    study, warmup = trial.study, trial.study.warmup
    # the architecture is pooling-neutral (the default): the warm-up never pools, its key
    # leaves pooling out, and the teacher sets the study's (trainers.trial.run)
    overrides = {k: v for k, v in trial.overrides().items() if k != "pooling"}
    # a fine-tuned checkpoint's head (in its own label order) is no part of the warm-up
    model, _ = load_pretrained(
        study.model.name_or_path, seed=trial.seed, keep_head=False, **overrides
    )
    model = trial.prepared(model)
    head = RetrievalHead(model)  # on the model's device
    text = (
        encode(read_unlabelled_text(warmup.text, study.resolve), trial.tokenizer, warmup.max_length)
        if warmup.text
        else trial.train.truncated(warmup.max_length)
    )
    dev_text = trial.dev.truncated(warmup.max_length)
    steps = warmup.steps_per_instance * trial.n
    buckets = study.training.length_buckets  # given: the warm-up's too; else chosen on a GPU
    compiled = trial.engine.compile  # fixed shapes (buckets) for a compiled step on a CPU too
    phase = warmup_phase(
        model, head, text, warmup, trial.seed, steps, length_buckets=buckets, compiled=compiled
    )
    with trial.timer(WARMUP_TIMER):
        trial.run_phase(phase, partial / "warmup-checkpoint")
        if warmup.mlm_steps:
            phase = warmup_phase(
                model,
                head,
                text,
                warmup,
                trial.seed + 1,
                warmup.mlm_steps,
                mask_token_id=trial.tokenizer.mask_token_id,
                length_buckets=buckets,
                compiled=compiled,
            )
            trial.run_phase(phase, partial / "mlm-checkpoint")
    save_model(model, partial)
    write_json(
        partial / "warmup.json",
        {
            "token_recovery": token_recovery(model, head, dev_text),
            "steps": steps,
            "mlm_steps": warmup.mlm_steps,
            "numerics": trial.numerics(),
        },
    )
