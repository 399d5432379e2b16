"""A storage that is malformed, missing or not an Optuna one: one line, nothing created or
written. ``search`` may create a new SQLite file; ``report`` and ``dashboard`` never do.
(PostgreSQL's own cases, a wrong password and a dead server among them: test_postgres.py.)"""

import sqlite3
from pathlib import Path

import optuna
import pytest
from replay_search import replay_search_argv

from autoprumux.cli.main import main
from autoprumux.core.grid import PAPER_GRID
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.storage_check import StorageError, check_existing_storage
from autoprumux.loop.trial_sources import ReplaySpec

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "studies" / "results" / "synthetic-sst2.csv"


def another_applications_db(path):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ada')")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: "nonsense", "cannot be opened: not a database URL"),
        (lambda d: "notaurl://x", "cannot be opened: unknown database kind 'notaurl'"),
        (lambda d: f"sqlite:///{d / 'typo.db'}", "no such file"),
        (lambda d: f"sqlite:///{d / 'no' / 'such' / 'x.db'}", "no such file"),
        (lambda d: "sqlite://", "in-memory SQLite database: it holds no study"),
        (lambda d: f"sqlite:///{d}", "is a folder, not a SQLite file"),
        (
            lambda d: (
                (d / "junk.db").write_bytes(b"not sqlite" * 20) and f"sqlite:///{d / 'junk.db'}"
            ),
            "cannot be opened: file is not a database",
        ),
        (
            lambda d: f"sqlite:///{another_applications_db(d / 'app.db')}",
            "is not an Optuna storage: it holds other tables (users)",
        ),
        (lambda d: (d / "empty.db").touch() or f"sqlite:///{d / 'empty.db'}", "holds no study yet"),
        (
            lambda d: (
                optuna.storages.RDBStorage(f"sqlite:///{d / 'o.db'}") and f"sqlite:///{d / 'o.db'}"
            ),
            "holds no study yet",
        ),
    ],
)
def test_an_unusable_storage_is_refused_in_one_line_and_left_as_it_was(tmp_path, make, message):
    url = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(StorageError, match="^--storage ") as caught:
        check_existing_storage(url)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_searchs_storage_passes(storage_url):
    OptunaStore(storage_url, "s", PAPER_GRID, "sst2")
    check_existing_storage(storage_url)


def search(tmp_path, storage, *extra):
    (tmp_path / "sst2.toml").write_text((ROOT / "studies" / "sst2.toml").read_text())
    return main(replay_search_argv(tmp_path / "sst2.toml", storage, f"replay:{TABLE}", *extra))


def test_search_refuses_another_applications_database_without_writing_it(tmp_path, capsys):
    path = another_applications_db(tmp_path / "app.db")
    before = path.read_bytes()
    assert search(tmp_path, f"sqlite:///{path}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an Optuna storage: it holds other tables (users)" in err[0]
    assert path.read_bytes() == before
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["users"]


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("sqlite:////no/such/folder/s.db", "the folder /no/such/folder does not exist"),
        ("notaurl://x", "cannot be opened: unknown database kind"),
    ],
)
def test_search_refuses_a_storage_it_cannot_create_in_one_line(tmp_path, capsys, storage, message):
    assert search(tmp_path, storage) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst2.toml"]


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["search", "dry-run"])
def test_a_new_sqlite_file_in_a_folder_it_cannot_write_is_refused(
    tmp_path, capsys, monkeypatch, dry_run
):
    """A read-only mount (root writes through permission bits, so the folder's access is
    what the test makes unwritable): the dry run passed, and the search refused it only when
    SQLite opened it."""
    import autoprumux.loop.storage_check as storage_check

    folder = tmp_path / "read-only"
    folder.mkdir()
    real = storage_check.os.access
    monkeypatch.setattr(
        storage_check.os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode)
    )
    assert search(tmp_path, f"sqlite:///{folder / 's.db'}", *dry_run) == 2
    assert capsys.readouterr().err == (
        f"autoprumux: error: --storage 'sqlite:///{folder / 's.db'}' cannot be opened: the "
        f"folder {folder} cannot be written\n"
    )
    assert list(folder.iterdir()) == []


def test_search_creates_a_new_sqlite_file(tmp_path):
    assert search(tmp_path, f"sqlite:///{tmp_path / 'new.db'}", "--max-trials", "1") == 0
    check_existing_storage(f"sqlite:///{tmp_path / 'new.db'}")


@pytest.mark.parametrize(
    ("spec", "path", "delay"),
    [("replay:a.csv", "a.csv", 0.0), ("replay:/x/a.csv?delay=0.25", "/x/a.csv", 0.25)],
)
def test_a_replay_spec_may_slow_each_training(spec, path, delay):
    assert ReplaySpec.parse(spec) == ReplaySpec(path=path, delay_s=delay)


@pytest.mark.parametrize("suffix", ["?delay=-1", "?delay=x", "?pause=1", "?delay=nan"])
def test_a_bad_replay_delay_is_refused_in_one_line(tmp_path, capsys, suffix):
    code = main(
        ["search", "--study", str(ROOT / "studies" / "sst2.toml"), "--budget", "0.03"]
        + ["--executor", "local", "--trainer", f"replay:{TABLE}{suffix}"]
        + ["--storage", f"sqlite:///{tmp_path / 's.db'}"]
    )
    assert code == 2
    assert "only ?delay=SECONDS may follow" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "s.db").exists()
