"""A study's task data, encoded for its model: the tokenizer and the (train, dev) splits,
each read once per process (the trials of a search run one after another in one worker)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from autoprumux.core.study import DataSource, Study
from trainers.data.splits import Encoded, Split, encode, read_glue_split, read_hub_split
from trainers.model.checkpoints import load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@functools.lru_cache(maxsize=4)
def task_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The model's own tokenizer, loaded once per process."""
    tokenizer: PreTrainedTokenizerBase = load_tokenizer(name_or_path)
    return tokenizer


def task_data(study: Study, tokenizer: PreTrainedTokenizerBase) -> tuple[Encoded, Encoded]:
    """(train, dev) of the study's task, subsets as its [data] asks, encoded to the model's
    length; on the CPU."""
    data = study.data
    length = study.model.max_seq_length
    glue_dir = str(study.resolve(data.glue_dir)) if data.glue_dir else ""
    train, dev = _splits(study.task, data.source.value, glue_dir)
    # drawn with the study's seed, whatever a trial's (cache_keys.task_data_settings)
    train = train.subset(data.max_train_examples, data.subset, study.study.seed)
    dev = dev.subset(data.max_eval_examples, "first", study.study.seed)
    return encode(train, tokenizer, length), encode(dev, tokenizer, length)


@functools.lru_cache(maxsize=4)
def _splits(task: str, source: str, glue_dir: str) -> tuple[Split, Split]:
    if source == DataSource.GLUE_DIR.value:
        return read_glue_split(glue_dir, task, "train"), read_glue_split(glue_dir, task, "dev")
    return read_hub_split(task, "train"), read_hub_split(task, "dev")
