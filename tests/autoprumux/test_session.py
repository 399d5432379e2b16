"""The search as an application-level object (autoprumux.session): worker sizing, the plan,
the GPUs a local search counts, --max-gpu-hours and --timeout, the busy-database retry of
study attributes, and progress that goes to a callback or the logger, never to stdout."""

import json
import logging
import math
from pathlib import Path

import pytest
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from search_requests import search_request
from sqlalchemy.exc import OperationalError

import autoprumux
from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import FieldError
from autoprumux.core.grid import BASELINE, Grid, GridPoint
from autoprumux.core.records import ResultsTable, Training, TrialRecord
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import write_results
from autoprumux.loop.driver import SearchConfig, SearchDriver, StopReason, run_local
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.trial_sources import ReplaySpec
from autoprumux.session.search_session import Executor, SearchSession
from autoprumux.session.sizing import NodeSize, TrialSlots, size_trials

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "studies" / "sst2.toml"


# -- worker sizing: hand-computed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "gpus", "per_gpu", "per_cpu", "slots"),
    [
        (8, 0.0, 1.0, None, TrialSlots(1, 8.0, 0.0)),  # a CPU trial takes every core
        (8, 0.0, 1.0, 2.0, TrialSlots(4, 2.0, 0.0)),  # 8 // 2
        (8, 0.0, 1.0, 3.0, TrialSlots(2, 3.0, 0.0)),  # 8 // 3
        (8, 0.0, 1.0, 16.0, TrialSlots(1, 16.0, 0.0)),  # more than the machine: still one
        (16, 4.0, 1.0, None, TrialSlots(4, 1.0, 1.0)),  # a GPU trial takes one core
        (16, 2.0, 0.5, None, TrialSlots(4, 1.0, 0.5)),  # two trials a GPU
        (16, 3.0, 2.0, 4.0, TrialSlots(1, 4.0, 2.0)),  # 3 // 2
        (16, 1.0, 2.0, None, TrialSlots(1, 1.0, 2.0)),  # 1 // 2 = 0: still one
    ],
)
def test_trials_at_once_on_this_machine(cores, gpus, per_gpu, per_cpu, slots):
    sized = size_trials(cores=cores, gpus=gpus, gpus_per_trial=per_gpu, cpus_per_trial=per_cpu)
    assert sized == slots


NODES = (NodeSize(8.0, 4.0), NodeSize(4.0, 2.0), NodeSize(2.0, 0.0))


@pytest.mark.parametrize(
    ("gpus", "per_gpu", "per_cpu", "slots"),
    [
        (0.0, 1.0, 4.0, TrialSlots(3, 4.0, 0.0)),  # 8 // 4 + 4 // 4 + 2 // 4 = 2 + 1 + 0
        (0.0, 1.0, None, TrialSlots(7, 2.0, 0.0)),  # the smallest node's 2 cores: 4 + 2 + 1
        (0.0, 1.0, 16.0, TrialSlots(1, 16.0, 0.0)),  # fits nowhere: still one
        (6.0, 1.0, None, TrialSlots(6, 1.0, 1.0)),  # 4 + 2 + 0
        (6.0, 0.5, None, TrialSlots(12, 1.0, 0.5)),  # 8 + 4 + 0
        (3.0, 1.0, None, TrialSlots(3, 1.0, 1.0)),  # --gpus 3 caps the 6 that fit
        (6.0, 3.0, None, TrialSlots(1, 1.0, 3.0)),  # a trial runs on one node: 4 // 3 + 2 // 3
    ],
)
def test_trials_at_once_on_a_cluster_come_from_every_node(gpus, per_gpu, per_cpu, slots):
    sized = size_trials(
        cores=64, gpus=gpus, gpus_per_trial=per_gpu, cpus_per_trial=per_cpu, nodes=NODES
    )
    assert sized == slots


