"""Read and write results tables as CSV, JSON or Parquet, validating every row.

Formats are chosen by file extension: ``.csv``, ``.json`` (a list of row objects, or an object
with a ``rows`` list), ``.parquet`` / ``.pq``. CSV is read by the standard library (a row's
trailing comma is an empty cell, never a column shift); pandas (and pyarrow for Parquet) are
imported only here, and only when a Parquet file is read or a CSV or Parquet file written.
Columns not in :data:`~autoprumux.core.records.RECORD_FIELDS` are ignored. Rows are numbered from 1,
after the header (blank lines do not count). Tables are written by rename
(:mod:`autoprumux.files.atomic`): a kill leaves the old table or the new one, never half.
"""

from __future__ import annotations

import csv
import enum
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, SupportsFloat, SupportsIndex

from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import PRECISION_FIELDS, Precision
from autoprumux.core.records import (
    RATIO_FIELDS,
    RECORD_FIELDS,
    REQUIRED_COLUMNS,
    ResultsTable,
    TrialRecord,
    TrialStatus,
    is_missing,
)
from autoprumux.core.throughput import (
    OPTIONAL_THROUGHPUT_COLUMNS,
    THROUGHPUT_COLUMNS,
    ThroughputTable,
)
from autoprumux.files.atomic import atomic_path, explained_write_errors, write_text_atomic

# the precision of a row without one, in a table whose fingerprint's dtype timed every row so
# (tables from before precisions were rows); fp32 otherwise
LEGACY_DTYPE_PRECISIONS = {"bfloat16": Precision.BF16, "float16": Precision.FP16}


class TableFormat(enum.Enum):
    CSV = "csv"
    JSON = "json"
    PARQUET = "parquet"

    @classmethod
    def of(cls, path: Path) -> TableFormat:
        suffix = path.suffix.lower()
        formats = {".csv": cls.CSV, ".json": cls.JSON, ".parquet": cls.PARQUET, ".pq": cls.PARQUET}
        if suffix not in formats:
            raise DataError(str(path), f"unknown extension {suffix!r}; use .csv, .json or .parquet")
        return formats[suffix]


_NUMBER_FIELDS = (
    "sparsity",
    "accuracy",
    *PRECISION_FIELDS,
    *RATIO_FIELDS,
    "throughput",
    "achieved_sparsity",
    "wall_time_s",
    "gpu_hours",
    "mfu",
    "peak_memory_gib",
    "warmup_s",
    "teacher_s",
    "own_s",
    "stop_accuracy",
    "stop_margin",
    "latency_s",
)
_INTEGER_FIELDS = ("n", "seed", "from_trial", "stop_step")


def read_table(
    path: str | Path, required: Sequence[str] = REQUIRED_COLUMNS
) -> tuple[list[dict[str, object]], dict[str, object]]:
    """The raw rows of a table file (cells as the format gives them), and its metadata.

    Metadata are the other keys of a JSON document ``{"rows": [...], ...}`` (e.g. a throughput
    table's ``fingerprint``); CSV and Parquet files have none.
    """
    path = Path(path)
    metadata: dict[str, object] = {}
    fmt = TableFormat.of(path)
    if not path.is_file():
        raise DataError(str(path), "cannot be read: no such file")
    try:
        if fmt is TableFormat.JSON:
            document = json.loads(path.read_text(encoding="utf-8"))
            rows = document.get("rows") if isinstance(document, dict) else document
            if isinstance(document, dict):
                metadata = {k: v for k, v in document.items() if k != "rows"}
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise DataError(str(path), "is not a JSON list of row objects (or {'rows': [...]})")
            columns = set().union(*(r.keys() for r in rows)) if rows else set()
        elif fmt is TableFormat.CSV:
            rows, columns = _read_csv(path)
        else:
            import pandas as pd

            frame = pd.read_parquet(path)
            columns = set(frame.columns)
            rows = frame.to_dict("records")
    except DataError:
        raise
    except Exception as err:  # OSError, UnicodeDecodeError, JSON, pandas and pyarrow errors
        raise DataError(str(path), f"cannot be read as {fmt.value}: {_first_line(err)}") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            str(path), f"is missing column(s) {', '.join(missing)}; required: {', '.join(required)}"
        )
    return rows, metadata


