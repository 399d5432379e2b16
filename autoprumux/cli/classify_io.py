"""``autoprumux classify``'s text in and out: reading inputs, shaping what is printed.

Inputs (``--input FILE|-``):
- a table: ``.tsv`` or ``.csv`` with a header row, ``.jsonl`` / ``.json`` (JSON Lines, or one
  array of objects, as ``autoprumux init`` reads them) or ``.parquet``. Its text column(s) are
  ``--column NAME`` (pair tasks: ``--column FIRST,SECOND``) or, by default, the columns the
  model was trained on (its study's ``[data] text``; SST-2: ``sentence``). A ``.tsv`` is read
  as GLUE writes it (tabs, no quoting). When the table also holds the model's label column
  (``[data] label``; SST-2: ``label``), its label names or ids, the model's metric against it
  is reported (:func:`gold_score`), and accuracy beside it when the metric is another. A row
  whose label cell is empty (or null) is classified unlabelled and left out of the metric,
  which says how many rows it counted; a column without any label gives no metric. A CSV
  row may end with empty cells the header lacks (a trailing comma), never with more values;
  a header may not name a column twice;
- anything else, and stdin: one input per line (a pair task: the two sentences separated by a
  tab).

A blank line, and a table's row whose text is empty or only spaces, is no input: skipped and
counted (``blank_lines``), and out of the metric; a pair with one of its two texts empty is
refused. A file may be compressed (``.xz``, ``.gz``, ``.bz2``: GLUE's ``dev.tsv.xz`` as
autoprumux ships it); it is read as the file its name gives without that suffix
(``dev.tsv.xz``: a ``.tsv``).

Every input keeps its line number (Parquet and a JSON array: its row's number, from 1; a CSV
record over several lines: the line it starts on), so a bad line is named and an output row
says where its input came from. Pure Python: no torch.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.metrics import Metric, score
from autoprumux.files.cell_text import scalar_text

if TYPE_CHECKING:
    from trainers.deploy.inference import PredictedLabel

csv.field_size_limit(sys.maxsize)

Text = str | tuple[str, str]


class InputError(AutoPruMuxError):
    """An input file cannot be classified: it names the file and the line."""


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What the model reads: its GLUE text columns (1 or 2), label column and label names."""

    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...]

    @property
    def pair(self) -> bool:
        return len(self.text_columns) == 2


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What ``--input`` holds, in input order, with where each input came from."""

    texts: tuple[Text, ...]
    # the source line of every input (1-based; a CSV's header is 1; Parquet, a JSON array: row)
    lines: tuple[int, ...]
    source: str  # the file's path, or "<stdin>"
    # label ids from the label column, when it is there; None for an input whose cell is empty
    gold: tuple[int | None, ...] | None = None
    label_column: str | None = None
    blank_lines: int = 0  # the lines and rows without text, skipped

    @property
    def labelled(self) -> int:
        """The inputs with a gold label (those the metric is computed on)."""
        return sum(1 for label in self.gold or () if label is not None)


def read_inputs(
    path: str, spec: InputSpec, columns: str | None = None, stdin: BinaryIO | None = None
) -> Inputs:
    """The inputs of ``--input PATH`` ("-": stdin, a binary stream)."""
    source = "<stdin>" if path == "-" else path
    if path == "-":
        data = (stdin or sys.stdin.buffer).read()
        kind = ""
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise FieldError("--input", f"{path}: {err.strerror or err}") from None
        compression = Path(path).suffix.lower()
        if compression in _DECOMPRESS:
            data = _decompress(data, compression, source)
            kind = Path(Path(path).stem).suffix.lower()  # dev.tsv.xz: .tsv
        else:
            kind = Path(path).suffix.lower()
    if kind not in _TABLES:
        if columns:
            raise FieldError(
                "--column", f"{source} is not a table ({', '.join(_TABLES)}); --column needs one"
            )
        inputs = _read_lines(_decode(data, source), source, spec)
    else:
        table = _parquet(data, source) if kind in _PARQUET else _parsed(data, source, kind)
        inputs = _read_table(table, source, spec, columns)
    if not inputs.texts:
        raise InputError(f"{source}: no inputs to classify")
    return inputs


# the suffixes of the tables classify reads (under a compression suffix), those `autoprumux
# init` reads (but .txt: lines); a JSON file holds one object per line (JSON Lines) or one array
# of objects
_JSON = (".jsonl", ".json", ".ndjson")
_PARQUET = (".parquet", ".pq")
_TABLES = (".tsv", ".csv", *_JSON, *_PARQUET)

# a compressed input's suffix -> how to decompress it (the standard library's three)
_DECOMPRESS = {".xz": lzma.decompress, ".gz": gzip.decompress, ".bz2": bz2.decompress}


def _decompress(data: bytes, suffix: str, source: str) -> bytes:
    """The whole file decompressed in memory (GLUE's largest dev split is a few MB)."""
    try:
        return _DECOMPRESS[suffix](data)
    except (lzma.LZMAError, OSError, EOFError, ValueError) as err:
        # a damaged or truncated file, or one named .gz that is not gzip
        raise InputError(f"{source}: cannot be decompressed as {suffix} ({err})") from None


def _decode(data: bytes, source: str) -> str:
    """UTF-8 (a BOM, as spreadsheets write it, dropped); other bytes name their line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"{source}: line {line} is not UTF-8 text (byte {err.start})") from None


def _read_lines(text: str, source: str, spec: InputSpec) -> Inputs:
    """One input per non-blank line; a pair task's two texts split at the one tab."""
    texts: list[Text] = []
    lines: list[int] = []
    blank = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            blank += 1
            continue
        if spec.pair:
            parts = line.split("\t")
            if len(parts) != 2:
                raise InputError(
                    f"{source}: line {number}: {len(parts)} tab-separated field(s); this model "
                    "classifies sentence pairs: FIRST<TAB>SECOND on each line"
                )
            _check_pair(parts, ("the first text", "the second text"), f"{source}: line {number}")
            texts.append((parts[0], parts[1]))
        else:
            texts.append(line)
        lines.append(number)
    return Inputs(texts=tuple(texts), lines=tuple(lines), source=source, blank_lines=blank)


Cell = object  # a table's value: text (CSV, TSV), or what JSON or Parquet holds (None: none)


@dataclass(frozen=True, kw_only=True)
class _Table:
    """A table as read, before its columns are chosen: the header and the rows, each with
    where it is in the file."""

    columns: tuple[str, ...]
    rows: Iterator[tuple[int, Sequence[Cell]]]  # (its number, its values in columns' order)
    unit: str  # what the numbers count: "line" (CSV, TSV, JSON Lines) or "row" (from 1)
    header_at: str  # where the header is, for a message: "line 1: ", or "" (none in the file)


def _parsed(data: bytes, source: str, kind: str) -> _Table:
    """A text table: CSV or TSV with a header row, or JSON."""
    text = _decode(data, source)
    if kind in _JSON:
        return _json(text, source)
    # a .tsv is read as GLUE writes it (tabs, no quoting)
    reader = (
        csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
        if kind == ".tsv"
        else csv.reader(io.StringIO(text, newline=""))
    )
    header = next(reader, None)
    if not header:
        raise InputError(f"{source}: no header row (a table names its columns on line 1)")

    def rows() -> Iterator[tuple[int, Sequence[Cell]]]:
        # a record's number is the line it starts on: a quoted cell may hold line breaks, and
        # line_num is the last line read
        start = reader.line_num + 1
        for row in reader:
            # a row may end with empty cells the header lacks (a trailing comma), never more
            if any(cell.strip() for cell in row[len(header) :]):
                raise _ragged(f"{source}: line {start}", row, header)
            yield start, row
            start = reader.line_num + 1

    return _Table(columns=tuple(header), rows=rows(), unit="line", header_at="line 1: ")


def _json(text: str, source: str) -> _Table:
    """JSON Lines (an object per line; a blank line is a row without text), or one array of
    objects (numbered as rows from 1)."""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{source}: line {err.lineno} is not JSON ({err.msg})") from None
        unit, numbered = "row", list(enumerate(items, start=1))
    else:
        unit, numbered = "line", []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                numbered.append((number, {}))  # no text: counted as a blank line
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise InputError(f"{source}: line {number} is not JSON ({err.msg})") from None
    columns: dict[str, None] = {}  # every object's keys, in the order first seen
    for number, item in numbered:
        if not isinstance(item, dict):
            raise InputError(f"{source}: {unit} {number} is not a JSON object")
        columns.update(dict.fromkeys(item))
    rows = ((number, [item.get(c) for c in columns]) for number, item in numbered)
    return _Table(columns=tuple(columns), rows=rows, unit=unit, header_at="")


def _parquet(data: bytes, source: str) -> _Table:
    """A Parquet file's columns; its rows numbered from 1."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # the file's own reader: a dataset's would refuse a repeated name in its words
        table = pq.ParquetFile(pa.BufferReader(data)).read()
    except (pa.ArrowException, OSError, ValueError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{source}: cannot be read as Parquet ({why})") from None
    values = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = enumerate(zip(*values, strict=True), start=1)
    return _Table(columns=tuple(table.column_names), rows=rows, unit="row", header_at="")


def _read_table(table: _Table, source: str, spec: InputSpec, columns: str | None) -> Inputs:
    """A table's text column(s), and its gold labels where it has the task's label column.
    A row without text (its text cells empty, or a blank line) is skipped and counted, as a
    blank line of plain text is; a pair with one text empty is refused."""
    repeated = [name for i, name in enumerate(table.columns) if name and name in table.columns[:i]]
    if repeated:
        raise InputError(
            f"{source}: {table.header_at}column {repeated[0]!r} appears more than once; each "
            "column needs its own name"
        )
    positions = _text_positions(table, source, spec, columns)
    names = [table.columns[p] for p in positions]
    gold_at = table.columns.index(spec.label_column) if spec.label_column in table.columns else None
    needed = max(positions + ([gold_at] if gold_at is not None else []))
    texts: list[Text] = []
    lines: list[int] = []
    gold: list[int | None] = []
    blank = 0
    for number, row in table.rows:
        where = f"{source}: {table.unit} {number}"
        # a CSV row short of a column read (not a blank line: a row without text)
        if len(row) <= needed and any(str(cell).strip() for cell in row):
            raise _ragged(where, row, table.columns)
        values = [_text(row[p], table.columns[p], where) if p < len(row) else "" for p in positions]
        if not any(value.strip() for value in values):
            blank += 1
            continue
        if spec.pair:
            _check_pair(values, [f"column {name!r}" for name in names], where)
        texts.append((values[0], values[1]) if spec.pair else values[0])
        lines.append(number)
        if gold_at is not None:
            gold.append(_label_id(_text(row[gold_at], spec.label_column, where), spec, where))
    return Inputs(
        texts=tuple(texts),
        lines=tuple(lines),
        source=source,
        gold=tuple(gold) if gold_at is not None else None,
        label_column=spec.label_column if gold_at is not None else None,
        blank_lines=blank,
    )


def _ragged(where: str, row: Sequence[Cell], header: Sequence[str]) -> InputError:
    """A CSV row of more values than its header, or short of a column the model reads."""
    return InputError(f"{where}: {len(row)} field(s), the header names {len(header)}")


def _check_pair(values: Sequence[str], names: Sequence[str], where: str) -> None:
    """A pair's two texts, of which one may not be empty alone (both: a blank input)."""
    for value, name in zip(values, names, strict=True):
        if not value.strip():
            raise InputError(f"{where}: {name} is empty; a pair needs both texts")


def _text(cell: Cell, column: str, where: str) -> str:
    """A cell as text (:func:`~autoprumux.files.cell_text.scalar_text`: a float label 1.0 as
    "1"), nothing as empty; a list or an object refused."""
    if cell is None:
        return ""
    if isinstance(cell, list | tuple | dict):
        kind = "an object" if isinstance(cell, dict) else "a list"
        raise InputError(f"{where}: column {column!r} holds {kind}; a cell holds one text or label")
    text = scalar_text(cell)
    return str(cell) if text is None else text


def _text_positions(table: _Table, source: str, spec: InputSpec, columns: str | None) -> list[int]:
    """Where the model's text column(s) are in a table's columns: --column's names, or the
    task's GLUE columns."""
    wanted = tuple(c.strip() for c in columns.split(",")) if columns else spec.text_columns
    if len(wanted) != len(spec.text_columns):
        raise FieldError(
            "--column",
            f"{columns!r} names {len(wanted)} column(s); this model reads "
            f"{len(spec.text_columns)} ({', '.join(spec.text_columns)})",
        )
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise InputError(
            f"{source}: {table.header_at}no column {missing[0]!r} (columns: "
            f"{', '.join(table.columns)}); name the text column with --column"
        )
    return [table.columns.index(c) for c in wanted]


def _label_id(raw: str, spec: InputSpec, where: str) -> int | None:
    """A gold label as its id: GLUE files hold the id (SST-2: 0/1), others the name; an
    empty cell (or null) as None: the input is unlabelled, left out of the metric."""
    value = raw.strip()
    if not value:
        return None
    if value in spec.labels:
        return spec.labels.index(value)
    if value.isdigit() and int(value) < len(spec.labels):
        return int(value)
    raise InputError(
        f"{where}: label {raw!r} in column {spec.label_column!r} is not one of: "
        f"{', '.join(spec.labels)} (or 0..{len(spec.labels) - 1})"
    )


@dataclass(frozen=True, kw_only=True)
class GoldScore:
    """The predictions against the gold column: the model's metric, and accuracy."""

    metric: Metric  # the model's ([study] metric of the study that trained it)
    metric_label: str  # how it is named: "macro-F1", "F1 of 'pos'", ...
    value: float  # the metric's value
    accuracy: float  # the fraction of labelled inputs whose predicted label is the gold one
    labelled: int  # the inputs with a gold label: those both figures count
    inputs: int  # every input classified, labelled or not

    def describe(self, column: str | None) -> str:
        """``macro-F1 0.8123, accuracy 0.9000 against column 'label'`` (accuracy alone when it
        is the metric), and where some inputs had no label, how many were counted:
        ``... against column 'label' on its 3 labelled inputs of 5``."""
        named = (
            f"{self.metric_label} {self.value:.4f}, " if self.metric is not Metric.ACCURACY else ""
        )
        counted = (
            f" on its {self.labelled} labelled inputs of {self.inputs}"
            if self.labelled < self.inputs
            else ""
        )
        return f"{named}accuracy {self.accuracy:.4f} against column {column!r}{counted}"


def gold_confusion(
    inputs: Inputs, predicted: list[str], labels: tuple[str, ...]
) -> list[list[int]] | None:
    """``confusion[gold][predicted]`` over the labelled inputs (label ids, ``labels``' order);
    None without gold (no label column, or none of its cells holds a label)."""
    if inputs.gold is None or not inputs.labelled:
        return None
    counts = [[0] * len(labels) for _ in labels]
    ids = {label: i for i, label in enumerate(labels)}
    for gold, label in zip(inputs.gold, predicted, strict=True):
        if gold is not None:  # an unlabelled input: classified, not scored
            counts[gold][ids[label]] += 1
    return counts


def accuracy(inputs: Inputs, predicted: list[str], labels: tuple[str, ...]) -> float | None:
    """The fraction of labelled inputs whose predicted label is the gold one; None without
    gold."""
    graded = gold_score(inputs, predicted, labels)
    return None if graded is None else graded.accuracy


def gold_score(
    inputs: Inputs,
    predicted: list[str],
    labels: tuple[str, ...],
    metric: Metric = Metric.ACCURACY,
    positive: int = 1,
    positive_label: str = "",
) -> GoldScore | None:
    """The model's ``metric`` (F1: of label id ``positive``, named ``positive_label``) and
    accuracy of the predicted labels against the gold ones, on the labelled inputs; None
    without gold (:func:`gold_confusion`)."""
    confusion = gold_confusion(inputs, predicted, labels)
    if confusion is None:
        return None
    return GoldScore(
        metric=metric,
        metric_label=metric.label(positive_label),
        value=score(metric, confusion, positive),
        accuracy=score(Metric.ACCURACY, confusion),
        labelled=inputs.labelled,
        inputs=len(predicted),
    )


def prediction_rows(
    inputs: Inputs, predictions: list[PredictedLabel], labels: tuple[str, ...]
) -> list[str]:
    """Tab-separated output: line, label, then one probability per label."""
    rows = ["\t".join(["line", "label", *labels])]
    for line, prediction in zip(inputs.lines, predictions, strict=True):
        probabilities = [f"{prediction.probabilities[label]:.4f}" for label in labels]
        rows.append("\t".join([str(line), prediction.label, *probabilities]))
    return rows
