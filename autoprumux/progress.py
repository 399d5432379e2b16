"""Progress of a long operation, reported to a callback (the CLI draws it as a bar)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    phase: str  # what is running: a training phase, "measure", ...
    step: int  # 1-based, after the step
    total: int
    loss: float | None = None  # training loss of the step, where there is one


ProgressCallback = Callable[[Progress], None]
