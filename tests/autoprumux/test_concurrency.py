"""Several searches on one study: each leaves the others' live trials alone and trains other
points; a dead one's trials are taken back (at once on this machine, once their lease lapses
from another); four processes can create one new study at once, in a new SQLite file or an
empty PostgreSQL database (tests taking ``storage_url`` run on both)."""

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from replay_search import replay_search_argv
from small_recipe import SMALL_RECIPE

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import BASELINE, PAPER_GRID, Grid, GridPoint
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.driver import EventKind, SearchConfig, SearchDriver, run_local, trainings
from autoprumux.loop.optuna_store import LEASE_ATTR, OWNER_ATTR, OptunaStore
from autoprumux.loop.store_contract import Abandoned
from autoprumux.loop.trial_owner import (
    LeaseKeeper,
    LeaseTerms,
    Liveness,
    TrialOwner,
    close_owner,
    liveness,
    now_s,
)
from autoprumux.loop.trial_sources import ReplayTrainer
from autoprumux.testing.synthetic import SyntheticFamily

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "studies" / "results" / "synthetic-sst2.csv"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
FAMILY = SyntheticFamily(accuracy_noise=0.0)
THROUGHPUT = ThroughputTable({p: 1000 * FAMILY.expected_speedup(p) for p in PAPER_GRID})


def best_by_brute_force(budget=0.03):
    truth = ReplayTrainer(path=str(TABLE)).table().observations("sst2")
    threshold = truth.accuracy[BASELINE] - budget
    feasible = [p for p, a in truth.accuracy.items() if a >= threshold - 1e-9]
    return max(feasible, key=truth.throughput.get)


def launch(folder, delay, url):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoprumux",
            *replay_search_argv(
                folder / "sst2.toml",
                url,
                f"replay:{TABLE}?delay={delay}",
                "--json",
            ),
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(processes):
    outputs = [p.communicate(timeout=240) for p in processes]
    return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]


