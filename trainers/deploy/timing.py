"""Timing a model's inference the way the paper measures throughput: random token ids padded
to a sequence length, ``batch_rows * N`` sequences a batch, passes timed round-robin with the
harness (:mod:`autoprumux.core.harness`), float32 as IEEE float32. A trial times its trained
model here; ``autoprumux measure`` (:mod:`autoprumux.measurement`) times a study's grid.

Each model is timed in each precision asked (:mod:`autoprumux.core.precision`), in the runtime
that would serve it, all in the same round-robin run so that every ratio is measured side by
side: fp32 in PyTorch in the [throughput] dtype (float32 unless the study says otherwise),
bf16 and fp16 in PyTorch with the model cast to that dtype, int8 in ONNX Runtime (CPU provider)
on the model exported as ``autoprumux export`` exports it and quantized as ``export --precision
int8`` quantizes it (:func:`trainers.deploy.quantize.quantize_file`), batches of the same shape.

With ``latency``, each model's run also times the latency of ONE request at batch 1: a single
sequence, which a multiplexed model serves as a group of N with N - 1 empty (all-padding)
slots, so its latency is one forward of N sequences, never faster than N = 1's at the same
sparsity. Each latency pass runs a few requests one after another (enough for about
:data:`LATENCY_PASS_SECONDS`); a pass's figure is its seconds per request, the latency is their
median over the timed passes.

On CUDA a batch's forward pass is captured once as a CUDA graph and replayed (:func:`graphed`):
the model as a serving stack runs it, its kernels without the Python launches in between.
Eager, a small model's pass is bound by those launches (a pruned model then times no faster
than the dense one), and the table would time the launcher, not the model. Every model of a
run is timed the same way (:data:`TIMING_GRAPHS` or :data:`TIMING_EAGER`, in the table's
fingerprint).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from autoprumux.core.errors import AutoPruMuxError
from autoprumux.core.grid import GridPoint
from autoprumux.core.harness import Pass, Timing, time_round_robin
from autoprumux.core.precision import Precision
from autoprumux.core.records import RecipeSpeed
from autoprumux.core.study import ThroughputSection
from trainers.model.architecture import prunable_params
from trainers.model.classifier import Classifier
from trainers.runtime.device import resolve_device

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

TIMING_GRAPHS = "cuda-graphs"  # each batch's forward replayed from one capture
TIMING_EAGER = "eager"  # the forward run op by op, as on a CPU
# the dtype each PyTorch precision is timed in (fp32: the [throughput] dtype, float32 by default)
PRECISION_DTYPES = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}
LATENCY_PASS_SECONDS = 0.05  # a latency pass runs requests for about this long ...
LATENCY_MAX_REQUESTS = 64  # ... but at most this many (a tiny model's request takes ~1 ms)

# a model of the grid, or one beside it: (point, source), e.g. a trained model beside its estimate
MeasureKey = GridPoint | tuple[GridPoint, str]


class MeasureError(AutoPruMuxError):
    """A measurement cannot run as asked (no CUDA, no models, a batch that never fits)."""


@dataclass(frozen=True, kw_only=True)
class Measured:
    point: GridPoint  # (N, s, precision)
    timing: Timing  # examples per second
    parameters: int  # prunable encoder parameters
    batch_rows: int  # rows per batch actually used (after any out-of-memory back-off)
    source: str  # "estimate" or "trained"
    timing_mode: str = TIMING_EAGER  # TIMING_GRAPHS or TIMING_EAGER: how every model was run
    runtime: str = "torch"  # what ran it: "torch" or "onnxruntime" (Precision.runtime)
    latency: Timing | None = None  # requests per second at batch 1, where timed

    @property
    def latency_s(self) -> float | None:
        """Seconds for one request at batch 1: the median of the passes' seconds a request."""
        if self.latency is None:
            return None
        return statistics.median(1.0 / rate for rate in self.latency.rates)


