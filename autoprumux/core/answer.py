"""Where the recommended model is, or the command that trains it.

A recommendation is only useful with its model: a trained point's model is the folder its trial
recorded (:attr:`TrialRecord.artifact_path`); a predicted point has no model yet, so the answer
is the exact ``autoprumux train`` command that trains it. :func:`locate_model` decides which, in
one place, for every place that says it or uses the folder: ``search --json`` (``best``), the
text ``search`` prints, the HTML report's answer box, and the search's end (its table speeds and
test figures written into the folders).

A record holds the absolute path its trial wrote, on the machine and in the project folder it
ran in. A project copied or moved (or a study shared between machines) finds its models where
they are now: :func:`folder_now` looks for a recorded folder of the study's artifacts layout in
this study's own artifacts folder first (:attr:`TrainCommand.artifacts_folder`).
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.records import TrialRecord, TrialStatus

# The Optuna study's user attribute holding :meth:`TrainCommand.to_dict`, set by each search run
TRAIN_COMMAND_ATTR = "train_command"


@dataclass(frozen=True, kw_only=True)
class TrainCommand:
    """How ``autoprumux train`` trains a point of the study a search ran on."""

    study_path: str  # the study file the search used, absolute: runnable from any folder
    study_seed: int  # the seed that file sets; a trial trained with it needs no --seed
    device: str = "auto"  # the search's --device; "auto" is train's default too
    # that study's artifacts folder (Study.artifacts_folder), absolute, where its trials write
    # their models and a recorded folder is looked for first; None: stored by an older release
    artifacts_folder: str | None = None

    def for_point(self, point: GridPoint, seed: int | None = None) -> str:
        """The shell command, each argument quoted (a path may hold spaces or quotes)."""
        args = ["autoprumux", "train", "--study", self.study_path, "--n", str(point.n)]
        args += ["--sparsity", str(point.sparsity)]  # str(): the exact float, 0.65 not 0.650000
        if seed is not None and seed != self.study_seed:
            args += ["--seed", str(seed)]
        if self.device != "auto":
            args += ["--device", self.device]
        return shlex.join(args)

    def to_dict(self) -> dict[str, Any]:
        """What the Optuna study stores (user attribute ``train_command``) for its report."""
        stored = {"study": self.study_path, "seed": self.study_seed, "device": self.device}
        if self.artifacts_folder is not None:
            stored["artifacts"] = self.artifacts_folder
        return stored

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any] | None) -> TrainCommand | None:
        """The stored form back; None for a study recorded before it was stored."""
        if not stored or not stored.get("study") or stored.get("seed") is None:
            return None
        return cls(
            study_path=str(stored["study"]),
            study_seed=int(stored["seed"]),
            device=str(stored.get("device") or "auto"),
            artifacts_folder=str(stored["artifacts"]) if stored.get("artifacts") else None,
        )


class ModelState(enum.Enum):
    """Whether the recommended point has a model on disk, and if not, why."""

    SAVED = "saved"  # trained; its trial's folder is on disk
    # trained; the folder its trial recorded no longer exists, here or in the study's artifacts
    FOLDER_GONE = "folder_gone"
    NOT_SAVED = "not_saved"  # trained, but no folder was recorded (a replayed or imported row)
    # trained, but stopped early (it could not reach an earlier run's threshold): no model, and
    # its figure is the surface's prediction, under the bound its stop recorded
    STOPPED_EARLY = "stopped_early"
    PREDICTED = "predicted"  # never trained: its accuracy is the surface's prediction


@dataclass(frozen=True, kw_only=True)
class ModelPointer:
    """The recommended point's model folder, or the command that trains it."""

    point: GridPoint
    state: ModelState
    model_dir: str | None  # SAVED only: the trial's artifact folder, where it is now
    gone_dir: str | None  # FOLDER_GONE only: the recorded folder, named so the user knows
    train_command: str | None  # every state but SAVED, when the study file is known
    bound: float | None = None  # STOPPED_EARLY only: the most its dev figure could have reached

    def describe(self, metric: str = "dev figure") -> tuple[str, str | None]:
        """The answer in words, then the folder or command they end on (None when there is
        neither): the text prints them joined, the HTML sets the second as code. ``metric``
        names the figure a stopped training's bound is of."""
        point, command = self.point, self.train_command
        if self.state is ModelState.SAVED and self.serve_command is not None:
            return f"{point} was trained; serve it in {point.precision.value} with", (
                self.serve_command
            )
        if self.state is ModelState.SAVED:
            served = (
                ""
                if point.precision is Precision.FP32
                else f" (serve it in {point.precision.value})"
            )
            return f"{point} was trained; its model folder{served}", self.model_dir
        if self.state is ModelState.FOLDER_GONE:
            words = (
                f"{point} was trained, but its model folder {self.gone_dir} is not on this "
                "machine (deleted, or on the machine that trained it)"
            )
            again = "train it again"
        elif self.state is ModelState.NOT_SAVED:
            words = f"{point} was trained, but no model folder was recorded with it"
            again = "train it"
        elif self.state is ModelState.STOPPED_EARLY and self.bound is not None:
            words = (
                f"{point} was trained but stopped early: its {metric} is at most "
                f"{self.bound:.4f}, and the figure above is predicted"
            )
            again = "train it in full"
        else:
            words = f"{point} is predicted, not trained"
            again = "train it"
        if command is None:  # a results file: which study trains it is not known
            return f"{words}; no study file is known here to {again} with", None
        return f"{words}; {again} with", command

    @property
    def serve_command(self) -> str | None:
        """For an int8 answer with its folder: the command that writes its int8 ONNX file
        (checked against the fp32 model's labels, its dev figure recorded)."""
        if self.state is not ModelState.SAVED or self.point.precision is not Precision.INT8:
            return None
        name = f"model-n{self.point.n}-s{self.point.sparsity:g}-int8.onnx"
        return (
            f"autoprumux export --model {self.model_dir} --format onnx --precision int8 "
            f"--out {name}"
        )

    @property
    def message(self) -> str:
        words, code = self.describe()
        return words if code is None else f"{words}: {code}"

    def to_dict(self) -> dict[str, Any]:
        """``search --json``'s ``best``."""
        return {
            "n": self.point.n,
            "sparsity": self.point.sparsity,
            "precision": self.point.precision.value,
            "model": self.state.value,
            "model_dir": self.model_dir,
            "train_command": self.train_command,
            "serve_command": self.serve_command,
            "message": self.message,
        }


