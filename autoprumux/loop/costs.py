"""What a training costs, before it runs: the proposer's denominator.

A training of (N, s) pays for up to three parts (a record keeps each, ``TrialRecord.warmup_s``,
``teacher_s``, ``own_s``):

- the retrieval warm-up of width N (N > 1), unless built already;
- the (N, 0) teacher's fine-tuning, unless trained already (it is the point itself at s = 0);
- its own phases (s > 0): CoFi pruning with the teacher, then fine-tuning with its logits.

Each part's work is counted in *forward units*: examples passed through a model, divided by
that model's inference throughput (the throughput table, examples/s), with a training step
worth 3 forward passes (forward + backward) and a teacher's or guide's logits 1. The seconds
per unit of each part come from the study's own trainings (measured seconds / units, summed
over the records that paid for that part), so the model speaks in the study's seconds as soon
as one training finished; before any, in the table's seconds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.core.study import Study

TRAIN_STEP_UNITS = 3.0  # a training step's forward passes' worth: forward + backward (~2x)
# GLUE training-set sizes (sentences or pairs), for recipes given in epochs
GLUE_TRAIN_EXAMPLES = {"sst2": 67_349, "qnli": 104_743, "qqp": 363_846, "mnli": 392_702}


class CostPart(enum.Enum):
    WARMUP = "warmup"
    TEACHER = "teacher"
    OWN = "own"


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A study's training work, as the cost model reads it: steps (or epochs) and batches."""

    warmup_steps_per_instance: int
    warmup_mlm_steps: int
    warmup_rows: int
    warmup_length_ratio: float  # warm-up sequence length / the table's (shorter is cheaper)
    finetune_steps: int  # 0: finetune_epochs over the training set
    finetune_epochs: float
    pruning_steps: int
    pruning_epochs: float
    post_pruning_steps: int
    post_pruning_epochs: float
    batch_rows: int
    train_examples: int
    distill_from_n1: bool
    needs_warmup: bool  # N > 1 starts from a warm-up (no published multiplexed checkpoint)
    # the (1, 0) teacher is a fine-tuned checkpoint: evaluated, not trained; N > 1 distils
    # from it
    teacher_given: bool = False

    def examples(self, steps: int, epochs: float, n: int) -> float:
        """Examples a phase passes through the model at width N (steps x rows x N)."""
        return float(steps * self.batch_rows * n) if steps > 0 else epochs * self.train_examples


@dataclass(frozen=True, kw_only=True)
class PartCosts:
    """Predicted seconds of each part of one point's training, nothing built yet."""

    warmup: float
    teacher: float
    own: float


def forward_units(
    recipe: Recipe, throughput: Mapping[GridPoint, float], point: GridPoint
) -> PartCosts:
    """The work of each part of ``point``'s training in forward units (seconds at the table's
    inference speed)."""
    n = point.n
    dense = throughput[GridPoint(n, 0.0)]
    warmup = 0.0
    if n > 1 and recipe.needs_warmup:
        steps = recipe.warmup_steps_per_instance * n + recipe.warmup_mlm_steps
        examples = steps * recipe.warmup_rows * n
        warmup = TRAIN_STEP_UNITS * examples * recipe.warmup_length_ratio / dense
    finetune = recipe.examples(recipe.finetune_steps, recipe.finetune_epochs, n)
    # a given (1, 0) teacher costs one dev evaluation, left out as every evaluation is
    teacher = 0.0 if n == 1 and recipe.teacher_given else TRAIN_STEP_UNITS * finetune / dense
    guided = recipe.distill_from_n1 or recipe.teacher_given
    if n > 1 and guided and BASELINE in throughput:
        teacher += finetune / throughput[BASELINE]  # the (1, 0) model's logits
    own = 0.0
    if point.sparsity > 0:
        pruning = recipe.examples(recipe.pruning_steps, recipe.pruning_epochs, n)
        post = recipe.examples(recipe.post_pruning_steps, recipe.post_pruning_epochs, n)
        # pruning: a masked dense student plus the teacher; then the small model plus the teacher
        own = (TRAIN_STEP_UNITS + 1) * pruning / dense + post * (
            TRAIN_STEP_UNITS / throughput[point] + 1 / dense
        )
    return PartCosts(warmup=warmup, teacher=teacher, own=own)


