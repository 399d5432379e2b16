"""Progress of a long operation, reported to a callback (the CLI draws it as a bar)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Progress:
    phase: str  # what is running: a training phase, "measure", ...
    step: int  # 1-based, after the step
    total: int
    loss: float | None = None  # training loss of the step, where there is one


ProgressCallback = Callable[[Progress], None]


class ProgressLines:
    """Progress as a few text lines per phase (at every ``fraction`` of it), for places where a
    bar cannot be drawn: search trials, whose output Ray forwards line by line."""

    def __init__(self, prefix: str, write: Callable[[str], None], fraction: float = 0.25):
        self.prefix, self.write, self.fraction = prefix, write, fraction
        self.next_mark: dict[str, float] = {}

    def __call__(self, progress: Progress) -> None:
        mark = self.next_mark.get(progress.phase, self.fraction)
        if progress.step < mark * progress.total and progress.step != progress.total:
            return
        while mark * progress.total <= progress.step and mark <= 1:
            mark += self.fraction
        self.next_mark[progress.phase] = mark
        loss = "" if progress.loss is None else f" loss {progress.loss:.4f}"
        self.write(f"{self.prefix} {progress.phase} {progress.step}/{progress.total}{loss}")
