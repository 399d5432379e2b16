"""Measuring throughput of real models with the harness: the torch adapter.

Two sources of models for a study's (N, s) grid:
- **estimates**: the architecture pruning would produce at s (``architecture_for_sparsity``:
  the same heads and FFN units kept in every layer, hidden size kept), with random weights -
  throughput depends on shapes, not weights, so this needs no training and no checkpoint
  weights (only the base model's config);
- **trained**: the study's trained artifacts (teachers and pruned trials), as saved.

Inputs are random token ids padded to the study's sequence length, ``batch_rows * N`` sequences
a batch. Every (N, s) is timed in each of the study's precisions (``[deploy] precisions`` on the
[throughput] device: fp32 and int8 on a CPU by default), int8 in ONNX Runtime, all in one
round-robin run (:mod:`trainers.deploy.timing`), and so is each estimate's latency of one
request at batch 1 (a multiplexed model then runs a group of N with N - 1 empty slots). torch
and the training engine are imported here, and this module only by the commands that measure.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.precision import Precision, check_precisions
from autoprumux.core.progress import Progress, ProgressCallback
from autoprumux.core.study import Study, ThroughputSection
from autoprumux.core.throughput import OPTIONAL_THROUGHPUT_COLUMNS, THROUGHPUT_COLUMNS
from autoprumux.files.atomic import check_output
from autoprumux.files.results_io import TableFormat, read_table, write_table
from trainers.deploy.timing import (
    LATENCY_PASS_SECONDS,
    TIMING_EAGER,
    TIMING_GRAPHS,
    Measured,
    MeasureError,
    MeasureKey,
    harness_threads,
    int8_session,
    measure,
    onnxruntime_version,
)
from trainers.model.architecture import (
    Architecture,
    architecture_for_sparsity,
    multiplexing_fields,
    with_layers,
)
from trainers.model.checkpoints import (
    load_classifier,
    load_tokenizer,
    read_hf_config,
    resolve_model_path,
)
from trainers.model.classifier import Classifier
from trainers.runtime.device import cpu_name, serving_device
from trainers.runtime.device import resolve_device as resolve
from trainers.trial.cache_keys import label_count

# what a table's latency_s column holds (in its fingerprint, for whoever reads the file)
LATENCY_MEANING = (
    "seconds for one request at batch 1 (one sequence; a multiplexed model runs it as a group "
    "of N with N - 1 empty slots), the median over the timed passes"
)


def resolve_device(settings: ThroughputSection) -> str:
    """The device to measure on ("cpu", "cuda:0", ...); one line when it is not here."""
    return str(resolve(settings.device))


def default_table_path(study: Study, settings: ThroughputSection) -> Path:
    """studies/throughput/<study>-<cpu|cuda>-<dtype>.json: the table a search ranks by."""
    kind = resolve_device(settings).partition(":")[0]
    return study.folder / "throughput" / f"{study.name}-{kind}-{settings.dtype}.json"


def measured_precisions(study: Study, settings: ThroughputSection) -> tuple[Precision, ...]:
    """The study's precisions on the device ``settings`` name (which the CLI may override):
    ``[deploy] precisions``, else the device's defaults; one line naming a precision the device
    cannot serve, and what it can (as ``trainers.runtime.device.study_precisions``)."""
    return check_precisions(study.deploy.precisions, serving_device(settings))


def runtimes(precisions: tuple[Precision, ...]) -> dict[str, str]:
    """What each precision ran on, with its version: e.g. {"fp32": "torch 2.x", "int8":
    "onnxruntime 1.x"}."""
    torch_version = f"torch {torch.__version__}"
    return {
        p.value: onnxruntime_version() if p.runtime == "onnxruntime" else torch_version
        for p in precisions
    }


def fingerprint(
    settings: ThroughputSection,
    device: str,
    study: Study,
    precisions: tuple[Precision, ...] = (Precision.FP32,),
) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_name()
    return {
        "device": device,
        "device_name": name,
        "torch": torch.__version__,
        "dtype": settings.dtype,
        "tf32": False,  # float32 is timed as IEEE float32 (strict_float32)
        # how a batch's forward runs: replayed as a CUDA graph on a GPU (trainers.deploy.timing)
        "timing": TIMING_GRAPHS if device.startswith("cuda") else TIMING_EAGER,
        "threads": torch.get_num_threads(),
        "batch_rows": settings.batch_rows,
        "seq_len": study.model.max_seq_length,
        "examples_per_pass": settings.examples_per_pass,
        "passes": settings.passes,
        "model": study.model.name_or_path,
        "num_layers": study.model.num_layers,
        "study": study.name,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "precisions": [p.value for p in precisions],
        # fp32 runs in PyTorch in float32 (``dtype``); bf16 and fp16 in PyTorch cast to theirs;
        # int8 in ONNX Runtime's CPU provider (dynamic quantization), ``threads`` intra-op threads
        "runtimes": runtimes(precisions),
        "latency_s": LATENCY_MEANING,
    }


def measured_for_another(
    fingerprint: Mapping[str, object], study: Study, settings: ThroughputSection
) -> str | None:
    """What of the model timed ``fingerprint``'s table differs from the one ``study`` trains,
    in words ("num_layers 1, the study's 2"); None when it is the same, or the table does not
    say. Its speeds are then of another model: the search measures it again. How it was timed
    (passes, threads, the machine) is left to ``autoprumux measure``."""
    expected: dict[str, object] = {
        "model": study.model.name_or_path,
        "num_layers": study.model.num_layers,
        "seq_len": study.model.max_seq_length,
        "batch_rows": settings.batch_rows,
    }
    differ = []
    for key, value in expected.items():
        recorded = fingerprint.get(key)
        # a benchmark's table names the config it timed: "bert-base-uncased's config, ..."
        named = key == "model" and str(recorded).startswith(f"{value}'s config")
        if recorded is not None and recorded != value and not named:
            differ.append(f"{key} {recorded}, the study's {value}")
    return "; ".join(differ) or None


def estimate_models(study: Study, points: list[GridPoint]) -> dict[GridPoint, Classifier]:
    """Randomly initialized models with the architecture each (N, s) would have."""
    config = with_layers(
        read_hf_config(resolve_model_path(study.model.name_or_path)), study.model.num_layers
    )
    cls_token_id = load_tokenizer(study.model.name_or_path).cls_token_id
    dense = Architecture.from_hf_config(
        config, num_labels=label_count(study), cls_token_id=cls_token_id
    )
    models = {}
    for point in points:
        fields = multiplexing_fields(study.multiplexing, point.n) if point.n > 1 else {}
        arch = dataclasses.replace(dense, **fields)
        torch.manual_seed(0)
        models[point] = Classifier(architecture_for_sparsity(arch, point.sparsity)).eval()
    return models


def measure_seconds(
    study: Study,
    models: Mapping[GridPoint, Classifier],
    speeds: Mapping[GridPoint, float],
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """About how long ``autoprumux measure`` takes on the study's grid, from the quick fp32
    estimate ``speeds`` (examples/s): every (N, s) in each precision is run for the warm-up
    passes, the discarded pass and the timed ones (each of about ``examples_per_pass``
    examples, and a batch-1 latency pass), every precision at fp32's speed; and int8's models
    are exported and quantized first, each taking about as long as one timed here."""
    settings = study.throughput
    precisions = measured_precisions(study, settings)
    one_pass = sum(
        settings.examples_per_pass / speed + LATENCY_PASS_SECONDS for speed in speeds.values()
    )
    rounds = settings.warmup_passes + 1 + settings.passes
    seconds = rounds * one_pass * len(precisions)
    if Precision.INT8 in precisions:
        smallest = max(models)  # the largest N, the largest s: the quickest to export
        started = clock()
        int8_session(
            models[smallest], smallest.n, study.model.max_seq_length, harness_threads(settings)
        )
        seconds += (clock() - started) * len(models)
    return seconds


_ARTIFACT = re.compile(r"^(teacher|trial)-n(\d+)(?:-s([0-9.]+))?-[0-9a-f]+$")


def trained_models(study: Study) -> dict[GridPoint, Classifier]:
    """The newest trained artifact of each (N, s) in the study's artifacts folder."""
    newest: dict[GridPoint, Path] = {}
    folder = study.artifacts_folder
    for path in (
        sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime) if folder.is_dir() else ()
    ):
        match = _ARTIFACT.match(path.name)
        if match and path.is_dir():
            newest[GridPoint(int(match.group(2)), float(match.group(3) or 0))] = path
    return {point: load_classifier(path) for point, path in newest.items()}


