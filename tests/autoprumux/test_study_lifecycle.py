"""A search killed at any step of a trial's life: the rerun repairs the study before it
proposes anything, and gives the uninterrupted run's answer, from the trainer's own values,
without training a measured point again.

Steps a kill can be timed at from outside (a trial training, one just recorded, the study just
created) are real SIGKILLs of a search subprocess whose replayed trainings are slowed
(``replay:FILE?delay=SECONDS``), sent when the storage shows the step. Steps that last between
two writes are written into the study as such a kill (by this release or an older one) leaves
them, then the same search runs again. The real kills run on SQLite and, some of them, on
PostgreSQL (a database of the throwaway server: the ``storage_url`` fixture).
"""

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from replay_search import replay_search_argv

from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import PAPER_GRID, GridPoint
from autoprumux.core.records import TrialStatus
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.store_contract import Abandoned
from autoprumux.report.sources import from_storage

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "studies" / "results" / "synthetic-sst2.csv"
NAME = "sst2"
DISTRIBUTIONS = {
    "n": CategoricalDistribution(PAPER_GRID.n_values),
    "sparsity": CategoricalDistribution(PAPER_GRID.sparsities),
}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def truth():
    """The replayed table: point -> accuracy, what every measured value must equal."""
    from autoprumux.files.results_io import read_results

    return {r.point: r.accuracy for r in read_results(TABLE).records}


def new_folder(parent):
    parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "studies" / "sst2.toml", parent / "sst2.toml")  # reports go beside it
    return parent


def url(folder):
    return f"sqlite:///{folder / 'study.db'}"


def search_args(folder, trainer=f"replay:{TABLE}", *extra, storage=None):
    """``storage``: a URL; None for the SQLite file in ``folder``."""
    storage = storage or url(folder)
    return replay_search_argv(folder / "sst2.toml", storage, trainer, "--json", *extra)


def search(folder, *extra, storage=None):
    """The search, in this process: (exit code, its JSON document, its stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(search_args(folder, f"replay:{TABLE}", *extra, storage=storage))
    return code, (json.loads(out.getvalue()) if code == 0 else None), err.getvalue()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The answer and the trainings of the search run without a kill."""
    folder = new_folder(tmp_path_factory.mktemp("uninterrupted"))
    code, document, _ = search(folder)
    assert code == 0
    study = optuna.load_study(study_name=NAME, storage=url(folder))
    trained = [
        (t.params["n"], t.params["sparsity"])
        for t in study.trials
        if t.state == TrialState.COMPLETE and "from_trial" not in t.user_attrs
    ]
    return {"answer": answer(document), "decision": document["decision"], "trained": trained}


def answer(document):
    return (document["best"]["n"], document["best"]["sparsity"])


def assert_as_uninterrupted(folder, document, uninterrupted, storage=None):
    """The rerun's answer is the uninterrupted run's (on SQLite); every measured value is the
    trainer's; no point is measured twice; nothing is left open."""
    assert answer(document) == uninterrupted["answer"]
    assert document["decision"]["recommendations"] == uninterrupted["decision"]["recommendations"]
    study = optuna.load_study(study_name=NAME, storage=storage or url(folder))
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    points = Counter((t.params["n"], t.params["sparsity"]) for t in complete)
    assert max(points.values()) == 1, points  # no completed training done twice
    expected = truth()
    for trial in complete:
        point = GridPoint(trial.params["n"], trial.params["sparsity"])
        assert trial.values[0] == pytest.approx(expected[point], abs=1e-12), point
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for rec in document["decision"]["recommendations"]:
        if rec["accuracy_source"] == "measured":
            assert rec["accuracy"] == pytest.approx(expected[GridPoint(rec["n"], rec["sparsity"])])


def storage_of(folder):
    storage = optuna.storages.RDBStorage(url(folder))
    return storage, storage.get_study_id_from_name(NAME)


# -- a real kill ----------------------------------------------------------------------------


def trial_states(storage):
    """The trials' states, read from the storage as another process would; None before
    the study's tables exist."""
    if storage.startswith("postgresql"):
        return _postgres_trial_states(storage)
    path = Path(storage.removeprefix("sqlite:///"))
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return [row[0] for row in db.execute("SELECT state FROM trials")]
    except sqlite3.Error:
        return None


def _postgres_trial_states(storage):
    import psycopg

    try:
        with psycopg.connect(storage, connect_timeout=5) as db:
            return [row[0] for row in db.execute("SELECT state FROM trials")]
    except psycopg.Error:  # no such table yet
        return None


