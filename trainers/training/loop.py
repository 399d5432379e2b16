"""One training loop for every phase: steps, a linear schedule, clipping, progress, NaN checks,
and resumable checkpoints, on the engine's device and in its precision.

The loop never waits for the device inside a step: losses stay on the device and are read
every ``engine.log_every`` steps (every step on a CPU, where a read costs nothing), which is
when progress is reported and a NaN or infinite loss is caught. Under fp16 a gradient scaler
skips the steps whose gradients overflowed, as ``torch.amp`` prescribes.

A phase checkpoint is a folder: ``weights.safetensors`` (the tensors of every module being
trained, keyed ``<module>.<name>``), ``optimizer.pt`` (optimizer, schedule and scaler state,
and the random generators' states under ``rng``) and ``state.json`` (the step reached, written
last). One is due every ``checkpoint_every`` steps or every ``checkpoint_minutes`` minutes,
whichever comes first, decided at a step's end from the step count and the host's clock alone.
Taking one copies its tensors off the device (into pinned host buffers on CUDA, without
waiting for the device), and one background thread writes them into ``<folder>.partial`` and
renames that over the previous checkpoint: the step loop goes on meanwhile, never two writes
run at once, and the last checkpoint is the one kept. A phase that finds a checkpoint
continues from its step with the same data order and the same random draws (dropout, L0
gates): a phase killed at any instant and resumed follows the uninterrupted loss curve.

A compiled engine (``Engine.compile``) runs each step as two compiled functions
(:class:`CompiledStep`): the phase's loss (everything its forward runs: the model, a frozen
teacher, sampled L0 masks, the distillation terms, the Lagrangian), whose backward
AOTAutograd compiles, and the update (the multipliers' negation, clipping, the optimizer's
step, the L0 clamp). Batches come in a few bucket lengths, so each compiles once per shape
(``dynamic=False``); nothing in a step is a Python number that changes from step to step
(the step count and the learning rates are device tensors), so no step recompiles. On a GPU
both replay as CUDA graphs. :class:`PhaseFigures` counts the graphs a phase compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from autoprumux.core.progress import Progress, ProgressCallback
from trainers.data.splits import Encoded
from trainers.model.checkpoints import follow_umask
from trainers.runtime.device import (
    Engine,
    allow_compiled_graphs,
    compilable_adamw,
    compiled_graphs,
)

log = logging.getLogger(__name__)

RECENT_STEPS = 50  # run_phase returns the mean loss of this many last steps


class Diverged(RuntimeError):
    """A loss became NaN or infinite: the trial fails with this reason."""


@dataclass(kw_only=True)
class Phase:
    """What a phase trains and how; ``loss(batch, steps_done)`` returns the scalar to minimize,
    ``steps_done`` the steps before this one as a 0-dim float64 tensor on the batch's device
    (a compiled step sees one input whose value changes, not a new constant every step)."""

    name: str
    modules: dict[str, nn.Module]  # everything whose state a checkpoint must hold
    optimizer: torch.optim.Optimizer
    steps: int
    loss: Callable[[Encoded, Tensor], Tensor]
    data: Callable[[int], Iterator[Encoded]]  # start step -> batches from there on
    decay: tuple[bool, ...] = ()  # per parameter group: linear decay to 0 (default: all)
    max_grad_norm: float = 1.0
    after_backward: Callable[[], None] | None = None  # e.g. negate the Lagrange multipliers' grads
    after_step: Callable[[], None] | None = None  # e.g. clamp the L0 log-alphas (CoFi)
    # FLOP of one training step on a batch (forward, backward, and a teacher's forward),
    # counted from its shape on the host (trainers.runtime.flops); None: not counted
    flop: Callable[[Encoded], float] | None = None
    # the phase's compiled step, made at its first step on a compiled engine
    compiled: CompiledStep | None = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class PhaseFigures:
    """What a phase's step loop did, for the trial's record: counted on the host from the
    batches' shapes (no device read), timed with the device synchronised at the loop's end."""

    name: str
    steps: int  # run in this call (a resumed phase counts from its checkpoint on)
    examples: int  # sequences in those steps' batches (rows x N each)
    tokens: int  # positions the encoder ran on: every batch's sequences x its padded length
    seconds: float  # the step loop's wall time (checks and checkpoints included)
    flop: float  # Phase.flop summed over the batches; 0.0 when the phase counts none
    peak_memory: int | None  # bytes: the device's peak allocation in the phase; None on a CPU
    # graphs dynamo compiled during the step loop (its steps', its checks' evaluations'; with
    # trials side by side in one process, theirs too); 0 on an eager engine
    compiles: int = 0


@dataclass
class _Tally:
    """Running counts of the step loop (host integers: adding them never waits)."""

    steps: int = 0
    examples: int = 0
    tokens: int = 0
    flop: float = 0.0

    def add(self, phase: Phase, batch: Encoded) -> None:
        self.steps += 1
        self.examples += batch.input_ids.shape[0]
        self.tokens += batch.input_ids.numel()
        if phase.flop is not None:
            self.flop += phase.flop(batch)


def run_phase(
    phase: Phase,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 200,
    progress: ProgressCallback | None = None,
    engine: Engine | None = None,
    check: Callable[[int], None] | None = None,
    check_steps: Collection[int] = (),
    checkpoint_minutes: float = 5.0,
    checkpoint_seconds: Callable[[float], None] | None = None,
    figures: Callable[[PhaseFigures], None] | None = None,
) -> float:
    """Train for ``phase.steps`` steps; returns the mean loss of the last 50 steps.
    ``check(step)`` runs after each of ``check_steps`` (evaluating the model, say); if it
    raises, the phase is checkpointed at that step first, so a later run continues from it.
    A checkpoint is due every ``checkpoint_every`` steps (0: by time only) or every
    ``checkpoint_minutes`` minutes of the phase (0: every step), whichever comes first.
    ``checkpoint_seconds`` receives, once, when the phase ends or fails, the seconds its step
    loop spent on checkpoints: taking their snapshots and waiting for the writer.
    ``figures`` receives the phase's :class:`PhaseFigures` when its steps are done."""
    engine = engine or Engine()
    if engine.compile:
        allow_compiled_graphs()
        phase = dataclasses.replace(phase, optimizer=compilable_adamw(phase.optimizer))
    decay = phase.decay or (True,) * len(phase.optimizer.param_groups)
    total = max(phase.steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        phase.optimizer,
        [(lambda s: max(0.0, 1.0 - s / total)) if d else (lambda s: 1.0) for d in decay],
    )
    scaler = engine.grad_scaler()
    start = _resume(phase, schedule, scaler, engine, checkpoint_dir)
    for module in phase.modules.values():
        module.train()
    state = TrainingState(phase, schedule, scaler, engine)
    writer = CheckpointWriter(checkpoint_dir) if checkpoint_dir is not None else None
    clock = CheckpointClock(checkpoint_every, checkpoint_minutes * 60.0, start)
    tally = _Tally()
    if engine.on_gpu:
        torch.cuda.reset_peak_memory_stats(engine.device)
    graphs = compiled_graphs() if engine.compile else 0
    began = time.perf_counter()
    try:
        recent = _train(state, start, progress, check, check_steps, writer, clock, tally)
        if writer is not None:
            writer.join()  # the phase's end: a write still running finishes first
    except BaseException:
        if writer is not None:
            writer.join(quiet=True)  # no orphan write; the phase's own failure is reported
        raise
    finally:
        if checkpoint_seconds is not None:
            checkpoint_seconds(writer.seconds if writer is not None else 0.0)
    if figures is not None:
        engine.synchronize()
        figures(
            PhaseFigures(
                name=phase.name,
                steps=tally.steps,
                examples=tally.examples,
                tokens=tally.tokens,
                seconds=time.perf_counter() - began,
                flop=tally.flop,
                peak_memory=(
                    torch.cuda.max_memory_allocated(engine.device) if engine.on_gpu else None
                ),
                compiles=compiled_graphs() - graphs if engine.compile else 0,
            )
        )
    if checkpoint_dir is not None:
        for path in (checkpoint_dir, *_siblings(checkpoint_dir)):
            if path.exists():
                shutil.rmtree(path)  # the phase's result is saved by the caller
    for module in phase.modules.values():
        module.eval()
    return sum(recent) / len(recent) if recent else float("nan")


