"""A storage URL checked before anything opens it: nothing is created or written on the way.

``search`` may create a storage (a missing SQLite file, or the tables in an empty database);
``report`` and ``dashboard`` only read one, so for them a missing SQLite file is a typo, not a
new study. Neither writes to a database that holds another application's tables.

:func:`connect_url` is the URL every engine and Optuna storage is opened with: a plain
``postgresql://`` URL there names the PostgreSQL driver that is installed.
"""

from __future__ import annotations

import enum
import importlib.util
import os
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from autoprumux.core.errors import AutoPruMuxError
from autoprumux.loop.masking import masked_url, without_password

# tables every Optuna RDB storage has had, whatever its schema version
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})
# every table an Optuna RDB storage creates: a database holding only some of them is one that
# another search is creating right now (its tables appear one by one), not another
# application's
OPTUNA_ALL_TABLES = OPTUNA_TABLES | {
    "alembic_version",
    "study_directions",
    "study_user_attributes",
    "study_system_attributes",
    "trial_params",
    "trial_values",
    "trial_intermediate_values",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_heartbeats",
}
URL_EXAMPLES = "e.g. sqlite:///studies/sst2.db or postgresql://user@host/db"
# PostgreSQL drivers a plain postgresql:// URL may use, by preference after SQLAlchemy's own
# default (psycopg2 in SQLAlchemy 2.0, psycopg in 2.1): the postgres extra installs psycopg 3
POSTGRES_DRIVERS = ("psycopg", "psycopg2")
# seconds a PostgreSQL connection may take: a host that is down (no answer, not even a
# refusal) fails the check after this, not after the system's TCP timeout of minutes
CONNECT_TIMEOUT_S = 10


class StorageError(AutoPruMuxError):
    """The storage cannot be opened, is not an Optuna one, or the study in it does not match."""


class StorageUse(enum.Enum):
    CREATE = "create"  # search: a missing SQLite file or an empty database becomes the storage
    READ = "read"  # report, dashboard: the storage must exist and hold a study


def check_existing_storage(url: str) -> None:
    """For ``report --storage`` and ``dashboard``: refuse, with a one-line :class:`StorageError`,
    a URL that is malformed, a database that is missing, empty, not an Optuna storage, written
    by an incompatible Optuna, or holds no study. Creates and writes nothing."""
    check_storage(url, StorageUse.READ)


def connect_url(url: str) -> str:
    """``url`` as engines and Optuna storages open it. A plain ``postgresql://`` URL names
    the driver SQLAlchemy defaults to where it is installed, else the installed one of
    :data:`POSTGRES_DRIVERS` (``postgresql+psycopg://`` with the postgres extra on SQLAlchemy
    2.0, whose default is psycopg2); any other URL, one naming its driver or one whose driver
    is not installed at all (the check says so), is returned as it is. Only the real URL is
    returned: show it with :func:`~autoprumux.loop.masking.masked_url`."""
    try:
        parsed = make_url(url)
        default = parsed.get_dialect().driver if parsed.drivername == "postgresql" else None
    except Exception:  # malformed or unknown: check_storage says what is wrong with it
        return url
    if default is None or _installed(default):
        return url
    driver = next((d for d in POSTGRES_DRIVERS if _installed(d)), None)
    if driver is None:
        return url
    return parsed.set(drivername=f"postgresql+{driver}").render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if not parsed.drivername.startswith("sqlite") or database in ("", ":memory:"):
        return None
    return None if database.startswith("file:") else Path(database)