def test_a_node_without_cpus_does_not_size_cpu_trials():
    nodes = (NodeSize(0.0, 0.0), NodeSize(6.0, 0.0))  # a head started with --num-cpus 0
    sized = size_trials(cores=2, gpus=0.0, gpus_per_trial=1.0, cpus_per_trial=None, nodes=nodes)
    assert sized == TrialSlots(1, 6.0, 0.0)


# -- the plan --------------------------------------------------------------------------------


def grid_file(tmp_path, wall_time_s=None):
    """A recorded 2 x 2 grid to replay: accuracy falls with N and s, throughput rises."""
    rows = [
        ((1, 0.0), 0.90, 1000.0),
        ((1, 0.5), 0.89, 1500.0),
        ((2, 0.0), 0.88, 1900.0),
        ((2, 0.5), 0.80, 2600.0),
    ]
    records = [
        TrialRecord(
            task="sst2",
            n=n,
            sparsity=s,
            accuracy=accuracy,
            throughput=throughput,
            wall_time_s=wall_time_s,
        )
        for (n, s), accuracy, throughput in rows
    ]
    return write_results(ResultsTable(tuple(records), "test"), tmp_path / "grid.csv")


def study_file(tmp_path):
    """A study of the 2 x 2 grid, in a folder of its own (its report lands beside it)."""
    folder = tmp_path / "studies"
    folder.mkdir(exist_ok=True)
    path = folder / "s.toml"
    path.write_text('[study]\ntask = "sst2"\nname = "s"\n[grid]\nn = [1, 2]\nsparsity = [0, 0.5]\n')
    return path


def request(tmp_path, **changes):
    if "trainer_spec" not in changes:  # the grid file without wall times
        changes["trainer_spec"] = f"replay:{grid_file(tmp_path)}"
    storage = f"sqlite:///{tmp_path / 's.db'}"
    return search_request(**{"study_path": study_file(tmp_path), "storage": storage, **changes})


def test_the_plan_is_every_check_and_the_sizing_before_any_work(tmp_path):
    session = SearchSession(request(tmp_path), gpu_count=lambda: 0, cores=4)
    plan = session.plan()
    assert plan.executor is Executor.LOCAL
    assert plan.study.name == "s" and plan.storage_url == f"sqlite:///{tmp_path / 's.db'}"
    assert plan.report == (tmp_path / "reports" / "s.html").resolve()
    assert plan.replay == ReplaySpec(path=str(tmp_path / "grid.csv"))
    assert plan.slots == TrialSlots(1, 4.0, 0.0)  # a CPU trial takes the 4 cores
    assert plan.train is not None and plan.train.study_path == str(study_file(tmp_path))
    assert not (tmp_path / "s.db").exists()  # nothing written yet
    with pytest.raises(AttributeError):
        plan.slots = None  # a frozen record


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan, math.inf])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(tmp_path, timeout):
    with pytest.raises(FieldError, match=r"^--timeout: .* give a number of seconds above 0"):
        SearchSession(request(tmp_path, timeout_s=timeout)).plan()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"executor": "slurm"}, "--executor: 'slurm' is not one of: local, ray"),
        ({"top_k": 0}, "--top: 0 is not allowed; give a whole number >= 1"),
        ({"max_trials": 0}, "--max-trials: 0 is not allowed"),
        ({"max_retries": -1}, "--max-retries: -1 is not allowed"),
        ({"study_path": None}, "--study: no study file given"),
        ({"trainer_spec": "grid"}, "--trainer: 'grid' is not 'study' or 'replay:FILE'"),
    ],
)
def test_bad_requests_are_refused_in_one_line_naming_the_option(tmp_path, changes, message):
    with pytest.raises(FieldError) as error:
        SearchSession(request(tmp_path, **changes), gpu_count=lambda: 0).plan()
    assert str(error.value).startswith(message)


# -- the GPUs of a local search, and --max-gpu-hours ----------------------------------------


