"""The Optuna study as the search's source of truth (the only module that touches Optuna).

One Optuna trial per training of an (N, s): params ``n`` and ``sparsity``, objectives
(accuracy, throughput), both maximized, so optuna-dashboard's Pareto view shows the trade-off.
Every metric of the record is a user attribute; ``constraint`` (accuracy - threshold) is one too,
and the system attribute ``constraints`` holds [threshold - accuracy] (<= 0 is feasible), which
is what Optuna's constrained samplers and the dashboard's feasibility view read. The threshold
is the one in force when the trial was recorded (a finished trial cannot be changed). Failed
trainings are FAIL trials with their ``reason``. A model trained on the way by another trial
(its (N, 0) teacher) is a COMPLETE trial added as is, with ``from_trial`` naming that trial.

A trial's life, safe against a kill at any instant and shared by any number of searches:

- open: the study is created or loaded, then labelled with its task and grid; a study with
  neither label nor trial (a search killed while creating it) is labelled again;
- start: one write creates the RUNNING trial with its params, its owner and its lease
  (:mod:`autoprumux.loop.trial_owner`); a search that finds the point started first by another one
  (both read the study before either started it) closes its trial SUPERSEDED, untrained;
- finish: the free by-products, the record's attributes, and last the state (COMPLETE or FAIL):
  a kill before that write leaves a RUNNING trial, to be taken back;
- repair (before a search proposes anything, and while it runs): a WAITING trial (enqueued by
  hand, or by an older release) is closed NOT_STARTED and a RUNNING trial whose owner is dead
  is closed INTERRUPTED; a live one, whoever owns it, is left alone and its point is not
  proposed. None of these closed trials counts as a training or as a failure of its point.

Reading tolerates what an older release could leave: a finished trial without params (asked,
then killed) is skipped, a FAIL trial without a reason counts as interrupted.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import shlex
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy.exc import SQLAlchemyError

from autoprumux.core.errors import AutoPruMuxError
from autoprumux.core.grid import Grid, GridPoint
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.loop.masking import masked_url, without_password
from autoprumux.loop.storage_check import StorageError, StorageUse, check_storage, connect_url
from autoprumux.loop.trial_owner import (
    LeaseKeeper,
    LeaseTerms,
    Liveness,
    TrialOwner,
    close_owner,
    liveness,
    now_s,
)

__all__ = ["INTERRUPTED", "Abandoned", "OptunaStore", "StorageError", "StudySnapshot"]

log = logging.getLogger(__name__)
T = TypeVar("T")

OWNER_ATTR = "autoprumux:owner"  # system attribute: the TrialOwner of a RUNNING trial
LEASE_ATTR = "autoprumux:lease_until"  # system attribute: seconds since the epoch
SQLITE_BUSY_TIMEOUT_S = 60  # a write waits this long for another process's write to end
OPEN_ATTEMPTS = 8  # tries at creating a new storage that other searches create at once
WRITE_ATTEMPTS = 5  # tries at a write that the database refused as busy (locked)


class Abandoned(enum.Enum):
    """Why a trial was closed without a training's result (its ``reason``). None counts as a
    training or as a failure of its point: the search trains the point if it still needs it."""

    INTERRUPTED = "interrupted: the process running it stopped before it finished"
    NOT_STARTED = "not started: it was left WAITING (enqueued) and never trained"
    SUPERSEDED = "superseded: another search started this point first; not trained here"


INTERRUPTED = Abandoned.INTERRUPTED.value
_ABANDONED = frozenset(a.value for a in Abandoned)


def is_abandoned(record: TrialRecord) -> bool:
    return record.status is TrialStatus.FAILED and record.reason in _ABANDONED


@dataclass(frozen=True, kw_only=True)
class RunningTrial:
    """A live RUNNING trial: this search's, or another one's."""

    number: int
    point: GridPoint
    owner: TrialOwner
    mine: bool  # started by this OptunaStore


@dataclass(frozen=True, kw_only=True)
class StudySnapshot:
    """The study at one read: finished trials as records, and the live running ones."""

    records: list[tuple[int, TrialRecord]]  # (number, record), failed ones with their reason
    running: tuple[RunningTrial, ...]

    def running_points(self) -> frozenset[GridPoint]:
        return frozenset(t.point for t in self.running)

    def others(self) -> tuple[RunningTrial, ...]:
        """Live trials of other searches."""
        return tuple(t for t in self.running if not t.mine)


class OptunaStore:
    def __init__(
        self,
        url: str,
        study_name: str,
        grid: Grid,
        task: str,
        recipe: str | None = None,
        *,
        lease: LeaseTerms | None = None,
    ) -> None:
        """Open or create the study. With ``recipe`` (:attr:`Study.recipe`), a stored study
        whose trials were trained under another recipe is refused: its results do not apply.
        A URL that is malformed, or names a database that is not an Optuna one, is refused
        before anything is created or written."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        check_storage(url, StorageUse.CREATE)
        self.grid, self.task, self.url = grid, task, url
        self._storage = _open_storage(url)
        self.study = _open_study(self._storage, study_name, grid, task, url)
        self._study_id = self._storage.get_study_id_from_name(study_name)
        if recipe is not None:
            _check_recipe(self.study, recipe, url)
            if "recipe" not in self.study.user_attrs:
                self.study.set_user_attr("recipe", recipe)
        self.lease_terms = lease or LeaseTerms()
        self.owner = TrialOwner.new()
        self._running: dict[int, int] = {}  # this search's RUNNING trials: number -> trial id
        self._lease = LeaseKeeper(self._renew, self.lease_terms)

    def set_threshold(self, threshold: float | None, budget: str) -> None:
        self._retrying(self.study.set_user_attr, "threshold", threshold)
        self._retrying(self.study.set_user_attr, "budget", budget)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {
            "n": CategoricalDistribution(self.grid.n_values),
            "sparsity": CategoricalDistribution(self.grid.sparsities),
        }

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> StudySnapshot:
        now = now_s()
        records, running = [], []
        for trial in self._retrying(self.study.get_trials, deepcopy=False):
            point = _point(trial)
            if point is None:  # asked by an older release and killed before its params
                continue
            if trial.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
                records.append((trial.number, self._record(trial, point)))
            elif trial.state == TrialState.RUNNING:
                owner = TrialOwner.from_attr(trial.system_attrs.get(OWNER_ATTR))
                if owner is not None and _liveness(trial, now) is Liveness.LIVE:
                    mine = trial.number in self._running
                    running.append(
                        RunningTrial(number=trial.number, point=point, owner=owner, mine=mine)
                    )
        return StudySnapshot(records=records, running=tuple(running))

    def records(self) -> list[tuple[int, TrialRecord]]:
        """Finished trials as (number, record); failed ones with their reason."""
        return self.snapshot().records

    def _record(self, trial: FrozenTrial, point: GridPoint) -> TrialRecord:
        attrs = trial.user_attrs
        complete = trial.state == TrialState.COMPLETE
        # a training stopped early is PRUNED in Optuna, with its evidence
        stopped = trial.state == TrialState.PRUNED and "stop_accuracy" in attrs
        reason = attrs.get("reason")
        if not complete and reason is None:  # failed by Optuna's stale-trial check, or by hand
            reason = INTERRUPTED
        status = TrialStatus.COMPLETE if complete else TrialStatus.FAILED
        return TrialRecord(
            task=self.task,
            n=point.n,
            sparsity=point.sparsity,
            accuracy=trial.values[0] if complete else None,
            throughput=trial.values[1] if complete else None,
            status=TrialStatus.STOPPED if stopped else status,
            reason=reason,
            achieved_sparsity=attrs.get("achieved_sparsity"),
            wall_time_s=attrs.get("wall_time_s"),
            gpu_hours=attrs.get("gpu_hours"),
            seed=attrs.get("seed"),
            artifact_path=attrs.get("artifact_path"),
            from_trial=attrs.get("from_trial"),
            node=attrs.get("node"),
            **{name: attrs.get(name) for name in COST_AND_STOP_FIELDS},
        )

    # -- the trial lifecycle ----------------------------------------------------------------

    def repair(self) -> dict[Abandoned, int]:
        """Close every trial left in a non-final state that nobody runs (see the module doc);
        returns how many were closed, by reason."""
        now = now_s()
        closed = dict.fromkeys(Abandoned, 0)
        states = (TrialState.WAITING, TrialState.RUNNING)
        for trial in self._retrying(self.study.get_trials, deepcopy=False, states=states):
            if trial.state == TrialState.WAITING:
                why = Abandoned.NOT_STARTED
            elif _liveness(trial, now) is Liveness.DEAD:
                why = Abandoned.INTERRUPTED
            else:
                continue
            if self._close(trial._trial_id, why):
                closed[why] += 1
        return closed

    def start(self, point: GridPoint) -> int | None:
        """A new RUNNING trial for ``point``, created in one write; its number, or None when
        another search started this point first (the trial is then closed, untrained)."""
        template = create_trial(
            state=TrialState.RUNNING,
            params={"n": point.n, "sparsity": point.sparsity},
            distributions=self.distributions(),
            system_attrs={
                OWNER_ATTR: self.owner.to_attr(),
                LEASE_ATTR: now_s() + self.lease_terms.lasts_s,
            },
        )
        trial_id = self._retrying(self._storage.create_new_trial, self._study_id, template)
        number = self._retrying(self._storage.get_trial_number_from_id, trial_id)
        self._running[number] = trial_id
        self._lease.add(trial_id)
        if self._started_first(point, number):
            return number
        self._close(trial_id, Abandoned.SUPERSEDED)
        self._forget(number)
        return None

    def finish(
        self,
        number: int,
        record: TrialRecord,
        threshold: float | None,
        by_products: Sequence[TrialRecord] = (),
    ) -> None:
        """Record a training: its by-products (finished trials of their own), then its
        attributes, then its state, in the last write. A by-product is started and finished
        like a training (:meth:`start`), so of two searches that record the same (N, 0) teacher
        at once exactly one does (the lowest trial number wins)."""
        trial_id = self._running[number]
        try:
            for by_product in by_products:
                free = self.start(by_product.point)
                if free is not None:
                    self.finish(free, by_product, threshold)
            attrs = _user_attrs(record, threshold)
            for key, value in attrs.items():
                self._retrying(self._storage.set_trial_user_attr, trial_id, key, value)
            if record.status is TrialStatus.COMPLETE:
                assert record.accuracy is not None and record.throughput is not None
                if threshold is not None:
                    constraints = [threshold - record.accuracy]
                    self._retrying(
                        self._storage.set_trial_system_attr, trial_id, "constraints", constraints
                    )
                values = [record.accuracy, record.throughput]
                self._retrying(
                    self._storage.set_trial_state_values, trial_id, TrialState.COMPLETE, values
                )
            elif record.status is TrialStatus.STOPPED:
                self._retrying(self._storage.set_trial_state_values, trial_id, TrialState.PRUNED)
            else:
                self._retrying(self._storage.set_trial_state_values, trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            # another search took the trial back while it trained (its lease lapsed: this
            # machine was suspended, say); the training still counts, as a trial of its own
            log.warning("trial %d was closed by another search meanwhile; recorded anew", number)
            self._record_anew(record, threshold)
        finally:
            self._forget(number)

    def add(self, record: TrialRecord, threshold: float | None) -> None:
        """A finished training whose trial was taken back by another search while it trained
        (:meth:`finish`): recorded as a trial of its own."""
        values, constraints = None, {}
        if record.status is TrialStatus.COMPLETE:
            assert record.accuracy is not None and record.throughput is not None
            values = [record.accuracy, record.throughput]
            if threshold is not None:
                constraints = {"constraints": [threshold - record.accuracy]}
        state = TrialState.FAIL if values is None else TrialState.COMPLETE
        if record.status is TrialStatus.STOPPED:
            state = TrialState.PRUNED
        trial = create_trial(
            state=state,
            values=values,
            params={"n": record.n, "sparsity": record.sparsity},
            distributions=self.distributions(),
            user_attrs=_user_attrs(record, threshold),
            system_attrs=constraints,
        )
        self._retrying(self._storage.create_new_trial, self._study_id, trial)

    def close(self) -> None:
        """The search is over: its trials still running (it crashed, or was interrupted) are
        closed as interrupted, and nothing renews their leases any more."""
        for number, trial_id in list(self._running.items()):
            try:
                self._close(trial_id, Abandoned.INTERRUPTED)
            except Exception:  # the next search's repair closes it
                log.warning("could not close trial %d", number, exc_info=True)
            self._forget(number)
        self._lease.stop()
        close_owner(self.owner)

    # -- helpers ----------------------------------------------------------------------------

    def _started_first(self, point: GridPoint, number: int) -> bool:
        """Whether trial ``number`` may train ``point``: no other trial measured it, and no
        live one started it before (the lowest number wins, so of two searches that started
        the point at once, exactly one trains it)."""
        now = now_s()
        states = (TrialState.RUNNING, TrialState.COMPLETE)
        for trial in self._retrying(self.study.get_trials, deepcopy=False, states=states):
            if trial.number == number or _point(trial) != point:
                continue
            if trial.state == TrialState.COMPLETE:
                return False
            if trial.number < number and _liveness(trial, now) is Liveness.LIVE:
                return False
        return True

    def _record_anew(self, record: TrialRecord, threshold: float | None) -> None:
        measured = any(
            r.point == record.point and r.status is TrialStatus.COMPLETE for _, r in self.records()
        )
        if not measured:
            self.add(record, threshold)

    def _close(self, trial_id: int, why: Abandoned) -> bool:
        """Close a trial that holds no training's result; False if it was finished already
        (another search closed it first)."""
        try:
            # the reason first: a kill between the two writes leaves a RUNNING trial again
            self._retrying(self._storage.set_trial_user_attr, trial_id, "reason", why.value)
            self._retrying(self._storage.set_trial_state_values, trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False
        return True

    def _forget(self, number: int) -> None:
        trial_id = self._running.pop(number, None)
        if trial_id is not None:
            self._lease.remove(trial_id)

    def _renew(self, trial_id: int) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):  # finished since the keeper looked
            until = now_s() + self.lease_terms.lasts_s
            self._retrying(self._storage.set_trial_system_attr, trial_id, LEASE_ATTR, until)

    @staticmethod
    def _retrying(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A storage call, tried again when the database was too busy to take it (SQLite
        refuses a write at once, whatever its timeout, when two writers would deadlock)."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return call(*args, **kwargs)
            except StorageInternalError:
                if attempt == WRITE_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.05, 0.5) * attempt)
        raise AssertionError("unreachable")


