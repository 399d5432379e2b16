"""A storage URL's password is never shown: not on stderr, stdout, in ``--json``, in hints,
in error messages or in the HTML report (the file people share); the real URL still connects.

SQLite takes no password, so the end-to-end runs use ``sqlite+withpassword://``: SQLite behind
a URL that carries one (the dialect below drops it before connecting), which every autoprumux
code path reads as any other SQLAlchemy URL; the search-and-report run also uses a real one,
a PostgreSQL database of the throwaway server (``postgres_server``) that the password opens."""

import json
import socket
from pathlib import Path

import pytest
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL

from autoprumux.cli.main import main
from autoprumux.loop.masking import masked_url, without_password

ROOT = Path(__file__).resolve().parents[2]
REPLAY = ROOT / "studies" / "results" / "synthetic-sst2.csv"
PASSWORD = "s3cretPW"


class SQLiteWithPassword(SQLiteDialect_pysqlite):
    """SQLite under a URL with a user and password, which pysqlite refuses: both dropped."""

    supports_statement_cache = True  # as its base: the subclass changes no SQL

    def create_connect_args(self, url):  # type: ignore[no-untyped-def]
        return super().create_connect_args(
            URL.create(url.drivername, database=url.database, query=url.query)
        )


@pytest.fixture
def password_url(request, tmp_path, monkeypatch):
    """A storage URL with user ada and PASSWORD: SQLite's (by default) or, with the indirect
    parameter "postgresql", a database of the throwaway PostgreSQL server."""
    if getattr(request, "param", "sqlite") == "postgresql":
        server = request.getfixturevalue("postgres_server")
        return server.new_database(user="ada", password=PASSWORD)
    monkeypatch.setitem(registry.impls, "sqlite.withpassword", lambda: SQLiteWithPassword)
    # user:PASSWORD@ then the absolute path (its leading / makes the //)
    return f"sqlite+withpassword://ada:{PASSWORD}@/{tmp_path / 'studies' / 'sst2.db'}"


@pytest.fixture
def study_file(tmp_path):
    """studies/sst2.toml in tmp_path/studies, so the search's report lands in tmp_path/reports."""
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "sst2.toml"
    path.write_text((ROOT / "studies" / "sst2.toml").read_text())
    return path


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ada:s3cretPW@db.example:5432/studies", "postgresql://ada:***@db.example:5432/studies"),
        ("postgresql+psycopg://ada:p%40ss@h/db", "postgresql+psycopg://ada:***@h/db"),
        ("postgresql://h/db?sslmode=require&password=s3cretPW", "postgresql://h/db?sslmode=require&password=***"),
        ("notadriver://ada:s3cretPW@h/db", "notadriver://ada:***@h/db"),
        ("not a url ://ada:s3cretPW@h", "not a url ://ada:***@h"),
        ("postgresql://ada@h/db", "postgresql://ada@h/db"),
        ("sqlite:////tmp/a b/s.db", "sqlite:////tmp/a b/s.db"),
        ("nonsense", "nonsense"),
    ],
)  # fmt: skip
def test_a_url_is_shown_with_its_password_masked(url, shown):
    assert masked_url(url) == shown


def test_a_message_quoting_the_password_is_masked_as_written_and_url_encoded():
    url = "postgresql://ada:p%40ss word@h/db"
    text = "auth failed for 'p@ss word' (p%40ss%20word, p%40ss+word)"
    assert without_password(text, url) == "auth failed for '***' (***, ***)"


def run(capfd, *argv):
    code = main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def assert_no_password(*texts):
    for text in texts:
        assert PASSWORD not in text


