"""``autoprumux export``: a model folder as one ONNX or TorchScript file that classifies alone.

The file holds :class:`~trainers.deploy.inference.GroupedClassifier` ([G, N, L] tokens ->
[G, N, labels] logits, G dynamic) and carries the model's info and tokenizer files (ONNX
metadata_props, TorchScript extra files), so ``classify --model FILE`` needs nothing else.
Before the file appears at its path (its missing folders made, as every output's), its logits
are checked against PyTorch's on group counts other than the traced one; a file over the
tolerance is not written, nor are the folders made for it left.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.files.atomic import atomic_path, check_output, output_folders
from trainers.deploy.inference import (
    BUNDLE_KEY,
    INPUT_NAMES,
    GroupedClassifier,
    Groups,
    Text,
    TextClassifier,
    TorchBackend,
    bundle,
    import_export_library,
    load_text_classifier,
)
from trainers.deploy.model_folder import export_source

ONNX_OPSET = 18  # the torch.export-based exporter's own opset (>= 17, which the issue needs)
TOLERANCE = 1e-4  # max |logit difference| against PyTorch, fp32 on the CPU
# Inputs that fill the traced and the checked groups: short, long, and all-padding rows.
SAMPLE_SENTENCES = (
    "a fine film",
    "the plot is thin , the acting is worse , and it goes on for far too long",
    "it is a moving story , told with warmth and a sharp eye for detail",
    "dull",
)


class ExportFormat(enum.Enum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"

    @property
    def suffix(self) -> str:
        return ".onnx" if self is ExportFormat.ONNX else ".pt"


class ExportError(AutoPruMuxError):
    """An export failed its check against PyTorch, or cannot be written."""


@dataclass(frozen=True, kw_only=True)
class Exported:
    path: Path
    format: ExportFormat
    bytes: int
    max_abs_diff: float  # of the logits against PyTorch's, over the checked group counts
    checked_groups: tuple[int, ...]
    seconds: float


def export_model(
    folder: str | Path, fmt: ExportFormat, out: str | Path, tolerance: float = TOLERANCE
) -> Exported:
    started = time.perf_counter()
    folder, out = export_source(folder), Path(out)
    if fmt is ExportFormat.ONNX:  # before any work: one line saying what to install
        import_export_library("onnx")
        import_export_library("onnxruntime")
    if out.suffix != fmt.suffix:
        raise FieldError("--out", f"{out}: a {fmt.value} file ends with {fmt.suffix}")
    check_output(out, "--out")  # its missing folders are made when it is written
    reference = load_text_classifier(folder, device="cpu")
    backend = reference.backend  # a model folder (export_source) loads into PyTorch
    assert isinstance(backend, TorchBackend) and isinstance(backend.model, GroupedClassifier)
    module = backend.model
    traced, checked = _sample(reference, 2), (1, 3)
    with output_folders(out), atomic_path(out) as temporary:
        if fmt is ExportFormat.ONNX:
            write_onnx(module, traced, temporary, bundle(folder))
        else:
            _write_torchscript(module, traced, temporary, bundle(folder))
        exported = load_text_classifier(temporary, device="cpu")  # as classify loads it
        diff = max(
            float(np.abs(exported.backend.logits(s) - reference.backend.logits(s)).max())
            for s in (_sample(reference, g) for g in checked)
        )
        if not diff <= tolerance:
            raise ExportError(
                f"{out}: the {fmt.value} model's logits differ from PyTorch's by {diff:.2e} "
                f"(> {tolerance:g}); nothing written"
            )
    return Exported(
        path=out,
        format=fmt,
        bytes=out.stat().st_size,
        max_abs_diff=diff,
        checked_groups=checked,
        seconds=time.perf_counter() - started,
    )


def _sample(classifier: TextClassifier, groups: int) -> Groups:
    """``groups`` groups of sample inputs (the last one partly padding)."""
    count = groups * classifier.info.n - (1 if classifier.info.n > 1 else 0)
    sentences = [SAMPLE_SENTENCES[i % len(SAMPLE_SENTENCES)] for i in range(count)]
    return classifier.tokenize(sample_inputs(classifier, sentences))[0]


def sample_inputs(classifier: TextClassifier, sentences: Sequence[str]) -> list[Text]:
    """``sentences`` as the model's inputs: themselves, or for a pair task each paired with
    the list reversed."""
    if len(classifier.info.text_columns) == 2:
        return list(zip(sentences, reversed(sentences), strict=True))
    return list(sentences)


def _tensors(groups: Groups) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(getattr(groups, name)) for name in INPUT_NAMES)


def write_onnx(module: GroupedClassifier, example: Groups, path: Path, carried: str) -> None:
    import onnx

    groups = torch.export.Dim("groups", min=1)
    # the exporter reports each stage on stdout and warns through logging; the CLI's stdout
    # is the user's (and --json's)
    with (
        _quiet_stdout_here(),
        quiet_logging("torch.onnx", "onnxscript"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # the exporter's deprecation and axis-naming notes
        program = torch.onnx.export(
            module,
            _tensors(example),
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            opset_version=ONNX_OPSET,
            dynamic_shapes={name: {0: groups} for name in INPUT_NAMES},
            dynamo=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns the program
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = BUNDLE_KEY, carried
    onnx.save(proto, str(path))


def _write_torchscript(
    module: GroupedClassifier, example: Groups, path: Path, carried: str
) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # "converting a tensor to a Python boolean": the row count is always a multiple of N
        # here, which the check on other group counts confirms
        # torch.jit leaves TracerWarning out of its __all__
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript's; ONNX is the future
        # torch leaves torch.jit.trace unannotated
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            module, _tensors(example), check_trace=False
        )
        torch.jit.save(traced, str(path), _extra_files={BUNDLE_KEY: carried})


class _QuietThread(io.TextIOBase):
    """stdout that drops what one thread writes and passes the others' on: a search's CPU
    trials export in threads while the main thread prints."""

    def __init__(self, real: TextIO, thread: int) -> None:
        self.real, self.thread = real, thread

    def write(self, text: str) -> int:
        if threading.get_ident() == self.thread:
            return len(text)
        return self.real.write(text)

    def flush(self) -> None:
        self.real.flush()


@contextlib.contextmanager
def _quiet_stdout_here() -> Iterator[None]:
    """stdout silenced for this thread only, while the block runs."""
    real = sys.stdout
    sys.stdout = _QuietThread(real, threading.get_ident())
    try:
        yield
    finally:
        sys.stdout = real


@contextlib.contextmanager
def quiet_logging(*names: str) -> Iterator[None]:
    """The loggers ``names`` (none: the root logger) at ERROR while the block runs."""
    loggers = [logging.getLogger(name) for name in names] or [logging.getLogger()]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
