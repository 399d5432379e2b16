"""One training loop for every phase: steps, a linear schedule, clipping, progress, NaN checks,
and resumable checkpoints.

A phase checkpoint is a folder: ``weights.safetensors`` (the tensors of every module being
trained, keyed ``<module>.<name>``), ``optimizer.pt`` (optimizer and schedule state) and
``state.json`` (the step reached). A phase that finds a checkpoint continues from its step with
the same data order; it does not start over.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from autoprumux.progress import Progress, ProgressCallback


class Diverged(RuntimeError):
    """A loss became NaN or infinite: the trial fails with this reason."""


@dataclass
class Phase:
    """What a phase trains and how; ``loss(batch, step)`` returns the scalar to minimize."""

    name: str
    modules: dict[str, nn.Module]  # everything whose state a checkpoint must hold
    optimizer: torch.optim.Optimizer
    steps: int
    loss: Callable[[object, int], Tensor]
    data: Callable[[int], Iterator[object]]  # start step -> batches from there on
    decay: tuple[bool, ...] = ()  # per parameter group: linear decay to 0 (default: all)
    max_grad_norm: float = 1.0
    after_backward: Callable[[], None] | None = None  # e.g. negate the Lagrange multipliers' grads


def run_phase(
    phase: Phase,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 200,
    progress: ProgressCallback | None = None,
) -> float:
    """Train for ``phase.steps`` steps; returns the mean loss of the last 50 steps."""
    decay = phase.decay or (True,) * len(phase.optimizer.param_groups)
    total = max(phase.steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        phase.optimizer,
        [(lambda s: max(0.0, 1.0 - s / total)) if d else (lambda s: 1.0) for d in decay],
    )
    start = _resume(phase, schedule, checkpoint_dir)
    for module in phase.modules.values():
        module.train()
    trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
    recent: list[float] = []
    data = phase.data(start)
    for step in range(start, phase.steps):
        loss = phase.loss(next(data), step)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Diverged(f"{phase.name}: loss is {value} at step {step + 1}")
        phase.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if phase.after_backward is not None:
            phase.after_backward()
        torch.nn.utils.clip_grad_norm_(trained, phase.max_grad_norm)
        phase.optimizer.step()
        schedule.step()
        recent = (recent + [value])[-50:]
        if progress is not None:
            progress(Progress(phase.name, step + 1, phase.steps, value))
        if (
            checkpoint_dir is not None
            and (step + 1) % checkpoint_every == 0
            and step + 1 < phase.steps
        ):
            _save(phase, schedule, checkpoint_dir, step + 1)
    if checkpoint_dir is not None and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)  # the phase's result is saved by the caller
    for module in phase.modules.values():
        module.eval()
    return sum(recent) / len(recent) if recent else float("nan")


def _save(phase: Phase, schedule, folder: Path, step: int) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}.{key}": value.detach().contiguous().cpu()
        for name, module in phase.modules.items()
        for key, value in module.state_dict().items()
    }
    save_file(tensors, str(partial / "weights.safetensors"))
    torch.save(
        {"optimizer": phase.optimizer.state_dict(), "schedule": schedule.state_dict()},
        partial / "optimizer.pt",
    )
    (partial / "state.json").write_text(json.dumps({"step": step, "phase": phase.name}))
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)  # a crash mid-save leaves the previous checkpoint intact


def _resume(phase: Phase, schedule, folder: Path | None) -> int:  # type: ignore[no-untyped-def]
    if folder is None or not (folder / "state.json").is_file():
        return 0
    from safetensors.torch import load_file

    tensors = load_file(folder / "weights.safetensors")
    for name, module in phase.modules.items():
        prefix = name + "."
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        )
    state = torch.load(folder / "optimizer.pt", weights_only=True)
    phase.optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(json.loads((folder / "state.json").read_text())["step"])
