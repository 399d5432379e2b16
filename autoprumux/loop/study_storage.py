"""Opening a study's Optuna storage and checking the study in it, and the busy-database retry
every write goes through.

- open: the storage is created if it is new (searches that create one at once collide: the
  loser finds it created on its next try); the study is created or loaded, then labelled with
  its task and grid; a study with neither label nor trial (a search killed while creating it)
  is labelled again; a study of something else, or trained under another recipe, is refused
  before anything is written to it;
- read: :func:`study_attributes` reads a stored study's attributes without opening it for
  writing (the report);
- write: :func:`retry_busy` tries a storage call again when the database was too busy to take
  it (SQLite refuses a write at once, whatever its timeout, when two writers would deadlock).
"""

from __future__ import annotations

import contextlib
import random
import shlex
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from sqlalchemy.exc import SQLAlchemyError

from autoprumux.core.grid import Grid
from autoprumux.core.recipe import RecipeRecord, newer, recipe_conflicts
from autoprumux.core.version import __version__
from autoprumux.loop.masking import masked_url, without_password
from autoprumux.loop.storage_check import StorageError, connect_url

__all__ = ["open_storage", "open_study", "retry_busy", "stored_study_names", "study_attributes"]

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 60  # a write waits this long for another process's write to end
OPEN_ATTEMPTS = 8  # tries at creating a new storage that other searches create at once
WRITE_ATTEMPTS = 5  # tries at a write that the database refused as busy (locked)
CONTENTS_ATTR = "contents"  # the study attribute of RecipeRecord.contents
# what each content key is of, in a refusal's words
CONTENT_WORDS = {"data": "the study's [data] files", "model": "its [model] folder"}


def retry_busy(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, tried again (up to :data:`WRITE_ATTEMPTS` times, with a
    random, growing pause) when the database was too busy to take it: Optuna turns SQLite's
    "database is locked" into a :class:`StorageInternalError`."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            return call(*args, **kwargs)
        except StorageInternalError as err:
            why = _first_line(err)
            if "readonly" in why or "read-only" in why:  # a read-only file, mount or server
                raise StorageError(
                    f"the study's storage cannot be written: {why}; a search records its "
                    "trials in it, so give a --storage it can write"
                ) from None
            if attempt == WRITE_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.05, 0.5) * attempt)
    raise AssertionError("unreachable")


def open_storage(url: str) -> RDBStorage:
    """Optuna's RDBStorage for ``url`` (a plain ``postgresql://`` one through the installed
    driver: :func:`connect_url`), its tables created if it is new. Searches that create
    one new storage at once collide (Optuna stamps the schema version without a lock: "UNIQUE
    constraint failed: alembic_version", or "table ... already exists"): the loser finds the
    storage created on its next try."""
    engine_kwargs = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else {}
    )
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(connect_url(url), engine_kwargs=engine_kwargs)
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
            if attempt == OPEN_ATTEMPTS:
                raise _cannot_open(url, err) from None
            time.sleep(random.uniform(0.05, 0.3) * attempt)
        except (ValueError, ImportError, OSError, RuntimeError) as err:
            # RuntimeError: written by an Optuna whose schema this one cannot read
            raise _cannot_open(url, err) from None
    raise AssertionError("unreachable")


def open_study(
    storage: RDBStorage,
    name: str,
    grid: Grid,
    task: str,
    url: str,
    recipe: RecipeRecord | None,
) -> optuna.Study:
    """Load the study, or create it; label it with its task and grid (again, if a search was
    killed before it had: such a study has no trials), and with ``recipe``'s settings (also
    in place of an older release's recipe hash that still applies). A study of something
    else, or trained under another recipe, is refused before anything is written to it.
    Every write is retried while the database is busy."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        with contextlib.suppress(optuna.exceptions.DuplicatedStudyError):  # another search's
            retry_busy(storage.create_new_study, [StudyDirection.MAXIMIZE] * 2, name)
        study = optuna.load_study(study_name=name, storage=storage)
    _check_labels(study, grid, task, url, recipe)
    if recipe is not None:
        _check_recipe(study, recipe, url)
        _check_contents(study, recipe, url)
        settings = dict(recipe.settings)
        if study.user_attrs.get("recipe") != settings:  # records it, or upgrades an old hash
            retry_busy(study.set_user_attr, "recipe", settings)
        contents = {**study.user_attrs.get(CONTENTS_ATTR, {}), **recipe.contents}
        if study.user_attrs.get(CONTENTS_ATTR) != contents:
            retry_busy(study.set_user_attr, CONTENTS_ATTR, contents)
    return study


def check_stored_study(url: str, name: str, grid: Grid, task: str, recipe: RecipeRecord) -> bool:
    """Refuse what :func:`open_study` would refuse of a stored study (another grid or task,
    recipe or data), without writing anything (the dry run); False when the storage holds no
    study of that name."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=connect_url(url))
    except KeyError:
        return False
    _check_labels(study, grid, task, url, recipe, label=False)
    _check_recipe(study, recipe, url)
    _check_contents(study, recipe, url)
    return True


