"""A search as an application-level object: :class:`SearchSession` checks everything a search
needs before any long work (:meth:`~SearchSession.plan`), then runs it (:meth:`~SearchSession.run`)
and answers a :class:`~autoprumux.session.summary.SearchResult`. ``autoprumux search`` and
``autoprumux.search(...)`` are two thin faces of it: the first parses options and prints, the
second takes keyword arguments and returns.

Progress lines go to a callback (the CLI's stderr, or the ``autoprumux`` logger); nothing here
prints. Optuna, SQLAlchemy, Ray and torch are imported only when a search needs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from autoprumux.core.answer import TRAIN_COMMAND_ATTR, ModelState, locate_model
from autoprumux.core.data_spec import data_spec
from autoprumux.core.errors import AutoPruMuxError, DataError, FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.progress import ProgressLines
from autoprumux.core.recipe import RecipeRecord, recipe_record
from autoprumux.core.recommender import Objective
from autoprumux.core.records import HeldOutScore
from autoprumux.core.study import Study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.atomic import check_output
from autoprumux.files.results_io import read_results, read_throughput_table
from autoprumux.loop.costs import recipe_of
from autoprumux.loop.device_slots import DeviceSlots, gpu_devices, trials_per_gpu
from autoprumux.loop.driver import SearchConfig, SearchDriver, SearchOutcome, run_local
from autoprumux.loop.ray_address import OWN_RAY, ray_target
from autoprumux.loop.trainer_contract import Trainer
from autoprumux.loop.trial_sources import ReplayTrainer, StudyTrainer
from autoprumux.report.sources import search_report_path
from autoprumux.session.search_checks import (
    TaskData,
    check_gpu_hours_cap,
    check_limits,
    check_local_cores,
    check_local_gpus,
    check_resources,
    check_task_data,
    check_timeout,
    check_trial_device,
    choose_study,
    parse_executor,
    replay_spec,
    served_precisions,
)
from autoprumux.session.search_request import (
    DEFAULT_GPUS_PER_TRIAL,
    Executor,
    SearchPlan,
    SearchRequest,
)
from autoprumux.session.sizing import NodeSize, TrialSlots, size_trials
from autoprumux.session.summary import (
    HeldOut,
    SearchFacts,
    SearchResult,
    dashboard_hint,
    event_line,
    recommended_model,
    search_report_input,
    summarize,
    train_command,
    write_search_report,
)

if TYPE_CHECKING:  # Ray is imported only when a search runs on it
    from autoprumux.loop.ray_executor import Cluster
    from autoprumux.loop.store_contract import StudyStore
    from autoprumux.report.data import ReportInput
    from autoprumux.session.dry_run import SearchForecast

log = logging.getLogger("autoprumux")

__all__ = ["Executor", "SearchPlan", "SearchRequest", "SearchSession"]


class SearchSession:
    """One search of one study: :meth:`plan`, then :meth:`run` (which plans first when given
    no plan)."""

    def __init__(
        self,
        request: SearchRequest,
        progress: Callable[[str], None] | None = None,
        *,
        gpu_count: Callable[[], int] | None = None,
        cores: int | None = None,
        processes: bool | None = None,
    ) -> None:
        """``progress`` takes each progress line (default: the ``autoprumux`` logger, at INFO);
        ``gpu_count`` counts this machine's CUDA devices and ``cores`` its CPU cores (defaults:
        torch's count, os.cpu_count(); a test may pretend); ``processes`` runs each local trial
        in a process of its own or not (default: GPU trials of real training do; a test may
        ask for processes on a CPU machine)."""
        self.request = request
        self.progress = progress or log.info
        self._gpu_count = gpu_count or _cuda_device_count
        self._cores = cores or os.cpu_count() or 1
        self._processes = processes

    # -- before any long work ---------------------------------------------------------------

    def plan(self) -> SearchPlan:
        """Every check before long work, each refusal one line naming the option: the study
        and its task, the timeout, the executor and resources, the report's file, the trainer
        and the device its trials need, the storage; and the trials at once (local)."""
        request = self.request
        check_timeout(request.timeout_s)
        check_limits(request)
        executor = parse_executor(request)
        # where Ray's own lookup would take ray.init(), known before any check of resources
        ray = ray_target(request.address) if executor is Executor.RAY else OWN_RAY
        study = choose_study(request)
        gpus = self._gpus_before_ray(executor)
        check_resources(request, gpus)
        if gpus == 0 and not (ray.joins and request.gpus is None):
            self._note_unused_share()
        if executor is Executor.LOCAL:
            check_local_gpus(request, gpus, self._gpu_count)
            check_local_cores(request, self._cores)
        # before hours of training: the report written at the end must be writable
        report = check_output(search_report_path(study), "report")
        precisions = served_precisions(study)
        replay = replay_spec(request.trainer_spec)
        task_data: TaskData | None = None  # a replay reads no data
        if replay is None:  # before Ray starts: a device the trials cannot have
            # a cluster's GPUs are known once it is joined: there, trials get GPUs unless --gpus 0
            get_gpus = gpus > 0 or (ray.joins and request.gpus is None)
            share = request.gpus_per_trial if get_gpus else 0.0
            check_trial_device(request, share, study, self._gpu_count, ray)
            task_data = check_task_data(study)
        storage_url = request.storage or study.storage_url
        # before Ray starts (seconds, and its log lines): a storage the search cannot use
        from autoprumux.loop.storage_check import StorageUse, check_storage

        check_storage(storage_url, StorageUse.CREATE)
        cluster_decides = ray.joins and request.gpus is None
        if not cluster_decides and gpus == 0:
            check_gpu_hours_cap(request, 0.0)
        slots = None
        devices: tuple[str, ...] = ()
        if executor is Executor.LOCAL:
            slots = size_trials(
                cores=self._cores,
                gpus=gpus,
                gpus_per_trial=request.gpus_per_trial,
                cpus_per_trial=request.cpus_per_trial,
            )
            devices = gpu_devices(request.device, gpus if slots.gpus_per_trial else 0.0)
        # a replay holds no GPU: its trials, GPU ones too, are threads (nothing to isolate)
        processes = bool(devices) and replay is None
        return SearchPlan(
            study=study,
            executor=executor,
            storage_url=storage_url,
            report=report,
            replay=replay,
            slots=slots,
            devices=devices,
            processes=processes if self._processes is None else self._processes,
            train=train_command(study, request.device),
            train_examples=task_data.train_examples if task_data else None,
            labels=task_data.labels if task_data else (),
            fine_tuned=task_data.fine_tuned if task_data else False,
            one_label=task_data.one_label if task_data else None,
            precisions=precisions,
            ray=ray,
        )

    def _note_unused_share(self) -> None:
        """Say that a --gpus-per-trial given to a search whose trials get no GPU does nothing
        (a command copied from a GPU machine would otherwise run CPU trials without a word)."""
        share = self.request.gpus_per_trial
        if share != DEFAULT_GPUS_PER_TRIAL:
            why = "--gpus 0" if self.request.gpus == 0 else "this machine has no GPU"
            if self.request.device == "cpu":
                why = "--device cpu"
            self.progress(
                f"note: --gpus-per-trial {share:g} is unused: the trials run on the CPU ({why})"
            )

    def _gpus_before_ray(self, executor: Executor) -> float:
        """The search's GPUs as known before Ray starts: --gpus; else on Ray this machine's
        (a joined cluster's replace them once known); else on the local executor the GPUs its
        trials spread over: every one this machine has with --device auto or cuda, the one
        --device cuda:i names, none with --device cpu."""
        request = self.request
        if request.gpus is not None:
            return request.gpus
        if executor is Executor.RAY:
            return float(self._gpu_count())
        if request.device == "cpu":
            return 0.0
        if request.device.startswith("cuda:"):
            return min(float(self._gpu_count()), 1.0)
        return float(self._gpu_count())

    # -- the search -------------------------------------------------------------------------

    def run(self, plan: SearchPlan | None = None) -> SearchResult:
        """Run the planned search (Ray started, or the cluster joined, when asked) and answer
        its result; the HTML report is written at the end."""
        plan = plan or self.plan()
        if plan.executor is Executor.LOCAL:
            return self._search(plan, None)
        from autoprumux.loop.ray_auth import join_with_token

        if plan.ray.joins:
            join_with_token()  # before Ray is imported: it reads its auth mode then
            self.progress(f"joining the Ray cluster at {plan.ray.address} ({plan.ray.given_by})")
        from autoprumux.loop.ray_executor import ray_cluster

        with ray_cluster(plan.ray) as cluster:
            return self._search(plan, cluster)

    def _search(self, plan: SearchPlan, cluster: Cluster | None) -> SearchResult:
        """The search on the local executor (``cluster`` None) or on the joined Ray cluster, its
        trials at once sized from the cluster's nodes (a trial runs on one node)."""
        request = self.request
        slots = plan.slots if cluster is None else self._cluster_slots(cluster)
        assert slots is not None  # the local executor's are sized by plan()
        # a trial's CPU threads change its float sums: the same count on every executor
        trainer = make_trainer(
            plan,
            request.device,
            threads=max(1, int(slots.cpus_per_trial)),
            gpu_share=slots.gpus_per_trial or 1.0,
            # trials in threads of this process say their lines as the search does (a Python
            # caller's progress); processes (Ray's workers, GPU trials) print theirs
            lines=self.progress if cluster is None and not plan.processes else None,
        )
        if cluster is not None and plan.ray.joins:
            from autoprumux.loop.ray_executor import check_nodes_share

            nodes = check_nodes_share(trainer.worker_paths(), plan.ray)
            self.progress(
                f"Ray cluster at {plan.ray.address} ({plan.ray.given_by}): {len(nodes)} node(s) "
                "see the study's files"
            )
        table, table_path = self._table(plan)
        if request.objective is Objective.LATENCY and not table.latency:
            raise FieldError(
                "--objective",
                f"latency needs the batch-1 latency of each point, and {table.source} has none "
                "(no latency_s column); autoprumux measure records it",
            )
        config = replace(self._config(plan, slots), precisions=searched_precisions(plan, table))
        tested = has_test_split(plan.study)  # known before the search: a bad [data] fails now
        from autoprumux.loop.masking import masked_url
        from autoprumux.loop.optuna_store import OptunaStore

        store = OptunaStore(
            config.storage_url,
            config.study_name,
            config.grid,
            config.task,
            stored_recipe(plan.study),
        )
        try:
            driver = self._driver(plan, config, table, table_path, store, slots)
        except BaseException:
            store.close()
            raise
        if cluster is not None:
            from autoprumux.loop.ray_executor import run_ray

            outcome = run_ray(
                driver,
                trainer,
                slots.workers,
                slots.gpus_per_trial,
                slots.cpus_per_trial,
                plan.ray,
            )
        elif plan.devices or plan.processes:  # GPU trials: placed, each in its own process
            devices = None
            if plan.devices:
                devices = DeviceSlots.for_share(plan.devices, slots.gpus_per_trial)
            outcome = run_local(
                driver, trainer, slots.workers, devices=devices, processes=plan.processes
            )
        else:  # CPU trials: threads of this process
            outcome = run_local(driver, trainer, slots.workers)
        # the search has answered: from here on nothing it decided can change
        data = replace(
            search_report_input(
                plan.storage_url, plan.study, request.budget, request.throughput_path
            ),
            objective=request.objective,
        )
        held_out = None
        # what the search ranked by: a static int8 model's row scaled to its file
        table = table.with_recipe_speeds(data.observations.recipe_speed)
        models = self._answer_models(plan, outcome, data)
        if models.folders:
            record_table_speeds(models.folders, table, self.progress)
        if tested:
            held_out, data = self._held_out(plan, models, data, store, cluster is not None)
        report = write_search_report(data, plan.report)
        facts = SearchFacts(
            study=plan.study,
            storage_shown=masked_url(plan.storage_url),
            dashboard=dashboard_hint(plan.storage_url, plan.study, request.storage is not None),
            table=table,
            train=plan.train,
            report=report,
            test=held_out,
            one_label=plan.one_label,
        )
        return summarize(outcome, facts)

    def _answer_models(
        self, plan: SearchPlan, outcome: SearchOutcome, data: ReportInput
    ) -> AnswerModels:
        """The model folders of the answer and of the trained points of every budget's top-3
        (the report's), once the search has answered; and a note for each that has none."""
        from autoprumux.report.data import points_to_score

        if plan.replay is not None:
            replayed = "a replayed search (--trainer replay:FILE) has no model folders to score"
            return AnswerModels(answer=None, folders={}, notes=(replayed,))
        recommended = recommended_model(outcome, plan.train)
        answer = recommended.point.trained if recommended is not None else None
        folders: dict[GridPoint, Path] = {}
        notes: list[str] = []
        for point in points_to_score(data, answer):
            # where each folder is now: a copied project's own, never the original's it recorded
            model = locate_model(point, outcome.records, plan.train)
            if model.state is ModelState.SAVED and model.model_dir is not None:
                folders[point] = Path(model.model_dir)
            else:
                notes.append(_untested(point, model.state, model.gone_dir))
        return AnswerModels(answer=answer, folders=folders, notes=tuple(notes))

    def _held_out(
        self,
        plan: SearchPlan,
        models: AnswerModels,
        data: ReportInput,
        store: StudyStore,
        on_ray: bool,
    ) -> tuple[HeldOut, ReportInput]:
        """The answer and the trained points of every budget's top-3 (the report's:
        ``models``) scored on the study's test split, once, after the search has answered; the
        figures stored in the study (for ``autoprumux report``) and the report's data. On Ray
        this runs here, in the driver's process. A figure that cannot be had is a note, never a
        failed search."""
        from autoprumux.report.sources import TEST_SCORES_ATTR, held_out_attr

        if plan.replay is not None:
            return HeldOut(scores={}, answer=None, notes=models.notes), data
        folders, notes = models.folders, list(models.notes)
        scores: dict[GridPoint, HeldOutScore] = {}
        if folders:
            from trainers.trial.test_figures import score_held_out  # torch

            device = self._test_device(on_ray)
            self.progress(
                f"held-out test: scoring {len(folders)} model(s) on {device}, once, after the "
                "answer (no decision reads it)"
            )
            try:
                scores = score_held_out(plan.study, folders, device, self.progress)
            except AutoPruMuxError as err:  # the search's answer stands without its test figure
                log.warning("held-out test not scored: %s", err)
                notes.append(f"the test split could not be scored: {err}")
        # this answer's figures only (older ones may be of other folders or another test file);
        # the executor has closed the store's trials and leases, its study attributes stay open
        store.set_user_attr(TEST_SCORES_ATTR, held_out_attr(scores))
        held = HeldOut(scores=scores, answer=models.answer, notes=tuple(notes))
        return held, replace(data, test_scores=scores)

    def _test_device(self, on_ray: bool) -> str:
        """Where the held-out test runs, named (``auto`` resolved on this machine): the search's
        --device; on Ray (whose trials had the cluster's GPUs) the CPU where this machine has
        no GPU for a cuda one."""
        from trainers.runtime.device import resolve_device  # torch

        device = self.request.device
        if on_ray and device.startswith("cuda") and self._gpu_count() == 0:
            return "cpu"
        return str(resolve_device(device))

    def _cluster_slots(self, cluster: Cluster) -> TrialSlots:
        """The trials at once on the joined cluster; refuses GPU counts it cannot give."""
        from autoprumux.loop.ray_executor import check_cluster

        request = self.request
        gpus = request.gpus if request.gpus is not None else cluster.gpus
        check_resources(request, gpus)
        nodes = [NodeSize(c, g) for c, g in zip(cluster.node_cpus, cluster.node_gpus, strict=True)]
        slots = size_trials(
            cores=self._cores,
            gpus=gpus,
            gpus_per_trial=request.gpus_per_trial,
            cpus_per_trial=request.cpus_per_trial,
            nodes=nodes,
        )
        check_cluster(cluster, gpus, slots.gpus_per_trial, slots.cpus_per_trial)
        check_gpu_hours_cap(request, slots.gpus_per_trial)
        return slots

    def _table(self, plan: SearchPlan) -> tuple[ThroughputTable, Path | None]:
        """The throughput table the search ranks by, and its file (None for a replay's own
        throughputs, which the study's records then hold too)."""
        request, study = self.request, plan.study
        if request.throughput_path:
            return read_throughput_table(request.throughput_path), Path(request.throughput_path)
        if plan.replay is not None:
            results = read_results(plan.replay.path)
            return ThroughputTable.from_results(results, results.resolve_task(study.task)), None
        from autoprumux.measurement import run_measure  # torch

        path, table, why = stored_table(plan)
        if table is not None:
            return table, path
        # one search measures it at a time: two measuring at once on one machine would each
        # time the other's load, and the later one reads the table the first wrote
        with self._measuring(path):
            path, table, why = stored_table(plan)
            if table is not None:
                return table, path
            self.progress(f"measuring the throughput table first ({why}) -> {path}")
            # a minute to a quarter of an hour: its passes said a few times a phase
            lines = ProgressLines("throughput table:", self.progress)
            measured = run_measure(study, study.throughput, out_path=str(path), progress=lines)
            for warning in measured["warnings"]:
                self.progress(f"warning: {warning}")
        return read_throughput_table(path), path

    @contextlib.contextmanager
    def _measuring(self, table_path: Path) -> Iterator[None]:
        """Held while this search measures the study's table (``<table>.lock``); a search
        that finds another measuring it says so and waits."""
        from filelock import FileLock, Timeout

        table_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{table_path}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.progress(f"waiting for another search measuring {table_path}")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _stored_study_applies(self, plan: SearchPlan) -> bool:
        """Whether the storage holds the study; refused as the search would refuse it."""
        from autoprumux.loop.study_storage import check_stored_study

        study = plan.study
        grid, recipe = study.grid.grid, stored_recipe(study)
        return check_stored_study(plan.storage_url, study.name, grid, study.task, recipe)

    def _config(self, plan: SearchPlan, slots: TrialSlots) -> SearchConfig:
        request, study = self.request, plan.study
        return SearchConfig(
            study_name=study.name,
            task=study.task,
            grid=study.grid.grid,
            budget=request.budget,
            storage_url=plan.storage_url,
            workers=slots.workers,
            max_trials=request.max_trials,
            max_gpu_hours=request.max_gpu_hours,
            timeout_s=request.timeout_s,
            max_retries=request.max_retries,
            gpus_per_trial=slots.gpus_per_trial,
            top_k=request.top_k,
            recipe=recipe_of(study, plan.train_examples, plan.fine_tuned),
            early_stop=request.early_stop,
            precisions=plan.precisions,
            objective=request.objective,
        )

    def _driver(
        self,
        plan: SearchPlan,
        config: SearchConfig,
        table: ThroughputTable,
        table_path: Path | None,
        store: StudyStore,
        slots: TrialSlots,
    ) -> SearchDriver:
        """The driver of the opened study, its attributes written for the report first."""
        from autoprumux.loop.masking import masked_url
        from autoprumux.report.sources import PRECISIONS_ATTR

        # the report of this study ranks the precisions this search ranked
        store.set_user_attr(PRECISIONS_ATTR, [p.value for p in config.precisions])
        untimed = [p.value for p in plan.precisions if p not in config.precisions]
        if untimed and table_path is not None:  # a replay's table never times them: no news
            self.progress(
                f"{table.source} times no {', '.join(untimed)} rows: the search ranks "
                f"{', '.join(p.value for p in config.precisions)} only (autoprumux measure "
                "times them all)"
            )
        if table_path is not None:  # the report of this study ranks by the same table
            store.set_user_attr("throughput_table", str(table_path.resolve()))
        if plan.train is not None:  # the report of this study says how to train a predicted point
            store.set_user_attr(TRAIN_COMMAND_ATTR, plan.train.to_dict())
        if plan.labels:  # the classifier's labels in id order, as every model folder has them
            store.set_user_attr("labels", list(plan.labels))
        budget = self.request.budget
        self.progress(
            f"study {plan.study.name!r} in {masked_url(config.storage_url)} | "
            f"{budget.kind.value} budget {budget.value:g} | precisions "
            f"{', '.join(p.value for p in config.precisions)} | {slots.workers} trial(s) at a time "
            f"({plan.executor.value}{placement_words(plan, slots)})"
        )
        metric = plan.study.study.metric.label(plan.study.study.positive_label)
        return SearchDriver(
            config, table, store, on_event=lambda e: self.progress(event_line(e, metric))
        )

    # -- a dry run --------------------------------------------------------------------------

    def forecast(self, plan: SearchPlan) -> SearchForecast:
        """What the planned search would train first and what it would cost
        (:mod:`autoprumux.session.dry_run`), training nothing and writing nothing: a missing
        throughput table is estimated in memory, not measured and saved as the search would."""
        from autoprumux.session import dry_run

        request, study = self.request, plan.study
        notes = dry_run.storage_notes(plan.storage_url, lambda: self._stored_study_applies(plan))
        notes += dry_run.cap_notes(request.max_trials, request.max_gpu_hours, request.timeout_s)
        slots = plan.slots
        if slots is None and not plan.ray.joins:  # the Ray the search would start, here
            from autoprumux.loop.ray_executor import Cluster

            this_machine = Cluster(
                node_cpus=(float(self._cores),), node_gpus=(float(self._gpu_count()),)
            )
            slots = self._cluster_slots(this_machine)  # refused as the search would refuse it
        elif slots is None:  # a cluster to join: sized from this machine, checked when joined
            slots = size_trials(
                cores=self._cores,
                gpus=self._gpus_before_ray(plan.executor),
                gpus_per_trial=request.gpus_per_trial,
                cpus_per_trial=request.cpus_per_trial,
            )
            notes.append(
                "trials at once sized on this machine; the cluster's nodes decide, and --gpus "
                "and --cpus-per-trial are checked against them when the search joins it"
            )
        if request.throughput_path or plan.replay:
            table, path = self._table(plan)  # it reads the table: nothing to measure
            used = dry_run.table_used(table, path)
        else:
            table_file, stored, why = stored_table(plan)
            if stored is not None:
                table, used = stored, dry_run.table_used(stored, table_file)
            else:  # the search would measure it first: estimated in memory
                what = f"{table_file} is measured again ({why})"
                what = what if table_file.is_file() else f"no {table_file} yet"
                self.progress(f"{what}: estimating the throughputs (not saved)")
                table, used = dry_run.estimate_table(study, table_file, self.progress)
        return dry_run.forecast_search(
            study,
            request.budget,
            table,
            used,
            slots,
            notes,
            recipe_of(study, plan.train_examples, plan.fine_tuned),
            placement_words(plan, slots),
            # an estimate times fp32 alone (quick); the search's table times every precision
            plan.precisions if used.estimated else searched_precisions(plan, table),
        )


# -- what the session's steps share -----------------------------------------------------------


def stored_table(plan: SearchPlan) -> tuple[Path, ThroughputTable | None, str]:
    """The study's default table file (studies/throughput/<study>-<device>-<dtype>.json); the
    table read from it where it serves this search as it is, else None and why the search
    measures it first."""
    from autoprumux.measurement import default_table_path, measured_for_another  # torch

    study = plan.study
    path = default_table_path(study, study.throughput)
    if not path.is_file():
        return path, None, "training-free estimates"
    try:
        table = read_throughput_table(path)
    except DataError as err:  # the search wrote it, so it can write it again
        raise DataError(
            err.source,
            f"{err.message}; this study's own table: delete it and the search measures it again",
            err.row,
            err.field,
        ) from None
    missing = [p.value for p in plan.precisions if p not in table.precisions]
    if missing:
        return path, None, f"it times no {', '.join(missing)} rows"
    other = measured_for_another(table.fingerprint, study, study.throughput)
    if other:
        return path, None, f"it timed another model: {other}"
    return path, table, ""


def searched_precisions(plan: SearchPlan, table: ThroughputTable) -> tuple[Precision, ...]:
    """The study's precisions that ``table`` times (fp32 always)."""
    return tuple(p for p in plan.precisions if p in table.precisions or p is Precision.FP32)


@dataclass(frozen=True, kw_only=True)
class AnswerModels:
    """The models a finished search may recommend: the answer (its trained (N, s); None for a
    replay or no answer) and the folders of it and every budget's top-3, with a note for each
    point that has none."""

    answer: GridPoint | None
    folders: dict[GridPoint, Path]
    notes: tuple[str, ...]


def record_table_speeds(
    folders: dict[GridPoint, Path], table: ThroughputTable, say: Callable[[str], None]
) -> None:
    """Each folder's (N, s) in every precision of the table: its examples/s and batch-1
    latency, written into the folder (its card lists them beside the dev figures)."""
    from trainers.deploy.model_folder import TableSpeed, record_speeds

    described = table.describe()
    for point, folder in folders.items():
        speeds = {
            served.precision.value: TableSpeed(
                throughput=table.throughput[served],
                latency_s=table.latency.get(served),
                table=described,
            )
            for served in (point.served(p) for p in table.precisions)
            if served in table.throughput
        }
        if not speeds:
            continue
        try:
            info = record_speeds(folder, speeds)
        except AutoPruMuxError as err:  # the answer stands without them (a full disk too)
            log.warning("%s: its table speeds not recorded: %s", folder, err)
            continue
        int8 = info.precisions.get(Precision.INT8.value)
        # a static int8 file whose speed against dynamic was not measured: the row is dynamic's
        unscaled = point.served(Precision.INT8) not in table.rescaled
        if int8 is not None and int8.static_int8 and "int8" in speeds and unscaled:
            say(
                f"note: {point} in int8 was made by {int8.recipe} (dynamic int8 failed its "
                "checks), and its speed against dynamic int8 was not measured (a model from an "
                "older release): its int8 figures are dynamic int8's"
            )


def stored_recipe(study: Study) -> RecipeRecord:
    """What the study's storage records of its recipe and compares a stored one with: the
    settings, and the content keys of what they name by path: the data (``data_id``: the
    train and dev sources' content and the settings that shape the tables) and a local model
    folder (``model_files_id``)."""
    from trainers.data.tables import data_id
    from trainers.trial.cache_keys import model_files_id

    contents = {"data": data_id(data_spec(study))}
    if (model := model_files_id(study)) is not None:
        contents["model"] = model
    return replace(recipe_record(study), contents=contents)


def has_test_split(study: Study) -> bool:
    """Whether the study holds out a test split: a given one, or one carved by
    ``test_fraction``."""
    spec = data_spec(study)
    return spec.test is not None or spec.test_fraction > 0


def _untested(point: GridPoint, state: ModelState, gone: str | None) -> str:
    """Why a point to be tested has no test figure, in words."""
    if state is ModelState.PREDICTED:
        return f"{point} is predicted, not trained: there is no model to score"
    if state is ModelState.FOLDER_GONE:
        return f"{point}'s model folder {gone} is not on this machine"
    if state is ModelState.STOPPED_EARLY:
        return f"{point} was trained but stopped early: there is no model to score"
    return f"{point} was trained, but no model folder was recorded with it"


def make_trainer(
    plan: SearchPlan,
    device: str,
    threads: int,
    gpu_share: float = 1.0,
    lines: Callable[[str], None] | None = None,
) -> Trainer:
    """The trainer of the plan: the recorded grid it replays, or the study's real training
    (``threads`` CPU threads a trial, on ``device``, capped to ``gpu_share`` of its GPU's
    memory: Ray's workers are processes of their own; the local executor places each trial).
    ``lines``: where a training in a thread of this process says its progress."""
    if plan.replay is not None:
        return ReplayTrainer(
            path=str(Path(plan.replay.path).resolve()),
            task=plan.study.task,
            delay_s=plan.replay.delay_s,
        )
    path = str(plan.study.path.resolve()) if plan.study.path else ""
    return StudyTrainer(
        study_path=path,
        device=device,
        threads=threads,
        gpu_share=gpu_share,
        precisions=plan.precisions,
        lines=lines,
    )


def placement_words(plan: SearchPlan, slots: TrialSlots) -> str:
    """How the local executor places its trials, for the progress line ("" on Ray and for CPU
    trials): ", 2 a GPU on cuda:0..1, each in a process of its own"."""
    if not plan.devices:
        return ""
    first, last = plan.devices[0], plan.devices[-1]
    where = first if first == last else f"{first}..{last.removeprefix('cuda:')}"
    per_gpu = trials_per_gpu(slots.gpus_per_trial)
    how = "each in a process of its own" if plan.processes else "in threads"
    return f", {per_gpu} a GPU on {where}, {how}"


def _cuda_device_count() -> int:
    from trainers.runtime.device import cuda_device_count  # torch

    return cuda_device_count()
