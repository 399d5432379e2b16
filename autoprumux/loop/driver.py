"""``autoprumux search``: propose, train, record, until the answer is known.

The :class:`SearchDriver` is the single place where decisions are made: it reads the Optuna study
(the source of truth), asks the :class:`~autoprumux.loop.proposer.Proposer` for the next points,
starts their trials and records their outcomes. Executors only run trainings: the local one in
threads of this process (CPU trials) or each in a spawned process of its own, spread over the
machine's GPUs (GPU trials: :mod:`autoprumux.loop.trial_process`,
:mod:`autoprumux.loop.device_slots`), the Ray one (:mod:`autoprumux.loop.ray_executor`) as
Ray Tune trials; both call the same ``suggest`` / ``complete``. Resume is free: a rerun reads
what is recorded, and trials a killed process left behind are closed (interrupted) and trained
again if needed (:meth:`StudyStore.repair`, before anything is proposed). Searches share a
study: each one leaves the others' live trials alone, proposes other points, and when it needs
nothing else waits for those of theirs that could still change its answer
(:meth:`SearchDriver._awaited`). The driver is written against two contracts: the study store
(:class:`~autoprumux.loop.store_contract.StudyStore`) and the trainer
(:class:`~autoprumux.loop.trainer_contract.Trainer`).
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.early_stop import StopRule
from autoprumux.core.errors import AutoPruMuxError
from autoprumux.core.grid import BASELINE, Grid, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Decision, Objective, Recommender
from autoprumux.core.records import (
    Observations,
    ResultsTable,
    Training,
    TrialRecord,
    TrialStatus,
    distinct_seeds,
)
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.costs import CostModel, Recipe
from autoprumux.loop.device_slots import DeviceSlots, PlaceableTrainer
from autoprumux.loop.proposer import Proposer, SearchState
from autoprumux.loop.store_contract import StudyStore, is_abandoned
from autoprumux.loop.trainer_contract import TrainFunction
from autoprumux.loop.trial_process import TrialProcesses

log = logging.getLogger(__name__)

# The Optuna study's user attribute holding what the last search ranked by (its --objective:
# ``throughput`` | ``latency``), written with the budget and the threshold
# (:meth:`SearchDriver.label_study`); the report ranks by it. Absent (a study recorded before
# it was): throughput
OBJECTIVE_ATTR = "objective"


def budget_label(budget: Budget) -> str:
    """How the study's ``budget`` attribute states a budget, read back by
    :func:`budget_from_label`: its kind, then its value (``absolute 0.03``, ``min-accuracy
    0.8``), to 12 significant digits (a float typed by a user, exactly)."""
    return f"{budget.kind.value} {budget.value:.12g}"


def budget_from_label(label: object) -> Budget | None:
    """The budget :func:`budget_label` wrote; None for anything else."""
    kind, _, value = str(label).partition(" ")
    try:
        return Budget(BudgetKind(kind), float(value))
    except (ValueError, AutoPruMuxError):
        return None


class StopReason(enum.Enum):
    """Why the search stopped starting trainings (its value is what the CLI prints)."""

    ANSWER_KNOWN = "answer known"  # nothing left to propose: the answer is known
    MAX_TRIALS = "max trials"  # --max-trials reached
    MAX_GPU_HOURS = "max GPU-hours"  # --max-gpu-hours reached
    TIMEOUT = "timeout"  # --timeout seconds passed since the driver opened the study
    # the (1, 0) baseline failed 1 + max_retries times: no budget has a threshold to rank by
    BASELINE_FAILED = "baseline failed"


class EventKind(enum.Enum):
    """What happened (its value is the word the CLI prints)."""

    STARTED = "started"  # a trial of this search started
    COMPLETE = "complete"  # a training finished with its accuracy
    FAILED = "failed"  # a training failed
    MISSED = "missed"  # stopped early: it cannot reach the threshold
    FREE = "free"  # a by-product recorded (a training's (N, 0) teacher)
    JOINED = "joined"  # other searches run trials of this study
    WAITING = "waiting"  # for those trials' results


class Start(NamedTuple):
    """A trial to start now: its number in the study and its point."""

    number: int
    point: GridPoint


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """What :meth:`SearchDriver.suggest` answers an executor: trials to ``start`` now; none,
    not ``finished``, to wait for running ones (this search's, or another's that could change
    its answer); or ``finished``: nothing more to start, and no trial of this search still
    running."""

    start: tuple[Start, ...] = ()
    finished: bool = False

    @property
    def wait(self) -> bool:
        """Nothing to start, yet not finished: wait for a running trial to finish."""
        return not self.start and not self.finished


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    study_name: str
    task: str
    grid: Grid
    budget: Budget
    storage_url: str
    workers: int = 1  # trainings at once
    max_trials: int | None = None  # trainings recorded in the study, all runs together
    max_gpu_hours: float | None = None
    # seconds of wall-clock time after which no training starts (the running ones finish), as
    # Optuna's optimize(timeout=); counted from the driver's creation, this run only
    timeout_s: float | None = None
    max_retries: int = 1  # a failing point is tried 1 + max_retries times
    gpus_per_trial: float = 0.0  # for GPU-hours: wall time x this
    top_k: int = 3  # recommendations in the outcome's decision (search --top)
    # seconds between looks at the study while other searches train points this one waits for
    poll_s: float = 0.5
    # the study's training work, for predicted costs (None: every training costs the same)
    recipe: Recipe | None = None
    early_stop: bool = True  # trainings stop when they cannot reach the threshold
    # the precisions every trained model is served in (the table's rows of each are searched)
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    objective: Objective = Objective.THROUGHPUT  # what "fastest" means


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something the CLI shows: a trial started or finished, and the state of the search."""

    kind: EventKind
    point: GridPoint | None
    record: TrialRecord | None
    running: int
    done: int
    failed: int
    best: GridPoint | None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class StudyView:
    """What the study says at one read, as the search uses it."""

    observed: Observations  # of the complete trials
    failed: frozenset[GridPoint]  # points failed for good (retries spent, never measured)
    records: list[TrialRecord]  # every finished trial
    running: dict[int, GridPoint]  # live RUNNING trials of every search: number -> point


