"""Which Ray a search on the ray executor uses (autoprumux.loop.ray_address), in Ray's own order:
--address, RAY_ADDRESS, a `ray start` of this machine, else a Ray of its own; and a search that
a cluster named by RAY_ADDRESS serves is planned as one --address names (its GPUs are the
cluster's, not this machine's: tests/autoprumux/test_search_placement.py)."""

import socket

import pytest

from autoprumux.loop.ray_address import ClusterError, RayTarget, check_reachable, ray_target


@pytest.fixture
def listening():
    """A port something answers on, as a Ray head's would: host:port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _silent_port() -> str:
    with socket.socket() as sock:  # bound and closed: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _ray_started_at(temp, address):
    """What `ray start` leaves for ray.init(): <temp>/ray/ray_current_cluster."""
    (temp / "ray").mkdir()
    (temp / "ray" / "ray_current_cluster").write_text(address + "\n")


def test_the_address_given_comes_first_then_ray_address_then_a_ray_start_here(tmp_path, listening):
    _ray_started_at(tmp_path, listening)
    env = {"RAY_ADDRESS": "10.0.0.7:6379", "TMPDIR": str(tmp_path)}
    assert ray_target("10.0.0.9:6379", env) == RayTarget("10.0.0.9:6379", "--address")
    assert ray_target(None, env) == RayTarget("10.0.0.7:6379", "RAY_ADDRESS")
    started = RayTarget(listening, "the `ray start` of this machine")
    assert ray_target(None, {"RAY_ADDRESS": " ", "TMPDIR": str(tmp_path)}) == started
    # Ray's own temp folder: RAY_TMPDIR before TMPDIR
    assert ray_target(None, {"RAY_TMPDIR": str(tmp_path), "TMPDIR": "/nonexistent"}) == started
    assert ray_target(None, {"TMPDIR": str(tmp_path / "elsewhere")}) == RayTarget(None, "")
    assert not RayTarget(None, "").joins and started.joins


def test_a_ray_start_whose_head_no_longer_answers_is_passed_over(tmp_path):
    """A stale address file (a `ray start` that crashed): ray.init() would retry it for
    minutes; the search starts a Ray of its own."""
    _ray_started_at(tmp_path, _silent_port())
    assert ray_target(None, {"TMPDIR": str(tmp_path)}) == RayTarget(None, "")


@pytest.mark.parametrize(
    ("address", "env", "message"),
    [
        ("http://10.0.0.7:8265", {}, "--address http://10.0.0.7:8265: a http:// address (a "
         "dashboard's, which `ray job submit` takes); the search joins a cluster at its head's "
         "HOST:PORT (port 6379 by default) or ray://HOST:PORT"),
        (None, {"RAY_ADDRESS": "https://head:8265"}, "RAY_ADDRESS https://head:8265: a https:// "
         "address"),
    ],
)  # fmt: skip
def test_a_dashboard_url_is_refused_naming_where_it_came_from(address, env, message):
    with pytest.raises(ClusterError) as error:
        ray_target(address, env)
    assert str(error.value).startswith(message)


def test_a_head_that_does_not_answer_is_named_as_it_was_given(listening):
    silent = _silent_port()
    with pytest.raises(ClusterError) as error:
        check_reachable(RayTarget(silent, "RAY_ADDRESS"))
    assert str(error.value) == (
        f"RAY_ADDRESS {silent}: nothing answers there (expected host:port of a Ray head node, "
        "ray://host:port, or auto)"
    )
    check_reachable(RayTarget(listening, "RAY_ADDRESS"))
    check_reachable(RayTarget(f"ray://{listening}"))
    check_reachable(RayTarget("auto"))  # Ray's own lookup: nothing to try first
    check_reachable(RayTarget(None, ""))
