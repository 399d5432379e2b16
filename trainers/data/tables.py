"""A study's labelled text as Arrow tables: read through ``datasets`` (its CSV, JSON and Parquet
builders, or ``load_dataset`` of a hub dataset; the Arrow cache it writes is reused by every
later read of the same file), checked, its labels numbered, its missing splits carved.

:func:`load_tables` turns a :class:`~autoprumux.core.data_spec.DataSpec` into
:class:`TaskTables`: train, dev and (optionally) test, each an Arrow table with the columns
``text``, ``text_pair`` (pair tasks) and ``label`` (int64 ids), and the label names. Nothing
here holds the text in Python lists: the checks are Arrow compute kernels over the columns.
Every refusal is a :class:`DataError` naming the file, the column or the row.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import lzma
import random
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoprumux.core.data_spec import (
    GLUE_HUB_DATASET,
    DataSpec,
    FileFormat,
    FileSource,
    HubSource,
    Source,
)
from autoprumux.core.errors import DataError
from autoprumux.files.cell_text import scalar_text

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

# label values: a largest class this many times the smallest is "heavy" imbalance (a warning)
IMBALANCE_RATIO = 10
# above this many distinct values a label column is more likely an id or a text (init says so)
MAX_LABELS = 1000
# a label column of more distinct values than this and than half its rows is a text or an id:
# most of its classes would hold a single example (300 classes of 10 rows each are labels)
MANY_LABELS = 50
# a dev split of fewer rows decides nothing: one example moves its accuracy by 10 points or more
MIN_DEV_ROWS = 10
SHOWN_VARIANTS = 5  # groups of labels spelled alike that are named one a note; the rest counted
JSON_BATCH_ROWS = 10_000  # mixed JSON values decoded at a time (what sits in Python lists)
# a label that is a number: 1, 1.0 and 1e0 spell one (a warning, not a merge)
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_UNNAMED = re.compile(r"Unnamed: \d+")  # a column whose header cell is empty, as pandas names it


@dataclass(frozen=True)
class TaskTables:
    """The study's splits, each an Arrow table of ``text``, [``text_pair``,] ``label``."""

    train: pa.Table
    dev: pa.Table
    test: pa.Table | None
    label_names: tuple[str, ...]  # display name of each label id
    source_id: str  # data_id: the train and dev sources' content and the settings that shaped them
    test_id: str  # the test source's content ("carved": from train, by source_id)
    notes: tuple[str, ...]  # the warnings given while loading (skipped rows, imbalance, ...)

    @property
    def is_pair(self) -> bool:
        return "text_pair" in self.train.column_names


def load_tables(spec: DataSpec, cache_dir: Path | None = None) -> TaskTables:
    """Read, check and carve the study's data (``cache_dir``: where ``datasets`` keeps its
    Arrow copies of local files; None: its default)."""
    notes: list[str] = []
    given: dict[str, Source] = {"train": spec.train}  # the splits named; the others are carved
    given.update((name, s) for name, s in (("dev", spec.dev), ("test", spec.test)) if s)
    tables = {
        name: _normalized(read_source(source, cache_dir), spec, source, notes)
        for name, source in given.items()
    }
    values = spec.labels or _sorted_labels(tables["train"], spec)
    if len(values) < 2:
        raise DataError(
            _describe(spec.train),
            f"column {spec.label!r} holds one distinct label ({values[0]!r}); a classifier needs "
            "at least two",
        )
    numbered = {  # train's labels are checked where [data] labels names them
        name: _numbered(table, values, spec, given[name], bool(spec.labels) or name != "train")
        for name, table in tables.items()
    }
    train = numbered["train"]
    if not _is_preset(spec.train):  # a GLUE task's few are its own, and no user's to mend
        _warn_conflicting_labels(train, values, notes)
    test = numbered.get("test")
    if test is None and spec.test_fraction > 0:
        train, test = _carved(
            train, round(spec.test_fraction * train.num_rows), spec, "test", notes
        )
    dev = numbered.get("dev")
    if dev is None:
        rows = min(round(spec.dev_fraction * train.num_rows), spec.dev_max_rows)
        train, dev = _carved(train, rows, spec, "dev", notes)
    train = _subset(train, spec.max_train_examples, spec.subset, spec.seed)
    dev = _subset(dev, spec.max_eval_examples, "first", spec.seed)
    _warn_label_variants(values, notes)
    _warn_imbalance(train, values, notes)
    _warn_small_dev(dev, notes)
    _warn_overlap(train, dev, "dev", notes, carved=spec.dev is None)
    if test is not None:
        _warn_overlap(train, test, "test", notes, carved=spec.test is None)
    names = _display_names(values, spec.label_meanings)
    for note in notes:
        logger.warning(note)
    return TaskTables(
        train=train,
        dev=dev,
        test=test,
        label_names=names,
        source_id=data_id(spec),
        test_id=_content_id(spec.test) if spec.test is not None else "carved",
        notes=tuple(notes),
    )


