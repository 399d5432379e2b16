"""The Optuna study as the search's source of truth: a trial's life, and the leases that let
searches share one study (:class:`OptunaStore`, the :class:`StudyStore` of an Optuna RDB
storage). How a record maps to a trial is :mod:`autoprumux.loop.trial_mapping`; opening and
checking the storage and its study is :mod:`autoprumux.loop.study_storage`.

A trial's life, safe against a kill at any instant and shared by any number of searches:

- start: one write creates the RUNNING trial with its params, its owner and its lease
  (:mod:`autoprumux.loop.trial_owner`); a search that finds the point started first by another one
  (both read the study before either started it) closes its trial SUPERSEDED, untrained;
- finish: the free by-products, the record's attributes, and last the state (COMPLETE, PRUNED
  or FAIL): a kill before that write leaves a RUNNING trial, to be taken back;
- repair (before a search proposes anything, and while it runs): a WAITING trial (enqueued by
  hand, or by an older release) is closed NOT_STARTED and a RUNNING trial whose owner is dead
  is closed INTERRUPTED; a live one, whoever owns it, is left alone and its point is not
  proposed. None of these closed trials counts as a training or as a failure of its point.

Every storage call goes through :func:`~autoprumux.loop.study_storage.retry_busy`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState, create_trial

from autoprumux.core.grid import Grid, GridPoint
from autoprumux.core.recipe import RecipeRecord
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.loop.storage_check import StorageError, StorageUse, check_storage
from autoprumux.loop.store_contract import (
    Abandoned,
    LiveTrial,
    StudySnapshot,
)
from autoprumux.loop.study_storage import (
    open_storage,
    open_study,
    retry_busy,
    stored_study_names,
    study_attributes,
)
from autoprumux.loop.trial_mapping import (
    FINISHED,
    constraints_of,
    distributions,
    finished_trial,
    params_of,
    point_of,
    record_of,
    state_of,
    user_attrs_of,
    values_of,
)
from autoprumux.loop.trial_owner import (
    LeaseKeeper,
    LeaseTerms,
    Liveness,
    TrialOwner,
    close_owner,
    liveness,
    now_s,
)

# study_attributes, stored_study_names and StorageError: where the report and older callers
# import them from
__all__ = [
    "LEASE_ATTR",
    "OWNER_ATTR",
    "OptunaStore",
    "StorageError",
    "stored_study_names",
    "study_attributes",
]

log = logging.getLogger(__name__)

OWNER_ATTR = "autoprumux:owner"  # system attribute: the TrialOwner of a RUNNING trial
LEASE_ATTR = "autoprumux:lease_until"  # system attribute: seconds since the epoch


class OptunaStore:
    """One study of an Optuna RDB storage (SQLite, PostgreSQL), as a
    :class:`~autoprumux.loop.store_contract.StudyStore`."""

    def __init__(
        self,
        url: str,
        study_name: str,
        grid: Grid,
        task: str,
        recipe: RecipeRecord | None = None,
        *,
        lease: LeaseTerms | None = None,
    ) -> None:
        """Open or create the study. With ``recipe`` (``recipe_record(study)``), a stored
        study whose trials were trained under another recipe is refused: its results do not
        apply.
        A URL that is malformed, or names a database that is not an Optuna one, is refused
        before anything is created or written."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        check_storage(url, StorageUse.CREATE)
        self.grid, self.task, self.url = grid, task, url
        self._storage = open_storage(url)
        self.study = open_study(self._storage, study_name, grid, task, url, recipe)
        self._study_id = retry_busy(self._storage.get_study_id_from_name, study_name)
        self.lease_terms = lease or LeaseTerms()
        self.owner = TrialOwner.new()
        self._running: dict[int, int] = {}  # this search's RUNNING trials: number -> trial id
        self._lease = LeaseKeeper(self._renew, self.lease_terms)

    # -- the study's attributes -------------------------------------------------------------

    def user_attrs(self) -> dict[str, Any]:
        return dict(retry_busy(self._storage.get_study_user_attrs, self._study_id))

    def set_user_attr(self, key: str, value: Any) -> None:
        retry_busy(self._storage.set_study_user_attr, self._study_id, key, value)

    def set_threshold(self, threshold: float | None, budget: str) -> None:
        self.set_user_attr("threshold", threshold)
        self.set_user_attr("budget", budget)

    def distributions(self) -> dict[str, BaseDistribution]:
        return distributions(self.grid)

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> StudySnapshot:
        now = now_s()
        records, running = [], []
        for trial in retry_busy(self.study.get_trials, deepcopy=False):
            point = point_of(trial)
            if point is None:  # asked by an older release and killed before its params
                continue
            if trial.state in FINISHED:
                records.append((trial.number, record_of(trial, point, self.task)))
            elif trial.state == TrialState.RUNNING:
                owner = TrialOwner.from_attr(trial.system_attrs.get(OWNER_ATTR))
                if owner is not None and _liveness(trial, now) is Liveness.LIVE:
                    mine = trial.number in self._running
                    running.append(
                        LiveTrial(number=trial.number, point=point, owner=owner, mine=mine)
                    )
        return StudySnapshot(records=records, running=tuple(running))

    def records(self) -> list[tuple[int, TrialRecord]]:
        """Finished trials as (number, record); failed ones with their reason."""
        return self.snapshot().records

    # -- the trial lifecycle ----------------------------------------------------------------

    def repair(self) -> dict[Abandoned, int]:
        """Close every trial left in a non-final state that nobody runs (see the module doc);
        returns how many were closed, by reason."""
        now = now_s()
        closed = dict.fromkeys(Abandoned, 0)
        states = (TrialState.WAITING, TrialState.RUNNING)
        for trial in retry_busy(self.study.get_trials, deepcopy=False, states=states):
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
            params=params_of(point),
            distributions=self.distributions(),
            system_attrs={
                OWNER_ATTR: self.owner.to_attr(),
                LEASE_ATTR: now_s() + self.lease_terms.lasts_s,
            },
        )
        trial_id = retry_busy(self._storage.create_new_trial, self._study_id, template)
        number = retry_busy(self._storage.get_trial_number_from_id, trial_id)
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
            for key, value in user_attrs_of(record, threshold).items():
                retry_busy(self._storage.set_trial_user_attr, trial_id, key, value)
            constraints = constraints_of(record, threshold)
            if constraints is not None:
                retry_busy(
                    self._storage.set_trial_system_attr, trial_id, "constraints", constraints
                )
            retry_busy(
                self._storage.set_trial_state_values,
                trial_id,
                state_of(record),
                values_of(record),
            )
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
        trial = finished_trial(record, threshold, self.grid)
        retry_busy(self._storage.create_new_trial, self._study_id, trial)

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
        for trial in retry_busy(self.study.get_trials, deepcopy=False, states=states):
            if trial.number == number or point_of(trial) != point:
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
            retry_busy(self._storage.set_trial_user_attr, trial_id, "reason", why.value)
            retry_busy(self._storage.set_trial_state_values, trial_id, TrialState.FAIL)
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
            retry_busy(self._storage.set_trial_system_attr, trial_id, LEASE_ATTR, until)


def _liveness(trial: FrozenTrial, now: float) -> Liveness:
    owner = TrialOwner.from_attr(trial.system_attrs.get(OWNER_ATTR))
    lease = trial.system_attrs.get(LEASE_ATTR)
    return liveness(owner, lease if isinstance(lease, (int, float)) else None, now)
