"""One training loop for every phase: steps, a linear schedule, clipping, progress, NaN checks,
and resumable checkpoints, on the engine's device and in its precision.

The loop never waits for the device inside a step: losses stay on the device and are read
every ``engine.log_every`` steps (every step on a CPU, where a read costs nothing), which is
when progress is reported and a NaN or infinite loss is caught. Under fp16 a gradient scaler
skips the steps whose gradients overflowed, as ``torch.amp`` prescribes.

A phase checkpoint is a folder: ``weights.safetensors`` (the tensors of every module being
trained, keyed ``<module>.<name>``), ``optimizer.pt`` (optimizer and schedule state) and
``state.json`` (the step reached). A phase that finds a checkpoint continues from its step with
the same data order; it does not start over.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from autoprumux.core.progress import Progress, ProgressCallback
from trainers.data.splits import Encoded
from trainers.runtime.device import Engine

RECENT_STEPS = 50  # run_phase returns the mean loss of this many last steps


class Diverged(RuntimeError):
    """A loss became NaN or infinite: the trial fails with this reason."""


@dataclass(kw_only=True)
class Phase:
    """What a phase trains and how; ``loss(batch, step)`` returns the scalar to minimize."""

    name: str
    modules: dict[str, nn.Module]  # everything whose state a checkpoint must hold
    optimizer: torch.optim.Optimizer
    steps: int
    loss: Callable[[Encoded, int], Tensor]
    data: Callable[[int], Iterator[Encoded]]  # start step -> batches from there on
    decay: tuple[bool, ...] = ()  # per parameter group: linear decay to 0 (default: all)
    max_grad_norm: float = 1.0
    after_backward: Callable[[], None] | None = None  # e.g. negate the Lagrange multipliers' grads
    after_step: Callable[[], None] | None = None  # e.g. clamp the L0 log-alphas (CoFi)


def run_phase(
    phase: Phase,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 200,
    progress: ProgressCallback | None = None,
    engine: Engine | None = None,
    check: Callable[[int], None] | None = None,
    check_steps: Collection[int] = (),
) -> float:
    """Train for ``phase.steps`` steps; returns the mean loss of the last 50 steps.
    ``check(step)`` runs after each of ``check_steps`` (evaluating the model, say); if it
    raises, the phase is checkpointed at that step first, so a later run continues from it."""
    engine = engine or Engine()
    decay = phase.decay or (True,) * len(phase.optimizer.param_groups)
    total = max(phase.steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        phase.optimizer,
        [(lambda s: max(0.0, 1.0 - s / total)) if d else (lambda s: 1.0) for d in decay],
    )
    scaler = engine.grad_scaler()
    start = _resume(phase, schedule, scaler, checkpoint_dir)
    for module in phase.modules.values():
        module.train()
    trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
    unread: list[Tensor] = []  # detached losses of the steps since the last read [1] each
    recent: list[float] = []
    data = phase.data(start)
    for step in range(start, phase.steps):
        unread.append(train_step(phase, next(data), step, engine, scaler, trained))
        schedule.step()
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
                if checkpoint_dir is not None:
                    _save(phase, schedule, scaler, checkpoint_dir, done)
                raise
            for module in phase.modules.values():
                module.train()  # the check may have evaluated them
        if checkpoint_dir is not None and done % checkpoint_every == 0 and done < phase.steps:
            _save(phase, schedule, scaler, checkpoint_dir, done)
    if checkpoint_dir is not None and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)  # the phase's result is saved by the caller
    for module in phase.modules.values():
        module.eval()
    return sum(recent) / len(recent) if recent else float("nan")


def train_step(
    phase: Phase,
    batch: Encoded,
    step: int,
    engine: Engine,
    scaler: torch.amp.GradScaler | None,
    trained: list[Tensor],
) -> Tensor:
    """One optimizer step on one batch; returns the loss, detached and still on the device
    (reading it would wait for the device)."""
    with engine.autocast():
        loss = phase.loss(batch, step)
    phase.optimizer.zero_grad(set_to_none=True)
    scaled = loss if scaler is None else scaler.scale(loss)
    scaled.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
    if phase.after_backward is not None:
        phase.after_backward()
    if scaler is not None:
        scaler.unscale_(phase.optimizer)  # clip the true gradients
    torch.nn.utils.clip_grad_norm_(trained, phase.max_grad_norm)
    if scaler is None:
        phase.optimizer.step()
    else:
        scaler.step(phase.optimizer)  # skipped when the gradients overflowed
        scaler.update()
    if phase.after_step is not None:
        phase.after_step()
    return loss.detach().float()


def _save(
    phase: Phase,
    schedule: LRScheduler,
    scaler: torch.amp.GradScaler | None,
    folder: Path,
    step: int,
) -> None:
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}.{key}": value.detach().contiguous().cpu()
        for name, module in phase.modules.items()
        for key, value in module.state_dict().items()
    }
    save_file(tensors, str(partial / "weights.safetensors"))
    state = {"optimizer": phase.optimizer.state_dict(), "schedule": schedule.state_dict()}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    torch.save(_to_cpu(state), partial / "optimizer.pt")
    (partial / "state.json").write_text(json.dumps({"step": step, "phase": phase.name}))
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)  # a crash mid-save leaves the previous checkpoint intact


def _to_cpu(value: object) -> object:
    """A checkpoint's state with every tensor on the CPU: device-free, it resumes anywhere."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _resume(
    phase: Phase, schedule: LRScheduler, scaler: torch.amp.GradScaler | None, folder: Path | None
) -> int:
    if folder is None or not (folder / "state.json").is_file():
        return 0

    tensors = load_file(folder / "weights.safetensors")
    for name, module in phase.modules.items():
        prefix = name + "."
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    # the optimizer moves its state to its parameters' device on load
    state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    phase.optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    return int(json.loads((folder / "state.json").read_text())["step"])
