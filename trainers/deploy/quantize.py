"""int8 on a CPU: ``autoprumux export --format onnx --precision int8``, and the int8 figure a
trial records.

The fp32 ONNX file ``export`` writes (:func:`trainers.deploy.export.export_model`, checked
against PyTorch) is made int8 by the first recipe of a short ladder whose file passes two
checks against the fp32 file (:func:`make_int8`):

1. ONNX Runtime's dynamic quantization: weights int8 per output channel, activations
   quantized on the fly per batch, no calibration data;
2. the same with 7-bit weights (ORT's ``reduce_range``). On an x86-64 CPU without VNNI, ORT
   multiplies uint8 activations by int8 weights with an instruction that saturates its 16-bit
   pair sums (``VPMADDUBSW``), and 8-bit weights can overflow them: on a 2-core AMD EPYC
   without VNNI the test suite's (2, 0.5) model lost 2.73 points in dynamic int8 and gained
   0.39 with 7-bit weights. They run the same kernels (0.98-1.05x dynamic's examples/s on the
   five sst2-tiny models there, docs/measurements.md), so the throughput table's dynamic row
   holds for them;
3. where that costs too much too, static quantization in QDQ form calibrated on the first
   :data:`STATIC_EXAMPLES` train examples, with the 1, 2, 4, then 8 weight layers whose input
   activations quantize worst kept in fp32, named by their module
   (:mod:`trainers.deploy.static_int8`).

The checks (:class:`RecipeCheck`): the labels equal fp32's on every sample input fp32 decides
(:data:`DECIDED_MARGIN`: a flip where fp32 is near a coin toss is quantization noise, not a
broken file), and the accuracy on the calibration examples (the first
:data:`CALIBRATION_EXAMPLES` train examples) falls by at most :data:`MAX_COST`. No recipe
passes: refused, nothing written. ORT's pre-processing (shape inference and graph
optimization) runs first, as its quantizer asks.

What becomes int8 (:data:`INT8_OPS`): every MatMul with a constant weight -- the attention
projections, the FFN, and the pooler and classifier (ORT rewrites their Gemm as MatMul + Add) --
and the word and token-type embedding Gathers (the word table is most of a small model's
bytes). Measured on the five trained sst2-tiny models (benchmarks/bench_int8.py), dynamic int8
kept 98.1-99.0 % of the fp32 file's dev labels, -0.34 to +0.11 accuracy points, the head
included. What stays fp32: the attention's activation-by-activation MatMuls (scores and the
weighted sum: no constant to quantize), the CLS-selecting Gather, softmax, the normalizations
and the position table, and a static recipe's kept layers. The file names its recipe
(:data:`RECIPE_KEY`) and its MatMuls and Gathers left in fp32 (:data:`FP32_OPS_KEY`) in its
metadata.

Both files are then scored on the model's dev examples in the study's metric; the figures go
into the file's metadata and the model folder
(:func:`trainers.deploy.model_folder.record_precisions`), the recipe with int8's.
"""

from __future__ import annotations

