"""What a search is asked (:class:`SearchRequest`: ``autoprumux search``'s options,
``autoprumux.search``'s arguments) and what its checks decided before any long work
(:class:`SearchPlan`): the records :class:`~autoprumux.session.search_session.SearchSession`
passes from its checks to its run."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from autoprumux.core.answer import TrainCommand
from autoprumux.core.budget import Budget
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Objective
from autoprumux.core.study import Study
from autoprumux.loop.ray_address import OWN_RAY, RayTarget
from autoprumux.loop.trial_sources import ReplaySpec
from autoprumux.session.sizing import TrialSlots


class Executor(enum.Enum):
    """Where a search's trainings run."""

    # without Ray: GPU trials each in a process of their own, spread over this machine's GPUs;
    # CPU trials in threads of this process
    LOCAL = "local"
    RAY = "ray"  # Ray Tune trials: on a Ray of its own here, or the cluster it joins


DEFAULT_GPUS_PER_TRIAL = 1.0  # --gpus-per-trial and search(gpus_per_trial=): a GPU each


@dataclass(frozen=True, kw_only=True)
class SearchRequest:
    """What a search is asked to do: ``autoprumux search``'s options, ``autoprumux.search``'s
    arguments. Errors name the CLI option of the field (``gpus`` is ``--gpus``)."""

    task: str | None  # None: the study file's task
    study_path: str | None  # required by the session (the CLI finds the default one first)
    budget: Budget
    gpus: float | None  # GPUs of the whole search; None: every one visible (a cluster's)
    gpus_per_trial: float
    cpus_per_trial: float | None  # None: 1 for a GPU trial, a machine's (node's) cores else
    executor: str  # an Executor's value
    address: str | None  # a Ray cluster to join (with the ray executor)
    storage: str | None  # None: the study's
    trainer_spec: str  # "study", or "replay:FILE[?delay=SECONDS]"
    throughput_path: str | None  # None: the study's table (measured first if missing)
    max_trials: int | None
    max_gpu_hours: float | None
    max_retries: int
    top_k: int
    device: str = "auto"  # where trials train: auto, cpu, cuda (cuda:i with --executor local)
    early_stop: bool = True  # --no-early-stop: False
    timeout_s: float | None = None  # --timeout: wall-clock seconds after which none starts
    objective: Objective = Objective.THROUGHPUT  # --objective: what "fastest" means


@dataclass(frozen=True, kw_only=True)
class SearchPlan:
    """Everything decided and checked before the long work (Ray, training) starts."""

    study: Study
    executor: Executor
    storage_url: str  # the real URL (never printed: shown masked)
    report: Path  # the HTML report written at the end, known to be writable
    replay: ReplaySpec | None  # the recorded grid that answers trainings; None: train for real
    # the trials at once and their resources: sized now on the local executor, once the
    # cluster is joined on Ray (its nodes decide)
    slots: TrialSlots | None
    # the local executor's GPUs, a trial placed on the one with the most free slots ("cuda:0",
    # ...; none: CPU trials, or Ray, which places its own); each holds floor(1 / share)
    devices: tuple[str, ...] = ()
    processes: bool = False  # each local trial in a spawned process of its own (GPU training)
    train: TrainCommand | None  # how `autoprumux train` trains a point as this search does
    # the training split's examples and the label names, as read (a replay reads no data);
    # the cost model prices a phase given in epochs with the count
    train_examples: int | None = None
    labels: tuple[str, ...] = ()
    fine_tuned: bool = False  # the model is a fine-tuned classifier: the (1, 0) teacher as is
    # the dev score of predicting one label for every example, and that label (search_checks)
    one_label: tuple[float, str] | None = None
    # the precisions every trained model is served in ([deploy] precisions, checked against
    # the serving device), fp32 first
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    # the Ray cluster the ray executor joins (--address, RAY_ADDRESS, a `ray start` of this
    # machine), or none: a Ray of its own here, and the local executor's trials
    ray: RayTarget = OWN_RAY
