"""Tokenized splits, made once per (data content, tokenizer, max length) and kept on disk: every
later trial, process and node that shares the artifacts folder loads the token ids instead of
reading and tokenizing the text again.

A split is tokenized in chunks of :data:`CHUNK_ROWS` rows straight from its Arrow table into
preallocated arrays, so a million-row file never sits in Python lists; the arrays are compact
(int32 token ids, int8 masks: 6 bytes a token) and :class:`~trainers.data.splits.Encoded`
widens each batch to int64 when it is drawn. The file (``tokens-<key>.npz``) is written by
rename: a reader sees it whole or not at all, and two processes that tokenize at once write the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from autoprumux.files.atomic import atomic_path
from trainers.data.splits import Encoded

if TYPE_CHECKING:
    import pyarrow as pa
    from transformers import PreTrainedTokenizerBase

CHUNK_ROWS = 10_000  # rows tokenized per call: the tokenizer's batch, and what sits in lists
PROGRESS_ROWS = 100_000  # a split this long shows a progress bar while it is tokenized


def encoded_table(
    table: pa.Table,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache: Path | None = None,  # the cache folder; None: tokenize, keep nothing
    table_id: str = "",  # what names the table's content (data_id and the split's name)
) -> Encoded:
    """``table`` (``text``, [``text_pair``,] ``label``) tokenized to ``max_length`` as
    :func:`trainers.data.splits.encode` does, from the cache when it holds it."""
    path = cache / f"tokens-{token_key(table_id, tokenizer, max_length)}.npz" if cache else None
    if path is not None and path.is_file():
        return _loaded(path)
    arrays = _tokenized(table, tokenizer, max_length)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary, temporary.open("wb") as handle:
            np.savez(
                handle,
                input_ids=arrays["input_ids"],
                attention_mask=arrays["attention_mask"],
                token_type_ids=arrays["token_type_ids"],
                labels=arrays["labels"],
            )
    return _encoded(arrays)


def token_key(table_id: str, tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    """A hash of the table's content, the tokenizer (its class, vocabulary and rules) and the
    length."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # less the truncation and padding a call sets on it (the call's arguments do)
        rules = json.loads(backend.to_str())
        rules.pop("truncation", None)
        rules.pop("padding", None)
    else:
        rules = sorted(tokenizer.get_vocab().items())
    parts = [table_id, type(tokenizer).__name__, rules, tokenizer.padding_side, max_length]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _tokenized(
    table: pa.Table, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    rows = table.num_rows
    arrays = {
        "input_ids": np.empty((rows, max_length), np.int32),
        "attention_mask": np.empty((rows, max_length), np.int8),
        "token_type_ids": np.empty((rows, max_length), np.int8),
        "labels": table["label"].to_numpy().astype(np.int64),
    }
    pair = "text_pair" in table.column_names
    start = 0
    with tqdm(
        total=rows, desc="tokenizing", unit="rows", disable=rows < PROGRESS_ROWS, leave=False
    ) as bar:
        for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
            out = tokenizer(
                batch.column("text").to_pylist(),
                batch.column("text_pair").to_pylist() if pair else None,
                padding="max_length",
                truncation=True,
                max_length=max_length,
                return_tensors="np",
                return_token_type_ids=True,
            )
            stop = start + batch.num_rows
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                arrays[name][start:stop] = out[name]
            start = stop
            bar.update(batch.num_rows)
    return arrays


def _loaded(path: Path) -> Encoded:
    with np.load(path) as stored:
        return _encoded({name: stored[name] for name in stored.files})


def _encoded(arrays: dict[str, np.ndarray]) -> Encoded:
    return Encoded(
        torch.from_numpy(arrays["input_ids"]),
        torch.from_numpy(arrays["attention_mask"]),
        torch.from_numpy(arrays["token_type_ids"]),
        torch.from_numpy(arrays["labels"]),
    )
