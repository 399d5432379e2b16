"""The local executor's GPU trials, each in a spawned process of its own, placed on the GPU
with the most free slots (autoprumux.loop.trial_process, driver.run_local): run on the CPU with
real child processes and fake trainers (tests/autoprumux/process_trainers.py) that say which
process and device they trained on. A trial that raises or is killed is a failed trial with its
reason; a search SIGKILLed takes its trials with it."""

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import Grid, GridPoint
from autoprumux.core.records import Training, TrialStatus
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.device_slots import DeviceSlots
from autoprumux.loop.driver import SearchConfig, SearchDriver, run_local
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.trial_process import TrialProcesses, failure_reason
from autoprumux.loop.trial_sources import StudyTrainer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GRID = Grid((1, 2), (0.0, 0.5))
TABLE = ThroughputTable(
    {
        GridPoint(1, 0.0): 1000.0,
        GridPoint(1, 0.5): 1500.0,
        GridPoint(2, 0.0): 1900.0,
        GridPoint(2, 0.5): 2600.0,
    }
)


@pytest.fixture
def trainers(monkeypatch):
    """The fake trainers' module, importable by name here and in a spawned child (which
    inherits this sys.path)."""
    monkeypatch.syspath_prepend(str(HERE))
    return importlib.import_module("process_trainers")


def driver_of(tmp_path, max_retries=0):
    """A driver of the 2 x 2 grid with a floor budget (no baseline to wait for): the proposer
    may start every point at once."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    config = SearchConfig(
        study_name="p",
        task="sst2",
        grid=GRID,
        budget=Budget(BudgetKind.MIN_ACCURACY, 0.5),
        storage_url=url,
        workers=4,
        max_retries=max_retries,
        poll_s=0.05,
    )
    return SearchDriver(config, TABLE, OptunaStore(url, "p", GRID, "sst2")), url


def numbered_records(url):
    store = OptunaStore(url, "p", GRID, "sst2")
    try:
        return sorted(store.records())
    finally:
        store.close()


def where(record):
    """{"pid": ..., "device": ..., "share": ...} of a PidTrainer's record."""
    return dict(part.split("=") for part in record.node.split())


def test_each_gpu_trial_runs_in_a_process_of_its_own_on_the_gpu_the_allocator_gives(
    tmp_path, trainers
):
    """Two "GPUs" of two slots (share 0.5): the four points start at once, in trial-number
    order, on cuda:0, cuda:1, cuda:0, cuda:1 (the most free slots, the lower index among
    equals), each in its own child, capped to its share."""
    driver, url = driver_of(tmp_path)
    trainer = trainers.PidTrainer(folder=str(tmp_path), delay_s=1.0)
    devices = DeviceSlots.for_share(("cuda:0", "cuda:1"), 0.5)
    outcome = run_local(driver, trainer, 4, devices=devices, processes=True)
    records = numbered_records(url)
    assert [r.status for _, r in records] == [TrialStatus.COMPLETE] * 4
    placed = [where(r) for _, r in records]
    assert [p["device"] for p in placed] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert {p["share"] for p in placed} == {"0.5"}
    pids = {int(p["pid"]) for p in placed}
    assert len(pids) == 4 and os.getpid() not in pids
    # the four trained at the same time: each started before any other ended
    spans = [json.loads(f.read_text()) for f in tmp_path.glob("*.json")]
    assert len(spans) == 4 and max(s["start"] for s in spans) < min(s["end"] for s in spans)
    assert outcome.trainings_this_run == 4 and devices.free() == {"cuda:0": 2, "cuda:1": 2}


def test_a_freed_slot_goes_to_the_next_trial(tmp_path, trainers):
    """One GPU slot: the points train one after another (until the answer is known), every
    one on cuda:3, each in a child of its own."""
    driver, url = driver_of(tmp_path)
    trainer = trainers.PidTrainer(folder=str(tmp_path))
    devices = DeviceSlots.for_share(("cuda:3",), 1.0)
    outcome = run_local(driver, trainer, 1, devices=devices, processes=True)
    placed = [where(r) for _, r in numbered_records(url)]
    assert len(placed) == outcome.trainings_this_run >= 2
    assert {p["device"] for p in placed} == {"cuda:3"} and {p["share"] for p in placed} == {"1"}
    assert len({p["pid"] for p in placed}) == len(placed)


def test_a_trial_that_raises_or_is_killed_fails_with_its_reason_and_the_search_goes_on(
    tmp_path, trainers, caplog
):
    driver, url = driver_of(tmp_path)
    trainer = trainers.PidTrainer(
        folder=str(tmp_path), delay_s=0.3, raise_at=((2, 0.0),), kill_at=((2, 0.5),)
    )
    devices = DeviceSlots.for_share(("cuda:0", "cuda:1"), 0.5)
    outcome = run_local(driver, trainer, 4, devices=devices, processes=True)
    by_point = {(r.n, r.sparsity): r for _, r in numbered_records(url)}
    assert by_point[(2, 0.0)].status is TrialStatus.FAILED
    assert by_point[(2, 0.0)].reason == "RuntimeError: boom at (2, 0)"
    assert by_point[(2, 0.5)].status is TrialStatus.FAILED
    assert (
        by_point[(2, 0.5)].reason == "the trial's process was killed by SIGKILL before it answered"
    )
    assert by_point[(1, 0.0)].status is by_point[(1, 0.5)].status is TrialStatus.COMPLETE
    assert outcome.failed_total == 2 and outcome.decision is not None
    assert devices.free() == {"cuda:0": 2, "cuda:1": 2}  # the failed trials' slots came back
    assert "second line" in caplog.text  # the child's traceback, logged in full


