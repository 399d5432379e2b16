"""Where the local executor places each GPU trial: the slots of the GPUs a search spreads its
trials over, and the trainers that can be placed on one.

A search with ``--gpus k`` and ``--gpus-per-trial share`` on the local executor holds
``floor(1 / share)`` trials on each of ``cuda:0 .. cuda:k-1`` (a trial never straddles two
GPUs); a trial starts on the GPU with the most free slots, the lowest index among equals, so
trials spread before they stack. Pure Python: the executor asks, the trainer is told.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from autoprumux.loop.trainer_contract import TrainFunction

__all__ = ["DeviceSlots", "PlaceableTrainer", "gpu_devices", "trials_per_gpu"]

# 1 / share computed in floating point: 1 / 0.1 is 10.000000000000002 on some shares' way
# back, 1 / (1 / 3) 2.9999999999999996 on others'; a hair of slack keeps whole counts whole
_SLACK = 1e-9


def trials_per_gpu(share: float) -> int:
    """How many trials of ``share`` of a GPU fit on one GPU: floor(1 / share) (0.25: 4;
    0.3: 3; 1: 1); 0 for a share above one GPU, not above 0, or too small to count."""
    ratio = 1.0 / share if math.isfinite(share) and share > 0 else 0.0
    return math.floor(ratio + _SLACK) if math.isfinite(ratio) else 0  # 1 / 1e-320: inf


def gpu_devices(device: str, gpus: float) -> tuple[str, ...]:
    """The GPUs a local search spreads its trials over: the one ``--device cuda:i`` names, or
    ``cuda:0 .. cuda:k-1`` for auto and cuda, k = ``gpus`` rounded up (``--gpus 1.5``: two
    GPUs, the second holding what the half fits); none for a CPU search (``gpus`` 0)."""
    if gpus <= 0 or device == "cpu":
        return ()
    if device.startswith("cuda:"):
        return (device,)
    return tuple(f"cuda:{i}" for i in range(math.ceil(gpus - _SLACK)))


class DeviceSlots:
    """The free trial slots of a search's GPUs: :meth:`acquire` one for a trial starting,
    :meth:`release` it when the trial ends. Safe to call from several threads at once.

    ``devices`` are device names ("cuda:0", ...), in index order; each holds ``per_device``
    trials of ``share`` of its memory.
    """

    def __init__(self, devices: Sequence[str], per_device: int, share: float) -> None:
        if not devices or per_device < 1:
            raise ValueError(f"no trial slot: {len(devices)} device(s), {per_device} a device")
        self.devices = tuple(devices)
        self.per_device = per_device
        self.share = share  # the share of its GPU's memory each trial may allocate
        self._busy = dict.fromkeys(self.devices, 0)  # device -> trials on it now
        self._lock = threading.Lock()

    @classmethod
    def for_share(cls, devices: Sequence[str], share: float) -> DeviceSlots:
        """``floor(1 / share)`` trials on each of ``devices``, each capped to ``share``."""
        return cls(devices, trials_per_gpu(share), share)

    @property
    def capacity(self) -> int:
        """Trials the devices hold at once."""
        return len(self.devices) * self.per_device

    def free(self) -> dict[str, int]:
        """Free slots, device by device."""
        with self._lock:
            return {d: self.per_device - busy for d, busy in self._busy.items()}

    def acquire(self) -> str:
        """The device a trial starting now takes: the one with the most free slots, the lowest
        index among equals. A RuntimeError when every slot is taken (the executor never starts
        more trials than the slots hold: a bug)."""
        with self._lock:
            # max keeps the first of equals, and the devices are in index order
            device = max(self.devices, key=lambda d: self.per_device - self._busy[d])
            if self._busy[device] >= self.per_device:
                raise RuntimeError(f"every one of the {self.capacity} trial slot(s) is taken")
            self._busy[device] += 1
            return device

    def release(self, device: str) -> None:
        """The trial on ``device`` has ended: its slot is free."""
        with self._lock:
            if self._busy.get(device, 0) <= 0:
                raise RuntimeError(f"{device} has no trial to release")
            self._busy[device] -= 1


@runtime_checkable
class PlaceableTrainer(Protocol):
    """A trainer the local executor can place: the same trainer, training on ``device`` with
    ``gpu_share`` of its memory (:class:`~autoprumux.loop.trial_sources.StudyTrainer`; a
    replayed grid trains nowhere and answers itself)."""

    def on_device(self, device: str, gpu_share: float) -> TrainFunction: ...
