"""Where a trial's tensors live and in which precision it trains: the engine's device policy.

- ``--device auto|cpu|cuda|cuda:i`` (:func:`resolve_device`): auto is the first CUDA device when
  there is one. Inside a Ray worker only the GPUs Ray assigned are visible, so ``cuda`` (and
  ``auto``) is the trial's own GPU.
- ``[training] precision = "auto" | "fp32" | "bf16" | "fp16"`` (:func:`resolve_precision`):
  auto is bf16 autocast on a GPU that has it, fp16 autocast with a gradient scaler on one that
  does not, and fp32 on a CPU. Parameters and optimizer state stay fp32 in every mode.
- On CUDA, float32 matmuls use TF32 (:func:`configure`).
- The precisions a trained model is served in (``[deploy] precisions``, not the training's):
  what the ``[throughput]`` device can serve (:func:`serving_device`), and the study's choice
  checked against it (:func:`study_precisions`).
- ``[training] compile`` (:func:`compile_for`): a compiled engine compiles the functions a
  training step calls (:class:`trainers.training.loop.CompiledStep`) and the evaluation's
  forward, never a model in place (its state dict keeps its keys, and nothing is compiled
  twice); :meth:`Engine.compile_options` says how (one graph per fixed shape; CUDA graphs on
  a GPU).
- ``[training] deterministic = "off" | "strict"`` (:func:`deterministic_switches`): ``off``
  lets CUDA pick its fastest kernels, some of which add in a different order on every run
  (the flash / memory-efficient / cuDNN attention backward, autotuned cuDNN), so two GPU runs
  of a trial differ in the last bits and then drift; ``strict`` turns on
  ``torch.use_deterministic_algorithms`` (an op with no deterministic CUDA form raises, and the
  trial fails naming it: :func:`nondeterministic_op`), cuDNN's deterministic kernels, cuBLAS's
  fixed workspace, and the math attention backend (deterministic; it holds the full
  ``[B, heads, L, L]`` attention matrix, which the fused backends never do). A CPU's kernels
  are deterministic either way.

Everything a trial's numerics depend on is recorded with its result (:func:`numerics`).
"""

from __future__ import annotations

import contextlib
import enum
import importlib.util
import os
import platform
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from autoprumux.core import precision as served
from autoprumux.core.errors import FieldError
from autoprumux.core.study import DETERMINISTIC, PRECISIONS, Compile, Study, ThroughputSection

DEVICE_CHOICES = "auto, cpu, cuda or cuda:INDEX"
# kernels a training step runs on CUDA under deterministic = "off" that add in a different
# order on every run (a strict engine runs deterministic forms, or fails naming the op)
NONDETERMINISTIC_ON_CUDA = ("scaled_dot_product_attention backward",)
# cuBLAS's deterministic workspaces (its documentation): 8 buffers of 4 MiB or of 16 KiB
CUBLAS_DETERMINISTIC_WORKSPACES = (":4096:8", ":16:8")
# torch's RuntimeError for an op with no deterministic form under use_deterministic_algorithms
# (found anywhere: torch.compile wraps it in its own error)
_NO_DETERMINISTIC_FORM = re.compile(r"(\S+) does not have a deterministic implementation")
# and for cuBLAS when its workspace setting came too late (a cuBLAS call before configure)
_CUBLAS_NOT_DETERMINISTIC = "this operation is not deterministic because it uses CuBLAS"
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
# torch.compile's backend for compiled engines that name none: "inductor" generates kernels
# (and replays them as CUDA graphs on a GPU); dynamo's "aot_eager" captures the same graphs
# (forward and backward through AOTAutograd) and runs them with eager kernels, in seconds
# where inductor's C++ takes minutes on a small CPU (tests set it here or per Engine)
COMPILE_BACKEND = "inductor"
# graphs dynamo may keep per compiled function (its recompile limit, 8 by default, beyond
# which it runs the function eagerly): a training step's up to 8 bucket shapes, the same for
# the evaluation's forward (training and inference modes), for every phase of the trials
# that share the process
COMPILED_GRAPHS_LIMIT = 64


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