@pytest.mark.parametrize(
    ("changes", "note"),
    [
        (
            {"gpus_per_trial": 0.5},
            "note: --gpus-per-trial 0.5 is unused: the trials run on the CPU (this machine has "
            "no GPU)",
        ),
        (
            {"gpus_per_trial": 0.25, "gpus": 0.0},
            "note: --gpus-per-trial 0.25 is unused: the trials run on the CPU (--gpus 0)",
        ),
        (
            {"gpus_per_trial": 0.0, "device": "cpu"},
            "note: --gpus-per-trial 0 is unused: the trials run on the CPU (--device cpu)",
        ),
        ({}, None),  # the default share: nothing to say
    ],
)
def test_a_gpu_share_for_cpu_trials_is_said_to_be_unused(tmp_path, changes, note):
    said: list[str] = []
    SearchSession(request(tmp_path, **changes), progress=said.append, gpu_count=lambda: 0).plan()
    assert [line for line in said if "--gpus-per-trial" in line] == ([note] if note else [])


def test_a_local_search_on_a_cuda_machine_counts_its_trials_gpus(tmp_path):
    # every training took half an hour on one GPU: 0.5 GPU-hours each
    replay = f"replay:{grid_file(tmp_path, wall_time_s=1800.0)}"
    asked = request(tmp_path, trainer_spec=replay, max_gpu_hours=1.0)
    session = SearchSession(asked, progress=lambda line: None, gpu_count=lambda: 1, cores=8)
    plan = session.plan()
    assert plan.slots == TrialSlots(1, 1.0, 1.0)  # the machine's one GPU, a trial at a time
    result = session.run(plan)
    assert result.stop_reason is StopReason.MAX_GPU_HOURS
    assert result.document["trainings_this_run"] == 2
    assert result.document["gpu_hours_total"] == pytest.approx(1.0)  # 2 x 0.5
    assert result.document["training_hours_total"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("device", "count", "gpus"),
    [("cpu", 2, 0.0), ("cuda:1", 2, 1.0), ("auto", 2, 2.0), ("cuda", 8, 8.0), ("auto", 0, 0.0)],
)
def test_a_local_search_counts_the_gpus_its_device_gives(tmp_path, device, count, gpus):
    # auto and cuda spread the trials over every GPU (cuda:0..k-1), one a GPU at
    # --gpus-per-trial 1; cuda:1 names one; cpu none
    session = SearchSession(request(tmp_path, device=device), gpu_count=lambda: count, cores=8)
    assert session._gpus_before_ray(Executor.LOCAL) == gpus
    slots = TrialSlots(int(gpus), 1.0, 1.0) if gpus else TrialSlots(1, 8.0, 0.0)
    assert session.plan().slots == slots


