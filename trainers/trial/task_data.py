"""A study's task data, encoded for its model: the tokenizer, the checked tables (read once per
process) and the tokenized (train, dev) splits -- and the test split, read only after a search
has answered. Token ids are cached in the study's artifacts folder (``data/``), so every trial,
process and node that shares it tokenizes a split once.

:func:`check_model_fits` checks the study's checkpoints against each other and against the data
before any training: a fine-tuned head's labels, the tokenizer's vocabulary, ``num_layers``
and a multiplexed checkpoint's family."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from autoprumux.core.data_spec import DataSpec, data_spec
from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.metrics import Metric
from autoprumux.core.package_paths import PACKAGE_SCHEME
from autoprumux.core.study import Study
from trainers.data.buckets import check_buckets
from trainers.data.splits import Encoded
from trainers.data.tables import TaskTables, load_tables
from trainers.data.token_cache import encoded_table
from trainers.model.architecture import Architecture, family_of, with_layers
from trainers.model.checkpoints import (
    CheckpointError,
    check_model,
    load_tokenizer,
    read_hf_config,
    resolve_model_path,
)
from trainers.model.label_map import head_permutation, is_fine_tuned

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


# -- the study's checkpoints against its data ----------------------------------------------


def checkpoint_label_order(study: Study, label_names: tuple[str, ...]) -> tuple[int, ...]:
    """The fine-tuned checkpoint's label id of each of the data's labels, in the data's order
    (:func:`trainers.model.label_map.label_permutation`): a label is known by its name and by
    its value in the data (a preset's integer labels)."""
    return head_permutation(study.model.name_or_path, label_names, data_spec(study).labels)


def check_model_fits(study: Study, label_names: tuple[str, ...]) -> bool:
    """Refuse, each in one line, before any training: a fine-tuned checkpoint whose head's
    labels are not the data's; a tokenizer with more tokens than the model's embedding table;
    ``[model] num_layers`` beyond the model's layers (or, for a fine-tuned checkpoint, any
    cut: its teacher is the checkpoint as is); ``max_seq_length`` beyond its positions; a
    multiplexed checkpoint of another family. Returns whether the checkpoint is a fine-tuned
    classifier (the (1, 0) teacher as is)."""
    model = study.model
    where = str(study.path) if study.path else None
    config = read_hf_config(check_model(model.name_or_path))
    with_layers(config, model.num_layers, repr(model.name_or_path))
    arch = Architecture.from_hf_config(config)
    if model.max_seq_length > arch.max_tokens:
        raise FieldError(
            "model.max_seq_length",
            f"{model.max_seq_length} is more than the {arch.max_tokens} tokens the positions of "
            f"{model.name_or_path!r} hold; give at most {arch.max_tokens}",
            where,
        )
    tokens = len(task_tokenizer(model.name_or_path))
    if tokens > arch.vocab_size:
        raise CheckpointError(
            f"model {model.name_or_path!r}: its tokenizer has {tokens} tokens, but config.json's "
            f"vocab_size is {arch.vocab_size} (ids from {arch.vocab_size} on would index past "
            "the embedding table): the tokenizer is not this model's"
        )
    fine_tuned = is_fine_tuned(model.fine_tuned, model.name_or_path)
    if fine_tuned:
        checkpoint_label_order(study, label_names)
        if 0 < model.num_layers < arch.num_layers:
            raise FieldError(
                "model.num_layers",
                f"{model.num_layers} would cut the fine-tuned classifier {model.name_or_path!r} "
                f"({arch.num_layers} layers), whose (1, 0) teacher is the checkpoint as is; "
                "leave it at 0, or set fine_tuned = false to train a cut model",
                where,
            )
    check_buckets(study.training.length_buckets, model.max_seq_length)
    _check_multiplexed_family(study, family_of(config).value, where)
    return fine_tuned


def _check_multiplexed_family(study: Study, family: str, where: str | None) -> None:
    """Each multiplexed checkpoint of the grid's N > 1 is of the base model's family."""
    template = study.model.multiplexed_name_or_path
    for n in sorted(n for n in study.grid.n if n > 1) if template else ():
        name = template.format(n=n)
        model_type = _config_of(name).get("model_type")
        theirs = family_of({"model_type": model_type}).value
        if theirs != family:
            raise FieldError(
                "model.multiplexed_name_or_path",
                f"{name!r} is of the {theirs} family (model_type {model_type!r}), but the base "
                f"model {study.model.name_or_path!r} is {family}; a multiplexed checkpoint must "
                "be of the base model's family",
                where,
            )


def _config_of(name_or_path: str) -> dict[str, object]:
    """A checkpoint's config.json, without its weights where it is on the hub."""
    local = name_or_path.startswith((PACKAGE_SCHEME, ".", "/", "~"))
    if local or Path(name_or_path).expanduser().exists():
        return dict(read_hf_config(resolve_model_path(name_or_path)))
    try:
        from huggingface_hub import hf_hub_download

        return dict(read_hf_config(Path(hf_hub_download(name_or_path, "config.json")).parent))
    except AutoPruMuxError:
        raise
    except Exception as err:  # offline, unknown id, no access: one line for the user
        raise CheckpointError(
            f"model {name_or_path!r}: not a local folder, and its config.json could not be "
            f"downloaded ({type(err).__name__})"
        ) from None