def folder_now(recorded: str, artifacts_folder: str | None, exists: Callable[[str], bool]) -> str:
    """Where a recorded model folder is now: for a folder of the study's layout
    (``<study folder>/artifacts/<study name>/<folder name>``), the folder of that name in this
    study's ``artifacts_folder`` where it exists there, else the recorded path.

    A folder's name is the content key of what built it (``trainers.trial.cache_keys``), so the
    same name is the same model: a copied or moved project uses its own copy, never the
    original's, even while the original still exists (the search writes into the folders it
    finds: a copy must not change the original's)."""
    path = PurePath(recorded)
    if artifacts_folder is None or path.parent.parent.name != "artifacts":
        return recorded  # a folder of no study's layout (a results file's), or no study known
    ours = Path(artifacts_folder)
    if path.parent.name != ours.name:  # another study's artifacts
        return recorded
    here = str(ours / path.name)
    return here if exists(here) else recorded


def locate_model(
    point: GridPoint,
    records: Iterable[TrialRecord],
    train: TrainCommand | None,
    exists: Callable[[str], bool] = lambda path: Path(path).exists(),
) -> ModelPointer:
    """The model of ``point`` among the study's ``records``: the newest complete trial whose
    folder is on disk (where it is now: :func:`folder_now`, in ``train``'s study's artifacts
    folder), else the newest one that recorded a folder (gone), else the newest complete trial
    (no folder); with no complete trial the point is predicted."""
    artifacts = train.artifacts_folder if train is not None else None
    # a point in another precision is served by the fp32 model its trial trained
    trained = [r for r in records if r.point == point.trained and r.status is TrialStatus.COMPLETE]
    with_dir = [(r, r.artifact_path) for r in trained if r.artifact_path]
    on_disk = [
        folder
        for folder in (folder_now(path, artifacts, exists) for _, path in with_dir)
        if exists(folder)
    ]
    if on_disk:
        return ModelPointer(
            point=point,
            state=ModelState.SAVED,
            model_dir=on_disk[-1],
            gone_dir=None,
            train_command=None,
        )
    stopped = [r for r in records if r.point == point.trained and r.status is TrialStatus.STOPPED]
    if with_dir:
        (chosen, gone), state = with_dir[-1], ModelState.FOLDER_GONE
    elif trained:
        state, chosen, gone = ModelState.NOT_SAVED, trained[-1], None
    elif stopped:
        state, chosen, gone = ModelState.STOPPED_EARLY, stopped[-1], None
    else:
        state, chosen, gone = ModelState.PREDICTED, None, None
    # retraining a trained point uses its record's seed, so the model it gives is that one
    seed = chosen.seed if chosen is not None else None
    return ModelPointer(
        point=point,
        state=state,
        model_dir=None,
        gone_dir=gone,
        train_command=train.for_point(point.trained, seed) if train is not None else None,
        bound=chosen.accuracy_bound if state is ModelState.STOPPED_EARLY and chosen else None,
    )
