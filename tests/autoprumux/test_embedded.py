"""The embedded default: the SST-2 copy inside autoprumux, ``package:`` paths, what the wheel
carries, and how an installed autoprumux finds its studies without writing into the package
(tests/install_anywhere.sh does the same with a real wheel in a fresh virtualenv)."""

import fnmatch
import hashlib
import lzma
import shutil
import tomllib
from pathlib import Path

import pytest

from autoprumux.cli import default_study
from autoprumux.cli.default_study import default_study_path
from autoprumux.cli.main import main
from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.package_paths import package_path
from autoprumux.core.study import load_study
from autoprumux.embedded import copy_studies

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_GLUE = ROOT / "autoprumux" / "embedded" / "glue"
# Real GLUE SST-2, beside the project (../shared/data/glue); CI lays shared/ out the same way.
SHARED_GLUE = ROOT.parent / "shared" / "data" / "glue"
SHA256 = {  # of the uncompressed files, as glue/README.md records them
    "train.tsv": "c75796b01672b41c38cd4b35f4ff1ade88ca79b7577f3926e01ff69739d85ec9",
    "dev.tsv": "f7271f7a919ea884ca8563e13ed03028aa44296d1f738c003af3142b9a2188f8",
}


@pytest.mark.parametrize("name", ["train.tsv", "dev.tsv"])
def test_the_shipped_sst2_is_the_glue_files_byte_for_byte(name):
    data = lzma.decompress((EMBEDDED_GLUE / "SST-2" / f"{name}.xz").read_bytes())
    assert data == (SHARED_GLUE / "SST-2" / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA256[name]
    assert SHA256[name] in (EMBEDDED_GLUE / "README.md").read_text()


def test_package_paths_name_a_folder_inside_an_installed_package(tmp_path):
    assert package_path("package:autoprumux/embedded/glue") == EMBEDDED_GLUE
    for missing in ("package:no_such_module/glue", "package:no_such.module/x", "package:"):
        with pytest.raises(AutoPruMuxError, match="no installed package"):
            package_path(missing)
    # the tiny study's data, from its file in the repository or from a copy anywhere else
    study = load_study(ROOT / "studies" / "sst2-tiny.toml")
    assert study.resolve(study.data.glue_dir) == EMBEDDED_GLUE
    shutil.copy(ROOT / "studies" / "sst2-tiny.toml", tmp_path / "copy.toml")
    copy = load_study(tmp_path / "copy.toml")
    assert copy.resolve(copy.data.glue_dir) == EMBEDDED_GLUE and copy.recipe == study.recipe


def test_every_package_is_listed_for_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    in_tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("autoprumux", "trainers")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == in_tree | {"autoprumux.embedded.studies"}
    assert setuptools["package-dir"] == {"autoprumux.embedded.studies": "studies"}
    data = setuptools["package-data"]
    shipped = [*(EMBEDDED_GLUE / "SST-2").iterdir(), EMBEDDED_GLUE / "README.md"]
    for file in shipped:
        name = file.relative_to(EMBEDDED_GLUE.parent).as_posix()
        assert any(fnmatch.fnmatch(name, g) for g in data["autoprumux.embedded"]), name
    # the bare command's study, its throughput table, its replay table and the README's examples
    for name in (
        "sst2-tiny.toml",
        "sst2.toml",
        "throughput/sst2-tiny-cpu-float32.json",
        "results/sst2-tiny-grid.json",
        "results/synthetic-sst2.csv",
    ):
        assert (ROOT / "studies" / name).is_file(), name
        assert any(fnmatch.fnmatch(name, g) for g in data["autoprumux.embedded.studies"]), name
    for generated in ("sst2-tiny.db", "artifacts/sst2-tiny/x/model.safetensors"):
        assert not any(fnmatch.fnmatch(generated, g) for g in data["autoprumux.embedded.studies"])


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """An installed wheel's layout: no repository checkout, the studies inside the package (a
    copy of what the wheel carries), and an empty current folder."""
    packaged = tmp_path / "site-packages" / "autoprumux" / "embedded" / "studies"
    for name in ("sst2-tiny.toml", "sst2.toml", "results/sst2-tiny-grid.json"):
        (packaged / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "studies" / name, packaged / name)
    monkeypatch.setattr(default_study, "checkout_studies", lambda: None)
    monkeypatch.setattr(default_study, "packaged_studies", lambda: packaged)
    monkeypatch.setattr(default_study, "cuda_available", lambda: False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return packaged, work


def test_an_installed_autoprumux_copies_its_studies_into_the_current_folder(installed):
    packaged, work = installed
    with pytest.raises(FieldError, match=r"studies/sst2-tiny.toml does not exist \(autoprumux"):
        default_study_path("sst2", gpu=False)  # the dashboard: it copies nothing
    (work / "studies" / "results").mkdir(parents=True)
    (work / "studies" / "results" / "sst2-tiny-grid.json").write_text("mine")
    lines = []
    path = default_study_path("sst2", gpu=False, echo=lines.append, copy=True)
    assert path == Path("studies") / "sst2-tiny.toml" and path.is_file()
    assert (work / "studies" / "sst2.toml").is_file()
    assert (work / "studies" / "results" / "sst2-tiny-grid.json").read_text() == "mine"  # kept
    assert lines == [
        f"copied the packaged studies into {work / 'studies'} (2 files): the study's database, "
        "artifacts and tables are kept there"
    ]
    assert default_study_path("sst2", gpu=True, echo=lines.append, copy=True) == Path(
        "studies/sst2.toml"
    )
    assert len(lines) == 1  # found in ./studies: nothing copied again
    assert copy_studies(packaged, work / "studies") == []


def test_without_a_checkout_or_packaged_studies_the_error_names_the_file(installed, monkeypatch):
    monkeypatch.setattr(default_study, "packaged_studies", lambda: None)
    with pytest.raises(FieldError, match=r"--study: no study given and studies/sst2-tiny.toml is"):
        default_study_path("sst2", gpu=False, copy=True)


@pytest.mark.parametrize(
    ("gpus", "line"),
    [
        (None, "study: studies/sst2-tiny.toml (no GPU here: the embedded default)"),
        (8.0, "study: studies/sst2.toml (--gpus 8: the study sized for GPUs)"),
    ],
)
def test_the_default_study_line_says_why_it_was_chosen(monkeypatch, gpus, line):
    """Without CUDA, --gpus (a cluster's GPUs) picks the GPU study: not 'a GPU is present'."""
    monkeypatch.setattr(default_study, "cuda_available", lambda: False)
    said: list[str] = []
    default_study.find_default_study("sst2", gpus, said.append, copy=False)
    assert said == [line]  # run from the checkout: its studies/


def test_the_bare_search_from_an_empty_folder_writes_only_there(installed, capsys):
    packaged, work = installed
    before = sorted(p for p in packaged.rglob("*"))
    replay = "replay:studies/results/sst2-tiny-grid.json"  # a table the copy brings along
    argv = ["search", "--task", "sst2", "--budget", "0.03", "--executor", "local"]
    assert main([*argv, "--trainer", replay]) == 0
    err = capsys.readouterr().err
    assert f"copied the packaged studies into {work / 'studies'} (3 files)" in err
    assert "study: studies/sst2-tiny.toml (no GPU here: the embedded default)" in err
    assert (work / "studies" / "sst2-tiny.db").is_file()
    assert (work / "reports" / "sst2-tiny.html").is_file()
    assert sorted(p for p in packaged.rglob("*")) == before  # nothing written into the package
