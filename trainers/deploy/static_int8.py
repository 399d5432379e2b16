"""Static int8 in QDQ form, with chosen layers kept in fp32: the fallback where dynamic int8
costs too much accuracy (:func:`trainers.deploy.quantize.make_int8` decides when).

Static quantization fixes each activation's int8 scale from calibration inputs (the first
train examples) instead of measuring it on every batch, and writes the graph in QDQ form
(QuantizeLinear / DequantizeLinear pairs around each int8 op, which ONNX Runtime fuses into
integer kernels). A BERT's activations have outliers (after GELU, after the multiplexer's
averaging) that one fixed scale per tensor clips or blurs, so the MatMuls reading the worst of
them are best kept in fp32. Which ones is measured, not guessed: :func:`rank_weight_matmuls`
quantizes every op once, runs a few calibration inputs through the QDQ graph with each
activation tapped before and after its QDQ pair (ONNX Runtime's ``qdq_loss_debug``), and
ranks the MatMuls with a weight by the signal-to-quantization-noise ratio of the activation
they read, lowest first.

Node names are the exporter's (``node_MatMul_128``); :func:`module_names` maps them to the
PyTorch modules they came from (``encoder.layers.0.ffn.down``), which is how the kept layers
are named to users.
"""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainers.deploy.export import quiet_logging

if TYPE_CHECKING:
    import onnx

# one batch of ONNX inputs (input_ids, attention_mask, token_type_ids: [G, N, L] int64)
Feeds = dict[str, np.ndarray]
WEIGHT_OPS = ("MatMul", "Gemm")  # the ops a layer's weight is multiplied in
# the exporter's per-node record of the module path it traced the node in
SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def quantize_static_file(
    prepared: Path, out: Path, feeds: Callable[[], Iterator[Feeds]], ops: Sequence[str],
    fp32_nodes: Sequence[str] = (),
) -> None:  # fmt: skip
    """Write ``prepared`` (an fp32 file ORT's pre-processing wrote) as static int8 in QDQ form
    at ``out``: weights int8 per output channel, activations uint8 with scales from the
    calibration batches ``feeds`` yields (min-max), every op of ``ops`` but ``fp32_nodes``."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    with quiet_logging():
        quantize_static(
            str(prepared),
            str(out),
            _Reader(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ops),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(fp32_nodes),
            # min-max keeps each activation's extremes per batch, not the activations
            calibrate_method=CalibrationMethod.MinMax,
        )


def rank_weight_matmuls(
    prepared: Path,
    calibration: Callable[[], Iterator[Feeds]],
    probe: Callable[[], Iterator[Feeds]],
    ops: Sequence[str],
) -> tuple[str, ...]:
    """The nodes of ``prepared`` that multiply by a weight, the one whose input activation
    quantizes worst first: every op of ``ops`` quantized statically (scales from the
    ``calibration`` batches), then each activation's signal-to-quantization-noise ratio,
    before against after its QDQ pair, on the ``probe`` batches (a few: every activation of
    every probe batch is held at once)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    graph = onnx.load(str(prepared)).graph
    weights = {t.name for t in graph.initializer}
    readers: dict[str, str] = {}  # a weight node's activation input -> the node
    for node in graph.node:
        if node.op_type in WEIGHT_OPS and any(name in weights for name in node.input):
            activation = next(name for name in node.input if name not in weights)
            readers.setdefault(activation, node.name)
    with tempfile.TemporaryDirectory(prefix="autoprumux-int8-rank-") as scratch:
        qdq, tapped = Path(scratch) / "qdq.onnx", Path(scratch) / "tapped.onnx"
        quantize_static_file(prepared, qdq, calibration, ops)
        with quiet_logging():
            # the inputs and outputs of the QDQ pairs: each activation before and after
            modify_model_output_intermediate_tensors(
                str(qdq), str(tapped), op_types_for_saving=["QuantizeLinear", "DequantizeLinear"]
            )
            matched = create_activation_matching(collect_activations(str(tapped), _Reader(probe)))
    sqnr = {  # dB: 20 is a tenth of the signal's amplitude in noise
        name: compute_signal_to_quantization_noice_ratio(pair["pre_qdq"], pair["post_qdq"])
        for name, pair in matched.items()
        if name in readers
    }
    return tuple(readers[name] for name in sorted(sqnr, key=sqnr.__getitem__))


def module_names(proto: onnx.ModelProto) -> dict[str, str]:
    """Node name -> the PyTorch module it was traced in, as the model names it
    (``encoder.layers.0.ffn.down``: the exporter's innermost scope, the wrapper's ``model.``
    dropped); nodes without the exporter's record are left out."""
    names: dict[str, str] = {}
    for node in proto.graph.node:
        scopes = next((e.value for e in node.metadata_props if e.key == SCOPES_KEY), None)
        if scopes is None:
            continue
        path = [s for s in ast.literal_eval(scopes)[:-1] if s]  # the last is the op itself
        if path:
            names[node.name] = path[-1].removeprefix("model.")
    return names


class _Reader:
    """ORT's CalibrationDataReader over the batches ``feeds`` yields (a fresh pass each)."""

    def __init__(self, feeds: Callable[[], Iterator[Feeds]]) -> None:
        self._batches = feeds()

    def get_next(self) -> Feeds | None:
        return next(self._batches, None)

    def __iter__(self) -> Iterator[Feeds]:
        return self._batches