# -- reading -------------------------------------------------------------------------------


def read_source(source: Source, cache_dir: Path | None = None) -> pa.Table:
    """A split's table as ``datasets`` reads it (every column; CSV and TSV columns as text, a
    JSON column of mixed types as text too)."""
    if isinstance(source, HubSource):
        return _json_as_text(_read_hub(source))
    path = source.path
    if not path.is_file():
        why = "no such file" if not path.exists() else "is not a file"
        if source.glue:
            why += (
                "; a GLUE folder holds <TASK>/train.tsv and <TASK>/dev.tsv (MNLI: "
                "dev_matched.tsv), or the same with .xz (set [data] glue_dir in the study file, "
                'or source = "hub" to load GLUE from the datasets hub)'
            )
        raise DataError(str(path), why)
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise DataError(str(path), f"cannot be read: {err.strerror or err}") from None
    builder, options = _builder(source)
    try:
        with _quiet_datasets():
            import datasets

            loaded = datasets.load_dataset(
                builder,
                data_files={"train": str(path)},
                split="train",
                cache_dir=str(cache_dir) if cache_dir else None,
                **options,
            )
    except Exception as err:  # datasets wraps the parser's error
        if _holds_no_rows(source):  # datasets' words for it name its internals
            tabular = source.format in (FileFormat.CSV, FileFormat.TSV)
            why = "holds no rows" + (" (only its header)" if tabular else "")
            raise DataError(str(path), why) from None
        raise DataError(str(path), _read_failure(err, source)) from None
    return _json_as_text(_arrow(loaded))


def _holds_no_rows(source: FileSource) -> bool:
    """Whether a file ``datasets`` failed to read holds no rows: a Parquet file of 0 rows, a
    CSV or TSV file of a header alone, a JSON Lines file of blank lines (asked only after a
    failure: a file that reads costs nothing more)."""
    if source.format is FileFormat.PARQUET:
        import pyarrow.parquet as pq

        try:
            return bool(pq.read_metadata(source.path).num_rows == 0)
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            return False
    import fsspec

    header = 0 if source.format is FileFormat.JSON else 1
    try:
        with fsspec.open(str(source.path), "rt", compression="infer", encoding="utf-8") as handle:
            lines = list(itertools.islice(filter(str.strip, handle), header + 1))
    except (OSError, EOFError, ValueError, lzma.LZMAError):  # UnicodeError is a ValueError
        return False
    return len(lines) <= header


def _file_columns(source: FileSource) -> list[str]:
    """A CSV or TSV file's header (read without reading the rows; a byte-order mark, as
    spreadsheets write one, left out: the parser leaves it out of the names too)."""
    import csv

    import fsspec

    try:
        with fsspec.open(
            str(source.path), "rt", compression="infer", encoding="utf-8-sig"
        ) as handle:
            header = next(csv.reader(handle, **_dialect(source)), [])
    except UnicodeDecodeError:
        raise DataError(str(source.path), _read_failure(UnicodeError(), source)) from None
    except (OSError, EOFError, ValueError, lzma.LZMAError) as err:  # a damaged compressed file
        raise DataError(
            str(source.path), f"cannot be read as {source.format.value.upper()}: {err}"
        ) from None
    if not header:
        raise DataError(str(source.path), "is empty (no header row)")
    if len(header) == 1:
        _check_separator(header[0], source)
    return [str(name) for name in header]


