"""The checks a search makes before any long work, each refusal one line naming the option
(``--gpus``) or field: the study and its task, the timeout, counts and caps, the executor and
the trainer, GPUs and cores, the device and precision the trials need, the study's data. Each
is a function of the request (and what it needs to know of the machine), so a Python caller's
arguments are checked as the CLI's options are."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.precision import Precision
from autoprumux.core.study import Study, load_study
from autoprumux.core.tasks import TASKS
from autoprumux.loop.device_slots import trials_per_gpu
from autoprumux.loop.ray_address import RayTarget
from autoprumux.loop.trial_sources import REPLAY_PREFIX, ReplaySpec
from autoprumux.session.search_request import Executor, SearchRequest


def choose_study(request: SearchRequest) -> Study:
    """The study file given; a --task that is not the study file's task is refused (it would
    silently search the file's task)."""
    if request.task is not None and request.task not in TASKS:
        raise FieldError("--task", f"{request.task!r} is not one of: {', '.join(TASKS)}")
    if not request.study_path:
        raise FieldError("--study", "no study file given; give the study file to search")
    study = load_study(request.study_path)
    if request.task is not None and study.task != request.task:
        raise FieldError(
            "--task",
            f"{request.task!r} differs from the task of {request.study_path} "
            f"({study.task!r}); leave --task out to search {study.task}",
        )
    return study


def served_precisions(study: Study) -> tuple[Precision, ...]:
    """The study's ``[deploy] precisions`` on the device that serves and times its models
    (its defaults when it names none); one line for a precision that device cannot run."""
    from trainers.runtime.device import study_precisions  # torch: what the device has

    return study_precisions(study)


@dataclass(frozen=True)
class TaskData:
    """What a search reads of its data before any training."""

    train_examples: int
    labels: tuple[str, ...]  # the label names, in id order
    fine_tuned: bool  # the model is a fine-tuned classifier: the (1, 0) teacher as is
    # the dev score of a model that predicts one label for every example, and that label's
    # name: what a (1, 0) that learned nothing scores
    one_label: tuple[float, str]


def check_task_data(study: Study) -> TaskData:
    """The study's data read and checked before any training (a bad file, column, row or label
    is one line); the trials reuse what was read (``datasets``' Arrow cache). Then its model
    against its data (a fine-tuned head's labels, the tokenizer's vocabulary, ``num_layers``,
    a multiplexed checkpoint's family: ``check_model_fits``)."""
    from autoprumux.core.metrics import one_label_score
    from trainers.trial.task_data import check_model_fits, checked_tables, positive_label_id

    tables = checked_tables(study)
    fine_tuned = check_model_fits(study, tables.label_names)
    check_batches_fill(study, int(tables.train.num_rows), fine_tuned)
    gold = Counter(tables.dev.column("label").to_pylist())  # label id -> dev examples
    counts = [gold[k] for k in range(len(tables.label_names))]
    positive = positive_label_id(study, tables.label_names)
    floor, label = one_label_score(study.study.metric, counts, positive)
    return TaskData(
        int(tables.train.num_rows),
        tables.label_names,
        fine_tuned,
        (floor, tables.label_names[label]),
    )


@dataclass(frozen=True)
class BatchNeed:
    """The training examples one batch of the trainings at width N draws from the training
    split (a phase trains on whole batches only: ``trainers.data.splits.endless_batches``)."""

    n: int
    rows: int  # rows a batch, each of N examples
    setting: str  # the study field that sets ``rows``

    @property
    def examples(self) -> int:
        return self.rows * self.n


def batch_needs(study: Study, fine_tuned: bool) -> tuple[BatchNeed, ...]:
    """For each N of the grid whose points train on the training split, its largest batch: the
    task phases' ([training] batch_rows x N: fine-tuning, pruning, post-pruning), or the
    retrieval warm-up's where it is larger ([warmup] batch_rows x N: N > 1 without a
    multiplexed checkpoint, warming up on the training split when [warmup] text names none).
    N = 1 trains nothing when its (1, 0) is a fine-tuned checkpoint and the grid prunes
    nothing; a (1, 0) teacher distilled from is N = 1's batch, never the largest."""
    from trainers.trial.cache_keys import teacher_is_checkpoint

    grid = study.grid.grid
    prunes = any(s > 0 for s in grid.sparsities)
    warms_up_on_train = not (study.model.multiplexed_name_or_path or study.warmup.text)
    needs = []
    for n in grid.n_values:
        if not prunes and teacher_is_checkpoint(n, fine_tuned):
            continue
        need = BatchNeed(n, study.training.batch_rows, "[training] batch_rows")
        warmup = BatchNeed(n, study.warmup.batch_rows, "[warmup] batch_rows")
        needs.append(warmup if n > 1 and warms_up_on_train and warmup.rows > need.rows else need)
    return tuple(needs)


