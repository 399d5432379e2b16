"""A storage URL checked before anything opens it: nothing is created or written on the way.

``search`` may create a storage (a missing SQLite file, or the tables in an empty database);
``report`` and ``dashboard`` only read one, so for them a missing SQLite file is a typo, not a
new study. Neither writes to a database that holds another application's tables.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from autoprumux.errors import AutoPruMuxError
from autoprumux.masking import masked_url, without_password

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
URL_EXAMPLES = "e.g. sqlite:///studies/sst2.db or postgresql+psycopg://user@host/db"


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


def check_storage(url: str, use: StorageUse) -> None:
    """Refuse (:class:`StorageError`) a storage that ``use`` cannot have; see the module doc."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        parsed = sqlalchemy.engine.make_url(url)
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
        engine = sqlalchemy.create_engine(parsed)
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


def _check_sqlite_path(url: str, parsed: Any, use: StorageUse) -> bool:
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
    return False  # search creates it: there is nothing in it yet


def _count_studies(engine: Any) -> int:
    import sqlalchemy

    with engine.connect() as connection:
        return int(connection.execute(sqlalchemy.text("SELECT COUNT(*) FROM studies")).scalar())


def _check_optuna_schema(url: str) -> None:
    """Refuse a storage written by an Optuna whose schema this one cannot read. Optuna's own
    check; on a storage it can read it writes nothing (it stamps only an unstamped one)."""
    import optuna

    try:
        optuna.storages.RDBStorage(url, skip_table_creation=True)
    except RuntimeError as err:  # Optuna's message says to run `optuna storage upgrade`
        raise _cannot_open(url, _first_line(err)) from None


def _option(url: str) -> str:
    """``--storage 'URL'`` as an error message names it: the password masked."""
    return f"--storage {masked_url(url)!r}"


def _driver_missing(url: str, err: ImportError) -> StorageError:
    # the postgres extra is psycopg 3: SQLAlchemy 2.1's default PostgreSQL driver (2.0's is
    # psycopg2), named in any version by postgresql+psycopg://
    hint = (
        "; pip install 'autoprumux[postgres]' (psycopg 3: postgresql+psycopg://)"
        if url.startswith("postgresql")
        else ""
    )
    return _cannot_open(url, f"its database driver is not installed ({err}){hint}")


def _cannot_open(url: str, why: str) -> StorageError:
    """The error for a storage that cannot be opened; a driver's message may quote the URL
    (or its password), so ``why`` is shown without the password too."""
    return StorageError(f"{_option(url)} cannot be opened: {without_password(why, url)}")


def _first_line(err: BaseException) -> str:
    """The database's own words, without SQLAlchemy's statement dump and background link."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err) or type(err).__name__
    return text.strip().splitlines()[0]
