"""Storage URLs as they may be shown: the password masked.

A storage URL (``postgresql+psycopg://user:PASSWORD@host/db``) is printed on stderr, in the
``--json`` document, in hints and in the HTML report, and the report is the file people
share. Only the real URL connects; every text shows :func:`masked_url` instead.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url

MASK = "***"  # what SQLAlchemy's render_as_string(hide_password=True) writes too
# the password of scheme://user:PASSWORD@host, for strings SQLAlchemy cannot parse
_USERINFO_PASSWORD = re.compile(r"((?:\b[A-Za-z][\w+.-]*)?://[^:/@\s]*:)([^@\s]*)(@)")
# a password given as a query parameter (?password=..., as psycopg and others accept)
_QUERY_KEYS = ("password", "passwd", "pwd")
_QUERY_PASSWORD = re.compile(rf"([?&](?:{'|'.join(_QUERY_KEYS)})=)([^&#\s]*)", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with its password, in the user part or in the query, replaced by ``***``; a
    URL without one is returned as it is."""
    parsed = _parsed(url)
    if parsed is None:  # not a SQLAlchemy URL: mask what looks like a password in it
        shown = _USERINFO_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", url)
    else:
        shown = parsed.render_as_string(hide_password=True) if parsed.password else url
    return _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", shown)


def has_password(url: str) -> bool:
    return masked_url(url) != url


def without_password(text: str, url: str) -> str:
    """``text`` (a database's error message, say) with every occurrence of ``url``'s password,
    as written or URL-encoded, replaced by ``***``."""
    for secret in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _parsed(url: str) -> URL | None:
    """SQLAlchemy's reading of ``url``; None for a string that is not a URL."""
    try:
        return make_url(url)
    except Exception:  # ArgumentError, ValueError: whatever it is, it is shown masked
        return None


def _passwords(url: str) -> set[str]:
    found = {m.group(2) for m in _USERINFO_PASSWORD.finditer(url)}
    found |= {m.group(2) for m in _QUERY_PASSWORD.finditer(url)}
    parsed = _parsed(url)
    if parsed is not None:
        found.add(parsed.password or "")
        for key, value in parsed.query.items():
            if key.lower() in _QUERY_KEYS:
                found |= set(value) if isinstance(value, tuple) else {value}
    found |= {quote(s, safe="") for s in found} | {quote_plus(s) for s in found}
    return {s for s in found if s}
