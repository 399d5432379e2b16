"""The study store the search is written against: what the driver, the session and the report
need of the place a study's trials live (:class:`StudyStore`), and the records it answers with.

:class:`~autoprumux.loop.optuna_store.OptunaStore` is the implementation (an Optuna RDB
storage: SQLite or PostgreSQL); another kind of storage implements this protocol and passes the
same tests. Pure Python: importing it loads no Optuna.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from autoprumux.core.grid import GridPoint
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.loop.trial_owner import TrialOwner

__all__ = ["INTERRUPTED", "Abandoned", "LiveTrial", "StudySnapshot", "StudyStore", "is_abandoned"]


class Abandoned(enum.Enum):
    """Why a trial was closed without a training's result (its ``reason``). None counts as a
    training or as a failure of its point: the search trains the point if it still needs it."""

    INTERRUPTED = "interrupted: the process running it stopped before it finished"
    NOT_STARTED = "not started: it was left WAITING (enqueued) and never trained"
    SUPERSEDED = "superseded: another search started this point first; not trained here"


INTERRUPTED = Abandoned.INTERRUPTED.value
_ABANDONED = frozenset(a.value for a in Abandoned)


def is_abandoned(record: TrialRecord) -> bool:
    """Whether a failed record is a trial closed untrained (see :class:`Abandoned`)."""
    return record.status is TrialStatus.FAILED and record.reason in _ABANDONED


@dataclass(frozen=True, kw_only=True)
class LiveTrial:
    """A trial some search is training now (its owner runs, or its lease holds): this
    search's (``mine``), or another one's, whose point this search leaves alone."""

    number: int
    point: GridPoint
    owner: TrialOwner
    mine: bool  # started by this store


@dataclass(frozen=True, kw_only=True)
class StudySnapshot:
    """The study at one read: finished trials as records, and the live running ones."""

    records: list[tuple[int, TrialRecord]]  # (number, record), failed ones with their reason
    running: tuple[LiveTrial, ...]

    def others(self) -> tuple[LiveTrial, ...]:
        """Live trials of other searches."""
        return tuple(t for t in self.running if not t.mine)


class StudyStore(Protocol):
    """One study of one storage, shared by any number of searches (processes, machines).

    What an implementation must do:

    - be the source of truth: every read (:meth:`snapshot`, :meth:`records`) answers what is
      stored now, including what other searches wrote since the last read;
    - start a point in one atomic write (:meth:`start`), so that of two searches that start the
      same point at once exactly one trains it, and record a training so that a kill at any
      instant leaves either the finished trial or one that :meth:`repair` takes back;
    - keep the trials it started alive (a lease, renewed in a thread of its own) until
      :meth:`finish` or :meth:`close`, and never close another search's live trial;
    - retry a write the database refused as busy instead of raising.

    Thread-safety: the driver calls it from one thread at a time (the local executor's loop, or
    Ray Tune's searcher thread); the implementation's own background work (renewing leases)
    runs in its own threads and must not race those calls. It must pickle (Ray Tune pickles the
    searcher that holds the driver and its store) and tolerate other processes writing the same
    study at any moment.
    """

    def repair(self) -> Mapping[Abandoned, int]:
        """Close every trial left in a non-final state that nobody runs (a dead search's, or
        one enqueued by hand); how many were closed, by reason. Called before the search
        proposes anything and at every ``suggest``."""
        ...

    def snapshot(self) -> StudySnapshot:
        """The finished trials as records and the live running ones (see StudySnapshot)."""
        ...

    def records(self) -> list[tuple[int, TrialRecord]]:
        """The finished trials as (number, record); failed ones with their reason."""
        ...

    def start(self, point: GridPoint) -> int | None:
        """A new running trial for ``point`` owned by this store; its number, or None when
        another search measured or started the point first (the new trial is then closed
        untrained, :attr:`Abandoned.SUPERSEDED`)."""
        ...

    def finish(
        self,
        number: int,
        record: TrialRecord,
        threshold: float | None,
        by_products: Sequence[TrialRecord] = (),
    ) -> None:
        """Record the training of trial ``number`` (started by :meth:`start`) and its free
        by-products, each a finished trial of its own, with the threshold in force. A trial
        another search took back meanwhile is recorded anew, never raised."""
        ...

    def set_threshold(self, threshold: float | None, budget: str) -> None:
        """Label the study with the threshold in force and the budget that set it (what the
        dashboard shows)."""
        ...

    def user_attrs(self) -> dict[str, Any]:
        """The study's attributes (grid, task, recipe, throughput table, train command...)."""
        ...

    def set_user_attr(self, key: str, value: Any) -> None:
        """Write one study attribute (a JSON value), retried while the database is busy."""
        ...

    def close(self) -> None:
        """The search is over: its trials still running are closed as interrupted, and their
        leases are no longer renewed. Called once, also after a crash. Study attributes may
        still be written after it (the held-out test figures are)."""
        ...
