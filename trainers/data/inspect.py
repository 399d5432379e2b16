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
# a value that is a number: such a column is an id or a score, not a text
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True, kw_only=True)
class Columns:
    """The columns a study reads, and one line each saying why."""

    text: str
    text_pair: str  # "" for a single-text task
    label: str
    reasons: tuple[str, ...]  # "text: 'review' (the longest text column, 212 characters ...)"


@dataclass(frozen=True, kw_only=True)
class _Column:
    """What inference looks at in one column."""

    name: str
    index: int  # its position in the table (a label is more often last)
    distinct: int  # distinct non-null values
    textual: bool  # strings that are not all numbers
    mean_chars: float  # mean length of its values as text (characters); 0 for non-strings


def infer_columns(
    table: pa.Table, where: str, *, text: str = "", text_pair: str = "", label: str = ""
) -> Columns:
    """The text, text-pair and label columns of ``table`` (read from ``where``): the ones given,
    the others inferred. The label: a column of 2 to :data:`MAX_INFERRED_LABELS` distinct
    values, few for the rows, a name from :data:`LABEL_NAMES` first. The text: the textual
    column of the longest mean length that is not the label. A pair task only with
    ``text_pair``, or, when no text column is given, two text columns named as a pair of
    :data:`PAIR_NAMES`. A column given that is not there, or no plausible label, is a
    :class:`DataError` listing the columns."""
    names = list(table.column_names)
    for option, given in (("--text", text), ("--text-pair", text_pair), ("--label", label)):
        if given and given not in names:
            raise DataError(
                where, f"has no column {given!r} ({option}); its columns: {_list(names)}"
            )
    given_texts = [c for c in (text, text_pair) if c]
    if label and label in given_texts:
        raise DataError(where, f"column {label!r} is given as both a text and the label")
    columns = [_describe_column(table, k) for k in range(len(names))]
    label_found: tuple[_Column, list[_Column]] | None = None
    if not label:
        label_found = _infer_label(columns, table.num_rows, set(given_texts), where)
        label = label_found[0].name
    texts = [c for c in columns if c.textual and c.name != label]
    text, text_pair, text_reasons = _text_columns(texts, text, text_pair, where, names)
    if text_pair == text:
        raise DataError(where, f"column {text!r} is given as both texts of the pair")
    if label_found is None:
        label_reason = f"label: {label!r} (given)"
    else:
        best, others = label_found
        label_reason = _label_reason(best, [c for c in others if c.name not in (text, text_pair)])
    reasons = (label_reason, *text_reasons)
    return Columns(text=text, text_pair=text_pair, label=label, reasons=reasons)


def _text_columns(
    texts: Sequence[_Column], text: str, text_pair: str, where: str, names: list[str]
) -> tuple[str, str, list[str]]:
    """The text and second text (given, a pair named as one, or the longest text), and why."""
    pair = _named_pair(texts) if not text and not text_pair else None
    if pair is not None:
        return (
            *pair,
            [
                f"text, text_pair: {pair[0]!r}, {pair[1]!r} (a pair task: two text columns named "
                "as a pair; give --text to train on one text)"
            ],
        )
    reasons = [f"text: {text!r} (given)"] if text else []
    if not text:
        text, reason = _infer_text(texts, exclude={text_pair}, where=where, names=names)
        reasons = [reason]
    if text_pair:
        reasons.append(f"text_pair: {text_pair!r} (given: a pair task)")
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
            f"no column looks like a label (2 to {MAX_INFERRED_LABELS} distinct values, at least "
            f"{MIN_ROWS_PER_LABEL} rows each); name it with --label (its columns: "
            f"{_list([c.name for c in columns])})",
        )
    # a label's name first, then the fewest classes, then the rightmost column
    best = min(candidates, key=lambda c: (_label_rank(c.name), c.distinct, -c.index))
    return best, [c for c in candidates if c is not best]


def _label_reason(best: _Column, others: Sequence[_Column]) -> str:
    named = _label_rank(best.name) <= len(LABEL_NAMES)
    why = "named like a label" if named else "the fewest values of the columns that could be"
    also = (
        f"; also possible: {_list([c.name for c in others])} (give --label to choose)"
        if others
        else ""
    )
    return f"label: {best.name!r} ({best.distinct:,} distinct values, {why}){also}"


def _named_pair(texts: Sequence[_Column]) -> tuple[str, str] | None:
    by_name = {c.name.lower(): c.name for c in texts}
    for first, second in PAIR_NAMES:
        if first in by_name and second in by_name:
            return by_name[first], by_name[second]
    return None


def _infer_text(
    texts: Sequence[_Column], exclude: set[str], where: str, names: list[str]
) -> tuple[str, str]:
    candidates = [c for c in texts if c.name not in exclude]
    if not candidates:
        raise DataError(
            where,
            f"no column holds text besides the label; name it with --text (its columns: "
            f"{_list(names)})",
        )
    best = max(candidates, key=lambda c: (c.mean_chars, -c.index))
    return best.name, (
        f"text: {best.name!r} (the longest text column, {best.mean_chars:,.0f} characters on "
        "average)"
    )


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
    them, with special tokens and without truncation: every row, or ``sample_rows`` drawn with
    ``seed`` where there are more."""
    rows = table.num_rows
    if rows > sample_rows:
        table = table.take(sorted(random.Random(seed).sample(range(rows), sample_rows)))
    lengths: list[int] = []
    batch = 1000  # rows tokenized at once: bounded memory, the fast tokenizer's parallel batches
    for start in range(0, table.num_rows, batch):
        part = table.slice(start, batch)
        texts = part["text"].to_pylist()
        pairs = part["text_pair"].to_pylist() if "text_pair" in part.column_names else None
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
    return TokenLengths(tuple(sorted(lengths)), rows)


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
