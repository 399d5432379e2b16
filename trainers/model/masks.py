"""The structured-pruning masks a forward pass can take (CoFi), as plain tensors.

Shapes refer to the dense model: L layers, ``heads`` heads per layer, I FFN units per layer,
H hidden dims. A mask value multiplies what it gates; 0 removes it. Soft values (between 0 and 1)
are allowed and are folded into the weights when the model is materialized.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Masks:
    head: Tensor | None = None  # [L, heads]: each head's context, before the output projection
    attention: Tensor | None = None  # [L]: the attention block's output, before the residual
    intermediate: Tensor | None = None  # [L, I]: FFN units, after the activation
    ffn: Tensor | None = None  # [L]: the FFN block's output, before the residual
    hidden: Tensor | None = (
        None  # [H]: embeddings and every block's output; LayerNorm over kept dims
    )

    def kept_hidden(self) -> Tensor | None:
        """The hidden dims with a nonzero mask, for the masked LayerNorm; None when hidden dims
        are unmasked. On a CPU their indices (reading them back is free there); elsewhere a
        [H] indicator, 1.0 for a kept dim, that never waits for the device."""
        if self.hidden is None:
            return None
        kept = self.hidden.detach() != 0
        if kept.device.type == "cpu":
            return torch.nonzero(kept, as_tuple=True)[0]
        return kept.float()

    def attention_removed(self, layer: int) -> Tensor | None:
        """A block whose layer gate is 0, or whose every head is 0, is the identity: a bool
        scalar on the masks' device (no host synchronisation); None when nothing gates it."""
        return _removed(self.attention, self.head, layer)

    def ffn_removed(self, layer: int) -> Tensor | None:
        return _removed(self.ffn, self.intermediate, layer)


def _removed(layer_gate: Tensor | None, unit_gates: Tensor | None, layer: int) -> Tensor | None:
    flags = []
    if layer_gate is not None:
        flags.append(layer_gate[layer].detach() == 0)
    if unit_gates is not None:
        flags.append((unit_gates[layer].detach() == 0).all())
    if not flags:
        return None
    return flags[0] if len(flags) == 1 else flags[0] | flags[1]
