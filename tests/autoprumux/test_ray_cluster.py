"""A search on a Ray cluster of two nodes (both on this machine, each with its own temp dir),
joined with token authentication as a `ray start` cluster asks; and the pieces that decide how
a cluster is used: trials at once from its nodes, the shared-path check, the auth token."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
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
        for temp in started:
            _stop_node(temp)


def _node_pids(top: Path, names: tuple[str, ...] = ()) -> list[int]:
    """The processes of a node started with its temp folder under ``top`` (every Ray process
    names its session folder on its command line), those whose command line holds one of
    ``names`` when given. `ray stop` would stop every Ray of this machine, other users' too."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"{top}/ray/" in line and (not names or any(n in line for n in names)):
            pids.append(int(cmdline.parent.name))
    return pids


def _stop_node(top: Path) -> None:
    for pid in _node_pids(top):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(top, ignore_errors=True)


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


# Ray Tune's own lines, which misled: "Number of trials 36" (an upper bound, twice the grid),
# its temporary folder (removed after the search), a TensorBoard command, a searcher warning
TUNE_NOISE = (
    "Number of trials",
    "View detailed results here",
    "TensorBoard",
    "save not implemented for Searcher",
)


def _search(tmp_path: Path, env: dict[str, str], delay: float) -> subprocess.Popen[str]:
    """`autoprumux search` of the tiny study on a replayed grid, on the Ray its ``env`` names
    (stdout: --json; stderr: a pipe)."""
    replay = ROOT / "studies" / "results" / "sst2-tiny-grid-grouped.json"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, "-m", "autoprumux", "search", "--study"]
    command += [str(ROOT / "studies" / "sst2-tiny.toml"), "--budget", "0.03", "--json"]
    command += ["--trainer", f"replay:{replay}?delay={delay:g}", "--storage", storage]
    return subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _search_env(tmp_path: Path, ray_temp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # a fresh Ray temp folder (short: Ray's socket paths), where no `ray start` is recorded
    return env | {"RAY_TMPDIR": str(ray_temp), "TMPDIR": str(tmp_path)}


@pytest.mark.ray
@pytest.mark.slow  # some 25 s on 2 cores: a Ray of its own started
def test_a_ray_search_shows_its_own_progress_not_tunes(tmp_path):
    ray_temp = Path("/tmp") / f"ray-quiet-{_free_port()}"
    ray_temp.mkdir()
    try:
        search = _search(tmp_path, _search_env(tmp_path, ray_temp), delay=0)
        out, err = search.communicate(timeout=300)
    finally:
        _stop_node(ray_temp)  # the search's own Ray, should a failed search leave it
    assert search.returncode == 0, err[-3000:]
    assert json.loads(out)["best"]["n"] == 1  # the replayed grid's true best at 3%: (1, 0.5)
    assert "started  (1, 0) | running 1, done 0, failed 0 | best so far -" in err
    assert "complete (1, 0) accuracy 0.8463" in err
    assert [line for line in err.splitlines() if any(n in line for n in TUNE_NOISE)] == []


@pytest.fixture
def lone_head():
    """A head node of its own (1 CPU, no token), stopped after; yields its address and its
    temp folder's parent."""
    port = _free_port()
    top = Path("/tmp") / f"ray-lost-{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    args = ["--head", "--port", str(port), "--include-dashboard", "false", "--num-cpus", "1"]
    args += ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [RAY, "start", *args, "--temp-dir", str(top / "ray")],
            env=env | {"RAY_AUTH_MODE": "disabled"},
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield f"127.0.0.1:{port}", top
    finally:
        _stop_node(top)


@pytest.mark.ray
@pytest.mark.slow  # some 40 s on 2 cores: a head started, a search, its head killed
def test_a_search_whose_cluster_is_lost_says_so_and_how_to_resume(lone_head, tmp_path):
    """Before, Tune waited silently in a call to the dead head and Ray's C++ client ended the
    process 60 s later with a raw line of its own ("Failed to connect to GCS within 60
    seconds"). Ray's reconnect timeout at 20 s: the search gives up after 5 s."""
    import optuna

    address, top = lone_head
    env = _search_env(tmp_path, Path("/tmp") / f"ray-none-{_free_port()}")
    env |= {
        "RAY_ADDRESS": address,
        "RAY_AUTH_MODE": "disabled",
        "RAY_gcs_rpc_server_reconnect_timeout_s": "20",
    }
    search = _search(tmp_path, env, delay=60)
    assert search.stderr is not None
    lines = []
    for line in search.stderr:  # until the first trial trains
        lines.append(line)
        if line.startswith("started  (1, 0)"):
            break
    for pid in _node_pids(top, ("gcs_server", "raylet/raylet")):
        os.kill(pid, signal.SIGKILL)
    lost = time.perf_counter()
    _, err = search.communicate(timeout=120)
    wall = time.perf_counter() - lost
    err = "".join(lines) + err
    assert err.splitlines()[-1] == (
        f"autoprumux: error: the Ray cluster at {address} (RAY_ADDRESS) was lost: its head has "
        "not answered for 5 s; the trials it was running are closed as interrupted: run the "
        "same command again once it is back to resume the search"
    )
    assert search.returncode == 1  # not bad input: the search could not go on
    assert "Failed to connect to GCS" not in err and "Traceback" not in err
    assert wall < 20  # before Ray's own timeout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name="sst2-tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    [trial] = trials.trials
    assert (trial.params, trial.state) == ({"n": 1, "sparsity": 0.0}, optuna.trial.TrialState.FAIL)
    assert trial.user_attrs["reason"].startswith("interrupted:")
    assert [line for line in err.splitlines() if any(n in line for n in TUNE_NOISE)] == []


def test_a_head_silent_for_its_patience_is_a_lost_cluster():
    from autoprumux.loop.ray_address import ClusterLost
    from autoprumux.loop.ray_executor import HeadWatch

    listening = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{listening.getsockname()[1]}"
    now = [0.0]
    watch = HeadWatch(address, f"the Ray cluster at {address} (--address)", 10, lambda: now[0])
    for now[0] in (0.0, 2.0, 4.0):
        watch.check()  # it answers
    listening.close()
    for now[0] in (6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 15.9):  # silent since 6 s
        watch.check()
    now[0] = 16.0
    with pytest.raises(ClusterLost) as lost:
        watch.check()
    assert str(lost.value) == (
        f"the Ray cluster at {address} (--address) was lost: its head has not answered for "
        "10 s; the trials it was running are closed as interrupted: run the same command "
        "again once it is back to resume the search"
    )


def test_the_head_is_given_a_quarter_of_rays_reconnect_timeout_at_most():
    from autoprumux.loop.ray_executor import head_patience_s

    name = "RAY_gcs_rpc_server_reconnect_timeout_s"
    assert head_patience_s({}) == 15.0  # Ray's default 60 s
    assert head_patience_s({name: "20"}) == 5.0
    assert head_patience_s({name: "600"}) == 15.0
    assert head_patience_s({name: "soon"}) == 15.0


class _NoDriver:
    """A driver any call to which fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the driver's {name} was called")


def test_a_closed_searcher_tells_the_driver_nothing_and_pickles():
    """Tune pickles its searcher with its own state, and calls it from its thread while the
    search, its head lost or Ctrl-C pressed, closes the driver."""
    import pickle

    from ray.tune.search import Searcher

    from autoprumux.loop.ray_executor import ProposerSearcher

    searcher = ProposerSearcher(_NoDriver())  # type: ignore[arg-type]
    searcher.closed = True
    assert searcher.suggest("t1") == Searcher.FINISHED
    searcher.on_trial_complete("t1", {"status": "complete"})
    copy = pickle.loads(pickle.dumps(searcher))
    assert copy.closed and copy.lock.acquire(blocking=False)
