"""``run_trial``: one (N, s) point of a study, trained, pruned, evaluated. The engine's only
entry point for autoprumux.

What it builds, each a cached artifact (see :mod:`trainers.artifacts`):
- for N > 1 without a multiplexed checkpoint, the retrieval warm-up of the base model, shared
  by every study and task that uses the same model, N, recipe and text
  (``<studies>/artifacts/warmup/...``), with its token recovery recorded;
- the fine-tuned (N, 0) model, the teacher of every (N, s) of the study
  (``<studies>/artifacts/<study>/teacher-n<N>-<hash>``); it is the trial's result when s = 0;
- for s > 0, the pruned, materialized and fine-tuned model
  (``<studies>/artifacts/<study>/trial-n<N>-s<s>-<hash>``). A rerun of a finished trial
  returns its recorded result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autoprumux.core.early_stop import (
    TEACHER_MISSED,
    Curve,
    StopEvidence,
    StoppedEarly,
    StopRule,
    check_step,
)
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import Training, TrialRecord, TrialStatus
from autoprumux.core.study import DataSource, Study
from autoprumux.core.tasks import TASKS
from trainers.architecture import multiplexing_fields, prunable_params
from trainers.artifacts import build_once, cache_key, read_json, slug, write_json
from trainers.checkpoints import (
    CheckpointError,
    load_model,
    load_pretrained,
    load_tokenizer,
    save_model,
)
from trainers.data import (
    DataError,
    Encoded,
    Split,
    encode,
    read_glue_split,
    read_hub_split,
    read_unlabelled_text,
)
from trainers.device import Engine, Precision, numerics, thread_count
from trainers.l0 import L0Module
from trainers.loop import Diverged, Phase, ProgressCallback, run_phase
from trainers.materialize import materialize, materialized_architecture
from trainers.model import Classifier, set_dropout
from trainers.model_folder import ModelInfo, describe
from trainers.phases import (
    accuracy,
    finetune_phase,
    identity_map,
    pruning_phase,
    steps_for,
    warmup_phase,
)
from trainers.retrieval import RetrievalHead, token_recovery

log = logging.getLogger(__name__)

# Bumped when the pruning's conventions change what a trained (N, s) is, so cached trials of
# the old rules are not reused: "cofi-exact" is CoFi's initialisation, size, ramp and clamp.
PRUNING_RULES = "cofi-exact"


@dataclass(frozen=True)
class TrialSpec:
    study: Study
    n: int
    sparsity: float
    seed: int | None = None  # default: the study's seed
    device: str = "auto"  # auto, cpu, cuda or cuda:i (in a Ray worker: the GPU Ray assigned)
    # CPU threads of the trial's kernels (they change float sums, so a trial's numbers depend
    # on them); 0: every core (os.cpu_count()). The search passes its CPUs per trial.
    threads: int = 0
    # the search's threshold and margins: the last phases stop when they cannot reach it
    stop: StopRule | None = None
    # dev evaluations at k/curve_points of the last phases (k < curve_points), recorded as
    # learning curves (to calibrate early stopping); 0: none beyond the stop checks
    curve_points: int = 0

    def __post_init__(self) -> None:
        point = GridPoint(self.n, self.sparsity)  # validates N >= 1 and s in [0, 1)
        object.__setattr__(self, "sparsity", point.sparsity)


@dataclass(frozen=True)
class TrialResult:
    task: str
    n: int
    sparsity: float  # the target
    status: TrialStatus
    reason: str | None = None
    accuracy: float | None = None  # dev accuracy, fraction
    achieved_sparsity: float | None = None  # of the materialized model's prunable parameters
    parameters: int | None = None  # prunable encoder parameters of the final model
    throughput: float | None = None  # examples per second, simple forward timing (batch 32*N)
    token_recovery: float | None = None  # of the warm-up (N > 1)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    artifact_path: str | None = None
    reused: tuple[str, ...] = ()  # artifacts that were already there (warmup, teacher, trial)
    seed: int = 0
    teacher: TrialResult | None = None  # for s > 0: the (N, 0) model it was pruned from
    # what decided the model's numbers besides settings and seed, when it was trained:
    # device, precision, threads, versions (trainers.device.numerics)
    numerics: dict[str, Any] = field(default_factory=dict)
    # dev accuracy during the last phase, (step, accuracy), the phase's end last: where it
    # was checked (early stopping) or asked for (curve_points)
    curve: Curve | None = None
    stop: StopEvidence | None = None  # status STOPPED: why

    def cost_parts(self) -> tuple[float, float, float]:
        """(warm-up, teacher, own) seconds of this run; 0 for what it reused."""
        warmup = self.phase_seconds.get("warmup", 0.0)
        teacher = sum(
            v
            for k, v in self.phase_seconds.items()
            if k in TEACHER_TIMERS or k.startswith(GUIDE_PREFIX)
        )
        return warmup, teacher, max(0.0, self.wall_time_s - warmup - teacher)

    def training(self) -> Training:
        """The search's view: this point's record, and the teacher's as a by-product."""
        by_products = (self.teacher.to_record(),) if self.teacher else ()
        return Training(self.to_record(), by_products)

    def to_record(self) -> TrialRecord:
        """The search's record; a by-product teacher (``self.wall_time_s`` 0) has no costs."""
        warmup, teacher, own = self.cost_parts() if self.wall_time_s else (None, None, None)
        stop = self.stop
        return TrialRecord(
            task=self.task,
            n=self.n,
            sparsity=self.sparsity,
            accuracy=self.accuracy,
            throughput=self.throughput,
            status=self.status,
            reason=self.reason,
            achieved_sparsity=self.achieved_sparsity,
            wall_time_s=self.wall_time_s,
            seed=self.seed,
            artifact_path=self.artifact_path,
            warmup_s=warmup,
            teacher_s=teacher,
            own_s=own,
            stop_step=stop.step if stop else None,
            stop_accuracy=stop.accuracy if stop else None,
            stop_margin=stop.margin if stop else None,
        )

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["status"] = self.status.value
        data["reused"] = list(self.reused)
        data["teacher"] = self.teacher.to_json() if self.teacher else None
        data["curve"] = self.curve.to_json() if self.curve else None
        data["stop"] = _evidence_json(self.stop) if self.stop else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialResult:
        teacher, curve, stop = data.get("teacher"), data.get("curve"), data.get("stop")
        return cls(
            **{
                **data,
                "status": TrialStatus(data["status"]),
                "reused": tuple(data["reused"]),
                "teacher": cls.from_json(teacher) if teacher else None,
                "curve": Curve.from_json(curve) if curve else None,
                "stop": StopEvidence(**{**stop, "point": GridPoint(*stop["point"])})
                if stop
                else None,
            }
        )


