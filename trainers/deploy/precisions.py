"""A trained model's dev figure in each precision it may be served in, after its training.

Training is precision-agnostic (:mod:`autoprumux.core.precision`): the trial's own figure is
fp32's (``TrialRecord.accuracy``); every other precision of the study is one evaluation of the
same weights on the same dev examples, in the runtime that would serve it:

- ``int8``: the model folder exported to ONNX in fp32 and made int8 by the first recipe that
  passes the checks against the fp32 file (dynamic, else static QDQ with its worst layers kept
  in fp32, calibrated on the first train examples), as ``autoprumux export --precision int8``
  does (:func:`trainers.deploy.quantize.make_int8`), then the dev text classified on ONNX
  Runtime's CPU provider as ``autoprumux classify`` would: the figure (and the recipe) is the
  one ``export`` records. Where quantization fails or no recipe passes, int8 gets no figure
  (the reason is logged) and the trial goes on. A file made by a static recipe is also timed
  against dynamic int8 of the same weights, side by side (the throughput table times dynamic
  int8; the search scales the point's row by these ratios: ``RecipeSpeed``);
- ``bf16`` / ``fp16``: a copy of the PyTorch model cast to that dtype (weights and activations;
  no autocast), scored by the trial's own dev evaluation on its device.

Each figure is recorded in the model folder (``autoprumux.json``'s ``precisions``, with the
runtime that computed it: :func:`~trainers.deploy.model_folder.record_precisions`), so a
trial that reuses the folder evaluates only the precisions it lacks.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from autoprumux.core.precision import Precision
from autoprumux.core.progress import Progress, ProgressCallback
from autoprumux.core.study import ThroughputSection
from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import error_line, import_export_library
from trainers.deploy.model_folder import PrecisionScore, read_info, record_precisions
from trainers.deploy.quantize import (
    RUNTIME,
    DevSet,
    Int8Method,
    dev_score,
    make_int8,
    static_speed,
)
from trainers.model.classifier import Classifier
from trainers.runtime.device import Engine
from trainers.runtime.device import Precision as TrainingPrecision

log = logging.getLogger(__name__)
_EXPORT_LOCK = threading.Lock()

PROGRESS_PHASE = "precisions"  # Progress.phase: a step per part of each evaluation (_STEPS)
_DTYPES = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


@dataclass(frozen=True, kw_only=True)
class ServedDev:
    """The trial's dev split, as each runtime reads it."""

    # the trial's dev evaluation of a model on ``engine`` -> the study's metric (accuracy: a
    # fraction); the same code that scored the model's fp32 figure
    score: Callable[[Classifier, Engine], float]
    # the same dev examples as text (an ONNX file classifies text); built once asked for
    texts: Callable[[], DevSet]
    # the first train examples as text (int8's calibration: quantize.calibration_examples)
    calibration: Callable[[], DevSet]
    examples: int  # how many dev examples both hold (ModelInfo.dev_examples)
    engine: Engine  # the trial's: bf16 and fp16 are evaluated on its device
    # the study's [throughput] settings: a static int8 file is timed against dynamic by them
    throughput: ThroughputSection


def evaluate_precisions(
    folder: Path,
    model: Classifier,
    precisions: Sequence[Precision],
    dev: ServedDev,
    progress: ProgressCallback | None = None,
) -> dict[Precision, PrecisionScore]:
    """The model saved (and described) in ``folder`` in each of ``precisions`` but fp32: its
    dev figure (and for a static int8 file, its speed against dynamic's), each evaluated once
    in its runtime and recorded in the folder; those the folder records already (on as many
    dev examples, by the same runtime) are read, not evaluated again. A precision that could
    not be evaluated (int8 refused) is left out."""
    wanted = [p for p in precisions if p is not Precision.FP32]
    recorded = read_info(folder).precisions
    scores: dict[Precision, PrecisionScore] = {}
    missing = []
    for precision in wanted:
        entry = recorded.get(precision.value)
        if entry is not None and _matches(entry, precision, dev.examples):
            scores[precision] = entry
        else:
            missing.append(precision)
    tick = _Ticks(progress, sum(_STEPS.get(p, 1) for p in missing))
    for precision in missing:
        score = _evaluate(folder, model, precision, dev, tick)
        tick.finish(precision)
        if score is not None:
            scores[precision] = score
            # recorded at once: a trial killed in the next evaluation keeps this one
            record_precisions(folder, {precision.value: score})
    return {p: scores[p] for p in wanted if p in scores}


# progress steps of an evaluation: int8's export, its recipes (and checks: one step, however
# many are tried) and dev classification; one for the others
_STEPS = {Precision.INT8: 3}