def _train(
    state: TrainingState,
    start: int,
    progress: ProgressCallback | None,
    check: Callable[[int], None] | None,
    check_steps: Collection[int],
    writer: CheckpointWriter | None,
    clock: CheckpointClock,
    tally: _Tally,
) -> list[float]:
    """The steps from ``start`` on; returns the losses of the last RECENT_STEPS."""
    phase, engine, scaler = state.phase, state.engine, state.scaler
    trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
    unread: list[Tensor] = []  # detached losses of the steps since the last read [1] each
    recent: list[float] = []
    data = phase.data(start)
    for step in range(start, phase.steps):
        batch = next(data)
        tally.add(phase, batch)
        unread.append(train_step(phase, batch, step, engine, scaler, trained))
        state.schedule.step()
        done = step + 1
        if done % engine.log_every == 0 or done == phase.steps:
            values = torch.stack(unread).tolist()  # the one wait for the device
            unread.clear()
            recent = (recent + values)[-RECENT_STEPS:]
            for index, value in enumerate(values):
                if not math.isfinite(value):
                    at = done - len(values) + index + 1
                    raise Diverged(f"{phase.name}: loss is {value} at step {at}")
            if progress is not None:
                progress(Progress(phase=phase.name, step=done, total=phase.steps, loss=values[-1]))
        if check is not None and done in check_steps and done < phase.steps:
            try:
                check(done)
            except Exception:
                if writer is not None:
                    writer.save(state, done)  # written whole before the failure goes on
                raise
            for module in phase.modules.values():
                module.train()  # the check may have evaluated them
        # a due checkpoint waits for the first step at which the previous one is written
        if writer is not None and done < phase.steps and clock.due(done) and writer.idle():
            writer.start(state, done)
            clock.taken(done)
    return recent