def test_max_gpu_hours_is_refused_for_a_search_that_gets_no_gpu(tmp_path, capsys):
    session = SearchSession(request(tmp_path, max_gpu_hours=2.0), gpu_count=lambda: 0)
    with pytest.raises(FieldError, match=r"^--max-gpu-hours: .* --timeout SECONDS"):
        session.plan()
    argv = ["search", "--study", str(study_file(tmp_path)), "--budget", "0.03"]
    argv += ["--trainer", f"replay:{grid_file(tmp_path)}", "--executor", "local", "--gpus", "0"]
    argv += ["--storage", f"sqlite:///{tmp_path / 'cli.db'}", "--max-gpu-hours", "2"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("autoprumux: error: --max-gpu-hours: this search's trials get no GPU")
    assert not (tmp_path / "cli.db").exists()


# -- --timeout -------------------------------------------------------------------------------


def test_the_timeout_starts_no_training_once_it_has_passed(tmp_path):
    """A clock that each training moves 6 s: with a 10 s timeout the search starts a training
    at 0 s and at 6 s, and none at 12 s."""
    grid = Grid((1, 2), (0.0, 0.5))
    table = ThroughputTable(
        {
            GridPoint(1, 0.0): 1.0,
            GridPoint(1, 0.5): 2.0,
            GridPoint(2, 0.0): 3.0,
            GridPoint(2, 0.5): 4.0,
        }
    )
    now = [0.0]

    def trainer(point, stop):
        now[0] += 6.0
        return Training(
            TrialRecord(
                task="sst2",
                n=point.n,
                sparsity=point.sparsity,
                accuracy=0.9,
                throughput=table.throughput[point],
            )
        )

    url = f"sqlite:///{tmp_path / 't.db'}"
    config = SearchConfig(
        study_name="t",
        task="sst2",
        grid=grid,
        storage_url=url,
        budget=Budget(BudgetKind.ABSOLUTE, 0.03),
        timeout_s=10.0,
    )
    driver = SearchDriver(config, table, OptunaStore(url, "t", grid, "sst2"), clock=lambda: now[0])
    outcome = run_local(driver, trainer, 1)
    assert outcome.stop_reason is StopReason.TIMEOUT
    assert (outcome.trainings_this_run, now[0]) == (2, 12.0)
    assert outcome.records[0].point == BASELINE and outcome.decision is not None


def test_a_timed_out_search_lets_its_trainings_finish_and_reports(tmp_path):
    slow = f"replay:{grid_file(tmp_path)}?delay=0.6"  # each training takes 0.6 s
    asked = request(tmp_path, trainer_spec=slow, timeout_s=0.3, cpus_per_trial=1.0)
    lines = []
    result = SearchSession(asked, lines.append, gpu_count=lambda: 0, cores=2).run()
    # the (1, 0) baseline starts first, alone; it still runs when the 0.3 s pass, then
    # finishes at 0.6 s and is recorded; nothing starts after it
    assert result.stop_reason is StopReason.TIMEOUT
    assert result.document["trainings_this_run"] == len(result.records) == 1
    assert result.records[0].point == BASELINE and result.records[0].accuracy == 0.90
    assert result.text.startswith("stopped: timeout | trainings: 1 this run")
    assert result.report.is_file()
    assert [line.split()[0] for line in lines[1:]] == ["started", "complete"]


# -- study attributes through the busy-database retry ---------------------------------------


@pytest.fixture
def busy_once(monkeypatch):
    """Every write of a study's attributes (and the study's creation) is refused once as
    SQLite refuses a write when two writers would deadlock ("database is locked", which
    Optuna raises as a StorageInternalError), then taken: the refused calls, by name."""
    refused = []
    for name in ("create_new_study", "set_study_user_attr", "set_study_system_attr"):
        real = getattr(RDBStorage, name)

        def refusing(self, *args, _real=real, _name=name, **kwargs):
            key = (_name, repr(args[1:]))  # the call, without the study id
            if key not in refused:
                refused.append(key)
                locked = OperationalError("UPDATE ...", {}, Exception("database is locked"))
                raise StorageInternalError("An exception is raised during the commit.") from locked
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(RDBStorage, name, refusing)
    return refused


def test_every_study_attribute_write_is_retried_when_the_database_is_busy(tmp_path, busy_once):
    table = ROOT / "studies" / "throughput" / "sst2-tiny-cpu-float32.json"
    asked = request(tmp_path, throughput_path=str(table))
    result = SearchSession(asked, lambda line: None, gpu_count=lambda: 0).run()
    assert result.decision is not None
    names = {(name, args.split(",")[0].strip("(' ")) for name, args in busy_once}
    assert {
        ("set_study_user_attr", "grid"),
        ("set_study_user_attr", "task"),
        ("set_study_user_attr", "recipe"),
        ("set_study_user_attr", "throughput_table"),
        ("set_study_user_attr", "train_command"),
        ("set_study_user_attr", "threshold"),
    } <= names
    assert "create_new_study" in {name for name, _ in busy_once}
    assert "set_study_system_attr" in {name for name, _ in busy_once}  # the metric names
    store = OptunaStore(asked.storage, "s", Grid((1, 2), (0.0, 0.5)), "sst2")
    attrs = store.user_attrs()
    store.close()
    assert attrs["throughput_table"] == str(table)
    assert attrs["train_command"]["study"] == asked.study_path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gpus": "2"}, "--gpus: gpus='2' is not a number"),
        ({"gpus_per_trial": "1"}, "--gpus-per-trial: gpus_per_trial='1' is not a number"),
        ({"cpus_per_trial": True}, "--cpus-per-trial: cpus_per_trial=True is not a number"),
        ({"max_gpu_hours": "2"}, "--max-gpu-hours: max_gpu_hours='2' is not a number"),
        ({"timeout": "10"}, "--timeout: timeout='10' is not a number"),
        ({"storage": 5}, "--storage: storage=5 is not a string"),
        ({"study": None}, "--study: study=None is not a path"),
        ({"study": 5}, "--study: study=5 is not a path"),
        ({"early_stop": "no"}, "--no-early-stop: early_stop='no' is not True or False"),
        ({"progress": 5}, "progress: 5 is not a function of one line"),
        ({"budget": "0.03"}, "--budget: '0.03' is not a number"),
        ({"budget": 1.5}, "--budget: 1.5 is outside [0, 1) (0.03 means 3 points)"),
        ({"objective": "speed"}, "--objective: 'speed' is not one of: throughput, latency"),
    ],
)
def test_the_python_api_refuses_an_argument_of_the_wrong_type_naming_its_option(
    tmp_path, changes, message
):
    """What the CLI's parser turns into the option's type is refused in Python, before any
    work: the study's storage is not created."""
    asked = request(tmp_path)
    arguments = {"study": asked.study_path, "budget": 0.03, "storage": asked.storage}
    with pytest.raises(FieldError) as error:
        autoprumux.search(**{**arguments, **changes})
    assert str(error.value) == message
    assert not list(tmp_path.glob("*.db"))


