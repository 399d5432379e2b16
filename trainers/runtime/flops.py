"""FLOP counts of the engine's forward passes and training steps, from shapes alone, and the
dense peak of the GPU they ran on: a phase's model FLOP utilization (MFU).

A FLOP here is one floating-point operation: a multiply-add is 2. The counts are of the
matrix products, which are the work (everything else is below 1 % of it on BERT-base at 128
tokens): every linear layer of the encoder (q, k, v, the attention output, the FFN's up and
down, ELECTRA's embedding projection), attention's scores ``Q Kᵀ`` and its weighted sum ``P V``
(``2 * 2 * L² * d`` per head and sequence, at the batch's padded length: the kernels compute
every position and mask the scores), the demultiplexer, the pooler and the classifier.
Not counted: embedding lookups, LayerNorm, softmax, GELU, dropout, the multiplexer's mixing
(elementwise), the losses, gradient clipping and the optimizer step (elementwise over the
parameters), and the L0 gates' sampling.

A multiplexed model runs its encoder on ``ceil(sequences / N)`` groups (its batch padded to a
multiple of N), its demultiplexer on N outputs per group. A model being pruned computes at its
dense shape (its masks multiply, they remove nothing until it is materialized).

A training step counts 3 forward passes of the model it trains (the forward, and a backward
that computes the gradients of both every layer's input and its weights: twice the forward's
products), plus one forward pass of a frozen teacher, plus, when pruning, the layer map the
student's hidden states go through (``3 * 2 * H²`` per encoded token and layer).

This module reads an architecture's fields only (:class:`ModelShape`, which
:class:`trainers.model.architecture.Architecture` is: the runtime layer imports no model code);
a phase's FLOP count is summed on the host from its batches' shapes (``Phase.flop``), so
counting never waits for the device.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Protocol

from torch import Tensor


class ModelShape(Protocol):
    """What the counts read of :class:`trainers.model.architecture.Architecture`."""

    @property
    def hidden_size(self) -> int: ...  # H: the residual stream's width
    @property
    def head_dim(self) -> int: ...  # d
    @property
    def heads(self) -> tuple[int, ...]: ...  # heads kept per layer (0: no attention block)
    @property
    def intermediate(self) -> tuple[int, ...]: ...  # FFN units kept per layer (0: no FFN)
    @property
    def embedding_size(self) -> int: ...  # ELECTRA's projected tables' width; 0: none
    @property
    def mux_width(self) -> int: ...  # N
    @property
    def head_size(self) -> int: ...  # the pooler's or demultiplexer's width
    @property
    def num_labels(self) -> int: ...
    @property
    def demux_depth(self) -> int: ...
    @property
    def demux(self) -> enum.Enum: ...  # DemuxKind: "index_pos" or "mlp"
    @property
    def pooling(self) -> enum.Enum: ...  # Pooling: "cls", "mean" or "mean_hidden"
    @property
    def family(self) -> enum.Enum: ...  # Family: a multiplexed BERT has no pooler


class Batch(Protocol):
    """What a FLOP count reads of a batch (:class:`trainers.data.splits.Encoded`)."""

    @property
    def input_ids(self) -> Tensor: ...  # [sequences, padded length]


# -- forward passes ----------------------------------------------------------------------------


def encoder_flop(arch: ModelShape, rows: int, length: int) -> float:
    """FLOP of the encoder on ``rows`` inputs of ``length`` positions (groups, when multiplexed)."""
    tokens = rows * length
    hidden, head_dim = arch.hidden_size, arch.head_dim
    total = 2 * arch.embedding_size * hidden * tokens  # ELECTRA's projection (0: none)
    for heads, units in zip(arch.heads, arch.intermediate, strict=True):
        width = heads * head_dim
        total += 2 * 4 * hidden * width * tokens  # q, k, v [H -> h d] and output [h d -> H]
        total += 2 * 2 * rows * heads * length * length * head_dim  # Q Kᵀ and P V
        total += 2 * 2 * hidden * units * tokens  # up [H -> I] and down [I -> H]
    return float(total)


def demux_flop(arch: ModelShape, outputs: int) -> float:
    """FLOP of the demultiplexer producing ``outputs`` vectors (each from one hidden state and
    one instance's key or MLP)."""
    size, hidden = arch.head_size, arch.hidden_size
    if arch.demux.value == "mlp":  # per instance: [H -> size], then [size -> size]
        per_output = 2 * hidden * size + 2 * size * size
    else:  # index_pos: [key ; h] -> size, depth - 2 residual layers, the pre-decoder
        per_output = 2 * (size + hidden) * size + (arch.demux_depth - 1) * 2 * size * size
    return float(per_output * outputs)


def head_flop(arch: ModelShape, sequences: int, length: int) -> float:
    """FLOP of what follows the encoder, for ``sequences`` inputs of ``length`` tokens: the
    demultiplexer (N > 1) as the model's pooling runs it, the pooler and the classifier."""
    size = arch.head_size
    total = 2.0 * size * arch.num_labels * sequences  # the classifier
    width = arch.mux_width
    if width == 1:
        return total + 2.0 * arch.hidden_size * size * sequences  # the pooler on token 0
    groups = -(-sequences // width)
    pooling = arch.pooling.value
    if pooling == "mean_hidden":  # each instance's mean hidden state [G, N, L] @ [G, L, H]
        total += 2.0 * groups * width * length * arch.hidden_size
        total += demux_flop(arch, groups * width * width)  # every key on every mean
    elif pooling == "mean":  # every instance at every position
        total += demux_flop(arch, groups * width * length)
    else:  # cls: every instance of position 0
        total += demux_flop(arch, groups * width)
    if arch.family.value != "bert":  # MUX-ELECTRA & co. read the features through a pooler
        total += 2.0 * size * size * sequences
    return total


def forward_flop(arch: ModelShape, sequences: int, length: int) -> float:
    """FLOP of one forward pass of the classifier on ``sequences`` sequences of ``length``
    tokens (a padded batch: every position counts)."""
    groups = -(-sequences // arch.mux_width)
    return encoder_flop(arch, groups, length) + head_flop(arch, sequences, length)


def retrieval_forward_flop(
    arch: ModelShape, sequences: int, length: int, positions: int, negatives: int
) -> float:
    """FLOP of the retrieval warm-up's (or masked-LM's) forward pass: the encoder on the
    groups, the demultiplexer on ``positions`` sampled (group, position) pairs (N outputs
    each), and the retrieval head on them: its transform, and logits over at most
    ``positions + negatives`` candidate tokens (the sampled targets and negatives, fewer
    where they repeat: an upper bound, read from no device)."""
    groups = -(-sequences // arch.mux_width)
    size = arch.head_size
    candidates = positions + negatives
    head = 2 * size * size * positions + 2 * size * candidates * positions
    return (
        encoder_flop(arch, groups, length)
        + demux_flop(arch, positions * arch.mux_width)
        + float(head)
    )


# -- training steps ----------------------------------------------------------------------------


def training_flop(
    arch: ModelShape,
    sequences: int,
    length: int,
    teacher: ModelShape | None = None,
    layer_map: bool = False,
) -> float:
    """FLOP of one training step of ``arch`` on a batch of ``sequences`` sequences of
    ``length`` tokens: 3 forward passes (forward + a backward of twice its products), a
    frozen ``teacher``'s forward on the same batch, and with ``layer_map`` the pruning
    phase's linear map of every layer's hidden states (3 * 2 * H² per encoded token and
    layer; trained, so 3 times too)."""
    total = 3.0 * forward_flop(arch, sequences, length)
    if teacher is not None:
        total += forward_flop(teacher, sequences, length)
    if layer_map:
        groups = -(-sequences // arch.mux_width)
        layers = len(arch.heads)
        total += 3.0 * 2 * arch.hidden_size * arch.hidden_size * groups * length * layers
    return total


def _shape(batch: Batch) -> tuple[int, int]:
    """(sequences, padded length) of a batch: host metadata, no device read."""
    sequences, length = batch.input_ids.shape
    return int(sequences), int(length)


def warmup_flop(arch: ModelShape, positions: int, negatives: int) -> Callable[[Batch], float]:
    """``Phase.flop`` of the retrieval warm-up and of its masked-LM steps (``[warmup]``
    ``positions`` and ``negatives``): the model and the retrieval head trained, no teacher."""

    def count(batch: Batch) -> float:
        sequences, length = _shape(batch)
        return 3.0 * retrieval_forward_flop(arch, sequences, length, positions, negatives)

    return count


def finetune_flop(model: ModelShape, teacher: ModelShape | None = None) -> Callable[[Batch], float]:
    """``Phase.flop`` of a task fine-tuning: the teacher's (N, 0) one (``teacher``: the (1, 0)
    model it distills from, if any), or the pruned model's after materialization (``teacher``:
    the dense (N, 0) model)."""

    def count(batch: Batch) -> float:
        return training_flop(model, *_shape(batch), teacher=teacher)

    return count


def pruning_flop(student: ModelShape, teacher: ModelShape) -> Callable[[Batch], float]:
    """``Phase.flop`` of CoFi pruning with distillation: the masked student at its dense
    shape, the teacher's forward, the layer map."""

    def count(batch: Batch) -> float:
        return training_flop(student, *_shape(batch), teacher=teacher, layer_map=True)

    return count


# -- the hardware's peak -----------------------------------------------------------------------

# Dense peak TFLOP/s per GPU: (16-bit tensor cores: bf16 and fp16 with fp32 accumulation, TF32
# tensor cores, plain fp32), from the vendor's datasheets. The datasheets print the 2:4
# structured-sparsity figures, twice these, with an asterisk; the dense ones are below.
#   H100 SXM / H100 PCIe / H100 NVL: NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979* /
#     1,513* / 1,671*, TF32 989* / 756* / 835*, FP32 67 / 51 / 60 TFLOPS (* with sparsity).
#   H200 SXM / H200 NVL: NVIDIA H200 datasheet: BF16 1,979* / 1,671*, TF32 989* / 835*,
#     FP32 67 / 60.
#   A100 (40 and 80 GB, SXM and PCIe): NVIDIA A100 datasheet: BF16 312 | 624*, TF32 156 | 312*,
#     FP32 19.5.
#   L40S: NVIDIA L40S datasheet: BF16 362.05 | 733*, TF32 183 | 366*, FP32 91.6.
#   L4: NVIDIA L4 datasheet: BF16 242*, TF32 120*, FP32 30.3.
#   A10: NVIDIA A10 datasheet: BF16 125 | 250*, TF32 62.5 | 125*, FP32 31.2.
#   V100 SXM2 / PCIe / V100S: NVIDIA V100 datasheet: tensor (fp16) 125 / 112 / 130,
#     FP32 15.7 / 14 / 16.4; no bfloat16, no TF32.
#   GeForce RTX 4090: NVIDIA Ada GPU Architecture whitepaper, appendix table: FP16/BF16 tensor
#     with FP32 accumulate 165.2 | 330.4*, TF32 tensor 82.6 | 165.2*, FP32 82.6.
_TERA = 1e12
# (pattern on the lower-cased torch.cuda.get_device_name, (bf16, fp16, tf32, fp32) TFLOP/s);
# the first match wins, so a variant comes before its family
PEAKS: tuple[tuple[str, tuple[float | None, float | None, float | None, float]], ...] = (
    (r"h100.*pcie", (756.5, 756.5, 378.0, 51.0)),
    (r"h100.*nvl", (835.5, 835.5, 417.5, 60.0)),
    (r"h100", (989.5, 989.5, 494.5, 67.0)),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"h200.*nvl", (835.5, 835.5, 417.5, 60.0)),
    (r"h200", (989.5, 989.5, 494.5, 67.0)),  # SXM
    (r"a100", (312.0, 312.0, 156.0, 19.5)),
    (r"l40s", (362.05, 362.05, 183.0, 91.6)),
    (r"\bl4\b", (121.0, 121.0, 60.0, 30.3)),
    (r"\ba10\b", (125.0, 125.0, 62.5, 31.2)),  # not A100, not the A10G (its own figures)
    (r"v100s", (None, 130.0, None, 16.4)),
    (r"v100.*pcie", (None, 112.0, None, 14.0)),
    (r"v100", (None, 125.0, None, 15.7)),  # SXM2
    (r"rtx 4090", (165.2, 165.2, 82.6, 82.6)),
)


def peak_flops(device_name: str, precision: str, tf32: bool = True) -> float | None:
    """Dense peak FLOP/s of the GPU named ``device_name`` (``torch.cuda.get_device_name``) for
    the precision the engine trains in: ``bf16`` and ``fp16`` on its tensor cores, ``fp32``
    on TF32 tensor cores where ``tf32`` is on (``torch.backends.cuda.matmul.allow_tf32``), else
    on plain fp32 units. None for a CPU, a GPU not in :data:`PEAKS`, or a precision the GPU
    has no units for (bf16 on a V100): its MFU is unknown, never guessed."""
    name = device_name.lower()
    for pattern, (bf16, fp16, tf32_peak, fp32) in PEAKS:
        if re.search(pattern, name):
            if precision == "bf16":
                peak = bf16
            elif precision == "fp16":
                peak = fp16
            elif precision == "fp32":
                peak = tf32_peak if tf32 and tf32_peak is not None else fp32
            else:
                return None
            return None if peak is None else peak * _TERA
    return None


def mfu(flop: float, seconds: float, peak: float | None) -> float | None:
    """Model FLOP utilization: the share of the peak ``flop`` in ``seconds`` reached (a
    fraction); None where the peak is unknown or no time passed."""
    if peak is None or peak <= 0 or seconds <= 0:
        return None
    return flop / seconds / peak
