"""The replay search that the study-safety tests and ``bench_study_safety.py`` run, built in
one place: the local executor, a 3-point budget, a replay trainer and a given storage."""

from __future__ import annotations

from pathlib import Path


def replay_search_argv(study_file: Path, storage: str, trainer: str, *extra: str) -> list[str]:
    """``autoprumux search`` arguments; ``trainer`` is a replay spec, e.g. ``replay:FILE`` or
    ``replay:FILE?delay=0.3``."""
    return [
        "search",
        "--study",
        str(study_file),
        "--budget",
        "0.03",
        "--executor",
        "local",
        "--trainer",
        trainer,
        "--storage",
        storage,
        *extra,
    ]
