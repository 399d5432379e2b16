"""Joining a Ray cluster that uses token authentication, as the ``ray`` CLI does. Ray reads
``RAY_AUTH_MODE`` when it is imported, so this module imports no Ray and runs first."""

from __future__ import annotations

import os
from pathlib import Path


def token_available() -> bool:
    """A Ray auth token where Ray looks for one (its env variables, then ~/.ray/auth_token)."""
    return bool(
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file()
    )


def join_with_token() -> bool:
    """``ray start`` (Ray >= 2.59) turns token authentication on, and a driver joins such a
    cluster only with RAY_AUTH_MODE=token and the token. With a token at hand and no mode
    chosen, choose token (a cluster without authentication accepts a token-mode driver too).
    Call before Ray is imported. Returns whether a token was at hand."""
    has_token = token_available()
    if has_token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
    return has_token
