"""Turn a masked model into a physically smaller one.

A masked model is not a faster model: this builds a new model whose matrices hold only the
kept heads, FFN units and hidden dims, with layers' blocks dropped where they are gone, and
folds the masks' soft values into the weights, so that it computes exactly what the masked
model computes (up to float rounding). The embedding tables, the multiplexer keys and the
demultiplexer's (and pooler's) inputs shrink with the hidden dims; where the embeddings are
projected to the hidden width (ELECTRA), the tables and keys stay whole and the projection's
outputs shrink instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from trainers.model.architecture import Architecture
from trainers.model.classifier import Classifier
from trainers.model.encoder import FeedForward, Layer, SelfAttention
from trainers.model.masks import Masks
from trainers.model.multiplexing import IndexPosDemux


@dataclass(frozen=True, kw_only=True)
class Kept:
    """What masks keep of a dense architecture, and the soft values to fold into weights."""

    arch: Architecture  # the materialized shape
    hidden: Tensor  # indices of the kept hidden dims
    hidden_z: Tensor  # their soft mask values
    heads: list[Tensor]  # per layer: indices of the kept heads (none if the block is gone)
    units: list[Tensor]  # per layer: indices of the kept FFN units
    head_scale: list[tuple[Tensor, float]]  # per layer: (head mask values, attention gate)
    unit_scale: list[tuple[Tensor, float]]  # per layer: (unit mask values, FFN gate)


def kept_by(arch: Architecture, masks: Masks, device: torch.device | str = "cpu") -> Kept:
    if len(set(arch.heads)) != 1 or len(set(arch.intermediate)) != 1:
        raise ValueError("materialize a dense model: masks refer to the dense shapes")
    heads, units = arch.heads[0], arch.intermediate[0]

    def values(mask: Tensor | None, size: int) -> Tensor:
        return torch.ones(size, device=device) if mask is None else mask.detach().float().to(device)

    none = torch.empty(0, dtype=torch.long, device=device)
    hidden_z = values(masks.hidden, arch.hidden_size)
    kept = torch.nonzero(hidden_z, as_tuple=True)[0]
    head_scale, unit_scale, kept_heads, kept_units = [], [], [], []
    for layer in range(arch.num_layers):
        head_z = values(None if masks.head is None else masks.head[layer], heads)
        unit_z = values(None if masks.intermediate is None else masks.intermediate[layer], units)
        attention_z = float(masks.attention[layer]) if masks.attention is not None else 1.0
        ffn_z = float(masks.ffn[layer]) if masks.ffn is not None else 1.0
        kept_heads.append(torch.nonzero(head_z, as_tuple=True)[0] if attention_z else none)
        kept_units.append(torch.nonzero(unit_z, as_tuple=True)[0] if ffn_z else none)
        head_scale.append((head_z, attention_z))
        unit_scale.append((unit_z, ffn_z))
    small_arch = dataclasses.replace(
        arch,
        hidden_size=len(kept),
        heads=tuple(len(h) for h in kept_heads),
        intermediate=tuple(len(u) for u in kept_units),
        head_size=arch.head_size,
    )
    return Kept(
        arch=small_arch,
        hidden=kept,
        hidden_z=hidden_z[kept],
        heads=kept_heads,
        units=kept_units,
        head_scale=head_scale,
        unit_scale=unit_scale,
    )


def materialized_architecture(arch: Architecture, masks: Masks) -> Architecture:
    """The shape ``materialize`` would build, without building it."""
    return kept_by(arch, masks).arch


@torch.no_grad()
def materialize(model: Classifier, masks: Masks) -> Classifier:
    arch, d = model.arch, model.arch.head_dim
    device = next(model.parameters()).device
    k = kept_by(arch, masks, device)
    kept, zh = k.hidden, k.hidden_z
    kept_heads, kept_units, head_scale, unit_scale = k.heads, k.units, k.head_scale, k.unit_scale
    small = Classifier(k.arch).to(device)

    emb, small_emb = model.encoder.embeddings, small.encoder.embeddings
    if emb.project is not None:
        # the tables are whole; the projection keeps its kept outputs, the hidden mask folded
        small_emb.load_state_dict(
            {
                **emb.state_dict(),
                "project.weight": emb.project.weight[kept] * zh[:, None],
                "project.bias": emb.project.bias[kept] * zh,
            }
        )
    else:
        # tables keep the kept columns; the hidden mask folds into the LayerNorm
        for name in ("word", "position", "token_type"):
            table, small_table = getattr(emb, name), getattr(small_emb, name)
            if table is not None:  # DistilBERT has no token-type table
                small_table.weight.copy_(table.weight[:, kept])
        small_emb.norm.weight.copy_(emb.norm.weight[kept] * zh)
        small_emb.norm.bias.copy_(emb.norm.bias[kept] * zh)

    for layer, (big, little) in enumerate(
        zip(model.encoder.layers, small.encoder.layers, strict=True)
    ):
        assert isinstance(big, Layer) and isinstance(little, Layer)  # what Encoder holds
        if little.attention is not None:
            assert big.attention is not None  # pruning keeps a block only where there is one
            _copy_attention(
                big.attention, little.attention, kept, zh, kept_heads[layer], *head_scale[layer], d
            )
        if little.ffn is not None:
            assert big.ffn is not None
            _copy_ffn(big.ffn, little.ffn, kept, zh, kept_units[layer], *unit_scale[layer])

    if arch.is_multiplexed:
        keys = model.mux.keys  # [N, E]: whole where the embeddings are projected
        small.mux.keys.copy_(keys if arch.projects_embeddings else keys[:, kept])
        if isinstance(model.demux, IndexPosDemux):  # arch.demux is DemuxKind.INDEX_POS
            first = model.demux.dense[0]
            assert isinstance(first, torch.nn.Linear)
            key_columns = torch.arange(arch.head_size, device=device)
            columns = torch.cat([key_columns, arch.head_size + kept])  # [key_i ; h_kept]
            small.demux.load_state_dict(
                {**model.demux.state_dict(), "dense.0.weight": first.weight[:, columns]}
            )
        else:
            small.demux.load_state_dict(
                {**model.demux.state_dict(), "w1": model.demux.w1[:, kept, :]}
            )
        if model.pooler is not None:  # it reads the demultiplexed features: unpruned
            assert small.pooler is not None
            small.pooler.load_state_dict(model.pooler.state_dict())
    else:
        assert model.pooler is not None and small.pooler is not None  # every N = 1 model's
        small.pooler.dense.weight.copy_(model.pooler.dense.weight[:, kept])
        small.pooler.dense.bias.copy_(model.pooler.dense.bias)
    small.classifier.load_state_dict(model.classifier.state_dict())
    return small.train(model.training)


def _copy_attention(
    big: SelfAttention,
    little: SelfAttention,
    kept: Tensor,
    zh: Tensor,
    heads: Tensor,
    head_z: Tensor,
    attention_z: float,
    d: int,
) -> None:
    # Rows of Q, K, V (and columns of the output projection) of the kept heads.
    rows = (heads[:, None] * d + torch.arange(d, device=heads.device)[None, :]).reshape(-1)
    for name in ("query", "key", "value"):
        source, target = getattr(big, name), getattr(little, name)
        target.weight.copy_(source.weight[rows][:, kept])
        target.bias.copy_(source.bias[rows])
    column_scale = head_z[heads].repeat_interleave(d) * attention_z  # head gate on each column
    little.output.weight.copy_(big.output.weight[kept][:, rows] * column_scale * zh[:, None])
    little.output.bias.copy_(big.output.bias[kept] * attention_z * zh)
    little.norm.weight.copy_(big.norm.weight[kept])
    little.norm.bias.copy_(big.norm.bias[kept])


def _copy_ffn(
    big: FeedForward,
    little: FeedForward,
    kept: Tensor,
    zh: Tensor,
    units: Tensor,
    unit_z: Tensor,
    ffn_z: float,
) -> None:
    little.up.weight.copy_(big.up.weight[units][:, kept])
    little.up.bias.copy_(big.up.bias[units])
    little.down.weight.copy_(big.down.weight[kept][:, units] * unit_z[units] * ffn_z * zh[:, None])
    little.down.bias.copy_(big.down.bias[kept] * ffn_z * zh)
    little.norm.weight.copy_(big.norm.weight[kept])
    little.norm.bias.copy_(big.norm.bias[kept])