def start_search(folder, delay, *extra, stdout=subprocess.PIPE, storage=None):
    """The search as a subprocess whose trainings take ``delay`` s."""
    argv = search_args(folder, f"replay:{TABLE}?delay={delay}", *extra, storage=storage)
    return subprocess.Popen(
        [sys.executable, "-m", "autoprumux", *argv],
        cwd=ROOT,
        env=ENV,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_search_when(folder, ready, delay=0.4, storage=None):
    """Start the search as a subprocess (trainings take ``delay`` s), SIGKILL it once
    ``ready(states)`` holds; what the storage showed then."""
    storage = storage or url(folder)
    process = start_search(folder, delay, stdout=subprocess.DEVNULL, storage=storage)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            states = trial_states(storage)
            if ready(states):
                process.send_signal(signal.SIGKILL)
                break
            assert process.poll() is None, process.communicate()[1][-2000:]
            time.sleep(0.005)
        else:
            pytest.fail("the search never reached the step")
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return states


def completes(states):
    return states.count("COMPLETE") if states else 0


KILL_STEPS = {
    "study-just-created": lambda s: s is not None,
    "baseline-training": lambda s: s and "RUNNING" in s and completes(s) == 0,
    "fourth-training": lambda s: s and "RUNNING" in s and completes(s) >= 3,
    "trial-just-recorded": lambda s: completes(s) >= 5,
}
# on PostgreSQL too: a kill while the tables are created (a kill mid-training: the next test)
KILLED_ON_POSTGRES = ("study-just-created",)


@pytest.mark.parametrize(
    ("storage_url", "ready"),
    [pytest.param("sqlite", ready, id=f"{step}-sqlite") for step, ready in KILL_STEPS.items()]
    + [
        pytest.param("postgresql", KILL_STEPS[step], id=f"{step}-postgresql")
        for step in KILLED_ON_POSTGRES
    ],
    indirect=["storage_url"],
)
def test_a_killed_search_reruns_to_the_uninterrupted_answer(
    tmp_path, uninterrupted, storage_url, ready
):
    folder = new_folder(tmp_path)
    kill_search_when(folder, ready, storage=storage_url)
    code, document, err = search(folder, storage=storage_url)
    assert code == 0, err
    assert_as_uninterrupted(folder, document, uninterrupted, storage_url)


def test_a_kill_mid_training_leaves_a_live_looking_trial_that_the_rerun_takes_back(
    tmp_path, uninterrupted, storage_url
):
    folder = new_folder(tmp_path)
    states = kill_search_when(
        folder, lambda s: s and "RUNNING" in s and completes(s) >= 1, storage=storage_url
    )
    assert "RUNNING" in states
    code, document, _ = search(folder, storage=storage_url)
    assert code == 0
    study = optuna.load_study(study_name=NAME, storage=storage_url)
    interrupted = [
        t for t in study.trials if t.user_attrs.get("reason") == Abandoned.INTERRUPTED.value
    ]
    assert len(interrupted) == 1  # its owner was dead: taken back at once, not after a lease
    assert document["trainings_total"] == len(uninterrupted["trained"])  # it is no training
    assert document["failed_total"] == 0  # nor a failure of its point
    assert_as_uninterrupted(folder, document, uninterrupted, storage_url)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize(
    "executor", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])]
)
def test_ctrl_c_stops_the_search_at_once_and_the_rerun_answers_as_uninterrupted(
    tmp_path, uninterrupted, executor, stop
):
    """Ctrl-C (or SIGTERM) mid-training: exit code 130 and `interrupted`, at once (a CPU trial
    training in a thread is not waited for), nothing printed or reported as an answer, the
    trial closed as interrupted. On Ray, Tune's own handler used to end the run as if
    answered on a Ctrl-C (exit 0, `stopped: answer known`, a report of the one training
    done), and Ray's on a SIGTERM with a C++ stack dump (exit 1)."""
    folder = new_folder(tmp_path)
    # the baseline's training outlasts the test's patience
    process = start_search(folder, 60, "--executor", executor)
    deadline = time.monotonic() + 120
    while not ((s := trial_states(url(folder))) and "RUNNING" in s):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    time.sleep(1)  # into the training
    process.send_signal(stop)
    sent = time.monotonic()
    out, err = process.communicate(timeout=45)
    assert process.returncode == 130, err[-2000:]
    assert time.monotonic() - sent < 30  # not the 60 s the training still had to go
    assert err.rstrip().endswith("autoprumux: interrupted") and out == ""
    assert not list(folder.glob("reports/*.html"))
    storage, study_id = storage_of(folder)
    [closed] = storage.get_all_trials(study_id)
    assert closed.state == TrialState.FAIL
    assert closed.user_attrs["reason"] == Abandoned.INTERRUPTED.value
    code, document, _ = search(folder)
    assert code == 0
    assert_as_uninterrupted(folder, document, uninterrupted)


# -- states a kill between two writes leaves ------------------------------------------------