def train_step(
    phase: Phase,
    batch: Encoded,
    step: int,
    engine: Engine,
    scaler: torch.amp.GradScaler | None,
    trained: list[Tensor],
) -> Tensor:
    """One optimizer step on one batch (``step``: the steps done before it); returns the loss,
    detached and still on the device (reading it would wait for the device). A compiled
    engine runs the phase's :class:`CompiledStep`."""
    if engine.compile:
        if phase.compiled is None:
            phase.compiled = CompiledStep(phase, engine, scaler, trained)
        return phase.compiled(batch, step)
    with engine.autocast():
        loss = phase.loss(batch, steps_done(step, batch))
    phase.optimizer.zero_grad(set_to_none=True)
    scaled = loss if scaler is None else scaler.scale(loss)
    scaled.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
    apply_gradients(phase, scaler, trained)
    return loss.detach().float()


def steps_done(step: int, batch: Encoded) -> Tensor:
    """``step`` as :class:`Phase`'s loss takes it: a 0-dim float64 tensor where the batch is
    (filled on the device: no copy from the host, no wait)."""
    return torch.full((), step, dtype=torch.float64, device=batch.device)


def apply_gradients(
    phase: Phase,
    scaler: torch.amp.GradScaler | None,
    trained: list[Tensor],
    optimizer_step: Callable[[], object] | None = None,
) -> None:
    """What a step does once its gradients are there: the phase's ``after_backward``,
    clipping, the optimizer's step (``optimizer_step``, by default ``optimizer.step``; through
    the scaler under fp16: skipped where gradients overflowed), the phase's ``after_step``."""
    if phase.after_backward is not None:
        phase.after_backward()
    if scaler is not None:
        scaler.unscale_(phase.optimizer)  # clip the true gradients
    torch.nn.utils.clip_grad_norm_(trained, phase.max_grad_norm)
    if scaler is None:
        (optimizer_step or phase.optimizer.step)()
    else:
        scaler.step(phase.optimizer)  # skipped when the gradients overflowed
        scaler.update()
    if phase.after_step is not None:
        phase.after_step()


