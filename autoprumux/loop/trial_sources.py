"""Where a search's measurements come from: real training, or a recorded full grid (replay).

Both implement :class:`~autoprumux.loop.trainer_contract.Trainer`: picklable callables
``(point, stop rule) -> Training`` (Ray ships them to its workers) answering the point's
record, and records of points trained on the way (the (N, 0) teacher).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from autoprumux.core.early_stop import StopRule
from autoprumux.core.errors import FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.progress import ProgressLines
from autoprumux.core.records import ResultsTable, Training, TrialRecord, TrialStatus
from autoprumux.core.study import load_study
from autoprumux.files.results_io import read_results
from autoprumux.loop.trainer_contract import WorkerPaths

REPLAY_PREFIX = "replay:"


@dataclass(frozen=True, kw_only=True)
class ReplaySpec:
    """``--trainer replay:FILE[?delay=SECONDS]``: the results table to answer from, and how
    long each training takes (0: instantly). A delay makes a replayed search slow enough to be
    watched, killed at a chosen trial, or joined by a second search, as a real one would be;
    quote it in a shell (``?`` is a glob character)."""

    path: str
    delay_s: float = 0.0  # seconds each training sleeps before it answers

    @classmethod
    def parse(cls, spec: str) -> ReplaySpec:
        """The spec of ``--trainer replay:...``; a FieldError naming the option otherwise."""
        body = spec.removeprefix(REPLAY_PREFIX)
        path, _, query = body.partition("?")
        if not query:
            return cls(path=path)
        key, _, value = query.partition("=")
        try:
            delay_s = float(value)
        except ValueError:
            delay_s = math.nan
        if key != "delay" or not (math.isfinite(delay_s) and delay_s >= 0):
            raise FieldError(
                "--trainer",
                f"{spec!r}: after the file only ?delay=SECONDS may follow (a number >= 0)",
            )
        return cls(path=path, delay_s=delay_s)


@dataclass(frozen=True, kw_only=True)
class ReplayTrainer:
    """Answers every training from a recorded results table (``replay:FILE``): the same search
    code path as real training, for tests, benchmarks and demos. A point the table lacks is a
    failed training; ``delay_s`` simulates training time (``replay:FILE?delay=SECONDS``, see
    :class:`ReplaySpec`)."""

    path: str
    task: str | None = None
    delay_s: float = 0.0

    def worker_paths(self) -> WorkerPaths:
        return WorkerPaths(reads=(self.path,))

    def on_device(self, device: str, gpu_share: float) -> ReplayTrainer:
        """Itself: a replayed grid trains nowhere (the executor's placement is not its)."""
        return self

    def table(self) -> ResultsTable:
        return read_results(self.path)

    def __call__(self, point: GridPoint, stop: StopRule | None = None) -> Training:
        """The recorded row (a recorded stopped row stays stopped: no curve, no new stop)."""
        table = self.table()
        task = table.resolve_task(self.task)
        if self.delay_s:
            time.sleep(self.delay_s)
        rows: dict[GridPoint, TrialRecord] = {}
        for row in table.for_task(task):
            rows.setdefault(row.point, row)  # a point with several seeds: its first row
        record = rows.get(point) or TrialRecord(
            task=task,
            n=point.n,
            sparsity=point.sparsity,
            status=TrialStatus.FAILED,
            reason=f"replay: {self.path} has no row for {point}",
        )
        # like a real (N, s) training, which fine-tunes the (N, 0) teacher it prunes
        teacher = rows.get(GridPoint(point.n, 0.0))
        if point.sparsity == 0 or record.status is not TrialStatus.COMPLETE or teacher is None:
            return Training(record)
        return Training(record, (teacher,))


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True, kw_only=True)
class StudyTrainer:
    """Trains the point for real with the training engine (``trainers.trial.run.run_trial``)."""

    study_path: str
    seed: int | None = None
    device: str = "auto"  # in a Ray worker, auto and cuda are the GPU(s) Ray assigned
    threads: int = 0  # CPU threads per trial (0: every core); the same on every executor
    # the share of its GPU's memory a trial may allocate (--gpus-per-trial below 1: trials
    # sharing a GPU, each in a process of its own, a Ray worker or the local executor's child)
    gpu_share: float = 1.0
    # the precisions each trained model is evaluated in (the plan's, resolved once for the
    # serving device); None: the trial resolves the study's on its own machine
    precisions: tuple[Precision, ...] | None = None
    # where a training's progress lines go: the search's own progress for trials in threads
    # of the search process (a Python caller's function); None: stderr, in a worker process
    # (Ray's forwards it to the driver), where no function of the caller can be sent
    lines: Callable[[str], None] | None = field(default=None, compare=False)

    def on_device(self, device: str, gpu_share: float) -> StudyTrainer:
        """The same training on ``device`` (the local executor's placement: "cuda:1"), capped
        to ``gpu_share`` of its memory."""
        return replace(self, device=device, gpu_share=gpu_share)

    def worker_paths(self) -> WorkerPaths:
        """The study file, and the artifacts folder its trainings write and the driver records."""
        folder = load_study(self.study_path).artifacts_folder
        return WorkerPaths(reads=(self.study_path,), writes=(str(folder.resolve()),))

    def __call__(self, point: GridPoint, stop: StopRule | None = None) -> Training:
        from trainers.trial.run import TrialSpec, run_trial  # the engine (torch): in the worker

        study = load_study(self.study_path)
        progress = ProgressLines(str(point), self.lines or _to_stderr)
        spec = TrialSpec(
            study=study,
            n=point.n,
            sparsity=point.sparsity,
            seed=self.seed,
            device=self.device,
            threads=self.threads,
            gpu_share=self.gpu_share,
            stop=stop,
            precisions=self.precisions,
        )
        return run_trial(spec, progress).training()
