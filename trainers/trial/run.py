"""``run_trial``: one (N, s) point of a study, trained, pruned, evaluated; ``warm_up``: the
retrieval warm-up alone (``autoprumux warmup``). What autoprumux calls of the engine to train.

What it builds, each a cached stage (:mod:`trainers.trial.stages`) keyed by every setting it reads
(:mod:`trainers.trial.cache_keys`):
- for N > 1 without a multiplexed checkpoint, the retrieval warm-up of the base model, shared
  by every study and task that uses the same model, N, recipe and text
  (``<studies>/artifacts/warmup/...``), with its token recovery recorded
  (:mod:`trainers.trial.warmup_stage`);
- the fine-tuned (N, 0) model, the teacher of every (N, s) of the study
  (``<studies>/artifacts/<study>/teacher-n<N>-<hash>``); it is the trial's result when s = 0
  (:mod:`trainers.trial.teacher_stage`). Where the study's checkpoint is a classifier already
  fine-tuned on the task (``[model] fine_tuned``), the (1, 0) one is that checkpoint as is, and
  every (N > 1, 0) one learns its logits;
- for s > 0, the pruned, materialized and fine-tuned model
  (``<studies>/artifacts/<study>/trial-n<N>-s<s>-<hash>``, :mod:`trainers.trial.pruned_stage`). A
  rerun of a finished trial returns its recorded result.

Each trained model, the teacher's and the pruned one, is then described in its folder and
evaluated on dev in each of the study's other serving precisions
(:func:`trainers.trial.model_result.model_result`, :mod:`trainers.deploy.precisions`): its
figures are the result's ``served``, recorded in the folder so a reuse reads them back. An
(N, s) trial that reuses its teacher reads the teacher's throughput from its folder too: the
folder keeps the figures of the trial that built it.

This module runs the stages in order; a stage's build sees the trial as a
:class:`trainers.trial.stages.RunningTrial`: the services of :mod:`trainers.trial.services` (the
task data, the engine, the phases with the dev checks of early stopping and the learning curves)
and the stages a build starts (the warm-up it fine-tunes, the (1, 0) teacher it distills from).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autoprumux.core.budget import NEAR_MISS
from autoprumux.core.early_stop import StopEvidence, StoppedEarly, StopPhase, StopRule
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.progress import ProgressCallback
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import FineTuned, Study
from trainers.model.architecture import Pooling
from trainers.model.checkpoints import CheckpointError, load_pretrained
from trainers.model.classifier import Classifier
from trainers.model.label_map import is_fine_tuned
from trainers.runtime.device import (
    Engine,
    cap_memory,
    numerics,
    refused_reason,
    study_precisions,
    thread_count,
)
from trainers.training.loop import Diverged
from trainers.trial.cache_keys import (
    TeacherFolders,
    distills_from_n1,
    starting_checkpoint,
    teacher_folders,
    teacher_is_checkpoint,
    trial_folder,
    warms_up,
)
from trainers.trial.model_result import model_result
from trainers.trial.pruned_stage import build_pruned
from trainers.trial.services import DEV_EVALUATION, Activity, TrialServices
from trainers.trial.stages import Stage, cached_stage
from trainers.trial.teacher_stage import build_teacher
from trainers.trial.trial_results import GUIDE_PREFIX, SpanTimer, TrialResult
from trainers.trial.warmup_stage import build_warmup

__all__ = ["TrialResult", "TrialSpec", "run_trial", "warm_up"]

# the phases whose batches [warmup] batch_rows sizes (trainers.training.phases.warmup_phase)
WARMUP_PHASES = ("warmup", "mlm")


@dataclass(frozen=True, kw_only=True)
class TrialSpec:
    study: Study
    n: int
    sparsity: float
    seed: int | None = None  # default: the study's seed
    device: str = "auto"  # auto, cpu, cuda or cuda:i (in a Ray worker: the GPU Ray assigned)
    # CPU threads of the trial's kernels (they change float sums, so a trial's numbers depend
    # on them); 0: every core (os.cpu_count()). The search passes its CPUs per trial.
    threads: int = 0
    # the share of its GPU's memory the trial may allocate (--gpus-per-trial below 1: trials
    # sharing a GPU, each in its own process); 1: the whole GPU. Ignored on a CPU.
    gpu_share: float = 1.0
    # the search's threshold and margins: the last phases stop when they cannot reach it
    stop: StopRule | None = None
    # dev evaluations at k/curve_points of the last phases (k < curve_points), recorded as
    # learning curves (to calibrate early stopping); 0: none beyond the stop checks
    curve_points: int = 0
    # the precisions the trained models are evaluated on dev in after training (fp32 is the
    # training's own figure), as the search resolved them once for every trial; None: the
    # study's, resolved here (trainers.runtime.device.study_precisions)
    precisions: tuple[Precision, ...] | None = None

    def __post_init__(self) -> None:
        point = GridPoint(self.n, self.sparsity)  # validates N >= 1 and s in [0, 1)
        object.__setattr__(self, "sparsity", point.sparsity)


def run_trial(spec: TrialSpec, progress: ProgressCallback | None = None) -> TrialResult:
    """Train, prune and evaluate one (N, s) point on the spec's device; a diverging trial, or
    one that runs out of GPU memory, returns status FAILED with the reason, and one the
    spec's stop rule stops returns status STOPPED with the evidence."""
    started = time.perf_counter()
    study, n, sparsity = spec.study, spec.n, spec.sparsity
    seed = study.study.seed if spec.seed is None else spec.seed
    training = study.training
    # before any work: a precision the serving device cannot run is one line
    precisions = study_precisions(study) if spec.precisions is None else spec.precisions
    engine = Engine.resolve(
        spec.device, training.precision, training.compile, training.deterministic
    )
    cap_memory(engine, spec.gpu_share)
    timer = SpanTimer()
    with thread_count(spec.threads or os.cpu_count() or 1):
        trial = _Trial(
            study, n, seed, timer, progress, engine, stop=spec.stop, curve_points=spec.curve_points
        )
        trial.precisions = precisions
        try:
            result = trial.run(sparsity)
        except StoppedEarly as stopped:
            return _stopped(trial, sparsity, stopped.evidence, time.perf_counter() - started)
        except (Diverged, torch.OutOfMemoryError, RuntimeError) as err:
            if isinstance(err, Diverged):
                reason = str(err)
            elif isinstance(err, torch.OutOfMemoryError):
                reason = _out_of_memory(trial, spec.gpu_share)
            elif (refused := refused_reason(err)) is not None:
                reason = refused  # a strict engine met an op with no deterministic form
            else:
                raise
            return TrialResult(
                task=study.task,
                n=n,
                sparsity=sparsity,
                status=TrialStatus.FAILED,
                reason=reason,
                phase_seconds=timer.seconds,
                wall_time_s=time.perf_counter() - started,
                reused=tuple(trial.reused),
                seed=seed,
                numerics=numerics(engine),
                phase_figures=tuple(trial.log.records),  # the phases it finished
            )
    return dataclasses.replace(
        result,
        phase_seconds=timer.seconds,
        wall_time_s=time.perf_counter() - started,
        reused=tuple(trial.reused),
        phase_figures=tuple(trial.log.records),
    )


