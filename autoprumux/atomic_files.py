"""Files written by rename: a reader sees the old file or the new one, never half of one.

A kill at any instant leaves at most a ``.<stem>.<pid>.tmp<suffix>`` beside the target (the
suffix kept, for loaders that go by it), never a truncated target; the temporary file sits in
the target's folder so the rename stays on one file system (and is atomic there).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write to; renamed onto ``path`` when the block ends without an
    error, removed when it raises. For libraries that write to a path themselves."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
