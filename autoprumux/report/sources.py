"""Where a report's data come from: a results file, or the Optuna study of a search."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePath
from typing import Any

from autoprumux.core.answer import TRAIN_COMMAND_ATTR, TrainCommand
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import DataError
from autoprumux.core.grid import BASELINE, Grid, GridPoint, parse_grid_spec
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Objective
from autoprumux.core.records import HeldOutScore, ResultsTable, distinct_seeds
from autoprumux.core.study import Study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.core.version import __version__
from autoprumux.files.results_io import read_results, read_throughput_table
from autoprumux.report.data import ReportInput

# The Optuna study's user attribute holding the held-out test figures of the search's last
# answer, ``{"(N, s)": {"score": x, "examples": k}}``: written by the session after its search
# answered (:func:`held_out_attr`), read only by the report (:func:`stored_test_scores`)
TEST_SCORES_ATTR = "test_scores"
_POINT = re.compile(r"^\((\d+), ([0-9.eE+-]+)\)$")  # str(GridPoint): "(2, 0.5)"
# The Optuna study's user attribute holding the precisions the search ranked (its resolved
# ``[deploy] precisions``, e.g. ``["fp32", "int8"]``); absent: those the table and the records
# have (report.data.ranked_precisions)
PRECISIONS_ATTR = "precisions"
# The budget a report states when none is given, nor recorded by a search: --budget 0.03
DEFAULT_BUDGET = Budget(BudgetKind.ABSOLUTE, 0.03)


def _versions() -> dict[str, str]:
    out = {"autoprumux": __version__}
    for name in ("torch", "optuna", "ray", "plotly"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def file_name(title: str) -> str:
    """A report title as one safe file name: anything but letters, digits, '.', '_' and '-'
    becomes '-' (no '/', no leading '.', so no '..')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-.") or "report"


def check_report_output(path: str | Path, option: str = "--out") -> Path:
    """Where a report goes, refused before anything is read unless it can be written and is
    an HTML file: a report written over a study's database, study file or results table would
    lose them."""
    from autoprumux.core.errors import FieldError
    from autoprumux.files.atomic import check_output

    path = check_output(path, option)
    if path.suffix.lower() not in (".html", ".htm"):
        raise FieldError(option, f"{path}: a report is an HTML file, ending with .html")
    return path


def default_report_path(title: str) -> Path:
    """Where ``autoprumux report`` writes without --out: reports/<title>.html."""
    return Path("reports") / f"{file_name(title)}.html"


def search_report_path(study: Study) -> Path:
    """Where ``autoprumux search`` writes the study's report: reports/<study>.html beside a
    folder named ``studies`` that holds the study file (a project's layout), else in the study
    file's own folder, as its database and models are: two folders' studies of one name then
    keep a report each, and a study file in a home folder writes inside it (the study name is
    a safe file name: :func:`autoprumux.core.study.check_name`)."""
    folder = study.folder.resolve()
    project = folder.parent if folder.name == "studies" else folder
    return project / "reports" / f"{study.name}.html"


def _table(results: ResultsTable, task: str, throughput_path: str | None) -> ThroughputTable | None:
    """--throughput, else the results' own throughputs; None without a (1, 0) row (the report
    then says what is missing)."""
    if throughput_path:
        return read_throughput_table(throughput_path)
    if BASELINE not in results.observations(task).throughput:
        return None
    return ThroughputTable.from_results(results, task)  # its fingerprint says: timed in trials


def from_results(
    path: str,
    task: str | None,
    budget: Budget,
    throughput_path: str | None,
    grid_spec: str | None = None,
    objective: Objective = Objective.THROUGHPUT,
) -> ReportInput:
    """A results file's report; ``grid_spec``: rank the table's points of this grid only
    (default: every point the table times, as predict does without --grid)."""
    results = read_results(path)
    task = results.resolve_task(task)
    records = results.for_task(task)
    grid = (
        parse_grid_spec(grid_spec)
        if grid_spec
        else Grid(
            tuple(sorted({r.n for r in records})), tuple(sorted({r.sparsity for r in records}))
        )
    )
    return ReportInput(
        title=Path(path).stem,
        task=task,
        grid=grid,
        budget=budget,
        observations=results.observations(task),
        table=_table(results, task, throughput_path),
        records=records,
        provenance={"results": path, **_versions()},
        objective=objective,
        # the grid its rows form is not a study's: rank what predict ranks (without --grid)
        within_grid=grid_spec is not None,
    )


