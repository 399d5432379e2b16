"""Who runs a trial, and whether it still does: the lease that lets searches share one study.

Every trial a search starts records its owner (:class:`TrialOwner`: the machine, the process
and the search inside it) and a lease (``lease_until``, seconds since the epoch) that the owner
renews while the trial trains (:class:`LeaseKeeper`). Another search decides from these alone
whether the trial is live (:func:`liveness`): on the same machine it asks the operating system
whether the owning process still runs, so a killed search's trials are taken back at once; on
another machine it trusts the lease, so they are taken back once it lapses. A trial with no
owner was started outside this tool's one-step start (an older release, or an Optuna ``ask``
by hand): nothing keeps it alive, so it counts as dead.

Pure Python; no Optuna. Leases compare wall clocks of two machines: they must agree to well
within ``LeaseTerms.lasts_s`` (NTP keeps them within a second).
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

log = logging.getLogger(__name__)

# tokens of the searches of this process that are open (an owner of this very process whose
# token is not here belongs to a search that crashed or was closed: its trials are dead)
_OPEN_TOKENS: set[str] = set()


class Liveness(enum.Enum):
    LIVE = "live"  # its owner runs (or its lease holds): leave it alone
    DEAD = "dead"  # its owner stopped: the trial may be taken back


@dataclass(frozen=True, kw_only=True)
class LeaseTerms:
    """How long a trial's lease lasts, and how often its owner renews it."""

    renew_every_s: float = 10.0  # seconds between renewals, while the trial trains
    # seconds a lease holds after a renewal: a search on another machine takes the trial back
    # this long after its owner died; generous, so that a busy machine never loses a live trial
    lasts_s: float = 60.0


@dataclass(frozen=True, kw_only=True)
class TrialOwner:
    """One open search: where it runs, and which one it is."""

    host: str  # socket.gethostname()
    # the boot and the PID namespace (Linux): two containers can share a host name and a PID
    machine: str
    pid: int
    started: int | None  # the process's start time in clock ticks since boot (Linux), for PID reuse
    token: str  # one per search (per OptunaStore), so two searches in one process differ

    @classmethod
    def new(cls) -> TrialOwner:
        """A new owner for a search of this process, open until :func:`close_owner`."""
        owner = cls(
            host=socket.gethostname(),
            machine=_machine(),
            pid=os.getpid(),
            started=_process_start(os.getpid()),
            token=uuid.uuid4().hex,
        )
        _OPEN_TOKENS.add(owner.token)
        return owner

    def to_attr(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "machine": self.machine,
            "pid": self.pid,
            "started": self.started,
            "token": self.token,
        }

    @classmethod
    def from_attr(cls, value: object) -> TrialOwner | None:
        """The owner a trial recorded; None for a trial without one (or with a broken one)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return cls(
                host=str(value["host"]),
                machine=str(value["machine"]),
                pid=int(value["pid"]),
                started=None if value.get("started") is None else int(value["started"]),
                token=str(value["token"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"

    def on_this_machine(self) -> bool:
        return (self.host, self.machine) == (socket.gethostname(), _machine())


def close_owner(owner: TrialOwner) -> None:
    """The search is over: its trials still running, if any, are dead to everyone."""
    _OPEN_TOKENS.discard(owner.token)


def liveness(owner: TrialOwner | None, lease_until: float | None, now: float) -> Liveness:
    """Whether a RUNNING trial's owner still runs it (see the module docstring)."""
    if owner is None:
        return Liveness.DEAD
    if owner.on_this_machine():
        if owner.pid == os.getpid() and owner.started == _process_start(owner.pid):
            return Liveness.LIVE if owner.token in _OPEN_TOKENS else Liveness.DEAD
        return Liveness.LIVE if process_runs(owner.pid, owner.started) else Liveness.DEAD
    if lease_until is not None and lease_until >= now:
        return Liveness.LIVE
    return Liveness.DEAD


class _KeeperState(TypedDict):
    """What a pickled :class:`LeaseKeeper` keeps."""

    renew: Callable[[int], None]
    terms: LeaseTerms


class LeaseKeeper:
    """Renews the leases of a search's running trials from a daemon thread, every
    ``terms.renew_every_s``; the thread runs only while there is a trial to renew."""

    def __init__(self, renew: Callable[[int], None], terms: LeaseTerms) -> None:
        self._renew, self.terms = renew, terms  # renew(trial_id): extends one trial's lease
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __getstate__(self) -> _KeeperState:
        # Ray Tune pickles the searcher (and so the store and this keeper) into its experiment
        # state; a copy renews nothing: the search's own keeper holds the trials
        return {"renew": self._renew, "terms": self.terms}

    def __setstate__(self, state: _KeeperState) -> None:
        LeaseKeeper.__init__(self, state["renew"], state["terms"])

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.add(trial_id)
            # a thread told to stop may not have woken yet: it exits, a new one takes over
            if self._thread is None or not self._thread.is_alive() or self._stop.is_set():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="autoprumux-lease", daemon=True
                )
                self._thread.start()

    def remove(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.discard(trial_id)
            if not self._trial_ids:
                self._stop.set()

    def stop(self) -> None:
        with self._lock:
            self._trial_ids.clear()
            self._stop.set()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.terms.renew_every_s):
            with self._lock:
                trial_ids = sorted(self._trial_ids)
            for trial_id in trial_ids:
                try:
                    self._renew(trial_id)
                except Exception:  # a missed renewal is retried; the lease outlasts several
                    log.debug("renewing the lease of trial id %d failed", trial_id, exc_info=True)


@functools.cache
def _machine() -> str:
    """This boot and PID namespace; empty where the system does not say (not Linux)."""
    parts = []
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        return ""
    return " ".join(parts)


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None where there is no /proc or no
    such process."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot): fields 3 and 22 of /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def process_runs(pid: int, started: int | None) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``started`` (not a later
    process given the same PID, nor a killed one its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    stat = _stat(pid)
    if stat is None:  # gone since the signal, or no /proc here (then the signal is all we have)
        return not Path("/proc/self/stat").exists()
    state, start = stat
    return state != "Z" and (started is None or start == started)


def now_s() -> float:
    """Seconds since the epoch: what leases are written in."""
    return time.time()