def _check_labels(
    study: optuna.Study,
    grid: Grid,
    task: str,
    url: str,
    recipe: RecipeRecord | None,
    label: bool = True,  # label a study without labels and trials (else it passes as it is)
) -> None:
    where = f"study {study.study_name!r} in {masked_url(url)}"  # never the password
    if study.directions != [StudyDirection.MAXIMIZE] * 2:
        raise StorageError(
            f"{where} was not created by autoprumux search (it does not maximize "
            "accuracy and throughput); use another study name ([study] name) or --storage"
        )
    stored = (study.user_attrs.get("grid"), study.user_attrs.get("task"))
    if stored == (grid.spec(), task):
        return
    if None in stored and not study.get_trials(deepcopy=False):
        if not label:
            return
        with warnings.catch_warnings():  # experimental in Optuna, and what the dashboard reads
            warnings.simplefilter("ignore")
            # the dashboard's names of the two objectives: the study's metric, the throughput
            metric = recipe.settings.get("study.metric", "accuracy") if recipe else "accuracy"
            retry_busy(study.set_metric_names, [str(metric), "throughput"])
        retry_busy(study.set_user_attr, "grid", grid.spec())
        retry_busy(study.set_user_attr, "task", task)
        return
    if None in stored:
        raise StorageError(
            f"{where} holds trials but no task or grid: it was not written by "
            "autoprumux search; use another study name ([study] name) or another --storage"
        )
    raise StorageError(
        f"{where} holds task {stored[1]!r} and grid {stored[0]!r}, not "
        f"{task!r} and {grid.spec()!r}; use another study name ([study] name) or another "
        "--storage"
    )


def _check_recipe(study: optuna.Study, recipe: RecipeRecord, url: str) -> None:
    """Refuse a stored study trained under another recipe (naming the fields that differ), or
    under an unknown one (recorded by a release without recipes); a study without trials just
    takes the new recipe. Settings that decide no result (``[training] compile``,
    ``checkpoint_every``) are not part of the recipe: changing them refuses nothing."""
    stored = study.user_attrs.get("recipe")
    if stored is None and not study.get_trials(deepcopy=False):
        return
    conflicts = [] if stored is None else recipe_conflicts(stored, recipe)
    if stored is not None and not conflicts:
        return
    name = study.study_name
    shown = masked_url(url)  # never the password
    unknown = newer(stored)
    if unknown:  # its results may well apply: this release cannot tell
        raise StorageError(
            f"study {name!r} in {shown} was recorded by a newer autoprumux (its recipe has "
            f"{', '.join(unknown)}, unknown to autoprumux {__version__}): upgrade autoprumux "
            "to continue it"
        )
    why = (
        f"was trained under another recipe ({'; '.join(conflicts)})"
        if stored is not None
        else "holds trials of an older autoprumux that did not record their recipe"
    )
    raise StorageError(
        f"study {name!r} in {shown} {why}, so its results do not apply; use another study name "
        "([study] name) or --storage, or delete it: "
        + shlex.join(["optuna", "delete-study", "--study-name", name, "--storage", shown])
    )


def _check_contents(study: optuna.Study, recipe: RecipeRecord, url: str) -> None:
    """Refuse a stored study whose trials read other content at the same paths than the study
    file names now (its data files, its local model folder, written again in place); a key
    the study did not record (an older release, a hub model) is not compared."""
    stored = study.user_attrs.get(CONTENTS_ATTR, {})
    changed = [
        CONTENT_WORDS.get(what, what)
        for what, key in recipe.contents.items()
        if stored.get(what, key) != key
    ]
    if not changed:
        return
    name, shown = study.study_name, masked_url(url)
    raise StorageError(
        f"study {name!r} in {shown} was trained on other content: {' and '.join(changed)} "
        "changed since its trials trained, so its results do not apply; restore them, or use "
        "another study name ([study] name) or --storage, or delete it: "
        + shlex.join(["optuna", "delete-study", "--study-name", name, "--storage", shown])
    )


def study_attributes(url: str, study_name: str) -> dict[str, Any] | None:
    """The user attributes of a stored study (what the search wrote: grid, task, throughput
    table, how it trained), read without opening the study for writing; None when the storage
    holds no study of that name."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=connect_url(url))
    except KeyError:
        return None
    return dict(study.user_attrs)


def stored_study_names(url: str) -> list[str]:
    """The names of the studies a storage holds, sorted (for a message naming a wrong one)."""
    return sorted(optuna.get_all_study_names(storage=connect_url(url)))


def _cannot_open(url: str, err: BaseException) -> StorageError:
    """The error for a storage Optuna cannot open, the password masked in the URL and in the
    database's message (which may quote either)."""
    why = without_password(_first_line(err), url)
    return StorageError(f"--storage {masked_url(url)!r} cannot be opened: {why}")


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err.__cause__
    text = str(orig if orig is not None else err) or type(err).__name__
    return " ".join(text.strip().splitlines()[0].split())  # libpq writes "FATAL:  ..."