class CompiledStep:
    """A phase's training step as two compiled functions (``Engine.compile_options``): the
    loss, with its backward compiled by AOTAutograd, and the update (:func:`apply_gradients`).

    Under fp16 the update stays eager: the gradient scaler's step reads from the device
    whether the gradients overflowed, which neither a graph nor a CUDA graph can hold. On a
    GPU every step begins a new CUDA-graph step (``cudagraph_mark_step_begin``), and the loss
    it returns is a copy: a CUDA graph's outputs are overwritten by its next replay, and the
    loop reads losses only every ``log_every`` steps."""

    def __init__(
        self,
        phase: Phase,
        engine: Engine,
        scaler: torch.amp.GradScaler | None,
        trained: list[Tensor],
    ) -> None:
        self.phase, self.engine, self.scaler, self.trained = phase, engine, scaler, trained
        self.optimizer_step = _unwrapped_step(phase.optimizer)
        options = engine.compile_options()
        self.loss = torch.compile(self._loss, **options)
        self.update: Callable[[], None] = (
            torch.compile(self._update, **options) if scaler is None else self._update
        )

    def __call__(self, batch: Encoded, step: int) -> Tensor:
        if self.engine.on_gpu:
            torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        done = steps_done(step, batch)
        with self.engine.autocast():
            loss = self.loss(
                batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels, done
            )
        self.phase.optimizer.zero_grad(set_to_none=True)
        scaled = loss if self.scaler is None else self.scaler.scale(loss)
        scaled.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        self.update()
        return loss.detach().float().clone()

    def _loss(
        self,
        input_ids: Tensor,  # [B, L]: the batch's tensors, one graph input each
        attention_mask: Tensor,
        token_type_ids: Tensor,
        labels: Tensor,  # [B]
        done: Tensor,  # [] float64
    ) -> Tensor:
        return self.phase.loss(Encoded(input_ids, attention_mask, token_type_ids, labels), done)

    def _update(self) -> None:
        apply_gradients(self.phase, self.scaler, self.trained, self.optimizer_step)


def _unwrapped_step(optimizer: torch.optim.Optimizer) -> Callable[[], object]:
    """``optimizer.step`` without the wrapper a learning-rate schedule puts around it (it only
    notes that the step was called, and dynamo will not trace the schedule's module: the
    whole step would run eagerly); the note is made here, once, for the schedule."""
    step = optimizer.step
    inner = getattr(step, "__wrapped__", None)
    if inner is None:
        return step
    optimizer._opt_called = True  # type: ignore[attr-defined]  # what the wrapper sets
    return functools.partial(inner, optimizer)


# -- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingState:
    """Everything a checkpoint holds the state of."""

    phase: Phase
    schedule: LRScheduler
    scaler: torch.amp.GradScaler | None
    engine: Engine


class CheckpointClock:
    """When a checkpoint is due: ``every`` steps (0: never by steps) or ``seconds`` of the
    host's monotonic clock (0: every step) after the phase's start or the last checkpoint,
    whichever comes first. It reads no device value: deciding costs a step nothing."""

    def __init__(self, every: int, seconds: float, start: int) -> None:
        self.every, self.seconds = every, seconds
        self.taken(start)

    def due(self, done: int) -> bool:
        if self.every > 0 and done - self.last_step >= self.every:
            return True
        return time.monotonic() - self.last_time >= self.seconds

    def taken(self, done: int) -> None:
        self.last_step, self.last_time = done, time.monotonic()


@dataclass
class Snapshot:
    """A checkpoint's content copied off the device: every tensor is the snapshot's own, so
    the training goes on while it is written. On CUDA the copies are in flight until
    ``copied`` (an event after them on the training's stream) has passed."""

    name: str
    step: int
    tensors: dict[str, Tensor]  # the modules' state, keyed <module>.<name>
    state: dict[str, Any]  # optimizer, schedule, scaler, rng
    copied: torch.cuda.Event | None = None