def _read_csv(path: Path) -> tuple[list[dict[str, object]], set[str]]:
    """Rows of a CSV file as {header: cell text} (we parse numbers ourselves, to name the bad
    cell). A row may end with empty cells the header lacks (``1,0,0.9,``: a trailing comma),
    which are dropped, never read as a shifted row; a row with more values than the header, or
    fewer (a file cut off while it was written), is refused. Blank lines are skipped and do not
    count as rows."""
    with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: a BOM is not a name
        lines = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not lines:
        return [], set()
    header, *body = lines
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise DataError(str(path), f"column(s) {', '.join(repeated)} appear more than once")
    rows: list[dict[str, object]] = []
    for number, cells in enumerate(body, start=1):
        extra = cells[len(header) :]
        if any(cell.strip() for cell in extra) or len(cells) < len(header):
            cut = " (cut off: was the file written whole?)" if len(cells) < len(header) else ""
            raise DataError(
                str(path),
                f"has {len(cells)} values but the header names {len(header)} columns{cut}",
                row=number,
            )
        rows.append(dict(zip(header, cells[: len(header)], strict=True)))
    return rows, set(header)


def read_results(path: str | Path) -> ResultsTable:
    rows, _ = read_table(path)
    records = [record_from_row(row, str(path), i) for i, row in enumerate(rows, start=1)]
    return ResultsTable.from_records(records, source=str(path))


def record_from_row(row: Mapping[str, object], source: str, row_number: int) -> TrialRecord:
    values: dict[str, Any] = {}  # each field's own type, by its name (parse_cell)
    for name in RECORD_FIELDS:
        cell = row.get(name)
        try:
            values[name] = parse_cell(name, cell)
        except FieldError as err:
            raise DataError(source, err.message, row=row_number, field=name) from None
    if values["status"] is None:
        values["status"] = TrialStatus.COMPLETE
    try:
        return TrialRecord(**values)
    except FieldError as err:
        raise DataError(source, err.message, row=row_number, field=err.field) from None


def parse_cell(name: str, cell: object) -> object:
    """One cell of a record field as its Python value (None if empty); FieldError if bad."""
    if is_missing(cell):
        return None
    if name == "status":
        text = str(cell).strip().lower()
        try:
            return TrialStatus(text)
        except ValueError:
            allowed = ", ".join(s.value for s in TrialStatus)
            raise FieldError(name, f"{cell!r} is not one of: {allowed}") from None
    if name in _INTEGER_FIELDS:
        number = _parse_number(name, cell)
        if not number.is_integer():
            raise FieldError(name, f"{cell!r} is not an integer")
        return int(number)
    if name in _NUMBER_FIELDS:
        return _parse_number(name, cell)
    return str(cell)


def _parse_number(name: str, cell: object) -> float:
    if isinstance(cell, bool) or not isinstance(cell, str | bytes | SupportsFloat | SupportsIndex):
        raise FieldError(name, f"{cell!r} is not a number")
    try:
        number = float(cell)
    except (TypeError, ValueError):
        raise FieldError(name, f"{cell!r} is not a number") from None
    if not math.isfinite(number):
        raise FieldError(name, f"{cell!r} is not a finite number")
    return number


