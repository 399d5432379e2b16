"""A trained (N, 0) or (N, s) model's :class:`TrialResult`: its throughput measured on the
trial's device, its folder described (tokenizer, ``autoprumux.json``, model card) so it
can be served (:mod:`trainers.deploy.model_folder`), and its dev figure in each of the study's
other serving precisions (:mod:`trainers.deploy.precisions`).

An (N, s) trial that reuses its (N, 0) teacher reads the teacher's figures from the teacher's
folder instead (:func:`model_result`'s ``keep_recorded``): they are those of the trial that
built it, which the study records for (N, 0), and a later trial neither times the teacher again
nor describes its folder anew (only a precision the folder lacks is evaluated and added)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autoprumux.core.data_spec import data_spec
from autoprumux.core.early_stop import Curve
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.records import TrialStatus
from trainers.deploy.model_folder import ModelInfo, NotAModelError, describe, read_info
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
    keep_recorded: bool = False,  # a reused folder described already keeps its figures
) -> TrialResult:
    """The result of a COMPLETE trial whose model is ``model``, saved in ``folder``: timed,
    described and evaluated in the study's other precisions. With ``keep_recorded`` (an
    (N, s) trial's reused teacher), a folder that is described already is neither timed nor
    described again: its recorded throughput is the result's."""
    study = trial.study
    span = TEACHER_PRECISIONS_TIMER if target == 0 else PRECISIONS_TIMER
    # under the artifact's lock from before the timing: trials sharing a teacher time and
    # describe it in turn, the first (its builder, unless it was killed first) alone; the later
    # ones read its throughput and its figures per precision (the wait is timed)
    with _locked(trial, span, folder):
        recorded = _recorded_throughput(folder) if keep_recorded else None
        if recorded is None:
            settings = dataclasses.replace(study.throughput, device=str(trial.engine.device))
            with trial.timer("throughput"):
                throughput = measure_one(model, settings, study.model.max_seq_length)
        else:
            throughput = recorded
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
        with trial.timer(span):
            if recorded is None:
                # the figures per precision the folder records already are kept (not
                # evaluated again)
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


@contextlib.contextmanager
def _locked(trial: RunningTrial, span: str, folder: Path) -> Iterator[None]:
    """The artifact's lock held, the wait for it counted in ``span``."""
    lock = folder_lock(folder)
    with trial.timer(span):
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _recorded_throughput(folder: Path) -> float | None:
    """The examples/s the folder's description records (the trial that built the model timed
    it); None for a folder not described yet (its builder was killed before, or is an older
    release's) or without a throughput: it is then timed and described now."""
    try:
        return read_info(folder).throughput
    except NotAModelError:
        return None


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