def _evidence_json(evidence: StopEvidence) -> dict[str, Any]:
    data = dataclasses.asdict(evidence)
    data["point"] = [evidence.point.n, evidence.point.sparsity]
    return data


# the timers whose seconds are the (N, 0) teacher's cost ("finetune" holds its checks); the
# (1, 0) model an N > 1 one distills from, when built inside the trial, is timed under
# GUIDE_PREFIX
TEACHER_TIMERS = ("finetune", "teacher evaluate")
GUIDE_PREFIX = "guide "


class _Timer:
    """Seconds per named span, summed; a prefixed view shares the sums (the guide's spans)."""

    def __init__(self, seconds: dict[str, float] | None = None, prefix: str = "") -> None:
        self.seconds: dict[str, float] = {} if seconds is None else seconds
        self.prefix = prefix

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            key = self.prefix + name
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

    def prefixed(self, prefix: str) -> _Timer:
        return _Timer(self.seconds, self.prefix + prefix)


def run_trial(spec: TrialSpec, progress: ProgressCallback | None = None) -> TrialResult:
    """Train, prune and evaluate one (N, s) point on the spec's device; a diverging trial, or
    one that runs out of GPU memory, returns status FAILED with the reason."""
    started = time.perf_counter()
    study, n, sparsity = spec.study, spec.n, spec.sparsity
    seed = study.study.seed if spec.seed is None else spec.seed
    training = study.training
    engine = Engine.resolve(spec.device, training.precision, training.compile)
    timer = _Timer()
    with thread_count(spec.threads or os.cpu_count() or 1):
        trial = _Trial(study, n, seed, timer, progress, engine, spec)
        try:
            result = trial.run(sparsity)
        except StoppedEarly as stopped:
            evidence = stopped.evidence
            stopped_result = TrialResult(
                study.task,
                n,
                sparsity,
                TrialStatus.STOPPED,
                reason=evidence.reason(),
                phase_seconds=timer.seconds,
                wall_time_s=time.perf_counter() - started,
                reused=tuple(trial.reused),
                seed=seed,
                numerics=numerics(engine),
                curve=trial.curves.get(evidence.point),
                stop=evidence,
            )
            if evidence.point != GridPoint(n, sparsity):  # the teacher missed: the point too
                teacher = trial.finished_teacher or dataclasses.replace(
                    stopped_result, sparsity=0.0, phase_seconds={}, wall_time_s=0.0
                )  # trained to its end, or stopped in its fine-tuning (a miss too)
                stopped_result = dataclasses.replace(stopped_result, teacher=teacher)
            return stopped_result
        except (Diverged, torch.OutOfMemoryError) as err:
            reason = str(err) if isinstance(err, Diverged) else _out_of_memory(engine, study, n)
            return TrialResult(
                study.task,
                n,
                sparsity,
                TrialStatus.FAILED,
                reason=reason,
                phase_seconds=timer.seconds,
                wall_time_s=time.perf_counter() - started,
                reused=tuple(trial.reused),
                seed=seed,
                numerics=numerics(engine),
            )
    return dataclasses.replace(
        result,
        phase_seconds=timer.seconds,
        wall_time_s=time.perf_counter() - started,
        reused=tuple(trial.reused),
    )


