"""One trial in a process of its own: how the local executor runs GPU trials.

Why a process and not a thread of the search: each trial gets its own CUDA context, its own
memory cap (``torch.cuda.set_per_process_memory_fraction`` is per process), an exact peak
memory of its own, no GIL shared with the other trials launching kernels, and a
``torch.compile`` of its own (not thread-safe). The child is *spawned* (a fresh interpreter:
CUDA cannot be forked), gets the trainer, the point and the stop rule by pickle (they are
picklable for Ray already), and answers its :class:`~autoprumux.core.records.Training` through
a pipe. Its progress lines go to the stderr it inherits.

A child dies with the search: on Linux it asks the kernel for SIGKILL when its parent thread
ends (``PR_SET_PDEATHSIG``); the thread that starts it waits for it, so that is when the search
process dies. A trial whose child raises, is killed or crashes is a failed trial with a
one-line reason; the search goes on.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from autoprumux.core.early_stop import StopRule
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import Training
from autoprumux.loop.trainer_contract import TrainFunction

__all__ = ["TrialProcesses", "failure_reason"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class TrialProcesses:
    """Runs trials each in a spawned child process; :meth:`kill_all` ends those still running
    (the search stops on an error of its own). :meth:`run` blocks its calling thread until the
    child has answered or died: call it from one executor thread per trial."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._live: set[BaseProcess] = set()
        self._killed = False  # kill_all was called: no child starts after it
        self._lock = threading.Lock()

    def run(self, trainer: TrainFunction, point: GridPoint, stop: StopRule | None) -> Training:
        """The trial's training, trained in a child; a child that raises, dies or cannot start
        is a failed training whose reason says why."""
        receive, send = self._context.Pipe(duplex=False)
        child = self._context.Process(
            target=_child_main,
            args=(send, trainer, point, stop, os.getpid()),
            name=f"autoprumux-trial-{point.n}-{point.sparsity:g}",
            daemon=False,  # a daemon cannot start processes (a trial's data loaders may)
        )
        try:
            with self._lock:  # a child starts whole before kill_all looks, or never
                if self._killed:
                    return Training.failed("?", point, "the search stopped before it started")
                self._live.add(child)
                child.start()
            send.close()  # ours: the child holds its own; EOF once the child is gone
            answer = _receive(receive)
            child.join()
        except Exception as err:  # the child could not start (an unpicklable trainer, say)
            log.exception("trial %s could not start in a process of its own", point)
            return Training.failed("?", point, _one_line(err))
        finally:
            send.close()  # closing twice is nothing
            receive.close()
            with self._lock:
                self._live.discard(child)
        if answer is None:
            return Training.failed("?", point, failure_reason(child.exitcode))
        if isinstance(answer, Training):
            return answer
        reason, trace = answer
        log.error("training %s failed in its process:\n%s", point, trace.rstrip())
        return Training.failed("?", point, reason)

    def kill_all(self) -> None:
        """SIGKILL every child still running (each thread waiting on one then sees it die)."""
        with self._lock:
            self._killed = True
            for child in self._live:
                if child.exitcode is None:
                    child.kill()


def _receive(receive: Connection) -> Training | tuple[str, str] | None:
    """The child's answer: its training, (reason, traceback) of an error, or None when it died
    without answering."""
    try:
        answer: Training | tuple[str, str] = receive.recv()
    except EOFError:  # every write end is closed: the child is gone without a word
        return None
    return answer


def failure_reason(exitcode: int | None) -> str:
    """Why a trial's process ended without answering, in one line (a negative exit code is the
    signal that ended it, as ``multiprocessing`` reports it)."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the trial's process was killed by {name} before it answered"
    return f"the trial's process exited with code {exitcode} before it answered"


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the thread that started it ends, and end now if
    the parent is already gone (it died before the request was made). Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning(
            "PR_SET_PDEATHSIG refused (errno %d): this trial may outlive the search",
            ctypes.get_errno(),
        )
    if os.getppid() != parent_pid:
        os._exit(1)


def _child_main(
    send: Connection,
    trainer: TrainFunction,
    point: GridPoint,
    stop: StopRule | None,
    parent_pid: int,
) -> None:
    """The child: train, answer the training, or (reason, traceback) of the error."""
    die_with_parent(parent_pid)
    try:
        try:
            answer: Training | tuple[str, str] = trainer(point, stop)
        except Exception as err:  # recorded as data, like Optuna's FAIL trials
            answer = (_one_line(err), traceback.format_exc())
        try:
            send.send(answer)
        except Exception as err:  # a training that does not pickle: a bug, told as a failure
            send.send((_one_line(err), traceback.format_exc()))
    finally:
        send.close()
