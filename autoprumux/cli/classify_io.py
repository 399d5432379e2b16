"""``autoprumux classify``'s text in and out: reading inputs, shaping what is printed.

Inputs (``--input FILE|-``):
- a ``.tsv`` or ``.csv`` file with a header row: the text column(s) are ``--column NAME`` (pair
  tasks: ``--column FIRST,SECOND``) or, by default, the columns the model was trained on (its
  study's ``[data] text``; SST-2: ``sentence``). A ``.tsv`` is read as GLUE writes it (tabs, no
  quoting). When the file also holds the model's label column (``[data] label``; SST-2:
  ``label``), its label names or ids, the model's metric against it is reported
  (:func:`gold_score`), and accuracy beside it when the metric is another;
- anything else, and stdin: one input per line (a pair task: the two sentences separated by a
  tab). Blank lines are skipped and counted.

A file may be compressed (``.xz``, ``.gz``, ``.bz2``: GLUE's ``dev.tsv.xz`` as autoprumux ships
it); it is read as the file its name gives without that suffix (``dev.tsv.xz``: a ``.tsv``).

Every input keeps its line number, so a bad line is named and an output row says where its
input came from. Pure Python: no torch.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.metrics import Metric, score

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
    lines: tuple[int, ...]  # the source line of every input (1-based; a table's header is 1)
    source: str  # the file's path, or "<stdin>"
    gold: tuple[int, ...] | None = None  # label ids from the label column, when it is there
    label_column: str | None = None
    blank_lines: int = 0


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
    text = _decode(data, source)
    table = kind in (".tsv", ".csv")
    if columns and not table:
        raise FieldError("--column", f"{source} is not a .tsv or .csv table; --column needs one")
    inputs = (
        _read_table(text, source, spec, columns, tab=kind == ".tsv")
        if table
        else _read_lines(text, source, spec)
    )
    if not inputs.texts:
        raise InputError(f"{source}: no inputs to classify")
    return inputs


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
            texts.append((parts[0], parts[1]))
        else:
            texts.append(line)
        lines.append(number)
    return Inputs(texts=tuple(texts), lines=tuple(lines), source=source, blank_lines=blank)


def _read_table(text: str, source: str, spec: InputSpec, columns: str | None, tab: bool) -> Inputs:
    """A table's text column(s), and its gold labels where it has the task's label column."""
    reader = (
        csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
        if tab
        else csv.reader(io.StringIO(text, newline=""))
    )
    header = next(reader, None)
    if not header:
        raise InputError(f"{source}: no header row (a table names its columns on line 1)")
    positions = _text_positions(header, source, spec, columns)
    gold_at = header.index(spec.label_column) if spec.label_column in header else None
    texts: list[Text] = []
    lines: list[int] = []
    gold: list[int] = []
    for row in reader:
        number = reader.line_num
        if not any(field.strip() for field in row):
            continue
        needed = max(positions + ([gold_at] if gold_at is not None else []))
        if len(row) <= needed:
            raise InputError(
                f"{source}: line {number}: {len(row)} field(s), expected {len(header)}"
            )
        values = [row[p] for p in positions]  # two for a pair (its text columns), else one
        texts.append((values[0], values[1]) if spec.pair else values[0])
        lines.append(number)
        if gold_at is not None:
            gold.append(_label_id(row[gold_at], spec, f"{source}: line {number}"))
    return Inputs(
        texts=tuple(texts),
        lines=tuple(lines),
        source=source,
        gold=tuple(gold) if gold_at is not None else None,
        label_column=spec.label_column if gold_at is not None else None,
    )


def _text_positions(
    header: list[str], source: str, spec: InputSpec, columns: str | None
) -> list[int]:
    """Where the model's text column(s) are in a table's header row: --column's names, or
    the task's GLUE columns."""
    wanted = tuple(c.strip() for c in columns.split(",")) if columns else spec.text_columns
    if len(wanted) != len(spec.text_columns):
        raise FieldError(
            "--column",
            f"{columns!r} names {len(wanted)} column(s); this model reads "
            f"{len(spec.text_columns)} ({', '.join(spec.text_columns)})",
        )
    missing = [c for c in wanted if c not in header]
    if missing:
        raise InputError(
            f"{source}: line 1: no column {missing[0]!r} (columns: {', '.join(header)}); "
            "name the text column with --column"
        )
    return [header.index(c) for c in wanted]


def _label_id(raw: str, spec: InputSpec, where: str) -> int:
    """A gold label as its id: GLUE files hold the id (SST-2: 0/1), others the name."""
    value = raw.strip()
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
    accuracy: float  # the fraction of inputs whose predicted label is the gold one

    def describe(self, column: str | None) -> str:
        """``macro-F1 0.8123, accuracy 0.9000 against column 'label'`` (accuracy alone when it
        is the metric)."""
        named = (
            f"{self.metric_label} {self.value:.4f}, " if self.metric is not Metric.ACCURACY else ""
        )
        return f"{named}accuracy {self.accuracy:.4f} against column {column!r}"


def gold_confusion(
    inputs: Inputs, predicted: list[str], labels: tuple[str, ...]
) -> list[list[int]] | None:
    """``confusion[gold][predicted]`` over the inputs (label ids, ``labels``' order); None
    without gold."""
    if inputs.gold is None:
        return None
    counts = [[0] * len(labels) for _ in labels]
    ids = {label: i for i, label in enumerate(labels)}
    for gold, label in zip(inputs.gold, predicted, strict=True):
        counts[gold][ids[label]] += 1
    return counts


def accuracy(inputs: Inputs, predicted: list[str], labels: tuple[str, ...]) -> float | None:
    """The fraction of inputs whose predicted label is the gold one; None without gold."""
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
    accuracy of the predicted labels against the gold ones; None without gold."""
    confusion = gold_confusion(inputs, predicted, labels)
    if confusion is None:
        return None
    return GoldScore(
        metric=metric,
        metric_label=metric.label(positive_label),
        value=score(metric, confusion, positive),
        accuracy=score(Metric.ACCURACY, confusion),
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
