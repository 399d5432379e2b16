"""The third axis of the search: the precision a trained (N, s) model is served in.

Training is precision-agnostic: one trained model is served in every precision of the study,
each evaluated on dev after its training (no training of its own) and timed in the runtime that
would serve it. What each runs on:

- ``fp32``: PyTorch, on the CPU or a GPU (the reference: budgets are relative to the (1, 0)
  model in fp32, and every other precision's accuracy is predicted from fp32's);
- ``int8``: ONNX Runtime's dynamic quantization (weights int8 per channel, activations
  quantized on the fly), on its CPU provider only;
- ``bf16``: PyTorch with bf16 weights and activations, on a GPU that has bf16 (compute
  capability 8.0 and up) or a CPU;
- ``fp16``: PyTorch in fp16, on a GPU only (CPUs have no fast fp16 matmul).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from autoprumux.core.errors import FieldError, parse_choice


class Precision(enum.StrEnum):
    """A serving precision. A str enum, so that points order (and sort) by it."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"

    @classmethod
    def parse(cls, text: object, field: str = "precision") -> Precision:
        """A precision from its name; one line naming the allowed ones otherwise."""
        return parse_choice(cls, text, field)

    @property
    def runtime(self) -> str:
        """What serves (and times) a model in this precision."""
        return "onnxruntime" if self is Precision.INT8 else "torch"

    @property
    def record_field(self) -> str:
        """The trial record's field of a model's dev figure in this precision: ``accuracy``
        for fp32, ``accuracy_int8`` and so on for the others."""
        return "accuracy" if self is Precision.FP32 else f"accuracy_{self.value}"


# the record fields of the precisions evaluated after a training (fp32's is ``accuracy``)
EXTRA_PRECISIONS = (Precision.BF16, Precision.FP16, Precision.INT8)
PRECISION_FIELDS = tuple(p.record_field for p in EXTRA_PRECISIONS)


@dataclass(frozen=True, kw_only=True)
class ServingDevice:
    """What the machine that serves (and times) the models can run."""

    kind: str  # "cpu" or "cuda"
    bf16: bool = False  # the GPU has bf16 (compute capability >= 8.0); always True on a CPU
    onnxruntime: bool = False  # onnxruntime is importable

    def available(self) -> tuple[Precision, ...]:
        """Every precision this device can serve in."""
        if self.kind == "cpu":
            return (Precision.FP32, Precision.BF16) + (
                (Precision.INT8,) if self.onnxruntime else ()
            )
        return (Precision.FP32, Precision.FP16) + ((Precision.BF16,) if self.bf16 else ())

    def defaults(self) -> tuple[Precision, ...]:
        """A study's precisions when ``[deploy] precisions`` is empty: fp32 and int8 on a CPU
        (bf16 is rarely faster than fp32 there), fp32, bf16 and fp16 on a GPU."""
        if self.kind == "cpu":
            return (Precision.FP32,) + ((Precision.INT8,) if self.onnxruntime else ())
        return self.available()

    def why_not(self, precision: Precision) -> str:
        """Why ``precision`` is not available here, in words."""
        if precision is Precision.INT8 and self.kind == "cpu":
            return "needs onnxruntime (pip install onnxruntime)"
        if precision is Precision.INT8:
            return "runs on ONNX Runtime's CPU provider, not on a GPU"
        if precision is Precision.FP16:
            return "needs a GPU (a CPU has no fast fp16 matmul)"
        return "needs a GPU with bf16 (compute capability 8.0 or higher)"


def check_precisions(
    precisions: Iterable[Precision], device: ServingDevice, field: str = "deploy.precisions"
) -> tuple[Precision, ...]:
    """The study's precisions on ``device`` (its defaults when none are named), sorted fp32
    first; one line naming the first one the device cannot serve, and what it can."""
    named = tuple(precisions)
    if not named:
        return _sorted(device.defaults())
    available = device.available()
    for precision in named:
        if precision not in available:
            allowed = ", ".join(p.value for p in available)
            raise FieldError(
                field,
                f"{precision.value!r} {device.why_not(precision)}; on this {device.kind} "
                f"available: {allowed}",
            )
    return _sorted(named)


def _sorted(precisions: Iterable[Precision]) -> tuple[Precision, ...]:
    order = list(Precision)
    return tuple(sorted(set(precisions), key=order.index))
