"""Files written by rename: a reader sees the old file or the new one, never half of one.

A kill at any instant leaves at most a ``.<stem>.<pid>.tmp<suffix>`` beside the target (the
suffix kept, for loaders that go by it), never a truncated target; the temporary file sits in
the target's folder so the rename stays on one file system (and is atomic there).

:func:`check_output` refuses, before any long work, an output the tool could not write, and
:func:`explained_write_errors` turns a failed write (a full disk) into one line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from autoprumux.core.errors import DataError, FieldError


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


def check_output(path: str | Path, option: str) -> Path:
    """``path`` if the tool can write it (creating its missing folders), else a FieldError
    naming ``option``: a folder, a device or a pipe (``/dev/full``: a rename would replace the
    device itself), a missing folder under a file, or a folder the tool may not write in."""
    path = Path(path)
    if path.is_dir():
        raise FieldError(option, f"{path} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise FieldError(option, f"{path} is not a regular file (a device or a pipe)")
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent  # the folders that will be created: the nearest one that exists
    if not folder.is_dir():
        raise FieldError(option, f"{path} cannot be written: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FieldError(option, f"{path} cannot be written: {folder} is not writable")
    return path


@contextlib.contextmanager
def explained_write_errors(path: str | Path) -> Iterator[None]:
    """An OSError while writing ``path`` (no space left, a folder that vanished) as one line."""
    try:
        yield
    except OSError as err:
        raise DataError(str(path), f"cannot be written: {err.strerror or err}") from None