import enum
import functools
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autoprumux.core.data_spec import data_spec
from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.metrics import Metric, score
from autoprumux.core.records import RecipeSpeed
from autoprumux.core.study import Study, ThroughputSection, load_study
from autoprumux.files.atomic import atomic_path, check_output, output_folders
from trainers.data.tables import load_tables
from trainers.deploy.export import (
    SAMPLE_SENTENCES,
    ExportError,
    ExportFormat,
    export_model,
    quiet_logging,
    sample_inputs,
)
from trainers.deploy.inference import (
    PRECISION_KEY,
    PredictedLabel,
    Text,
    TextClassifier,
    error_line,
    import_export_library,
)
from trainers.deploy.inference import load_text_classifier as load_classifier_file
from trainers.deploy.model_folder import (
    INFO_FILE,
    ModelInfo,
    PrecisionScore,
    export_source,
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
    made: Int8File  # its recipe, the recipes tried, the ops left in fp32
    dev: DevComparison
    seconds: float
    speed: RecipeSpeed | None = None  # a static file's against dynamic int8's; None: dynamic
    # the figures written into the model folder's autoprumux.json and card (False: the folder
    # could not be written, e.g. read-only; the file holds them all the same)
    recorded: bool = True


@dataclass(frozen=True)
class DevSet:
    """A model's dev examples: the first ``dev_examples`` of its study's dev split, in order."""

    texts: tuple[Text, ...]
    labels: tuple[int, ...]  # gold label ids, in the model's label order


def export_int8(
    folder: str | Path,
    out: str | Path,
    progress: Callable[[str], None] = lambda line: None,
    study_file: str | Path | None = None,
) -> Quantized:
    """The model folder as an int8 ONNX file at ``out`` made by the first recipe that passes
    the checks against its fp32 export (:func:`make_int8`), scored on dev, and its figures
    recorded in the folder (:attr:`Quantized.recorded` says whether they could be).
    ``progress`` gets a line per step: the export, each recipe's check, the dev scoring.
    ``study_file``: the study whose data calibrate and score it (``export --study``); None:
    the one the folder records (:func:`model_study`)."""
    started = time.perf_counter()
    folder, out = export_source(folder), Path(out)
    import_export_library("onnx")
    import_export_library("onnxruntime")
    if out.suffix != ".onnx":
        raise FieldError("--out", f"{out}: an int8 model is an ONNX file, ending with .onnx")
    check_output(out, "--out")  # its missing folders are made when it is written
    info = read_info(folder)
    # before any work: its study's data must be there
    study = model_study(info, str(folder / INFO_FILE), study_file)
    dev, calibration = examples_of(info, study)
    with tempfile.TemporaryDirectory(prefix="autoprumux-int8-") as scratch:
        fp32_file = Path(scratch) / "fp32.onnx"
        exported = export_model(folder, ExportFormat.ONNX, fp32_file)
        rows = len(calibration.labels)
        progress(f"int8: fp32 file exported; quantizing (calibration: {rows} train examples)")
        with output_folders(out), atomic_path(out) as temporary:
            try:
                dynamic = Path(scratch) / "dynamic.onnx"  # kept where refused: timed against
                made = make_int8(
                    fp32_file,
                    temporary,
                    calibration,
                    checked=_said(progress),
                    refused_dynamic=dynamic,
                )
            except ExportError as err:
                raise ExportError(f"{out}: {err}; nothing written") from None
            progress(f"int8: scoring both files on {len(dev.labels)} dev examples")
            comparison = compare_on_dev(made.fp32, made.int8, dev)
            add_metadata(temporary, {DEV_KEY: json.dumps(comparison.to_json())})
            speed = _known_speed(info, made.recipe)
            if made.recipe.method is Int8Method.STATIC_QDQ and speed is None:
                progress("int8: timing the static file against dynamic int8, side by side")
                settings = study.throughput
                speed = static_speed(made, dynamic, temporary, settings, _untimed(progress))
    scores = {"fp32": comparison.fp32, "int8": comparison.int8}
    recorded = True
    try:
        record_precisions(
            folder,
            {
                name: PrecisionScore(
                    dev=figure,
                    dev_examples=comparison.examples,
                    runtime=RUNTIME,
                    recipe=str(made.recipe) if name == "int8" else "",
                    speed=speed if name == "int8" else None,
                )
                for name, figure in scores.items()
            },
        )
    except DataError as err:  # a read-only model folder: the file is made all the same
        progress(f"int8: the figures are not recorded in the model folder ({err})")
        recorded = False
    return Quantized(
        path=out,
        bytes=out.stat().st_size,
        fp32_bytes=exported.bytes,
        fp32_max_abs_diff=exported.max_abs_diff,
        made=made,
        dev=comparison,
        seconds=time.perf_counter() - started,
        speed=speed,
        recorded=recorded,
    )


def _known_speed(info: ModelInfo, recipe: Int8Recipe) -> RecipeSpeed | None:
    """The speed against dynamic int8 the folder records of a file by the same recipe (the
    same weights and calibration make the same file: it is not timed again)."""
    entry = info.precisions.get(ExportPrecision.INT8.value)
    if entry is None or entry.recipe != str(recipe):
        return None
    return entry.speed


def static_speed(
    made: Int8File,
    dynamic_file: Path,
    int8_file: Path,
    settings: ThroughputSection,
    failed: Callable[[str], None],
) -> RecipeSpeed | None:
    """The int8 file at ``int8_file`` (made by a static recipe) against ``dynamic_file``, the
    dynamic int8 file of the same weights the ladder refused (``make_int8``'s
    ``refused_dynamic``), timed side by side as the throughput table times int8
    (:func:`trainers.deploy.timing.recipe_speed`): the table's row, which times dynamic int8,
    times these ratios is this file's. None where it cannot be timed, why told to ``failed``
    (the int8 file and its figure stand without it)."""
    from trainers.deploy.timing import Tokens, recipe_speed

    tokenizer, info = made.fp32.tokenizer, made.fp32.info
    tokens = Tokens(tokenizer.vocab_size, int(tokenizer.cls_token_id or 0))
    try:
        return recipe_speed(int8_file, dynamic_file, tokens, info.n, settings, info.max_length)
    except Exception as err:  # ORT raises types of its own
        failed(error_line(err))
        return None


def _untimed(progress: Callable[[str], None]) -> Callable[[str], None]:
    return lambda why: progress(f"int8: not timed against dynamic int8 ({why})")


def _said(progress: Callable[[str], None]) -> Callable[[RecipeCheck], None]:
    def say(check: RecipeCheck) -> None:
        verdict = "kept" if check.accepted else "refused; trying the next recipe"
        progress(f"int8: {check}: {verdict}")

    return say


def quantize_file(fp32: Path, out: Path) -> tuple[str, ...]:
    """Write ``fp32`` (an exported ONNX file) as dynamic int8 at ``out``, with every metadata
    entry of ``fp32`` plus the precision and the MatMuls and Gathers left in fp32 (returned)."""
    with tempfile.TemporaryDirectory(prefix="autoprumux-int8-") as scratch:
        prepared = prepare(fp32, Path(scratch) / "prepared.onnx")
        quantize_dynamic_file(prepared, out)
    return finish_int8(out, fp32, DYNAMIC)


def prepare(fp32: Path, prepared: Path) -> Path:
    """ORT's pre-processing of an fp32 file before quantization, written at ``prepared``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ORT's quantizer logs its notes through the root logger; the CLI's output is the user's
    with quiet_logging():
        # ORT's symbolic shape inference fails on the multiplexed graphs (an Unsqueeze of an
        # unknown rank); ONNX's shape inference and ORT's optimizer still run
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    return prepared


def quantize_dynamic_file(prepared: Path, out: Path, seven_bits: bool = False) -> None:
    """``prepared`` as dynamic int8 at ``out``; ``seven_bits``: weights in [-64, 64], whose
    products cannot saturate a CPU without VNNI (module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_logging():
        quantize_dynamic(
            prepared,
            out,
            op_types_to_quantize=list(INT8_OPS),
            per_channel=True,  # a scale per output row: 98.5 % of labels kept vs 95.8 %
            reduce_range=seven_bits,
            weight_type=QuantType.QInt8,
        )


def finish_int8(out: Path, fp32: Path, recipe: Int8Recipe) -> tuple[str, ...]:
    """Give the int8 file at ``out`` every metadata entry of ``fp32`` (the file it was made
    from) plus its precision, recipe and the MatMuls and Gathers left in fp32 (returned)."""
    import onnx

    proto = onnx.load(str(out))
    kept = fp32_ops(proto)
    carried = metadata(onnx.load(str(fp32), load_external_data=False))
    added = {
        PRECISION_KEY: ExportPrecision.INT8.value,
        FP32_OPS_KEY: json.dumps(kept),
        RECIPE_KEY: json.dumps(recipe.to_json()),
    }
    _set_metadata(proto, {**carried, **added})
    onnx.save(proto, str(out))
    return kept


def fp32_ops(proto: onnx.ModelProto) -> tuple[str, ...]:
    """The quantized graph's MatMuls, Gemms and Gathers (:data:`LISTED_OPS`) that read no int8
    table nor dequantized tensor: they compute in fp32 (a dynamically quantized MatMul is a
    MatMulInteger; a static one reads DequantizeLinear outputs, which ORT fuses)."""
    from onnx import TensorProto

    integer = {
        t.name
        for t in proto.graph.initializer
        if t.data_type in (TensorProto.INT8, TensorProto.UINT8)
    }
    # in QDQ form (static) an int8 op reads the outputs of DequantizeLinear nodes
    dequantized = (n for n in proto.graph.node if n.op_type == "DequantizeLinear")
    integer |= {name for node in dequantized for name in node.output}
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


class Int8Method(enum.Enum):
    """How ONNX Runtime makes the int8 file."""

    DYNAMIC = "dynamic"  # weights int8, activations quantized per batch on the fly
    DYNAMIC_7BIT = "dynamic-7bit"  # the same, weights in 7 bits (no saturation without VNNI)
    STATIC_QDQ = "static-qdq"  # activation scales fixed by calibration (QDQ form)


@dataclass(frozen=True)
class Int8Recipe:
    method: Int8Method
    # the modules whose weight layer was kept in fp32 by choice (static only), e.g.
    # "encoder.layers.0.ffn.down"; worst-quantizing first
    fp32_layers: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.method is Int8Method.DYNAMIC:
            return "dynamic"
        if self.method is Int8Method.DYNAMIC_7BIT:
            return "dynamic, 7-bit weights"
        kept = ", ".join(self.fp32_layers) or "nothing"
        return f"static QDQ, in fp32: {kept}"

    def to_json(self) -> dict[str, object]:
        return {"method": self.method.value, "fp32_layers": list(self.fp32_layers)}


DYNAMIC = Int8Recipe(Int8Method.DYNAMIC)
DYNAMIC_7BIT = Int8Recipe(Int8Method.DYNAMIC_7BIT)
RECIPE_KEY = "int8_recipe"  # ONNX metadata: the recipe's JSON
# the first train examples int8 is checked on (its accuracy cost). On 256, one example is 0.39
# points and the 1-point limit 2.56 of them: the AMD EPYC's (2, 0) teacher in 7-bit int8 lost
# 1.17 points on the first 256, 0.10 on the first 1,024 and 2,048, 0.46 on dev (872), and the
# ladder fell back to a static file running 0.72x as fast (docs/measurements.md)
CALIBRATION_EXAMPLES = 1024
STATIC_EXAMPLES = 256  # of those, the first: a static recipe's activation scales
PROBE_EXAMPLES = 16  # of those, the ones the activations' quantization noise is measured on
# a sample input fp32 decides: its top probability leads the next by this much or more. On
# the undecided ones a flip is quantization noise: the (4, 0.8) tiny model's two flipped
# samples were at 0.518 and 0.509 in fp32, its decided ones moved by 0.04 at most
DECIDED_MARGIN = 0.2
MAX_COST = 0.01  # accuracy int8 may lose on the calibration examples (the 1 point)
STATIC_KEPT = (1, 2, 4, 8)  # the weight layers kept in fp32 by the static recipes tried


@dataclass(frozen=True, kw_only=True)
class RecipeCheck:
    """One recipe's int8 file against the fp32 file's."""

    recipe: Int8Recipe
    flipped: tuple[str, ...]  # the decided sample inputs whose label changed
    decided: int  # sample inputs fp32 decides (the others are not checked)
    samples: int
    cost: float  # fp32's accuracy minus int8's on the calibration examples (a fraction)
    calibration: int  # how many

    @property
    def accepted(self) -> bool:
        return not self.flipped and self.cost <= MAX_COST

    def __str__(self) -> str:
        flips = f"{len(self.flipped)} of {self.decided} decided sample labels changed"
        if self.flipped:
            flips += f" (first: {self.flipped[0]!r})"
        return (
            f"{self.recipe}: {flips}, {0.0 - 100 * self.cost:+.2f} accuracy points on "
            f"{self.calibration} calibration examples"
        )


@dataclass(frozen=True, kw_only=True)
class Int8File:
    recipe: Int8Recipe  # the first of the ladder that passed
    tried: tuple[RecipeCheck, ...]  # every recipe tried, in order, the passing one last
    fp32_ops: tuple[str, ...]  # node names of the MatMuls and Gathers left in fp32
    # both files as the checks loaded them (ONNX Runtime, CPU): scored by the caller without
    # loading them again
    fp32: TextClassifier
    int8: TextClassifier


def make_int8(
    fp32_file: Path,
    out: Path,
    calibration: DevSet,
    samples: Sequence[str] = CHECK_SENTENCES,
    checked: Callable[[RecipeCheck], None] = lambda check: None,
    refused_dynamic: Path | None = None,
) -> Int8File:
    """Write ``fp32_file`` as int8 at ``out`` with the first recipe of the ladder that passes
    the checks (:class:`RecipeCheck`): dynamic, dynamic with 7-bit weights, then static QDQ
    with the 1, 2, 4, 8 weight layers whose inputs quantize worst kept in fp32
    (:mod:`trainers.deploy.static_int8`), checked on ``calibration`` (the first train
    examples; static scales from its first :data:`STATIC_EXAMPLES`). None passes: an
    ExportError naming each recipe's figures, nothing written. ``checked``: called with each
    recipe's check as it is known (progress: a static recipe may take minutes on a large
    model). ``refused_dynamic``: where the dynamic file is kept when it
    is refused (a static file is timed against it: :func:`static_speed`)."""
    fp32 = load_classifier_file(fp32_file, device="cpu")
    reference = _Reference.of(fp32, samples, calibration)
    tried: list[RecipeCheck] = []
    told: list[str] = []  # each recipe's figures; then why the ladder stopped early, if it did
    with tempfile.TemporaryDirectory(prefix="autoprumux-int8-") as scratch:
        try:
            prepared = prepare(fp32_file, Path(scratch) / "prepared.onnx")
        except Exception as err:  # as below
            raise ExportError(
                f"ONNX Runtime could not prepare the file for quantization: {error_line(err)}"
            ) from None
        ladder = recipe_ladder(fp32_file, prepared, fp32, calibration)
        for i in itertools.count():
            candidate = Path(scratch) / f"int8-{i}.onnx"
            try:
                step = next(ladder, None)  # ranking the static recipes runs in here
                if step is None:
                    break
                recipe, write = step
                write(candidate)
            except Exception as err:  # ORT's quantizers raise types of their own
                told.append(f"the next recipe could not be made ({error_line(err)})")
                break
            int8 = load_classifier_file(candidate, device="cpu")
            check = reference.check(recipe, int8)
            tried.append(check)
            told.append(str(check))
            checked(check)
            if recipe is DYNAMIC and not check.accepted and refused_dynamic is not None:
                shutil.move(candidate, refused_dynamic)
            if check.accepted:
                kept = finish_int8(candidate, fp32_file, recipe)
                shutil.move(candidate, out)
                return Int8File(
                    recipe=recipe, tried=tuple(tried), fp32_ops=kept, fp32=fp32, int8=int8
                )
    refused = "; ".join(told)
    raise ExportError(f"no int8 recipe keeps the fp32 model's labels and accuracy: {refused}")


def recipe_ladder(
    fp32_file: Path, prepared: Path, fp32: TextClassifier, calibration: DevSet
) -> Iterator[tuple[Int8Recipe, Callable[[Path], None]]]:
    """The recipes in the order they are tried, each with what writes its file at a path;
    the static ones are ranked (a calibrated pass) only once both dynamic ones are refused."""
    import onnx

    from trainers.deploy import static_int8

    yield DYNAMIC, lambda out: quantize_dynamic_file(prepared, out)
    yield DYNAMIC_7BIT, lambda out: quantize_dynamic_file(prepared, out, seven_bits=True)

    def batches(texts: Sequence[Text]) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
        groups = fp32.tokenize(texts)[0]  # [G, N, L] arrays, fed 16 groups at a time
        return lambda: (groups[i : i + 16].feeds() for i in range(0, len(groups), 16))

    feeds = batches(calibration.texts[:STATIC_EXAMPLES])
    probe = batches(calibration.texts[:PROBE_EXAMPLES])
    ranked = static_int8.rank_weight_matmuls(prepared, feeds, probe, INT8_OPS)
    modules = static_int8.module_names(onnx.load(str(fp32_file)))
    for kept in (k for k in STATIC_KEPT if k <= len(ranked)):
        nodes = ranked[:kept]
        recipe = Int8Recipe(Int8Method.STATIC_QDQ, tuple(modules.get(n, n) for n in nodes))
        # called with the file to write: quantize_static_file(prepared, out, ...)
        yield (
            recipe,
            functools.partial(
                static_int8.quantize_static_file,
                prepared,
                feeds=feeds,
                ops=INT8_OPS,
                fp32_nodes=nodes,
            ),
        )


@dataclass(frozen=True)
class _Reference:
    """What the fp32 file says of the sample inputs and the calibration examples."""

    samples: list[Text]
    labels: list[str]  # fp32's, one per sample
    decided: list[bool]  # per sample: fp32's margin is DECIDED_MARGIN or more
    calibration: DevSet
    accuracy: float  # fp32's on the calibration examples

    @classmethod
    def of(cls, fp32: TextClassifier, sentences: Sequence[str], calibration: DevSet) -> _Reference:
        samples = sample_inputs(fp32, sentences)
        predicted = fp32.predict(samples)
        return cls(
            samples=samples,
            labels=[p.label for p in predicted],
            decided=[_margin(p) >= DECIDED_MARGIN for p in predicted],
            calibration=calibration,
            accuracy=dev_score(fp32, calibration, Metric.ACCURACY),
        )

    def check(self, recipe: Int8Recipe, int8: TextClassifier) -> RecipeCheck:
        got = [p.label for p in int8.predict(self.samples)]
        flipped = tuple(
            str(text)
            for text, want, label, decided in zip(
                self.samples, self.labels, got, self.decided, strict=True
            )
            if decided and label != want
        )
        return RecipeCheck(
            recipe=recipe,
            flipped=flipped,
            decided=sum(self.decided),
            samples=len(self.samples),
            cost=self.accuracy - dev_score(int8, self.calibration, Metric.ACCURACY),
            calibration=len(self.calibration.labels),
        )


def _margin(predicted: PredictedLabel) -> float:
    """The top probability minus the next one."""
    top, second = sorted(predicted.probabilities.values(), reverse=True)[:2]
    return top - second


def study_examples(
    info: ModelInfo, where: str, study_file: str | Path | None = None
) -> tuple[DevSet, DevSet]:
    """The model's dev examples and its calibration examples (the first
    :data:`CALIBRATION_EXAMPLES` of the train split), read from its study's data:
    ``study_file`` (``export --study``), else the study file the folder records
    (:func:`model_study`)."""
    return examples_of(info, model_study(info, where, study_file))


def model_study(info: ModelInfo, where: str, study_file: str | Path | None = None) -> Study:
    """The study an int8 export is calibrated and scored on: ``study_file`` (``export
    --study``; a moved or copied study), else the one the model folder records
    (``info.study_file``, an absolute path). Refused in one line, naming ``--study``, where it is
    not there or its data are not the model's: another task, or other text or label columns
    (what ``autoprumux.json`` records of the data; the label names are checked once the data
    are read, :func:`examples_of`)."""
    if study_file is None:
        if not Path(info.study_file).is_file():
            raise DataError(
                where,
                f"its study file {info.study_file} is not there; an int8 export is calibrated "
                "and scored on its study's data: give the study (moved, or a copy) with "
                "--study FILE",
                field="study_file",
            )
        study, named = load_study(info.study_file), f"its study file {info.study_file}"
    else:
        if not Path(study_file).is_file():
            raise FieldError("--study", f"{study_file}: no such study file")
        study, named = load_study(study_file), f"{study_file}"
    spec = data_spec(study)
    theirs = (study.task, spec.text_columns, spec.label)
    ours = (info.task, info.text_columns, info.label_column)
    if theirs != ours:
        raise FieldError(
            "--study",
            f"{named} is a study of {_data_words(*theirs)}; the model was trained on "
            f"{_data_words(*ours)}: give its own study with --study FILE",
        )
    return study


def _data_words(task: str, text_columns: tuple[str, ...], label: str) -> str:
    """``task 'sst2' (text sentence, label label)``: what a study's data is, in words."""
    return f"task {task!r} (text {', '.join(text_columns)}, label {label})"


def examples_of(info: ModelInfo, study: Study) -> tuple[DevSet, DevSet]:
    """The model's dev and calibration examples in ``study``'s data (:func:`model_study`),
    whose label names must be the model's, in its order."""
    where = str(study.path)
    tables = load_tables(data_spec(study))
    if tables.label_names != info.labels:
        raise FieldError(
            "--study",
            f"{where}: labels {', '.join(tables.label_names)} are not the model's "
            f"({', '.join(info.labels)}): the study's data changed since the model was "
            "trained; give the study it was trained with with --study FILE",
        )
    dev = first_examples(tables.dev, info.dev_examples, where)
    return dev, calibration_examples(tables.train)


def calibration_examples(train: pa.Table) -> DevSet:
    """The first :data:`CALIBRATION_EXAMPLES` rows of a checked train table (all of a smaller
    one)."""
    rows = min(CALIBRATION_EXAMPLES, train.num_rows)
    return first_examples(train, rows, "train")


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


def dev_score(model: TextClassifier, dev: DevSet, metric: Metric | None = None) -> float:
    """The model's figure on ``dev`` (any labelled examples) in ``metric``, by default its
    study's (``ModelInfo.metric``)."""
    return predictions_score(model.info, dev, model.predict(dev.texts), metric)


def predictions_score(
    info: ModelInfo,
    dev: DevSet,
    predicted: Sequence[PredictedLabel],
    metric: Metric | None = None,
) -> float:
    """The figure of ``predicted`` (one per dev example, in dev order) in ``metric``, by
    default the model's study's."""
    labels = info.labels
    counts = [[0] * len(labels) for _ in labels]  # [gold][predicted]
    for gold, prediction in zip(dev.labels, predicted, strict=True):
        counts[gold][labels.index(prediction.label)] += 1
    return score(metric or Metric(info.metric), counts, info.positive_id)


def compare_on_dev(fp32: TextClassifier, int8: TextClassifier, dev: DevSet) -> DevComparison:
    return DevComparison(
        metric_label=fp32.info.metric_label,
        examples=len(dev.labels),
        fp32=dev_score(fp32, dev),
        int8=dev_score(int8, dev),
    )
