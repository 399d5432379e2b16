"""What ``autoprumux export`` reads: a model folder (an exported file is refused before any
work), and for ``--precision int8`` a study's data (``--study``, else the study file the folder
records), on a model trained by a real (tiny) trial."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures import one_line_error

from autoprumux.cli.main import main
from autoprumux.core.study import load_study
from trainers.deploy.model_folder import INFO_FILE, read_info
from trainers.trial.run import TrialSpec, run_trial


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sources):
    """The tiny study's (1, 0) folder, its study file and a QNLI study of the same data."""
    from fixtures import study_text

    model, glue = tiny_sources
    root = tmp_path_factory.mktemp("export-sources")
    (root / "sst2.toml").write_text(study_text(model, glue))
    (root / "qnli.toml").write_text(study_text(model, glue).replace('"sst2"', '"qnli"'))
    result = run_trial(TrialSpec(study=load_study(root / "sst2.toml"), n=1, sparsity=0.0))
    return SimpleNamespace(folder=Path(result.artifact_path), root=root)


def _moved(trained, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the model folder whose recorded study file is gone, and the study moved."""
    folder = tmp_path / "model"
    shutil.copytree(trained.folder, folder)
    study = tmp_path / "moved" / "sst2.toml"
    study.parent.mkdir()
    shutil.copyfile(trained.root / "sst2.toml", study)
    info = json.loads((folder / INFO_FILE).read_text())
    info["study_file"] = str(tmp_path / "gone" / "sst2.toml")
    (folder / INFO_FILE).write_text(json.dumps(info))
    return folder, study


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "t10.onnx"), ("torchscript", "t.pt")])
def test_an_exported_file_as_model_is_one_line_before_any_work(
    trained, tmp_path, capsys, fmt, name
):
    """``--model t10.onnx`` was an AssertionError traceback after loading the file."""
    exported = tmp_path / name
    argv = ["export", "--model", str(trained.folder), "--format", "torchscript"]
    assert main([*argv, "--out", str(tmp_path / "first.pt")]) == 0
    (tmp_path / "first.pt").rename(exported)
    capsys.readouterr()
    err = one_line_error(
        capsys, ["export", "--model", str(exported), "--format", fmt, "--out", str(tmp_path / "x")]
    )
    assert err == (
        f"autoprumux: error: --model: {exported} is a file; export reads a model folder (a "
        "trial's, holding autoprumux.json), not a file `autoprumux export` wrote"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_an_fp32_export_refuses_study(trained, tmp_path, capsys):
    argv = ["export", "--model", str(trained.folder), "--format", "onnx"]
    study = str(trained.root / "sst2.toml")
    one_line_error(
        capsys,
        [*argv, "--out", str(tmp_path / "m.onnx"), "--study", study],
        "--study: is read with --precision int8 alone",
    )
    assert not list(tmp_path.iterdir())


def test_int8_of_a_moved_study_names_study_and_reads_the_one_given(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    folder, study = _moved(trained, tmp_path)
    argv = ["export", "--model", str(folder), "--format", "onnx", "--precision", "int8"]
    out = ["--out", str(tmp_path / "int8.onnx")]
    err = one_line_error(capsys, [*argv, *out])
    assert err == (
        f"autoprumux: error: {folder / INFO_FILE}: field 'study_file': its study file "
        f"{tmp_path / 'gone' / 'sst2.toml'} is not there; an int8 export is calibrated and "
        "scored on its study's data: give the study (moved, or a copy) with --study FILE"
    )
    assert main([*argv, *out, "--study", str(study), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["recorded"] is True and document["dev"]["examples"] == 64
    assert read_info(folder).precisions["int8"].dev == document["dev"]["int8"]


def test_int8_refuses_a_study_of_other_data_naming_study(trained, tmp_path, capsys):
    folder, _ = _moved(trained, tmp_path)
    argv = ["export", "--model", str(folder), "--format", "onnx", "--precision", "int8"]
    out = ["--out", str(tmp_path / "int8.onnx")]
    qnli = trained.root / "qnli.toml"
    err = one_line_error(capsys, [*argv, *out, "--study", str(qnli)])
    assert err == (
        f"autoprumux: error: --study: {qnli} is a study of task 'qnli' (text question, "
        "sentence, label label); the model was trained on task 'sst2' (text sentence, label "
        "label): give its own study with --study FILE"
    )
    missing = tmp_path / "none.toml"
    err = one_line_error(capsys, [*argv, *out, "--study", str(missing)])
    assert err == f"autoprumux: error: --study: {missing}: no such study file"
    assert not (tmp_path / "int8.onnx").exists()


def test_int8_into_a_read_only_folder_does_not_say_it_recorded_there(
    trained, tmp_path, capsys, monkeypatch
):
    """The last line said "recorded in the model folder" after saying it was not."""
    pytest.importorskip("onnxruntime")
    import trainers.deploy.model_folder as model_folder

    def read_only(path, text):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(model_folder, "write_text_atomic", read_only)
    argv = ["export", "--model", str(trained.folder), "--format", "onnx", "--precision", "int8"]
    assert main([*argv, "--out", str(tmp_path / "int8.onnx")]) == 0
    captured = capsys.readouterr()
    assert "int8: the figures are not recorded in the model folder (" in captured.err
    assert "recorded in the model folder" not in captured.out
    assert (
        "examples, recorded in the file only (the model folder could not be written, above); "
        in captured.out
    )
