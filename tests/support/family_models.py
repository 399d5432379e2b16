"""Random-weight checkpoints of every supported family, built with transformers' own config
classes, and inputs for them (padding positions hold the family's pad id), for tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    ElectraConfig,
    PretrainedConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

VOCAB, POSITIONS, LABELS = 120, 40, 3
# weights drawn wider than transformers' 0.02, so that logits are of order 0.1 to 1 and a wrong
# activation, position or head would show far above the 1e-5 tolerance
INIT_RANGE = 0.1


@dataclass(frozen=True)
class Case:
    name: str  # family / size, as the table prints it
    config: PretrainedConfig
    pairs: bool  # whether the family reads token types (type_vocab_size 2)

    @property
    def pad(self) -> int:
        return int(self.config.pad_token_id)


def bert_fields(hidden: int, heads: int) -> dict[str, Any]:
    return {
        "vocab_size": VOCAB,
        "hidden_size": hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "intermediate_size": 2 * hidden,
        "max_position_embeddings": POSITIONS,
        "num_labels": LABELS,
        "initializer_range": INIT_RANGE,
    }


def roberta_fields(hidden: int, heads: int) -> dict[str, Any]:
    # RoBERTa's positions start at pad + 1, so it has pad + 1 more position rows
    return {
        **bert_fields(hidden, heads),
        "max_position_embeddings": POSITIONS + 2,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
    }


def distilbert_config(dim: int, heads: int) -> DistilBertConfig:
    return DistilBertConfig(
        vocab_size=VOCAB,
        dim=dim,
        n_layers=2,
        n_heads=heads,
        hidden_dim=3 * dim,
        max_position_embeddings=POSITIONS,
        num_labels=LABELS,
        initializer_range=INIT_RANGE,
    )


CASES = [
    Case("bert/h32", BertConfig(**bert_fields(32, 4)), pairs=True),
    Case("bert/h48", BertConfig(**bert_fields(48, 3)), pairs=True),
    Case("electra/h32-e16", ElectraConfig(**bert_fields(32, 4), embedding_size=16), pairs=True),
    Case("electra/h64-e64", ElectraConfig(**bert_fields(64, 2), embedding_size=64), pairs=True),
    Case("roberta/h32", RobertaConfig(**roberta_fields(32, 4)), pairs=False),
    Case("roberta/h64", RobertaConfig(**roberta_fields(64, 2)), pairs=False),
    Case("xlm-roberta/h32", XLMRobertaConfig(**roberta_fields(32, 2)), pairs=False),
    Case("xlm-roberta/h48", XLMRobertaConfig(**roberta_fields(48, 4)), pairs=False),
    Case("distilbert/h32", distilbert_config(32, 4), pairs=False),
    Case("distilbert/h64", distilbert_config(64, 2), pairs=False),
]


def inputs(case: Case, padded: bool) -> dict[str, torch.Tensor]:
    """Token ids (padding positions hold the pad id, as a tokenizer writes them), their
    attention mask, and for a family with token types a second segment of type 1."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, VOCAB, (5, 14), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if padded:
        for row, length in ((1, 9), (3, 4), (4, 13)):
            attention_mask[row, length:] = 0
        input_ids[attention_mask == 0] = case.pad
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if case.pairs:
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, 6:] = 1
        batch["token_type_ids"] = token_type_ids * attention_mask
    return batch


def save_random(case: Case, folder: Path, seed: int = 0) -> Path:
    """A random-weight AutoModelForSequenceClassification of the case, saved to ``folder``."""
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(case.config).save_pretrained(folder)
    return folder