@dataclass(frozen=True, kw_only=True)
class CostModel:
    """Predicted seconds of every candidate's parts; :meth:`predict` leaves out what is built."""

    parts: Mapping[GridPoint, PartCosts]

    @classmethod
    def for_study(
        cls,
        recipe: Recipe,
        throughput: Mapping[GridPoint, float],
        records: Iterable[TrialRecord] = (),
    ) -> CostModel:
        """Forward units scaled by the seconds per unit the study's trainings measured."""
        units = {p: forward_units(recipe, throughput, p) for p in throughput}
        scale = seconds_per_unit(units, records)
        return cls(
            parts={
                p: PartCosts(
                    warmup=u.warmup * scale[CostPart.WARMUP],
                    teacher=u.teacher * scale[CostPart.TEACHER],
                    own=u.own * scale[CostPart.OWN],
                )
                for p, u in units.items()
            }
        )

    def predict(
        self,
        point: GridPoint,
        trained: Iterable[GridPoint],
        building: Iterable[GridPoint] = (),
        stopped: Iterable[GridPoint] = (),
    ) -> float:
        """Seconds to train ``point`` now: the sum of what it is :meth:`charged`."""
        charged = self.charged(point, trained, building, stopped)
        return charged.warmup + charged.teacher + charged.own

    def charged(
        self,
        point: GridPoint,
        trained: Iterable[GridPoint],
        building: Iterable[GridPoint] = (),
        stopped: Iterable[GridPoint] = (),
    ) -> PartCosts:
        """The seconds of each part ``point``'s training pays now: its warm-up unless a point of
        its row was trained (or stopped early: its warm-up was built) or is being built, its
        teacher unless (N, 0) was trained or a point of its row is being built (that training
        builds it; this one waits and reuses it), and its own phases."""
        parts = self.parts[point]
        trained = set(trained)
        rows_building = {p.n for p in building}
        teacher_done = GridPoint(point.n, 0.0) in trained or point.n in rows_building
        warmup_done = point.n in {p.n for p in (*trained, *stopped)} | rows_building
        return PartCosts(
            warmup=0.0 if warmup_done else parts.warmup,
            teacher=0.0 if teacher_done else parts.teacher,
            own=parts.own,
        )


def seconds_per_unit(
    units: Mapping[GridPoint, PartCosts], records: Iterable[TrialRecord]
) -> dict[CostPart, float]:
    """Measured seconds / predicted units of each part, over the trainings that paid for it in
    full (complete, with costs, the part > 0); a part never measured takes the others' ratio,
    and with no measurement at all a unit is a second."""
    seconds = dict.fromkeys(CostPart, 0.0)
    predicted = dict.fromkeys(CostPart, 0.0)
    for record in records:
        if record.status is not TrialStatus.COMPLETE or record.point not in units:
            continue
        unit = units[record.point]
        for part, measured, work in (
            (CostPart.WARMUP, record.warmup_s, unit.warmup),
            (CostPart.TEACHER, record.teacher_s, unit.teacher),
            (CostPart.OWN, record.own_s, unit.own),
        ):
            if measured and work > 0:
                seconds[part] += measured
                predicted[part] += work
    measured_parts = [p for p in CostPart if predicted[p] > 0]
    overall = (
        sum(seconds[p] for p in measured_parts) / sum(predicted[p] for p in measured_parts)
        if measured_parts
        else 1.0
    )
    return {p: seconds[p] / predicted[p] if predicted[p] > 0 else overall for p in CostPart}


def recipe_of(
    study: Study, train_examples: int | None = None, teacher_given: bool = False
) -> Recipe:
    """The cost model's view of a study file; ``train_examples``: its training split's size as
    read (else its ``max_train_examples``, its GLUE preset's size, or 100,000);
    ``teacher_given``: its model is a fine-tuned classifier, the (1, 0) teacher as is."""
    training, warmup = study.training, study.warmup
    return Recipe(
        warmup_steps_per_instance=warmup.steps_per_instance,
        warmup_mlm_steps=warmup.mlm_steps,
        warmup_rows=warmup.batch_rows,
        warmup_length_ratio=min(1.0, warmup.max_length / study.model.max_seq_length),
        finetune_steps=training.finetune_steps,
        finetune_epochs=training.finetune_epochs,
        pruning_steps=training.pruning_steps,
        pruning_epochs=training.pruning_epochs,
        post_pruning_steps=training.post_pruning_steps,
        post_pruning_epochs=training.post_pruning_epochs,
        batch_rows=training.batch_rows,
        train_examples=train_examples
        or study.data.max_train_examples
        or GLUE_TRAIN_EXAMPLES.get(study.task, 100_000),
        distill_from_n1=training.distill_from_n1,
        needs_warmup=not study.model.multiplexed_name_or_path,
        teacher_given=teacher_given,
    )
