"""A search on a Ray cluster of two nodes (both on this machine, each with its own temp dir),
joined with token authentication as a `ray start` cluster asks; and the pieces that decide how
a cluster is used: trials at once from its nodes, the shared-path check, the auth token."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoprumux.loop.trial_sources import WorkerPaths

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a second node, 1 CPU each, token authentication on; stopped after. The
    head's temp folder is <RAY_TMPDIR>/ray, where ray.init() looks for a `ray start`."""
    port = _free_port()
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    started = []
    try:
        for name, args in (
            ("head", ["--head", "--port", str(port), "--include-dashboard", "false"]),
            ("second", ["--address", f"127.0.0.1:{port}"]),
        ):
            top = Path("/tmp") / f"ray-{name}-{port}"  # Ray's socket paths must stay short
            started.append(top)
            temp = top / "ray"
            subprocess.run(
                [RAY, "start", *args, *common, "--temp-dir", str(temp)],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        yield f"127.0.0.1:{port}", token, started[0]
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        for temp in started:
            shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("named_by", ["--address", "RAY_ADDRESS", "ray start"])
def test_a_search_joins_a_token_cluster_and_runs_trials_on_both_nodes(
    two_nodes, tmp_path, named_by
):
    """The cluster named by --address, by RAY_ADDRESS (a `ray job submit` driver's), or found
    as ray.init() finds a `ray start` of this machine: joined as a cluster each time (its token
    picked, its nodes' cores sizing the trials, the shared folder checked)."""
    import optuna

    address, token, ray_start_temp = two_nodes
    study = tmp_path / "study" / "sst2-tiny.toml"
    study.parent.mkdir()
    shutil.copy(ROOT / "studies" / "sst2-tiny.toml", study)
    replay = ROOT / "studies" / "results" / "sst2-tiny-grid.json"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env |= {"RAY_AUTH_TOKEN": token, "TMPDIR": str(tmp_path)}  # no mode: the search picks it
    env.pop("RAY_ADDRESS", None)
    joined = ["--address", address] if named_by == "--address" else []
    if named_by == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = address
    if named_by == "ray start":  # the head's address as `ray start` wrote it (this host's IP)
        env["RAY_TMPDIR"] = str(ray_start_temp)
        address = (ray_start_temp / "ray" / "ray_current_cluster").read_text().strip()
        named_by = "the `ray start` of this machine"
    before = set(tmp_path.glob("autoprumux-ray-*"))
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autoprumux",
            "search",
            "--study",
            str(study),
            "--budget",
            "0.03",
            "--executor",
            "ray",
            *joined,
            "--trainer",
            f"replay:{replay}?delay=2",
            "--storage",
            storage,
            "--cpus-per-trial",
            "1",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 trial(s) at a time (ray)" in done.stderr  # one per node: the cluster's CPUs
    assert f"Ray cluster at {address} ({named_by}): 2 node(s) see the study's files" in done.stderr
    assert "Traceback" not in done.stderr
    answer = json.loads(done.stdout)
    assert answer["best"]["n"] == 1  # the replayed grid's true best at 3%: (1, 0.5)
    trials = optuna.load_study(study_name="sst2-tiny", storage=storage).trials
    nodes = {t.user_attrs["node"] for t in trials if t.user_attrs.get("from_trial") is None}
    per_node = {
        node: sum(t.user_attrs.get("node") == node for t in trials) for node in sorted(nodes)
    }
    print(f"two-node search: {len(trials)} trials, per node {per_node}, {wall:.1f} s")
    assert len(nodes) == 2, per_node
    assert set(tmp_path.glob("autoprumux-ray-*")) == before  # Tune's folder removed


def test_a_node_that_does_not_see_the_driver_paths_names_them(tmp_path):
    from autoprumux.loop.ray_executor import _missing_on_this_node

    study = tmp_path / "study.toml"
    study.write_text("x" * 10)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / ".probe").write_text("token")
    paths = WorkerPaths(reads=(str(study),), writes=(str(artifacts),))
    reads = {str(study): 10}
    probes = {str(artifacts / ".probe"): "token"}
    assert _missing_on_this_node(reads, probes) == []
    assert _missing_on_this_node({str(study): 11}, probes) == [str(study)]  # another file
    assert _missing_on_this_node(reads, {str(artifacts / ".probe"): "other"}) == [str(artifacts)]
    assert _missing_on_this_node(reads, {str(tmp_path / "elsewhere" / ".p"): "t"}) == [
        str(tmp_path / "elsewhere")
    ]
    assert paths.writes == (str(artifacts),)


def test_joining_picks_token_auth_when_a_token_is_at_hand(monkeypatch, tmp_path):
    from autoprumux.loop.ray_auth import join_with_token

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv(name, "")  # so that what join_with_token sets is undone after
        monkeypatch.delenv(name)
    assert join_with_token() is False and "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t" * 64)  # where `ray start` keeps it
    assert join_with_token() is True and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a choice made is kept
    assert join_with_token() is True and os.environ["RAY_AUTH_MODE"] == "disabled"


def test_a_worker_stopped_by_ray_exits_quietly():
    """The setup hook runs before Ray's worker loop installs its SIGTERM handler (which raises
    SystemExit wherever the worker is): the loop's handler must not come back."""
    code = (
        "import os, signal, time\n"
        "import ray._private.utils as u\n"
        "from autoprumux.loop.ray_executor import _exit_quietly_on_sigterm\n"
        "_exit_quietly_on_sigterm()\n"
        "def ray_handler(signum, frame):\n"
        "    raise SystemExit('The process receives a SIGTERM.')\n"
        "u.set_sigterm_handler(ray_handler)  # what the worker loop does next\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(5)\n"
        "print('still running')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_tune_folders_of_killed_searches_are_removed_by_the_next(tmp_path):
    """A search killed by SIGKILL leaves its Tune folder behind (its ``finally`` never ran);
    the next Ray search removes the folders whose process is gone, and only those."""
    from autoprumux.loop.ray_executor import _remove_leftovers

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its PID names no process now
    folders = {
        "killed": tmp_path / f"autoprumux-ray-{gone.pid}-k2x_9a",
        "running": tmp_path / f"autoprumux-ray-{os.getpid()}-r7b_1c",
        "older": tmp_path / "autoprumux-ray-9soo03yh",  # before the PID was in the name
        "other": tmp_path / f"ray-{gone.pid}-x",
    }
    for folder in folders.values():
        (folder / "sst2-tiny").mkdir(parents=True)
    _remove_leftovers(tmp_path)
    assert {name for name, folder in folders.items() if folder.exists()} == {
        "running",
        "older",
        "other",
    }
