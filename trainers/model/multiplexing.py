"""Data multiplexing (DataMUX): N inputs mixed into one, and N outputs recovered from one.

Rows of a batch are grouped N at a time: row r is instance ``r % N`` of group ``r // N``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.model.architecture import Architecture, DemuxKind


def gaussian_keys(width: int, size: int, norm: float, seed: int = 0) -> Tensor:
    """[width, size] standard Gaussian rows, each scaled to L2 norm ``norm``."""
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(width, size, generator=generator)
    scaled: Tensor = keys / keys.norm(dim=1, keepdim=True) * norm
    return scaled


class Multiplexer(nn.Module):
    """Gaussian-Hadamard mixing: each instance times its fixed key, then the mean over N."""

    keys: Tensor  # [N, E]

    def __init__(self, arch: Architecture, seed: int = 0) -> None:
        super().__init__()
        self.width = arch.mux_width
        # Fixed, not trained, saved with the weights (MUX-BERT: "instance_embedding"). They mix
        # the embeddings at the tables' width E (hidden_size but for ELECTRA's projected ones,
        # mixed before the projection, as MUX-ELECTRA does).
        width = arch.embedding_width
        norm = arch.key_norm or math.sqrt(width)
        self.register_buffer("keys", gaussian_keys(arch.mux_width, width, norm, seed))

    def forward(self, embedded: Tensor) -> Tensor:  # [G*N, L, E] -> [G, L, E]
        rows, length, hidden = embedded.shape
        grouped = embedded.view(rows // self.width, self.width, length, hidden)
        return (grouped * self.keys[None, :, None, :]).mean(dim=1)


class IndexPosDemux(nn.Module):
    """MUX-BERT's "index_pos" demultiplexer: a learned key per instance, concatenated with the
    hidden state, through an MLP with residuals; exactly the released models' computation."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        size = arch.head_size
        self.width = arch.mux_width
        self.keys = nn.Parameter(torch.randn(arch.mux_width, size))  # trained
        # dense[0]: [key_i ; h] (size + hidden) -> size; dense[j > 0]: size -> size, residual
        self.dense = nn.ModuleList(
            [nn.Linear(size + arch.hidden_size, size)]
            + [nn.Linear(size, size) for _ in range(arch.demux_depth - 2)]
        )
        self.pre_decoder = nn.Linear(size, size)
        self.pre_decoder_norm = nn.LayerNorm(size, eps=arch.layer_norm_eps)
        self.dropout = nn.Dropout(arch.hidden_dropout)

    def forward(self, h: Tensor) -> Tensor:  # [G, ..., H] -> [G*N, ..., size]
        groups, middle = h.shape[0], h.shape[1:-1]
        keys = self.keys.view(1, self.width, *([1] * len(middle)), -1)
        keys = keys.expand(groups, self.width, *middle, -1)
        values = h.unsqueeze(1).expand(groups, self.width, *h.shape[1:])
        x: Tensor = torch.cat([keys, values], dim=-1).flatten(0, 1)  # rows: group * N + instance
        x = self.dropout(F.gelu(self.dense[0](x)))
        for dense in self.dense[1:]:
            x = x + self.dropout(F.gelu(dense(x)))
        decoded: Tensor = self.pre_decoder_norm(F.gelu(self.pre_decoder(x)))
        return x + decoded


class MLPDemux(nn.Module):
    """One two-layer MLP per instance i:
    x_i = gelu(h W1_i + b1_i); out_i = x_i + gelu(x_i W2_i + b2_i)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        size, n = arch.head_size, arch.mux_width
        bound1, bound2 = 1 / math.sqrt(arch.hidden_size), 1 / math.sqrt(size)
        self.width = n
        self.w1 = nn.Parameter(torch.empty(n, arch.hidden_size, size).uniform_(-bound1, bound1))
        self.b1 = nn.Parameter(torch.zeros(n, size))
        self.w2 = nn.Parameter(torch.empty(n, size, size).uniform_(-bound2, bound2))
        self.b2 = nn.Parameter(torch.zeros(n, size))
        self.dropout = nn.Dropout(arch.hidden_dropout)

    def forward(self, h: Tensor) -> Tensor:  # [G, ..., H] -> [G*N, ..., size]
        flat = h.reshape(h.shape[0], -1, h.shape[-1])  # [G, M, H]
        x: Tensor = F.gelu(torch.einsum("gmh,nhs->gnms", flat, self.w1) + self.b1[None, :, None, :])
        x = self.dropout(x)
        x = x + self.dropout(
            F.gelu(torch.einsum("gnms,nst->gnmt", x, self.w2) + self.b2[None, :, None, :])
        )
        return x.reshape(h.shape[0] * self.width, *h.shape[1:-1], -1)


DEMULTIPLEXERS: dict[DemuxKind, type[IndexPosDemux | MLPDemux]] = {
    DemuxKind.INDEX_POS: IndexPosDemux,
    DemuxKind.MLP: MLPDemux,
}