@dataclass(frozen=True)
class Timed:
    """A model ready to be timed: its passes, and how they run it."""

    batch: Pass  # a throughput pass: ~examples_per_pass examples in batches of rows * N
    rows: int  # rows per batch
    request: Pass | None  # a latency pass: requests of one sequence, one after another


def measure(
    models: Mapping[GridPoint, Classifier],
    settings: ThroughputSection,
    seq_len: int,
    source: str,
    progress: Callable[[int, int], None] | None = None,
    extra: Mapping[tuple[GridPoint, str], Classifier] | None = None,
    precisions: Sequence[Precision] = (Precision.FP32,),
    latency: bool = False,
    preparing: Callable[[int, int], None] | None = None,
) -> dict[MeasureKey, Measured]:
    """Time every model in each of ``precisions`` in one round-robin run. ``models`` are keyed
    by their fp32 points; each result by the point served in its precision
    (``point.served(precision)``, the point itself for fp32). ``extra`` adds more (key ->
    model) to the same run, e.g. trained models beside their estimates; their keys are
    (point, source) pairs. ``latency`` times one request at batch 1 of each of ``models`` too
    (not of ``extra``). ``preparing`` hears (done, total) as models are made ready to time
    (cast, captured, exported and quantized: int8's export takes seconds a model)."""
    device = str(resolve_device(settings.device))
    if settings.threads:
        torch.set_num_threads(settings.threads)
    on_gpu = device.startswith("cuda")
    check_precisions_here(precisions, on_gpu)
    keyed = keyed_models(models, source, extra or {}, precisions)
    if not keyed:
        raise MeasureError("there are no models to measure")
    sync = (lambda: torch.cuda.synchronize(device)) if on_gpu else (lambda: None)
    runs: dict[tuple[MeasureKey, str], Pass] = {}
    rows_used: dict[MeasureKey, int] = {}
    with strict_float32():
        pool = torch.cuda.graph_pool_handle() if on_gpu else None
        for done, key in enumerate(keyed, start=1):
            point, model, _ = keyed[key]
            with_latency = latency and not isinstance(key, tuple)  # the estimates' only
            if point.precision is Precision.INT8:
                # the fp32 rows' batch shape (fp32 is prepared first: its rows are known)
                fp32 = (point.trained, key[1]) if isinstance(key, tuple) else point.trained
                rows = rows_used.get(fp32, settings.batch_rows)
                # the model exported as `export` exports it, quantized as `export --precision
                # int8` does, on ONNX Runtime's CPU provider with the [throughput] threads
                session = int8_session(model, point.n, seq_len, harness_threads(settings))
                tokens = Tokens(model.arch.vocab_size, model.arch.cls_token_id)
                timed = onnx_timed(session, tokens, point.n, rows, settings, seq_len, with_latency)
            else:
                dtype = PRECISION_DTYPES.get(point.precision, torch.float32)
                on_device = as_timed(model, torch.device(device), dtype)
                batch, rows = fitting_pass(on_device, point.n, settings, seq_len, device, pool)
                request = (
                    request_pass(on_device, point.n, seq_len, device, pool, sync)
                    if with_latency
                    else None
                )
                timed = Timed(batch, rows, request)
            runs[key, "throughput"], rows_used[key] = timed.batch, timed.rows
            if timed.request is not None:
                runs[key, "latency"] = timed.request
            if preparing is not None:
                preparing(done, len(keyed))
        with torch.inference_mode():
            timings = time_round_robin(
                runs, settings.passes, settings.warmup_passes, sync, progress=progress
            )
    mode = TIMING_GRAPHS if on_gpu else TIMING_EAGER
    return {
        key: Measured(
            point=point,
            timing=timings[key, "throughput"],
            parameters=prunable_params(model.arch),
            batch_rows=rows_used[key],
            source=kind,
            timing_mode=mode,
            runtime=point.precision.runtime,
            latency=timings.get((key, "latency")),
        )
        for key, (point, model, kind) in keyed.items()
    }