def _stopped(
    trial: _Trial, sparsity: float, evidence: StopEvidence, wall_time_s: float
) -> TrialResult:
    """The result of a trial its stop rule stopped; when its teacher missed, the point
    missed too, and carries the teacher's result."""
    result = TrialResult(
        task=trial.study.task,
        n=trial.n,
        sparsity=sparsity,
        status=TrialStatus.STOPPED,
        reason=evidence.reason(),
        phase_seconds=trial.timer.seconds,
        wall_time_s=wall_time_s,
        reused=tuple(trial.reused),
        seed=trial.seed,
        numerics=trial.numerics(),
        curve=trial.curves.get(evidence.point),
        stop=evidence,
        phase_figures=tuple(trial.log.records),  # the phases it finished
    )
    if evidence.point == GridPoint(trial.n, sparsity):
        return result
    teacher = trial.finished_teacher or dataclasses.replace(
        result, sparsity=0.0, phase_seconds={}, wall_time_s=0.0, phase_figures=()
    )  # trained to its end, or stopped in its fine-tuning (a miss too)
    return dataclasses.replace(result, teacher=teacher)


def _out_of_memory(trial: _Trial, share: float) -> str:
    """The reason of a trial that ran out of memory: where (the phase, or the dev evaluation),
    N, the batch (rows x N sequences x the padded length of the batch that failed, or the
    longest its batches reach), the GPU's memory (in use, the peak since the phase began, the
    GPU's total, and the cap of a trial sharing it: ``share`` < 1), and the fix."""
    engine, n, running = trial.engine, trial.n, trial.log.running
    warmup = running is not None and running.name in WARMUP_PHASES
    setting = "[warmup] batch_rows" if warmup else "[training] batch_rows"
    rows = trial.study.warmup.batch_rows if warmup else trial.study.training.batch_rows
    fix = f"lower {setting} (now {rows})"
    memory = ""
    if engine.on_gpu:
        memory = _gpu_memory(engine, share)
        if share < 1.0:
            fix += f", or give each trial a larger --gpus-per-trial (now {share:g})"
        torch.cuda.empty_cache()
    batch = _failed_batch(trial, running, rows)
    return f"out of memory on {engine.device} {_where(running)} at N={n}: {batch}{memory}; {fix}"


