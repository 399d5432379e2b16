"""Measuring throughput of real models with the harness: the torch adapter.

Two sources of models for a study's (N, s) grid:
- **estimates**: the architecture pruning would produce at s (``architecture_for_sparsity``:
  the same heads and FFN units kept in every layer, hidden size kept), with random weights -
  throughput depends on shapes, not weights, so this needs no training and no checkpoint
  weights (only the base model's config);
- **trained**: the study's trained artifacts (teachers and pruned trials), as saved.

Inputs are random token ids padded to the study's sequence length, ``batch_rows * N`` sequences
a batch. torch and the training engine are imported only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoprumux.atomic_files import check_output
from autoprumux.errors import AutoPruMuxError, DataError, FieldError
from autoprumux.grid import GridPoint
from autoprumux.harness import Timing, time_round_robin
from autoprumux.results_io import TableFormat
from autoprumux.study import Study, ThroughputSection


class MeasureError(AutoPruMuxError):
    """A measurement cannot run as asked (no CUDA, no models, a batch that never fits)."""


@dataclass(frozen=True)
class Measured:
    point: GridPoint
    timing: Timing
    parameters: int  # prunable encoder parameters
    batch_rows: int  # rows per batch actually used (after any out-of-memory back-off)
    source: str  # "estimate" or "trained"


def resolve_device(settings: ThroughputSection) -> str:
    """The device to measure on ("cpu", "cuda:0", ...); one line when it is not here."""
    from trainers.device import resolve_device as resolve

    return str(resolve(settings.device))


def default_table_path(study: Study, settings: ThroughputSection) -> Path:
    """studies/throughput/<study>-<cpu|cuda>-<dtype>.json: the table a search ranks by."""
    kind = resolve_device(settings).partition(":")[0]
    return study.folder / "throughput" / f"{study.name}-{kind}-{settings.dtype}.json"


def fingerprint(settings: ThroughputSection, device: str, study: Study) -> dict[str, Any]:
    import torch

    name = (
        torch.cuda.get_device_name(device)
        if device.startswith("cuda")
        else (platform.processor() or platform.machine())
    )
    return {
        "device": device,
        "device_name": name,
        "torch": torch.__version__,
        "dtype": settings.dtype,
        "tf32": False,  # float32 is timed as IEEE float32 (strict_float32)
        "threads": torch.get_num_threads(),
        "batch_rows": settings.batch_rows,
        "seq_len": study.model.max_seq_length,
        "examples_per_pass": settings.examples_per_pass,
        "passes": settings.passes,
        "model": study.model.name_or_path,
        "num_layers": study.model.num_layers,
        "study": study.name,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def estimate_models(study: Study, points: list[GridPoint]) -> dict[GridPoint, Any]:
    """Randomly initialized models with the architecture each (N, s) would have."""
    import torch

    from autoprumux.tasks import TASKS
    from trainers.architecture import (
        Architecture,
        architecture_for_sparsity,
        multiplexing_fields,
    )
    from trainers.checkpoints import load_tokenizer, read_hf_config, resolve_model_path
    from trainers.model import Classifier

    config = read_hf_config(resolve_model_path(study.model.name_or_path))
    if study.model.num_layers:
        config = {
            **config,
            "num_hidden_layers": min(study.model.num_layers, config["num_hidden_layers"]),
        }
    cls_token_id = load_tokenizer(study.model.name_or_path).cls_token_id
    dense = Architecture.from_hf_config(
        config, num_labels=TASKS[study.task].num_labels, cls_token_id=cls_token_id
    )
    models = {}
    for point in points:
        fields = multiplexing_fields(study.multiplexing, point.n) if point.n > 1 else {}
        arch = dataclasses.replace(dense, **fields)
        torch.manual_seed(0)
        models[point] = Classifier(architecture_for_sparsity(arch, point.sparsity)).eval()
    return models


_ARTIFACT = re.compile(r"^(teacher|trial)-n(\d+)(?:-s([0-9.]+))?-[0-9a-f]+$")


def trained_models(study: Study) -> dict[GridPoint, Any]:
    """The newest trained artifact of each (N, s) in the study's artifacts folder."""
    from trainers.checkpoints import load_model

    newest: dict[GridPoint, Path] = {}
    folder = study.artifacts_folder
    for path in (
        sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime) if folder.is_dir() else ()
    ):
        match = _ARTIFACT.match(path.name)
        if match and path.is_dir():
            newest[GridPoint(int(match.group(2)), float(match.group(3) or 0))] = path
    return {point: load_model(path) for point, path in newest.items()}


