"""A trained (N, 0) or (N, s) model's :class:`TrialResult`: its throughput measured on the
trial's device, its folder described (tokenizer, ``autoprumux.json``, model card) so it
can be served (:mod:`trainers.deploy.model_folder`), and its dev figure in each of the study's
other serving precisions (:mod:`trainers.deploy.precisions`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from autoprumux.core.data_spec import data_spec
from autoprumux.core.early_stop import Curve
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.records import TrialStatus
from trainers.deploy.model_folder import ModelInfo, describe
from trainers.deploy.precisions import ServedDev, evaluate_precisions
from trainers.deploy.quantize import DevSet, calibration_examples, first_examples
from trainers.deploy.timing import measure_one
from trainers.model.architecture import prunable_params
from trainers.model.classifier import Classifier
from trainers.runtime.device import numerics
from trainers.trial.artifacts import folder_lock
from trainers.trial.cache_keys import starting_checkpoint
from trainers.trial.stages import RunningTrial
from trainers.trial.task_data import task_tables
from trainers.trial.trial_results import PRECISIONS_TIMER, TEACHER_PRECISIONS_TIMER, TrialResult


def model_result(
    trial: RunningTrial,
    model: Classifier,
    folder: Path,
    *,
    target: float,  # the sparsity asked for
    achieved: float,  # of the materialized model's prunable parameters
    teacher_record: dict[str, Any],  # the (N, 0) teacher's teacher.json: the token recovery
    record: dict[str, Any],  # the model's own record: accuracy, curve, numerics
    teacher_folder: Path | None = None,  # for s > 0: the model it was pruned from
) -> TrialResult:
    """The result of a COMPLETE trial whose model is ``model``, saved in ``folder``."""
    study = trial.study
    settings = dataclasses.replace(study.throughput, device=str(trial.engine.device))
    with trial.timer("throughput"):
        throughput = measure_one(model, settings, study.model.max_seq_length)
    result = TrialResult(
        task=study.task,
        n=trial.n,
        sparsity=target,
        status=TrialStatus.COMPLETE,
        accuracy=record["accuracy"],
        labels=trial.label_names,
        achieved_sparsity=achieved,
        parameters=prunable_params(model.arch),
        throughput=throughput,
        token_recovery=teacher_record.get("token_recovery"),
        artifact_path=str(folder),
        seed=trial.seed,
        numerics=record.get("numerics") or numerics(trial.engine),  # older artifacts: now
        curve=_curve(record),
    )
    span = TEACHER_PRECISIONS_TIMER if target == 0 else PRECISIONS_TIMER
    # under the artifact's lock: trials sharing a teacher describe it in turn, and the later
    # ones read its figures per precision instead of evaluating them again (the wait is timed)
    with trial.timer(span), folder_lock(folder):
        # the figures per precision the folder records already are kept (not evaluated again)
        describe(folder, _model_info(trial, result, teacher_folder), trial.tokenizer)
        # after describe: int8 is exported from the described folder, as `export` does
        served = evaluate_precisions(
            folder, model, trial.precisions, _served_dev(trial), trial.progress
        )
    int8 = served.get(Precision.INT8)
    speed = int8.speed if int8 is not None else None
    return dataclasses.replace(
        result,
        served={p.value: score.dev for p, score in served.items()},
        int8_throughput_ratio=speed.throughput if speed else None,
        int8_latency_ratio=speed.latency if speed else None,
    )


def _served_dev(trial: RunningTrial) -> ServedDev:
    """The trial's dev split for the evaluations in other precisions: its encoded tensors,
    scored by its own evaluation, and the same examples as text (for the ONNX int8 file)."""
    study, examples = trial.study, len(trial.dev)

    def texts() -> DevSet:
        where = str(study.path) if study.path else study.name
        return first_examples(task_tables(study).dev, examples, where)

    return ServedDev(
        score=trial.accuracy,
        texts=texts,
        calibration=lambda: calibration_examples(task_tables(study).train),
        examples=examples,
        engine=trial.engine,
        throughput=study.throughput,
    )


def _model_info(
    trial: RunningTrial,
    result: TrialResult,
    teacher_folder: Path | None,
) -> ModelInfo:
    study, spec = trial.study, data_spec(trial.study)
    return ModelInfo(
        task=study.task,
        labels=trial.label_names,
        text_columns=spec.text_columns,
        label_column=spec.label,
        metric=study.study.metric.value,
        # F1's label named even when the study leaves it to the default (the second label)
        positive_label=trial.label_names[trial.positive_label_id]
        if study.study.metric is Metric.F1
        else "",
        max_length=study.model.max_seq_length,
        n=trial.n,
        sparsity=result.sparsity,
        achieved_sparsity=result.achieved_sparsity or 0.0,
        parameters=result.parameters or 0,
        dev_accuracy=result.accuracy or 0.0,
        dev_examples=len(trial.dev),
        throughput=result.throughput,
        throughput_device=str(trial.engine.device),
        study=study.name,
        study_file=str(study.path.resolve()) if study.path else "",
        recipe=study.recipe,
        base_model=starting_checkpoint(study, trial.n),
        teacher=str(teacher_folder) if teacher_folder else None,
        seed=trial.seed,
        numerics=result.numerics,
    )


def _curve(record: dict[str, Any]) -> Curve | None:
    """An artifact's recorded curve (None for artifacts from before curves were kept)."""
    return Curve.from_json(record["curve"]) if record.get("curve") else None
