"""What a stage's build uses of the trial that runs it: the study's task data on the device, the
engine, the timer, and the phases run on them -- a plain phase, or a model's last phase with the
dev checks of early stopping and the learning curve it records.

:class:`TrialServices` holds them; the runner (:mod:`trainers.trial.run`) adds the stages a
build may start (the warm-up a fine-tuning starts from, the (1, 0) teacher it distills from),
and with them is the :class:`trainers.trial.stages.RunningTrial` each build sees.

Each phase run here is recorded in the trial's :class:`PhaseLog` (its steps, examples, tokens,
seconds, FLOP, MFU and peak memory: a :class:`~trainers.trial.trial_results.PhaseRecord`), which
also holds what runs now -- the phase and the shape of its last batch, or the dev evaluation --
for the reason of a trial that runs out of memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autoprumux.core.early_stop import (
    Curve,
    StopEvidence,
    StoppedEarly,
    StopPhase,
    StopRule,
    check_step,
)
from autoprumux.core.grid import GridPoint
from autoprumux.core.metrics import score
from autoprumux.core.progress import ProgressCallback
from autoprumux.core.study import Study, TrainingSection
from trainers.data.splits import Encoded
from trainers.model.architecture import multiplexing_fields
from trainers.model.classifier import Classifier, set_dropout
from trainers.runtime.device import Engine, numerics
from trainers.runtime.flops import mfu, peak_flops
from trainers.training.loop import Phase, PhaseFigures, run_phase
from trainers.training.phases import confusion, padding_buckets
from trainers.trial.artifacts import read_json, write_json
from trainers.trial.cache_keys import warms_up
from trainers.trial.task_data import positive_label_id, task_data, task_tables, task_tokenizer
from trainers.trial.trial_results import CHECKPOINTS_SPAN, PhaseRecord, SpanTimer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEV_EVALUATION = "dev evaluation"  # Activity.name while the dev split is scored
_GIB = 2**30


@dataclass
class Activity:
    """What the trial runs on its device now: a phase's step loop, with the shape of the last
    batch it drew (host integers, read from the batch's shape: no device wait), or a dev
    evaluation; what the reason of a trial that ran out of memory names."""

    name: str  # the phase (prefixed as its timer is: "guide finetune"), or DEV_EVALUATION
    sequences: int = 0  # rows x N of the last batch drawn; 0: none drawn yet
    length: int = 0  # that batch's padded length (a dev evaluation: its longest)
    drawn: bool = False  # whether the shape is of a batch drawn (the one that failed)


@dataclass
class PhaseLog:
    """The trial's phases as they run, shared by the (1, 0) guide it may build: the records of
    the phases done, and what runs now."""

    records: list[PhaseRecord] = field(default_factory=list)
    running: Activity | None = None


def as_trained(model: Classifier, training: TrainingSection, task: bool = True) -> Classifier:
    """The model as the study trains it: its word embeddings frozen where ``[training]
    freeze_word_embeddings`` says, and for a task phase (``task``) the study's dropout."""
    if training.freeze_word_embeddings:
        model.encoder.embeddings.word.weight.requires_grad_(False)
    if task and training.dropout >= 0:
        set_dropout(model, training.dropout)
    return model


class TrialServices:
    """One trial's data, engine, timer and curves, and the phases it runs on them."""

    def __init__(
        self,
        study: Study,
        n: int,
        seed: int,
        timer: SpanTimer,
        progress: ProgressCallback | None,
        engine: Engine,
        stop: StopRule | None = None,  # the search's threshold and margins, if it stops trainings
        curve_points: int = 0,  # dev evaluations at k/curve_points of the last phases
        data: tuple[Encoded, Encoded] | None = None,  # (train, dev), encoded, on the device
        log: PhaseLog | None = None,  # another trial's, to record into (the guide's: its own)
    ) -> None:
        self.study, self.n, self.seed, self.timer, self.progress = study, n, seed, timer, progress
        self.engine, self.stop, self.curve_points = engine, stop, curve_points
        self.curves: dict[GridPoint, Curve] = {}  # of the last phases run, by model
        self.log = log if log is not None else PhaseLog()
        torch.manual_seed(seed)
        with timer("data"):
            self.tokenizer: PreTrainedTokenizerBase = task_tokenizer(study.model.name_or_path)
            # moved to the device once: every phase's batches are drawn there
            train, dev = data or (
                split.to(engine.device) for split in task_data(study, self.tokenizer)
            )
            self.train: Encoded = train
            self.dev: Encoded = dev
            training = study.training
            # the lengths batches are padded to (fixed shapes on a GPU; none, cut to their
            # longest row, on a CPU unless the study gives them): evaluation pads to the same
            self.length_buckets: tuple[int, ...] = padding_buckets(
                train,
                training.batch_rows * n,
                n if training.group_by_length else 0,
                training.length_buckets,
                compiled=engine.compile,
            )
            self.label_names = task_tables(study).label_names  # the classifier's, in id order
            # the label whose F1 metric = "f1" is (the second label unless the study names one)
            self.positive_label_id = positive_label_id(study, self.label_names)

    def numerics(self) -> dict[str, Any]:
        """What the trial's numbers depend on (:func:`trainers.runtime.device.numerics`), and
        the length buckets its batches were padded to, where there are any."""
        record = numerics(self.engine)
        if self.length_buckets:
            record["length_buckets"] = list(self.length_buckets)
        return record

    def overrides(self) -> dict[str, Any]:
        """Architecture fields of the base model at width N (load_pretrained's overrides)."""
        model = self.study.model
        values: dict[str, Any] = {
            "num_labels": len(self.label_names),
            "num_layers": model.num_layers,
            "cls_token_id": self.tokenizer.cls_token_id,
        }
        if warms_up(self.study, self.n):
            values.update(multiplexing_fields(self.study.multiplexing, self.n))
        return values

    def prepared(self, model: Classifier, task: bool = False) -> Classifier:
        """The model to train: the study's frozen parts frozen, for a task phase (``task``)
        the study's dropout, on the trial's device (and compiled, if the study asks)."""
        return self._on_engine(as_trained(model, self.study.training, task))

    def _on_engine(self, model: Classifier) -> Classifier:
        prepared = self.engine.prepared(model)
        assert isinstance(prepared, Classifier)  # moved and compiled in place
        return prepared

    def accuracy(self, model: Classifier, engine: Engine | None = None) -> float:
        """The model's dev score in the study's metric (``[study] metric``; accuracy: a
        fraction), on the trial's engine or ``engine`` (a model served in another precision:
        :mod:`trainers.deploy.precisions`)."""
        rows = self.study.training.batch_rows
        longest = max(self.length_buckets, default=self.dev.input_ids.shape[1])
        with self._running(Activity(DEV_EVALUATION, rows * self.n, int(longest))):
            counts = confusion(
                model,
                self.dev,
                rows,
                engine or self.engine,
                len(self.label_names),
                self.length_buckets,
            )
        return score(self.study.study.metric, counts, self.positive_label_id)

    @contextlib.contextmanager
    def _running(self, activity: Activity) -> Iterator[None]:
        """``activity`` is what runs for the block; what ran before it runs again after it
        (a dev check inside a phase), unless the block fails (the failure's activity stays)."""
        before, self.log.running = self.log.running, activity
        yield
        self.log.running = before

    def _watched(self, phase: Phase) -> tuple[Phase, Activity]:
        """The phase, its batches' shapes noted as it draws them (what a trial that runs out
        of memory names), and the activity that notes them."""
        activity = Activity(self.timer.prefix + phase.name)
        source = phase.data

        def data(start: int) -> Iterator[Encoded]:
            for batch in source(start):
                sequences, length = batch.input_ids.shape  # host metadata: no device wait
                activity.sequences, activity.length = int(sequences), int(length)
                activity.drawn = True
                yield batch

        return dataclasses.replace(phase, data=data), activity

    def _keep(self, figures: PhaseFigures) -> None:
        """``run_phase``'s figures of a phase, rated against the device's peak: recorded."""
        recorded = numerics(self.engine)
        name = str(recorded["device_name"])
        peak = (
            peak_flops(name, self.engine.precision.value, bool(recorded.get("tf32")))
            if self.engine.on_gpu
            else None  # a CPU's peak is not known: no MFU
        )
        seconds = figures.seconds
        self.log.records.append(
            PhaseRecord(
                name=self.timer.prefix + figures.name,
                steps=figures.steps,
                examples=figures.examples,
                tokens=figures.tokens,
                seconds=seconds,
                examples_per_s=figures.examples / seconds if seconds > 0 else 0.0,
                flop=figures.flop,
                tflop_per_s=figures.flop / seconds / 1e12 if seconds > 0 else 0.0,
                # a phase that counts no FLOP (no Phase.flop) has no MFU, not 0
                mfu=mfu(figures.flop, seconds, peak) if figures.flop > 0 else None,
                peak_memory_gib=(
                    figures.peak_memory / _GIB if figures.peak_memory is not None else None
                ),
                device_name=name,
                compiles=figures.compiles,
            )
        )

    def run_phase(self, phase: Phase, checkpoint: Path, **checks: Any) -> None:
        """Run a phase to its end, resuming from (and saving to) ``checkpoint``, its batches
        watched and its figures kept; ``checks``: run_phase's ``check`` and ``check_steps``."""
        watched, activity = self._watched(phase)
        with self._running(activity):
            run_phase(
                watched,
                checkpoint,
                progress=self.progress,
                engine=self.engine,
                figures=self._keep,
                **checks,
                **self._checkpoints(phase),
            )

    def _checkpoints(self, phase: Phase) -> dict[str, Any]:
        """run_phase's checkpoint arguments: the study's schedule of them, and the span that
        records what they cost the phase's step loop (``<phase> checkpoints``)."""
        training = self.study.training

        def record(seconds: float) -> None:
            self.timer.add(phase.name + CHECKPOINTS_SPAN, seconds)

        return {
            "checkpoint_every": training.checkpoint_every,
            "checkpoint_minutes": training.checkpoint_minutes,
            "checkpoint_seconds": record,
        }

    def run_checked_phase(
        self, phase: Phase, checkpoint: Path, model: Classifier, point: GridPoint, partial: Path
    ) -> None:
        """A last phase (of the model of ``point``), with dev evaluations at the stop rule's
        checks and the curve points; each is kept in ``partial`` as it is made (a resumed phase
        keeps its curve), and a hopeless one stops the training (StoppedEarly)."""
        stop_phase = StopPhase(phase.name)  # the teacher's or the pruned model's fine-tuning
        dev_batches = -(-len(self.dev) // (self.study.training.batch_rows * self.n))
        margins = self.stop.checks(phase.steps, dev_batches / 3) if self.stop else {}
        curve_steps = {
            check_step(k / self.curve_points, phase.steps) for k in range(1, self.curve_points)
        }
        recorded = partial / f"curve-{phase.name}.json"
        points = _recorded_points(recorded)

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
                        phase=stop_phase,
                        step=step,
                        steps=phase.steps,
                        accuracy=best,
                        margin=margin,
                        threshold=self.stop.threshold,
                    )
                )

        self.run_phase(phase, checkpoint, check=check, check_steps=set(margins) | curve_steps)

    def finish_curve(
        self, point: GridPoint, phase: str, steps: int, final: float, partial: Path
    ) -> Curve:
        """The last phase's curve: what was checked, then the final accuracy at its end."""
        points = _recorded_points(partial / f"curve-{phase}.json")
        curve = Curve(label=f"{point} {phase}", steps=steps, points=(*points, (steps, final)))
        self.curves[point] = curve
        return curve


def _recorded_points(path: Path) -> list[tuple[int, float]]:
    """The (step, accuracy) checks of a phase kept so far in its partial folder."""
    if not path.exists():
        return []
    return [(int(s), float(a)) for s, a in read_json(path)["points"]]
