"""Safe names and writes: study names that cannot leave their folder, outputs refused before the
work, and files written by rename, so a kill or a full disk never leaves half of one."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.study import load_study
from autoprumux.files.atomic import check_output, explained_write_errors
from autoprumux.files.results_io import read_table, write_table
from autoprumux.report.sources import default_report_path, file_name, search_report_path
from trainers.trial.artifacts import read_json, write_json

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "studies" / "results" / "synthetic-sst2.csv"
PREVIOUS = "<!DOCTYPE html>\n<p>the previous report</p></html>\n"


@pytest.mark.parametrize(
    "name",
    ["../../../x", "a/b", "/abs", "..", ".hidden", "-flag", "a b", "x" * 101, "a\\b", "é"],
)
def test_unsafe_study_names_are_refused_naming_the_field(tmp_path, name):
    path = tmp_path / "s.toml"
    path.write_text(f'[study]\ntask = "sst2"\nname = {json.dumps(name)}\n')
    with pytest.raises(FieldError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: study.name: {name!r} is not allowed; use 1 to")


@pytest.mark.parametrize("name", ["sst2-tiny", "s.v2_1", "X", "a" * 100])
def test_safe_study_names_name_files_inside_the_project(tmp_path, name):
    path = tmp_path / "studies" / "s.toml"
    path.parent.mkdir()
    path.write_text(f'[study]\ntask = "sst2"\nname = "{name}"\n')
    study = load_study(path)
    assert study.storage_url == f"sqlite:///{tmp_path / 'studies' / name}.db"
    assert search_report_path(study) == tmp_path / "reports" / f"{name}.html"
    assert study.artifacts_folder.parent == tmp_path / "studies" / "artifacts"


def test_studies_of_one_name_in_two_folders_write_a_report_each(tmp_path):
    """A folder named ``studies`` reports beside itself (the project's reports/); any other
    folder in itself, as it holds the study's database: two experiments' folders of a study
    named alike wrote one shared report beside them, and a study file in a home folder wrote
    into its parent."""
    paths = {}
    for folder in ("studies", "exp-a", "exp-b", "studies/exp-c"):
        path = tmp_path / folder / "reviews.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('[study]\ntask = "sst2"\n')
        paths[folder] = search_report_path(load_study(path))
    assert paths == {
        "studies": tmp_path / "reports" / "reviews.html",
        "exp-a": tmp_path / "exp-a" / "reports" / "reviews.html",
        "exp-b": tmp_path / "exp-b" / "reports" / "reviews.html",
        "studies/exp-c": tmp_path / "studies" / "exp-c" / "reports" / "reviews.html",
    }


def test_a_study_named_by_a_dotted_file_name_is_refused(tmp_path):
    path = tmp_path / "...toml"  # stem ".."
    path.write_text('[study]\ntask = "sst2"\n')
    with pytest.raises(FieldError, match=r"study.name: '\.\.' is not allowed"):
        load_study(path)


@pytest.mark.parametrize(
    ("title", "expected"),
    [("../../x", "x"), ("a/b c", "a-b-c"), ("..", "report"), (".hidden", "hidden"), ("s", "s")],
)
def test_report_titles_become_one_file_name(title, expected):
    assert file_name(title) == expected
    assert default_report_path(title) == Path("reports") / f"{expected}.html"


def test_check_output_refuses_what_cannot_be_written(tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = {
        tmp_path: "is a folder",
        Path("/dev/null"): "is not a regular file",
        tmp_path / "afile" / "r.html": "afile is not a folder",
        tmp_path / "afile" / "deeper" / "r.html": "afile is not a folder",
    }
    for path, message in cases.items():
        with pytest.raises(FieldError) as err:
            check_output(path, "--out")
        assert str(err.value).startswith(f"--out: {path}") and message in str(err.value)
    fine = tmp_path / "new" / "folders" / "r.html"
    assert check_output(fine, "--out") == fine
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_check_output_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(FieldError, match="is not writable"):
        check_output(locked / "r.html", "--out")


def test_a_failed_write_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    import pandas as pd

    path = tmp_path / "t.csv"
    write_table([{"n": 1}], path, ["n"])
    before = path.read_bytes()

    def full_disk(self, target, *args, **kwargs):
        Path(target).write_text("n\n1")  # half a table, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(DataError) as err:
        write_table([{"n": 2}], path, ["n"])
    assert str(err.value) == f"{path}: cannot be written: No space left on device"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]  # no temporary file left


def test_explained_write_errors_keeps_other_errors():
    with pytest.raises(ValueError), explained_write_errors("x"):
        raise ValueError("a bug keeps its traceback")


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_tables_are_replaced_whole(tmp_path, suffix):
    path = tmp_path / "sub" / f"t{suffix}"
    write_table([{"n": 1, "sparsity": 0.0}], path, ["n", "sparsity"], {"fingerprint": {"a": 1}})
    write_table([{"n": 2, "sparsity": 0.5}], path, ["n", "sparsity"], {"fingerprint": {"a": 2}})
    rows, _ = read_table(path, required=("n",))
    assert [int(float(r["n"])) for r in rows] == [2]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_artifact_json_is_written_by_rename(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_json(path, {"a": 1})
    replaced = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(Path(b)), real(a, b)))
    write_json(path, {"a": 2})
    assert read_json(path) == {"a": 2} and replaced == [path]
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def _report_process(out: Path) -> subprocess.Popen:
    command = ["report", "--results", str(SYNTHETIC), "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-m", "autoprumux", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _whole(out: Path) -> str:
    """'previous' or 'new' (a complete report); fails on anything else (empty, cut short)."""
    text = out.read_text(encoding="utf-8")
    if text == PREVIOUS:
        return "previous"
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n"), (
        f"a kill left {out} with {len(text)} characters, neither the previous report nor a "
        "complete new one"
    )
    return "new"


def test_a_report_killed_while_written_leaves_the_previous_one_whole(tmp_path):
    """SIGKILL a real ``autoprumux report`` at the first sign of writing: its temporary file
    appearing, or the report itself changing (how a non-atomic write shows)."""
    out = tmp_path / "reports" / "r.html"
    out.parent.mkdir()
    out.write_text(PREVIOUS)
    process = _report_process(out)
    temporary = f".r.{process.pid}.tmp.html"
    caught = False
    while process.poll() is None:
        if temporary in os.listdir(out.parent) or out.stat().st_size != len(PREVIOUS):
            process.send_signal(signal.SIGKILL)
            caught = True
            break
        time.sleep(0.0002)
    process.wait()
    assert _whole(out) == ("previous" if caught else "new")
    assert caught, "the report finished before its write was seen; nothing was tested"


def test_reports_killed_at_random_instants_are_never_half_written(tmp_path):
    out = tmp_path / "r.html"
    out.write_text(PREVIOUS)
    started = time.perf_counter()
    assert _report_process(out).wait() == 0
    duration = time.perf_counter() - started
    assert _whole(out) == "new"
    chance = random.Random(18)
    for _ in range(4):
        out.write_text(PREVIOUS)
        process = _report_process(out)
        time.sleep(chance.uniform(0.5, 1.1) * duration)  # most land late: rendering, writing
        process.send_signal(signal.SIGKILL)
        process.wait()
        _whole(out)
