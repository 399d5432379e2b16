"""The trainer the search is written against: what trains one point of the grid.

:class:`~autoprumux.loop.trial_sources.StudyTrainer` (the training engine) and
:class:`~autoprumux.loop.trial_sources.ReplayTrainer` (a recorded grid) implement it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from autoprumux.core.early_stop import StopRule
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import Training

__all__ = ["TrainFunction", "Trainer", "WorkerPaths"]

# what an executor calls: trains one point; with a StopRule it stops when it cannot reach the
# threshold (a STOPPED record)
TrainFunction = Callable[[GridPoint, StopRule | None], Training]


@dataclass(frozen=True, kw_only=True)
class WorkerPaths:
    """What a trainer reads and writes by path on whichever node runs it: on a cluster every
    node must see them at the same place (``ray_executor.check_nodes_share``)."""

    reads: tuple[str, ...] = ()  # files, compared by size
    writes: tuple[str, ...] = ()  # folders whose files the driver must see


class Trainer(Protocol):
    """Trains one point of the grid: a :data:`TrainFunction` that says which paths it uses.

    What an implementation must do: answer a :class:`~autoprumux.core.records.Training` whose
    record is of the point asked (the driver refuses another point as a bug), with the models
    it trained on the way as by-products (an (N, s) training's (N, 0) teacher); stop early,
    recorded STOPPED with its evidence, only by the :class:`StopRule` given (None: train to the
    end); raise, or answer a FAILED record with its reason, when the training fails (the
    executor records a raise as a FAILED record). It is a frozen, picklable value: Ray ships it
    to its workers, and the local executor calls it from several threads at once, so a call
    must not change the trainer.
    """

    def __call__(self, point: GridPoint, stop: StopRule | None) -> Training: ...

    def worker_paths(self) -> WorkerPaths:
        """The files it reads and the folders it writes, by path (checked on every node of a
        cluster before any training)."""
        ...
