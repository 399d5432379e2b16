"""Which Ray the ray executor runs on, decided before Ray is imported.

``ray.init()`` without an address does not always start a Ray of its own: it joins the
cluster ``RAY_ADDRESS`` names (what a driver started by ``ray job submit`` is given), else the
cluster the last ``ray start`` on this machine started (Ray keeps its address in
``<temp dir>/ray/ray_current_cluster``), and only else starts a new one here. The search
follows the same order, but decides it itself, first: a cluster joined is checked and sized as
one named by ``--address`` is (its nodes' GPUs and cores, the shared study folder, its token),
not as this machine, and a ``ray start`` whose head no longer answers (a stale address file)
is passed over for a Ray of the search's own instead of failing after Ray's retries.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autoprumux.core.errors import AutoPruMuxError

ENV_VARIABLE = "RAY_ADDRESS"
_REACH_TIMEOUT_S = 3.0


class ClusterError(AutoPruMuxError):
    """Ray cannot be reached or does not offer what the search asks for."""


class ClusterLost(ClusterError):
    """The Ray a search ran on stopped answering mid-search: its trials are closed as
    interrupted, and the same command resumes the search. Not bad input: exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class RayTarget:
    """The Ray a search runs on: a cluster to join, or a new Ray on this machine."""

    address: str | None  # host:port, ray://host:port or auto; None: a new Ray here
    given_by: str = "--address"  # what named it, as messages name it

    @property
    def joins(self) -> bool:
        return self.address is not None


OWN_RAY = RayTarget(None, "")  # no cluster to join: a Ray of the search's own here


def ray_target(address: str | None, environ: Mapping[str, str] = os.environ) -> RayTarget:
    """``--address`` when given; else ``RAY_ADDRESS``; else a ``ray start`` cluster of this
    machine whose head answers; else a new Ray here. One line, naming where the address came
    from, for an address that is a URL of another kind (a dashboard's http://, which ``ray job
    submit`` takes)."""
    if address:
        target = RayTarget(address)
    elif value := environ.get(ENV_VARIABLE, "").strip():
        target = RayTarget(value, ENV_VARIABLE)
    else:
        started = _started_here(environ)
        if started is None or not answers(started):
            return OWN_RAY
        target = RayTarget(started, "the `ray start` of this machine")
    scheme, url, _ = str(target.address).partition("://")
    if url and scheme != "ray":
        raise ClusterError(
            f"{target.given_by} {target.address}: a {scheme}:// address (a dashboard's, which "
            "`ray job submit` takes); the search joins a cluster at its head's HOST:PORT "
            "(port 6379 by default) or ray://HOST:PORT"
        )
    return target


def check_reachable(target: RayTarget) -> None:
    """Fail in a second, not after Ray's minutes of retries, when nothing listens there."""
    if target.address is None or target.address == "auto" or answers(target.address):
        return
    raise ClusterError(
        f"{target.given_by} {target.address}: nothing answers there (expected host:port of a "
        "Ray head node, ray://host:port, or auto)",
    )


def _started_here(environ: Mapping[str, str]) -> str | None:
    """The address the last ``ray start`` on this machine wrote, where Ray's own lookup finds
    it: <RAY_TMPDIR, else TMPDIR, else /tmp>/ray/ray_current_cluster."""
    temp = environ.get("RAY_TMPDIR") or environ.get("TMPDIR") or "/tmp"
    try:
        return (Path(temp) / "ray" / "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def answers(address: str) -> bool:
    """Something listens at ``address`` (host:port or ray://host:port), within 3 s."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), _REACH_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False