@pytest.mark.parametrize("password_url", ["sqlite", "postgresql"], indirect=True)
def test_no_output_of_a_search_and_a_report_shows_the_password(
    tmp_path, capfd, password_url, study_file
):
    search = ["search", "--study", str(study_file), "--budget", "0.03", "--executor", "local"]
    search += ["--trainer", f"replay:{REPLAY}", "--storage", password_url]
    code, out, err = run(capfd, *search, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["storage"] == masked_url(password_url) != password_url
    assert "ada:***@" in err and document["decision"]["results"] == document["storage"]
    code, text_out, text_err = run(capfd, *search)  # resumed: the text output and its hints
    assert code == 0, text_err
    hint = next(line for line in text_out.splitlines() if line.startswith("dashboard:"))
    assert "ada:***@" in hint and "put yours in place of ***" in hint
    out_file = tmp_path / "shared.html"
    code, report_out, report_err = run(
        capfd, "report", "--storage", password_url, "--study-name", "sst2", "--out", str(out_file)
    )
    assert code == 0, report_err
    html = out_file.read_text()
    assert "ada:***@" in html  # the provenance names the storage, masked
    search_html = (tmp_path / "reports" / "sst2.html").read_text()
    assert_no_password(out, err, text_out, text_err, report_out, report_err, html, search_html)
    for path in tmp_path.rglob("*"):  # nothing written anywhere holds it
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), path


def test_a_password_from_the_study_file_gives_a_dashboard_hint_that_works_as_printed(
    capfd, password_url, study_file
):
    study_file.write_text(
        study_file.read_text().replace('url = ""', f"url = {json.dumps(password_url)}")
    )
    code, out, err = run(
        capfd,
        *["search", "--study", str(study_file), "--budget", "0.03", "--executor", "local"],
        *["--trainer", f"replay:{REPLAY}", "--max-trials", "1"],
    )
    assert code == 0, err
    assert f"dashboard: autoprumux dashboard --study {study_file}" in out.splitlines()
    assert_no_password(out, err)


def test_errors_about_a_password_storage_are_one_line_without_it(capfd, password_url, study_file):
    search = ["search", "--study", str(study_file), "--budget", "0.03", "--executor", "local"]
    search += ["--trainer", f"replay:{REPLAY}", "--storage", password_url, "--max-trials", "1"]
    assert run(capfd, *search)[0] == 0
    study_file.write_text(study_file.read_text().replace("[study]", "[study]\nseed = 7"))
    code, out, err = run(capfd, *search)  # another recipe: refused, with a delete-study hint
    assert code == 2 and len(err.strip().splitlines()) == 1 and "ada:***@" in err
    code, out2, err2 = run(capfd, "report", "--storage", password_url, "--study-name", "nope")
    assert code == 2 and len(err2.strip().splitlines()) == 1 and "ada:***@" in err2
    assert_no_password(out, err, out2, err2)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ada:{PASSWORD}@127.0.0.1:1/db",  # nothing listens; or no driver here
        f"postgresql+psycopg://ada:{PASSWORD}@127.0.0.1:1/db",
        f"notadriver://ada:{PASSWORD}@127.0.0.1:1/db",
    ],
)
@pytest.mark.parametrize("command", ["search", "report", "dashboard"])
def test_an_unreachable_password_storage_fails_in_one_line_without_it(
    tmp_path, capfd, url, command
):
    argv = {
        "search": ["search", "--study", str(ROOT / "studies" / "sst2.toml"), "--budget", "0.03"]
        + ["--executor", "local", "--trainer", f"replay:{REPLAY}", "--storage", url],
        "report": ["report", "--storage", url, "--study-name", "sst2"]
        + ["--out", str(tmp_path / "r.html")],
        "dashboard": ["dashboard", "--storage", url, "--port", str(free_port())],
    }[command]
    code, out, err = run(capfd, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot be opened" in err and "ada:***@127.0.0.1:1" in err
    assert_no_password(out, err)


def test_the_dashboard_connects_with_the_real_url_and_shows_it_masked(
    capfd, monkeypatch, password_url, study_file
):
    search = ["search", "--study", str(study_file), "--budget", "0.03", "--executor", "local"]
    assert run(capfd, *search, "--trainer", f"replay:{REPLAY}", "--storage", password_url)[0] == 0
    import optuna_dashboard

    served = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda url, **kw: served.append(url))
    code, out, err = run(capfd, "dashboard", "--storage", password_url, "--port", str(free_port()))
    assert code == 0 and served == [password_url]
    assert "ada:***@" in err
    assert_no_password(out, err)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
