"""The recommended point's model folder, or the exact command that trains it: built once
(:func:`locate_model`) and said alike by ``search --json``, the text ``search`` prints and the
HTML report's answer box."""

import html
import json
import shlex
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.answer import ModelState, TrainCommand, locate_model
from autoprumux.core.grid import PAPER_GRID, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.records import ResultsTable, TrialRecord, TrialStatus
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import write_results, write_throughput_table
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.testing.synthetic import SyntheticFamily, synthetic_results

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "studies" / "sst2.toml"  # seed 42 (the default); the synthetic rows have seed 1
FAMILY = SyntheticFamily(accuracy_noise=0.0)
POINT = GridPoint(5, 0.65)


def train_command(study="/s/sst2.toml", seed=42, device="auto"):
    return TrainCommand(study_path=study, study_seed=seed, device=device)


def record(point=POINT, artifact=None, seed=42, status=TrialStatus.COMPLETE):
    if status is TrialStatus.FAILED:
        return TrialRecord(
            task="sst2", n=point.n, sparsity=point.sparsity, status=status, reason="diverged"
        )
    return TrialRecord(
        task="sst2",
        n=point.n,
        sparsity=point.sparsity,
        accuracy=0.9,
        throughput=500.0,
        seed=seed,
        artifact_path=artifact,
    )


# -- the command ------------------------------------------------------------------------------


def test_the_train_command_is_exact_and_quoted():
    command = train_command(study="/my studies/it's.toml").for_point(POINT)
    assert shlex.split(command) == [
        "autoprumux",
        "train",
        "--study",
        "/my studies/it's.toml",
        "--n",
        "5",
        "--sparsity",
        "0.65",
    ]


def test_seed_only_when_it_differs_and_device_only_when_not_auto():
    plain = train_command()
    assert "--seed" not in plain.for_point(POINT, seed=42)
    assert shlex.split(plain.for_point(POINT, seed=7))[-2:] == ["--seed", "7"]
    assert shlex.split(train_command(device="cuda:1").for_point(POINT))[-2:] == [
        "--device",
        "cuda:1",
    ]


def test_the_stored_form_round_trips():
    command = train_command(device="cpu")
    assert TrainCommand.from_dict(command.to_dict()) == command
    assert TrainCommand.from_dict(None) is None  # a study stored before it was recorded
    assert TrainCommand.from_dict({"study": "/s.toml"}) is None


# -- which model ------------------------------------------------------------------------------