def keyed_models(
    models: Mapping[GridPoint, Classifier],
    source: str,
    extra: Mapping[tuple[GridPoint, str], Classifier],
    precisions: Sequence[Precision],
) -> dict[MeasureKey, tuple[GridPoint, Classifier, str]]:
    """Every model in every precision, keyed as :func:`measure` returns them, -> (point
    served, model, source); fp32 first, then the precisions in :class:`Precision`'s order."""
    keyed: dict[MeasureKey, tuple[GridPoint, Classifier, str]] = {}
    for precision in sorted(set(precisions), key=list(Precision).index):
        for point, model in models.items():
            keyed[point.served(precision)] = (point.served(precision), model, source)
        for (point, kind), model in extra.items():
            keyed[point.served(precision), kind] = (point.served(precision), model, kind)
    return keyed


def check_precisions_here(precisions: Sequence[Precision], on_gpu: bool) -> None:
    """One line for a precision this device cannot time (the study's precisions are
    checked at the edge already: this guards the library's own callers)."""
    if Precision.FP16 in precisions and not on_gpu:
        raise MeasureError("precision fp16 needs a GPU here; a CPU has no fast fp16 matmul")
    if Precision.INT8 in precisions and on_gpu:
        raise MeasureError(
            "precision int8 is timed on ONNX Runtime's CPU provider; use --device cpu"
        )


def request_pass(
    model: Classifier, width: int, seq_len: int, device: str, pool: Any, sync: Callable[[], None]
) -> Pass:
    """A latency pass: requests of ONE sequence, each a forward of a group of ``width`` rows
    whose other ``width - 1`` rows are empty slots (all padding, as classify fills them)."""
    generator = torch.Generator(device=device).manual_seed(0)
    ids = torch.zeros((width, seq_len), dtype=torch.long, device=device)  # [N, L]
    ids[0] = torch.randint(0, model.arch.vocab_size, (seq_len,), device=device, generator=generator)
    ids[0, 0] = model.arch.cls_token_id
    mask = torch.zeros_like(ids)
    mask[0] = 1
    with torch.inference_mode():
        model(ids, mask)
        forward = (
            graphed(model, ids, mask, pool)[0] if pool is not None else (lambda: model(ids, mask))
        )
    return _requests(forward, sync)


def _requests(forward: Callable[[], object], sync: Callable[[], None]) -> Pass:
    """A pass of as many requests as take about :data:`LATENCY_PASS_SECONDS` (from one timed
    request after a warm one), between 1 and :data:`LATENCY_MAX_REQUESTS`."""
    with torch.inference_mode():
        forward()
        sync()
        start = time.perf_counter()
        forward()
        sync()
        seconds = time.perf_counter() - start
    count = max(1, min(LATENCY_MAX_REQUESTS, math.ceil(LATENCY_PASS_SECONDS / max(seconds, 1e-9))))

    def run() -> int:
        with torch.inference_mode():
            for _ in range(count):
                forward()
        return count

    return run


@dataclass(frozen=True)
class Tokens:
    """What the random inputs of a timed ONNX file are drawn from."""

    vocab_size: int
    cls_token_id: int  # every sequence starts with it


def onnx_timed(
    session: InferenceSession,
    tokens: Tokens,
    width: int,
    rows: int,
    settings: ThroughputSection,
    seq_len: int,
    latency: bool,
) -> Timed:
    """A throughput pass of an ONNX session (about ``examples_per_pass`` examples in batches of
    ``rows`` groups of ``width`` sequences of ``seq_len`` random tokens, no padding) and, with
    ``latency``, a pass of one request at batch 1 (one group, its N - 1 other slots empty)."""
    names = {i.name for i in session.get_inputs()}  # DistilBERT's graph reads no token types
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, tokens.vocab_size, (rows, width, seq_len), generator=generator)
    ids[:, :, 0] = tokens.cls_token_id
    batch = {  # [G, N, L] each, as classify feeds a grouped model
        "input_ids": ids.numpy(),
        "attention_mask": np.ones((rows, width, seq_len), dtype=np.int64),
        "token_type_ids": np.zeros((rows, width, seq_len), dtype=np.int64),
    }
    size = rows * width
    batches = max(1, math.ceil(settings.examples_per_pass / size))
    feeds = {k: v for k, v in batch.items() if k in names}

    def run() -> int:
        for _ in range(batches):
            session.run(None, feeds)
        return batches * size

    request = None
    if latency:
        one = {k: v[:1].copy() for k, v in feeds.items()}  # [1, N, L]: one group
        for name in ("input_ids", "attention_mask"):
            if name in one:
                one[name][0, 1:] = 0  # the N - 1 empty slots: all padding
        request = _requests(lambda: session.run(None, one), lambda: None)
    return Timed(run, rows, request)


