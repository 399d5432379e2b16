"""One exception root for every mistake a user can make.

The CLI turns an :class:`AutoPruMuxError` into one line on stderr and its ``exit_code``: 2 for
a mistake in the input, refused before any work; 1 for a search that could not go on (its work
is kept, and the same command resumes it). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import enum
from typing import TypeVar

Choice = TypeVar("Choice", bound=enum.Enum)


class AutoPruMuxError(Exception):
    """Root of all user-facing errors: the message says what is wrong and what is allowed."""

    exit_code = 2  # the command line's: bad input


class FieldError(AutoPruMuxError):
    """A value is invalid: a study field, an option or a record field.

    ``field`` is the dotted path of the bad field (``grid.sparsity``).
    """

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}")

    def within(self, section: str | None = None, source: str | None = None) -> FieldError:
        """The same error with its field prefixed by ``section`` and/or attributed to a file."""
        field = f"{section}.{self.field}" if section else self.field
        return FieldError(field, self.message, source or self.source)

    def as_option(self) -> FieldError:
        """The same error named by the command-line option that set the field (``--batch-rows``
        for ``batch_rows``)."""
        return FieldError("--" + self.field.replace("_", "-"), self.message, self.source)


class DataError(AutoPruMuxError):
    """A results or throughput file is unreadable or holds an invalid row."""

    def __init__(self, source: str, message: str, row: int | None = None, field: str | None = None):
        self.source, self.row, self.field, self.message = source, row, field, message
        parts = [source]
        if row is not None:
            parts.append(f"row {row}")
        if field is not None:
            parts.append(f"field '{field}'")
        super().__init__(": ".join(parts) + f": {message}")


def parse_choice(kind: type[Choice], text: object, field: str) -> Choice:
    """The member of the enum ``kind`` whose value is ``text``; a :class:`FieldError` naming
    ``field`` and the allowed values otherwise."""
    for member in kind:
        if text == member.value:
            return member
    allowed = ", ".join(str(member.value) for member in kind)
    raise FieldError(field, f"{text!r} is not one of: {allowed}")