def check_storage(url: str, use: StorageUse) -> None:
    """Refuse (:class:`StorageError`) a storage that ``use`` cannot have; see the module doc."""
    try:
        parsed = make_url(connect_url(url))
        parsed.get_dialect()
    except NoSuchModuleError:  # before ArgumentError, its base
        raise _cannot_open(url, f"unknown database kind {url.split(':', 1)[0]!r}") from None
    except (ArgumentError, ValueError):
        raise _cannot_open(url, f"not a database URL ({URL_EXAMPLES})") from None
    except ImportError as err:
        raise _driver_missing(url, err) from None
    if parsed.get_backend_name() == "sqlite" and not _check_sqlite_path(url, parsed, use):
        return  # in memory: nothing to look at
    try:
        engine = sqlalchemy.create_engine(parsed, connect_args=_connect_args(parsed))
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
            studies = _count_studies(engine) if tables >= OPTUNA_TABLES else 0
        finally:
            engine.dispose()
    except SQLAlchemyError as err:
        raise _cannot_open(url, _first_line(err)) from None
    except ImportError as err:
        raise _driver_missing(url, err) from None
    foreign = sorted(tables - OPTUNA_ALL_TABLES)
    if foreign and not tables >= OPTUNA_TABLES:  # an Optuna storage may share its database
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise StorageError(
            f"{_option(url)} is not an Optuna storage: it holds other tables ({shown}); "
            "autoprumux writes only to an empty database or an Optuna one: give another --storage"
        )
    if use is StorageUse.READ:
        if not studies:
            raise StorageError(f"{_option(url)} holds no study yet; autoprumux search creates one")
        _check_optuna_schema(url)


def _check_sqlite_path(url: str, parsed: URL, use: StorageUse) -> bool:
    """Check the file of a SQLite URL; False for an in-memory database (nothing to check)."""
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        if use is StorageUse.READ:
            raise StorageError(
                f"{_option(url)} is an in-memory SQLite database: it holds no study; give "
                "the file of a search's storage (sqlite:///path/to/study.db)"
            )
        return False
    path = Path(database)
    if path.is_dir():
        raise _cannot_open(url, f"{path} is a folder, not a SQLite file")
    if path.exists():
        return True
    if use is StorageUse.READ:
        raise StorageError(
            f"{_option(url)}: no such file {path} (a storage file is created only by "
            "autoprumux search); check the path (sqlite:///relative or sqlite:////absolute)"
        )
    if not path.parent.is_dir():
        raise _cannot_open(url, f"the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):  # a read-only mount, or another user's folder
        raise _cannot_open(url, f"the folder {path.parent} cannot be written")
    return False  # search creates it: there is nothing in it yet


def _installed(driver: str) -> bool:
    return importlib.util.find_spec(driver) is not None


def _connect_args(parsed: URL) -> dict[str, Any]:
    """A connection timeout for libpq's drivers, unless the URL sets its own."""
    if parsed.get_backend_name() != "postgresql" or "connect_timeout" in parsed.query:
        return {}
    if parsed.get_driver_name() not in POSTGRES_DRIVERS:
        return {}
    return {"connect_timeout": CONNECT_TIMEOUT_S}


def _count_studies(engine: Engine) -> int:
    with engine.connect() as connection:
        count = connection.execute(sqlalchemy.text("SELECT COUNT(*) FROM studies")).scalar_one()
        return int(count)


def _check_optuna_schema(url: str) -> None:
    """Refuse a storage written by an Optuna whose schema this one cannot read. Optuna's own
    check; on a storage it can read it writes nothing (it stamps only an unstamped one)."""
    try:
        optuna.storages.RDBStorage(connect_url(url), skip_table_creation=True)
    except RuntimeError as err:  # Optuna's message says to run `optuna storage upgrade`
        raise _cannot_open(url, _first_line(err)) from None


def _option(url: str) -> str:
    """``--storage 'URL'`` as an error message names it: the password masked."""
    return f"--storage {masked_url(url)!r}"


def _driver_missing(url: str, err: ImportError) -> StorageError:
    # the postgres extra is psycopg 3, which a plain postgresql:// URL uses (connect_url)
    hint = (
        "; pip install 'autoprumux[postgres]' (psycopg 3)" if url.startswith("postgresql") else ""
    )
    return _cannot_open(url, f"its database driver is not installed ({err}){hint}")


def _cannot_open(url: str, why: str) -> StorageError:
    """The error for a storage that cannot be opened; a driver's message may quote the URL
    (or its password), so ``why`` is shown without the password too."""
    return StorageError(f"{_option(url)} cannot be opened: {without_password(why, url)}")


def _first_line(err: BaseException) -> str:
    """The database's own words, without SQLAlchemy's statement dump and background link,
    nor libpq's runs of spaces (``FATAL:  password authentication failed``)."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err) or type(err).__name__
    return " ".join(text.strip().splitlines()[0].split())