def _where(running: Activity | None) -> str:
    if running is None:
        return "outside the training phases (loading, evaluating or timing a model)"
    if running.name == DEV_EVALUATION:
        return f"in the {running.name}"
    return f"in the {running.name} phase"


def _failed_batch(trial: _Trial, running: Activity | None, rows: int) -> str:
    """The batch that failed, where the phase had drawn one; else the largest of its batches
    (its last dimension: the largest length bucket, or the study's max_seq_length)."""
    n = trial.n
    if running is not None and running.drawn:
        return (
            f"its batch of {running.sequences // n} rows x N={n} = {running.sequences} "
            f"sequences of {running.length} tokens (the batch that failed)"
        )
    longest = (running.length if running is not None else 0) or max(
        trial.length_buckets, default=trial.study.model.max_seq_length
    )
    return (
        f"its batches of {rows} rows x N={n} = {rows * n} sequences of up to {longest} "
        "tokens (the longest)"
    )


def _gpu_memory(engine: Engine, share: float) -> str:
    """The GPU's memory when it ran out: in use, the peak (since the phase began: run_phase
    resets it), the GPU's total, and the trial's cap where it shares the GPU."""
    total = torch.cuda.get_device_properties(engine.device).total_memory
    used = torch.cuda.memory_allocated(engine.device)
    peak = torch.cuda.max_memory_allocated(engine.device)
    text = (
        f"; {used / 2**30:.1f} GiB in use, {peak / 2**30:.1f} GiB at the peak, of the GPU's "
        f"{total / 2**30:.1f} GiB"
    )
    if share < 1.0:  # trainers.runtime.device.cap_memory: set_per_process_memory_fraction
        text += (
            f", capped at {share:g} of it ({share * total / 2**30:.1f} GiB) by "
            f"--gpus-per-trial {share:g}"
        )
    return text