# a separator a header of one column may hold, and its name
_SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def _check_separator(header: str, source: FileSource) -> None:
    """A header of one column that holds another separator than the format's: a file written
    with that separator (a semicolon, as spreadsheets in many locales write CSV), refused."""
    expected = _dialect(source)["delimiter"]
    found = [sep for sep in _SEPARATORS if sep != expected and sep in header]
    if not found:
        return
    other = {",": "csv", "\t": "tsv"}.get(found[0])  # a format that reads it as it is
    fix = (
        f'name it .{other} or set [data] format = "{other}"'
        if other
        else f"save it {_SEPARATORS[expected]}-separated"
    )
    raise DataError(
        str(source.path),
        f"its header {header!r} is one column holding {found[0]!r}: the file looks "
        f"{_SEPARATORS[found[0]]}-separated, and {source.format.value.upper()} is "
        f"{_SEPARATORS[expected]}-separated ({fix})",
    )


def _builder(source: FileSource) -> tuple[str, dict[str, Any]]:
    """The ``datasets`` builder of a file and its options."""
    if source.format is FileFormat.JSON:
        return "json", {}
    if source.format is FileFormat.PARQUET:
        return "parquet", {}
    import datasets

    # every column as text: pandas would guess per chunk of rows (a label column of 0/1 in one
    # chunk and "yes" in the next fails), and turn texts such as "NA" or "null" into nothing
    # an empty header cell (pandas' index column, a spreadsheet's trailing empty columns) is
    # named as the parser names it: "Unnamed: 2" for the third column
    columns = [name or unnamed_column(k) for k, name in enumerate(_file_columns(source))]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError(str(source.path), f"its header repeats column(s) {', '.join(repeated)}")
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    options: dict[str, Any] = {
        "features": features,
        "keep_default_na": False,
        "na_filter": False,
        **{("sep" if k == "delimiter" else k): v for k, v in _dialect(source).items()},
    }
    return "csv", options


def unnamed_column(index: int) -> str:
    """The name a CSV or TSV column whose header cell is empty is read under (``index``: its
    position from 0), as pandas names it."""
    return f"Unnamed: {index}"


def is_unnamed(name: str) -> bool:
    """Whether a column is one whose header cell was empty (:func:`unnamed_column`), or a
    JSON key that is empty."""
    return not name or _UNNAMED.fullmatch(name) is not None


def _dialect(source: FileSource) -> dict[str, Any]:
    """The separator and quoting of a CSV or TSV file. A TSV file quotes nothing (GLUE's, and
    what ``autoprumux classify`` reads): every line is a row, a quote is text."""
    import csv

    if source.format is FileFormat.TSV:
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return {"delimiter": ","}


def _read_hub(source: HubSource) -> pa.Table:
    try:
        with _quiet_datasets():
            import datasets

            loaded = datasets.load_dataset(
                source.dataset, source.config or None, split=source.split
            )
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise DataError(
            source.describe(), f"cannot be loaded: {type(err).__name__}: {first}"
        ) from None
    # a ClassLabel column holds ids: kept (the hub numbers a preset's labels by them)
    return _arrow(loaded)


def _arrow(loaded: Any) -> pa.Table:
    """The Arrow table of a loaded split (memory-mapped from ``datasets``' cache)."""
    table: pa.Table = loaded.data.table
    return table


