"""A dense N = 1 classifier saved as a transformers checkpoint: ``config.json`` (the family's
config class, ``id2label`` / ``label2id`` of the data's labels), ``model.safetensors`` under
transformers' own key names, and the tokenizer's files, so that
``AutoModelForSequenceClassification.from_pretrained(folder)`` computes our logits, and
``[model] name_or_path = folder`` (with ``fine_tuned``) starts a study from it.

The key names are not written by hand: transformers' model of the config lists its own keys,
and each is read through :func:`trainers.model.checkpoints.map_key` (the mapping every load
uses), so a save and a load cannot disagree. A pruned model (layers of different widths, a
block removed) or a multiplexed one has no transformers counterpart and is refused in one line
(:func:`check_dense`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autoprumux.core.errors import AutoPruMuxError
from trainers.model.architecture import Architecture, Family
from trainers.model.checkpoints import CheckpointError, follow_umask, map_key
from trainers.model.classifier import Classifier

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' progress bars off (loading and writing weights): a command's stderr is
    its one-line messages."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


class NotDense(AutoPruMuxError):
    """A model that has no transformers counterpart (multiplexed, or pruned)."""


def check_dense(arch: Architecture) -> None:
    """Refuse a multiplexed or pruned architecture in one line, naming what transformers'
    dense layers cannot hold."""
    if arch.is_multiplexed:
        raise NotDense(
            f"a multiplexed model (N = {arch.mux_width}) has no transformers counterpart; "
            "only an N = 1, s = 0 model is saved in transformers' format"
        )
    pruned = _pruned_shape(arch)
    if pruned:
        raise NotDense(
            f"a pruned model ({'; '.join(pruned)}) has no transformers counterpart; "
            "only an N = 1, s = 0 model is saved in transformers' format"
        )


def _pruned_shape(arch: Architecture) -> list[str]:
    """What makes ``arch`` other than transformers' dense shape: a removed block (0 heads, FFN
    width 0: the layer passes its input through there, which a transformers layer cannot, even
    of ``intermediate_size`` 0: its FFN adds a bias and a LayerNorm), head counts or FFN widths
    that differ per layer, pruned hidden dims. Empty: the shape transformers' config holds
    (every layer ``num_heads`` heads and one FFN width, which may be narrower than the base
    model's)."""
    why = []
    for block, widths in (("no attention heads", arch.heads), ("FFN width 0", arch.intermediate)):
        removed = [layer for layer, width in enumerate(widths) if width == 0]
        if removed:
            why.append(f"{block} in {_layers(removed)}: the block removed")
    if not why and set(arch.heads) != {arch.num_heads}:
        why.append(f"heads per layer {_listed(arch.heads)} of {arch.num_heads}")
    if not why and len(set(arch.intermediate)) != 1:
        why.append(f"FFN widths per layer {_listed(arch.intermediate)}")
    width = arch.num_heads * arch.head_dim  # the dense model's hidden size
    if arch.hidden_size != width:
        why.append(f"hidden size {arch.hidden_size} of {width}")
    elif arch.head_size != width:
        why.append(f"a pooler of width {arch.head_size} on hidden size {width}")
    return why


def _layers(indices: Sequence[int]) -> str:
    return f"layer{'s' if len(indices) > 1 else ''} {_listed(indices)}"


def _listed(values: Sequence[int]) -> str:
    return ", ".join(map(str, values))


def hf_config(arch: Architecture, labels: Sequence[str], pad_token_id: int = 0) -> PretrainedConfig:
    """transformers' config of the family for a dense architecture, with the labels' names."""
    from transformers import BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig

    check_dense(arch)
    named: dict[str, Any] = {
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
        "pad_token_id": pad_token_id,
    }
    if arch.family is Family.DISTILBERT:
        return DistilBertConfig(
            vocab_size=arch.vocab_size,
            dim=arch.hidden_size,
            n_layers=arch.num_layers,
            n_heads=arch.num_heads,
            hidden_dim=arch.intermediate[0],
            max_position_embeddings=arch.max_positions,
            dropout=arch.hidden_dropout,
            attention_dropout=arch.attention_dropout,
            seq_classif_dropout=arch.hidden_dropout,
            **named,
        )
    fields: dict[str, Any] = {
        "vocab_size": arch.vocab_size,
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "intermediate_size": arch.intermediate[0],
        "max_position_embeddings": arch.max_positions,
        "type_vocab_size": arch.type_vocab_size,
        "layer_norm_eps": arch.layer_norm_eps,
        "hidden_dropout_prob": arch.hidden_dropout,
        "attention_probs_dropout_prob": arch.attention_dropout,
        "hidden_act": "gelu",
        **named,
    }
    if arch.family is Family.ELECTRA:
        return ElectraConfig(embedding_size=arch.embedding_width, **fields)
    if arch.family is Family.ROBERTA:
        return RobertaConfig(**{**fields, "pad_token_id": arch.padding_idx})
    return BertConfig(**fields)


def transformers_state(model: Classifier, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """Our weights under transformers' ``keys`` (those of its model of the family); a key we
    deliberately drop (a buffer such as ``position_ids``) is left out."""
    ours = model.state_dict()
    family, state = model.arch.family, {}
    for key in keys:
        mapped = map_key(key, model.arch.demux_depth, family)
        if mapped is None:
            continue
        if mapped not in ours:
            raise KeyError(f"transformers' {key} reads our {mapped}, which the model lacks")
        state[key] = ours[mapped].detach().clone().contiguous().cpu()
    return state


def save_transformers(
    model: Classifier,
    folder: str | Path,
    labels: Sequence[str],
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int | None = None,
) -> Path:
    """Save a dense N = 1 classifier as a transformers checkpoint (config, safetensors
    weights, the tokenizer's files when given) in ``folder``; returns the folder.
    ``max_length``: the length the model was trained at (``[model] max_seq_length``), saved
    as the tokenizer's ``model_max_length``, where transformers' tokenizers and pipelines
    truncate (``truncation=True``); the base model's (512) would read past what the model
    saw in training, and give other probabilities."""
    from transformers import AutoModelForSequenceClassification

    arch = model.arch
    if len(labels) != arch.num_labels:
        raise ValueError(f"{len(labels)} label names for a head of {arch.num_labels} labels")
    pad = arch.padding_idx
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        pad = int(tokenizer.pad_token_id)
    config = hf_config(arch, [str(label) for label in labels], pad)
    # transformers leaves from_config unannotated
    with _quiet():
        reference = AutoModelForSequenceClassification.from_config(config)  # type: ignore[no-untyped-call]
    state = transformers_state(model, list(reference.state_dict()))
    result = reference.load_state_dict(state, strict=False)
    # every parameter must come from ours; only buffers (position ids) may be left as built
    buffers = {name for name, _ in reference.named_buffers()}
    untouched = [k for k in result.missing_keys if k not in buffers]
    if untouched or result.unexpected_keys:
        raise KeyError(f"not mapped: {untouched or result.unexpected_keys}")
    folder = Path(folder)
    with _quiet():
        reference.save_pretrained(str(folder), safe_serialization=True)
    for weights in folder.glob("*.safetensors"):  # written 0600 by safetensors (follow_umask)
        follow_umask(weights)
    if tokenizer is not None:
        _save_tokenizer(tokenizer, folder, max_length)
    return folder


def _save_tokenizer(
    tokenizer: PreTrainedTokenizerBase, folder: Path, max_length: int | None
) -> None:
    """The tokenizer's files in ``folder``, its ``model_max_length`` ``max_length`` there
    (None: its own); the caller's tokenizer is left as it was."""
    kept = tokenizer.model_max_length
    if max_length is not None:
        tokenizer.model_max_length = max_length
    try:
        tokenizer.save_pretrained(str(folder))
    finally:
        tokenizer.model_max_length = kept


def logits_difference(
    model: Classifier, folder: str | Path, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
) -> float:
    """Max |logit difference| between ``model`` and transformers' model of the saved
    ``folder`` on ``texts`` (fp32, CPU, eval): the check of a saved checkpoint."""
    from transformers import AutoModelForSequenceClassification

    with _quiet():
        reference = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    model = model.to("cpu").eval()
    with torch.no_grad():
        expected = reference(**batch).logits
        ours = model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    return float((ours - expected).abs().max())


def folder_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model folder (a trial's folder holds its files)."""
    from transformers import AutoTokenizer

    from trainers.model.checkpoints import holds_vocabulary, special_tokens_only

    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # no or broken tokenizer files: one line for the user
        raise CheckpointError(f"{folder}: no usable tokenizer ({type(err).__name__})") from None
    if not holds_vocabulary(Path(folder)) or special_tokens_only(tokenizer):
        raise CheckpointError(f"{folder}: no usable tokenizer (its vocabulary files are gone)")
    return tokenizer