class CheckpointWriter:
    """Writes a phase's checkpoints into ``folder`` from one background thread at a time;
    ``seconds`` is what the step loop spent on them (snapshots and waits)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seconds = 0.0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        # pinned host buffers, reused by every snapshot (the previous write is done by then)
        self._buffers: list[Tensor] = []

    def idle(self) -> bool:
        """Whether no write is running (without waiting); a failed write raises its error."""
        if self._thread is not None and self._thread.is_alive():
            return False
        self._finish()
        return True

    def start(self, state: TrainingState, step: int) -> None:
        """Snapshot the state at ``step`` and write it in the background (the writer is idle)."""
        began = time.perf_counter()
        snapshot = take_snapshot(state, step, self._buffers)
        self._thread = threading.Thread(
            target=self._write, args=(snapshot,), name=f"checkpoint {snapshot.name}"
        )
        self._thread.start()
        self.seconds += time.perf_counter() - began

    def save(self, state: TrainingState, step: int) -> None:
        """Snapshot and write at ``step`` now, waiting for a running write first."""
        self.join()
        began = time.perf_counter()
        write_checkpoint(take_snapshot(state, step, self._buffers), self.folder)
        self.seconds += time.perf_counter() - began

    def join(self, quiet: bool = False) -> None:
        """Wait for a running write; its error is raised, or with ``quiet`` logged."""
        if self._thread is not None:
            began = time.perf_counter()
            self._thread.join()
            self.seconds += time.perf_counter() - began
        try:
            self._finish()
        except Exception:
            if not quiet:
                raise
            log.exception("writing the checkpoint %s failed", self.folder)

    def _write(self, snapshot: Snapshot) -> None:
        try:
            write_checkpoint(snapshot, self.folder)
        except BaseException as err:  # raised in the step loop, which decides what it means
            self._error = err

    def _finish(self) -> None:
        self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error


def take_snapshot(state: TrainingState, step: int, buffers: list[Tensor]) -> Snapshot:
    """The checkpoint of ``state`` at ``step``, copied off the device: on CUDA into the pinned
    ``buffers`` (reused where shapes match, grown where not) without waiting for the device,
    on a CPU into clones."""
    phase, engine = state.phase, state.engine
    pool = _Copier(buffers)
    tensors = {
        f"{name}.{key}": pool.copy(value)
        for name, module in phase.modules.items()
        for key, value in module.state_dict().items()
    }
    content: dict[str, Any] = {
        "optimizer": phase.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
    }
    if state.scaler is not None:
        content["scaler"] = _scaler_state(state.scaler)
    copied = pool.copy_all(content)
    copied["rng"] = _rng_state(engine)
    event = None
    if pool.on_cuda:
        event = torch.cuda.Event()  # type: ignore[no-untyped-call]  # unannotated in torch
        event.record()  # after the copies, on the stream that ran them and the training
    return Snapshot(phase.name, step, tensors, copied, event)


class _Copier:
    """Copies tensors off the device in order, the i-th into ``buffers[i]``."""

    def __init__(self, buffers: list[Tensor]) -> None:
        self.buffers, self.used, self.on_cuda = buffers, 0, False

    def copy(self, value: Tensor) -> Tensor:
        value = value.detach()
        if not value.is_cuda:
            return value.clone(memory_format=torch.contiguous_format)
        self.on_cuda = True
        index, self.used = self.used, self.used + 1
        if index == len(self.buffers):
            self.buffers.append(_pinned_like(value))
        elif self.buffers[index].shape != value.shape or self.buffers[index].dtype != value.dtype:
            self.buffers[index] = _pinned_like(value)
        return self.buffers[index].copy_(value, non_blocking=True)

    def copy_all(self, value: Any) -> Any:  # Any: a state dict's nested containers
        """``value`` with every tensor in it copied (containers rebuilt, the rest shared:
        numbers and strings)."""
        if isinstance(value, Tensor):
            return self.copy(value)
        if isinstance(value, dict):
            return {k: self.copy_all(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.copy_all(v) for v in value)
        return value


def _pinned_like(value: Tensor) -> Tensor:
    return torch.empty(value.shape, dtype=value.dtype, device="cpu", pin_memory=True)


def _scaler_state(scaler: torch.amp.GradScaler) -> dict[str, Any]:
    """The scaler's state with its scale and growth tracker as tensors: ``state_dict()``
    would read them from the device (a wait); the writer makes them numbers."""
    scale = getattr(scaler, "_scale", None)
    tracker = getattr(scaler, "_growth_tracker", None)
    if not isinstance(scale, Tensor) or not isinstance(tracker, Tensor):
        return scaler.state_dict()  # not used yet: its state is plain numbers
    return {
        "scale": scale,
        "growth_factor": scaler.get_growth_factor(),
        "backoff_factor": scaler.get_backoff_factor(),
        "growth_interval": scaler.get_growth_interval(),
        "_growth_tracker": tracker,
    }


def _rng_state(engine: Engine) -> dict[str, Tensor]:
    """The random generators a step draws from (dropout, L0 gates): the CPU's and, on CUDA,
    the device's (seed and offset, held on the host: no wait)."""
    rng = {"cpu": torch.get_rng_state()}
    if engine.on_gpu:
        rng["cuda"] = torch.cuda.get_rng_state(engine.device)
    return rng


