"""The Optuna study as the search's source of truth (the only module that touches Optuna).

One Optuna trial per training of an (N, s): params ``n`` and ``sparsity``, objectives
(accuracy, throughput), both maximized, so optuna-dashboard's Pareto view shows the trade-off.
Every metric of the record is a user attribute; ``constraint`` (accuracy - threshold) is one too,
and the system attribute ``constraints`` holds [threshold - accuracy] (<= 0 is feasible), which
is what Optuna's constrained samplers and the dashboard's feasibility view read. The threshold
is the one in force when the trial was recorded (a finished trial cannot be changed). Failed
trainings are FAIL trials with their ``reason``. A model trained on the way by another trial
(its (N, 0) teacher) is a COMPLETE trial added as is, with ``from_trial`` naming that trial.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from autoprumux.errors import AutoPruMuxError
from autoprumux.grid import Grid, GridPoint
from autoprumux.records import TrialRecord, TrialStatus

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted: the process running it stopped before it finished"


class StorageError(AutoPruMuxError):
    """The storage cannot be opened, or the study in it does not match."""


class OptunaStore:
    def __init__(
        self, url: str, study_name: str, grid: Grid, task: str, recipe: str | None = None
    ) -> None:
        """Open or create the study. With ``recipe`` (:attr:`Study.recipe`), a stored study
        whose trials were trained under another recipe is refused: its results do not apply."""
        import optuna
        from sqlalchemy.exc import SQLAlchemyError

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.grid, self.task = grid, task
        try:
            storage = optuna.storages.RDBStorage(url)
        except (SQLAlchemyError, ValueError, ImportError, OSError) as err:
            raise StorageError(
                f"--storage {url!r} cannot be opened: {str(err).splitlines()[0]}"
            ) from None
        names = [s.study_name for s in storage.get_all_studies()]
        if study_name in names:
            study = optuna.load_study(study_name=study_name, storage=storage)
            stored = (study.user_attrs.get("grid"), study.user_attrs.get("task"))
            if stored != (grid.spec(), task):
                raise StorageError(
                    f"study {study_name!r} in {url} holds task {stored[1]!r} and grid "
                    f"{stored[0]!r}, not {task!r} and {grid.spec()!r}; use another study name "
                    "([study] name) or another --storage"
                )
            if recipe is not None:
                _check_recipe(study, recipe, url)
        else:
            study = optuna.create_study(
                study_name=study_name, storage=storage, directions=["maximize", "maximize"]
            )
            with warnings.catch_warnings():  # experimental in Optuna, and what the dashboard reads
                warnings.simplefilter("ignore")
                study.set_metric_names(["accuracy", "throughput"])
            study.set_user_attr("grid", grid.spec())
            study.set_user_attr("task", task)
        if recipe is not None and "recipe" not in study.user_attrs:
            study.set_user_attr("recipe", recipe)
        self.study, self.url = study, url
        self._running: dict[int, Any] = {}

    def set_threshold(self, threshold: float | None, budget: str) -> None:
        self.study.set_user_attr("threshold", threshold)
        self.study.set_user_attr("budget", budget)

    def recover_interrupted(self) -> int:
        """Mark trials left RUNNING by a killed process as FAIL (reason: interrupted) so that
        their points are trained again. One search process per study at a time."""
        from optuna.trial import TrialState

        count = 0
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            storage = self.study._storage
            storage.set_trial_user_attr(trial._trial_id, "reason", INTERRUPTED)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            count += 1
        return count

    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution

        return {
            "n": CategoricalDistribution(self.grid.n_values),
            "sparsity": CategoricalDistribution(self.grid.sparsities),
        }

    def start(self, point: GridPoint) -> int:
        """A new RUNNING trial for ``point``; returns its number."""
        self.study.enqueue_trial({"n": point.n, "sparsity": point.sparsity}, skip_if_exists=False)
        trial = self.study.ask(self.distributions())
        self._running[trial.number] = trial
        return trial.number

    def finish(self, number: int, record: TrialRecord, threshold: float | None) -> None:
        from optuna.trial import TrialState

        trial = self._running.pop(number)
        for key, value in _user_attrs(record, threshold).items():
            trial.set_user_attr(key, value)
        if record.status is TrialStatus.COMPLETE:
            assert record.accuracy is not None and record.throughput is not None
            if threshold is not None:
                self.study._storage.set_trial_system_attr(
                    trial._trial_id, "constraints", [threshold - record.accuracy]
                )
            self.study.tell(trial, [record.accuracy, record.throughput])
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def add(self, record: TrialRecord, threshold: float | None) -> None:
        """A complete trial that was not trained on its own (``record.from_trial``)."""
        from optuna.trial import create_trial

        assert record.accuracy is not None and record.throughput is not None
        constraints = {} if threshold is None else {"constraints": [threshold - record.accuracy]}
        self.study.add_trial(
            create_trial(
                values=[record.accuracy, record.throughput],
                params={"n": record.n, "sparsity": record.sparsity},
                distributions=self.distributions(),
                user_attrs=_user_attrs(record, threshold),
                system_attrs=constraints,
            )
        )

    def records(self) -> list[tuple[int, TrialRecord]]:
        """Finished trials as (number, record); failed ones with their reason."""
        from optuna.trial import TrialState

        out = []
        for trial in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)
        ):
            attrs = trial.user_attrs
            point = GridPoint(int(trial.params["n"]), float(trial.params["sparsity"]))
            complete = trial.state == TrialState.COMPLETE
            out.append(
                (
                    trial.number,
                    TrialRecord(
                        self.task,
                        point.n,
                        point.sparsity,
                        accuracy=trial.values[0] if complete else None,
                        throughput=trial.values[1] if complete else None,
                        status=TrialStatus.COMPLETE if complete else TrialStatus.FAILED,
                        reason=attrs.get("reason"),
                        achieved_sparsity=attrs.get("achieved_sparsity"),
                        wall_time_s=attrs.get("wall_time_s"),
                        gpu_hours=attrs.get("gpu_hours"),
                        seed=attrs.get("seed"),
                        artifact_path=attrs.get("artifact_path"),
                        from_trial=attrs.get("from_trial"),
                    ),
                )
            )
        return out


def _user_attrs(record: TrialRecord, threshold: float | None) -> dict[str, Any]:
    """Every metric of the record, and for a complete one the threshold in force and the
    margin to it (``constraint``, >= 0 is feasible)."""
    attrs = {
        k: v
        for k, v in record.to_row().items()
        if v is not None and k not in ("task", "n", "sparsity")
    }
    if record.status is TrialStatus.COMPLETE and threshold is not None:
        assert record.accuracy is not None
        attrs.update(threshold=threshold, constraint=record.accuracy - threshold)
    return attrs


def _check_recipe(study: Any, recipe: str, url: str) -> None:
    """Refuse a stored study trained under another recipe (or under an unknown one: recorded
    by a release without recipes); a study without trials just takes the new recipe."""
    stored = study.user_attrs.get("recipe")
    if stored == recipe or (stored is None and not study.get_trials(deepcopy=False)):
        return
    name = study.study_name
    why = (
        "was trained under another recipe (the study file's [model], [data], [training], "
        "[multiplexing] or [warmup] settings or its seed changed since)"
        if stored
        else "holds trials of an older autoprumux that did not record their recipe"
    )
    raise StorageError(
        f"study {name!r} in {url} {why}, so its results do not apply; use another study name "
        f"([study] name) or --storage, or delete it: optuna delete-study --study-name {name} "
        f"--storage {url}"
    )
