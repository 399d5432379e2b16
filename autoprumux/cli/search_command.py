"""What ``autoprumux search`` does between parsing its options and printing: choose the study,
the trainer, the throughput table and the executor; run the search; shape the outcome."""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoprumux.cli.outputs import decision_dict, format_decision
from autoprumux.core.answer import TRAIN_COMMAND_ATTR, ModelPointer, TrainCommand, locate_model
from autoprumux.core.budget import Budget
from autoprumux.core.errors import FieldError
from autoprumux.core.study import Study, load_study
from autoprumux.core.tasks import TASKS
from autoprumux.core.throughput import ThroughputTable
from autoprumux.embedded import checkout_studies, copy_studies, packaged_studies
from autoprumux.files.atomic import check_output
from autoprumux.files.results_io import read_results, read_throughput_table
from autoprumux.loop.costs import recipe_of
from autoprumux.loop.driver import (
    Event,
    SearchConfig,
    SearchDriver,
    SearchOutcome,
    run_local,
)
from autoprumux.loop.masking import has_password, masked_url
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.ray_auth import join_with_token
from autoprumux.loop.storage_check import StorageUse, check_storage
from autoprumux.loop.trial_sources import ReplaySpec, ReplayTrainer, StudyTrainer
from autoprumux.report.sources import from_storage, search_report_path

if TYPE_CHECKING:  # Ray is imported only when a search runs on it
    from autoprumux.loop.ray_executor import Cluster


@dataclass(frozen=True, kw_only=True)
class SearchRequest:
    task: str | None  # None: the study file's task, else sst2
    study_path: str | None
    budget: Budget
    gpus: float | None
    gpus_per_trial: float
    cpus_per_trial: float | None
    executor: str
    address: str | None
    storage: str | None
    trainer_spec: str
    throughput_path: str | None
    max_trials: int | None
    max_gpu_hours: float | None
    max_retries: int
    top_k: int
    device: str = "auto"  # where trials train: auto, cpu, cuda (cuda:i with --executor local)
    early_stop: bool = True  # --no-early-stop: False


@dataclass(frozen=True, kw_only=True)
class SearchSummary:
    """What ``autoprumux search`` prints at the end: ``text``, or with --json ``document``."""

    text: str
    document: dict[str, Any]  # JSON-ready: plain values only


def cuda_available() -> bool:
    return _gpu_count() > 0


def default_study_path(
    task: str, gpu: bool, echo: Callable[[str], None] | None = None, copy: bool = False
) -> Path:
    """studies/<task>-tiny.toml without a GPU (the embedded default), studies/<task>.toml with
    one; looked up in ./studies first (a project of your own), then in the repository checkout
    autoprumux runs from (used in place, as it always was). An installed autoprumux carries its
    studies inside the package, where nothing may be written: with ``copy``, they are copied
    into ./studies (files already there are kept), said in one line, and used from there, so
    the study's database, artifacts, tables and report land in the current folder."""
    name = f"{task}.toml" if gpu else f"{task}-tiny.toml"
    local = Path("studies") / name
    if local.is_file():
        return local
    checkout, packaged = checkout_studies(), packaged_studies()
    if checkout is not None and (checkout / name).is_file():
        return checkout / name
    if packaged is not None and (packaged / name).is_file():
        if not copy:
            raise FieldError(
                "--study",
                f"no study given and {local} does not exist (autoprumux search copies the "
                "packaged studies there); pass --study FILE",
            )
        _copy_packaged_studies(packaged, local.parent, echo or (lambda line: None))
        return local
    others = [str(folder / name) for folder in (checkout, packaged) if folder is not None]
    missing = (
        f"neither {local} nor {' nor '.join(others)} exists" if others else f"{local} is missing"
    )
    raise FieldError("--study", f"no study given and {missing}; pass --study FILE")


def _copy_packaged_studies(packaged: Path, into: Path, echo: Callable[[str], None]) -> None:
    try:
        copied = copy_studies(packaged, into)
    except OSError as err:
        raise FieldError(
            "--study",
            f"cannot copy the packaged studies into {into.resolve()}: {err}; run from a folder "
            "you can write to, or pass --study FILE",
        ) from None
    echo(
        f"copied the packaged studies into {into.resolve()} ({len(copied)} files): the "
        "study's database, artifacts and tables are kept there"
    )