def int8_session(model: Classifier, width: int, seq_len: int, threads: int) -> InferenceSession:
    """An ONNX Runtime session (:func:`cpu_session`) of ``model`` in int8. The files live only
    while the session loads them."""
    from trainers.deploy.export import write_onnx
    from trainers.deploy.inference import GroupedClassifier, Groups
    from trainers.deploy.quantize import quantize_file

    fp32_model = as_timed(model, torch.device("cpu"), torch.float32)
    example = Groups(*(np.zeros((2, width, seq_len), dtype=np.int64) for _ in range(3)))
    example.input_ids[:, :, 0] = model.arch.cls_token_id
    example.attention_mask[:] = 1
    with tempfile.TemporaryDirectory(prefix="autoprumux-timing-") as scratch:
        fp32, int8 = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        write_onnx(GroupedClassifier(fp32_model), example, fp32, "")
        quantize_file(fp32, int8)
        return cpu_session(int8, threads)


def cpu_session(path: Path, threads: int) -> InferenceSession:
    """An ONNX Runtime session of the file at ``path`` as the harness times it: CPU provider,
    ``threads`` intra-op threads, nodes run one after another."""
    from trainers.deploy.inference import import_export_library

    ort = import_export_library("onnxruntime")  # one line when it is not installed
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    # idle workers sleep, not spin: a spinning pool would take the cores from the model
    # timed next in the round robin
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def recipe_speed(
    made: Path,
    dynamic: Path,
    tokens: Tokens,
    width: int,
    settings: ThroughputSection,
    seq_len: int,
) -> RecipeSpeed:
    """An int8 file made by another recipe than dynamic (static QDQ) against the dynamic int8
    file of the same weights, timed side by side in one round-robin run as the throughput
    table times int8 (ONNX Runtime's CPU provider, the [throughput] threads, batches of
    ``batch_rows`` groups of ``width`` sequences of ``seq_len`` tokens, the trial's smaller
    passes): the ratio of their examples/s, and of their batch-1 latencies. The table times
    dynamic int8 alone; these ratios turn its row into this file's."""
    small = replace(settings, examples_per_pass=settings.trial_examples_per_pass)
    runs: dict[tuple[str, str], Pass] = {}
    for name, path in (("made", made), ("dynamic", dynamic)):
        session = cpu_session(path, harness_threads(settings))
        timed = onnx_timed(session, tokens, width, settings.batch_rows, small, seq_len, True)
        runs[name, "throughput"] = timed.batch
        assert timed.request is not None
        runs[name, "latency"] = timed.request
    timings = time_round_robin(runs, settings.passes, settings.warmup_passes)
    return RecipeSpeed(
        throughput=timings["made", "throughput"].median / timings["dynamic", "throughput"].median,
        # requests a second, inverted: seconds a request
        latency=timings["dynamic", "latency"].median / timings["made", "latency"].median,
    )


def harness_threads(settings: ThroughputSection) -> int:
    """The [throughput] threads, torch's count when 0."""
    return settings.threads or torch.get_num_threads()


