"""A table cell's scalar value as the text a CSV column holds: what ``init``'s reader (a JSON
Lines column of mixed values) and ``classify``'s (JSON and Parquet cells) both make of it."""

from __future__ import annotations


def scalar_text(value: object) -> str | None:
    """A string as itself, a bool as ``true`` / ``false``, a number as its digits (an integral
    float as an integer: ``1.0`` is ``1``, as a column of integers reads and as pandas writes
    integer labels with a gap); None for anything else (null, a list, an object), which each
    reader treats its own way."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return None