def write_checkpoint(snapshot: Snapshot, folder: Path) -> None:
    """Write ``snapshot`` into ``<folder>.partial`` (``state.json`` last, by rename), then put
    it in the place of the previous checkpoint: a kill at any instant leaves a whole
    checkpoint in ``folder``, ``.partial`` or ``.old`` (:func:`_settle` finds it)."""
    if snapshot.copied is not None:
        snapshot.copied.synchronize()  # the copies off the device have landed
    partial, old = _siblings(folder)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    save_file(snapshot.tensors, str(partial / "weights.safetensors"))
    follow_umask(partial / "weights.safetensors")  # another user of shared storage resumes it
    state = dict(snapshot.state)
    if "scaler" in state:
        state["scaler"] = _as_numbers(state["scaler"])
    torch.save(state, partial / "optimizer.pt")
    ready = partial / "state.json.tmp"
    ready.write_text(json.dumps({"step": snapshot.step, "phase": snapshot.name}))
    os.replace(ready, partial / "state.json")
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    if old.exists():
        shutil.rmtree(old)


def _as_numbers(scaler: dict[str, Any]) -> dict[str, Any]:
    """A scaler state as ``GradScaler.state_dict()`` writes it: numbers, not tensors."""
    numbers = dict(scaler)
    for key, kind in (("scale", float), ("_growth_tracker", int)):
        if isinstance(numbers[key], Tensor):
            numbers[key] = kind(numbers[key].item())
    return numbers


def _siblings(folder: Path) -> tuple[Path, Path]:
    """(the checkpoint being written, the previous one while it is replaced)."""
    return folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")


def _step_of(folder: Path) -> int | None:
    """The step of the whole checkpoint in ``folder``, or None (none, or half-written, or
    half-deleted by an older release's replacement)."""
    if not all((folder / name).is_file() for name in ("weights.safetensors", "optimizer.pt")):
        return None
    try:
        return int(json.loads((folder / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _settle(folder: Path) -> int | None:
    """Leave the newest whole checkpoint a kill left in ``folder`` (the one written last,
    then one mid-replacement, then the one it replaced), no other; returns its step."""
    partial, old = _siblings(folder)
    if _step_of(folder) is None:
        for whole in (partial, old):
            if _step_of(whole) is not None:
                if folder.exists():
                    shutil.rmtree(folder)
                whole.rename(folder)
                break
    for leftover in (partial, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    return _step_of(folder)


def _resume(
    phase: Phase,
    schedule: LRScheduler,
    scaler: torch.amp.GradScaler | None,
    engine: Engine,
    folder: Path | None,
) -> int:
    if folder is None:
        return 0
    step = _settle(folder)
    if step is None:
        return 0
    tensors = load_file(folder / "weights.safetensors")
    for name, module in phase.modules.items():
        prefix = name + "."
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    # the optimizer moves its state to its parameters' device on load
    state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    kernels = _kernels(phase.optimizer)
    phase.optimizer.load_state_dict(state["optimizer"])
    _keep_kernels(phase.optimizer, kernels)
    schedule.load_state_dict(state["schedule"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    rng = state.get("rng", {})  # none in a checkpoint written before they were kept
    if "cpu" in rng:
        torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and engine.on_gpu:  # a GPU's checkpoint resumed on a CPU: its own draws
        torch.cuda.set_rng_state(rng["cuda"], engine.device)
    return step


_KERNEL_KEYS = ("lr", "foreach", "fused", "capturable")


def _kernels(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Per group, how this run's optimizer steps: its kernels, and its learning rate's kind (a
    number for eager steps, a device tensor for compiled ones: :func:`compilable_adamw`)."""
    return [{k: g[k] for k in _KERNEL_KEYS if k in g} for g in optimizer.param_groups]


def _keep_kernels(optimizer: torch.optim.Optimizer, kernels: list[dict[str, Any]]) -> None:
    """After ``load_state_dict`` (which takes the saved groups whole): the saved numbers with
    this run's kernels, so that a checkpoint of a compiled phase resumes eagerly, and the
    other way round. A tensor learning rate is filled in place (compiled graphs read it
    there); each step count moves where its kernels keep it (on the device when capturable
    or fused, else on the CPU). Nothing here reads from a device."""
    for group, kept in zip(optimizer.param_groups, kernels, strict=True):
        loaded, rate = group["lr"], kept.pop("lr")
        group.update(kept)
        value = float(loaded)  # a number, or a tensor loaded onto the CPU
        group["lr"] = rate.fill_(value) if isinstance(rate, Tensor) else value
        on_device = bool(group.get("capturable") or group.get("fused"))
        for param in group["params"]:
            count = optimizer.state.get(param, {}).get("step")
            if isinstance(count, Tensor):
                where = param.device if on_device else torch.device("cpu")
                optimizer.state[param]["step"] = count.to(where, torch.float32)