def check_batches_fill(study: Study, train_rows: int, fine_tuned: bool) -> None:
    """Refuse, before any training, a grid whose trainings draw batches larger than the
    training split: such a trial would fail at its first step. Named: the widths that fail,
    the largest batch, and the ways out (more rows, smaller N, smaller batches)."""
    needs = batch_needs(study, fine_tuned)
    short = [need for need in needs if need.examples > train_rows]
    if not short:
        return
    from autoprumux.core.data_spec import data_spec

    largest = max(short, key=lambda need: need.examples)
    fits = [need.n for need in needs if need.examples <= train_rows]
    ways = [f"give at least {largest.examples:,} training rows"]
    if fits:
        ways.append(f"a grid of N <= {max(fits)} ([grid] n)")
    if train_rows >= largest.n:
        ways.append(f"a {largest.setting} of at most {train_rows // largest.n}")
    widths = ", ".join(str(need.n) for need in short)
    raise DataError(
        data_spec(study).train.describe(),
        f"the training split's {train_rows:,} rows cannot fill one batch at N = {widths}: at "
        f"N = {largest.n} a batch is {largest.rows} rows x {largest.n} = {largest.examples:,} "
        f"examples ({largest.setting}); {', '.join(ways[:-1])}{' or ' if len(ways) > 1 else ''}"
        f"{ways[-1]}",
    )


def check_timeout(timeout_s: float | None) -> None:
    """Refuse a timeout no search can run under: it is a number of seconds above 0."""
    if timeout_s is None:
        return
    if isinstance(timeout_s, bool) or not (math.isfinite(timeout_s) and timeout_s > 0):
        raise FieldError(
            "--timeout", f"{timeout_s!r} is not allowed; give a number of seconds above 0"
        )


def check_limits(request: SearchRequest) -> None:
    """Refuse caps and counts outside their range (the CLI's option types check them too; a
    Python caller's arguments are checked here)."""
    counts = (
        ("--max-trials", request.max_trials, 1),
        ("--max-retries", request.max_retries, 0),
        ("--top", request.top_k, 1),
    )
    for option, count, least in counts:
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise FieldError(option, f"{count!r} is not a whole number")
        if count is not None and count < least:
            raise FieldError(option, f"{count} is not allowed; give a whole number >= {least}")
    hours = request.max_gpu_hours
    if hours is not None and not (math.isfinite(hours) and hours >= 0):
        raise FieldError("--max-gpu-hours", f"{hours:g} is not allowed; give a number >= 0")


