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
from trainers.model.masks import Masks


def masked_layer_norm(x: Tensor, norm: nn.LayerNorm, kept: Tensor | None) -> Tensor:
    """LayerNorm over the kept hidden dims only; pruned dims come out as 0. x: [..., H].

    ``kept`` (see :meth:`Masks.kept_hidden`) is either the kept dims' indices (int64, on a
    CPU: the exact LayerNorm kernel on the gathered dims) or a [H] indicator, 1.0 for a kept
    dim (on a GPU: statistics weighted by it, so a step never reads the kept set's size back
    from the device; computed in float32, as autocast computes LayerNorm)."""
    if kept is None:
        normed: Tensor = norm(x)
        return normed
    if kept.dtype == torch.long:
        out = torch.zeros_like(x)
        out[..., kept] = F.layer_norm(
            x[..., kept], (kept.numel(),), norm.weight[kept], norm.bias[kept], norm.eps
        )
        return out
    x = x.float()
    count = kept.sum()
    mean = (x * kept).sum(-1, keepdim=True) / count  # [..., 1]
    centred = (x - mean) * kept
    variance = (centred * centred).sum(-1, keepdim=True) / count  # biased, as LayerNorm's
    return (centred * torch.rsqrt(variance + norm.eps) * norm.weight + norm.bias) * kept


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
        masks: Masks | None = None,
    ) -> Tensor:  # [B, L, H]
        return self.to_hidden(self.embed(input_ids, token_type_ids, inputs_embeds, masks), masks)

    def embed(
        self,
        input_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        masks: Masks | None = None,
    ) -> Tensor:  # [B, L, E]: the tables' width (a multiplexer mixes here)
        x: Tensor = self.word(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.positions(input_ids, x.shape[1])
        if self.token_type is not None:
            if token_type_ids is None:
                x = x + self.token_type.weight[0]
            else:
                x = x + self.token_type(token_type_ids)
        if self.project is None and masks is not None and masks.hidden is not None:
            x = masked_layer_norm(x, self.norm, masks.kept_hidden()) * masks.hidden
        else:
            x = self.norm(x)
        out: Tensor = self.dropout(x)
        return out

    def to_hidden(self, x: Tensor, masks: Masks | None) -> Tensor:  # [B, L, E] -> [B, L, H]
        """The projection to the encoder's width, where there is one (and its hidden mask)."""
        if self.project is None:
            return x
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
        masks: Masks | None,
        layer: int,
        kept: Tensor | None,
    ) -> Tensor:  # [B, L, H]
        batch, length, _ = x.shape

        def split(t: Tensor) -> Tensor:  # [B, L, h*d] -> [B, h, L, d]
            return t.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            split(self.query(x)),
            split(self.key(x)),
            split(self.value(x)),
            attn_mask=attend,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )  # [B, h, L, d]
        if masks is not None and masks.head is not None:
            context = context * masks.head[layer].view(1, -1, 1, 1)
        out = self.output(context.transpose(1, 2).reshape(batch, length, -1))
        out = _gate(out, masks, masks.attention if masks is not None else None, layer)
        return masked_layer_norm(self.dropout(out) + x, self.norm, kept)


class FeedForward(nn.Module):
    def __init__(self, arch: Architecture, units: int) -> None:
        super().__init__()
        self.up = nn.Linear(arch.hidden_size, units)
        self.down = nn.Linear(units, arch.hidden_size)
        self.norm = nn.LayerNorm(arch.hidden_size, eps=arch.layer_norm_eps)
        self.dropout = nn.Dropout(arch.hidden_dropout)

    def forward(self, x: Tensor, masks: Masks | None, layer: int, kept: Tensor | None) -> Tensor:
        h = F.gelu(self.up(x))  # [B, L, I]
        if masks is not None and masks.intermediate is not None:
            h = h * masks.intermediate[layer]
        out = _gate(self.down(h), masks, masks.ffn if masks is not None else None, layer)
        return masked_layer_norm(self.dropout(out) + x, self.norm, kept)


def _gate(out: Tensor, masks: Masks | None, layer_gates: Tensor | None, layer: int) -> Tensor:
    """A block's output times its layer gate and the hidden-dim mask."""
    if layer_gates is not None:
        out = out * layer_gates[layer]
    if masks is not None and masks.hidden is not None:
        out = out * masks.hidden
    return out


class Layer(nn.Module):
    def __init__(self, arch: Architecture, heads: int, units: int) -> None:
        super().__init__()
        # A pruned layer may have lost its whole attention or FFN block: it is the identity.
        self.attention = SelfAttention(arch, heads) if heads else None
        self.ffn = FeedForward(arch, units) if units else None

    def forward(
        self, x: Tensor, attend: Tensor | None, masks: Masks | None, layer: int, kept: Tensor | None
    ) -> Tensor:
        # A block whose masks remove it passes x through (no LayerNorm), as its materialized
        # form does; chosen on the device, so a step never waits for the masks' values.
        if self.attention is not None:
            out = self.attention(x, attend, masks, layer, kept)
            x = _unless(masks.attention_removed(layer) if masks else None, x, out)
        if self.ffn is not None:
            out = self.ffn(x, masks, layer, kept)
            x = _unless(masks.ffn_removed(layer) if masks else None, x, out)
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
        masks: Masks | None = None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:  # [B, L, H]
        x = self.embeddings(input_ids, token_type_ids, masks=masks)
        return self.encode(x, attention_mask, masks, collect)

    def encode(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        masks: Masks | None = None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:
        """Run the layers on embedded inputs x: [B, L, H]; ``collect`` receives every layer's
        output (for layer distillation)."""
        attend = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        kept = masks.kept_hidden() if masks is not None else None
        for index, layer in enumerate(self.layers):
            x = layer(x, attend, masks, index, kept)
            if collect is not None:
                collect.append(x)
        return x
