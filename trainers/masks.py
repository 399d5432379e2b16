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
        """Indices of the hidden dims with a nonzero mask; None when hidden dims are unmasked."""
        if self.hidden is None:
            return None
        return torch.nonzero(self.hidden, as_tuple=True)[0]

    def attention_removed(self, layer: int) -> bool:
        """A block whose layer gate is 0, or whose every head is 0, is the identity."""
        return _removed(self.attention, self.head, layer)

    def ffn_removed(self, layer: int) -> bool:
        return _removed(self.ffn, self.intermediate, layer)


def _removed(layer_gate: Tensor | None, unit_gates: Tensor | None, layer: int) -> bool:
    if layer_gate is not None and float(layer_gate[layer].detach()) == 0.0:
        return True
    return unit_gates is not None and not bool(torch.any(unit_gates[layer].detach() != 0))
