"""The structured-pruning masks a forward pass can take (CoFi), as plain tensors.

Shapes refer to the dense model: L layers, ``heads`` heads per layer, I FFN units per layer,
H hidden dims. A mask value multiplies what it gates; 0 removes it. Soft values (between 0 and 1)
are allowed and are folded into the weights when the model is materialized.

A forward pass first turns its :class:`Masks` into :class:`ForwardMasks` (:meth:`Masks.prepared`):
what every layer derives from the masks (the masked LayerNorm's statistics weights, which blocks
the masks remove, the masks in the activation dtype) is computed there once, in a few vectorized
ops, instead of in every layer: on a GPU each small op is a kernel launch.
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

    def prepared(self) -> ForwardMasks:
        """These masks as one forward pass reads them (see :class:`ForwardMasks`)."""
        dtype = _autocast_dtype(self)

        def cast(mask: Tensor | None) -> Tensor | None:
            return mask if mask is None or dtype is None else mask.to(dtype)

        hidden = cast(self.hidden)
        kept = None if self.hidden is None else KeptHidden.of(self.hidden)
        gated = [
            m for m in (self.head, self.attention, self.intermediate, self.ffn) if m is not None
        ]
        layers = gated[0].shape[0] if gated else 0

        def rows(mask: Tensor | None) -> tuple[Tensor | None, ...]:
            # unbind: a view per layer, whose backward is one stack (indexing [layer] would
            # be a select whose backward writes an [L, ...] tensor in every layer)
            return (None,) * layers if mask is None else mask.unbind(0)

        # flags and kept dims from the masks' own values: a cast never decides what is removed
        per_layer = zip(
            rows(cast(self.head)),
            rows(cast(self.attention)),
            rows(cast(self.intermediate)),
            rows(cast(self.ffn)),
            rows(removed_blocks(self.attention, self.head)),
            rows(removed_blocks(self.ffn, self.intermediate)),
            strict=True,
        )
        return ForwardMasks(
            hidden=hidden,
            kept=kept,
            layers=tuple(
                LayerMasks(
                    head, attention, units, ffn, attention_removed, ffn_removed, hidden, kept
                )
                for head, attention, units, ffn, attention_removed, ffn_removed in per_layer
            ),
        )


@dataclass(frozen=True)
class LayerMasks:
    """One layer's masks, as its forward pass reads them; any may be None (not gated)."""

    head: Tensor | None = None  # [heads]
    attention: Tensor | None = None  # []: the attention block's gate
    intermediate: Tensor | None = None  # [I]
    ffn: Tensor | None = None  # []: the FFN block's gate
    attention_removed: Tensor | None = None  # [] bool: the attention block is the identity
    ffn_removed: Tensor | None = None  # [] bool: the FFN block is the identity
    hidden: Tensor | None = None  # [H], shared by every layer
    kept: KeptHidden | None = None  # the hidden mask's kept dims, shared by every layer


@dataclass(frozen=True)
class ForwardMasks:
    """Masks prepared for one forward pass (:meth:`Masks.prepared`): what every layer derives
    from them is computed once, in a few vectorized ops, instead of in every layer (on a GPU
    each small op is a kernel launch):

    - the masked LayerNorm's view of the hidden mask (:class:`KeptHidden`);
    - which blocks the masks remove: a block whose layer gate is 0, or whose every head (unit)
      is 0, is the identity, as its materialized form is; a bool on the device, so a step
      never waits for the masks' values;
    - under autocast, every mask in the autocast dtype, so that a bf16 activation times a mask
      stays bf16 instead of being promoted to float32 (``.to`` is differentiable: the gates
      still get gradients). The LayerNorm's vectors stay float32: it computes in float32."""

    hidden: Tensor | None = None  # [H]
    kept: KeptHidden | None = None
    layers: tuple[LayerMasks, ...] = ()  # one per layer; () when no layer is gated

    def layer(self, index: int) -> LayerMasks:
        return self.layers[index] if self.layers else LayerMasks(hidden=self.hidden, kept=self.kept)


def prepare(masks: Masks | ForwardMasks | None) -> ForwardMasks | None:
    """``masks.prepared()``; None stays None, and prepared masks stay as they are."""
    return masks.prepared() if isinstance(masks, Masks) else masks


@dataclass(frozen=True)
class KeptHidden:
    """The hidden mask's kept dims (nonzero mask), as the masked LayerNorm reads them
    (:func:`trainers.model.encoder.masked_layer_norm`); all float32, on the mask's device.

    The LayerNorm over the k kept dims of x equals a LayerNorm over all H dims of
    y = (x - mean_k(x)) * spread, with weight * shrink and bias * indicator: y's mean over H is
    0 and its variance over H is x's over the kept dims (spread**2 = H / k on a kept dim), so
    one fused LayerNorm kernel computes it, with its own centred variance."""

    indicator: Tensor  # [H]: 1.0 for a kept dim, 0.0 for a pruned one
    mean_weights: Tensor  # [H]: indicator / k; x's mean over the kept dims is sum(x * this)
    spread: Tensor  # [H]: indicator * sqrt(H / k)
    shrink: Tensor  # [H]: indicator * sqrt(k / H): 1 / spread on a kept dim
    # [k] int64: the kept dims' indices, where reading k back is free (a CPU, outside
    # torch.compile, whose data-dependent shapes would recompile): the exact LayerNorm kernel
    # on the gathered dims; None: the indicator path, which never waits for the device
    index: Tensor | None = None

    @classmethod
    def of(cls, hidden: Tensor) -> KeptHidden:
        """From a [H] hidden mask, in a handful of ops (once per forward pass)."""
        kept = hidden.detach() != 0
        indicator = kept.float()
        count = indicator.sum().clamp(min=1.0)  # all pruned: every output 0, not NaN
        width = float(hidden.shape[-1])
        ratio = torch.sqrt(count / width)  # sqrt(k / H)
        on_host = kept.device.type == "cpu" and not torch.compiler.is_compiling()
        return cls(
            indicator=indicator,
            mean_weights=indicator / count,
            spread=indicator / ratio,
            shrink=indicator * ratio,
            index=torch.nonzero(kept, as_tuple=True)[0] if on_host else None,
        )


def removed_blocks(layer_gate: Tensor | None, unit_gates: Tensor | None) -> Tensor | None:
    """[L] bool: the blocks whose layer gate ([L]) is 0 or whose every unit ([L, units]) is 0,
    all layers in one vectorized op; None when nothing gates them."""
    flags = None if layer_gate is None else layer_gate.detach() == 0
    if unit_gates is not None:
        empty = (unit_gates.detach() == 0).all(dim=-1)
        flags = empty if flags is None else flags | empty
    return flags


def _autocast_dtype(masks: Masks) -> torch.dtype | None:
    """The dtype autocast computes in on the masks' device; None when autocast is off there."""
    fields = (masks.head, masks.attention, masks.intermediate, masks.ffn, masks.hidden)
    present = [mask for mask in fields if mask is not None]
    if not present:
        return None
    device_type = present[0].device.type
    # a device autocast does not know (the meta device of a dry run) is never autocast
    if not torch.amp.is_autocast_available(device_type):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)
