"""How many trials a search runs at once, and what each takes: a pure function of the
machine's (or the Ray cluster's) size and the search's GPU options."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoprumux.loop.device_slots import trials_per_gpu

_SLACK = 1e-9  # floating point's hair: 3 GPUs of 0.1 are 30 trials, not 29


@dataclass(frozen=True)
class NodeSize:
    """One node of a Ray cluster: what it offers."""

    cpus: float  # CPU cores
    gpus: float


@dataclass(frozen=True)
class TrialSlots:
    """Trials at once, and the resources each one takes."""

    workers: int  # trials at once (>= 1)
    cpus_per_trial: float  # CPU cores a trial takes; its threads are this, rounded down (>= 1)
    gpus_per_trial: float  # its share of GPUs; 0 for a CPU trial (it records no GPU-hours)


def size_trials(
    *,
    cores: int,
    gpus: float,
    gpus_per_trial: float,
    cpus_per_trial: float | None,
    nodes: Sequence[NodeSize] | None = None,
) -> TrialSlots:
    """The trials at once of a search with ``gpus`` GPUs in all (0: CPU trials).

    - GPU trials (``gpus`` > 0) take ``gpus_per_trial`` each and one CPU core unless
      ``cpus_per_trial`` says otherwise; a trial trains on one GPU, so each whole GPU holds
      ``floor(1 / gpus_per_trial)`` of them (0.4: 2, not 2.5) and a part of one (--gpus 1.5)
      what its part fits: ``--gpus 3 --gpus-per-trial 0.4`` runs 6 at once, not 7;
    - CPU trials take ``cpus_per_trial`` cores each, by default all of the machine's
      ``cores`` (one trial at a time, with every thread) or, on a cluster, the smallest node's
      cores (a trial runs on one node);
    - on a cluster (``nodes``), each node fits its own trials side by side, and ``gpus``
      (--gpus) caps the GPUs the search takes from it.

    At least one trial runs at a time, however small the machine.
    """
    gpu_share = gpus_per_trial if gpus > 0 else 0.0
    if nodes is None:
        cpus = cpus_per_trial or (1.0 if gpu_share else float(cores))
        if gpu_share:
            return TrialSlots(max(1, _on_gpus(gpus, gpu_share)), cpus, gpu_share)
        return TrialSlots(max(1, int(cores // cpus)), cpus, 0.0)
    # a node that offers no CPU (a head started with --num-cpus 0) runs no CPU trial
    smallest = min((n.cpus for n in nodes if n.cpus > 0), default=1.0)
    cpus = cpus_per_trial or (1.0 if gpu_share else smallest)
    if gpu_share:
        fit = int(sum(n.gpus // gpu_share for n in nodes))
        workers = min(fit, int(gpus // gpu_share))  # --gpus caps what the search takes
    else:
        workers = int(sum(n.cpus // cpus for n in nodes))
    return TrialSlots(max(1, workers), cpus, gpu_share)


def _on_gpus(gpus: float, share: float) -> int:
    """Trials of ``share`` of a GPU that ``gpus`` GPUs hold, none straddling two: each whole
    GPU ``floor(1 / share)``, the part of one left what it fits."""
    whole = math.floor(gpus + _SLACK)
    part = max(0.0, gpus - whole)
    return whole * trials_per_gpu(share) + math.floor(part / share + _SLACK)