def test_the_python_api_offers_its_lazy_loader_to_completion():
    """``load_model`` is imported on first use (torch), yet dir() and completion name it."""
    assert "load_model" in dir(autoprumux) and "search" in dir(autoprumux)


# -- progress --------------------------------------------------------------------------------


def test_the_python_api_logs_its_progress_and_prints_nothing(tmp_path, caplog, capsys):
    asked = request(tmp_path)
    with caplog.at_level(logging.INFO, logger="autoprumux"):
        result = autoprumux.search(
            study=asked.study_path,
            budget=0.03,
            trainer=asked.trainer_spec,
            storage=asked.storage,
        )
    assert capsys.readouterr() == ("", "")
    logged = [r.getMessage() for r in caplog.records if r.name == "autoprumux"]
    assert logged[0].startswith("study 's' in sqlite:///") and "(local)" in logged[0]
    assert (
        sum(line.startswith("complete") for line in logged) == result.document["trainings_this_run"]
    )
    # (1, 0) 0.90: threshold 0.87; (2, 0) at 0.88 is the fastest feasible point
    assert result.best == GridPoint(2, 0.0)
    assert result.decision.budget == Budget(BudgetKind.ABSOLUTE, 0.03)


def test_the_cli_timeout_stops_the_search_and_a_bad_one_is_one_line(tmp_path, capsys):
    argv = ["search", "--study", str(study_file(tmp_path)), "--budget", "0.03"]
    argv += ["--trainer", f"replay:{grid_file(tmp_path)}?delay=0.6", "--executor", "local"]
    argv += ["--storage", f"sqlite:///{tmp_path / 'cli.db'}", "--json"]
    assert main([*argv, "--timeout", "0.3"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["stop_reason"], document["trainings_this_run"]) == ("timeout", 1)
    for bad in ("0", "-5", "nan"):
        assert main([*argv, "--timeout", bad]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "--timeout" in line


@pytest.mark.parametrize("kind", ["relative", None])
def test_a_budget_of_no_budget_kind_is_one_line(kind):
    with pytest.raises(FieldError) as error:
        Budget(kind, 0.03)  # type: ignore[arg-type]
    assert str(error.value) == (
        f"kind: {kind!r} is not a BudgetKind (ABSOLUTE, RELATIVE, MIN_ACCURACY)"
    )
