"""A trial's cached stages: the retrieval warm-up, the fine-tuned (N, 0) teacher and the
pruned (N, s) model. Each is an artifact folder (keyed by :mod:`trainers.trial.cache_keys`) that
:func:`cached_stage` builds once, under the folder's file lock, in a partial folder that holds
the build's resumable checkpoints (:func:`trainers.trial.artifacts.build_once`); a later trial, or a
concurrent one that waited on the lock, reuses it. A stage's build (``trainers.*_stage``) sees
the trial that runs it as a :class:`RunningTrial`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from autoprumux.core.early_stop import Curve
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.progress import ProgressCallback
from autoprumux.core.study import Study
from trainers.data.splits import Encoded
from trainers.model.checkpoints import load_classifier
from trainers.model.classifier import Classifier
from trainers.runtime.device import Engine
from trainers.training.loop import Phase
from trainers.trial.artifacts import build_once, read_json, set_aside_damaged
from trainers.trial.trial_results import SpanTimer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class Stage(enum.Enum):
    """A cached stage; its value is how ``TrialResult.reused`` names it."""

    WARMUP = "warmup"  # trainers.trial.warmup_stage
    TEACHER = "teacher"  # trainers.trial.teacher_stage
    TRIAL = "trial"  # trainers.trial.pruned_stage

    @property
    def record_file(self) -> str:
        """The JSON the stage's build writes beside its model: what it measured."""
        return {"warmup": "warmup.json", "teacher": "teacher.json", "trial": "result.json"}[
            self.value
        ]


class RunningTrial(Protocol):
    """What a stage's build uses of the trial that runs it (``trainers.trial.run``)."""

    study: Study
    n: int
    seed: int
    engine: Engine
    timer: SpanTimer
    tokenizer: PreTrainedTokenizerBase
    train: Encoded  # the task's training sentences, on the engine's device
    dev: Encoded
    label_names: tuple[str, ...]  # the classifier's labels, in id order
    positive_label_id: int  # the label whose F1 metric = "f1" is
    progress: ProgressCallback | None
    # the study's serving precisions, fp32 first (trainers.runtime.device.study_precisions):
    # a trained model is evaluated on dev in each (trainers.trial.model_result)
    precisions: tuple[Precision, ...]

    def run_phase(self, phase: Phase, checkpoint: Path) -> None:
        """Run a phase to its end, resuming from (and saving to) ``checkpoint``."""

    def run_checked_phase(
        self, phase: Phase, checkpoint: Path, model: Classifier, point: GridPoint, partial: Path
    ) -> None:
        """A model's last phase, with the dev checks of early stopping and the curve."""

    def finish_curve(
        self, point: GridPoint, phase: str, steps: int, final: float, partial: Path
    ) -> Curve:
        """The last phase's curve, its final accuracy at its end."""
        ...

    def numerics(self) -> dict[str, Any]:
        """What the trial's numbers depend on: the engine's, and its length buckets."""
        ...

    def accuracy(self, model: Classifier, engine: Engine | None = None) -> float:
        """The dev score in the study's metric (accuracy: a fraction), on the trial's engine
        or ``engine``."""
        ...

    def prepared(self, model: Classifier, task: bool = False) -> Classifier:
        """The model to train, on the device (with the task phases' dropout for ``task``)."""
        ...

    def overrides(self) -> dict[str, Any]:
        """Architecture fields of the base model at width N (load_pretrained's overrides)."""
        ...

    def initial_model(self) -> tuple[Classifier, float | None]:
        """The model the task fine-tuning starts from, and its warm-up's token recovery."""
        ...

    def guide(self) -> Classifier | None:
        """The (1, 0) teacher an N > 1 fine-tuning distills from, if the study asks."""
        ...


def cached_stage(
    stage: Stage,
    folder: Path,
    build: Callable[[Path], None],  # writes the stage's model and record into the partial folder
    reused: list[str],  # the trial's reused stages: this one is added when it was there
    engine: Engine,
) -> tuple[Classifier, dict[str, Any]]:
    """The stage's model (eval mode, on the engine's device) and its record (JSON values),
    from ``folder``; built first when it is not there, and again when the folder found there
    cannot be read (it is set aside, not deleted)."""
    if build_once(folder, build):
        found = folder.stat().st_ino  # which folder was read: another trial may replace it
        try:
            model = load_classifier(folder, engine.device)
            return model, _reused(stage, folder, reused)
        except torch.OutOfMemoryError:  # the device's, not the folder's
            raise
        except Exception as err:  # whatever broke its files: a built folder was whole
            set_aside_damaged(folder, found, err)
            build_once(folder, build)  # or reuse what another trial built meanwhile
    return load_classifier(folder, engine.device), read_json(folder / stage.record_file)


def _reused(stage: Stage, folder: Path, reused: list[str]) -> dict[str, Any]:
    """The record of a stage found built (read before it counts as reused)."""
    record = read_json(folder / stage.record_file)
    reused.append(stage.value)
    return record