def write_table(
    rows: Sequence[Mapping[str, object]],
    path: str | Path,
    columns: Sequence[str],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write rows; JSON keeps ``metadata`` beside them (``{"rows": [...], **metadata}``)."""
    path = Path(path)
    fmt = TableFormat.of(path)
    with explained_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt is TableFormat.JSON:
            rows_out = [{c: r.get(c) for c in columns} for r in rows]
            document: object = {**metadata, "rows": rows_out} if metadata else rows_out
            write_text_atomic(path, json.dumps(document, indent=1) + "\n")
            return path
        import pandas as pd

        frame = pd.DataFrame(list(rows), columns=list(columns))
        with atomic_path(path) as temporary:  # a kill leaves the old table, never half of one
            if fmt is TableFormat.CSV:
                frame.to_csv(temporary, index=False)
            else:
                frame.to_parquet(temporary, index=False)
    return path


def write_results(table: ResultsTable, path: str | Path) -> Path:
    return write_table([r.to_row() for r in table.records], path, RECORD_FIELDS)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_throughput_table(path: str | Path, task: str | None = None) -> ThroughputTable:
    """Read a table file: columns ``n, sparsity, throughput``, and optionally ``precision``
    (where absent or empty: fp32, or bf16 / fp16 in a table whose fingerprint's ``dtype`` says
    that every row was timed so) and ``latency_s`` (one request at batch 1, seconds); a
    ``task`` column is allowed (with several tasks, ``task`` picks one). JSON files may carry a
    ``fingerprint`` object."""
    source = str(path)
    rows, metadata = read_table(path, required=THROUGHPUT_COLUMNS)
    fingerprint = metadata.get("fingerprint", {})
    if not isinstance(fingerprint, dict):
        raise DataError(source, "has a 'fingerprint' that is not an object", field="fingerprint")
    unlabelled = LEGACY_DTYPE_PRECISIONS.get(str(fingerprint.get("dtype")), Precision.FP32)
    tasks = sorted({str(r["task"]) for r in rows if r.get("task") not in (None, "")})
    if task is None and len(tasks) > 1:
        raise DataError(
            source, f"holds tasks {', '.join(tasks)}; choose one with --throughput-task"
        )
    if task is not None and not tasks:
        raise DataError(
            source,
            f"has no task column (its rows serve any task): --throughput-task {task} picks one "
            "task's rows of a table that holds several",
        )
    if task is not None and task not in tasks:
        raise DataError(source, f"has no rows for task {task!r} (it has: {', '.join(tasks)})")
    throughput: dict[GridPoint, float] = {}
    latency: dict[GridPoint, float] = {}
    first_row: dict[GridPoint, int] = {}
    for row_number, row in enumerate(rows, start=1):
        if task is not None and row.get("task") != task:
            continue
        status = row.get("status")
        if status not in (None, "") and str(status).lower() != TrialStatus.COMPLETE.value:
            continue  # a failed trial has no throughput to offer
        try:
            values = {name: parse_cell(name, row.get(name)) for name in THROUGHPUT_COLUMNS}
            for name, value in values.items():
                if value is None:
                    raise FieldError(name, "is missing")
            n, sparsity, value = values["n"], values["sparsity"], values["throughput"]
            # parse_cell reads n as an int, the others as floats
            assert isinstance(n, int) and isinstance(sparsity, float)
            assert isinstance(value, float)
            precision = parse_cell("precision", row.get("precision"))
            point = GridPoint(n, sparsity, Precision.parse(precision or unlabelled))
            if not value > 0:
                raise FieldError("throughput", f"{value!r} is not positive (examples per second)")
            seconds = parse_cell("latency_s", row.get("latency_s"))
            if seconds is not None:
                assert isinstance(seconds, float)
                if not seconds > 0:
                    raise FieldError("latency_s", f"{seconds!r} is not positive (seconds)")
                latency[point] = seconds
        except FieldError as err:
            raise DataError(source, err.message, row=row_number, field=err.field) from None
        if point in throughput and throughput[point] != value:
            raise DataError(
                source,
                f"conflicts with row {first_row[point]}: two throughputs for {point}",
                row=row_number,
                field="throughput",
            )
        throughput[point] = value
        first_row.setdefault(point, row_number)
    return ThroughputTable(throughput, fingerprint, source, latency=latency)


def write_throughput_table(table: ThroughputTable, path: str | Path) -> Path:
    """Write a table; only JSON keeps the fingerprint."""
    rows = [
        {
            "n": p.n,
            "sparsity": p.sparsity,
            "precision": p.precision.value,
            "throughput": v,
            "latency_s": table.latency.get(p),
        }
        for p, v in sorted(table.throughput.items())
    ]
    columns = (*THROUGHPUT_COLUMNS, *OPTIONAL_THROUGHPUT_COLUMNS)
    return write_table(rows, path, columns, {"fingerprint": dict(table.fingerprint)})