def measure(
    models: Mapping[GridPoint, Any],
    settings: ThroughputSection,
    seq_len: int,
    source: str,
    progress: Callable[[int, int], None] | None = None,
    extra: Mapping[Any, Any] | None = None,
) -> dict[Any, Measured]:
    """Time every model in one round-robin run. ``extra`` adds more (key -> model) to the same
    run, e.g. trained models beside their estimates; their keys are (point, source) pairs."""
    import torch

    from trainers.architecture import prunable_params

    device = resolve_device(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        settings.dtype
    ]
    if dtype == torch.float16 and device == "cpu":
        raise MeasureError("--dtype float16 needs a GPU here; use float32 or bfloat16 on a CPU")
    keyed: dict[Any, tuple[GridPoint, Any, str]] = {p: (p, m, source) for p, m in models.items()}
    for key, model in (extra or {}).items():
        keyed[key] = (key[0], model, key[1])
    if not keyed:
        raise MeasureError("there are no models to measure")
    on_gpu = device.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if on_gpu else (lambda: None)
    runs, rows_used = {}, {}
    with strict_float32():
        for key, (point, model, _) in keyed.items():
            model = model.to(device=device, dtype=dtype).eval()
            runs[key], rows_used[key] = _fitting_pass(model, point.n, settings, seq_len, device)
        with torch.inference_mode():
            timings = time_round_robin(
                runs, settings.passes, settings.warmup_passes, sync, progress=progress
            )
    return {
        key: Measured(point, timings[key], prunable_params(model.arch), rows_used[key], kind)
        for key, (point, model, kind) in keyed.items()
    }


@contextlib.contextmanager
def strict_float32() -> Any:
    """IEEE float32 matmuls while timing (TF32 off), whatever the process set before: a
    training in the same process turns TF32 on, and a trial's timing must match a table
    measured in a process that never trained."""
    import torch

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _fitting_pass(model, width: int, settings: ThroughputSection, seq_len: int, device: str):  # type: ignore[no-untyped-def]
    """A pass over ~examples_per_pass examples in batches of rows * N; halves the rows when a
    batch does not fit in memory (and says so in the result)."""
    import torch

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

        def run(ids=ids, mask=mask, batches=batches, batch=batch) -> int:
            with torch.inference_mode():
                for _ in range(batches):
                    model(ids, mask)
            return batches * batch

        try:
            with torch.inference_mode():
                model(ids, mask)
            return run, rows
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows //= 2
    raise MeasureError(
        f"even one row of {width} sequences of {seq_len} tokens does not fit in memory"
    )


def measure_one(model, settings: ThroughputSection, seq_len: int) -> float:  # type: ignore[no-untyped-def]
    """The throughput recorded with a trained trial: the same harness, a smaller pass."""
    small = replace(settings, examples_per_pass=settings.trial_examples_per_pass, passes=3)
    point = GridPoint(model.arch.mux_width, 0.0)
    return measure({point: model}, small, seq_len, "trained")[point].timing.median


def check_table_output(out_path: str | None, study: Study, settings: ThroughputSection) -> Path:
    """Where the table goes (``--out``, else :func:`default_table_path`), refused at once when
    it cannot be written or has no table extension, not after the measuring."""
    option = "--out" if out_path else "throughput table"
    path = check_output(Path(out_path) if out_path else default_table_path(study, settings), option)
    try:
        TableFormat.of(path)
    except DataError as err:
        raise FieldError(option, str(err)) from None
    return path


def run_measure(
    study: Study,
    settings: ThroughputSection,
    with_trained: bool = False,
    out_path: str | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Measure the study's grid (estimates, and trained models beside them if asked), write the
    table, and return what the CLI prints (the keys of ``autoprumux measure --json``)."""
    from autoprumux.grid import BASELINE
    from autoprumux.progress import Progress
    from autoprumux.results_io import write_table
    from autoprumux.throughput import THROUGHPUT_COLUMNS

    path = check_table_output(out_path, study, settings)  # before a minute of measuring
    device = resolve_device(settings)
    points = sorted(study.grid.grid)
    models = estimate_models(study, points)
    extra = {(p, "trained"): m for p, m in trained_models(study).items()} if with_trained else {}
    if with_trained and not extra:
        raise MeasureError(f"--trained: {study.artifacts_folder} holds no trained models yet")

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(Progress("measure", done, total))

    results = measure(models, settings, study.model.max_seq_length, "estimate", report, extra)
    stamp = fingerprint(settings, device, study)
    base = results[BASELINE]
    rows = []
    for point in points:
        measured = results[point]
        row: dict[str, Any] = {
            "n": point.n,
            "sparsity": point.sparsity,
            "throughput": measured.timing.median,
            "low": measured.timing.low,
            "high": measured.timing.high,
            "cv": measured.timing.cv,
            "parameters": measured.parameters,
            "batch_rows": measured.batch_rows,
            "speedup": measured.timing.median / base.timing.median,
            # the ideal: N times the parameter ratio
            "ideal_speedup": point.n * base.parameters / max(measured.parameters, 1),
        }
        trained = results.get((point, "trained"))
        if trained is not None:
            row["trained_throughput"] = trained.timing.median
            row["estimate_error"] = measured.timing.median / trained.timing.median - 1
        rows.append(row)
    columns = [*THROUGHPUT_COLUMNS, "low", "high", "cv", "parameters", "batch_rows"]
    write_table(rows, path, columns, {"fingerprint": stamp})
    shrunk = sorted({r["batch_rows"] for r in rows if r["batch_rows"] < settings.batch_rows})
    return {
        "study": study.name,
        "table": str(path),
        "fingerprint": stamp,
        "rows": rows,
        "batch_rows_reduced_to": shrunk,
    }
