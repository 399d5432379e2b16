"""Where a recorded model folder is now (:func:`folder_now`, :func:`locate_model`): a study's
records hold the absolute paths its trials wrote; a copied or moved project finds each folder
by its name (its content key) in its own artifacts folder, before the recorded path, and a
folder of no study's layout stays where it was recorded. tests/trainers/test_copied_project.py
runs searches on a copied project."""

import shlex
from pathlib import Path

from autoprumux.core.answer import ModelState, TrainCommand, folder_now, locate_model
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import TrialRecord

POINT = GridPoint(2, 0.5)
NAME = "trial-n2-s0.5-0123456789"


def train(artifacts: Path | None) -> TrainCommand:
    folder = None if artifacts is None else str(artifacts)
    return TrainCommand(study_path="/p/studies/s.toml", study_seed=0, artifacts_folder=folder)


def record(path: str | None, seed: int = 0) -> TrialRecord:
    return TrialRecord(
        task="sst2",
        n=2,
        sparsity=0.5,
        accuracy=0.9,
        throughput=500.0,
        seed=seed,
        artifact_path=path,
    )


def project(root: Path) -> Path:
    """``root``/studies/artifacts/s: the artifacts folder of study ``s`` in a project."""
    folder = root / "studies" / "artifacts" / "s"
    folder.mkdir(parents=True)
    return folder


def test_a_copy_uses_its_own_folder_even_while_the_original_exists(tmp_path):
    original, copy = project(tmp_path / "original"), project(tmp_path / "copy")
    (original / NAME).mkdir()
    (copy / NAME).mkdir()
    recorded = str(original / NAME)
    pointer = locate_model(POINT, [record(recorded)], train(copy))
    assert pointer.state is ModelState.SAVED and pointer.model_dir == str(copy / NAME)
    assert pointer.message == f"(2, 0.5) was trained; its model folder: {copy / NAME}"


def test_the_original_gone_its_folder_is_found_in_the_copy(tmp_path):
    copy = project(tmp_path / "copy")
    (copy / NAME).mkdir()
    gone = str(tmp_path / "deleted" / "studies" / "artifacts" / "s" / NAME)
    assert locate_model(POINT, [record(gone)], train(copy)).model_dir == str(copy / NAME)


def test_a_folder_in_neither_place_is_gone_as_recorded(tmp_path):
    copy = project(tmp_path / "copy")
    gone = str(tmp_path / "deleted" / "studies" / "artifacts" / "s" / NAME)
    pointer = locate_model(POINT, [record(gone, seed=3)], train(copy))
    assert pointer.state is ModelState.FOLDER_GONE and pointer.gone_dir == gone
    assert shlex.split(pointer.train_command or "")[-2:] == ["--seed", "3"]


def test_only_a_folder_of_this_studys_layout_is_looked_for_in_its_artifacts(tmp_path):
    copy = project(tmp_path / "copy")
    (copy / NAME).mkdir()
    (copy / "data").mkdir()
    exists = lambda path: Path(path).exists()  # noqa: E731
    # another study's artifacts, and a results file's folder of any name, stay as recorded
    other = str(tmp_path / "p" / "studies" / "artifacts" / "other" / NAME)
    assert folder_now(other, str(copy), exists) == other
    assert folder_now("/models/data", str(copy), exists) == "/models/data"
    # an older release's stored command names no artifacts folder: the recorded path
    recorded = str(tmp_path / "p" / "studies" / "artifacts" / "s" / NAME)
    assert folder_now(recorded, None, exists) == recorded
    assert locate_model(POINT, [record(recorded)], train(None)).state is ModelState.FOLDER_GONE


def test_an_old_studys_absolute_path_outside_a_copy_still_serves(tmp_path):
    elsewhere = tmp_path / "models" / "best"  # a folder of no study's layout, on disk
    elsewhere.mkdir(parents=True)
    pointer = locate_model(POINT, [record(str(elsewhere))], train(project(tmp_path / "copy")))
    assert pointer.state is ModelState.SAVED and pointer.model_dir == str(elsewhere)


def test_the_stored_command_keeps_the_artifacts_folder():
    command = train(Path("/p/studies/artifacts/s"))
    assert command.to_dict() == {
        "study": "/p/studies/s.toml",
        "seed": 0,
        "device": "auto",
        "artifacts": "/p/studies/artifacts/s",
    }
    assert TrainCommand.from_dict(command.to_dict()) == command
    older = {"study": "/p/studies/s.toml", "seed": 0, "device": "auto"}
    assert TrainCommand.from_dict(older) == train(None)