def study_attributes(url: str, study_name: str) -> dict[str, Any] | None:
    """The user attributes of a stored study (what the search wrote: grid, task, throughput
    table, how it trained), read without opening the study for writing; None when the storage
    holds no study of that name."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=connect_url(url))
    except KeyError:
        return None
    return dict(study.user_attrs)


def _open_storage(url: str) -> RDBStorage:
    """Optuna's RDBStorage for ``url`` (a plain ``postgresql://`` one through the installed
    driver: :func:`connect_url`), its tables created if it is new. Searches that create
    one new storage at once collide (Optuna stamps the schema version without a lock: "UNIQUE
    constraint failed: alembic_version", or "table ... already exists"): the loser finds the
    storage created on its next try."""
    engine_kwargs = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else {}
    )
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(connect_url(url), engine_kwargs=engine_kwargs)
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
            if attempt == OPEN_ATTEMPTS:
                raise _cannot_open(url, err) from None
            time.sleep(random.uniform(0.05, 0.3) * attempt)
        except (ValueError, ImportError, OSError, RuntimeError) as err:
            # RuntimeError: written by an Optuna whose schema this one cannot read
            raise _cannot_open(url, err) from None
    raise AssertionError("unreachable")


def _open_study(storage: RDBStorage, name: str, grid: Grid, task: str, url: str) -> optuna.Study:
    """Load the study, or create it; label it with its task and grid (again, if a search was
    killed before it had: such a study has no trials). A study of something else is refused
    before anything is written to it."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        with contextlib.suppress(optuna.exceptions.DuplicatedStudyError):  # another search's
            storage.create_new_study([StudyDirection.MAXIMIZE] * 2, name)
        study = optuna.load_study(study_name=name, storage=storage)
    where = f"study {name!r} in {masked_url(url)}"  # never the password
    if study.directions != [StudyDirection.MAXIMIZE] * 2:
        raise StorageError(
            f"{where} was not created by autoprumux search (it does not maximize "
            "accuracy and throughput); use another study name ([study] name) or --storage"
        )
    stored = (study.user_attrs.get("grid"), study.user_attrs.get("task"))
    if stored == (grid.spec(), task):
        return study
    if None in stored and not study.get_trials(deepcopy=False):
        with warnings.catch_warnings():  # experimental in Optuna, and what the dashboard reads
            warnings.simplefilter("ignore")
            study.set_metric_names(["accuracy", "throughput"])
        study.set_user_attr("grid", grid.spec())
        study.set_user_attr("task", task)
        return study
    if None in stored:
        raise StorageError(
            f"{where} holds trials but no task or grid: it was not written by "
            "autoprumux search; use another study name ([study] name) or another --storage"
        )
    raise StorageError(
        f"{where} holds task {stored[1]!r} and grid {stored[0]!r}, not "
        f"{task!r} and {grid.spec()!r}; use another study name ([study] name) or another "
        "--storage"
    )


# read back from user attributes as they were written (TrialRecord's field names)
COST_AND_STOP_FIELDS = (
    "warmup_s",
    "teacher_s",
    "own_s",
    "stop_step",
    "stop_accuracy",
    "stop_margin",
)


def _point(trial: FrozenTrial) -> GridPoint | None:
    """The trial's (N, s); None for a trial without (valid) params."""
    try:
        return GridPoint(int(trial.params["n"]), float(trial.params["sparsity"]))
    except (KeyError, TypeError, ValueError, AutoPruMuxError):
        return None


def _liveness(trial: FrozenTrial, now: float) -> Liveness:
    owner = TrialOwner.from_attr(trial.system_attrs.get(OWNER_ATTR))
    lease = trial.system_attrs.get(LEASE_ATTR)
    return liveness(owner, lease if isinstance(lease, (int, float)) else None, now)


def _user_attrs(record: TrialRecord, threshold: float | None) -> dict[str, Any]:
    """Every metric of the record, and for a complete one the threshold in force and the
    margin to it (``constraint``, >= 0 is feasible). A failure always has a reason: a FAIL
    trial without one is read as interrupted."""
    attrs = {
        k: v
        for k, v in record.to_row().items()
        if v is not None and k not in ("task", "n", "sparsity")
    }
    if record.status is TrialStatus.COMPLETE and threshold is not None:
        assert record.accuracy is not None
        attrs.update(threshold=threshold, constraint=record.accuracy - threshold)
    if record.status is TrialStatus.FAILED:
        attrs.setdefault("reason", "failed (the trainer gave no reason)")
    elif record.status is not TrialStatus.COMPLETE:
        attrs.setdefault("reason", f"{record.status.value} (the trainer gave no reason)")
    return attrs


def _cannot_open(url: str, err: BaseException) -> StorageError:
    """The error for a storage Optuna cannot open, the password masked in the URL and in the
    database's message (which may quote either)."""
    why = without_password(_first_line(err), url)
    return StorageError(f"--storage {masked_url(url)!r} cannot be opened: {why}")


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err.__cause__
    text = str(orig if orig is not None else err) or type(err).__name__
    return " ".join(text.strip().splitlines()[0].split())  # libpq writes "FATAL:  ..."


def _check_recipe(study: optuna.Study, recipe: str, url: str) -> None:
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
    shown = masked_url(url)  # never the password
    raise StorageError(
        f"study {name!r} in {shown} {why}, so its results do not apply; use another study name "
        "([study] name) or --storage, or delete it: "
        + shlex.join(["optuna", "delete-study", "--study-name", name, "--storage", shown])
    )
