"""int8 on a CPU: ``autoprumux export --format onnx --precision int8``.

The fp32 ONNX file ``export`` writes (:func:`trainers.deploy.export.export_model`, checked
against PyTorch) is made int8 with ONNX Runtime's dynamic quantization: weights int8 per
output channel, activations quantized on the fly per batch, no calibration data. ORT's
pre-processing (shape inference and graph optimization) runs first, as its quantizer asks.

What becomes int8 (:data:`INT8_OPS`): every MatMul with a constant weight -- the attention
projections, the FFN, and the pooler and classifier (ORT rewrites their Gemm as MatMul + Add) --
and the word and token-type embedding Gathers (the word table is most of a small model's
bytes). Measured on the five trained sst2-tiny models (benchmarks/bench_int8.py), int8 kept
98.1-99.0 % of the fp32 file's dev labels, -0.34 to +0.11 accuracy points, the head included.
What stays fp32: the attention's activation-by-activation MatMuls (scores and the weighted
sum: no constant to quantize), the CLS-selecting Gather, softmax, the normalizations and the
position table. The file names its MatMuls and Gathers left in fp32 in its metadata
(:data:`FP32_OPS_KEY`).

Before the int8 file appears at its path, its labels are compared with the fp32 file's on
sample inputs (any difference: refused, nothing written), and both files are scored on the
model's dev examples in the study's metric; the figures go into the file's metadata and the
model folder (:func:`trainers.deploy.model_folder.record_precisions`).
"""

from __future__ import annotations

import enum
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autoprumux.core.data_spec import data_spec
from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.metrics import Metric, score
from autoprumux.core.study import load_study
from autoprumux.files.atomic import atomic_path
from trainers.data.tables import load_tables
from trainers.deploy.export import (
    SAMPLE_SENTENCES,
    ExportError,
    ExportFormat,
    export_model,
    quiet_logging,
)
from trainers.deploy.inference import (
    PRECISION_KEY,
    Text,
    TextClassifier,
    import_export_library,
)
from trainers.deploy.inference import load_text_classifier as load_classifier_file
from trainers.deploy.model_folder import (
    INFO_FILE,
    ModelInfo,
    PrecisionScore,
    read_info,
    record_precisions,
)

if TYPE_CHECKING:
    import onnx
    import pyarrow as pa

# ONNX metadata_props keys the int8 file adds to the fp32 file's (BUNDLE_KEY), besides
# PRECISION_KEY ("int8")
FP32_OPS_KEY = "fp32_ops"  # JSON list: the names of the MatMuls and Gathers left in fp32
DEV_KEY = "dev"  # JSON: metric, examples, fp32 and int8 figures on dev
INT8_OPS = ("MatMul", "Gather")  # the op types dynamic quantization makes int8 here
LISTED_OPS = ("MatMul", "Gemm", "Gather")  # of these, the ones left in fp32 are listed
RUNTIME = "onnxruntime-cpu"
# inputs beyond the export's own that the int8 labels must agree with the fp32 ones on: short,
# long, mixed and neutral sentences, so that a quantization that flips labels is caught
CHECK_SENTENCES = SAMPLE_SENTENCES + (
    "a great , warm and funny movie",
    "boring",
    "an awful waste of two hours",
    "i loved every minute of it",
    "the cast is fine but the story is weak and the ending is flat",
    "what a bright , lovely surprise",
    "it is a film",
    "poor writing , cold direction , and a dull , dull plot",
    "superb",
    "the movie was very good and the plot was very bad",
    "not the best , not the worst",
    "a moving story",
)


class ExportPrecision(enum.Enum):
    """The numbers an exported file computes in."""

    FP32 = "fp32"
    INT8 = "int8"  # ONNX Runtime's dynamic quantization, on the CPU


@dataclass(frozen=True, kw_only=True)
class DevComparison:
    """The fp32 and int8 files scored on the same dev examples by ONNX Runtime on the CPU."""

    metric_label: str  # e.g. "accuracy", "F1 of 'pos'"
    examples: int
    fp32: float
    int8: float

    @property
    def delta_points(self) -> float:
        return 100 * (self.int8 - self.fp32)

    def to_json(self) -> dict[str, object]:
        return {"metric": self.metric_label, "examples": self.examples} | {
            "fp32": self.fp32,
            "int8": self.int8,
        }