def choose_study(request: SearchRequest, echo: Callable[[str], None]) -> Study:
    """The study file given, or the default one for the task; a --task that is not the study
    file's task is refused (it would silently search the file's task)."""
    if request.task is not None and request.task not in TASKS:
        raise FieldError("--task", f"{request.task!r} is not one of: {', '.join(TASKS)}")
    if request.study_path:
        study = load_study(request.study_path)
        if request.task is not None and study.task != request.task:
            raise FieldError(
                "--task",
                f"{request.task!r} differs from the task of {request.study_path} "
                f"({study.task!r}); leave --task out to search {study.task}",
            )
        return study
    gpu = cuda_available() or bool(request.gpus)
    path = default_study_path(request.task or "sst2", gpu, echo, copy=True)
    study = load_study(path)
    echo(f"study: {path} ({'a GPU is present' if gpu else 'no GPU here: the embedded default'})")
    return study


def choose_table(
    request: SearchRequest, study: Study, echo: Callable[[str], None]
) -> tuple[ThroughputTable, Path | None]:
    """The throughput table the search ranks by, and its file (None for a replay's own
    throughputs, which the study's records then hold too)."""
    if request.throughput_path:
        return read_throughput_table(request.throughput_path), Path(request.throughput_path)
    if request.trainer_spec.startswith("replay:"):
        results = read_results(ReplaySpec.parse(request.trainer_spec).path)
        return ThroughputTable.from_results(results, results.resolve_task(study.task)), None
    from autoprumux.measurement import default_table_path, run_measure

    path = default_table_path(study, study.throughput)
    if not path.is_file():
        echo(f"measuring the throughput table first (training-free estimates) -> {path}")
        run_measure(study, study.throughput, out_path=str(path))
    return read_throughput_table(path), path


def make_trainer(
    request: SearchRequest, study: Study, threads: int = 0
) -> ReplayTrainer | StudyTrainer:
    if request.trainer_spec.startswith("replay:"):
        replay = ReplaySpec.parse(request.trainer_spec)  # replay:FILE[?delay=SECONDS]
        if not Path(replay.path).is_file():
            raise FieldError("--trainer", f"replay file {replay.path!r} does not exist")
        return ReplayTrainer(
            path=str(Path(replay.path).resolve()), task=study.task, delay_s=replay.delay_s
        )
    if request.trainer_spec != "study":
        raise FieldError("--trainer", f"{request.trainer_spec!r} is not 'study' or 'replay:FILE'")
    path = str(study.path.resolve()) if study.path else ""
    return StudyTrainer(study_path=path, device=request.device, threads=threads)


def run_search_command(request: SearchRequest, echo: Callable[[str], None]) -> SearchSummary:
    study = choose_study(request, echo)
    gpus_here = (
        request.gpus
        if request.gpus is not None
        else (_gpu_count() if request.executor == "ray" else 0.0)
    )
    check_resources(request, gpus_here)
    # before hours of training: the report written at the end must be writable
    check_output(search_report_path(study), "report")
    if request.trainer_spec == "study":  # before Ray starts: a device the trials cannot have
        # a cluster's GPUs are known once it is joined: there, trials get GPUs unless --gpus 0
        get_gpus = gpus_here > 0 or (request.address is not None and request.gpus is None)
        check_trial_device(request, study, request.gpus_per_trial if get_gpus else 0.0)
    # before Ray starts (seconds, and its log lines): a storage the search cannot use

    check_storage(request.storage or study.storage_url, StorageUse.CREATE)
    if request.executor != "ray":
        return _run_search(request, study, None, echo)
    if request.address:
        join_with_token()  # before Ray is imported: it reads its auth mode then
    from autoprumux.loop.ray_executor import ray_cluster

    with ray_cluster(request.address) as cluster:
        return _run_search(request, study, cluster, echo)