@dataclass(kw_only=True)
class SearchOutcome:
    stop_reason: StopReason
    decision: Decision | None  # top-k for the budget over the candidates
    trainings_this_run: int
    trainings_total: int
    free_total: int  # records that came free with a training (its (N, 0) teacher)
    failed_total: int
    gpu_hours_total: float
    stopped_total: int  # trainings stopped early: they could not reach the threshold
    # wall-clock hours of the study's trainings, on any device (a free record has none)
    training_hours_total: float
    grid_size: int
    best: GridPoint | None
    records: list[TrialRecord] = field(default_factory=list)


class SearchDriver:
    def __init__(
        self,
        config: SearchConfig,
        candidates: ThroughputTable,
        store: StudyStore,
        proposer: Proposer | None = None,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (seconds) times ``config.timeout_s``; a test may give its own."""
        self.config, self.table, self.store = config, candidates, store
        self._clock = clock
        self._started_s = clock()
        # the trainings (fp32), and the other precisions their models are served in
        self.candidates, self.served = self._speeds(candidates)
        self.proposer = proposer or Proposer()
        self.on_event = on_event or (lambda event: None)
        self.pending: dict[int, GridPoint] = {}  # this search's running trials
        self.started_this_run = 0
        self.stop_reason = StopReason.ANSWER_KNOWN
        self._waited_for: frozenset[int] = frozenset()  # other searches' trials, last "waiting"
        # the rule trainings stop by, once the threshold is known: it is final then (the
        # baseline is measured once, the budget is this search's), so it is never read again
        self._stop_rule: StopRule | None = None
        for why, count in store.repair().items():  # before anything is proposed
            if count:
                log.info("%d trial(s) closed, %s", count, why.value)
        # this run's budget (and its threshold, once the baseline is known) and objective,
        # from its start: a rerun with another budget that trains nothing states it too
        self.label_study(self.threshold(self._read().observed))
        others = store.snapshot().others()
        if others:
            owners = sorted({t.owner.describe() for t in others})
            self._event(
                EventKind.JOINED,
                None,
                None,
                [r for _, r in store.records()],
                f"{len(others)} trial(s) of other searches running ({', '.join(owners)}); "
                "this one trains other points",
            )

    # -- what the study says ----------------------------------------------------------------

    def observations(self) -> tuple[Observations, frozenset[GridPoint], list[TrialRecord]]:
        """(observations of complete trials, points failed for good, all records)."""
        view = self._read()
        return view.observed, view.failed, view.records

    def _read(self) -> StudyView:
        snapshot = self.store.snapshot()
        records = [r for _, r in snapshot.records]
        running = {t.number: t.point for t in snapshot.running}
        measured = [r for r in records if r.status in (TrialStatus.COMPLETE, TrialStatus.STOPPED)]
        failures = Counter(r.point for r in records if is_failure(r))
        observed = (
            ResultsTable.from_records(distinct_seeds(measured)).observations(self.config.task)
            if measured
            else Observations(accuracy={}, throughput={})
        )
        done_failing = frozenset(
            p
            for p, c in failures.items()
            if c > self.config.max_retries and p not in observed.accuracy
        )
        return StudyView(observed=observed, failed=done_failing, records=records, running=running)

    def _speeds(
        self, table: ThroughputTable
    ) -> tuple[dict[GridPoint, float], dict[GridPoint, float]]:
        """The proposer's speed of each point of the grid (its throughput, or for latency 1 /
        its seconds): of the trainings (fp32), and of the other precisions their models are
        served in."""
        served = table.serving(self.config.precisions)
        searched = (
            {p: 1.0 / seconds for p, seconds in served.latency.items()}
            if self.config.objective is Objective.LATENCY
            else served.throughput
        )
        in_grid = {p: v for p, v in searched.items() if p in self.config.grid}
        fp32 = {p: v for p, v in in_grid.items() if p.precision is Precision.FP32}
        others = {p: v for p, v in in_grid.items() if p not in fp32 and p.trained in fp32}
        return fp32, others

    def served_speeds(self, observed: Observations) -> dict[GridPoint, float]:
        """The speeds of the served points, a trained model served by a static int8 file at
        that file's (:meth:`ThroughputTable.with_recipe_speeds`)."""
        if not observed.recipe_speed:
            return self.served
        return self._speeds(self.table.with_recipe_speeds(observed.recipe_speed))[1]

    def threshold(self, observed: Observations) -> float | None:
        budget = self.config.budget
        if budget.needs_baseline and BASELINE not in observed.accuracy:
            return None
        return budget.threshold(observed.accuracy.get(BASELINE))

    def state(self, view: StudyView | None = None, with_costs: bool = True) -> SearchState:
        """What the proposer sees now (from the study, unless given): pending are the points
        that this search or another one trains now; costs (unless ``with_costs`` is False: the
        status alone needs none) are predicted from the recipe and the seconds the study's
        trainings took."""
        view = view or self._read()
        recipe = self.config.recipe if with_costs else None
        return SearchState(
            candidates=self.candidates,
            accuracy=view.observed.accuracy,
            failed=view.failed,
            pending=frozenset(self.pending.values()) | frozenset(view.running.values()),
            threshold=self.threshold(view.observed),
            bounds=view.observed.bounds,
            costs=None
            if recipe is None
            else CostModel.for_study(recipe, self.candidates, view.records),
            served=self.served_speeds(view.observed),
            served_accuracy=view.observed.served_accuracy,
        )

    def stop_rule(self) -> StopRule | None:
        """What trainings started now stop by: the threshold in force (once known). Known, it
        is the one ``suggest`` found; unknown, the study is read: the baseline may have been
        measured since (by another search, or by a training this one completed)."""
        if self.config.early_stop and self._stop_rule is None:
            observed = self._read().observed
            self._keep_stop_rule(self.threshold(observed), observed.served_gain)
        return self._stop_rule

    def _keep_stop_rule(self, threshold: float | None, served_gain: float) -> None:
        """Keep the threshold's stop rule once it is known (the threshold never changes then),
        lowered by the most another precision has gained over fp32 so far: a training stops
        only when none of its precisions can reach the threshold."""
        if self.config.early_stop and threshold is not None:
            self._stop_rule = StopRule(threshold=threshold - served_gain)

    # -- the executor's interface -----------------------------------------------------------

    def suggest(self, free_slots: int = 1) -> Suggestion:
        """Trials to start now, none to wait for running ones (this search's or another's), or
        finished (see :class:`Suggestion`)."""
        self.store.repair()  # takes back the trials of searches that died since
        view = self._read()
        records, running = view.records, view.running
        state = self.state(view)
        if state.threshold is None and BASELINE in view.failed:
            self.stop_reason = StopReason.BASELINE_FAILED
            return Suggestion(finished=not self.pending)
        # the stop rule of the trials started below
        self._keep_stop_rule(state.threshold, view.observed.served_gain)
        trained = trainings(records)
        gpu_hours = sum(r.gpu_hours or 0.0 for r in records)
        busy = len(set(running) | set(self.pending))  # trials running now, in every search
        cap = self._cap(trained + busy, gpu_hours)
        if cap:
            # a cap reached with nothing left to train stopped nothing: the answer is known
            known = not (
                self.pending or self._awaited(state, running) or self.proposer.propose(state, 1)
            )
            self.stop_reason = StopReason.ANSWER_KNOWN if known else cap
            return Suggestion(finished=not self.pending)
        slots = min(free_slots, (self.config.max_trials or math.inf) - trained - busy)
        points = self.proposer.propose(state, int(slots)) if slots > 0 else []
        if not points:
            awaited = self._awaited(state, running)
            if awaited and not self.pending:
                self._waiting(awaited, records)
            return Suggestion(finished=not (self.pending or awaited))
        started = []
        for point in points:
            number = self.store.start(point)
            if number is None:  # another search started it first: it is theirs to train
                continue
            self.pending[number] = point
            self.started_this_run += 1
            started.append(Start(number, point))
            self._event(EventKind.STARTED, point, None, records)
        return Suggestion(start=tuple(started))

    def complete(self, number: int, training: Training) -> None:
        """Record a finished training, and the by-products no trial has measured yet (the
        (N, 0) teacher of an (N, s) trial is that point's model: it needs no training of its
        own). A by-product costs nothing: it has no wall time or GPU-hours."""
        point, record = self.pending.pop(number), training.record
        if record.point != point:  # a trainer answering another point is a bug, not data
            raise RuntimeError(f"trial {number} asked for {point} and got {record.point}")
        if record.gpu_hours is None and record.wall_time_s is not None:
            record = replace(
                record, gpu_hours=record.wall_time_s / 3600 * self.config.gpus_per_trial
            )
        view = self._read()
        observed, running = view.observed, view.running
        free = [
            replace(r, from_trial=number, wall_time_s=None, gpu_hours=None)
            for r in training.by_products
            if r.status in (TrialStatus.COMPLETE, TrialStatus.STOPPED)
            and r.point in self.config.grid
            and r.point not in observed.accuracy
            and r.point not in self.pending.values()
            and r.point not in running.values()  # another search trains it: theirs to record
            and r.point != point
        ]
        threshold = self.threshold(observed)
        baseline = [r for r in (record, *free) if r.point == BASELINE and r.accuracy is not None]
        if threshold is None and baseline:
            threshold = self.config.budget.threshold(baseline[0].accuracy)  # it sets it
        self.label_study(threshold)
        self.store.finish(number, record, threshold, free)
        _, _, records = self.observations()
        kind = {TrialStatus.COMPLETE: EventKind.COMPLETE, TrialStatus.STOPPED: EventKind.MISSED}
        self._event(kind.get(record.status, EventKind.FAILED), point, record, records)
        for by_product in free:
            self._event(
                EventKind.FREE,
                by_product.point,
                by_product,
                records,
                f"the teacher of trial {number}",
            )

    def label_study(self, threshold: float | None) -> None:
        """Label the study with this search's budget, the threshold in force (None before the
        baseline is known) and the objective: what the dashboard shows beside the study, and
        what ``autoprumux report --storage`` ranks by. Written when the search starts and as
        each training finishes; a trial's own constraint keeps the threshold it was recorded
        under (Optuna updates no finished trial)."""
        self.store.set_threshold(threshold, budget_label(self.config.budget))
        self.store.set_user_attr(OBJECTIVE_ATTR, self.config.objective.value)

    def close(self) -> None:
        """The search is over (or crashed): see :meth:`StudyStore.close`."""
        self.store.close()

    def _awaited(self, state: SearchState, running: dict[int, GridPoint]) -> dict[int, GridPoint]:
        """The other searches' running trials (number -> point) whose outcome may change this
        search's answer, by its own threshold and rules: those training a point still open for
        it, and those building the untrained (N, 0) teacher of a row with open points (the
        proposer leaves that teacher to them: it comes free). The rest (points this search
        rules out, predicts to miss, or finds slower than its best verified point) it does not
        wait for: it finishes without them, and they train on."""
        open_trainings = self.proposer.status(state).open_trainings
        rows = {p.n for p in open_trainings if GridPoint(p.n, 0.0) not in state.accuracy}
        return {
            number: point
            for number, point in running.items()
            if number not in self.pending and (point in open_trainings or point.n in rows)
        }

    def _waiting(self, awaited: dict[int, GridPoint], records: list[TrialRecord]) -> None:
        """Say once per set of other searches' trials that this search waits for them."""
        others = frozenset(awaited)
        if others != self._waited_for:
            self._waited_for = others
            points = ", ".join(str(awaited[n]) for n in sorted(others))
            message = f"for other searches' trials: {points}"
            self._event(EventKind.WAITING, None, None, records, message)

    def _cap(self, trained: int, gpu_hours: float) -> StopReason | None:
        if self.config.max_trials is not None and trained >= self.config.max_trials:
            return StopReason.MAX_TRIALS
        if self.config.max_gpu_hours is not None and gpu_hours >= self.config.max_gpu_hours:
            return StopReason.MAX_GPU_HOURS
        timeout = self.config.timeout_s
        if timeout is not None and self._clock() - self._started_s >= timeout:
            return StopReason.TIMEOUT
        return None

    def _event(
        self,
        kind: EventKind,
        point: GridPoint | None,
        record: TrialRecord | None,
        records: list[TrialRecord],
        message: str = "",
    ) -> None:
        state = self.state(with_costs=False)
        self.on_event(
            Event(
                kind=kind,
                point=point,
                record=record,
                running=len(self.pending),
                done=sum(r.status is TrialStatus.COMPLETE for r in records),
                failed=sum(map(is_failure, records)),
                best=self.proposer.status(state).best,
                message=message,
            )
        )

    def outcome(self) -> SearchOutcome:
        view = self._read()
        observed, failed, records = view.observed, view.failed, view.records
        state = replace(self.state(view, with_costs=False), pending=frozenset())
        decision = None
        if self.threshold(observed) is not None and BASELINE in self.table.throughput:
            obs = replace(observed, failed=observed.failed | failed)
            decision = (
                Recommender(self.config.top_k, self.config.objective)
                .fit(self.config.task, obs, self.table)
                .recommend(self.config.budget, [*self.candidates, *self.served])
            )
        return SearchOutcome(
            stop_reason=self.stop_reason,
            decision=decision,
            trainings_this_run=self.started_this_run,
            trainings_total=trainings(records),
            free_total=sum(r.from_trial is not None for r in records),
            failed_total=sum(map(is_failure, records)),
            gpu_hours_total=sum(r.gpu_hours or 0.0 for r in records),
            training_hours_total=sum(r.wall_time_s or 0.0 for r in records) / 3600,
            stopped_total=sum(
                r.status is TrialStatus.STOPPED and r.from_trial is None for r in records
            ),
            grid_size=len(self.config.grid),
            best=self.proposer.status(state).best if state.threshold is not None else None,
            records=records,
        )


