"""A project copied to another folder (or moved, or its original deleted) uses its own model
folders: the study's records hold the absolute paths the original's trials wrote, and the
search finds each folder by its name in this study's artifacts folder, for its answer, its
report and what it writes into the folders at its end (the table's speeds), never touching the
original's. The tiny random BERT, real trainings (tests/trainers/fixtures.py)."""

import json
import shutil
from pathlib import Path

import pytest
from fixtures import study_text

from autoprumux.cli.main import main
from autoprumux.core.grid import GridPoint
from autoprumux.core.study import load_study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import write_throughput_table
from autoprumux.loop.optuna_store import OptunaStore
from trainers.deploy.model_folder import read_info

SPEED = {(1, 0.0): 100.0, (1, 0.5): 150.0, (2, 0.0): 180.0, (2, 0.5): 400.0}


def table(path: Path, scale: float) -> Path:
    """The tiny grid's throughput table, every row ``scale`` times :data:`SPEED` (the same
    speedups, so the same answer; the figure written into a folder says which run wrote it)."""
    rows = {GridPoint(*p): v * scale for p, v in SPEED.items()}
    return write_throughput_table(ThroughputTable(rows), path)


def search(study: Path, throughput: Path, capsys) -> dict:
    """A search that trains (1, 0) once, in the first run (the cap counts every run's)."""
    argv = ["search", "--study", str(study), "--budget", "0.03", "--max-trials", "1"]
    argv += ["--executor", "local", "--device", "cpu", "--throughput", str(throughput)]
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def recorded_folders(study_path: Path) -> set[str]:
    study = load_study(study_path)
    store = OptunaStore(study.storage_url, study.name, study.grid.grid, study.task)
    try:
        return {r.artifact_path for _, r in store.records() if r.artifact_path}
    finally:
        store.close()


def mtimes(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


@pytest.mark.slow  # three searches of the tiny study, the first training (1, 0): about 6 s
def test_a_copied_project_answers_with_and_writes_into_its_own_model_folders(
    tiny_sources, tmp_path, capsys
):
    original, copy = tmp_path / "original", tmp_path / "copy"
    (original / "studies").mkdir(parents=True)
    (original / "studies" / "tiny.toml").write_text(study_text(*tiny_sources, finetune_steps=20))
    first = search(original / "studies" / "tiny.toml", table(tmp_path / "first.json", 1.0), capsys)
    answer = Path(first["best"]["model_dir"])
    assert first["best"]["model"] == "saved"
    assert answer.parent == original / "studies" / "artifacts" / "tiny"

    shutil.copytree(original, copy, symlinks=True)  # as cp -a: the records name the original
    study = copy / "studies" / "tiny.toml"
    assert str(answer) in recorded_folders(study)
    before = mtimes(original)
    again = search(study, table(tmp_path / "again.json", 2.0), capsys)
    ours = copy / "studies" / "artifacts" / "tiny" / answer.name
    assert again["best"]["model"] == "saved" and again["best"]["model_dir"] == str(ours)
    assert f"its model folder: {ours}" in again["best"]["message"]
    page = Path(again["report"]).read_text()
    assert page.count(f"its model folder: <code>{ours}</code>") == 1
    # the table's speeds went into the copy's folder; the original's files are as they were
    (speed,) = read_info(ours).speeds.values()
    assert speed.throughput == 2.0 * SPEED[again["best"]["n"], again["best"]["sparsity"]]
    assert mtimes(original) == before
    (untouched,) = read_info(answer).speeds.values()
    assert untouched.throughput == speed.throughput / 2.0

    # the original gone: its recorded folder is found in the copy all the same
    shutil.rmtree(original)
    last = search(study, table(tmp_path / "again.json", 2.0), capsys)
    assert last["best"]["model"] == "saved" and last["best"]["model_dir"] == str(ours)
