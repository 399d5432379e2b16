"""Classifying text with a trained model: a model folder, or a file ``autoprumux export`` wrote.

    from autoprumux import load_model
    load_model("studies/artifacts/sst2-tiny/trial-n2-s0.5-...").predict(["a fine film"])

Inputs are tokenized as the trial tokenized its dev set (padded to the model's max length,
truncated beyond it) and grouped N at a time in input order, like the trial's dev evaluation:
the last group is filled with all-padding rows whose outputs are dropped. So classifying a
task's dev set in order gives the trial's recorded dev accuracy.

Every backend computes ``logits(groups)``: [G, N, L] token arrays -> [G, N, labels] floats.
The PyTorch backend runs :class:`GroupedClassifier`, the module ``export`` writes, on the
model's device in the precision that device does best.
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.progress import Progress
from trainers.deploy.model_folder import (
    DEFAULT_BATCH,
    INFO_FILE,
    ModelInfo,
    NotAModelError,
    read_info,
)
from trainers.model.checkpoints import CheckpointError, load_classifier
from trainers.model.classifier import Classifier
from trainers.runtime.device import Engine, cuda_device_count, device_for

# imported where used: transformers (1 s or more) when a tokenizer is loaded, onnxruntime
# when an ONNX file is
if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from transformers import PreTrainedTokenizerBase

# The key under which an exported file carries the model's info and tokenizer files
# (ONNX metadata_props, TorchScript extra files).
BUNDLE_KEY = "autoprumux"
# The key under which a quantized ONNX file names its precision ("int8"); a file without it
# computes in fp32 (trainers/deploy/quantize.py)
PRECISION_KEY = "precision"

Text = str | tuple[str, str]  # one sentence, or a pair for pair tasks

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
# an ONNX Runtime execution provider: its name, or its name and options
OnnxProvider = str | tuple[str, dict[str, str]]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PredictedLabel:
    """What the model says of one input: its most probable label and every label's chance
    (not :class:`autoprumux.core.surrogate.Prediction`, a surrogate's value at an (N, s))."""

    label: str
    probabilities: dict[str, float]  # label -> probability, in the model's label order


@dataclass(frozen=True, kw_only=True)
class Classified:
    """The outcome of classifying many inputs, with what it cost."""

    predictions: tuple[PredictedLabel, ...]  # in input order
    seconds: float  # wall time: tokenizing, grouping and the forward passes
    model_seconds: float  # the forward passes alone
    truncated: int  # inputs longer than the max length, cut to it

    @property
    def per_second(self) -> float:
        return len(self.predictions) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Groups:
    """Tokenized inputs in groups of N: each array is [G, N, L] int64."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def __getitem__(self, index: slice) -> Groups:
        return Groups(self.input_ids[index], self.attention_mask[index], self.token_type_ids[index])

    def __len__(self) -> int:
        rows: int = self.input_ids.shape[0]
        return rows

    def feeds(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in INPUT_NAMES}


INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class GroupedClassifier(nn.Module):
    """A classifier on groups: [G, N, L] tokens -> [G, N, labels] logits (the exported form)."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        groups, width, length = input_ids.shape
        logits: Tensor = self.model(
            input_ids.reshape(groups * width, length),
            attention_mask.reshape(groups * width, length),
            token_type_ids.reshape(groups * width, length),
        )
        return logits.reshape(groups, width, -1)


class Backend(Protocol):
    def logits(self, groups: Groups) -> np.ndarray: ...  # [G, N, labels] float32


class TorchBackend:
    def __init__(self, model: nn.Module, device: torch.device, autocast: Callable[[], Any]) -> None:
        self.model, self.device, self.autocast = model, device, autocast

    def logits(self, groups: Groups) -> np.ndarray:
        return self.device_logits(groups).float().cpu().numpy()

    def device_logits(self, groups: Groups) -> Tensor:
        """[G, N, labels] on the model's device: the token arrays move there once a batch."""
        tensors = [torch.from_numpy(a).to(self.device, non_blocking=True) for a in _arrays(groups)]
        with torch.inference_mode(), self.autocast():
            logits: Tensor = self.model(*tensors)
            return logits


class OnnxBackend:
    def __init__(self, session: InferenceSession) -> None:
        self.session = session

    def logits(self, groups: Groups) -> np.ndarray:
        logits: np.ndarray = self.session.run(["logits"], groups.feeds())[0].astype(np.float32)
        return logits


class TextClassifier:
    """A trained model that classifies text: ``predict`` for a list, ``classify`` with costs.
    ``precision``: what its forward passes compute in (fp32, bf16 or fp16 in PyTorch; fp32 or
    int8 for an ONNX file)."""

    def __init__(
        self,
        info: ModelInfo,
        tokenizer: PreTrainedTokenizerBase,
        backend: Backend,
        source: str,
        precision: str = "fp32",
    ) -> None:
        self.info, self.tokenizer, self.backend, self.source = info, tokenizer, backend, source
        self.precision = precision

    def predict(
        self, texts: Text | Sequence[Text], batch: int = DEFAULT_BATCH
    ) -> list[PredictedLabel]:
        """Label and probabilities of every input, in input order: always a list, one per
        input (``predict("a fine film")[0]``; ``[]`` for no input). ``texts``: a list of
        inputs (a sentence; a pair task's ``(first, second)``), or one input alone. An empty
        or blank text (one side of a pair too) is refused, naming its index
        (:func:`model_inputs`); ``batch``: groups of N a forward pass, a whole number >= 1."""
        return list(self.classify(texts, batch).predictions)

    def classify(
        self,
        texts: Text | Sequence[Text],
        batch: int = DEFAULT_BATCH,
        progress: Callable[[Progress], None] | None = None,
    ) -> Classified:
        """``batch`` groups of N per forward pass; ``texts`` as :meth:`predict` takes them."""
        started = time.perf_counter()
        check_batch(batch)
        texts = model_inputs(texts, len(self.info.text_columns) == 2)
        if not texts:  # nothing to run: no forward pass
            return Classified(predictions=(), seconds=0.0, model_seconds=0.0, truncated=0)
        groups, truncated = self.tokenize(texts)
        parts, model_seconds = [], 0.0
        total = -(-len(groups) // batch)
        for done, start in enumerate(range(0, len(groups), batch), start=1):
            forward = time.perf_counter()
            parts.append(self.backend.logits(groups[start : start + batch]))
            model_seconds += time.perf_counter() - forward
            if progress is not None:
                progress(Progress(phase="classify", step=done, total=total))
        logits = np.concatenate(parts).reshape(-1, len(self.info.labels))[: len(texts)]
        return Classified(
            predictions=tuple(self._predictions(logits)),
            seconds=time.perf_counter() - started,
            model_seconds=model_seconds,
            truncated=truncated,
        )

    def tokenize(self, texts: Sequence[Text]) -> tuple[Groups, int]:
        """The inputs in groups of N, and how many were truncated to the max length."""
        if not texts:
            raise ValueError("no texts to classify")
        pair = len(self.info.text_columns) == 2
        firsts, seconds = _columns(texts, pair)
        length = self.info.max_length
        encoded = self.tokenizer(
            firsts,
            seconds,
            padding="max_length",
            truncation=True,
            max_length=length,
            return_tensors="np",
            return_token_type_ids=True,
        )
        full = self.tokenizer(firsts, seconds, return_length=True, verbose=False)["length"]
        truncated = sum(1 for tokens in full if tokens > length)
        width = self.info.n
        missing = -len(texts) % width  # all-padding rows, as the trial's evaluation adds

        def grouped(name: str) -> np.ndarray:
            rows = np.asarray(encoded[name], dtype=np.int64)
            rows = np.concatenate([rows, np.zeros((missing, length), dtype=np.int64)])
            return rows.reshape(-1, width, length)

        return Groups(*(grouped(name) for name in INPUT_NAMES)), truncated

    def _predictions(self, logits: np.ndarray) -> list[PredictedLabel]:
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        labels = self.info.labels
        return [
            PredictedLabel(
                label=labels[int(row.argmax())],
                probabilities={label: float(p) for label, p in zip(labels, row, strict=True)},
            )
            for row in probabilities
        ]


def load_text_classifier(path: str | Path, device: str = "auto") -> TextClassifier:
    """A model folder, or an ``.onnx`` / TorchScript ``.pt`` file that ``export`` wrote."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _from_folder(path, device)
    if not path.is_file():
        raise NotAModelError(f"{path}: no such model folder or file")
    if path.suffix == ".onnx":
        return _from_onnx(path, device)
    if path.suffix in (".pt", ".ts"):
        return _from_torchscript(path, Engine.resolve(device, "auto"))
    raise NotAModelError(
        f"{path}: not a model; give a model folder, an .onnx file or a TorchScript .pt file"
    )


def _from_folder(folder: Path, device: str) -> TextClassifier:
    info = read_info(folder)
    engine = _engine(device, info)
    try:
        model = load_classifier(folder, engine.device)
    except CheckpointError as err:
        raise NotAModelError(str(err)) from None
    tokenizer = _tokenizer(folder, str(folder))
    grouped = GroupedClassifier(model).eval()
    backend = TorchBackend(grouped, engine.device, engine.autocast)
    return TextClassifier(info, tokenizer, backend, str(folder), engine.precision.value)


def _engine(device: str, info: ModelInfo) -> Engine:
    """On a GPU, the precision the trial evaluated in (so its dev accuracy is reproduced) where
    this GPU runs it, else the device's best; on a CPU, fp32."""
    engine = Engine.resolve(device, "auto")
    recorded = info.numerics.get("precision")
    if engine.on_gpu and recorded in ("fp32", "bf16", "fp16"):
        try:
            return Engine.resolve(device, recorded)
        except FieldError:  # e.g. a bf16 model on a GPU without bf16
            pass
    return engine


def _from_onnx(path: Path, device: str) -> TextClassifier:
    ort = import_export_library("onnxruntime")
    cuda_devices = cuda_device_count()
    providers = onnx_providers(device, cuda_devices, ort.get_available_providers())
    if device == "auto" and cuda_devices and providers == [CPU_PROVIDER]:
        log.warning(
            "%s: runs on the CPU: this onnxruntime has no %s (pip install onnxruntime-gpu)",
            path,
            CUDA_PROVIDER,
        )
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on the user's terminal
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # ORT raises its own types for a file that is not ONNX
        raise NotAModelError(f"{path}: not a readable ONNX model ({error_line(err)})") from None
    if providers[0] != CPU_PROVIDER and CUDA_PROVIDER not in session.get_providers():
        # ORT falls back to the CPU where its CUDA libraries do not load (its own warning is
        # silenced with the others above)
        log.warning("%s: runs on the CPU: ONNX Runtime could not start CUDA here", path)
    metadata = session.get_modelmeta().custom_metadata_map
    info, tokenizer = _unbundle(metadata.get(BUNDLE_KEY), path, "ONNX")
    precision = metadata.get(PRECISION_KEY, "fp32")
    return TextClassifier(info, tokenizer, OnnxBackend(session), str(path), precision)


def onnx_providers(device: str, cuda_devices: int, available: Sequence[str]) -> list[OnnxProvider]:
    """ONNX Runtime's providers, best first, for ``device`` (auto, cpu, cuda or cuda:i) on a
    machine with ``cuda_devices`` CUDA devices and an onnxruntime that offers ``available``:
    CUDA on the device the spec names (auto: the first, where there is one), then the CPU for
    any operator CUDA lacks. Refused, as the PyTorch forms refuse, where a named CUDA device is
    not there or this onnxruntime cannot run on it; auto without CUDA's provider is the CPU."""
    chosen = device_for(device, cuda_devices)  # auto: the first CUDA device, where there is one
    if chosen.type == "cpu":
        return [CPU_PROVIDER]
    if CUDA_PROVIDER not in available:
        if device == "auto":
            return [CPU_PROVIDER]
        raise FieldError(
            "--device",
            f"{device}: this onnxruntime has no {CUDA_PROVIDER} (it has: "
            f"{', '.join(available)}); install onnxruntime-gpu, or use cpu",
        )
    return [(CUDA_PROVIDER, {"device_id": str(chosen.index)}), CPU_PROVIDER]


def _from_torchscript(path: Path, engine: Engine) -> TextClassifier:
    extra = {BUNDLE_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's own notice
            # torch leaves torch.jit.load unannotated
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location=engine.device, _extra_files=extra
            )
    except Exception as err:  # a file that is not TorchScript
        raise NotAModelError(
            f"{path}: not a readable TorchScript model ({error_line(err)})"
        ) from None
    info, tokenizer = _unbundle(extra[BUNDLE_KEY] or None, path, "TorchScript")
    backend = TorchBackend(module.eval(), engine.device, engine.autocast)
    return TextClassifier(info, tokenizer, backend, str(path), engine.precision.value)


def bundle(folder: Path) -> str:
    """What an exported file carries: the model's info and its tokenizer files, as JSON."""
    tokenizer_files = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(folder.iterdir())
        if p.name.startswith(("tokenizer", "special_tokens", "vocab")) and p.is_file()
    }
    return json.dumps({"info": read_info(folder).to_json(), "tokenizer": tokenizer_files})


def _unbundle(text: str | None, path: Path, kind: str) -> tuple[ModelInfo, PreTrainedTokenizerBase]:
    if not text:
        raise NotAModelError(
            f"{path}: an {kind} model that autoprumux did not export (no {BUNDLE_KEY!r} "
            "metadata); export one with `autoprumux export --model DIR`"
        )
    try:
        data = json.loads(text)
        info = ModelInfo.from_json(data["info"], str(path))
        files = dict(data["tokenizer"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise NotAModelError(f"{path}: its {BUNDLE_KEY!r} metadata is damaged ({err})") from None
    with tempfile.TemporaryDirectory(prefix="autoprumux-tokenizer-") as folder:
        for name, content in files.items():
            (Path(folder) / Path(name).name).write_text(content, encoding="utf-8")
        return info, _tokenizer(Path(folder), str(path))


def _tokenizer(folder: Path, where: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    from trainers.model.checkpoints import holds_vocabulary, special_tokens_only

    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(folder))
        # transformers builds a tokenizer of the special tokens alone from a folder without
        # a vocabulary, which would read every word as unknown
        if not holds_vocabulary(folder) or special_tokens_only(tokenizer):
            raise ValueError("no vocabulary file")
    except Exception as err:
        raise NotAModelError(
            f"{where}: no usable tokenizer ({error_line(err)}); a model folder holds its "
            f"tokenizer files beside {INFO_FILE}"
        ) from None
    return tokenizer


def import_export_library(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise AutoPruMuxError(
            f"{name} is not installed (autoprumux depends on it; was it uninstalled?): "
            f"pip install {name}"
        ) from None


def check_batch(batch: object) -> None:
    """``batch`` as ``classify --batch`` takes it, refused before any work: 0 divided by zero,
    a negative one ran no pass and concatenated nothing."""
    if isinstance(batch, bool) or not isinstance(batch, Integral) or batch < 1:
        raise ValueError(
            f"batch is {batch!r}: give a whole number >= 1 (the groups of N inputs in one "
            "forward pass)"
        )


def model_inputs(texts: Text | Sequence[Text], pair: bool) -> list[Text]:
    """``predict``'s argument as a list of inputs: one input alone (a string; for a pair
    model, a tuple of two strings) as a list of one -- a string is a sequence of characters,
    and was classified one character at a time. An input with no text (an empty or blank
    string, a pair of two) is a ValueError naming its index: ``classify`` skips a blank line,
    but here every input has its answer at its own index, which a skipped one would shift.
    A pair with one text blank, as the CLI refuses its line, is a ValueError naming its index
    and side; a side that is not a string a TypeError."""
    if texts is None or not isinstance(texts, Iterable):
        raise TypeError(
            f"texts is {texts!r}: predict takes a list of inputs (strings; a pair model's "
            "(first, second) tuples) or one input alone"
        )
    if isinstance(texts, str):
        inputs: list[Text] = [texts]
    elif pair and isinstance(texts, tuple) and len(texts) == 2 and _strings(texts):
        inputs = [(str(texts[0]), str(texts[1]))]
    else:
        inputs = list(texts)
    for index, text in enumerate(inputs):
        parts = [text] if isinstance(text, str) else text
        if _strings(parts) and not any(part.strip() for part in parts):
            raise ValueError(
                f"texts[{index}] has no text ({text!r}): every input needs some (the CLI "
                "skips blank lines; leave it out here)"
            )
        if pair and isinstance(text, list | tuple) and len(text) == 2:
            _check_pair(index, text)
    return inputs


def _check_pair(index: int, pair: Sequence[object]) -> None:
    """Both texts of a pair: strings (transformers' own error names no input), not blank."""
    for side, part in zip(("first", "second"), pair, strict=True):
        if not isinstance(part, str):
            raise TypeError(
                f"texts[{index}]'s {side} text is {part!r}, not a string: a pair is "
                "(first, second), two strings"
            )
        if not part.strip():
            raise ValueError(
                f"texts[{index}]'s {side} text is empty ({tuple(pair)!r}); a pair needs both texts"
            )


def _strings(values: object) -> bool:
    return isinstance(values, list | tuple) and all(isinstance(v, str) for v in values)


def _columns(texts: Sequence[Text], pair: bool) -> tuple[list[str], list[str] | None]:
    if not pair:
        singles = [t for t in texts if isinstance(t, str)]
        if len(singles) != len(texts):
            raise ValueError("this model classifies single sentences: give strings")
        return singles, None
    if any(isinstance(t, str) or len(t) != 2 for t in texts):
        raise ValueError("this model classifies sentence pairs: give (first, second) tuples")
    return [t[0] for t in texts], [t[1] for t in texts]


def _arrays(groups: Groups) -> list[np.ndarray]:
    return [groups.input_ids, groups.attention_mask, groups.token_type_ids]


def error_line(err: BaseException) -> str:
    """An exception in one line: its type and its message's first line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