def test_the_threads_path_places_trials_without_capping_them(tmp_path, trainers):
    """In threads (one process) a trial's cap would be the whole process's: placed, share 1."""
    driver, url = driver_of(tmp_path)
    trainer = trainers.PidTrainer(folder=str(tmp_path), delay_s=0.3)
    devices = DeviceSlots.for_share(("cuda:0", "cuda:1"), 0.5)
    run_local(driver, trainer, 4, devices=devices, processes=False)
    placed = [where(r) for _, r in numbered_records(url)]
    assert [p["device"] for p in placed] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert {p["share"] for p in placed} == {"1"} and {p["pid"] for p in placed} == {
        str(os.getpid())
    }


def test_a_trainer_that_cannot_be_placed_is_refused(tmp_path):
    driver, _ = driver_of(tmp_path)

    def plain(point, stop):
        raise AssertionError("never called")

    devices = DeviceSlots.for_share(("cuda:0",), 1.0)
    with pytest.raises(TypeError, match="cannot be placed"):
        run_local(driver, plain, 1, devices=devices)


def test_a_failure_reason_names_the_signal_or_the_exit_code():
    assert failure_reason(-11) == "the trial's process was killed by SIGSEGV before it answered"
    assert failure_reason(3) == "the trial's process exited with code 3 before it answered"


def test_a_trainer_that_cannot_be_pickled_fails_its_trial(tmp_path):
    def local(point, stop):  # a local function: spawn cannot send it
        return Training.failed("sst2", point, "never")

    training = TrialProcesses().run(local, GridPoint(1, 0.0), None)
    assert training.record.status is TrialStatus.FAILED
    assert "pickle" in training.record.reason.lower()


def test_the_study_trainer_is_placed_on_a_device_with_its_share():
    trainer = StudyTrainer(study_path="s.toml", device="auto", threads=2)
    placed = trainer.on_device("cuda:1", 0.25)
    assert placed == StudyTrainer(study_path="s.toml", device="cuda:1", threads=2, gpu_share=0.25)
    assert trainer.gpu_share == 1.0  # unchanged: a frozen value


SEARCH_SCRIPT = textwrap.dedent(
    """
    import sys
    from autoprumux.core.budget import Budget, BudgetKind
    from autoprumux.core.grid import Grid, GridPoint
    from autoprumux.core.throughput import ThroughputTable
    from autoprumux.loop.device_slots import DeviceSlots
    from autoprumux.loop.driver import SearchConfig, SearchDriver, run_local
    from autoprumux.loop.optuna_store import OptunaStore
    from process_trainers import PidTrainer

    if __name__ == "__main__":
        folder = sys.argv[1]
        grid = Grid((1, 2), (0.0, 0.5))
        table = ThroughputTable({p: 1000.0 * (i + 1) for i, p in enumerate(sorted(grid))})
        url = f"sqlite:///{folder}/k.db"
        config = SearchConfig(
            study_name="k", task="sst2", grid=grid, storage_url=url, workers=2,
            budget=Budget(BudgetKind.MIN_ACCURACY, 0.5), poll_s=0.05,
        )
        driver = SearchDriver(config, table, OptunaStore(url, "k", grid, "sst2"))
        devices = DeviceSlots.for_share(("cuda:0",), 0.5)
        run_local(driver, PidTrainer(folder=folder, delay_s=120.0), 2, devices=devices,
                  processes=True)
    """
)


def gone(pid):
    """The process has ended: no such process, or a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_trials_die_with_a_search_killed_by_sigkill(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SEARCH_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}
    search = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*-*.json"))) < 2:  # both trials have started
            assert search.poll() is None, "the search ended before its trials started"
            assert time.monotonic() < deadline, "the trials did not start in 60 s"
            time.sleep(0.1)
        pids = [json.loads(f.read_text())["pid"] for f in tmp_path.glob("*-*.json")]
        assert search.pid not in pids and all(not gone(pid) for pid in pids)
        search.send_signal(signal.SIGKILL)
        search.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(pid) for pid in pids), "a trial outlived its search"
    finally:  # nothing outlives the test, whatever it found
        if search.poll() is None:
            search.kill()
            search.wait()
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert len(pids) == 2


def test_kill_all_ends_the_running_trials_and_starts_no_more(tmp_path, trainers):
    """What the executor does when the search stops on an error of its own (or ^C)."""
    children = TrialProcesses()
    trainer = trainers.PidTrainer(folder=str(tmp_path), delay_s=120.0)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(children.run, trainer, GridPoint(1, 0.0), None)
        deadline = time.monotonic() + 60
        while not (tmp_path / "1-0.json").exists():
            assert time.monotonic() < deadline, "the trial did not start in 60 s"
            time.sleep(0.05)
        started = time.monotonic()
        children.kill_all()
        training = running.result(timeout=10)
    assert time.monotonic() - started < 10  # not the trial's 120 s
    assert training.record.reason == "the trial's process was killed by SIGKILL before it answered"
    after = children.run(trainer, GridPoint(1, 0.5), None)
    assert after.record.reason == "the search stopped before it started"
    assert not (tmp_path / "1-0.5.json").exists()