def onnxruntime_version() -> str:
    """What times int8, with its version, as a table's fingerprint names it."""
    from trainers.deploy.inference import import_export_library

    return f"onnxruntime {import_export_library('onnxruntime').__version__}"


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """IEEE float32 matmuls while timing (TF32 off), whatever the process set before: a
    training in the same process turns TF32 on, and a trial's timing must match a table
    measured in a process that never trained."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def fitting_pass(
    model: Classifier,
    width: int,
    settings: ThroughputSection,
    seq_len: int,
    device: str,
    pool: Any = None,  # torch.cuda.graph_pool_handle()
) -> tuple[Callable[[], int], int]:
    """A pass over ~examples_per_pass examples in batches of rows * N; halves the rows when a
    batch does not fit in memory (and says so in the result). With a CUDA graph ``pool``
    (CUDA only), the batch's forward is a graph replayed from that pool (:func:`graphed`)."""
    rows = settings.batch_rows
    # its own generator: timing a model inside a trial must not move the trial's random stream
    generator = torch.Generator(device=device).manual_seed(0)
    while rows >= 1:
        batch = rows * width
        batches = max(1, math.ceil(settings.examples_per_pass / batch))
        try:
            ids = torch.randint(
                0, model.arch.vocab_size, (batch, seq_len), device=device, generator=generator
            )
            ids[:, 0] = model.arch.cls_token_id
            mask = torch.ones_like(ids)
            with torch.inference_mode():
                model(ids, mask)
                forward = (
                    graphed(model, ids, mask, pool)[0]
                    if pool is not None
                    else (lambda ids=ids, mask=mask: model(ids, mask))
                )

            def run(
                forward: Callable[[], object] = forward, batches: int = batches, batch: int = batch
            ) -> int:
                with torch.inference_mode():
                    for _ in range(batches):
                        forward()
                return batches * batch

            return run, rows
        except RuntimeError as err:  # torch.OutOfMemoryError is one
            if not out_of_memory(err):
                raise
            del err  # its traceback holds the batch's tensors
            torch.cuda.empty_cache()
            rows //= 2
    raise MeasureError(
        f"even one row of {width} sequences of {seq_len} tokens does not fit in memory"
    )


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation that failed: a GPU's (``torch.OutOfMemoryError``) or
    the CPU allocator's (a plain RuntimeError, "DefaultCPUAllocator: can't allocate memory")."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    )


def graphed(
    model: Classifier, ids: Tensor, mask: Tensor, pool: Any
) -> tuple[Callable[[], None], Tensor]:
    """The model's forward on this batch ([B, L] ids and mask, on CUDA) captured as a CUDA
    graph: (replay, the logits it writes). A replay reads ``ids`` and ``mask`` as they are
    then. Warmed up on a side stream first, as CUDA graph
    capture requires. All of a run's graphs share one memory ``pool``: their outputs are never
    read, and one stream replays them one after another, never at once."""
    side = torch.cuda.Stream(ids.device)  # type: ignore[no-untyped-call]
    side.wait_stream(torch.cuda.current_stream(ids.device))
    with torch.cuda.stream(side):
        for _ in range(2):
            model(ids, mask)
    torch.cuda.current_stream(ids.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        logits: Tensor = model(ids, mask)
    return graph.replay, logits


def as_timed(model: Classifier, device: torch.device, dtype: torch.dtype) -> Classifier:
    """The model as the harness times it: on ``device``, in ``dtype``, in eval mode. A copy
    where that changes anything: the caller's model (a teacher about to be distilled from, a
    model still training) keeps its device, precision and mode."""
    weight = next(model.parameters())
    if weight.device == device and weight.dtype == dtype and not model.training:
        return model
    timed = Classifier(model.arch).to(device=device, dtype=dtype)
    timed.load_state_dict(model.state_dict())  # the weights and the multiplexer's keys
    return timed.eval()


def measure_one(model: Classifier, settings: ThroughputSection, seq_len: int) -> float:
    """The throughput recorded with a trained trial: the same harness, a smaller pass."""
    small = replace(settings, examples_per_pass=settings.trial_examples_per_pass, passes=3)
    point = GridPoint(model.arch.mux_width, 0.0)
    return measure({point: model}, small, seq_len, "trained")[point].timing.median
