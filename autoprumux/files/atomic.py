"""Files written by rename: a reader sees the old file or the new one, never half of one.

A kill at any instant leaves at most a ``.<stem>.<pid>.tmp<suffix>`` beside the target (the
suffix kept, for loaders that go by it), never a truncated target; the temporary file sits in
the target's folder so the rename stays on one file system (and is atomic there).

:func:`check_output` refuses, before any long work, an output the tool could not write,
:func:`output_folders` makes its missing folders (and removes them where the write is refused),
and :func:`explained_write_errors` turns a failed write (a full disk) into one line.
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
    missing = _missing_folders(path)
    folder = missing[-1].parent if missing else path.parent  # the nearest one that exists
    if not folder.is_dir():
        raise FieldError(option, f"{path} cannot be written: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FieldError(option, f"{path} cannot be written: {folder} is not writable")
    return path


@contextlib.contextmanager
def output_folders(path: str | Path) -> Iterator[Path]:
    """``path`` with its missing folders made for the block (checked by :func:`check_output`
    first); when the block raises, the folders it made are removed again (those still empty):
    a refused output leaves nothing behind."""
    path = Path(path)
    missing = _missing_folders(path)
    with explained_write_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in missing:  # the innermost first
            with contextlib.suppress(OSError):  # not empty (another writer's): kept
                folder.rmdir()
        raise


def _missing_folders(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist, the innermost first."""
    missing, folder = [], path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


@contextlib.contextmanager
def explained_write_errors(path: str | Path) -> Iterator[None]:
    """An OSError while writing ``path`` (no space left, a folder that vanished) as one line."""
    try:
        yield
    except OSError as err:
        raise DataError(str(path), f"cannot be written: {err.strerror or err}") from None