def trainings(records: list[TrialRecord]) -> int:
    """Trainings paid for: every record but the abandoned ones (interrupted, never started,
    superseded) and the free by-products."""
    return sum(1 for r in records if not is_abandoned(r) and r.from_trial is None)


def is_failure(record: TrialRecord) -> bool:
    """Whether a record is a failed training: failed, and not abandoned (a trial closed
    untrained counts as neither a training nor a failure). The search's failed counts and the
    report's cost table both count by it."""
    return record.status is TrialStatus.FAILED and not is_abandoned(record)


def run_local(
    driver: SearchDriver,
    trainer: TrainFunction,
    workers: int,
    *,
    devices: DeviceSlots | None = None,
    processes: bool = False,
) -> SearchOutcome:
    """Run trainings ``workers`` at a time on this machine. With a slot free it looks at the
    study every ``poll_s``: other searches' results may open new points.

    ``devices``: the GPUs to spread the trials over, each trial placed on the one with the most
    free slots (``trainer`` must then be a :class:`PlaceableTrainer`); None: every trial on the
    trainer's own device. ``processes``: each trial in a spawned process of its own
    (:mod:`autoprumux.loop.trial_process`: GPU trials); else in threads of this process (CPU
    trials: they start at once, and a failed one is as clean)."""
    if devices is not None and not isinstance(trainer, PlaceableTrainer):
        raise TypeError(f"{type(trainer).__name__} cannot be placed on a device (no on_device)")
    if devices is not None and workers > devices.capacity:  # the sizing's bug, not the user's
        raise ValueError(f"{workers} trials at once on {devices.capacity} GPU slot(s)")
    children = TrialProcesses() if processes else None
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        try:
            _train_until_finished(driver, trainer, workers, pool, devices, children)
        except BaseException:
            # the search stops on an error of its own (or ^C): so do its trials. A child
            # process is killed and its thread ends with it; a trial training in a thread
            # cannot be stopped, so it is not waited for: the study closes it as interrupted
            # (below), as a kill would, and its checkpoints resume it in the rerun
            if children is not None:
                children.kill_all()
            pool.shutdown(wait=children is not None, cancel_futures=True)
            raise
        pool.shutdown()
        return driver.outcome()
    finally:
        driver.close()


