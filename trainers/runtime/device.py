"""Where a trial's tensors live and in which precision it trains: the engine's device policy.

- ``--device auto|cpu|cuda|cuda:i`` (:func:`resolve_device`): auto is the first CUDA device when
  there is one. Inside a Ray worker only the GPUs Ray assigned are visible, so ``cuda`` (and
  ``auto``) is the trial's own GPU.
- ``[training] precision = "auto" | "fp32" | "bf16" | "fp16"`` (:func:`resolve_precision`):
  auto is bf16 autocast on a GPU that has it, fp16 autocast with a gradient scaler on one that
  does not, and fp32 on a CPU. Parameters and optimizer state stay fp32 in every mode.
- On CUDA, float32 matmuls use TF32 (:func:`configure`), and cuBLAS/cuDNN run their
  deterministic kernels. One kernel has no deterministic form: the backward of
  ``scaled_dot_product_attention`` (cuDNN or memory-efficient attention), so two GPU runs of a
  trial can differ in the last bits; the trial records it (``nondeterministic``) instead of
  warning at every step. The math backend would be deterministic, at several times the memory.

Everything a trial's numerics depend on is recorded with its result (:func:`numerics`).
"""

from __future__ import annotations

import contextlib
import enum
import os
import platform
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from autoprumux.core.errors import FieldError
from autoprumux.core.study import PRECISIONS

DEVICE_CHOICES = "auto, cpu, cuda or cuda:INDEX"
# kernels with no deterministic CUDA form that a training step runs (see the module docstring)
NONDETERMINISTIC_ON_CUDA = ("scaled_dot_product_attention backward",)
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_Module = TypeVar("_Module", bound=torch.nn.Module)


class Precision(enum.Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # autocast to bfloat16; no loss scaling needed (fp32's exponent range)
    FP16 = "fp16"  # autocast to float16 with a dynamic gradient scaler

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}.get(self)


GPU_LOG_EVERY = 25  # steps between loss reads on a GPU


def check_device_spec(spec: str, option: str = "--device") -> str:
    """The spelling alone (no CUDA needed): auto, cpu, cuda or cuda:i."""
    if not _DEVICE.match(spec):
        raise FieldError(option, f"{spec!r} is not one of: {DEVICE_CHOICES}")
    return spec


def resolve_device(spec: str = "auto", option: str = "--device") -> torch.device:
    """The device a spec names on this machine; one line naming what is there when it is not."""
    cuda = torch.cuda.is_available()
    current = torch.cuda.current_device() if cuda else 0
    return device_for(spec, cuda_device_count(), current, option)


def device_for(
    spec: str, cuda_devices: int, current: int = 0, option: str = "--device"
) -> torch.device:
    """The device a spec names on a machine with ``cuda_devices`` CUDA devices, ``current``
    the one ``auto`` takes; one line naming what is there when it is not."""
    check_device_spec(spec, option)
    if spec == "auto":
        return torch.device("cuda", current) if cuda_devices else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not cuda_devices:
        raise FieldError(option, f"{spec}: no CUDA device is available here; use cpu (or auto)")
    device = torch.device(spec)
    if device.index is not None and device.index >= cuda_devices:
        raise FieldError(
            option, f"{spec}: this machine has {cuda_devices} CUDA device(s), cuda:0.."
        )
    return torch.device("cuda", device.index if device.index is not None else 0)


def cuda_device_count() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """``auto`` as the device does best; an explicit choice the device cannot run is refused."""
    if setting not in PRECISIONS:
        raise FieldError(
            "training.precision", f"{setting!r} is not one of: {', '.join(PRECISIONS)}"
        )
    on_gpu = device.type == "cuda"
    bf16 = on_gpu and torch.cuda.is_bf16_supported(including_emulation=False)
    if setting == "auto":
        if not on_gpu:
            return Precision.FP32
        return Precision.BF16 if bf16 else Precision.FP16
    precision = Precision(setting)
    if precision is Precision.BF16 and on_gpu and not bf16:
        name = torch.cuda.get_device_name(device)
        raise FieldError(
            "training.precision", f"bf16: {name} has no bfloat16 support; use fp16 or fp32"
        )
    if precision is Precision.FP16 and not on_gpu:
        raise FieldError(
            "training.precision",
            "fp16 is for GPUs (a CPU runs it slowly); use fp32 or bf16 on a CPU",
        )
    return precision


@dataclass(frozen=True, kw_only=True)
class Engine:
    """How a trial's phases run: device, precision, and whether models are compiled."""

    device: torch.device = torch.device("cpu")
    precision: Precision = Precision.FP32
    compile: bool = False  # torch.compile every trained model (opt-in: [training] compile)
    # steps between reads of the loss: each read waits for the device (free on a CPU)
    log_every: int = 1

    @classmethod
    def resolve(cls, device: str, precision: str = "auto", compile: bool = False) -> Engine:
        where = resolve_device(device)
        engine = cls(
            device=where,
            precision=resolve_precision(precision, where),
            compile=compile,
            log_every=GPU_LOG_EVERY if where.type == "cuda" else 1,
        )
        configure(engine)
        return engine

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.precision.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A dynamic loss scaler for fp16 (bf16 and fp32 need none)."""
        if self.precision is not Precision.FP16:
            return None
        return torch.amp.GradScaler(self.device.type)

    def prepared(self, model: _Module) -> _Module:
        """The model on the device, compiled in place (its state dict keeps its keys) when the
        study asks for it."""
        model = model.to(self.device)
        if self.compile:
            model.compile(dynamic=False)
        return model

    def synchronize(self) -> None:
        if self.on_gpu:
            torch.cuda.synchronize(self.device)


def adamw(groups: list[dict[str, Any]]) -> torch.optim.AdamW:
    """AdamW over parameter groups, fused into one kernel per step when the parameters are on
    a GPU; PyTorch's default implementation on a CPU (unchanged from before devices)."""
    on_gpu = any(p.is_cuda for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, fused=True if on_gpu else None)


def configure(engine: Engine) -> None:
    """Process-wide switches for the engine's device: TF32 matmuls and deterministic kernels
    on CUDA (cuBLAS needs its workspace setting before its first call)."""
    if not engine.on_gpu:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    warnings.filterwarnings("ignore", r".*Attention defaults to a non-deterministic algorithm")
    torch.cuda.set_device(engine.device)


def numerics(engine: Engine) -> dict[str, Any]:
    """What decides a trial's numbers besides its settings and seed: recorded with the trial."""
    record: dict[str, Any] = {
        "device": str(engine.device),
        "device_name": (
            torch.cuda.get_device_name(engine.device)
            if engine.on_gpu
            else (platform.processor() or platform.machine())
        ),
        "precision": engine.precision.value,
        "compile": engine.compile,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
    if engine.on_gpu:
        record["cuda"] = torch.version.cuda
        record["tf32"] = torch.backends.cuda.matmul.allow_tf32
        record["nondeterministic"] = list(NONDETERMINISTIC_ON_CUDA)
    return record


_threads_lock = threading.Lock()
_threads_users = 0  # trials inside thread_count now (the local executor runs several at once)
_threads_before = 0


@contextlib.contextmanager
def thread_count(threads: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``threads`` (0: unchanged) for a block. The setting
    is process-wide: trials running side by side in one process share it (the search gives
    them one count), and the caller's own setting comes back when the last of them ends."""
    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
        _threads_users += 1
        if threads:
            torch.set_num_threads(threads)
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)
