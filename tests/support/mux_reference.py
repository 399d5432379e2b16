"""The released multiplexed checkpoints' parts (MUX-BERT, MUX-ELECTRA), written out with
torch's functional ops for tests: random weights under the released key names, and the
"index_pos" demultiplexer's computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.model.multiplexing import gaussian_keys


def mux_weights(n: int, width: int, hidden: int, vocab: int) -> dict[str, Tensor]:
    """Multiplexer keys of ``width`` (the embeddings' width), a depth-3 demultiplexer of
    ``hidden``, and the parts a classifier never reads (a retrieval head, demux LayerNorms)."""
    weights = {
        "instance_embedding": gaussian_keys(n, width, norm=1.0, seed=5),
        "demux_module.demux_instance_embedding": torch.randn(n, hidden),
    }
    for j, fan_in in ((1, 2 * hidden), (2, hidden), (3, hidden)):
        weights[f"demux_module.dense_{j}.weight"] = torch.randn(hidden, fan_in) / fan_in**0.5
        weights[f"demux_module.dense_{j}.bias"] = torch.randn(hidden) * 0.1
        weights[f"demux_module.layer_norm_{j}.weight"] = torch.ones(hidden)
        weights[f"demux_module.layer_norm_{j}.bias"] = torch.zeros(hidden)
    weights["demultiplexer.pre_decoder.weight"] = torch.randn(hidden, hidden) / hidden**0.5
    weights["demultiplexer.pre_decoder.bias"] = torch.randn(hidden) * 0.1
    weights["demultiplexer.pre_decoder_layer_norm.weight"] = 1 + 0.1 * torch.randn(hidden)
    weights["demultiplexer.pre_decoder_layer_norm.bias"] = 0.1 * torch.randn(hidden)
    weights["retrieval_head.decoder.weight"] = torch.randn(vocab, hidden)
    return weights


def mux_config(n: int) -> dict[str, object]:
    """The fields a released multiplexed checkpoint's config.json adds to its family's."""
    return {
        "num_instances": n,
        "muxing_variant": "gaussian_hadamard",
        "demuxing_variant": "index_pos",
        "gaussian_hadamard_norm": 1,
        "num_hidden_demux_layers": 3,
    }


def mix(embedded: Tensor, keys: Tensor) -> Tensor:  # [G*N, L, E] -> [G, L, E]
    n, (rows, length, width) = keys.shape[0], embedded.shape
    return (embedded.view(rows // n, n, length, width) * keys[None, :, None, :]).mean(1)


def index_pos_demux(weights: dict[str, Tensor], first: Tensor, n: int) -> Tensor:
    """The released demultiplexer on the groups' first position: [G, H] -> [G*N, H]."""
    groups, hidden = first.shape
    keys = weights["demux_module.demux_instance_embedding"]
    x = torch.cat(
        [keys[None].expand(groups, n, hidden), first[:, None].expand(groups, n, hidden)], dim=-1
    ).view(-1, 2 * hidden)
    x = F.gelu(
        F.linear(x, weights["demux_module.dense_1.weight"], weights["demux_module.dense_1.bias"])
    )
    x = x + F.gelu(
        F.linear(x, weights["demux_module.dense_2.weight"], weights["demux_module.dense_2.bias"])
    )
    y = F.gelu(
        F.linear(
            x,
            weights["demultiplexer.pre_decoder.weight"],
            weights["demultiplexer.pre_decoder.bias"],
        )
    )
    y = F.layer_norm(
        y,
        (hidden,),
        weights["demultiplexer.pre_decoder_layer_norm.weight"],
        weights["demultiplexer.pre_decoder_layer_norm.bias"],
        1e-12,
    )
    return x + y