def _train_until_finished(
    driver: SearchDriver,
    trainer: TrainFunction,
    workers: int,
    pool: ThreadPoolExecutor,
    devices: DeviceSlots | None,
    children: TrialProcesses | None,
) -> None:
    """The local executor's loop: start what the driver suggests, record what finishes."""
    # (device, trial number) of each running training; device None: not placed
    futures: dict[Future[Training], tuple[str | None, int]] = {}
    run = _safe_train if children is None else children.run
    while True:
        free = workers - len(futures)
        suggestion = driver.suggest(free) if free > 0 else Suggestion()
        if suggestion.finished and not futures:
            return
        for number, point in suggestion.start:
            stop = driver.stop_rule()
            device, placed = _place(trainer, devices, children is not None)
            if device is not None:
                log.info("trial %d %s on %s", number, point, device)
            futures[pool.submit(run, placed, point, stop)] = (device, number)
        if not futures:  # other searches train what this one needs: wait for them
            time.sleep(driver.config.poll_s)
            continue
        timeout = driver.config.poll_s if len(futures) < workers else None
        finished, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in finished:
            device, number = futures.pop(future)
            if devices is not None and device is not None:
                devices.release(device)
            driver.complete(number, future.result())


def _place(
    trainer: TrainFunction, devices: DeviceSlots | None, processes: bool
) -> tuple[str | None, TrainFunction]:
    """The device a starting trial takes (None: not placed) and the trainer placed there. A
    trial's share caps its process's GPU memory, so trials in threads (one process) are not
    capped: each one's cap would be the whole process's."""
    if devices is None:
        return None, trainer
    assert isinstance(trainer, PlaceableTrainer)  # checked by run_local
    device = devices.acquire()
    return device, trainer.on_device(device, devices.share if processes else 1.0)


def _safe_train(trainer: TrainFunction, point: GridPoint, stop: StopRule | None) -> Training:
    """A training that raises is a failed trial with the error as its reason."""
    try:
        return trainer(point, stop)
    except Exception as err:  # recorded as data, like Optuna's FAIL trials
        log.exception("training %s failed", point)
        return Training.failed("?", point, f"{type(err).__name__}: {err}".splitlines()[0][:500])
