"""The progress bars of the long commands (train, warmup, measure, classify)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

    from autoprumux.core.progress import Progress


class ProgressBar:
    """One tqdm bar per phase the engine reports, on stderr (stdout stays clean for --json).

    Use as a context manager and pass :meth:`update` as the engine's progress callback; a new
    phase closes the previous bar, so a trial shows warm-up, fine-tuning, pruning in turn.
    """

    def __enter__(self) -> ProgressBar:
        self.bar: tqdm | None = None
        self.phase: str | None = None
        return self

    def update(self, progress: Progress) -> None:
        from tqdm import tqdm  # only once something runs: `autoprumux --help` stays light

        if progress.phase != self.phase:
            if self.bar is not None:
                self.bar.close()
            self.phase = progress.phase
            self.bar = tqdm(
                total=progress.total,
                desc=progress.phase,
                file=sys.stderr,
                mininterval=1.0,
                # a phase with a loss trains (steps); one without times or classifies (passes)
                unit="pass" if progress.loss is None else "step",
                dynamic_ncols=True,
            )
        assert self.bar is not None  # made above, for this phase
        self.bar.update(progress.step - self.bar.n)
        if progress.loss is not None:
            self.bar.set_postfix(loss=f"{progress.loss:.4f}", refresh=False)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
