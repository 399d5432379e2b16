"""What ``autoprumux init`` learns from a study's data before it writes the study: which columns
hold the text and the label (:func:`infer_columns`), how the labels are balanced
(:func:`label_balance`) and how long the texts are in the model's tokens
(:func:`token_lengths`, :func:`propose_max_seq_length`).

Pure functions over Arrow tables (the columns as :func:`trainers.data.tables.read_source` reads
them, or the checked tables of :func:`~trainers.data.tables.load_tables`): the statistics are
Arrow compute kernels, and only a sample of the texts is tokenized, so a million-row file is
inspected in seconds. The tokenizer is passed in: nothing here imports torch or transformers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autoprumux.core.errors import DataError
from trainers.data.tables import holds_lists, is_unnamed

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "COVERAGE",
    "LABEL_NAMES",
    "MAX_INFERRED_LABELS",
    "PAIR_NAMES",
    "SAMPLE_ROWS",
    "SEQ_LENGTHS",
    "Columns",
    "LabelCount",
    "TokenLengths",
    "infer_columns",
    "label_balance",
    "propose_max_seq_length",
    "token_lengths",
]

# A label column holds 2 to this many distinct values (more: give --label; the loader takes up
# to trainers.data.tables.MAX_LABELS) ...
MAX_INFERRED_LABELS = 50
# ... and at least this many rows per distinct value on average: an id or a text column has
# about one row per value
MIN_ROWS_PER_LABEL = 5
# names that say "label", best first (compared lower-cased); a name holding "label" comes next
LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "category",
    "sentiment",
    "target",
    "y",
    "intent",
    "gold_label",
    "is_duplicate",
)
# two text columns named as one of these pairs make a pair task (when --text is not given)
PAIR_NAMES = (
    ("question1", "question2"),
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("text_a", "text_b"),
    ("text1", "text2"),
)
# the max_seq_length a study is offered (tokens), smallest first, and the share of rows it
# must hold whole
SEQ_LENGTHS = (32, 64, 128, 256, 512)
COVERAGE = 0.99
SAMPLE_ROWS = 10_000  # rows tokenized to measure lengths (a seeded sample of larger data)
# a header cell longer than this (characters, or words) is a sentence: a row of data read as
# the header ("Text of the review, as the customer wrote it" is a name of 9 words)
HEADER_CHARS = 60
HEADER_WORDS = 9
# above this share of unknown tokens the tokenizer's vocabulary does not cover the text's
# script: English SST-2 with an English uncased WordPiece has none, Chinese reviews 65%
UNKNOWN_SHARE = 0.10
# a column left out holds free text (a note offers it as the pair's second text) when its
# values hold at least this many words on average: an id, a code or a name holds fewer
FREE_TEXT_WORDS = 3
# a value that is a number: such a column is an id or a score, not a text
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True, kw_only=True)
class Columns:
    """The columns a study reads, and one line each saying why."""

    text: str
    text_pair: str  # "" for a single-text task
    label: str
    reasons: tuple[str, ...]  # "text: 'review' (the longest text column, 212 characters ...)"
    # (key, why) of each chosen column: ("text", "the longest text column, 212 characters ...")
    why: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()  # what the user should know of the file (ignored columns, ...)

    def why_of(self, key: str) -> str:
        """Why the ``text``, ``text_pair`` or ``label`` column was chosen; "" if not said."""
        return dict(self.why).get(key, "")


@dataclass(frozen=True, kw_only=True)
class _Column:
    """What inference looks at in one column."""

    name: str
    index: int  # its position in the table (a label is more often last)
    distinct: int  # distinct non-null values
    textual: bool  # strings that are not all numbers
    mean_chars: float  # mean length of its values as text (characters); 0 for non-strings


@dataclass(frozen=True)
class _Reason:
    """Why a column (a pair's two) was chosen: ``label: 'sentiment' (2 distinct values, ...)``."""

    keys: tuple[str, ...]  # ("label",), ("text", "text_pair")
    names: tuple[str, ...]  # the columns, one a key
    why: str  # the parenthesis
    more: str = ""  # after it ("; also possible: ...")

    @property
    def line(self) -> str:
        names = ", ".join(repr(name) for name in self.names)
        return f"{', '.join(self.keys)}: {names} ({self.why}){self.more}"


def infer_columns(
    table: pa.Table,
    where: str,
    *,
    text: str = "",
    text_pair: str = "",
    label: str = "",
    header_row: bool = False,
) -> Columns:
    """The text, text-pair and label columns of ``table`` (read from ``where``): the ones given,
    the others inferred. The label: a column of 2 to :data:`MAX_INFERRED_LABELS` distinct
    values, few for the rows, a name from :data:`LABEL_NAMES` first. The text: the textual
    column of the longest mean length that is not the label. A pair task only with
    ``text_pair``, or, when no text column is given, two text columns named as a pair of
    :data:`PAIR_NAMES` (a note names another column of free text that one inferred text leaves
    out). Columns without a name (an empty header cell) are inferred as none of them (a note
    names them), but may be given. A column given that is not there, or no
    plausible label, is a :class:`DataError` listing the columns; a label-named column of
    lists is refused as multi-label data. ``header_row``: the names came from a CSV or TSV
    file's first line (a note says when that line looks like data)."""
    names = list(table.column_names)
    for option, given in (("--text", text), ("--text-pair", text_pair), ("--label", label)):
        if given and given not in names:
            raise DataError(
                where, f"has no column {given!r} ({option}); its columns: {_list(names)}"
            )
    given_texts = [c for c in (text, text_pair) if c]
    if label and label in given_texts:
        raise DataError(where, f"column {label!r} is given as both a text and the label")
    named = {c for c in (text, text_pair, label) if c}  # given by the user
    described = [_describe_column(table, k) for k in range(len(names))]
    # an unnamed column (pandas' index, a spreadsheet's empty trailing ones) is never inferred
    columns = [c for c in described if not is_unnamed(c.name) or c.name in named]
    label_found: tuple[_Column, list[_Column]] | None = None
    if not label:
        _check_not_multi_label(table, columns, set(given_texts), where)
        label_found = _infer_label(columns, table.num_rows, set(given_texts), where)
        label = label_found[0].name
    texts = [c for c in columns if c.textual and c.name != label]
    text, text_pair, text_reasons = _text_columns(texts, text, text_pair, where, names)
    if text_pair == text:
        raise DataError(where, f"column {text!r} is given as both texts of the pair")
    if label_found is None:
        label_reason = _Reason(("label",), (label,), "given")
    else:
        best, others = label_found
        label_reason = _label_reason(best, [c for c in others if c.name not in (text, text_pair)])
    reasons = (label_reason, *text_reasons)
    notes = _unnamed_note(described, named)
    if not given_texts and not text_pair:  # one text inferred: say which other text is left out
        notes += _left_out_text_notes(table, columns, {text, text_pair, label})
    if header_row:
        notes += _header_note(table, text, label)
    return Columns(
        text=text,
        text_pair=text_pair,
        label=label,
        reasons=tuple(r.line for r in reasons),
        why=tuple((r.keys[0], r.why) for r in reasons),
        notes=tuple(notes),
    )


def _unnamed_note(columns: Sequence[_Column], given: set[str]) -> list[str]:
    """The columns left out because their header cell is empty (their positions from 1)."""
    unnamed = [c for c in columns if is_unnamed(c.name) and c.name not in given]
    if not unnamed:
        return []
    positions = ", ".join(str(c.index + 1) for c in unnamed)
    return [
        f"column(s) {positions} ignored: the header names none (an index column, a "
        f"spreadsheet's empty columns); to read one, give its name as read ({unnamed[0].name!r}) "
        "with --text or --label"
    ]


def _left_out_text_notes(
    table: pa.Table, columns: Sequence[_Column], chosen: set[str]
) -> list[str]:
    """The columns of free text that init left out (a sentence-pair file whose columns are not
    named as a pair of :data:`PAIR_NAMES` trains on its longest text alone): textual, not
    chosen, not a categorical (a column that could be a label), and of several words a value
    (not an id or a code)."""
    import shlex

    rows = table.num_rows
    left_out = [
        c
        for c in columns
        if c.textual
        and c.name not in chosen
        and not _could_be_label(c, rows)
        and _mean_words(table[c.name]) >= FREE_TEXT_WORDS
    ]
    return [
        f"column {c.name!r} also holds text ({c.mean_chars:,.0f} characters on average) and "
        f"is left out; for a sentence-pair task give --text-pair {shlex.quote(c.name)}"
        for c in left_out
    ]


def _could_be_label(column: _Column, rows: int) -> bool:
    """A handful of distinct values, few for the rows: a category, not a free text."""
    return column.distinct <= 1 or (
        column.distinct <= MAX_INFERRED_LABELS and column.distinct * MIN_ROWS_PER_LABEL <= rows
    )


def _mean_words(values: pa.ChunkedArray) -> float:
    """The mean number of words (runs of non-space characters) of the first
    :data:`SAMPLE_ROWS` non-null values: enough to tell text from ids, read in milliseconds."""
    import pyarrow.compute as pc

    sample = values.drop_null().slice(0, SAMPLE_ROWS)
    if len(sample) == 0:
        return 0.0
    return float(pc.mean(pc.count_substring_regex(sample, r"\S+")).as_py() or 0.0)


def _header_note(table: pa.Table, text: str, label: str) -> list[str]:
    """A warning where the first line read as the header looks like a row of data: the label
    column's name is one of its own values, or the text column's name is a sentence (the file
    may have no header, and its first row was lost to it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = table[label]
    named_as_value = False
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        named_as_value = bool(pc.any(pc.equal(values, label)).as_py())
    sentence = len(text) > HEADER_CHARS or len(text.split()) > HEADER_WORDS
    if not (named_as_value or sentence):
        return []
    why = (
        f"the label column's name {label!r} is one of its values"
        if named_as_value
        else f"the text column's name is a sentence ({_shortened(text)!r})"
    )
    return [
        f"the first line was read as the header, and looks like data ({why}): if the file has "
        "no header line, its first row was taken for the column names and is not trained on; "
        "add a header line naming the columns"
    ]


def _shortened(text: str, chars: int = 40) -> str:
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _check_not_multi_label(
    table: pa.Table, columns: Sequence[_Column], texts: set[str], where: str
) -> None:
    """Refuse, in the loader's words, a column named like a label that holds lists of labels
    (multi-label data), unless a column of a better label name is there."""
    lists = [
        c
        for c in columns
        if c.name not in texts
        and _label_rank(c.name) <= len(LABEL_NAMES)
        and holds_lists(table[c.name])
    ]
    if not lists:
        return
    first = min(lists, key=lambda c: _label_rank(c.name))
    better = [
        c
        for c in columns
        if c not in lists and c.distinct >= 1 and _label_rank(c.name) < _label_rank(first.name)
    ]
    if not better:
        raise DataError(
            where,
            f"column {first.name!r} holds lists of labels; multi-label classification is not "
            "supported (one label per row)",
        )


def _text_columns(
    texts: Sequence[_Column], text: str, text_pair: str, where: str, names: list[str]
) -> tuple[str, str, list[_Reason]]:
    """The text and second text (given, a pair named as one, or the longest text), and why."""
    pair = _named_pair(texts) if not text and not text_pair else None
    if pair is not None:
        why = "a pair task: two text columns named as a pair; give --text to train on one text"
        return (*pair, [_Reason(("text", "text_pair"), pair, why)])
    reasons = [_Reason(("text",), (text,), "given")] if text else []
    if not text:
        text, reason = _infer_text(texts, exclude={text_pair}, where=where, names=names)
        reasons = [reason]
    if text_pair:
        reasons.append(_Reason(("text_pair",), (text_pair,), "given: a pair task"))
    return text, text_pair, reasons


def _describe_column(table: pa.Table, index: int) -> _Column:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(index)
    kind = column.type
    distinct = _distinct(column)
    textual, mean_chars = False, 0.0
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        valid = column.drop_null()
        textual = len(valid) > 0 and not (
            _all_numbers(valid.slice(0, 1000)) and _all_numbers(valid)
        )
        mean_chars = pc.mean(pc.utf8_length(valid)).as_py() or 0.0
    return _Column(
        name=table.column_names[index],
        index=index,
        distinct=distinct,
        textual=textual,
        mean_chars=mean_chars,
    )


def _distinct(column: pa.ChunkedArray) -> int:
    """The distinct values of ``column``; 0 for a column that cannot be a label: nested (lists,
    objects), all null (a JSON key that is always null), or of a type no kernel counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_nested(kind) or pa.types.is_null(kind):
        return 0
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
    try:
        return int(pc.count_distinct(column, mode="only_valid").as_py())
    except pa.ArrowNotImplementedError:
        return 0


def _all_numbers(values: pa.ChunkedArray) -> bool:
    """Whether every value is a number (the first rows decide a text column cheaply)."""
    import pyarrow.compute as pc

    return bool(pc.all(pc.match_substring_regex(values, _NUMBER)).as_py())


def _label_rank(name: str) -> int:
    """0 for the best label name, ... ; len(LABEL_NAMES) for another name holding "label"
    (``label1``), one more for any other name."""
    lowered = name.lower()
    if lowered in LABEL_NAMES:
        return LABEL_NAMES.index(lowered)
    return len(LABEL_NAMES) + (0 if "label" in lowered else 1)


def _infer_label(
    columns: Sequence[_Column], rows: int, texts: set[str], where: str
) -> tuple[_Column, list[_Column]]:
    """The label column, and the other columns that could be one. A column named exactly as a
    label (:data:`LABEL_NAMES`) is one whatever its values (the loader then checks them: one
    distinct value is refused there, in its words)."""
    candidates = [
        c
        for c in columns
        if c.name not in texts
        and c.distinct >= 1
        and (
            c.name.lower() in LABEL_NAMES
            or (2 <= c.distinct <= MAX_INFERRED_LABELS and c.distinct * MIN_ROWS_PER_LABEL <= rows)
        )
    ]
    if not candidates:
        raise DataError(
            where,
            f"no column looks like a label (2 to {MAX_INFERRED_LABELS} distinct values, and at "
            f"least {MIN_ROWS_PER_LABEL} times as many rows as values); name it with --label (its "
            f"columns: {_list([c.name for c in columns])})",
        )
    # a label's name first, then the fewest classes, then the rightmost column
    best = min(candidates, key=lambda c: (_label_rank(c.name), c.distinct, -c.index))
    return best, [c for c in candidates if c is not best]


def _label_reason(best: _Column, others: Sequence[_Column]) -> _Reason:
    named = _label_rank(best.name) <= len(LABEL_NAMES)
    why = "named like a label" if named else "the fewest values of the columns that could be"
    also = (
        f"; also possible: {_list([c.name for c in others])} (give --label to choose)"
        if others
        else ""
    )
    return _Reason(("label",), (best.name,), f"{best.distinct:,} distinct values, {why}", also)


def _named_pair(texts: Sequence[_Column]) -> tuple[str, str] | None:
    by_name = {c.name.lower(): c.name for c in texts}
    for first, second in PAIR_NAMES:
        if first in by_name and second in by_name:
            return by_name[first], by_name[second]
    return None


def _infer_text(
    texts: Sequence[_Column], exclude: set[str], where: str, names: list[str]
) -> tuple[str, _Reason]:
    candidates = [c for c in texts if c.name not in exclude]
    if not candidates:
        raise DataError(
            where,
            f"no column holds text besides the label; name it with --text (its columns: "
            f"{_list(names)})",
        )
    best = max(candidates, key=lambda c: (c.mean_chars, -c.index))
    why = f"the longest text column, {best.mean_chars:,.0f} characters on average"
    return best.name, _Reason(("text",), (best.name,), why)


def _list(names: Sequence[str]) -> str:
    return ", ".join(names)


# -- labels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelCount:
    name: str
    count: int
    share: float  # of the split's rows


def label_balance(labels: pa.ChunkedArray, names: Sequence[str]) -> tuple[LabelCount, ...]:
    """How many rows of each label id (``labels``: int ids into ``names``), in id order."""
    import numpy as np

    counts = np.bincount(labels.to_numpy(), minlength=len(names))
    total = int(counts.sum())
    return tuple(
        LabelCount(name, int(count), int(count) / total if total else 0.0)
        for name, count in zip(names, counts.tolist(), strict=True)
    )


# -- token lengths ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenLengths:
    """The token count of each (sampled) row, [CLS] and [SEP] included, sorted."""

    lengths: tuple[int, ...]  # ascending
    rows: int  # rows of the data the sample was drawn from (= len(lengths) when not sampled)
    tokens: int = 0  # tokens of the (sampled) rows, special tokens left out
    unknown: int = 0  # of them, the tokenizer's unknown token ([UNK]): text its vocabulary lacks

    @property
    def unknown_share(self) -> float:
        """The share of the texts' tokens that are the unknown token."""
        return self.unknown / self.tokens if self.tokens else 0.0

    @property
    def sampled(self) -> bool:
        return len(self.lengths) < self.rows

    def share_longer_than(self, max_length: int) -> float:
        """The share of rows a cut to ``max_length`` tokens truncates."""
        import bisect

        kept = bisect.bisect_right(self.lengths, max_length)
        return (len(self.lengths) - kept) / len(self.lengths) if self.lengths else 0.0

    def quantile(self, q: float) -> int:
        """The length ``q`` of the rows fit in (nearest rank)."""
        if not self.lengths:
            return 0
        rank = min(max(1, math.ceil(q * len(self.lengths))), len(self.lengths))
        return self.lengths[rank - 1]


def token_lengths(
    table: pa.Table, tokenizer: Any, sample_rows: int = SAMPLE_ROWS, seed: int = 0
) -> TokenLengths:
    """The token lengths of ``table``'s ``text`` (and ``text_pair``) as ``tokenizer`` encodes
    them, with special tokens and without truncation, and how many of their tokens are the
    unknown token: every row, or ``sample_rows`` drawn with ``seed`` where there are more."""
    rows = table.num_rows
    if rows > sample_rows:
        table = table.take(sorted(random.Random(seed).sample(range(rows), sample_rows)))
    pair = "text_pair" in table.column_names
    unknown_id = getattr(tokenizer, "unk_token_id", None)
    lengths: list[int] = []
    unknown = 0
    batch = 1000  # rows tokenized at once: bounded memory, the fast tokenizer's parallel batches
    for start in range(0, table.num_rows, batch):
        part = table.slice(start, batch)
        texts = part["text"].to_pylist()
        pairs = part["text_pair"].to_pylist() if pair else None
        encoded = tokenizer(
            texts,
            pairs,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,  # no warning for rows longer than the model takes: counting them
        )
        lengths += [len(ids) for ids in encoded["input_ids"]]
        if unknown_id is not None:
            unknown += sum(ids.count(unknown_id) for ids in encoded["input_ids"])
    special = tokenizer.num_special_tokens_to_add(pair=pair) * len(lengths)
    return TokenLengths(
        tuple(sorted(lengths)), rows, tokens=sum(lengths) - special, unknown=unknown
    )


def propose_max_seq_length(
    lengths: TokenLengths,
    max_positions: int,
    coverage: float = COVERAGE,
    choices: Sequence[int] = SEQ_LENGTHS,
) -> int:
    """The smallest of ``choices`` (none above the model's ``max_positions``) that holds at
    least ``coverage`` of the rows whole; the largest allowed where none does."""
    allowed = [c for c in choices if c <= max_positions] or [max_positions]
    for length in allowed:
        if 1.0 - lengths.share_longer_than(length) >= coverage - 1e-12:
            return length
    return allowed[-1]