class _Ticks:
    """The ``precisions`` progress: one step per part of each evaluation, as it ends."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        self._started = 0  # steps done when the current evaluation began

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(Progress(phase=PROGRESS_PHASE, step=self.done, total=self.total))

    def finish(self, precision: Precision) -> None:
        """An evaluation ended (a refused int8 early): its remaining steps counted done."""
        while self.done < self._started + _STEPS.get(precision, 1):
            self()
        self._started = self.done


def runtime_name(precision: Precision, engine: Engine) -> str:
    """What computes a precision's figure: ``onnxruntime-cpu`` for int8, ``torch-<device>``
    (``torch-cpu``, ``torch-cuda``) for the others."""
    return RUNTIME if precision is Precision.INT8 else f"torch-{engine.device.type}"


def _matches(entry: PrecisionScore, precision: Precision, examples: int) -> bool:
    """Whether a recorded figure is this evaluation's: the same dev examples, in the
    precision's runtime (``export`` records int8 as the trial does), and for a static int8
    file its speed against dynamic's (a folder from an older release has none: evaluated
    again)."""
    timed = not entry.static_int8 or entry.speed is not None
    return entry.dev_examples == examples and entry.runtime.startswith(precision.runtime) and timed


def _evaluate(
    folder: Path,
    model: Classifier,
    precision: Precision,
    dev: ServedDev,
    tick: Callable[[], None] = lambda: None,
) -> PrecisionScore | None:
    if precision is Precision.INT8:
        return int8_figure(folder, dev, tick)
    figure = torch_figure(model, _DTYPES[precision], dev)
    return PrecisionScore(
        dev=figure, dev_examples=dev.examples, runtime=runtime_name(precision, dev.engine)
    )


def torch_figure(model: Classifier, dtype: torch.dtype, dev: ServedDev) -> float:
    """The dev figure of a copy of ``model`` cast to ``dtype``, scored by the trial's dev
    evaluation on its device without autocast (weights and activations in ``dtype``), and
    uncompiled (one evaluation is not worth a graph per bucket)."""
    served = copy.deepcopy(model).requires_grad_(False).to(dtype).eval()
    engine = dataclasses.replace(dev.engine, precision=TrainingPrecision.FP32, compile=False)
    try:
        return dev.score(served, engine)
    finally:
        del served
        if engine.on_gpu:
            torch.cuda.empty_cache()  # the copy's memory back before the next trial phase


def int8_figure(
    folder: Path, dev: ServedDev, tick: Callable[[], None] = lambda: None
) -> PrecisionScore | None:
    """The dev figure of the folder's model made int8 (:func:`make_int8`, calibrated on the
    first train examples) on ONNX Runtime's CPU provider, as ``export --precision int8`` scores
    it; None (the reason logged) where onnx or onnxruntime is missing, the export fails, or no
    recipe passes the checks. ``tick``: called after the export, the first recipe tried and
    the classification."""
    try:
        return _int8_figure(folder, dev, tick)
    except Exception as err:  # ORT and ONNX raise types of their own: none may fail the trial
        log.warning("%s: no int8 figure: %s", folder, error_line(err))
        return None


def _int8_figure(folder: Path, dev: ServedDev, tick: Callable[[], None]) -> PrecisionScore:
    import_export_library("onnx")
    import_export_library("onnxruntime")
    with tempfile.TemporaryDirectory(prefix="autoprumux-int8-") as scratch:
        int8_file = Path(scratch) / "int8.onnx"
        # one at a time in a process (CPU trials run side by side in threads): torch.export
        # traces through process-wide state, and the export and the quantizer quiet stdout
        # and the root logger process-wide while they run
        with _EXPORT_LOCK:
            fp32_file = export_model(folder, ExportFormat.ONNX, Path(scratch) / "fp32.onnx").path
            tick()
            dynamic = Path(scratch) / "dynamic.onnx"  # kept where refused: timed against
            made = make_int8(
                fp32_file,
                int8_file,
                dev.calibration(),
                checked=_first(tick),
                refused_dynamic=dynamic,
            )
            speed = None
            if made.recipe.method is Int8Method.STATIC_QDQ:
                log.info("%s: int8 by the recipe %s", folder, made.recipe)
                speed = static_speed(made, dynamic, int8_file, dev.throughput, _not_timed(folder))
        figure = dev_score(made.int8, dev.texts())
        tick()
        return PrecisionScore(
            dev=figure,
            dev_examples=dev.examples,
            runtime=RUNTIME,
            recipe=str(made.recipe),
            speed=speed,
        )


def _not_timed(folder: Path) -> Callable[[str], None]:
    # the figure stands without it: the search then ranks the point by dynamic int8's row,
    # saying so
    return lambda why: log.warning("%s: static int8 not timed against dynamic: %s", folder, why)


def _first(tick: Callable[[], None]) -> Callable[[object], None]:
    """``tick`` on the first recipe checked only (the progress counts one step for them)."""
    calls = iter((tick,))
    return lambda _check: next(calls, lambda: None)()