def assert_one_measurement_per_point_and_the_answer(url, results):
    for code, _, err in results:
        assert code == 0, err[-3000:]
    best = best_by_brute_force()
    for _, out, _ in results:
        document = json.loads(out)
        assert (document["best"]["n"], document["best"]["sparsity"]) == (best.n, best.sparsity)
    study = optuna.load_study(study_name="sst2", storage=url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    points = Counter((t.params["n"], t.params["sparsity"]) for t in complete)
    assert max(points.values()) == 1, points
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return study


@pytest.fixture
def folder(tmp_path):
    shutil.copy(ROOT / "studies" / "sst2.toml", tmp_path / "sst2.toml")
    return tmp_path


@pytest.mark.slow  # four search processes at once: about 8 s on 2 cores
def test_four_searches_create_one_new_study_at_once_and_share_it(folder, storage_url):
    results = finished([launch(folder, 0.3, storage_url) for _ in range(4)])
    study = assert_one_measurement_per_point_and_the_answer(storage_url, results)
    # nobody's live trial was taken for dead: every closed trial lost a race to start its point
    reasons = Counter(
        t.user_attrs.get("reason") for t in study.trials if t.state == TrialState.FAIL
    )
    assert set(reasons) <= {Abandoned.SUPERSEDED.value}, reasons


@pytest.mark.slow  # two search processes: about 10 s on 2 cores
def test_a_second_search_joins_a_live_one_without_touching_its_trials(folder):
    url = f"sqlite:///{folder / 'study.db'}"
    first = launch(folder, 1.0, url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        study = _study_or_none(url)
        if study and any(t.state == TrialState.RUNNING for t in study.trials):
            break
        time.sleep(0.05)
    second = launch(folder, 1.0, url)
    results = finished([first, second])
    study = assert_one_measurement_per_point_and_the_answer(url, results)
    assert not [
        t for t in study.trials if t.user_attrs.get("reason") == Abandoned.INTERRUPTED.value
    ]
    # each trained points of its own, the two at once: the second did not wait for the first
    # to end (whether it printed "joined" depends on the instant it started, between two of the
    # first's trials or during one; the event itself is tested in-process below)
    trained = [
        t for t in study.trials if t.state == TrialState.COMPLETE and OWNER_ATTR in t.system_attrs
    ]
    spans: dict[int, list[tuple]] = {}
    for t in trained:
        spans.setdefault(t.system_attrs[OWNER_ATTR]["pid"], []).append(
            (t.datetime_start, t.datetime_complete)
        )
    assert set(spans) == {first.pid, second.pid}
    assert min(start for start, _ in spans[second.pid]) < max(end for _, end in spans[first.pid])


def _study_or_none(url):
    try:
        return optuna.load_study(study_name="sst2", storage=url)
    except Exception:
        return None


# -- the lease, in this process -------------------------------------------------------------


def store_for(tmp_path, url=None, **kwargs):
    url = url or f"sqlite:///{tmp_path / 's.db'}"
    return OptunaStore(url, "s", PAPER_GRID, "sst2", **kwargs)


def driver_for(store, workers=1):
    config = SearchConfig(
        study_name="s",
        task="sst2",
        grid=PAPER_GRID,
        budget=Budget(BudgetKind.ABSOLUTE, 0.03),
        storage_url=store.url,
        workers=workers,
        poll_s=0.05,
    )
    return SearchDriver(config, THROUGHPUT, store)


def owned_elsewhere(store, point, lease_until):
    """A RUNNING trial of a search on another machine whose lease ends at ``lease_until``."""
    from optuna.trial import create_trial

    other = {**store.owner.to_attr(), "host": "elsewhere", "token": "theirs"}
    template = create_trial(
        state=TrialState.RUNNING,
        params={"n": point.n, "sparsity": point.sparsity},
        distributions=store.distributions(),
        system_attrs={OWNER_ATTR: other, LEASE_ATTR: lease_until},
    )
    trial_id = store._storage.create_new_trial(store._study_id, template)
    return store._storage.get_trial_number_from_id(trial_id)


def test_another_machines_trial_is_left_alone_while_its_lease_holds(tmp_path):
    store = store_for(tmp_path)
    number = owned_elsewhere(store, BASELINE, now_s() + 60)
    driver = driver_for(store)
    assert driver.suggest(1).wait  # the baseline is theirs: nothing else to do before it
    snapshot = store.snapshot()
    assert [t.number for t in snapshot.others()] == [number]
    assert not store.repair()[Abandoned.INTERRUPTED]


def test_a_search_that_finds_another_ones_trial_running_says_it_joined(tmp_path):
    store = store_for(tmp_path)
    owned_elsewhere(store, BASELINE, now_s() + 60)
    events = []
    config = driver_for(store).config
    SearchDriver(config, THROUGHPUT, store, on_event=events.append)
    (joined,) = [e for e in events if e.kind is EventKind.JOINED]
    assert joined.message == (
        f"1 trial(s) of other searches running (process {os.getpid()} on elsewhere); "
        "this one trains other points"
    )


def test_a_search_alone_on_its_study_does_not_say_it_joined(tmp_path):
    events = []
    store = store_for(tmp_path)
    SearchDriver(driver_for(store).config, THROUGHPUT, store, on_event=events.append)
    assert not [e for e in events if e.kind is EventKind.JOINED]


def test_another_machines_trial_is_taken_back_once_its_lease_lapses(tmp_path, storage_url):
    store = store_for(tmp_path, storage_url)
    owned_elsewhere(store, BASELINE, now_s() - 1)
    driver = driver_for(store)  # repairs before proposing anything
    ((number, point),) = driver.suggest(1).start
    assert point == BASELINE
    records = [r for _, r in store.records()]
    assert [r.reason for r in records] == [Abandoned.INTERRUPTED.value]
    assert trainings(records) == 0


def test_a_dead_process_on_this_machine_loses_its_trials_at_once(tmp_path):
    store = store_for(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"])
    child.wait()
    dead = {**store.owner.to_attr(), "pid": child.pid, "token": "dead"}
    assert liveness(TrialOwner.from_attr(dead), now_s() + 60, now_s()) is Liveness.DEAD
    assert liveness(store.owner, None, now_s()) is Liveness.LIVE  # this open search
    store.close()
    assert liveness(store.owner, now_s() + 60, now_s()) is Liveness.DEAD  # closed: dead
    assert liveness(None, now_s() + 60, now_s()) is Liveness.DEAD  # no owner: nobody renews


def test_of_two_searches_starting_one_point_only_the_first_trains_it(tmp_path, storage_url):
    first, second = store_for(tmp_path, storage_url), store_for(tmp_path, storage_url)
    number = first.start(BASELINE)
    assert number is not None
    assert second.start(BASELINE) is None  # it read the study before the first started it
    first.finish(
        number,
        TrialRecord(task="sst2", n=1, sparsity=0.0, accuracy=0.93, throughput=1000.0),
        threshold=0.9,
    )
    assert second.start(BASELINE) is None  # measured meanwhile
    records = [r for _, r in first.records()]
    assert [r.reason for r in records if r.status is TrialStatus.FAILED] == [
        Abandoned.SUPERSEDED.value
    ] * 2
    assert trainings(records) == 1


def test_a_trial_taken_back_meanwhile_is_recorded_anew_not_crashed(tmp_path, storage_url):
    first, second = store_for(tmp_path, storage_url), store_for(tmp_path, storage_url)
    number = first.start(GridPoint(2, 0.6))
    first._lease.stop()
    close_owner(first.owner)  # as another search sees a process that stopped renewing
    assert second.repair()[Abandoned.INTERRUPTED] == 1
    first.finish(
        number,
        TrialRecord(task="sst2", n=2, sparsity=0.6, accuracy=0.91, throughput=3000.0),
        threshold=0.9,
    )
    complete = [r for _, r in second.records() if r.status is TrialStatus.COMPLETE]
    assert [r.point for r in complete] == [GridPoint(2, 0.6)]


def test_the_lease_is_renewed_while_the_trial_trains(tmp_path):
    store = store_for(tmp_path, lease=LeaseTerms(renew_every_s=0.05, lasts_s=1.0))
    number = store.start(BASELINE)

    def lease():
        trial = store.study.get_trials(deepcopy=False)[number]
        return trial.system_attrs[LEASE_ATTR]

    first = lease()
    time.sleep(0.4)
    assert lease() > first
    store.close()
    assert store.study.get_trials(deepcopy=False)[number].state == TrialState.FAIL


def test_the_lease_keeper_stops_with_nothing_to_renew():
    renewed = []
    keeper = LeaseKeeper(renewed.append, LeaseTerms(renew_every_s=0.01, lasts_s=1.0))
    keeper.add(7)
    time.sleep(0.1)
    keeper.remove(7)
    time.sleep(0.05)
    count = len(renewed)
    time.sleep(0.1)
    assert count > 0 and len(renewed) == count and set(renewed) == {7}


def test_two_drivers_in_one_process_share_the_work(tmp_path, storage_url):
    """Searches side by side in threads: every point measured once, the answer right."""
    import threading

    trainer = ReplayTrainer(path=str(TABLE), delay_s=0.05)
    outcomes = {}

    def run(key):
        outcomes[key] = run_local(driver_for(store_for(tmp_path, storage_url)), trainer, 1)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert {o.best for o in outcomes.values()} == {best_by_brute_force()}
    records = [r for _, r in store_for(tmp_path, storage_url).records()]
    complete = Counter(r.point for r in records if r.status is TrialStatus.COMPLETE)
    assert max(complete.values()) == 1
    assert sum(o.trainings_this_run for o in outcomes.values()) == trainings(records)


def test_a_trial_added_just_after_the_last_one_left_is_still_renewed():
    renewed = []
    keeper = LeaseKeeper(renewed.append, LeaseTerms(renew_every_s=0.02, lasts_s=1.0))
    keeper.add(1)
    keeper.remove(1)  # the thread is told to stop ...
    keeper.add(2)  # ... and a new trial starts before it has woken
    time.sleep(0.2)
    keeper.stop()
    assert 2 in renewed


def test_a_store_with_live_leases_pickles_as_ray_tune_needs():
    """Tune pickles the searcher, and with it the store: its lease keeper (a lock and a thread)
    must survive that, and the copy renews nothing."""
    import pickle

    from autoprumux.loop.trial_owner import LeaseKeeper, LeaseTerms

    renewed: list[int] = []
    keeper = LeaseKeeper(renewed.append, LeaseTerms(renew_every_s=0.05, lasts_s=1.0))
    keeper.add(7)
    try:
        copy = pickle.loads(pickle.dumps(keeper))
        assert copy.terms == keeper.terms and copy._trial_ids == set()
        assert copy._thread is None  # no second renewer
    finally:
        keeper.stop()


# -- what a search waits for --------------------------------------------------------------------

# N in {1, 2}, s in {0, 0.6, 0.8}; examples per second, growing with compression
SMALL_GRID = Grid((1, 2), (0.0, 0.6, 0.8))
SMALL_THROUGHPUT = ThroughputTable(
    {
        GridPoint(1, 0.0): 100.0,
        GridPoint(1, 0.6): 200.0,
        GridPoint(1, 0.8): 260.0,
        GridPoint(2, 0.0): 180.0,
        GridPoint(2, 0.6): 300.0,
        GridPoint(2, 0.8): 400.0,
    }
)
# dev accuracy; a budget of 0.03 under the baseline's 0.90 sets the threshold at 0.87, which
# (1, 0.6) and (1, 0.8) meet: (1, 0.8) is the best verified point, and only row 2 is faster
ROW_1 = {GridPoint(1, 0.0): 0.90, GridPoint(1, 0.6): 0.89, GridPoint(1, 0.8): 0.875}
# any training work: with a recipe the proposer counts a teacher another training builds as free
RECIPE = SMALL_RECIPE


def other_search(tmp_path, measured, running):
    """Another search on a small study: the store it records ``measured`` (point -> dev
    accuracy) with, each point trained, and the numbers of the trials it trains now."""
    store = OptunaStore(f"sqlite:///{tmp_path / 's.db'}", "s", SMALL_GRID, "sst2")
    for point, accuracy in measured.items():
        record_training(store, store.start(point), point, accuracy)
    return store, {point: store.start(point) for point in running}


def record_training(store, number, point, accuracy):
    record = TrialRecord(
        task="sst2",
        n=point.n,
        sparsity=point.sparsity,
        accuracy=accuracy,
        throughput=SMALL_THROUGHPUT.throughput[point],
    )
    store.finish(number, record, threshold=None)


def joining_driver(tmp_path, events, recipe=None):
    """A search of budget 0.03 that joins the other one's study."""
    store = OptunaStore(f"sqlite:///{tmp_path / 's.db'}", "s", SMALL_GRID, "sst2")
    config = SearchConfig(
        study_name="s",
        task="sst2",
        grid=SMALL_GRID,
        budget=Budget(BudgetKind.ABSOLUTE, 0.03),
        storage_url=store.url,
        recipe=recipe,
    )
    return SearchDriver(config, SMALL_THROUGHPUT, store, on_event=events.append)


def waited_for(events):
    return [e.message for e in events if e.kind is EventKind.WAITING]


def test_a_search_waits_for_another_ones_trials_only_while_they_could_change_its_answer(
    tmp_path,
):
    """The sweep's case: another search (a looser budget) trains (2, 0.6) and (2, 0.8), both
    open for this one. Once (2, 0.6) missed this one's threshold by 4.5 points, which rules
    out (2, 0.8), its answer is (1, 0.8): it finishes, and (2, 0.8) trains on untouched."""
    running = (GridPoint(2, 0.6), GridPoint(2, 0.8))
    other, numbers = other_search(tmp_path, {**ROW_1, GridPoint(2, 0.0): 0.88}, running)
    events = []
    driver = joining_driver(tmp_path, events)
    assert driver.suggest(1).wait
    assert waited_for(events) == ["for other searches' trials: (2, 0.6), (2, 0.8)"]
    record_training(other, numbers[GridPoint(2, 0.6)], GridPoint(2, 0.6), 0.825)
    suggestion = driver.suggest(1)
    assert suggestion.finished and not suggestion.start
    assert len(waited_for(events)) == 1  # it said nothing of (2, 0.8)
    assert driver.outcome().best == GridPoint(1, 0.8)
    driver.close()
    assert [(t.number, t.point) for t in other.snapshot().running] == [
        (numbers[GridPoint(2, 0.8)], GridPoint(2, 0.8))
    ]
    other.close()


def test_a_search_waits_for_a_trial_that_builds_the_teacher_of_a_row_it_needs(tmp_path):
    """Another search trains (2, 0.8), which this one rules out ((1, 0.8) missed); yet (2, 0.6)
    is open, and nothing predicts row 2 but its (2, 0) teacher, which that training builds
    (free for this one, by the cost model): this search waits for it, not finishes."""
    measured = {**ROW_1, GridPoint(1, 0.8): 0.80}
    other, _ = other_search(tmp_path, measured, (GridPoint(2, 0.8),))
    events = []
    driver = joining_driver(tmp_path, events, recipe=RECIPE)
    assert driver.proposer.status(driver.state()).open == (GridPoint(2, 0.6),)
    assert driver.suggest(1).wait
    assert waited_for(events) == ["for other searches' trials: (2, 0.8)"]
    driver.close()
    other.close()