class _Trial(TrialServices):
    """The stages of one run_trial call, in order, and the stages they start (a
    :class:`trainers.trial.stages.RunningTrial` for their builds, with the services)."""

    finished_teacher: TrialResult | None = None  # for s > 0, once the teacher exists
    # the serving precisions its models are evaluated in (none for a warm-up or a guide)
    precisions: tuple[Precision, ...] = ()

    @functools.cached_property
    def reused(self) -> list[str]:
        """Stage values, in the order they were found built (filled as the stages run)."""
        return []

    @functools.cached_property
    def fine_tuned(self) -> bool:
        """Whether the study's checkpoint is a fine-tuned classifier (``[model] fine_tuned``,
        ``auto`` decided by its weights): the (1, 0) teacher is then the checkpoint as is."""
        return is_fine_tuned(self.study.model.fine_tuned, self.study.model.name_or_path)

    @functools.cached_property
    def folders(self) -> TeacherFolders:
        # cached: with a named warm-up text, the warm-up's key hashes the text file
        return teacher_folders(
            self.study, self.n, self.seed, self.engine.precision, fine_tuned=self.fine_tuned
        )

    # -- the stages, in order -----------------------------------------------------------------

    def run(self, sparsity: float) -> TrialResult:
        teacher, teacher_folder, teacher_record = self.teacher()
        as_teacher = model_result(
            self,
            teacher,
            teacher_folder,
            target=0.0,
            achieved=0.0,
            teacher_record=teacher_record,
            record=teacher_record,
            # a pruned trial reusing its teacher reads the figures the trial that built it
            # recorded in its folder (the study's (N, 0) figures), neither timed nor described
            # again; a (N, 0) trial run again times its model anew, as every rerun does
            keep_recorded=sparsity > 0 and Stage.TEACHER.value in self.reused,
        )
        if sparsity == 0:
            return as_teacher
        self.finished_teacher = as_teacher
        if self.stop is not None and self.stop.teacher_misses(as_teacher.accuracy or 0.0):
            # a pruned model does not beat its teacher by more than a near miss (the search's
            # monotone rule): its pruning and fine-tuning would be paid for a known miss
            steps = int(teacher_record["steps"])
            raise StoppedEarly(
                StopEvidence(
                    point=GridPoint(self.n, 0.0),
                    phase=StopPhase.TEACHER_MISSED,
                    step=steps,
                    steps=steps,
                    accuracy=as_teacher.accuracy or 0.0,
                    margin=NEAR_MISS,
                    threshold=self.stop.threshold,
                )
            )
        model, folder, record = self.pruned(sparsity, teacher, teacher_folder)
        result = model_result(
            self,
            model,
            folder,
            target=sparsity,
            achieved=record["achieved_sparsity"],
            teacher_record=teacher_record,
            record=record,
            teacher_folder=teacher_folder,
        )
        return dataclasses.replace(result, teacher=as_teacher)

    def warmed_up(self) -> tuple[Classifier, float]:
        """The warm-up of width N (training mode), and its token recovery."""
        build = functools.partial(build_warmup, self)
        model, record = cached_stage(
            Stage.WARMUP, self.warmup_folder, build, self.reused, self.engine
        )
        model.train()
        return model, record["token_recovery"]

    def teacher(self) -> tuple[Classifier, Path, dict[str, Any]]:
        """The fine-tuned (N, 0) model of this study, its folder and its record."""
        folder = self.folders.teacher
        from_checkpoint = teacher_is_checkpoint(self.n, self.fine_tuned)
        build = functools.partial(build_teacher, self, from_checkpoint=from_checkpoint)
        model, record = cached_stage(Stage.TEACHER, folder, build, self.reused, self.engine)
        return self._on_engine(model), folder, record

    def pruned(
        self, sparsity: float, teacher: Classifier, teacher_folder: Path
    ) -> tuple[Classifier, Path, dict[str, Any]]:
        """The (N, s) model pruned from the teacher, its folder and its record."""
        precision = self.engine.precision
        folder = trial_folder(
            self.study, self.n, sparsity, self.seed, precision, teacher=teacher_folder
        )
        build = functools.partial(
            build_pruned, self, teacher=teacher, teacher_folder=teacher_folder, sparsity=sparsity
        )
        model, record = cached_stage(Stage.TRIAL, folder, build, self.reused, self.engine)
        return model, folder, record

    @property
    def warmup_folder(self) -> Path:
        if self.folders.warmup is None:  # the CLI asks for N >= 2
            raise CheckpointError(f"N = {self.n} has no warm-up: N = 1 is not multiplexed")
        return self.folders.warmup

    # -- the stages the builds start -----------------------------------------------------------

    def initial_model(self) -> tuple[Classifier, float | None]:
        """The model fine-tuning starts from, and the token recovery of its warm-up."""
        if not warms_up(self.study, self.n):
            source = starting_checkpoint(self.study, self.n)
            # fine_tuned = false: the base model's head, if it has one, is trained anew
            drop_head = (
                source == self.study.model.name_or_path
                and self.study.model.fine_tuned is FineTuned.FALSE
            )
            model, _ = load_pretrained(
                source, seed=self.seed, keep_head=not drop_head, **self.overrides()
            )
            return model, None
        model, recovery = self.warmed_up()
        # the warm-up never pools (its architecture holds the default): the task reads the
        # study's pooling, which the teacher's key holds
        pooling = Pooling(self.study.multiplexing.pooling)
        model.arch = dataclasses.replace(model.arch, pooling=pooling)
        return model, recovery

    def guide(self) -> Classifier | None:
        """The (1, 0) teacher whose logits an N > 1 model also learns (``distill_from_n1``,
        or a fine-tuned checkpoint's)."""
        if not distills_from_n1(self.study, self.n, self.fine_tuned):
            return None
        sibling = _Trial(
            self.study,
            1,
            self.seed,
            self.timer.prefixed(GUIDE_PREFIX),
            self.progress,
            self.engine,
            data=(self.train, self.dev),
            log=self.log,  # its phases are the trial's, named "guide <phase>"
        )
        model, _, _ = sibling.teacher()
        return model.eval()


def warm_up(
    study: Study, n: int, progress: ProgressCallback | None = None, device: str = "auto"
) -> dict[str, Any]:
    """Build (or reuse) the retrieval warm-up artifact of width N for a study's model and
    recipe; ``autoprumux warmup``. Returns its token recovery, path and whether it existed."""
    if study.model.multiplexed_name_or_path:
        # refused before the device is resolved and the task is tokenized (minutes on a big
        # task): a published multiplexed checkpoint is primed for width N already
        raise CheckpointError(
            f"{study.path}: [model] multiplexed_name_or_path is set "
            f"({study.model.multiplexed_name_or_path!r}): its checkpoints are warmed up "
            "already, so there is nothing to warm up; leave it empty to warm up the base model"
        )
    training = study.training
    engine = Engine.resolve(device, training.precision, training.compile, training.deterministic)
    trial = _Trial(study, n, study.study.seed, SpanTimer(), progress, engine)
    _, recovery = trial.warmed_up()
    return {
        "n": n,
        "token_recovery": recovery,
        "artifact_path": str(trial.warmup_folder),
        "reused": Stage.WARMUP.value in trial.reused,
        "seconds": trial.timer.seconds,
    }