def check_table_output(out_path: str | None, study: Study, settings: ThroughputSection) -> Path:
    """Where the table goes (``--out``, else :func:`default_table_path`), refused at once when
    it cannot be written or has no table extension, not after the measuring."""
    option = "--out" if out_path else "throughput table"
    path = check_output(Path(out_path) if out_path else default_table_path(study, settings), option)
    try:
        TableFormat.of(path)
    except DataError as err:
        raise FieldError(option, str(err)) from None
    if path.is_file() and not _throughput_table(path):
        raise FieldError(
            option,
            f"{path} exists and is not a throughput table (a results table, or another file): "
            "measuring would replace it; give another file",
        )
    return path


def _throughput_table(path: Path) -> bool:
    """Whether the file is a throughput table (which a new measurement may replace): it reads
    as one and holds no accuracy (a results table's rows also have a throughput)."""
    try:
        rows, _ = read_table(path, required=THROUGHPUT_COLUMNS)
    except DataError:
        return False
    return not any("accuracy" in row for row in rows)


def run_measure(
    study: Study,
    settings: ThroughputSection,
    with_trained: bool = False,
    out_path: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Measure the study's grid in each of its precisions (estimates, and trained models beside
    them if asked), with the estimates' latency at batch 1, write the table, and return what
    the CLI prints (the keys of ``autoprumux measure --json``)."""
    path = check_table_output(out_path, study, settings)  # before a minute of measuring
    device = resolve_device(settings)
    precisions = measured_precisions(study, settings)  # a precision refused before any work
    points = sorted(study.grid.grid)
    models = estimate_models(study, points)
    extra = {(p, "trained"): m for p, m in trained_models(study).items()} if with_trained else {}
    if with_trained and not extra:
        raise MeasureError(f"--trained: {study.artifacts_folder} holds no trained models yet")

    def reporter(phase: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(Progress(phase=phase, step=done, total=total))

        return report

    results = measure(
        models,
        settings,
        study.model.max_seq_length,
        "estimate",
        reporter("measure"),
        extra,
        precisions=precisions,
        latency=True,
        preparing=reporter("prepare"),
    )
    stamp = fingerprint(settings, device, study, precisions)
    rows = [
        table_row(point.served(p), results, results[BASELINE])
        for point in points
        for p in precisions
    ]
    columns = [
        *THROUGHPUT_COLUMNS,
        *OPTIONAL_THROUGHPUT_COLUMNS,
        "low",
        "high",
        "cv",
        "parameters",
        "batch_rows",
    ]
    write_table(rows, path, columns, {"fingerprint": stamp})
    shrunk = sorted({r["batch_rows"] for r in rows if r["batch_rows"] < settings.batch_rows})
    busy = machine_busy(int(str(stamp["threads"])))
    return {
        "study": study.name,
        "table": str(path),
        "fingerprint": stamp,
        "rows": rows,
        "batch_rows_reduced_to": shrunk,
        "warnings": [busy] if busy else [],
    }


def machine_busy(own_threads: int) -> str | None:
    """A warning when other work loaded the machine while the table was timed, else None.
    Round robin keeps the table's ratios fair to each model, but not its speeds: other work
    taking half the cores halves every speed, and a batch-1 latency far more (seen: 224 ms
    against 3.5 ms idle). The 1-minute load average, less this run's own threads, is the other
    work; more than half the cores' worth of it is said."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return None
    cores = os.cpu_count() or 1
    if load - own_threads <= 0.5 * cores:
        return None
    return (
        f"the machine was busy while this table was timed (load average {load:.1f} on "
        f"{cores} cores, {own_threads} of it this run's threads): its speeds may be low and its "
        "batch-1 latencies high; measure it again on an idle machine (autoprumux measure)"
    )


def table_row(
    point: GridPoint, results: Mapping[MeasureKey, Measured], base: Measured
) -> dict[str, Any]:
    """One (N, s, precision) row of the table; speedups are ratios to the fp32 (1, 0) row."""
    measured = results[point]
    row: dict[str, Any] = {
        "n": point.n,
        "sparsity": point.sparsity,
        "precision": point.precision.value,
        "throughput": measured.timing.median,
        "latency_s": measured.latency_s,
        "low": measured.timing.low,
        "high": measured.timing.high,
        "cv": measured.timing.cv,
        "parameters": measured.parameters,
        "batch_rows": measured.batch_rows,
        "runtime": measured.runtime,
        "speedup": measured.timing.median / base.timing.median,
        # the ideal: N times the parameter ratio (the same in every precision)
        "ideal_speedup": point.n * base.parameters / max(measured.parameters, 1),
    }
    trained = results.get((point, "trained"))
    if trained is not None:
        row["trained_throughput"] = trained.timing.median
        row["estimate_error"] = measured.timing.median / trained.timing.median - 1
    return row
