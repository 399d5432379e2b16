"""A throwaway PostgreSQL server for the tests, and the fixtures that hand out its databases.

The server is PostgreSQL's own binaries (``initdb``, ``pg_ctl``) run in a fresh folder under
the system's temporary directory: its data, its log and its Unix socket live there, it listens
on 127.0.0.1 on a free port, its users have passwords (scram-sha-256, so a wrong password is
refused as on a real server), and it is stopped and its folder removed at the end of the
session. Each test gets a database of its own, dropped after it.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user (Debian's
package creates it), else as ``nobody``, and its folder belongs to that user. Where no binaries
are found (``PATH``, ``/usr/local/bin``, ``/usr/lib/postgresql/*/bin``) or psycopg is not
installed, the fixtures skip with the reason, unless ``AUTOPRUMUX_REQUIRE_POSTGRES=1`` (as CI
sets it): then they fail.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ENV = "AUTOPRUMUX_REQUIRE_POSTGRES"
USER = "autoprumux"  # the server's superuser, which the tests connect as
PASSWORD = "pg-s3cret"  # its password: what a test greps every output for
HOST = "127.0.0.1"
START_TIMEOUT_S = 60  # pg_ctl start -w waits this long for the server to accept connections
SERVER_USERS = ("postgres", "nobody")  # whom the server runs as, when the tests run as root
SEARCHED = ("/usr/local/bin", "/usr/lib/postgresql/*/bin")  # beside PATH, newest version first
_databases = itertools.count()  # names of the server's databases: test_0, test_1, ...
# a throwaway server need not survive a power cut (no fsync), and keeps its WAL small:
# each CREATE DATABASE writes its template (~4 MB) to the WAL, recycled once past 64 MB
SETTINGS = " ".join(
    f"-c {setting}"
    for setting in (
        "fsync=off",
        "full_page_writes=off",
        "wal_level=minimal",
        "max_wal_senders=0",
        "min_wal_size=32MB",
        "max_wal_size=64MB",
    )
)


@dataclass(frozen=True, kw_only=True)
class PostgresServer:
    """A running server: URLs of its databases, and a way to make a new one."""

    port: int
    folder: Path  # data/, server.log and the Unix socket

    def url(self, database: str, *, user: str = USER, password: str = PASSWORD) -> str:
        """A plain ``postgresql://`` URL, as a user writes it (no driver named)."""
        return f"postgresql://{user}:{password}@{HOST}:{self.port}/{database}"

    def new_database(self, *, user: str = USER, password: str = PASSWORD) -> str:
        """Create an empty database of a name of its own, owned by ``user`` (a login role
        created with ``password`` if it does not exist yet); its URL, as that user."""
        from psycopg import sql

        with self._admin() as connection:
            known = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            if known.fetchone() is None:
                role = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
                connection.execute(role.format(sql.Identifier(user), sql.Literal(password)))
            name = f"test_{next(_databases)}"
            create = sql.SQL("CREATE DATABASE {} OWNER {}")
            connection.execute(create.format(sql.Identifier(name), sql.Identifier(user)))
        return self.url(name, user=user, password=password)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, its connections closed first (a test's pools, a killed
        search's): its files go while they are fresh, not all at once at the end."""
        from psycopg import sql

        name = url.rsplit("/", 1)[1]
        with self._admin() as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def _admin(self):  # type: ignore[no-untyped-def]
        import psycopg

        admin = f"postgresql://{USER}:{PASSWORD}@{HOST}:{self.port}/postgres"
        return psycopg.connect(admin, autocommit=True)  # no CREATE DATABASE in a transaction


def find_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``; None where there is none."""
    candidates = [shutil.which("initdb")]
    for pattern in SEARCHED:
        folders = sorted(Path("/").glob(pattern.lstrip("/")), key=_version, reverse=True)
        candidates += [str(folder / "initdb") for folder in folders]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            folder = Path(candidate).resolve().parent  # /usr/local/bin/initdb is a link
            if all(os.access(folder / name, os.X_OK) for name in ("pg_ctl", "postgres")):
                return folder
    return None


def start_server() -> Iterator[PostgresServer]:
    """Start a server (see the module doc), yield it, stop it and remove its folder."""
    binaries = find_binaries()
    if binaries is None:
        unavailable(
            "no PostgreSQL binaries (initdb, pg_ctl) on PATH, in /usr/local/bin or in "
            "/usr/lib/postgresql/*/bin; apt-get install postgresql"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed; pip install -e '.[test]' installs it")
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="autoprumux-pg-"))  # not tmp_path: root's, 0700
    try:
        password = folder / "password"  # initdb reads it; removed once read
        password.write_text(PASSWORD + "\n")
        if user is not None:
            for path in (folder, password):
                shutil.chown(path, user.pw_uid, user.pw_gid)
        initdb = [binaries / "initdb", "-D", folder / "data", "-U", USER, "--pwfile", password]
        initdb += ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"]
        _check(_run(user, folder, initdb), "initdb")
        password.unlink()
        port = _start(user, binaries, folder)
        try:
            yield PostgresServer(port=port, folder=folder)
        finally:
            _run(
                user,
                folder,
                [binaries / "pg_ctl", "-D", folder / "data", "-m", "immediate", "stop"],
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unavailable(reason: str) -> None:
    """Skip, or fail where CI requires the server (``AUTOPRUMUX_REQUIRE_POSTGRES=1``)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"PostgreSQL tests required ({REQUIRE_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _start(user: pwd.struct_passwd | None, binaries: Path, folder: Path) -> int:
    """Start the server on a free port; its port. A port found free may be taken before the
    server binds it: then another one is tried."""
    for _ in range(3):
        port = _free_port()
        options = f"-h {HOST} -p {port} -k {folder} {SETTINGS}"
        start = [binaries / "pg_ctl", "-D", folder / "data", "-l", folder / "server.log"]
        start += ["-o", options, "-w", "-t", START_TIMEOUT_S, "start"]
        if _run(user, folder, start).returncode == 0:
            return port
    log = (folder / "server.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"the PostgreSQL server did not start; its log ends:\n{log}", pytrace=False)


def _run(
    user: pwd.struct_passwd | None, folder: Path, argv: list[object]
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary as ``user`` (None: as this process's user), in ``folder``."""
    as_user: dict[str, object] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no PGDATA, PGPORT
    if user is not None:  # setuid in the child: no runuser or su needed
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env.update(HOME=str(folder), USER=user.pw_name, LOGNAME=user.pw_name)
    return subprocess.run(
        [str(part) for part in argv],
        cwd=folder,  # the server's user may not enter this process's working folder
        env=env,
        capture_output=True,
        text=True,
        check=False,
        **as_user,  # type: ignore[arg-type]
    )


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        pytest.fail(f"{what} failed: {(result.stderr or result.stdout)[-2000:]}", pytrace=False)


def _server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as: this process's user, or, for root, an unprivileged one."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    unavailable(f"running as root and none of the users {', '.join(SERVER_USERS)} exists")
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _version(folder: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,); a folder without a version sorts last."""
    digits = [part for part in folder.parts if part.isdigit()]
    return tuple(int(d) for d in digits) or (-1,)


# -- fixtures (registered in tests/conftest.py) ------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway server for the session, started by the first test that asks for it."""
    yield from start_server()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A plain ``postgresql://user:PASSWORD@127.0.0.1:PORT/db`` URL of a new, empty database,
    dropped after the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty storage: a SQLite file in ``tmp_path``, or a PostgreSQL
    database of the throwaway server (started only when a test asks for one)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")