def stored_metric(attrs: dict[str, Any], where: str) -> tuple[Metric, str]:
    """The metric a search's study judged by, and its positive label, from the recipe it
    recorded (``study.metric``, ``study.positive_label``); accuracy for a study recorded
    before metrics were a setting."""
    settings = attrs.get("recipe")
    settings = settings if isinstance(settings, dict) else {}
    value = settings.get("study.metric", Metric.ACCURACY.value)
    try:
        metric = Metric(value)
    except ValueError:
        allowed = ", ".join(m.value for m in Metric)
        raise DataError(where, f"records metric {value!r}, not one of: {allowed}") from None
    return metric, str(settings.get("study.positive_label", ""))


def held_out_attr(scores: Mapping[GridPoint, HeldOutScore]) -> dict[str, dict[str, Any]]:
    """The stored form of test figures (:data:`TEST_SCORES_ATTR`), keyed by ``str(point)``."""
    return {
        str(point): {"score": held.score, "examples": held.examples, "dev": held.dev}
        for point, held in sorted(scores.items())
    }


def stored_test_scores(attrs: dict[str, Any], where: str) -> dict[GridPoint, HeldOutScore]:
    """The test figures a search stored (:data:`TEST_SCORES_ATTR`); none for a study without
    a test split, or recorded before test figures were."""
    stored = attrs.get(TEST_SCORES_ATTR) or {}
    if not isinstance(stored, dict):
        raise DataError(where, f"holds test figures {stored!r} autoprumux did not write")
    scores = {}
    for key, value in stored.items():
        matched = _POINT.match(str(key))
        if matched is None or not isinstance(value, dict) or not {"score", "dev"} <= set(value):
            raise DataError(where, f"holds a test figure {key!r} autoprumux did not write")
        point = GridPoint(int(matched[1]), float(matched[2]))
        scores[point] = HeldOutScore(
            score=float(value["score"]),
            examples=int(value.get("examples", 0)),
            dev=float(value["dev"]),
        )
    return scores


def stored_precisions(attrs: dict[str, Any], where: str) -> tuple[Precision, ...]:
    """The precisions a search recorded it ranked (:data:`PRECISIONS_ATTR`); none (the
    report then ranks what it finds) for a study recorded before precisions were an axis."""
    stored = attrs.get(PRECISIONS_ATTR) or []
    known = {p.value: p for p in Precision}
    if not isinstance(stored, list) or not all(value in known for value in stored):
        raise DataError(where, f"holds precisions {stored!r} autoprumux did not write")
    return tuple(known[value] for value in stored)


def stored_budget(attrs: dict[str, Any], where: str) -> Budget | None:
    """The budget the study's last search ran with (its ``budget`` attribute, written from
    the search's start); None for a study no search has labelled yet."""
    from autoprumux.loop.driver import budget_from_label

    stored = attrs.get("budget")
    if stored is None:
        return None
    budget = budget_from_label(stored)
    if budget is None:
        raise DataError(where, f"holds a budget {stored!r} autoprumux did not write")
    return budget


def stored_objective(attrs: dict[str, Any], where: str) -> Objective:
    """What the study's last search ranked by (:data:`~autoprumux.loop.driver.OBJECTIVE_ATTR`);
    throughput for a study recorded before the objective was."""
    from autoprumux.loop.driver import OBJECTIVE_ATTR

    stored = attrs.get(OBJECTIVE_ATTR, Objective.THROUGHPUT.value)
    known = {o.value: o for o in Objective}
    if stored not in known:
        raise DataError(where, f"holds an objective {stored!r} autoprumux did not write")
    return known[stored]