def serving_device(settings: ThroughputSection) -> served.ServingDevice:
    """What the ``[throughput]`` device (auto: CUDA when there is one) can serve models in:
    bf16 where the GPU has it (a CPU always has), int8 where onnxruntime is installed."""
    where = resolve_device(settings.device, "throughput.device")
    bf16 = True
    if where.type == "cuda":
        with torch.cuda.device(where):
            bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return served.ServingDevice(
        kind=where.type,
        bf16=bf16,
        onnxruntime=importlib.util.find_spec("onnxruntime") is not None,
    )


def study_precisions(study: Study) -> tuple[served.Precision, ...]:
    """The study's serving precisions on its ``[throughput]`` device, fp32 first (the device's
    defaults where ``[deploy] precisions`` is empty); one line naming the first precision the
    device cannot serve, and what it can, otherwise."""
    return served.check_precisions(study.deploy.precisions, serving_device(study.throughput))


@dataclass(frozen=True, kw_only=True)
class Engine:
    """How a trial's phases run: device, precision, and whether models are compiled."""

    device: torch.device = torch.device("cpu")
    precision: Precision = Precision.FP32
    compile: bool = False  # compiled training steps ([training] compile, resolved: compile_for)
    # torch.compile's backend where ``compile``; None: the module's COMPILE_BACKEND
    compile_backend: str | None = None
    deterministic: str = "off"  # [training] deterministic: "off" or "strict" (on CUDA)
    # steps between reads of the loss: each read waits for the device (free on a CPU)
    log_every: int = 1

    @classmethod
    def resolve(
        cls,
        device: str,
        precision: str = "auto",
        compile: Compile | bool = Compile.FALSE,
        deterministic: str = "off",
    ) -> Engine:
        if deterministic not in DETERMINISTIC:
            raise FieldError(
                "training.deterministic",
                f"{deterministic!r} is not one of: {', '.join(DETERMINISTIC)}",
            )
        where = resolve_device(device)
        engine = cls(
            device=where,
            precision=resolve_precision(precision, where),
            compile=compile_for(Compile(compile), where),
            deterministic=deterministic,
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
        """The model on the device. A compiled engine compiles the steps that call it
        (:class:`trainers.training.loop.CompiledStep`), not the model: compiling both would
        compile its forward twice."""
        return model.to(self.device)

    def compile_options(self) -> dict[str, Any]:
        """``torch.compile``'s arguments for a compiled engine: one graph per input shape
        (``dynamic=False``: batches come in a few bucket lengths), replayed as CUDA graphs on a
        GPU (``reduce-overhead``: a step launches one graph, not a thousand kernels)."""
        backend = self.compile_backend or COMPILE_BACKEND
        options: dict[str, Any] = {"backend": backend, "dynamic": False}
        if backend == "inductor" and self.on_gpu:
            options["mode"] = "reduce-overhead"
        return options

    def synchronize(self) -> None:
        if self.on_gpu:
            torch.cuda.synchronize(self.device)


def compile_for(setting: Compile, device: torch.device) -> bool:
    """Whether ``[training] compile`` compiles on ``device``: ``auto`` on a GPU (where the
    steps are launch-bound) when torch can compile there, never on a CPU; ``true`` wherever
    torch can compile, refused in one line where it cannot."""
    if setting is Compile.FALSE:
        return False
    missing = compiler_missing(device)
    if setting is Compile.AUTO:
        return device.type == "cuda" and missing is None
    if missing is not None:
        raise FieldError("training.compile", f"true: {missing}; use auto or false")
    return True


def compiler_missing(device: torch.device) -> str | None:
    """Why torch cannot compile for ``device`` here (its code generator's needs), else None:
    Triton for a GPU, a C++ compiler for a CPU."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile on CUDA needs Triton, not installed"
    import shutil

    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        return f"torch.compile on a CPU needs a C++ compiler ({compiler} not found)"
    return None


def allow_compiled_graphs(graphs: int = COMPILED_GRAPHS_LIMIT) -> None:
    """Let dynamo keep at least ``graphs`` graphs per compiled function before it gives up and
    runs the function eagerly (a process-wide setting; only ever raised)."""
    import torch._dynamo

    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, graphs)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 4 * graphs)


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far (read before and after a phase: the
    graphs it compiled, and those of any trial beside it in the process)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def cap_memory(engine: Engine, share: float) -> None:
    """Cap this process's allocations on the engine's GPU to ``share`` of its memory (trials
    sharing a GPU run in processes of their own, each capped to its share): an allocation
    beyond it raises ``torch.OutOfMemoryError`` in this process alone. Nothing on a CPU."""
    if engine.on_gpu and share < 1.0:
        torch.cuda.set_per_process_memory_fraction(share, engine.device)


def adamw(groups: list[dict[str, Any]]) -> torch.optim.AdamW:
    """AdamW over parameter groups, fused into one kernel per step when the parameters are on
    a GPU; PyTorch's default implementation on a CPU (unchanged from before devices)."""
    on_gpu = any(p.is_cuda for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, fused=True if on_gpu else None)


def compilable_adamw(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """``optimizer`` (a fresh :func:`adamw`) made ready for a compiled update: every group's
    learning rate a 0-dim tensor beside its parameters (the schedule fills it in place, so a
    new rate is not a new graph), its ``initial_lr`` a number (the schedule then computes
    plain numbers); on a GPU the foreach kernels with ``capturable`` steps (device tensors:
    CUDA graphs replay them; the fused kernel is for eager steps). Anything but AdamW is
    returned as it is."""
    if not isinstance(optimizer, torch.optim.AdamW):
        return optimizer
    groups = []
    for group in optimizer.param_groups:
        params = group["params"]
        on_gpu = any(p.is_cuda for p in params)
        lr = float(group["lr"])
        rate = torch.tensor(lr, dtype=torch.float32, device=params[0].device if params else None)
        kept = {k: v for k, v in group.items() if k not in ("lr", "fused", "foreach", "capturable")}
        groups.append(
            {**kept, "lr": rate, "initial_lr": lr, "foreach": on_gpu, "capturable": on_gpu}
        )
    return torch.optim.AdamW(groups, fused=False)


def deterministic_switches(setting: str) -> dict[str, bool]:
    """torch's process-wide CUDA switches for ``[training] deterministic``: ``strict`` runs
    only deterministic kernels (and the math attention, the one whose backward is); ``off``
    leaves the fused attention backends on and lets cuDNN time its algorithms."""
    strict = {"strict": True, "off": False}[setting]
    return {
        "deterministic_algorithms": strict,  # raises on an op without a deterministic form
        "cudnn_deterministic": strict,
        "cudnn_benchmark": not strict,  # timed algorithm choice: can differ run to run
        "flash_sdp": not strict,  # the fused attention backwards add with atomics
        "mem_efficient_sdp": not strict,
        "cudnn_sdp": not strict,
        "math_sdp": True,  # the fallback every input can take
    }


def apply_switches(switches: dict[str, bool]) -> None:
    """Set torch's process-wide switches (they exist without CUDA: a CPU test can read them).
    cuBLAS reads its workspace setting at its first call, so a strict engine sets it first."""
    strict = switches["deterministic_algorithms"]
    if strict and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in CUBLAS_DETERMINISTIC_WORKSPACES:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC_WORKSPACES[0]
    torch.use_deterministic_algorithms(strict)  # warn_only off: strict means it
    torch.backends.cudnn.deterministic = switches["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = switches["cudnn_benchmark"]
    torch.backends.cuda.enable_flash_sdp(switches["flash_sdp"])
    torch.backends.cuda.enable_mem_efficient_sdp(switches["mem_efficient_sdp"])
    torch.backends.cuda.enable_cudnn_sdp(switches["cudnn_sdp"])
    torch.backends.cuda.enable_math_sdp(switches["math_sdp"])


def current_switches() -> dict[str, bool]:
    """The switches as torch has them now (to check a configured engine, or restore them)."""
    cuda = torch.backends.cuda  # its *_sdp_enabled readers are unannotated in torch
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "flash_sdp": cuda.flash_sdp_enabled(),  # type: ignore[no-untyped-call]
        "mem_efficient_sdp": cuda.mem_efficient_sdp_enabled(),  # type: ignore[no-untyped-call]
        "cudnn_sdp": cuda.cudnn_sdp_enabled(),  # type: ignore[no-untyped-call]
        "math_sdp": cuda.math_sdp_enabled(),  # type: ignore[no-untyped-call]
    }


def configure(engine: Engine) -> None:
    """Process-wide switches for the engine's device: on CUDA, TF32 matmuls and the
    ``deterministic`` setting's kernels. A CPU engine leaves them alone (its kernels are
    deterministic either way, and torch's default mode stays the caller's)."""
    if not engine.on_gpu:
        return
    apply_switches(deterministic_switches(engine.deterministic))
    torch.backends.cuda.matmul.allow_tf32 = True  # deterministic too: fewer mantissa bits
    torch.backends.cudnn.allow_tf32 = True
    torch.cuda.set_device(engine.device)


def nondeterministic_op(err: BaseException) -> str | None:
    """The op a strict engine refused (named in torch's RuntimeError), else None."""
    if not isinstance(err, RuntimeError):
        return None
    if _CUBLAS_NOT_DETERMINISTIC in str(err):
        return "cuBLAS without CUBLAS_WORKSPACE_CONFIG before its first call"
    match = _NO_DETERMINISTIC_FORM.search(str(err))
    return match.group(1) if match else None


def refused_reason(err: BaseException) -> str | None:
    """A failed trial's one-line reason when a strict engine refused an op, else None (the
    error is some other bug: re-raise it)."""
    op = nondeterministic_op(err)
    if op is None:
        return None
    return (
        f'[training] deterministic = "strict": {op} has no deterministic form on CUDA; '
        'use "off" (two runs then differ in the last bits)'
    )


def cpu_name(cpuinfo: str | None = None) -> str:
    """This machine's CPU as Linux names it (``model name`` in /proc/cpuinfo, "AMD EPYC 7B13"),
    with "VNNI" where its flags have a VNNI unit (int8's speed depends on it:
    :mod:`trainers.deploy.quantize`); elsewhere platform's word ("arm", "x86_64").
    ``cpuinfo``: the file's text (a test's)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
                cpuinfo = file.read()
        except OSError:
            cpuinfo = ""
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in cpuinfo.splitlines())
        if value
    )
    name = fields.get("model name") or platform.processor() or platform.machine()
    vnni = {"avx512_vnni", "avx_vnni"} & set(fields.get("flags", "").split())
    return f"{name} (VNNI)" if vnni else name


def numerics(engine: Engine) -> dict[str, Any]:
    """What decides a trial's numbers besides its settings and seed: recorded with the trial."""
    record: dict[str, Any] = {
        "device": str(engine.device),
        "device_name": (torch.cuda.get_device_name(engine.device) if engine.on_gpu else cpu_name()),
        "precision": engine.precision.value,
        "compile": engine.compile,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "deterministic": engine.deterministic,
    }
    if engine.on_gpu:
        record["cuda"] = torch.version.cuda
        record["tf32"] = torch.backends.cuda.matmul.allow_tf32
        if engine.deterministic == "off":
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
