"""A small TOML writer for the values a study file holds (strings, integers, floats, booleans,
arrays of them, tables), with comments -- Python's ``tomllib`` only reads, and ``tomli_w``
writes no comments. What it writes reads back with ``tomllib`` to the same values
(``tests/autoprumux/test_init.py``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
LINE_WIDTH = 100  # a key's comment goes beside it when the line stays this short, else above


def toml_text(
    document: Mapping[str, Any],
    *,
    header: Sequence[str] = (),
    comments: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """``document`` as TOML: its plain values first, then each table (``[a]``, ``[a.b]``).
    ``header``: comment lines first (wrapped; an indented one, a command, kept whole).
    ``comments``: a table's path (``("data",)``) -> the comment above its header, a key's
    (``("data", "text")``) -> the comment beside it (above it when the line would be long).
    Values: str, int, float, bool, and lists of them."""
    lines = [  # an indented line (a command) is kept whole, the others wrapped
        comment
        for line in header
        for comment in ([f"# {line}"] if line.startswith("  ") else _comment_lines(line))
    ]
    lines += _table_body(document, (), comments or {})
    return "\n".join(lines).lstrip("\n") + "\n"


def _table_body(
    table: Mapping[str, Any], path: tuple[str, ...], comments: Mapping[tuple[str, ...], str]
) -> list[str]:
    lines = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            continue
        line = f"{_key(key)} = {_value(value)}"
        about = comments.get((*path, key), "")
        if about and len(line) + len(about) + 4 <= LINE_WIDTH:
            line += f"  # {about}"
        elif about:
            lines += _comment_lines(about)
        lines.append(line)
    for key, value in table.items():
        if not isinstance(value, Mapping):
            continue
        inner = (*path, key)
        lines.append("")
        lines += _comment_lines(comments.get(inner, ""))
        lines.append(f"[{'.'.join(_key(k) for k in inner)}]")
        lines += _table_body(value, inner, comments)
    return lines


def _comment_lines(text: str, width: int = LINE_WIDTH) -> list[str]:
    """``text`` as comment lines of at most ``width`` characters (words kept whole)."""
    if not text:
        return []
    lines, current = [], "#"
    for word in text.split():
        if len(current) + 1 + len(word) > width and current != "#":
            lines.append(current)
            current = "#"
        current += " " + word
    return [*lines, current]


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):  # before int: a bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"a study file holds no {type(value).__name__} value ({value!r})")


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