@pytest.mark.parametrize("labels", [{}, {"grid": PAPER_GRID.spec()}])
def test_a_study_killed_before_its_labels_is_labelled_again(tmp_path, uninterrupted, labels):
    folder = new_folder(tmp_path)
    study = optuna.create_study(
        study_name=NAME, storage=url(folder), directions=["maximize", "maximize"]
    )
    for key, value in labels.items():
        study.set_user_attr(key, value)
    code, document, err = search(folder)
    assert code == 0, err
    assert_as_uninterrupted(folder, document, uninterrupted)


def test_a_labelless_study_with_trials_is_refused_not_relabelled(tmp_path, capsys):
    folder = new_folder(tmp_path)
    study = optuna.create_study(
        study_name=NAME, storage=url(folder), directions=["maximize", "maximize"]
    )
    study.enqueue_trial({"x": 1})
    assert main(search_args(folder)) == 2
    assert "holds trials but no task or grid" in capsys.readouterr().err.splitlines()[-1]


def test_a_waiting_trial_is_closed_not_trained_under_another_point(tmp_path, uninterrupted):
    """The issue's reproduction: one finished trial, then a WAITING (10, 0) one."""
    folder = new_folder(tmp_path)
    assert search(folder, "--max-trials", "1")[0] == 0
    optuna.load_study(study_name=NAME, storage=url(folder)).enqueue_trial(
        {"n": 10, "sparsity": 0.0}
    )
    code, document, _ = search(folder)
    assert code == 0
    study = optuna.load_study(study_name=NAME, storage=url(folder))
    closed = [t for t in study.trials if t.user_attrs.get("reason") == Abandoned.NOT_STARTED.value]
    assert len(closed) == 1 and closed[0].state == TrialState.FAIL
    assert document["failed_total"] == 0
    assert_as_uninterrupted(folder, document, uninterrupted)


def test_a_trial_asked_without_params_breaks_neither_report_nor_rerun(tmp_path, uninterrupted):
    folder = new_folder(tmp_path)
    assert search(folder, "--max-trials", "1")[0] == 0
    storage, study_id = storage_of(folder)
    storage.create_new_trial(study_id)  # an older release: asked, killed before its params
    budget = Budget(BudgetKind.ABSOLUTE, 0.03)
    assert len(from_storage(url(folder), NAME, budget, None).records) == 1  # no KeyError: 'n'
    code, document, _ = search(folder)
    assert code == 0
    assert_as_uninterrupted(folder, document, uninterrupted)
    assert len(from_storage(url(folder), NAME, budget, None).records) >= 2


@pytest.mark.parametrize("teacher_recorded", [False, True])
def test_a_trial_killed_while_its_result_was_written_is_trained_again(
    tmp_path, uninterrupted, teacher_recorded
):
    """The result's attributes written (and the teacher recorded free), the state not yet."""
    folder = new_folder(tmp_path)
    assert search(folder, "--max-trials", "2")[0] == 0
    point = next(p for p in uninterrupted["trained"][2:] if p[1] > 0)  # one with a teacher
    accuracy = truth()
    storage, study_id = storage_of(folder)
    number = len(storage.get_all_trials(study_id)) + int(teacher_recorded)
    teacher = GridPoint(point[0], 0.0)
    if teacher_recorded and teacher not in _measured(folder):
        storage.create_new_trial(
            study_id,
            create_trial(
                values=[accuracy[teacher], 1000.0],
                params={"n": teacher.n, "sparsity": 0.0},
                distributions=DISTRIBUTIONS,
                user_attrs={"from_trial": number},
            ),
        )
    storage.create_new_trial(
        study_id,
        create_trial(
            state=TrialState.RUNNING,
            params={"n": point[0], "sparsity": point[1]},
            distributions=DISTRIBUTIONS,
            user_attrs={"accuracy": accuracy[GridPoint(*point)], "status": "complete"},
        ),
    )
    code, document, _ = search(folder)
    assert code == 0
    assert_as_uninterrupted(folder, document, uninterrupted)


def _measured(folder):
    store = OptunaStore(url(folder), NAME, PAPER_GRID, "sst2")
    return {r.point for _, r in store.records() if r.status is TrialStatus.COMPLETE}


def test_a_fail_trial_without_a_reason_counts_as_interrupted(tmp_path):
    """Optuna's own stale-trial check fails a trial without a reason: not a failure."""
    store = OptunaStore(f"sqlite:///{tmp_path / 's.db'}", NAME, PAPER_GRID, "sst2")
    storage, study_id = store._storage, store._study_id
    storage.create_new_trial(
        study_id,
        create_trial(
            state=TrialState.FAIL, params={"n": 1, "sparsity": 0.0}, distributions=DISTRIBUTIONS
        ),
    )
    ((_, record),) = store.records()
    assert record.reason == Abandoned.INTERRUPTED.value
