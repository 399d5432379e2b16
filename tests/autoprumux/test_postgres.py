"""PostgreSQL for real: a plain ``postgresql://`` URL opens through psycopg 3 (the postgres
extra), whichever driver SQLAlchemy defaults to; a wrong password or a dead server is refused
in one line naming ``--storage`` (its password masked), exit code 2, before any training, by
the CLI run as users run it. The server is the throwaway one of ``postgres_server``; the search,
resume, report, dashboard and concurrency tests run on it too (the ``storage_url`` fixture)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from postgres_server import HOST, PASSWORD, USER
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import BASELINE, PAPER_GRID
from autoprumux.core.records import TrialRecord
from autoprumux.loop import storage_check
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.storage_check import StorageError, check_existing_storage, connect_url
from autoprumux.report.sources import from_storage

ROOT = Path(__file__).resolve().parents[2]
REPLAY = ROOT / "studies" / "results" / "synthetic-sst2.csv"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture
def sqlalchemy_20_default(monkeypatch):
    """SQLAlchemy 2.0's reading of a plain postgresql:// URL (psycopg2), psycopg2 not
    installed: what a user of the postgres extra on SQLAlchemy 2.0 has."""
    monkeypatch.setitem(registry.impls, "postgresql", lambda: PGDialect_psycopg2)
    monkeypatch.setattr(storage_check, "_installed", lambda driver: driver == "psycopg")


@pytest.mark.parametrize(
    ("url", "opened"),
    [
        ("postgresql://ada:p%40ss@h:5432/db", "postgresql+psycopg://ada:p%40ss@h:5432/db"),
        ("postgresql://h/db?sslmode=require", "postgresql+psycopg://h/db?sslmode=require"),
        ("postgresql+psycopg2://ada:pw@h/db", "postgresql+psycopg2://ada:pw@h/db"),  # as named
        ("postgresql+psycopg://ada:pw@h/db", "postgresql+psycopg://ada:pw@h/db"),
        ("sqlite:////tmp/s.db", "sqlite:////tmp/s.db"),
        ("not a url", "not a url"),
    ],
)
def test_a_plain_postgresql_url_opens_through_psycopg_3_where_the_default_is_missing(
    sqlalchemy_20_default, url, opened
):
    assert connect_url(url) == opened


def test_a_plain_postgresql_url_keeps_the_default_driver_where_it_is_installed(monkeypatch):
    monkeypatch.setitem(registry.impls, "postgresql", lambda: PGDialect_psycopg2)
    monkeypatch.setattr(storage_check, "_installed", lambda driver: True)
    assert connect_url("postgresql://ada:pw@h/db") == "postgresql://ada:pw@h/db"  # psycopg2
    monkeypatch.setattr(storage_check, "_installed", lambda driver: False)  # none: as written,
    assert connect_url("postgresql://ada:pw@h/db") == "postgresql://ada:pw@h/db"  # check says


def test_a_plain_url_search_and_report_work_on_sqlalchemy_20(sqlalchemy_20_default, postgres_url):
    assert postgres_url.startswith("postgresql://")
    store = OptunaStore(postgres_url, "s", PAPER_GRID, "sst2")
    number = store.start(BASELINE)
    store.finish(
        number,
        TrialRecord(task="sst2", n=1, sparsity=0.0, accuracy=0.93, throughput=1000.0),
        threshold=0.9,
    )
    check_existing_storage(postgres_url)
    report = from_storage(postgres_url, "s", Budget(BudgetKind.ABSOLUTE, 0.03), None)
    assert [r.accuracy for r in report.records] == [0.93]


def test_an_empty_database_holds_no_study_for_report_and_dashboard(postgres_url):
    with pytest.raises(StorageError, match="holds no study yet"):
        check_existing_storage(postgres_url)
    assert _tables(postgres_url) == []  # the check created nothing


def test_search_refuses_another_applications_database_without_writing_it(
    tmp_path, capsys, postgres_url
):
    import psycopg

    with psycopg.connect(postgres_url) as db:
        db.execute("CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT)")
    argv = _search_argv(_study_file(tmp_path), postgres_url)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an Optuna storage: it holds other tables (users)" in err[0]
    assert _tables(postgres_url) == ["users"]


# -- a wrong password, a dead server: one line, exit 2, nothing trained ---------------------


@pytest.fixture(params=["wrong-password", "dead-server"])
def unusable(request, postgres_url):
    """(a URL the CLI cannot open, the database's words for why, the port it names)."""
    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    if request.param == "wrong-password":
        url = postgres_url.replace(f":{PASSWORD}@", ":wrong-pw@")
        return url, f'password authentication failed for user "{USER}"', port
    dead = _closed_port()
    return postgres_url.replace(f"@{HOST}:{port}/", f"@{HOST}:{dead}/"), "Connection refused", dead


def test_search_refuses_a_storage_it_cannot_reach_in_one_line_before_training(
    tmp_path, postgres_url, unusable
):
    url, why, port = unusable
    process = subprocess.run(
        [sys.executable, "-m", "autoprumux", *_search_argv(_study_file(tmp_path), url)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2, process.stderr
    assert process.stdout == ""
    (line,) = process.stderr.splitlines()  # one line: no traceback, no progress, no warning
    shown = f"postgresql://{USER}:***@{HOST}:{port}/"
    assert line.startswith(f"autoprumux: error: --storage '{shown}") and why in line, line
    assert "cannot be opened" in line and "wrong-pw" not in line and PASSWORD not in line
    assert not (tmp_path / "reports").exists()  # the search never reached its end
    assert _tables(postgres_url) == []  # nor wrote anything


@pytest.mark.parametrize("command", ["report", "dashboard"])
def test_report_and_dashboard_refuse_it_in_one_line(tmp_path, capfd, unusable, command):
    url, why, port = unusable
    argv = {
        "report": ["report", "--storage", url, "--study-name", "sst2", "--out", "r.html"],
        "dashboard": ["dashboard", "--storage", url, "--port", str(_closed_port())],
    }[command]
    assert main(argv) == 2
    out, err = capfd.readouterr()
    (line,) = err.splitlines()
    assert f"--storage 'postgresql://{USER}:***@{HOST}:{port}/" in line and why in line, line
    assert out == "" and PASSWORD not in line and "wrong-pw" not in line


def _study_file(tmp_path):
    """studies/sst2.toml in tmp_path/studies: a search's report lands in tmp_path/reports."""
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "sst2.toml"
    path.write_text((ROOT / "studies" / "sst2.toml").read_text())
    return path


def _search_argv(study_file, url):
    return ["search", "--study", str(study_file), "--budget", "0.03", "--executor", "local"] + [
        "--trainer",
        f"replay:{REPLAY}",
        "--storage",
        url,
    ]


def _tables(url):
    import psycopg

    with psycopg.connect(url) as db:
        rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return sorted(row[0] for row in rows)


def _closed_port():
    """A port nothing listens on: a dead server."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
