"""The classifier autoprumux trains: encoder, optional multiplexing, and a classification head.

With N = 1 it is a plain classifier on token 0, the same computation as transformers'
``AutoModelForSequenceClassification`` of the family: a dense layer and an activation
(BERT's pooler: tanh; ELECTRA's head: GELU; RoBERTa's head: tanh; DistilBERT's
``pre_classifier``: ReLU), dropout, and a linear layer to the labels; ELECTRA's and RoBERTa's
heads also apply dropout before their dense layer. With N > 1 the batch's rows are
mixed N at a time, the encoder runs once per group, and the demultiplexer recovers one
representation per row from position 0 (MUX-BERT's classification path); the linear layer to
the labels reads it directly (MUX-BERT), or, for the other families, through the family's head
(MUX-ELECTRA's ``ElectraClassificationHead`` reads the demultiplexed features).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.model.architecture import Architecture, Family, MuxStyle, Pooling
from trainers.model.encoder import Encoder, SelfAttention
from trainers.model.masks import ForwardMasks, Masks, prepare
from trainers.model.multiplexing import DEMULTIPLEXERS, Multiplexer

# per family: the activation after the head's dense layer, and whether dropout precedes it
HEAD_ACTIVATIONS: dict[Family, Callable[[Tensor], Tensor]] = {
    Family.BERT: torch.tanh,
    Family.ELECTRA: F.gelu,  # transformers' get_activation("gelu"): the exact (erf) GELU
    Family.ROBERTA: torch.tanh,
    Family.DISTILBERT: torch.relu,
}
_DROPOUT_FIRST = frozenset({Family.ELECTRA, Family.ROBERTA})


class Pooler(nn.Module):
    """The head's dense layer on token 0 (BERT's pooler, ELECTRA's and RoBERTa's
    ``classifier.dense``, DistilBERT's ``pre_classifier``) and the family's activation."""

    def __init__(self, arch: Architecture, inputs: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inputs, arch.head_size)
        self.activation = HEAD_ACTIVATIONS[arch.family]
        self.dropout = nn.Dropout(arch.hidden_dropout) if arch.family in _DROPOUT_FIRST else None

    def forward(self, first_token: Tensor) -> Tensor:  # [B, H] -> [B, size]
        if self.dropout is not None:
            first_token = self.dropout(first_token)
        return self.activation(self.dense(first_token))


class Classifier(nn.Module):
    def __init__(self, arch: Architecture, mux_seed: int = 0) -> None:
        super().__init__()
        self.arch = arch
        self.encoder = Encoder(arch)
        # the head's dense layer: on token 0's hidden state (N = 1), on the demultiplexed
        # features (N > 1, families other than BERT), or none (MUX-BERT)
        self.pooler: Pooler | None = None
        if arch.is_multiplexed:
            self.mux = Multiplexer(arch, seed=mux_seed)
            self.demux = DEMULTIPLEXERS[arch.demux](arch)
            if arch.family is not Family.BERT:
                self.pooler = Pooler(arch, arch.head_size)
        else:
            self.pooler = Pooler(arch, arch.hidden_size)
        self.dropout = nn.Dropout(arch.hidden_dropout)
        self.classifier = nn.Linear(arch.head_size, arch.num_labels)

    def forward(
        self,
        input_ids: Tensor,  # [B, L]
        attention_mask: Tensor | None = None,  # [B, L]
        token_type_ids: Tensor | None = None,  # [B, L]
        masks: Masks | ForwardMasks | None = None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:  # logits [B, labels]
        """``collect`` receives every encoder layer's output ([B/N, L, H] each)."""
        features = self.features(input_ids, attention_mask, token_type_ids, masks, collect)
        logits: Tensor = self.classifier(self.dropout(features))
        return logits

    def features(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        masks: Masks | ForwardMasks | None = None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:
        """The representation the classifier reads, one per row: [B, size]."""
        masks = prepare(masks)  # once per forward pass: a multiplexed one embeds twice
        if not self.arch.is_multiplexed:
            hidden: Tensor = self.encoder(input_ids, attention_mask, token_type_ids, masks, collect)
            return self.head(hidden[:, 0])
        demuxed = self.demultiplexed(input_ids, attention_mask, token_type_ids, masks, collect)
        return self.head(demuxed)

    def head(self, features: Tensor) -> Tensor:  # [B, H or size] -> [B, size]
        return features if self.pooler is None else self.pooler(features)

    def demultiplexed(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        token_type_ids: Tensor | None,
        masks: Masks | ForwardMasks | None,
        collect: list[Tensor] | None,
    ) -> Tensor:  # [B, size]: one per row, as the demultiplexer recovers it
        rows = input_ids.shape[0]
        input_ids, attention_mask, token_type_ids = pad_to_multiple(
            self.arch.mux_width, input_ids, attention_mask, token_type_ids
        )
        hidden = self.multiplexed_hidden(input_ids, attention_mask, token_type_ids, masks, collect)
        if self.arch.pooling is Pooling.CLS or attention_mask is None:
            first: Tensor = self.demux(hidden[:, 0])
            return first[:rows]  # padding rows dropped
        if self.arch.pooling is Pooling.MEAN_HIDDEN:
            width = self.arch.mux_width
            mask = attention_mask.to(hidden.dtype).view(hidden.shape[0], width, -1)  # [G, N, L]
            pooled = mask @ hidden / mask.sum(-1, keepdim=True).clamp(min=1.0)  # [G, N, H]
            demuxed: Tensor = self.demux(pooled).view(
                hidden.shape[0], width, width, -1
            )  # [G, i, input, size]
            own = torch.arange(width, device=hidden.device)
            return demuxed[:, own, own].reshape(-1, demuxed.shape[-1])[:rows]
        tokens: Tensor = self.demux(hidden)  # [B, L, size]: every instance at every position
        weights = attention_mask.to(tokens.dtype).unsqueeze(-1)  # the instance's own tokens
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return pooled[:rows]

    def multiplexed_hidden(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        token_type_ids: Tensor | None,
        masks: Masks | ForwardMasks | None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:
        """Encoder output of the mixed groups: [B/N, L, H]."""
        embeddings = self.encoder.embeddings
        # instances are mixed at the tables' width, before a projection (MUX-ELECTRA's rule)
        if self.arch.mux_style is MuxStyle.PUBLISHED:
            input_ids = input_ids.clone()  # never the caller's tensor
            input_ids[:, 0] = self.arch.cls_token_id
            mixed = self.mux(embeddings.embed(input_ids, masks=masks))
            # the released models embed the mixed vectors again (positions, type 0, LayerNorm,
            # the projection) and attend to every position
            return self.encoder.encode(
                embeddings(inputs_embeds=mixed, masks=masks), None, masks, collect
            )
        mixed = self.mux(embeddings.embed(input_ids, token_type_ids, masks=masks))
        group_mask = None if attention_mask is None else self.encoded_tokens(attention_mask)
        return self.encoder.encode(embeddings.to_hidden(mixed, masks), group_mask, masks, collect)

    def encoded_tokens(self, attention_mask: Tensor) -> Tensor:  # [B, L] -> [B/N, L]
        """Per row the encoder runs on, 1 at the positions that hold a real token of any of
        its N inputs (what the encoder attends to, unless the model attends to padding too)."""
        width = self.arch.mux_width
        return attention_mask.view(-1, width, attention_mask.shape[1]).amax(dim=1)


def pad_to_multiple(
    width: int, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Append all-padding rows (token 0, attention 0) so the row count is a multiple of N."""
    missing = -input_ids.shape[0] % width
    if not missing:
        return input_ids, attention_mask, token_type_ids

    def pad(t: Tensor) -> Tensor:
        return torch.cat([t, t.new_zeros(missing, *t.shape[1:])])

    return (
        pad(input_ids),
        None if attention_mask is None else pad(attention_mask),
        None if token_type_ids is None else pad(token_type_ids),
    )


def set_dropout(model: nn.Module, rate: float) -> None:
    """Every dropout of the model to ``rate``: hidden, attention, classifier, demultiplexer."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate
        if isinstance(module, SelfAttention):  # passes attention_dropout to the SDPA kernel
            module.attention_dropout = rate


class AutocastPrecision(Protocol):
    """What :func:`frozen_copy` reads of a precision (``trainers.runtime.device.Precision``)."""

    @property
    def autocast_dtype(self) -> torch.dtype | None: ...


class Placement(Protocol):
    """What :func:`frozen_copy` reads of an engine (``trainers.runtime.device.Engine``, which
    this layer does not import)."""

    @property
    def device(self) -> torch.device: ...

    @property
    def precision(self) -> AutocastPrecision: ...


def frozen_copy(model: Classifier, engine: Placement) -> Classifier:
    """The model to hand a phase that only runs no-grad forwards of it under the engine's
    autocast (a distillation teacher, the (1, 0) guide): on a GPU in bf16, a copy whose Linear
    weights are bf16 (:func:`linear_weights_in`), which saves autocast's cast of every weight
    in every step; otherwise the model itself. Outside autocast the copy cannot run."""
    if engine.device.type != "cuda" or engine.precision.autocast_dtype != torch.bfloat16:
        return model
    return linear_weights_in(model, torch.bfloat16)


def linear_weights_in(model: Classifier, dtype: torch.dtype) -> Classifier:
    """A frozen copy of ``model`` (no gradients) whose Linear layers hold weight and bias in
    ``dtype``: exactly what autocast casts them to before each matmul, so under autocast to
    ``dtype`` its logits equal the model's. Everything autocast computes in float32 stays float32
    (LayerNorms, embedding tables, multiplexer keys, biases added outside a Linear): casting
    the LayerNorms would round their weights for nothing, since autocast casts a LayerNorm's
    input and weights to float32 anyway."""
    frozen = copy.deepcopy(model).requires_grad_(False)
    for module in frozen.modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)
    return frozen