@dataclass(frozen=True, kw_only=True)
class Quantized:
    path: Path
    bytes: int
    fp32_bytes: int  # the fp32 file it was made from
    fp32_max_abs_diff: float  # the fp32 file's logits against PyTorch's
    fp32_ops: tuple[str, ...]  # node names of the MatMuls and Gathers left in fp32
    samples: int  # sample inputs on which int8's labels equal fp32's (all of them)
    dev: DevComparison
    seconds: float


@dataclass(frozen=True)
class DevSet:
    """A model's dev examples: the first ``dev_examples`` of its study's dev split, in order."""

    texts: tuple[Text, ...]
    labels: tuple[int, ...]  # gold label ids, in the model's label order


def export_int8(folder: str | Path, out: str | Path) -> Quantized:
    """The model folder as an int8 ONNX file at ``out``, checked against its fp32 export
    (labels on the sample inputs), scored on dev, and its figures recorded in the folder."""
    started = time.perf_counter()
    folder, out = Path(folder), Path(out)
    import_export_library("onnx")
    import_export_library("onnxruntime")
    if out.suffix != ".onnx":
        raise FieldError("--out", f"{out}: an int8 model is an ONNX file, ending with .onnx")
    if not out.parent.is_dir():
        raise FieldError("--out", f"{out.parent} is not a folder")
    info = read_info(folder)
    dev = dev_set(info, str(folder / INFO_FILE))  # before any work: its study must be there
    with tempfile.TemporaryDirectory(prefix="autoprumux-int8-") as scratch:
        fp32_file = Path(scratch) / "fp32.onnx"
        exported = export_model(folder, ExportFormat.ONNX, fp32_file)
        with atomic_path(out) as temporary:
            kept = quantize_file(fp32_file, temporary)
            fp32 = load_classifier_file(fp32_file, device="cpu")
            int8 = load_classifier_file(temporary, device="cpu")
            samples = check_labels(fp32, int8, CHECK_SENTENCES, out)
            comparison = compare_on_dev(fp32, int8, dev)
            add_metadata(temporary, {DEV_KEY: json.dumps(comparison.to_json())})
    record_precisions(
        folder,
        {
            ExportPrecision.FP32.value: PrecisionScore(
                dev=comparison.fp32, dev_examples=comparison.examples, runtime=RUNTIME
            ),
            ExportPrecision.INT8.value: PrecisionScore(
                dev=comparison.int8, dev_examples=comparison.examples, runtime=RUNTIME
            ),
        },
    )
    return Quantized(
        path=out,
        bytes=out.stat().st_size,
        fp32_bytes=exported.bytes,
        fp32_max_abs_diff=exported.max_abs_diff,
        fp32_ops=kept,
        samples=samples,
        dev=comparison,
        seconds=time.perf_counter() - started,
    )


def quantize_file(fp32: Path, out: Path) -> tuple[str, ...]:
    """Write ``fp32`` (an exported ONNX file) as int8 at ``out``, with every metadata entry
    of ``fp32`` plus the precision and the MatMuls and Gathers left in fp32 (returned)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="autoprumux-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ORT's quantizer logs its notes through the root logger; the CLI's output is the user's
        with quiet_logging():
            # ORT's symbolic shape inference fails on the multiplexed graphs (an Unsqueeze of
            # an unknown rank); ONNX's shape inference and ORT's optimizer still run
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_dynamic(
                prepared,
                out,
                op_types_to_quantize=list(INT8_OPS),
                per_channel=True,  # a scale per output row: 98.5 % of labels kept vs 95.8 %
                weight_type=QuantType.QInt8,
            )
    proto = onnx.load(str(out))
    kept = fp32_ops(proto)
    carried = metadata(onnx.load(str(fp32), load_external_data=False))
    added = {PRECISION_KEY: ExportPrecision.INT8.value, FP32_OPS_KEY: json.dumps(kept)}
    _set_metadata(proto, {**carried, **added})
    onnx.save(proto, str(out))
    return kept


def fp32_ops(proto: onnx.ModelProto) -> tuple[str, ...]:
    """The quantized graph's MatMuls, Gemms and Gathers (:data:`LISTED_OPS`) that read no
    int8 table: they compute in fp32 (a quantized MatMul is a MatMulInteger)."""
    from onnx import TensorProto

    integer = {
        t.name
        for t in proto.graph.initializer
        if t.data_type in (TensorProto.INT8, TensorProto.UINT8)
    }
    return tuple(
        node.name
        for node in proto.graph.node
        if node.op_type in LISTED_OPS and not any(name in integer for name in node.input)
    )


def metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in proto.metadata_props}


def add_metadata(path: Path, entries: dict[str, str]) -> None:
    """Add ``entries`` to an ONNX file's metadata_props (rewriting the file in place)."""
    import onnx

    proto = onnx.load(str(path))
    _set_metadata(proto, {**metadata(proto), **entries})
    onnx.save(proto, str(path))