def check_resources(request: SearchRequest, gpus: float) -> None:
    """Refuse, in one line naming the option, GPU and CPU counts no search can run with: a
    trial's GPU share is a fraction of one GPU in [MIN_GPU_SHARE, 1] (0 only for CPU trials)."""
    for option, value in (("--gpus", gpus), ("--cpus-per-trial", request.cpus_per_trial)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise FieldError(option, f"{value:g} is not allowed; give a number >= 0")
    share = request.gpus_per_trial
    if not (math.isfinite(share) and share >= 0):
        raise FieldError("--gpus-per-trial", f"{share:g} is not allowed; {_SHARE_HINT}")
    if share > 1:
        raise FieldError(
            "--gpus-per-trial",
            f"{share:g} is more than one GPU: a trial trains on one GPU; give "
            "1, or a share of one (0.25: four trials a GPU)",
        )
    if gpus > 0 and share == 0:
        raise FieldError(
            "--gpus-per-trial",
            f"0 with --gpus {gpus:g}: give each trial a share above 0 (0.5: two trials a GPU), "
            "or --gpus 0 for CPU trials",
        )
    if gpus > 0 and share < MIN_GPU_SHARE:
        raise FieldError(
            "--gpus-per-trial",
            f"{share:g} is {trials_per_gpu(share):,} trials a GPU, each with a CUDA context of "
            f"its own (about half a GB); {_SHARE_HINT}",
        )
    if request.cpus_per_trial == 0:
        raise FieldError("--cpus-per-trial", "0 is not allowed; give a number above 0")


# the smallest share of a GPU a trial may take: 100 trials a GPU (each trial's CUDA context
# alone takes about half a GB; an 80 GB GPU holds ~160 of them and nothing else)
MIN_GPU_SHARE = 0.01
_SHARE_HINT = f"give a share of one GPU in [{MIN_GPU_SHARE:g}, 1] (0.25: four trials a GPU)"


def check_local_gpus(request: SearchRequest, gpus: float, gpu_count: Callable[[], int]) -> None:
    """Refuse a --gpus the local executor cannot spread trials over: more GPUs than this
    machine has, GPUs for CPU trials (--device cpu), or several for the one --device cuda:i
    names."""
    if request.gpus is None or gpus == 0:
        return  # every GPU --device gives, counted on this machine
    device = request.device
    if device == "cpu":
        raise FieldError(
            "--gpus",
            f"{gpus:g} with --device cpu: CPU trials take no GPU; give --gpus 0 (or leave it "
            "out), or --device auto for GPU trials",
        )
    if device.startswith("cuda:") and gpus > 1:
        raise FieldError(
            "--gpus",
            f"{gpus:g} with --device {device}: the trials train on that one GPU; give --gpus 1, "
            f"or --device cuda to spread them over cuda:0..{math.ceil(gpus) - 1}",
        )
    here = gpu_count()
    if gpus > here:
        fewer = f"give at most {here}" if here else "leave --gpus out for CPU trials"
        raise FieldError(
            "--gpus",
            f"{gpus:g}: this machine has {here} GPU(s) and --executor local trains on this "
            f"machine; {fewer}, or --executor ray to use a cluster's",
        )


def check_local_cores(request: SearchRequest, cores: int) -> None:
    """Refuse a --cpus-per-trial above this machine's cores on the local executor: a trial's
    threads would outnumber the cores (and slow every kernel), not wait for more."""
    wanted = request.cpus_per_trial
    if wanted is not None and wanted > cores:
        raise FieldError(
            "--cpus-per-trial",
            f"{wanted:g}: this machine has {cores} core(s) and --executor local trains on it; "
            f"give at most {cores}",
        )


def check_gpu_hours_cap(request: SearchRequest, gpus_per_trial: float) -> None:
    """Refuse --max-gpu-hours for a search whose trials get no GPU: they record 0 GPU-hours,
    so the cap could never stop it."""
    if request.max_gpu_hours is not None and gpus_per_trial == 0:
        raise FieldError(
            "--max-gpu-hours",
            "this search's trials get no GPU (CPU trials record 0 GPU-hours), so it could "
            "never stop it; cap a CPU search's time with --timeout SECONDS",
        )


def check_trial_device(
    request: SearchRequest,
    gpus_per_trial: float,
    study: Study,
    gpu_count: Callable[[], int],
    ray: RayTarget,
) -> None:
    """Refuse, in one line naming the option, a device, precision or compiled steps the trials
    cannot have (on Ray: before ``ray`` is joined or started)."""
    from trainers.runtime.device import (
        check_device_spec,
        compile_for,
        resolve_device,
        resolve_precision,
    )

    def fits(where: str) -> None:  # the study's precision and compile on that device
        resolved = resolve_device(where)
        resolve_precision(study.training.precision, resolved)
        compile_for(study.training.compile, resolved)

    device = check_device_spec(request.device)
    if request.executor == Executor.LOCAL.value:
        fits(device)
        return
    if device.startswith("cuda:"):
        raise FieldError(
            "--device",
            f"{device}: with --executor ray every trial uses the GPU(s) Ray assigns it; "
            "use auto or cuda (or --executor local)",
        )
    if device == "cuda" and gpus_per_trial == 0:
        raise FieldError(
            "--device", "cuda: the trials get no GPU from Ray (--gpus 0); give --gpus, or use auto"
        )
    if ray.joins:
        return  # a cluster's nodes are checked when Ray starts
    if gpus_per_trial == 0:
        fits("cpu")
        return
    local = gpu_count()
    if local == 0 and request.gpus is not None:  # refused below too: name the option given
        raise FieldError(
            "--gpus",
            f"{request.gpus:g}: this machine has 0 GPU(s) and the search's Ray runs on it "
            "alone; leave --gpus out for CPU trials, or join a cluster with --address HOST:PORT",
        )
    if gpus_per_trial > local:
        raise FieldError(
            "--gpus-per-trial",
            f"{gpus_per_trial:g}: no node can give a trial that many GPUs (this machine has "
            f"{local:g})",
        )
    fits("cuda")


def replay_spec(trainer_spec: str) -> ReplaySpec | None:
    """``--trainer``: None for "study", the replay's spec for "replay:FILE[?delay=SECONDS]"
    (its file must exist); anything else is refused."""
    if trainer_spec.startswith(REPLAY_PREFIX):
        replay = ReplaySpec.parse(trainer_spec)
        if not Path(replay.path).is_file():
            raise FieldError("--trainer", f"replay file {replay.path!r} does not exist")
        return replay
    if trainer_spec != "study":
        raise FieldError("--trainer", f"{trainer_spec!r} is not 'study' or 'replay:FILE'")
    return None


def parse_executor(request: SearchRequest) -> Executor:
    """``--executor``; with it ``--address``, which only the ray executor uses (the local one
    would ignore it and train here)."""
    try:
        executor = Executor(request.executor)
    except ValueError:
        allowed = ", ".join(e.value for e in Executor)
        raise FieldError("--executor", f"{request.executor!r} is not one of: {allowed}") from None
    if executor is Executor.LOCAL and request.address:
        raise FieldError(
            "--address",
            f"{request.address} with --executor local: the local executor trains on this "
            "machine without Ray; give --executor ray to join that cluster",
        )
    return executor