def _json_as_text(table: pa.Table) -> pa.Table:
    """``table`` with each column of mixed JSON values (``datasets``' ``Json``: a JSON Lines
    column holding numbers on some lines and strings on others) as text, as a CSV column reads:
    a string as itself, a number as its digits (an integral one as an integer, as a column of
    numbers alone reads: ``1``, ``1.0`` and ``"1"`` are all ``1``), ``true``/``false``, a null
    as a null, a list or an object as its JSON text."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if isinstance(field.type, pa.JsonType):
            table = table.set_column(index, field.name, _json_values_as_text(table.column(index)))
    return table


def _json_values_as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow as pa

    parts = []
    for chunk in column.chunks:
        storage = chunk.storage  # each value's JSON text
        for start in range(0, len(storage), JSON_BATCH_ROWS):
            values = storage.slice(start, JSON_BATCH_ROWS).to_pylist()
            parts.append(pa.array([_json_text(v) for v in values], pa.string()))
    return pa.chunked_array(parts, pa.string())


def _json_text(encoded: str | None) -> str | None:
    """One JSON value as text (:func:`_json_as_text`): a null as None, a list or an object as
    its JSON text."""
    if encoded is None:
        return None
    value = json.loads(encoded)
    if value is None:
        return None
    text = scalar_text(value)
    return encoded if text is None else text


def _read_failure(err: Exception, source: FileSource) -> str:
    """One line for why ``datasets`` could not read a file: the parser's own words (they name
    the line), or for bytes that are not UTF-8 the row that holds them."""
    cause: BaseException = err
    while cause.__cause__ is not None or cause.__context__ is not None:
        if isinstance(cause, UnicodeError):
            break
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    if isinstance(cause, UnicodeError):
        line = _first_non_utf8_line(source.path)
        where = f"line {line}" if line else "a line"
        return f"{where} holds bytes that are not UTF-8; save the file as UTF-8"
    text = str(cause).strip().splitlines()
    message = text[0] if text else type(cause).__name__
    if "Expected" in message and "fields" in message:  # pandas: a row with too many fields
        message += " (a ragged row: quote fields that hold the separator)"
    if source.format is FileFormat.JSON:  # the parser names a byte position, not the line
        message = _first_bad_json_line(source.path) or message
    return f"cannot be read as {source.format.value.upper()}: {message}"


def _first_bad_json_line(path: Path) -> str | None:
    """The first line of a JSON Lines file that is not a JSON object, and why; None where
    every line is one, or the file is a JSON array (read only after a failed read)."""
    import fsspec

    try:
        with fsspec.open(str(path), "rt", compression="infer", encoding="utf-8-sig") as handle:
            lines = ((n, line) for n, line in enumerate(handle, start=1) if line.strip())
            for index, (number, line) in enumerate(lines):
                if index == 0 and line.lstrip().startswith("["):
                    return None  # a JSON array, not JSON Lines: the parser's own words
                try:
                    value = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as err:
                    return f"line {number}: {err.msg} (column {err.colno})"
                if not isinstance(value, dict):
                    return f"line {number}: {type(value).__name__} is not a JSON object"
    except (OSError, EOFError, ValueError, lzma.LZMAError):  # UnicodeError is a ValueError
        return None
    return None


def _first_non_utf8_line(path: Path) -> int | None:
    """The 1-based line of ``path`` (decompressed) whose bytes first fail to decode."""
    import fsspec

    with fsspec.open(str(path), "rb", compression="infer") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """``datasets`` logs a failed read as an error before raising it, and draws a progress bar
    of its Arrow copy: the raised error is reported (one line), neither the log nor the bar (a
    file is copied once; its token ids show their own bar, :mod:`trainers.data.token_cache`)."""
    import datasets

    log = logging.getLogger("datasets")
    level, bars = log.level, datasets.is_progress_bar_enabled()
    log.setLevel(logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        log.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


# -- checking and numbering ------------------------------------------------------------------


def _normalized(table: pa.Table, spec: DataSpec, source: Source, notes: list[str]) -> pa.Table:
    """``table``'s text and label columns renamed ``text``, ``text_pair``, ``label`` (labels as
    text) and ``row`` (each row's number in the source, for the messages), less the rows whose
    text is empty (counted in ``notes``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    where = _describe(source)
    missing = [c for c in (*spec.text_columns, spec.label) if c not in table.column_names]
    if missing:
        raise DataError(
            where,
            f"has no column {missing[0]!r}; its columns: {', '.join(table.column_names)}",
        )
    label = table[spec.label]
    if holds_lists(label):
        raise DataError(
            where,
            f"column {spec.label!r} holds lists of labels; multi-label classification is not "
            "supported (one label per row)",
        )
    if not table.num_rows:
        raise DataError(where, "holds no rows")
    columns = {"text": _as_text(table[spec.text])}
    if spec.text_pair:
        columns["text_pair"] = _as_text(table[spec.text_pair])
    columns["label"] = _as_text(label)
    columns["row"] = pa.chunked_array([pa.array(np.arange(table.num_rows, dtype=np.int64))])
    normalized = pa.table(columns)
    # a row without its text (either text of a pair) teaches nothing: skipped, and counted
    blank = _blank(normalized["text"])
    if spec.text_pair:
        blank = pc.or_(blank, _blank(normalized["text_pair"]))
    kept = pc.invert(blank)
    row = _first_true(pc.and_(kept, _blank(normalized["label"])))
    if row is not None:
        raise DataError(where, f"{_row(source, row)}: column {spec.label!r} is empty")
    skipped = pc.sum(blank).as_py() or 0
    if skipped:
        normalized = normalized.filter(kept)
        which = (
            f"first or second text ({spec.text!r}, {spec.text_pair!r})" if spec.text_pair else ""
        )
        notes.append(f"{where}: skipped {skipped} row(s) whose {which or 'text'} is empty")
        if not normalized.num_rows:
            where_text = (
                f"columns {spec.text!r} and {spec.text_pair!r}"
                if spec.text_pair
                else f"column {spec.text!r}"
            )
            raise DataError(where, f"holds no row with text in {where_text}")
    return normalized


def _numbered(
    table: pa.Table, values: tuple[str, ...], spec: DataSpec, source: Source, checked: bool
) -> pa.Table:
    """``table`` with its label text replaced by the label's id in ``values`` (int64)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pc.index_in(table["label"], value_set=pa.array(values, pa.string()))
    if checked:
        found = _first_true(pc.is_null(ids))
        if found is not None:
            label, row = table["label"][found].as_py(), table["row"][found].as_py()
            # the preset's or [data] labels', else what train holds
            origin = "the task's labels" if spec.labels else "the training split's labels"
            raise DataError(
                _describe(source),
                f"{_row(source, row)}: label {label!r} is not one of {origin}: {', '.join(values)}",
            )
    numbered = table.set_column(
        table.column_names.index("label"), "label", pc.cast(ids, pa.int64())
    )
    return numbered.drop_columns(["row"])


def _sorted_labels(train: pa.Table, spec: DataSpec) -> tuple[str, ...]:
    """The distinct labels of ``train``, sorted: as numbers when every one is an integer. A
    column of more than :data:`MANY_LABELS` distinct values and more than half its rows holds
    texts or ids, not labels: refused."""
    import pyarrow.compute as pc

    distinct = [str(v) for v in pc.unique(train["label"]).to_pylist()]
    rows = train.num_rows
    if len(distinct) > MANY_LABELS and 2 * len(distinct) > rows:
        raise DataError(
            _describe(spec.train),
            f"column {spec.label!r} holds {len(distinct):,} distinct values in {rows:,} rows: a "
            f"text or an id, not a label (a label column holds at most {MANY_LABELS} distinct "
            "values or at most half as many as its rows); name the label column ([data] label, "
            "init's --label)",
        )
    if len(distinct) > MAX_LABELS:
        raise DataError(
            "[data] label",
            f"the label column holds {len(distinct)} distinct values (at most {MAX_LABELS}); "
            "is it a text or an id column?",
        )
    if all(_is_integer(v) for v in distinct):
        return tuple(sorted(distinct, key=int))
    return tuple(sorted(distinct))


def _display_names(values: tuple[str, ...], meanings: tuple[str, ...]) -> tuple[str, ...]:
    """What a classifier prints for each id: a preset's meanings of integer labels, else the
    values themselves."""
    return meanings if meanings and len(meanings) == len(values) else values


# -- carving and subsets ---------------------------------------------------------------------


def _carved(
    table: pa.Table, rows: int, spec: DataSpec, name: str, notes: list[str]
) -> tuple[pa.Table, pa.Table]:
    """(the rest, ``rows`` rows) of ``table``: a stratified random split with the study's seed
    (``datasets``' own stratified shuffle split, fed the label ids directly: its
    ``train_test_split`` reads the column row by row, minutes for a million rows);
    unstratified, with a warning, when a label has a single example. The rest keeps the file's
    order."""
    import numpy as np
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    if rows < 1 or rows >= table.num_rows:
        fraction = spec.test_fraction if name == "test" else spec.dev_fraction
        raise DataError(
            f"[data] {name}_fraction",
            f"{fraction!r} of {table.num_rows} training rows carves {rows} rows: the {name} "
            f"split would be {'empty' if rows < 1 else 'all of train'}; give a {name} split",
        )
    labels = table["label"].to_numpy()
    rng = np.random.default_rng(spec.seed)
    try:
        rest, carved = next(
            stratified_shuffle_split_generate_indices(labels, len(labels) - rows, rows, rng=rng)
        )
    except ValueError:  # a label with one example, or more labels than either side's rows
        notes.append(f"the carved {name} split is not stratified: {_unstratified(labels, rows)}")
        order = np.random.default_rng(spec.seed).permutation(len(labels))
        carved, rest = order[:rows], order[rows:]
    return table.take(np.sort(rest)), table.take(np.sort(carved))


def _unstratified(labels: Any, rows: int) -> str:
    """Why ``rows`` of ``labels`` (label ids, numpy) cannot be carved stratified: a stratified
    split holds each label on both sides, so each needs two examples, and each side a row per
    label."""
    import numpy as np

    classes = len(np.unique(labels))
    rest = len(labels) - rows
    if rows < classes:
        return f"its {rows} row(s) cannot hold one of each of the {classes} labels"
    if rest < classes:
        return f"the {rest} row(s) left to train cannot hold one of each of the {classes} labels"
    return "a label has a single example"


def _subset(table: pa.Table, k: int, mode: str, seed: int) -> pa.Table:
    """The first k rows, or k drawn at random with ``seed`` (kept in file order); k = 0 or
    k >= the rows: the whole table. The draw is the one earlier releases made of GLUE's
    sentences, so the presets train on the same examples."""
    if not k or k >= table.num_rows:
        return table
    if mode == "first":
        return table.slice(0, k)
    indices = sorted(random.Random(seed).sample(range(table.num_rows), k))
    return table.take(indices)


# -- warnings --------------------------------------------------------------------------------


def _warn_imbalance(train: pa.Table, values: tuple[str, ...], notes: list[str]) -> None:
    import numpy as np

    counts = np.bincount(train["label"].to_numpy(), minlength=len(values))
    if counts.min() == 0:
        absent = [values[k] for k in np.flatnonzero(counts == 0)]
        notes.append(f"the training split holds no example of label(s) {', '.join(absent)}")
    elif counts.max() >= IMBALANCE_RATIO * counts.min():
        spread = ", ".join(f"{v}: {c}" for v, c in zip(values, counts.tolist(), strict=True))
        notes.append(f"the training labels are heavily imbalanced ({spread})")


def _warn_small_dev(dev: pa.Table, notes: list[str]) -> None:
    """A dev split too small for its figures to decide anything: one example moves each by a
    tenth of its range or more."""
    if dev.num_rows < MIN_DEV_ROWS:
        notes.append(
            f"the dev split holds {dev.num_rows} row(s): every figure the search chooses on is "
            f"measured on {'it' if dev.num_rows == 1 else 'them'}, one example "
            f"{100 / dev.num_rows:.0f} points of accuracy; give a larger dev split (a dev file, "
            "or more training rows to carve it from)"
        )


def _warn_conflicting_labels(train: pa.Table, values: tuple[str, ...], notes: list[str]) -> None:
    """Texts the training split holds under more than one label (the first named): no model
    gets them all right."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.table({"text": _row_text(train), "label": train["label"]})
    grouped = keys.group_by("text").aggregate([("label", "count_distinct")])
    conflicting = grouped.filter(pc.greater(grouped["label_count_distinct"], 1))
    if not conflicting.num_rows:
        return
    example = conflicting["text"][0].as_py()
    labels = pc.unique(keys.filter(pc.equal(keys["text"], example))["label"]).to_pylist()
    shown = example.replace("\x1f", " | ")  # a pair's two texts
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    notes.append(
        f"{conflicting.num_rows:,} text(s) of the training split appear under different labels "
        f"({shown!r}: {', '.join(values[k] for k in sorted(labels))}): no model gets them all "
        "right"
    )


def _warn_overlap(
    train: pa.Table, other: pa.Table, name: str, notes: list[str], carved: bool = False
) -> None:
    """Rows of the dev or test split (``name``) whose text train holds too: a file of its own
    that shares rows with train, or a split ``carved`` from a training file that holds a text
    more than once."""
    import pyarrow.compute as pc

    shared = pc.sum(pc.is_in(_row_text(other), value_set=_row_text(train))).as_py() or 0
    if shared:
        what = (
            "the test figure is optimistic"
            if name == "test"
            else "every dev figure the search chooses on is optimistic"
        )
        why = (
            f" (the training file holds these texts more than once, and the carved {name} split "
            f"took a copy: remove the repeats, or give a {name} file)"
            if carved
            else ""
        )
        notes.append(
            f"{shared:,} of the {name} split's {other.num_rows:,} rows also appear in train: "
            f"{what}{why}"
        )


def _warn_label_variants(values: Sequence[str], notes: list[str]) -> None:
    """Labels that differ only in case or surrounding spaces (``'Neg '``, ``neg``), or that
    spell one number (``1``, ``1.0``): separate classes, as the data says, with a warning."""
    groups: dict[tuple[str, str], list[str]] = {}
    for value in values:
        groups.setdefault(_label_key(value), []).append(value)
    alike = [g for g in groups.values() if len(g) > 1]
    for group in alike[:SHOWN_VARIANTS]:
        named = ", ".join(repr(v) for v in group[:-1]) + f" and {group[-1]!r}"
        how = (
            "are one number written differently"
            if _NUMBER.fullmatch(group[0].strip())
            else "differ only in case or spaces"
        )
        notes.append(
            f"labels {named} {how}: they are {len(group)} separate classes; write them alike "
            "in the file if they are one"
        )
    if len(alike) > SHOWN_VARIANTS:
        notes.append(
            f"{len(alike) - SHOWN_VARIANTS} more group(s) of labels differ only in case, spaces "
            "or a number's spelling"
        )


def _label_key(value: str) -> tuple[str, str]:
    """What two labels that differ only in case, surrounding spaces or a number's spelling
    share."""
    stripped = value.strip()
    if _NUMBER.fullmatch(stripped):
        return "number", str(Decimal(stripped).normalize())
    return "text", stripped.casefold()


def _row_text(table: pa.Table) -> pa.ChunkedArray:
    import pyarrow.compute as pc

    if "text_pair" not in table.column_names:
        return table["text"].combine_chunks()
    return pc.binary_join_element_wise(table["text"], table["text_pair"], "\x1f").combine_chunks()


# -- helpers ---------------------------------------------------------------------------------


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as strings (a hub ClassLabel's ids, JSON numbers, booleans)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.cast(pa.string())
    if pa.types.is_dictionary(column.type):
        return column.cast(pa.string())
    if pa.types.is_floating(column.type):  # JSON integers with a null become doubles
        integral = pc.equal(pc.floor(column), column)
        if pc.all(pc.or_kleene(integral, pc.is_null(column))).as_py():
            return column.cast(pa.int64()).cast(pa.string())
    return column.cast(pa.string())


def holds_lists(column: pa.ChunkedArray) -> bool:
    """A column whose values are lists: of a list type, or a JSON column of mixed values
    (``datasets``' ``Json``, read as text) whose first values are JSON lists."""
    import pyarrow as pa

    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return True
    if not pa.types.is_string(column.type):
        return False
    head = column.slice(0, 1000).to_pylist()
    return any(
        isinstance(v, str) and v.startswith("[") and v.endswith("]") and _is_json_list(v)
        for v in head
    )


def _is_json_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def _blank(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a text is null or only whitespace."""
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(column)
    return pc.fill_null(pc.equal(trimmed, ""), True)


def _first_true(mask: pa.ChunkedArray) -> int | None:
    import pyarrow.compute as pc

    positions = pc.indices_nonzero(mask.combine_chunks())
    return positions[0].as_py() if len(positions) else None


def _is_integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _row(source: Source | None, row: int) -> str:
    """Where row ``row`` (0-based, of the data) is: the line a CSV or TSV file's row starts on
    (its header is line 1), a JSON Lines file's line, else the row's number from 1."""
    if isinstance(source, FileSource) and source.format in (FileFormat.CSV, FileFormat.TSV):
        line = _record_line(source, row)
        return f"line {line}" if line is not None else f"row {row + 1}"
    if isinstance(source, FileSource) and source.format is FileFormat.JSON:
        return f"line {row + 1}"
    return f"row {row + 1}"


def _record_line(source: FileSource, row: int) -> int | None:
    """The line (from 1, decompressed) a CSV or TSV file's data row ``row`` (0-based, as the
    parser counts them: blank lines are no rows) starts on: a quoted field may hold line
    breaks, so a row is not always one line. Read up to that row, only for a refusal; None
    where the file cannot be read so."""
    import csv

    import fsspec

    try:
        with fsspec.open(
            str(source.path), "rt", compression="infer", encoding="utf-8-sig", newline=""
        ) as handle:
            records = csv.reader(handle, **_dialect(source))
            next(records, None)  # the header
            index, start = 0, records.line_num + 1
            for record in records:
                if record:  # a blank line reads as []
                    if index == row:
                        return start
                    index += 1
                start = records.line_num + 1
    except (OSError, EOFError, ValueError, lzma.LZMAError, csv.Error):
        return None
    return None


def _is_preset(source: Source) -> bool:
    """Whether a split is a GLUE preset's (its folder's file, or the hub's GLUE)."""
    if isinstance(source, FileSource):
        return source.glue
    return source.dataset == GLUE_HUB_DATASET


def _describe(source: Source | None) -> str:
    return source.describe() if source is not None else "the data"


# -- identity --------------------------------------------------------------------------------


def data_id(spec: DataSpec) -> str:
    """A hash of what the tables hold, known without reading them: the sources' content (a
    file's bytes, a hub dataset's name and split) and the settings that shape the tables. It
    keys the tokenized cache and, for a study's own data, every artifact trained on it."""
    parts = {
        # not the test split: read after the search, it shapes no trained model (a carved one
        # does, by test_fraction)
        "sources": [_content_id(s) if s is not None else None for s in (spec.train, spec.dev)],
        "columns": [spec.text, spec.text_pair, spec.label],
        "labels": list(spec.labels),
        "carve": [spec.dev_fraction, spec.dev_max_rows, spec.test_fraction, spec.seed],
        "subset": [spec.max_train_examples, spec.max_eval_examples, spec.subset],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _content_id(source: Source) -> str:
    if isinstance(source, HubSource):
        return f"hub:{source.dataset}:{source.config}:{source.split}"
    try:
        stat = source.path.stat()
    except OSError:
        raise DataError(str(source.path), "no such file") from None
    digest = file_digest(str(source.path), stat.st_size, stat.st_mtime_ns)
    kind = source.format.value
    # a TSV file of one's own was once read with quoting: one holding a quote may have read
    # differently then (the lines between two quotes made one row), so the tokens and models
    # made of it then are not reused (a file without one, and GLUE's, read as they did)
    tsv = source.format is FileFormat.TSV and not source.glue
    if tsv and holds_quote(str(source.path), stat.st_size, stat.st_mtime_ns):
        kind = "tsv-unquoted"
    return f"{kind}:{digest}"


@functools.lru_cache(maxsize=16)
def holds_quote(path: str, size: int, mtime_ns: int) -> bool:
    """Whether a file's text (decompressed) holds a double quote, once per (path, size, mtime)
    and process."""
    import fsspec

    with fsspec.open(path, "rb", compression="infer") as handle:
        return any(b'"' in block for block in iter(functools.partial(handle.read, 1 << 20), b""))


@functools.lru_cache(maxsize=16)
def file_digest(path: str, size: int, mtime_ns: int) -> str:
    """The SHA-256 of a file's bytes (16 hex digits), once per (path, size, mtime) and process."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
