"""Cached, shareable training artifacts: one folder each, built once under a file lock.

A folder's name carries a hash of everything that determines its content, so a changed
setting builds a new artifact instead of reusing a stale one. A folder is built in
``<name>.partial`` (where resumable phase checkpoints also live) and renamed when complete, so a
crash or a kill never leaves a half-written artifact that looks finished; concurrent trials
that need the same artifact wait on ``<name>.lock`` and the later ones reuse it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from autoprumux.files.atomic import write_text_atomic

log = logging.getLogger(__name__)


def cache_key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able settings."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[-40:] or "model"


def build_once(folder: Path, build: Callable[[Path], None]) -> bool:
    """Make sure ``folder`` exists, calling ``build(partial_folder)`` if it does not.
    Returns True if the artifact was already there (reused)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder):
        if folder.is_dir():
            log.info("reusing %s", folder)
            return True
        partial = folder.with_name(folder.name + ".partial")
        partial.mkdir(exist_ok=True)  # may hold checkpoints of an interrupted build
        build(partial)
        for leftover in partial.glob("*-checkpoint"):
            shutil.rmtree(leftover)
        partial.rename(folder)
        return False


def set_aside_damaged(folder: Path, inode: int, err: BaseException) -> Path | None:
    """Rename a built artifact that cannot be read (a file truncated or edited since: every
    artifact is renamed into place whole) to ``<name>.damaged-<time>``, so that it is built
    again; kept, not deleted. Only the folder that was read (``inode``): one that another
    trial built in its place meanwhile is left alone. Returns where it went, if it was moved."""
    with folder_lock(folder):
        if not folder.is_dir() or folder.stat().st_ino != inode:
            return None
        aside = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(aside)
    why = " ".join(str(err).split())[:400]  # a CheckpointError names the folder itself
    if not why.startswith(str(folder)):
        why = f"{folder} cannot be read ({type(err).__name__}: {why})"
    log.warning("%s: set aside as %s and built again", why, aside)
    return aside


def folder_lock(folder: Path) -> FileLock:
    """The artifact's file lock (``<name>.lock``): held while it is built, and while a trial
    adds to a built one what another trial sharing it would add too (its figures per
    precision), so that the later one reads them instead of computing them again."""
    return FileLock(str(folder) + ".lock")


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
