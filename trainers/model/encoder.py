"""Our own BERT encoder: small, readable, loads any Hugging Face BERT checkpoint by key name.

The other families (ELECTRA, RoBERTa / XLM-R, DistilBERT) share its layers; only their
embeddings differ (``Embeddings`` follows ``arch.family``).

We own this module (transformers 5 dropped ``head_mask`` and ``prune_heads``) so that CoFi masks
can gate heads, whole blocks, FFN units and hidden dims, and so that pruned models can have a
different number of heads and units in every layer. Parameter names (see ``HF_KEY_MAP`` in
:mod:`trainers.model.checkpoints`) are our own; shapes follow Hugging Face's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.model.architecture import Architecture, Family
from trainers.model.masks import ForwardMasks, KeptHidden, LayerMasks, Masks, prepare


def masked_layer_norm(x: Tensor, norm: nn.LayerNorm, kept: KeptHidden | None) -> Tensor:
    """LayerNorm over the kept hidden dims only; pruned dims come out as 0. x: [..., H].

    ``kept`` (built once per forward pass by :meth:`Masks.prepared`) carries either the kept
    dims' indices (on a CPU: the exact LayerNorm kernel on the gathered dims) or only [H]
    vectors (on a GPU, and under torch.compile: no data-dependent shape, and a step never
    reads the kept set's size back from the device). The indicator path is one weighted mean
    and one LayerNorm kernel over all H dims (see :class:`KeptHidden`), computed in float32 as
    autocast computes LayerNorm; it returns x's dtype."""
    if kept is None:
        normed: Tensor = norm(x)
        return normed
    if kept.index is not None:
        index = kept.index
        out = torch.zeros_like(x)
        out[..., index] = F.layer_norm(
            x[..., index], (index.numel(),), norm.weight[index], norm.bias[index], norm.eps
        )
        return out
    wide = x.float()
    mean = (wide * kept.mean_weights).sum(-1, keepdim=True)  # [..., 1]: over the kept dims
    spread = (wide - mean) * kept.spread  # [..., H]: mean 0, the kept dims' variance over H
    weight, bias = norm.weight * kept.shrink, norm.bias * kept.indicator  # [H]: 0 where pruned
    return F.layer_norm(spread, spread.shape[-1:], weight, bias, norm.eps).to(x.dtype)


class Embeddings(nn.Module):
    """Word + position (+ token type) embeddings, LayerNorm, dropout; per family:
    ELECTRA's tables may be narrower than the encoder (``project`` widens them after the
    LayerNorm), RoBERTa numbers positions from ``padding_idx + 1`` over non-padding tokens,
    DistilBERT has no token-type table (``type_vocab_size`` 0).

    The hidden-dim mask applies where the hidden width begins: to the LayerNorm (over the kept
    dims) of a model without a projection, to the projection's outputs of one with it."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        width = arch.embedding_width
        self.word = nn.Embedding(arch.vocab_size, width)
        self.position = nn.Embedding(arch.max_positions, width)
        self.token_type = (
            nn.Embedding(arch.type_vocab_size, width) if arch.type_vocab_size else None
        )
        self.norm = nn.LayerNorm(width, eps=arch.layer_norm_eps)
        self.dropout = nn.Dropout(arch.hidden_dropout)
        self.project = nn.Linear(width, arch.hidden_size) if arch.projects_embeddings else None
        # RoBERTa: the pad token id positions count from; None: positions 0 .. L-1
        self.padding_idx = arch.padding_idx if arch.family is Family.ROBERTA else None

    def forward(
        self,
        input_ids: Tensor | None = None,  # [B, L]
        token_type_ids: Tensor | None = None,  # [B, L]; None: type 0
        inputs_embeds: Tensor | None = None,  # [B, L, E], instead of input_ids
        masks: Masks | ForwardMasks | None = None,
    ) -> Tensor:  # [B, L, H]
        masks = prepare(masks)
        return self.to_hidden(self.embed(input_ids, token_type_ids, inputs_embeds, masks), masks)

    def embed(
        self,
        input_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        masks: Masks | ForwardMasks | None = None,
    ) -> Tensor:  # [B, L, E]: the tables' width (a multiplexer mixes here)
        masks = prepare(masks)
        x: Tensor = self.word(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.positions(input_ids, x.shape[1])
        if self.token_type is not None:
            if token_type_ids is None:
                x = x + self.token_type.weight[0]
            else:
                x = x + self.token_type(token_type_ids)
        if self.project is None and masks is not None and masks.hidden is not None:
            x = masked_layer_norm(x, self.norm, masks.kept) * masks.hidden
        else:
            x = self.norm(x)
        out: Tensor = self.dropout(x)
        return out

    def to_hidden(self, x: Tensor, masks: Masks | ForwardMasks | None) -> Tensor:
        """The projection to the encoder's width, where there is one (and its hidden mask):
        [B, L, E] -> [B, L, H]."""
        if self.project is None:
            return x
        masks = prepare(masks)
        projected: Tensor = self.project(x)
        if masks is not None and masks.hidden is not None:
            projected = projected * masks.hidden
        return projected

    def positions(self, input_ids: Tensor | None, length: int) -> Tensor:  # [B or 1, L, H]
        if self.padding_idx is None:
            return self.position.weight[:length]
        if input_ids is None:  # as transformers: every position is a token
            ids = torch.arange(length, device=self.position.weight.device) + self.padding_idx + 1
        else:  # padding keeps position padding_idx; tokens count from padding_idx + 1
            tokens = input_ids.ne(self.padding_idx).long()  # [B, L]
            ids = torch.cumsum(tokens, dim=1) * tokens + self.padding_idx
        embedded: Tensor = self.position(ids)
        return embedded


class SelfAttention(nn.Module):
    """Multi-head self-attention. q, k and v keep their own Linear modules (checkpoint keys,
    head pruning and export see three), but a forward pass computes them in one matmul."""

    def __init__(self, arch: Architecture, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, arch.head_dim
        width = heads * arch.head_dim
        self.query = nn.Linear(arch.hidden_size, width)
        self.key = nn.Linear(arch.hidden_size, width)
        self.value = nn.Linear(arch.hidden_size, width)
        self.output = nn.Linear(width, arch.hidden_size)
        self.norm = nn.LayerNorm(arch.hidden_size, eps=arch.layer_norm_eps)
        self.attention_dropout = arch.attention_dropout
        self.dropout = nn.Dropout(arch.hidden_dropout)

    def forward(
        self,
        x: Tensor,  # [B, L, H]
        attend: Tensor | None,  # [B, 1, 1, L] bool, True where a key position may be attended
        masks: LayerMasks | None,
    ) -> Tensor:  # [B, L, H]
        batch, length, _ = x.shape
        projections = (self.query, self.key, self.value)
        weight = torch.cat([p.weight for p in projections])  # [3*h*d, H]
        bias = torch.cat([p.bias for p in projections])  # [3*h*d]
        qkv = F.linear(x, weight, bias).view(batch, length, 3, self.heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, h, L, d]
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attend,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )  # [B, h, L, d]
        if masks is not None and masks.head is not None:
            context = context * masks.head.view(1, -1, 1, 1)
        out = self.output(context.transpose(1, 2).reshape(batch, length, -1))
        out = _gate(out, masks, masks.attention if masks is not None else None)
        return masked_layer_norm(self.dropout(out) + x, self.norm, _kept(masks))


class FeedForward(nn.Module):
    def __init__(self, arch: Architecture, units: int) -> None:
        super().__init__()
        self.up = nn.Linear(arch.hidden_size, units)
        self.down = nn.Linear(units, arch.hidden_size)
        self.norm = nn.LayerNorm(arch.hidden_size, eps=arch.layer_norm_eps)
        self.dropout = nn.Dropout(arch.hidden_dropout)

    def forward(self, x: Tensor, masks: LayerMasks | None) -> Tensor:
        h = F.gelu(self.up(x))  # [B, L, I]
        if masks is not None and masks.intermediate is not None:
            h = h * masks.intermediate
        out = _gate(self.down(h), masks, masks.ffn if masks is not None else None)
        return masked_layer_norm(self.dropout(out) + x, self.norm, _kept(masks))


def _gate(out: Tensor, masks: LayerMasks | None, layer_gate: Tensor | None) -> Tensor:
    """A block's output times its layer gate and the hidden-dim mask."""
    if layer_gate is not None:
        out = out * layer_gate
    if masks is not None and masks.hidden is not None:
        out = out * masks.hidden
    return out


def _kept(masks: LayerMasks | None) -> KeptHidden | None:
    return None if masks is None else masks.kept


class Layer(nn.Module):
    def __init__(self, arch: Architecture, heads: int, units: int) -> None:
        super().__init__()
        # A pruned layer may have lost its whole attention or FFN block: it is the identity.
        self.attention = SelfAttention(arch, heads) if heads else None
        self.ffn = FeedForward(arch, units) if units else None

    def forward(self, x: Tensor, attend: Tensor | None, masks: LayerMasks | None) -> Tensor:
        # A block whose masks remove it passes x through (no LayerNorm), as its materialized
        # form does; chosen on the device, so a step never waits for the masks' values.
        if self.attention is not None:
            out = self.attention(x, attend, masks)
            x = _unless(masks.attention_removed if masks else None, x, out)
        if self.ffn is not None:
            out = self.ffn(x, masks)
            x = _unless(masks.ffn_removed if masks else None, x, out)
        return x


def _unless(removed: Tensor | None, x: Tensor, out: Tensor) -> Tensor:
    """The block's output, or its input where the masks removed the block."""
    return out if removed is None else torch.where(removed, x, out)


class Encoder(nn.Module):
    """Embeddings and Transformer layers: token ids in, hidden states out."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.embeddings = Embeddings(arch)
        self.layers = nn.ModuleList(
            Layer(arch, heads, units)
            for heads, units in zip(arch.heads, arch.intermediate, strict=True)
        )

    def forward(
        self,
        input_ids: Tensor,  # [B, L]
        attention_mask: Tensor | None = None,  # [B, L], 1 for tokens, 0 for padding
        token_type_ids: Tensor | None = None,  # [B, L]
        masks: Masks | ForwardMasks | None = None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:  # [B, L, H]
        masks = prepare(masks)  # once per forward pass, for the embeddings and every layer
        x = self.embeddings(input_ids, token_type_ids, masks=masks)
        return self.encode(x, attention_mask, masks, collect)

    def encode(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        masks: Masks | ForwardMasks | None = None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:
        """Run the layers on embedded inputs x: [B, L, H]; ``collect`` receives every layer's
        output (for layer distillation)."""
        attend = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        prepared = prepare(masks)
        for index, layer in enumerate(self.layers):
            x = layer(x, attend, None if prepared is None else prepared.layer(index))
            if collect is not None:
                collect.append(x)
        return x