def from_storage(
    url: str,
    study_name: str,
    budget: Budget | None,
    throughput_path: str | None,
    objective: Objective | None = None,
) -> ReportInput:
    """A search's report, from its study. ``budget`` and ``objective``: None for those the
    study's last search recorded (a study without them: :data:`DEFAULT_BUDGET`, throughput)."""
    # the search's adapters (Optuna, SQLAlchemy), imported only for a report of a storage
    from autoprumux.loop.masking import masked_url
    from autoprumux.loop.optuna_store import OptunaStore, stored_study_names, study_attributes
    from autoprumux.loop.store_contract import is_abandoned

    attrs = study_attributes(url, study_name)
    if attrs is None:
        names = stored_study_names(url)
        held = f"it holds: {', '.join(names)}" if names else "it holds no study"
        raise DataError(masked_url(url), f"holds no study named {study_name!r} ({held})")
    grid_spec, task = attrs.get("grid"), attrs.get("task")
    if not grid_spec or not task:
        raise DataError(
            masked_url(url), f"study {study_name!r} was not written by autoprumux search"
        )
    grid = parse_grid_spec(grid_spec)
    where = f"study {study_name!r} in {masked_url(url)}"
    metric, positive = stored_metric(attrs, where)
    precisions = stored_precisions(attrs, where)
    stored_table = attrs.get("throughput_table")  # what the search ranked by
    if stored_table:
        stored_table = in_this_project(str(stored_table), url)
    gone = None  # the recorded table, where that file no longer exists
    if throughput_path is None and stored_table:
        if Path(stored_table).is_file():
            throughput_path = stored_table
        else:
            gone = str(stored_table)
    store = OptunaStore(url, study_name, grid, task)
    try:
        records = [r for _, r in store.records()]
    finally:
        store.close()
    # how the search trained its points, so the report can say how to train a predicted one
    train = TrainCommand.from_dict(attrs.get(TRAIN_COMMAND_ATTR))
    if train is not None and train.artifacts_folder is not None:
        train = replace(train, artifacts_folder=in_this_project(train.artifacts_folder, url))
    # a trial closed untrained (interrupted, ...) is no failure of its point: the search
    # trains it again if it needs it
    trained = [r for r in records if not is_abandoned(r)]
    results = ResultsTable.from_records(distinct_seeds(trained), source=f"study {study_name}")
    observations = (
        results.observations(task) if trained else ResultsTable((), "").observations(task)
    )
    table = _table(results, task, throughput_path)
    notes = [_table_gone(gone, table, precisions)] if gone is not None else []
    ranked_by = objective if objective is not None else stored_objective(attrs, where)
    if objective is None and ranked_by is Objective.LATENCY and table and not table.latency:
        notes.append(
            "the search ranked by batch-1 latency, which this throughput table has none of: "
            "ranked by throughput"
        )
        ranked_by = Objective.THROUGHPUT
    return ReportInput(
        title=study_name,
        task=task,
        grid=grid,
        budget=budget if budget is not None else stored_budget(attrs, where) or DEFAULT_BUDGET,
        observations=observations,
        table=table,
        records=records,
        # the report is the file people share: never the password
        provenance={"storage": masked_url(url), "study": study_name, **_versions()},
        train=train,
        metric=metric,
        positive_label=positive,
        test_scores=stored_test_scores(attrs, where),
        precisions=precisions,
        objective=ranked_by,
        notes=tuple(notes),
    )


def in_this_project(recorded: str, url: str) -> str:
    """A path the search recorded in the study's layout (``<studies>/throughput/<table>``,
    ``<studies>/artifacts/<study>``), as the same name beside this SQLite study's database
    where it exists there, else as recorded: a copied or moved project (the database, the
    tables and the artifacts copied together) reports its own table and models, not the
    original's."""
    from autoprumux.loop.storage_check import sqlite_file

    database, path = sqlite_file(url), PurePath(recorded)
    if database is None or path.parent.name not in ("throughput", "artifacts"):
        return recorded
    ours = database.resolve().parent / path.parent.name / path.name
    return str(ours) if ours.exists() else recorded


def _table_gone(path: str, table: ThroughputTable | None, precisions: tuple[Precision, ...]) -> str:
    """The note of a recorded throughput table whose file is gone: what the report ranks by
    instead (``table``: the trials' own timings; None: none of (1, 0) either)."""
    gone = (
        f"the throughput table the search ranked by, {path}, is not on this machine (deleted, "
        "or on the machine that searched last)"
    )
    again = "give --throughput FILE (autoprumux measure writes one)"
    if table is None:
        return f"{gone}: {again}"
    untimed = [p.value for p in precisions if p not in table.precisions]
    dropped = f", and {', '.join(untimed)} not ranked (only that table timed it)" if untimed else ""
    return (
        f"{gone}: throughputs and speedups here are those timed inside each trial, beside "
        f"whatever else ran{dropped}, so the answer may differ from the search's; {again}"
    )