def _run_search(
    request: SearchRequest, study: Study, cluster: Cluster | None, echo: Callable[[str], None]
) -> SearchSummary:
    """The search on the local executor (``cluster`` None) or on the joined Ray cluster, its
    trials at once sized from the cluster's nodes (a trial runs on one node)."""
    gpus = request.gpus if request.gpus is not None else (cluster.gpus if cluster else 0.0)
    check_resources(request, gpus)
    per_trial_gpu = request.gpus_per_trial if gpus > 0 else 0.0
    cores = os.cpu_count() or 1
    if cluster is None:
        cpus = request.cpus_per_trial or (1.0 if gpus > 0 else float(cores))
        workers = max(1, int(gpus // per_trial_gpu)) if gpus > 0 else max(1, int(cores // cpus))
    else:
        from autoprumux.loop.ray_executor import check_cluster

        check_cluster(cluster, gpus, per_trial_gpu)
        # a CPU trial takes a whole node by default: the smallest node's cores
        cpus = request.cpus_per_trial or (1.0 if gpus > 0 else min(cluster.node_cpus))
        workers = cluster.trials_at_once(cpus, per_trial_gpu)
        if gpus > 0:  # --gpus caps the GPUs the search takes from the cluster
            workers = min(workers, max(1, int(gpus // per_trial_gpu)))
    # a trial's CPU threads change its float sums: the same count on every executor
    trainer = make_trainer(request, study, threads=max(1, int(cpus)))
    if cluster is not None and request.address:
        from autoprumux.loop.ray_executor import check_nodes_share

        nodes = check_nodes_share(trainer.worker_paths())
        echo(f"Ray cluster at {request.address}: {len(nodes)} node(s) see the study's files")
    table, table_path = choose_table(request, study, echo)
    config = SearchConfig(
        study_name=study.name,
        task=study.task,
        grid=study.grid.grid,
        budget=request.budget,
        storage_url=request.storage or study.storage_url,
        workers=workers,
        max_trials=request.max_trials,
        max_gpu_hours=request.max_gpu_hours,
        max_retries=request.max_retries,
        gpus_per_trial=per_trial_gpu,
        top_k=request.top_k,
        recipe=recipe_of(study),
        early_stop=request.early_stop,
    )
    store = OptunaStore(
        config.storage_url, config.study_name, config.grid, config.task, study.recipe
    )
    if table_path is not None:  # the report of this study ranks by the same table
        store.study.set_user_attr("throughput_table", str(table_path.resolve()))
    train = train_command(request, study)
    if train is not None:  # the report of this study says how to train a predicted point
        store.study.set_user_attr(TRAIN_COMMAND_ATTR, train.to_dict())
    echo(
        f"study {study.name!r} in {masked_url(config.storage_url)} | "
        f"{request.budget.kind.value} budget "
        f"{request.budget.value:g} | {workers} trial(s) at a time ({request.executor})"
    )
    driver = SearchDriver(config, table, store, on_event=lambda e: echo(_event_line(e)))
    if cluster is not None:
        from autoprumux.loop.ray_executor import run_ray

        outcome = run_ray(driver, trainer, workers, per_trial_gpu, cpus)
    else:
        outcome = run_local(driver, trainer, workers)
    return _report(outcome, config, table, study, request, train)


def train_command(request: SearchRequest, study: Study) -> TrainCommand | None:
    """How ``autoprumux train`` trains a point as this search does: the same study file (the
    default one for the bare command), the study's seed, and the search's --device."""
    if study.path is None:
        return None
    return TrainCommand(
        study_path=str(study.path.resolve()), study_seed=study.study.seed, device=request.device
    )


def recommended_model(outcome: SearchOutcome, train: TrainCommand | None) -> ModelPointer | None:
    """The top-1's model folder, or the command that trains it; None with no top-1."""
    if outcome.decision is None or not outcome.decision.recommendations:
        return None
    return locate_model(outcome.decision.recommendations[0].point, outcome.records, train)


def check_resources(request: SearchRequest, gpus: float) -> None:
    """Refuse, in one line naming the option, GPU and CPU counts no search can run with."""
    for option, value in (
        ("--gpus", gpus),
        ("--gpus-per-trial", request.gpus_per_trial),
        ("--cpus-per-trial", request.cpus_per_trial),
    ):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise FieldError(option, f"{value:g} is not allowed; give a number >= 0")
    if gpus > 0 and request.gpus_per_trial == 0:
        raise FieldError(
            "--gpus-per-trial",
            f"0 with --gpus {gpus:g}: give each trial a share above 0 (0.5: two trials a GPU), "
            "or --gpus 0 for CPU trials",
        )
    if request.cpus_per_trial == 0:
        raise FieldError("--cpus-per-trial", "0 is not allowed; give a number above 0")


def check_trial_device(request: SearchRequest, study: Study, gpus_per_trial: float) -> None:
    """Refuse, in one line naming the option, a device or precision the trials cannot have."""
    from trainers.runtime.device import check_device_spec, resolve_device, resolve_precision

    device = check_device_spec(request.device)
    if request.executor == "local":
        resolve_precision(study.training.precision, resolve_device(device))
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
    if request.address or gpus_per_trial == 0:
        return  # a cluster's nodes are checked when Ray starts
    local = _gpu_count()
    if gpus_per_trial > local:
        raise FieldError(
            "--gpus-per-trial",
            f"{gpus_per_trial:g}: no node can give a trial that many GPUs (this machine has "
            f"{local:g})",
        )
    resolve_precision(study.training.precision, resolve_device("cuda"))


def dashboard_hint(url: str, study: Study, request: SearchRequest) -> str:
    """The command that serves this study's dashboard, without the storage's password: a URL
    with one is named by the study file that holds it (a command that works as printed), or
    shown masked with a note to put the password back (it came from --storage)."""
    if not has_password(url):
        return f"autoprumux dashboard --storage {shlex.quote(url)}"
    if request.storage is None and study.path is not None:
        return f"autoprumux dashboard --study {shlex.quote(str(study.path))}"
    return (
        f"autoprumux dashboard --storage {shlex.quote(masked_url(url))} "
        "(the password is masked: put yours in place of ***)"
    )


def _write_report(config: SearchConfig, study: Study, request: SearchRequest) -> str:
    from autoprumux.report.html import write_report

    data = from_storage(
        config.storage_url, config.study_name, request.budget, request.throughput_path
    )
    return str(write_report(data, search_report_path(study)))


def _gpu_count() -> float:
    from trainers.runtime.device import cuda_device_count

    return float(cuda_device_count())


def _event_line(event: Event) -> str:
    kind = event.kind.value
    what = f"{kind:<8} {event.point}" if event.point is not None else kind
    if event.record is not None and event.record.accuracy is not None:
        what += f" accuracy {event.record.accuracy:.4f}, {event.record.throughput:,.1f}/s"
    elif event.record is not None and event.record.reason:
        what += f" ({event.record.reason})"
    if event.message:
        what += f" ({event.message})"
    return (
        f"{what} | running {event.running}, done {event.done}, failed {event.failed}"
        f" | best so far {event.best if event.best is not None else '-'}"
    )


def _report(
    outcome: SearchOutcome,
    config: SearchConfig,
    table: ThroughputTable,
    study: Study,
    request: SearchRequest,
    train: TrainCommand | None,
) -> SearchSummary:
    summary = (
        f"stopped: {outcome.stop_reason.value} | trainings: {outcome.trainings_this_run} this run, "
        f"{outcome.trainings_total} in the study ({outcome.failed_total} failed, "
        f"{outcome.stopped_total} stopped early, "
        f"{outcome.free_total} more point(s) recorded free) of a "
        f"{outcome.grid_size}-point grid | GPU-hours {outcome.gpu_hours_total:.2f}"
    )
    decision_json = (
        decision_dict(outcome.decision, masked_url(config.storage_url), table)
        if outcome.decision
        else None
    )
    best = recommended_model(outcome, train)
    text = [summary, ""]
    if outcome.decision is not None:
        text.append(format_decision(outcome.decision, f"study {study.name}", table))
        # the table's throughput/s and speedup and its measured/s come from two sources
        text.append(
            f"throughput/s and speedup: {table.describe()}; measured/s: timed inside each trial"
        )
    else:
        text.append("no recommendation: the (1, 0) baseline has not been trained")
    if best is not None:
        text += ["", f"answer: {best.message}"]
    report = _write_report(config, study, request)
    text += [
        "",
        f"report: {report}",
        f"dashboard: {dashboard_hint(config.storage_url, study, request)}",
    ]
    return SearchSummary(
        text="\n".join(text),
        document={
            "study": study.name,
            "storage": masked_url(config.storage_url),
            "stop_reason": outcome.stop_reason.value,
            "trainings_this_run": outcome.trainings_this_run,
            "trainings_total": outcome.trainings_total,
            "free_total": outcome.free_total,
            "failed_total": outcome.failed_total,
            "stopped_total": outcome.stopped_total,
            "grid_size": outcome.grid_size,
            "gpu_hours_total": outcome.gpu_hours_total,
            "best": None if best is None else best.to_dict(),
            "decision": decision_json,
            "report": report,
        },
    )
