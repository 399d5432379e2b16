"""A study's task data, encoded for its model: the tokenizer, the checked tables (read once per
process) and the tokenized (train, dev) splits -- and the test split, read only after a search
has answered. Token ids are cached in the study's artifacts folder (``data/``), so every trial,
process and node that shares it tokenizes a split once."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from autoprumux.core.data_spec import DataSpec, data_spec
from autoprumux.core.errors import FieldError
from autoprumux.core.metrics import Metric
from autoprumux.core.study import Study
from trainers.data.splits import Encoded
from trainers.data.tables import TaskTables, load_tables
from trainers.data.token_cache import encoded_table
from trainers.model.checkpoints import load_tokenizer

if TYPE_CHECKING:
    import pyarrow as pa
    from transformers import PreTrainedTokenizerBase


@functools.lru_cache(maxsize=4)
def task_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The model's own tokenizer, loaded once per process."""
    tokenizer: PreTrainedTokenizerBase = load_tokenizer(name_or_path)
    return tokenizer


def checked_tables(study: Study) -> TaskTables:
    """:func:`task_tables`, and the study's metric checked against its labels
    (:func:`positive_label_id`): what a search checks before any training, and ``init`` before
    it writes."""
    tables = task_tables(study)
    positive_label_id(study, tables.label_names)
    return tables


def data_cache(study: Study) -> Path:
    """Where the study's token ids are kept, beside its trained models (shared by the nodes
    of a cluster). ``datasets`` keeps its Arrow copies of the files in its own cache
    (``HF_DATASETS_CACHE``), so that a file it cannot read leaves nothing in the study's
    folder."""
    return study.artifacts_folder / "data"


def task_tables(study: Study) -> TaskTables:
    """The study's checked splits and label names (read once per process)."""
    return _tables(data_spec(study))


@functools.lru_cache(maxsize=4)
def _tables(spec: DataSpec) -> TaskTables:
    # keyed by the spec: its paths are resolved (a Study compares without its file's folder)
    return load_tables(spec)


def task_data(study: Study, tokenizer: PreTrainedTokenizerBase) -> tuple[Encoded, Encoded]:
    """(train, dev) of the study's task, subsets as its [data] asks, encoded to the model's
    length; on the CPU."""
    tables = task_tables(study)
    return _encoded(study, tables, tables.train, "train", tokenizer), _encoded(
        study, tables, tables.dev, "dev", tokenizer
    )


def test_data(study: Study, tokenizer: PreTrainedTokenizerBase) -> Encoded | None:
    """The held-out test split, encoded; None when the study has none."""
    tables = task_tables(study)
    if tables.test is None:
        return None
    return _encoded(study, tables, tables.test, f"{tables.test_id}/test", tokenizer)


def _encoded(
    study: Study,
    tables: TaskTables,
    table: pa.Table,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
) -> Encoded:
    length = study.model.max_seq_length
    return encoded_table(table, tokenizer, length, data_cache(study), f"{tables.source_id}/{split}")


def positive_label_id(study: Study, label_names: tuple[str, ...]) -> int:
    """The id of ``[study] positive_label`` among the task's labels (the second label when it
    is empty); a FieldError where F1 is asked of a task that has no such label or more than two
    labels and no positive one."""
    wanted = study.study.positive_label
    if study.study.metric is not Metric.F1:
        return 1
    if wanted:
        if wanted not in label_names:
            raise FieldError(
                "study.positive_label",
                f"{wanted!r} is not one of the task's labels: {', '.join(label_names)}",
            )
        return label_names.index(wanted)
    if len(label_names) > 2:
        raise FieldError(
            "study.metric",
            f'"f1" is binary, and the task has {len(label_names)} labels; name the positive one '
            '([study] positive_label) or use "macro_f1"',
        )
    return 1