def _set_metadata(proto: onnx.ModelProto, entries: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def check_labels(
    fp32: TextClassifier, int8: TextClassifier, sentences: Sequence[str], out: Path
) -> int:
    """The int8 model's labels equal the fp32 model's on ``sentences`` (as pairs, for a pair
    task: each with the list reversed); else an ExportError. Returns how many were checked."""
    pair = len(fp32.info.text_columns) == 2
    texts: list[Text] = (
        list(zip(sentences, reversed(sentences), strict=True)) if pair else list(sentences)
    )
    expected = [p.label for p in fp32.predict(texts)]
    got = [p.label for p in int8.predict(texts)]
    differ = [i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b]
    if differ:
        first = differ[0]
        raise ExportError(
            f"{out}: the int8 model's labels differ from the fp32 model's on {len(differ)} of "
            f"{len(texts)} sample inputs (first: {texts[first]!r}, {expected[first]} in fp32, "
            f"{got[first]} in int8); nothing written"
        )
    return len(texts)


def dev_set(info: ModelInfo, where: str) -> DevSet:
    """The model's dev examples, read from its study's data (``info.study_file``)."""
    if not Path(info.study_file).is_file():
        raise DataError(
            where,
            f"its study file {info.study_file} is not there; an int8 export is scored on its "
            "study's dev split",
            field="study_file",
        )
    tables = load_tables(data_spec(load_study(info.study_file)))
    if tables.label_names != info.labels:
        raise DataError(
            info.study_file,
            f"labels {', '.join(tables.label_names)} are not the model's "
            f"({', '.join(info.labels)}): the study's data changed since the model was trained",
        )
    return first_examples(tables.dev, info.dev_examples, info.study_file)


def first_examples(table: pa.Table, examples: int, where: str) -> DevSet:
    """The first ``examples`` rows of a checked dev table (columns ``text``, ``text_pair``
    for a pair task, ``label``: label ids), as the trial scored them."""
    dev = table.slice(0, examples)
    if dev.num_rows < examples:
        raise DataError(
            where,
            f"its dev split holds {dev.num_rows} examples; the model was scored on {examples}",
        )
    columns = [dev[c].to_pylist() for c in ("text", "text_pair") if c in dev.column_names]
    texts: tuple[Text, ...] = (
        tuple(columns[0]) if len(columns) == 1 else tuple(zip(*columns, strict=True))
    )
    return DevSet(texts=texts, labels=tuple(int(y) for y in dev["label"].to_pylist()))


def dev_score(model: TextClassifier, dev: DevSet) -> float:
    """The model's figure on ``dev`` in its study's metric (``ModelInfo.metric``)."""
    labels = model.info.labels
    counts = [[0] * len(labels) for _ in labels]  # [gold][predicted]
    for gold, predicted in zip(dev.labels, model.predict(dev.texts), strict=True):
        counts[gold][labels.index(predicted.label)] += 1
    return score(Metric(model.info.metric), counts, model.info.positive_id)


def compare_on_dev(fp32: TextClassifier, int8: TextClassifier, dev: DevSet) -> DevComparison:
    return DevComparison(
        metric_label=fp32.info.metric_label,
        examples=len(dev.labels),
        fp32=dev_score(fp32, dev),
        int8=dev_score(int8, dev),
    )