def test_a_trained_point_gives_its_trials_folder(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    records = [record(artifact=str(old)), record(artifact=str(new)), record(GridPoint(1, 0.0))]
    pointer = locate_model(POINT, records, train_command())
    assert pointer.state is ModelState.SAVED
    assert pointer.model_dir == str(new) and pointer.train_command is None  # the newest
    assert pointer.message == f"(5, 0.65) was trained; its model folder: {new}"
    shutil.rmtree(new)  # the newest is gone: the older one is still that point's model
    assert locate_model(POINT, records, train_command()).model_dir == str(old)


def test_a_folder_no_longer_on_disk_is_said_not_printed_as_the_answer(tmp_path):
    gone = str(tmp_path / "deleted")
    pointer = locate_model(POINT, [record(artifact=gone, seed=3)], train_command())
    assert pointer.state is ModelState.FOLDER_GONE and pointer.model_dir is None
    assert pointer.to_dict()["model_dir"] is None
    # train it again with the seed it was trained with (not the study's)
    assert shlex.split(pointer.train_command)[-2:] == ["--seed", "3"]
    assert pointer.message == (
        f"(5, 0.65) was trained, but its model folder {gone} is not on this "
        "machine (deleted, or on the "
        "machine that trained it); train it again "
        f"with: autoprumux train --study /s/sst2.toml --n 5 --sparsity 0.65 --seed 3"
    )


def test_a_trained_row_without_a_folder_and_a_predicted_point():
    not_saved = locate_model(POINT, [record()], train_command())
    assert not_saved.state is ModelState.NOT_SAVED
    assert not_saved.train_command == "autoprumux train --study /s/sst2.toml --n 5 --sparsity 0.65"
    failed_only = [record(status=TrialStatus.FAILED)]  # a failure trained no model
    predicted = locate_model(POINT, failed_only, train_command())
    assert predicted.state is ModelState.PREDICTED
    assert predicted.to_dict() == {
        "n": 5,
        "sparsity": 0.65,
        "precision": "fp32",
        "model": "predicted",
        "model_dir": None,
        "train_command": "autoprumux train --study /s/sst2.toml --n 5 --sparsity 0.65",
        "serve_command": None,
        "message": "(5, 0.65) is predicted, not trained; train it with: autoprumux train "
        "--study /s/sst2.toml --n 5 --sparsity 0.65",
    }


def test_a_point_whose_training_stopped_early_is_said_to_be_one_with_its_bound():
    """A training stopped early (under an earlier run's threshold) left no model; the figure
    the answer ranks is predicted, under the bound its stop recorded: it was said to be a
    point never trained."""
    stopped = TrialRecord(
        task="sst2",
        n=POINT.n,
        sparsity=POINT.sparsity,
        status=TrialStatus.STOPPED,
        seed=7,
        stop_step=300,
        stop_accuracy=0.79,
        stop_margin=0.01,
    )
    pointer = locate_model(POINT, [stopped], train_command())
    assert (pointer.state, pointer.bound) == (ModelState.STOPPED_EARLY, pytest.approx(0.8))
    assert pointer.to_dict()["model"] == "stopped_early"
    assert pointer.message == (  # retrained with the stopped training's seed
        "(5, 0.65) was trained but stopped early: its dev figure is at most 0.8000, and the "
        "figure above is predicted; train it in full with: autoprumux train --study "
        "/s/sst2.toml --n 5 --sparsity 0.65 --seed 7"
    )
    # a complete training of the point is its model, whatever stopped before
    assert locate_model(POINT, [stopped, record()], train_command()).state is not (
        ModelState.STOPPED_EARLY
    )


def test_without_a_study_file_there_is_no_command_to_print():
    pointer = locate_model(POINT, [], None)  # a report of a results file
    assert pointer.train_command is None
    assert pointer.message == (
        "(5, 0.65) is predicted, not trained; no study file is known here to train it with"
    )


# -- search --json, its text and its report say the same -------------------------------------


@pytest.fixture
def replay(tmp_path):
    """The synthetic grid as a replay file, each row with a model folder on disk, and its
    throughputs as a throughput table file (so the search and its report rank alike)."""
    results = synthetic_results(family=FAMILY, seed=1)
    rows = []
    for r in results.records:
        folder = tmp_path / "models" / f"n{r.n}-s{r.sparsity:g}"
        folder.mkdir(parents=True)
        rows.append(replace(r, artifact_path=str(folder)))
    grid = write_results(ResultsTable(tuple(rows)), tmp_path / "grid.csv")
    speed = {p: 1000 * FAMILY.expected_speedup(p) for p in PAPER_GRID}
    table = write_throughput_table(ThroughputTable(speed), tmp_path / "throughput.csv")
    return grid, table


def search(tmp_path, replay, capsys, *extra):
    grid, table = replay
    code = main(
        [
            "search",
            "--study",
            str(STUDY),
            "--budget",
            "0.03",
            "--trainer",
            f"replay:{grid}",
            "--throughput",
            str(table),
            "--storage",
            f"sqlite:///{tmp_path / 'search.db'}",
            "--executor",
            "local",
            *extra,
        ]
    )
    assert code == 0
    return capsys.readouterr().out


def recorded(tmp_path, point):
    """The study's complete records of ``point``, as the search stored them."""
    store = OptunaStore(f"sqlite:///{tmp_path / 'search.db'}", "sst2", PAPER_GRID, "sst2")
    return [r for _, r in store.records() if r.point == point and r.status is TrialStatus.COMPLETE]


def test_a_trained_top1_names_its_model_folder_everywhere(tmp_path, replay, capsys):
    document = json.loads(search(tmp_path, replay, capsys, "--json"))
    best = document["best"]
    point = GridPoint(best["n"], best["sparsity"])
    top = document["decision"]["recommendations"][0]
    assert (top["n"], top["sparsity"], top["accuracy_source"]) == (2, 0.85, "measured")
    assert point == GridPoint(2, 0.85) and best["model"] == "saved"
    (trial,) = recorded(tmp_path, point)
    assert best["model_dir"] == trial.artifact_path == str(tmp_path / "models" / "n2-s0.85")
    assert best["train_command"] is None
    # the printed text, on a rerun that trains nothing, says the same
    text = search(tmp_path, replay, capsys)
    assert f"answer: (2, 0.85) was trained; its model folder: {trial.artifact_path}\n" in text
    page = Path(document["report"]).read_text()
    assert (
        "Deploy <b>(2, 0.85)</b>: 9.90x the throughput of (1, 0) at measured accuracy 0.9017"
        in page
    )
    assert f"its model folder: <code>{html.escape(trial.artifact_path)}</code>" in page

    # the folder deleted since: said so, with the command that trains it again (seed 1 is the
    # replayed row's, not the study's 42)
    shutil.rmtree(trial.artifact_path)
    again = json.loads(search(tmp_path, replay, capsys, "--json"))["best"]
    assert again["model"] == "folder_gone" and again["model_dir"] is None
    assert shlex.split(again["train_command"]) == [
        "autoprumux",
        "train",
        "--study",
        str(STUDY.resolve()),
        "--n",
        "2",
        "--sparsity",
        "0.85",
        "--seed",
        "1",
    ]
    assert f"its model folder {trial.artifact_path} is not on this machine" in again["message"]


def test_a_predicted_top1_gives_the_command_that_trains_it(tmp_path, replay, capsys):
    out = search(tmp_path, replay, capsys, "--json", "--max-trials", "3", "--device", "cpu")
    document = json.loads(out)
    best = document["best"]
    top = document["decision"]["recommendations"][0]
    assert (top["n"], top["sparsity"], top["accuracy_source"]) == (2, 0.0, "interpolated")
    assert best["model"] == "predicted" and best["model_dir"] is None
    assert recorded(tmp_path, GridPoint(2, 0.0)) == []
    command = best["train_command"]
    assert shlex.split(command) == [
        "autoprumux",
        "train",
        "--study",
        str(STUDY.resolve()),  # the study file the search used
        "--n",
        "2",
        "--sparsity",
        "0.0",
        "--device",
        "cpu",  # the search's --device
    ]
    text = search(tmp_path, replay, capsys, "--max-trials", "3", "--device", "cpu")
    assert f"answer: (2, 0) is predicted, not trained; train it with: {command}\n" in text
    page = Path(document["report"]).read_text()
    assert "Deploy <b>(2, 0)</b>: 1.99x the throughput of (1, 0) at predicted accuracy" in page
    assert f"train it with: <code>{html.escape(command)}</code>" in page


def test_the_search_text_names_both_throughput_sources(tmp_path, replay, capsys):
    text = search(tmp_path, replay, capsys)
    _, table = replay
    assert (
        f"throughput/s and speedup: the throughput table {table}; measured/s: timed inside each "
        "trial\n" in text
    )


def test_an_int8_answer_is_its_trained_models_folder_and_the_command_that_writes_its_file(
    tmp_path,
):
    int8 = POINT.served(Precision.INT8)
    saved = locate_model(int8, [record(artifact=str(tmp_path))], train_command())
    assert saved.state is ModelState.SAVED and saved.model_dir == str(tmp_path)
    command = (
        f"autoprumux export --model {tmp_path} --format onnx --precision int8 "
        "--out model-n5-s0.65-int8.onnx"
    )
    assert saved.to_dict()["serve_command"] == command
    assert saved.message == f"(5, 0.65, int8) was trained; serve it in int8 with: {command}"
    untrained = locate_model(int8, [], train_command())
    assert untrained.state is ModelState.PREDICTED and untrained.serve_command is None
    assert untrained.train_command == "autoprumux train --study /s/sst2.toml --n 5 --sparsity 0.65"