def _out_of_memory(engine: Engine, study: Study, n: int) -> str:
    """The reason of a trial that ran out of GPU memory: the batch and the memory."""
    rows, length = study.training.batch_rows, study.model.max_seq_length
    memory = ""
    if engine.on_gpu:
        total = torch.cuda.get_device_properties(engine.device).total_memory / 2**30
        peak = torch.cuda.max_memory_allocated(engine.device) / 2**30
        memory = f" ({peak:.1f} of {total:.0f} GiB in use at the peak)"
        torch.cuda.empty_cache()
    return (
        f"out of memory on {engine.device}{memory} with [training] batch_rows = {rows}: "
        f"{rows} x N={n} = {rows * n} sequences of {length} tokens a batch; lower batch_rows"
    )


class _Trial:
    """The state of one run_trial call: data, model source and the artifacts it builds."""

    def __init__(
        self,
        study: Study,
        n: int,
        seed: int,
        timer: _Timer,
        progress: ProgressCallback | None,
        engine: Engine,
        spec: TrialSpec | None = None,  # its early stopping and curve points
        data: tuple[Encoded, Encoded] | None = None,  # (train, dev), encoded, on the device
    ) -> None:
        self.study, self.n, self.seed, self.timer, self.progress = study, n, seed, timer, progress
        self.engine = engine
        self.stop = spec.stop if spec else None
        self.curve_points = spec.curve_points if spec else 0
        self.curves: dict[GridPoint, Curve] = {}  # of the last phases run, by model
        self.reused: list[str] = []
        self.finished_teacher: TrialResult | None = None  # for s > 0, once the teacher exists
        self.spec = TASKS[study.task]
        torch.manual_seed(seed)
        with timer("data"):
            self.tokenizer = _tokenizer(study.model.name_or_path)
            # moved to the device once: every phase's batches are drawn there
            self.train, self.dev = data or (
                split.to(engine.device) for split in _task_data(study, self.tokenizer)
            )

    # -- the phases, each cached --------------------------------------------------------------

    def run(self, sparsity: float) -> TrialResult:
        teacher, teacher_dir, teacher_info = self.teacher()
        as_teacher = self._result(teacher, teacher_dir, 0.0, 0.0, teacher_info, teacher_info)
        if sparsity == 0:
            return as_teacher
        self.finished_teacher = as_teacher
        if self.stop is not None and self.stop.hopeless(as_teacher.accuracy or 0.0, 0.0):
            # a pruned model does not beat its teacher (the search's monotone rule): its
            # pruning and fine-tuning would be paid for a known miss
            steps = int(teacher_info["steps"])
            raise StoppedEarly(
                StopEvidence(
                    point=GridPoint(self.n, 0.0),
                    phase=TEACHER_MISSED,
                    step=steps,
                    steps=steps,
                    accuracy=as_teacher.accuracy or 0.0,
                    margin=0.0,
                    threshold=self.stop.threshold,
                )
            )
        training = self.study.training
        key = cache_key(
            {
                "teacher": teacher_dir.name,
                "sparsity": sparsity,
                "training": training,
                "seed": self.seed,
                "pruning_rules": PRUNING_RULES,
                **self.task_key(),
                **self.precision_key(),
            }
        )
        folder = self.study.artifacts_folder / f"trial-n{self.n}-s{sparsity:g}-{key}"

        def build(partial: Path) -> None:
            torch.manual_seed(self.seed)  # the same gates and samples, built fresh or resumed
            student = self.prepared(load_model(teacher_dir, self.engine.device), task=True)
            l0 = L0Module(student.arch).to(self.engine.device)
            layer_map = identity_map(student.arch.hidden_size).to(self.engine.device)
            batch = training.batch_rows * self.n
            steps = steps_for(
                training.pruning_steps, training.pruning_epochs, len(self.train), batch
            )
            warmup = steps_for(
                training.lagrangian_warmup_steps,
                training.lagrangian_warmup_epochs,
                len(self.train),
                batch,
            )
            phase = pruning_phase(
                student,
                teacher,
                l0,
                layer_map,
                self.train,
                training,
                steps,
                min(warmup, steps),
                sparsity,
                self.seed,
            )
            with self.timer("prune"):
                self.run_phase(phase, partial / "prune-checkpoint")
            cofi_rule = prunable_params(materialized_architecture(student.arch, l0.deterministic()))
            small = self.prepared(materialize(student, l0.calibrated(sparsity)), task=True)
            post = steps_for(
                training.post_pruning_steps, training.post_pruning_epochs, len(self.train), batch
            )
            phase = finetune_phase(
                small,
                self.train,
                post,
                training.finetune_learning_rate,
                training.batch_rows,
                self.seed + 1,
                training,
                teacher=teacher,
                name="post-finetune",
            )
            point = GridPoint(self.n, sparsity)
            with self.timer("post-finetune"):
                self.run_checked_phase(phase, partial / "post-checkpoint", small, point, partial)
            save_model(small, partial)
            dense = prunable_params(student.arch)
            with self.timer("evaluate"):
                final = self.accuracy(small)
                write_json(
                    partial / "result.json",
                    {
                        "accuracy": final,
                        "curve": self.finish_curve(
                            point, phase.name, post, final, partial
                        ).to_json(),
                        "achieved_sparsity": 1 - prunable_params(small.arch) / dense,
                        "expected_sparsity": float(l0.expected_sparsity().detach()),
                        "cofi_rule_sparsity": 1 - cofi_rule / dense,
                        "numerics": numerics(self.engine),
                    },
                )

        if build_once(folder, build):
            self.reused.append("trial")
        info = read_json(folder / "result.json")
        model = load_model(folder, self.engine.device)
        result = self._result(
            model, folder, sparsity, info["achieved_sparsity"], teacher_info, info, teacher_dir
        )
        return dataclasses.replace(result, teacher=as_teacher)

    def teacher(self) -> tuple[Classifier, Path, dict[str, Any]]:
        """The fine-tuned (N, 0) model of this study."""
        study, training = self.study, self.study.training
        warmed_up = self.n > 1 and not study.model.multiplexed_name_or_path
        key = cache_key(
            {
                "start": self.warmup_folder.name if warmed_up else self.multiplexed_source(),
                "pooling": study.multiplexing.pooling if self.n > 1 else None,
                "model": study.model,
                "data": study.data,
                "training": [
                    training.finetune_epochs,
                    training.finetune_steps,
                    training.finetune_learning_rate,
                    training.new_learning_rate,
                    training.freeze_word_embeddings,
                    training.batch_rows,
                    training.max_grad_norm,
                ],
                "seed": self.seed,
                **self.task_key(),
                **self.precision_key(),
            }
        )
        folder = study.artifacts_folder / f"teacher-n{self.n}-{key}"

        def build(partial: Path) -> None:
            model, recovery = self.initial_model()
            model = self.prepared(model, task=True)
            guide = self.guide()
            torch.manual_seed(self.seed)  # whether the warm-up and guide were built or reused
            batch = training.batch_rows * self.n
            steps = steps_for(
                training.finetune_steps, training.finetune_epochs, len(self.train), batch
            )
            phase = finetune_phase(
                model,
                self.train,
                steps,
                training.finetune_learning_rate,
                training.batch_rows,
                self.seed,
                training,
                teacher=guide,
            )
            point = GridPoint(self.n, 0.0)
            with self.timer("finetune"):
                self.run_checked_phase(
                    phase, partial / "finetune-checkpoint", model, point, partial
                )
            save_model(model, partial)
            with self.timer("teacher evaluate"):
                final = self.accuracy(model)
                write_json(
                    partial / "teacher.json",
                    {
                        "accuracy": final,
                        "curve": self.finish_curve(
                            point, phase.name, steps, final, partial
                        ).to_json(),
                        "token_recovery": recovery,
                        "steps": steps,
                        "numerics": numerics(self.engine),
                    },
                )

        if build_once(folder, build):
            self.reused.append("teacher")
        model = self.engine.prepared(load_model(folder, self.engine.device))
        return model, folder, read_json(folder / "teacher.json")  # type: ignore[return-value]

    def run_phase(self, phase: Phase, checkpoint: Path) -> None:
        every = self.study.training.checkpoint_every
        run_phase(phase, checkpoint, every, self.progress, self.engine)

    def run_checked_phase(
        self, phase: Phase, checkpoint: Path, model: Classifier, point: GridPoint, partial: Path
    ) -> None:
        """A last phase (of the model of ``point``), with dev evaluations at the stop rule's
        checks and the curve points; each is kept in ``partial`` as it is made (a resumed phase
        keeps its curve), and a hopeless one stops the training (StoppedEarly)."""
        dev_batches = -(-len(self.dev) // (self.study.training.batch_rows * self.n))
        margins = self.stop.checks(phase.steps, dev_batches / 3) if self.stop else {}
        curve_steps = {
            check_step(k / self.curve_points, phase.steps) for k in range(1, self.curve_points)
        }
        recorded = partial / f"curve-{phase.name}.json"
        points = (
            [(int(s), float(a)) for s, a in read_json(recorded)["points"]]
            if recorded.exists()
            else []
        )

        def check(step: int) -> None:
            with self.timer(f"{phase.name} checks"):
                accuracy = self.accuracy(model)
            # a phase resumed from a checkpoint before its last check evaluates that step again
            points[:] = [p for p in points if p[0] < step]
            points.append((step, accuracy))
            write_json(recorded, {"points": points})
            self.curves[point] = Curve(
                label=f"{point} {phase.name}", steps=phase.steps, points=tuple(points)
            )
            margin = margins.get(step)
            best = max(a for _, a in points)  # the statistic the margins are calibrated for
            if self.stop is not None and margin is not None and self.stop.hopeless(best, margin):
                raise StoppedEarly(
                    StopEvidence(
                        point=point,
                        phase=phase.name,
                        step=step,
                        steps=phase.steps,
                        accuracy=best,
                        margin=margin,
                        threshold=self.stop.threshold,
                    )
                )

        every = self.study.training.checkpoint_every
        run_phase(
            phase,
            checkpoint,
            every,
            self.progress,
            self.engine,
            check=check,
            check_steps=set(margins) | curve_steps,
        )

    def finish_curve(
        self, point: GridPoint, phase: str, steps: int, final: float, partial: Path
    ) -> Curve:
        """The last phase's curve: what was checked, then the final accuracy at its end."""
        recorded = partial / f"curve-{phase}.json"
        points = (
            [(int(s), float(a)) for s, a in read_json(recorded)["points"]]
            if recorded.exists()
            else []
        )
        curve = Curve(label=f"{point} {phase}", steps=steps, points=(*points, (steps, final)))
        self.curves[point] = curve
        return curve

    def accuracy(self, model: Classifier) -> float:
        return accuracy(model, self.dev, self.study.training.batch_rows, self.engine)

    def precision_key(self) -> dict[str, Any]:
        return _precision_key(self.engine.precision)

    def prepared(self, model: Classifier, task: bool = False) -> Classifier:
        """The model to train: the study's frozen parts frozen, for a task phase (``task``)
        the study's dropout, on the trial's device (and compiled, if the study asks)."""
        training = self.study.training
        if training.freeze_word_embeddings:
            model.encoder.embeddings.word.weight.requires_grad_(False)
        if task and training.dropout >= 0:
            set_dropout(model, training.dropout)
        return self.engine.prepared(model)  # type: ignore[return-value]

    def task_key(self) -> dict[str, Any]:
        """The study's dropout and distillation from N = 1 for the cache keys of task
        artifacts, absent when unset (so keys from before these fields existed still match)."""
        training = self.study.training
        key: dict[str, Any] = {"dropout": training.dropout} if training.dropout >= 0 else {}
        if training.distill_from_n1 and self.n > 1:
            key["distill_from_n1"] = True
        return key

    def guide(self) -> Classifier | None:
        """The (1, 0) teacher whose logits an N > 1 model also learns (``distill_from_n1``)."""
        if self.n == 1 or not self.study.training.distill_from_n1:
            return None
        sibling = _Trial(
            self.study,
            1,
            self.seed,
            self.timer.prefixed(GUIDE_PREFIX),
            self.progress,
            self.engine,
            data=(self.train, self.dev),
        )
        model, _, _ = sibling.teacher()
        return model.eval()

    def multiplexed_source(self) -> str:
        template = self.study.model.multiplexed_name_or_path
        return (
            template.format(n=self.n) if self.n > 1 and template else self.study.model.name_or_path
        )

    def initial_model(self) -> tuple[Classifier, float | None]:
        """The model fine-tuning starts from, and the token recovery of its warm-up."""
        if self.n == 1 or self.study.model.multiplexed_name_or_path:
            model, _ = load_pretrained(
                self.multiplexed_source(), seed=self.seed, **self.overrides()
            )
            return model, None
        return self.warmed_up()

    def overrides(self) -> dict[str, Any]:
        model = self.study.model
        values: dict[str, Any] = {
            "num_labels": self.spec.num_labels,
            "num_layers": model.num_layers,
            "cls_token_id": self.tokenizer.cls_token_id,
        }
        if self.n > 1 and not model.multiplexed_name_or_path:
            values.update(multiplexing_fields(self.study.multiplexing, self.n))
        return values

    @functools.cached_property
    def warmup_folder(self) -> Path:
        # cached: with a named warm-up text, its key hashes the text file
        return warmup_folder(self.study, self.n, self.seed, self.engine.precision)

    def warmed_up(self) -> tuple[Classifier, float]:
        study, warmup = self.study, self.study.warmup
        folder = self.warmup_folder

        def build(partial: Path) -> None:
            model, _ = load_pretrained(study.model.name_or_path, seed=self.seed, **self.overrides())
            model = self.prepared(model)
            head = RetrievalHead(model)  # on the model's device
            text = (
                encode(
                    read_unlabelled_text(warmup.text, study.resolve),
                    self.tokenizer,
                    warmup.max_length,
                )
                if warmup.text
                else self.train.truncated(warmup.max_length)
            )
            dev_text = self.dev.truncated(warmup.max_length)
            steps = warmup.steps_per_instance * self.n
            phase = warmup_phase(model, head, text, warmup, self.seed, steps)
            with self.timer("warmup"):
                self.run_phase(phase, partial / "warmup-checkpoint")
                if warmup.mlm_steps:
                    phase = warmup_phase(
                        model,
                        head,
                        text,
                        warmup,
                        self.seed + 1,
                        warmup.mlm_steps,
                        mask_token_id=self.tokenizer.mask_token_id,
                    )
                    self.run_phase(phase, partial / "mlm-checkpoint")
            save_model(model, partial)
            write_json(
                partial / "warmup.json",
                {
                    "token_recovery": token_recovery(model, head, dev_text),
                    "steps": steps,
                    "mlm_steps": warmup.mlm_steps,
                    "numerics": numerics(self.engine),
                },
            )

        if build_once(folder, build):
            self.reused.append("warmup")
        model = load_model(folder, self.engine.device)
        model.train()
        return model, read_json(folder / "warmup.json")["token_recovery"]

    def _result(
        self,
        model: Classifier,
        folder: Path,
        target: float,
        achieved: float,
        teacher_info: dict[str, Any],
        info: dict[str, Any],  # the artifact's record: accuracy, numerics
        teacher_folder: Path | None = None,  # for s > 0: the model it was pruned from
    ) -> TrialResult:
        """The trial's result; the model folder is described (tokenizer, info, card) with it."""
        from trainers.timing import measure_one

        settings = dataclasses.replace(self.study.throughput, device=str(self.engine.device))
        with self.timer("throughput"):
            throughput = measure_one(model, settings, self.study.model.max_seq_length)
        result = TrialResult(
            self.study.task,
            self.n,
            target,
            TrialStatus.COMPLETE,
            accuracy=info["accuracy"],
            achieved_sparsity=achieved,
            parameters=prunable_params(model.arch),
            throughput=throughput,
            token_recovery=teacher_info.get("token_recovery"),
            artifact_path=str(folder),
            seed=self.seed,
            numerics=info.get("numerics") or numerics(self.engine),  # older artifacts: now
            curve=_curve(info),
        )
        describe(folder, self.model_info(result, teacher_folder), self.tokenizer)
        return result

    def model_info(self, result: TrialResult, teacher_folder: Path | None) -> ModelInfo:
        study, spec = self.study, self.spec
        return ModelInfo(
            task=study.task,
            labels=spec.label_texts or tuple(str(i) for i in range(spec.num_labels)),
            text_columns=spec.glue_text_columns,
            label_column=spec.glue_label_column,
            max_length=study.model.max_seq_length,
            n=self.n,
            sparsity=result.sparsity,
            achieved_sparsity=result.achieved_sparsity or 0.0,
            parameters=result.parameters or 0,
            dev_accuracy=result.accuracy or 0.0,
            dev_examples=len(self.dev),
            throughput=result.throughput,
            throughput_device=str(self.engine.device),
            study=study.name,
            study_file=str(study.path.resolve()) if study.path else "",
            recipe=study.recipe,
            base_model=self.multiplexed_source(),
            teacher=str(teacher_folder) if teacher_folder else None,
            seed=self.seed,
            numerics=result.numerics,
        )


def _curve(info: dict[str, Any]) -> Curve | None:
    """An artifact's recorded curve (None for artifacts from before curves were kept)."""
    return Curve.from_json(info["curve"]) if info.get("curve") else None


def warmup_folder(study: Study, n: int, seed: int, precision: Precision = Precision.FP32) -> Path:
    """The warm-up artifact of this model, N, recipe and text; shared across studies."""
    m = study.multiplexing
    key = cache_key(
        {
            "model": study.model.name_or_path,
            "layers": study.model.num_layers,
            "length": study.model.max_seq_length,
            "n": n,
            # the task's sentences by default; a named text is shared across tasks
            "task_text": None if study.warmup.text else study.task,
            "data": None if study.warmup.text else study.data,
            "multiplexing": [m.style, m.demux, m.key_norm, m.demux_depth],  # not pooling
            "warmup": study.warmup,
            **({"text": _warmup_text_id(study)} if study.warmup.text else {}),
            "frozen_words": study.training.freeze_word_embeddings,
            "seed": seed,
            **_precision_key(precision),
        }
    )
    source = slug(Path(study.warmup.text).stem) if study.warmup.text else study.task
    name = f"{slug(study.model.name_or_path)}-n{n}-{source}-{key}"
    return study.folder.resolve() / "artifacts" / "warmup" / name


def _precision_key(precision: Precision) -> dict[str, Any]:
    """An artifact's training precision for its cache key; absent for fp32 (so keys from
    before precisions existed still match)."""
    return {} if precision is Precision.FP32 else {"precision": precision.value}


def _warmup_text_id(study: Study) -> str:
    """What names the warm-up text in its cache key: a file's content hash (so a moved file
    still matches and an edited one does not), or the hub id."""
    text = study.warmup.text
    if text.startswith("hub:"):
        return text
    path = study.resolve(text)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as err:
        raise DataError(f"[warmup] text {str(path)!r} cannot be read: {err}") from None


@functools.lru_cache(maxsize=4)
def _tokenizer(name_or_path: str):  # type: ignore[no-untyped-def]
    return load_tokenizer(name_or_path)


def _task_data(study: Study, tokenizer) -> tuple[Encoded, Encoded]:  # type: ignore[no-untyped-def]
    data = study.data
    length = study.model.max_seq_length
    train, dev = _splits(
        study.task, data.source.value, str(study.resolve(data.glue_dir)) if data.glue_dir else ""
    )
    train = train.subset(data.max_train_examples, data.subset, study.study.seed)
    dev = dev.subset(data.max_eval_examples, "first", study.study.seed)
    return encode(train, tokenizer, length), encode(dev, tokenizer, length)


@functools.lru_cache(maxsize=4)
def _splits(task: str, source: str, glue_dir: str) -> tuple[Split, Split]:
    if source == DataSource.GLUE_DIR.value:
        return read_glue_split(glue_dir, task, "train"), read_glue_split(glue_dir, task, "dev")
    return read_hub_split(task, "train"), read_hub_split(task, "dev")


def warm_up(
    study: Study, n: int, progress: ProgressCallback | None = None, device: str = "auto"
) -> dict[str, Any]:
    """Build (or reuse) the retrieval warm-up artifact of width N for a study's model and
    recipe; ``autoprumux warmup``. Returns its token recovery, path and whether it existed."""
    training = study.training
    engine = Engine.resolve(device, training.precision, training.compile)
    trial = _Trial(study, n, study.study.seed, _Timer(), progress, engine)
    if study.model.multiplexed_name_or_path:
        raise CheckpointError(
            f"{study.path}: [model] multiplexed_name_or_path is set; its "
            "checkpoints are already warmed up"
        )
    _, recovery = trial.warmed_up()
    return {
        "n": n,
        "token_recovery": recovery,
        "artifact_path": str(trial.warmup_folder),
        "reused": "warmup" in trial.reused,
        "seconds": trial.timer.seconds,
    }
