"""Timing a model's inference the way the paper measures throughput: random token ids padded
to a sequence length, ``batch_rows * N`` sequences a batch, passes timed round-robin with the
harness (:mod:`autoprumux.core.harness`), float32 as IEEE float32. A trial times its trained
model here; ``autoprumux measure`` (:mod:`autoprumux.measurement`) times a study's grid.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from autoprumux.core.errors import AutoPruMuxError
from autoprumux.core.grid import GridPoint
from autoprumux.core.harness import Timing, time_round_robin
from autoprumux.core.study import ThroughputSection
from trainers.model.architecture import prunable_params
from trainers.model.classifier import Classifier
from trainers.runtime.device import resolve_device

TIMING_GRAPHS = "cuda-graphs"  # each batch's forward replayed from one capture
TIMING_EAGER = "eager"  # the forward run op by op, as on a CPU

# a model of the grid, or one beside it: (point, source), e.g. a trained model beside its estimate
MeasureKey = GridPoint | tuple[GridPoint, str]


class MeasureError(AutoPruMuxError):
    """A measurement cannot run as asked (no CUDA, no models, a batch that never fits)."""


@dataclass(frozen=True, kw_only=True)
class Measured:
    point: GridPoint
    timing: Timing
    parameters: int  # prunable encoder parameters
    batch_rows: int  # rows per batch actually used (after any out-of-memory back-off)
    source: str  # "estimate" or "trained"
    timing_mode: str = TIMING_EAGER  # TIMING_GRAPHS or TIMING_EAGER: how every model was run


def measure(
    models: Mapping[GridPoint, Classifier],
    settings: ThroughputSection,
    seq_len: int,
    source: str,
    progress: Callable[[int, int], None] | None = None,
    extra: Mapping[tuple[GridPoint, str], Classifier] | None = None,
) -> dict[MeasureKey, Measured]:
    """Time every model in one round-robin run. ``extra`` adds more (key -> model) to the same
    run, e.g. trained models beside their estimates; their keys are (point, source) pairs."""
    device = str(resolve_device(settings.device))
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        settings.dtype
    ]
    if dtype == torch.float16 and device == "cpu":
        raise MeasureError("--dtype float16 needs a GPU here; use float32 or bfloat16 on a CPU")
    keyed: dict[MeasureKey, tuple[GridPoint, Classifier, str]] = {
        p: (p, m, source) for p, m in models.items()
    }
    for (point, kind), model in (extra or {}).items():
        keyed[point, kind] = (point, model, kind)
    if not keyed:
        raise MeasureError("there are no models to measure")
    on_gpu = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if on_gpu else (lambda: None)
    runs: dict[MeasureKey, Callable[[], int]] = {}
    rows_used: dict[MeasureKey, int] = {}
    mode = TIMING_GRAPHS if on_gpu else TIMING_EAGER
    with strict_float32():
        pool = torch.cuda.graph_pool_handle() if on_gpu else None
        for key, (point, model, _) in keyed.items():
            timed = as_timed(model, torch.device(device), dtype)
            runs[key], rows_used[key] = fitting_pass(
                timed, point.n, settings, seq_len, device, pool
            )
        with torch.inference_mode():
            timings = time_round_robin(
                runs, settings.passes, settings.warmup_passes, sync, progress=progress
            )
    return {
        key: Measured(
            point=point,
            timing=timings[key],
            parameters=prunable_params(model.arch),
            batch_rows=rows_used[key],
            source=kind,
            timing_mode=mode,
        )
        for key, (point, model, kind) in keyed.items()
    }


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
        ids = torch.randint(
            0, model.arch.vocab_size, (batch, seq_len), device=device, generator=generator
        )
        ids[:, 0] = model.arch.cls_token_id
        mask = torch.ones_like(ids)
        batches = max(1, math.ceil(settings.examples_per_pass / batch))
        try:
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
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows //= 2
    raise MeasureError(
        f"even one row of {width} sequences of {seq_len} tokens does not fit in memory"
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
