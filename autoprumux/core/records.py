"""Trial records and the results table: what was measured at each (task, N, s).

A results file has one row per trained (or attempted) model. Columns ``task, n, sparsity,
accuracy, throughput`` are required; the others are optional. Units: ``accuracy`` holds the
study's metric (:mod:`autoprumux.core.metrics`: accuracy, F1 or macro-F1, fractions in [0, 1], or
Matthews' coefficient in [-1, 1]), throughput is examples per second, wall time in seconds.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from statistics import fmean

from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import EXTRA_PRECISIONS, PRECISION_FIELDS, Precision


class TrialStatus(enum.Enum):
    COMPLETE = "complete"  # trained and evaluated: accuracy and throughput are measured
    FAILED = "failed"  # did not train (diverged, crashed): a hole the surface must not fill
    PRUNED = "pruned"  # stopped by the search before the end: no measurement, no verdict
    # stopped early because it could not reach the threshold (autoprumux.core.early_stop): no
    # measurement, but a verdict: its accuracy is at most stop_accuracy + stop_margin
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True)
class RecipeSpeed:
    """A served model's file against the file the throughput table times for its precision
    (int8: a static QDQ file against dynamic int8 of the same weights), timed side by side in
    one run: the table's row times these is this file's."""

    throughput: float  # its examples/s over the table's file's
    latency: float  # its seconds a batch-1 request over the table's file's


# TrialRecord's RecipeSpeed fields (int8's: the only precision with more than one recipe)
RATIO_FIELDS = ("int8_throughput_ratio", "int8_latency_ratio")


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """One trained (or attempted) model: a task at one (N, s)."""

    task: str
    n: int
    sparsity: float  # the target sparsity of the grid point
    # the study's metric on dev (core.metrics; named accuracy, its default): in [-1, 1], a
    # fraction in [0, 1] for every metric but Matthews' coefficient
    accuracy: float | None = None
    throughput: float | None = None  # examples per second
    # the same model's dev figure served in another precision (core.precision), evaluated
    # after its training; None where the study does not serve it in that precision
    accuracy_bf16: float | None = None
    accuracy_fp16: float | None = None
    accuracy_int8: float | None = None
    # where its int8 file was made by a static recipe (dynamic int8 cost too much accuracy):
    # that file against dynamic int8 of the same weights, timed side by side, as examples/s
    # and batch-1 seconds over dynamic's (RecipeSpeed); None for dynamic int8, which is what
    # the throughput table times
    int8_throughput_ratio: float | None = None
    int8_latency_ratio: float | None = None
    status: TrialStatus = TrialStatus.COMPLETE
    reason: str | None = None  # why it failed or was pruned
    achieved_sparsity: float | None = None  # sparsity of the materialized model
    wall_time_s: float | None = None
    gpu_hours: float | None = None
    seed: int | None = None
    artifact_path: str | None = None
    # the number of the search trial whose training produced this model on the way (an (N, s)
    # trial fine-tunes the (N, 0) teacher it prunes): recorded free, not a training of its own
    from_trial: int | None = None
    node: str | None = None  # where it was trained, on a Ray cluster: "address/node id"
    device: str | None = None  # the device it trained on: "cpu", "cuda:1"
    # its training phases' model FLOP utilization: the FLOP they did over their seconds, a
    # fraction of the GPU's dense peak in the trial's precision; None on a CPU, on an unknown
    # GPU, or for a trial that ran no phase (all reused)
    mfu: float | None = None
    peak_memory_gib: float | None = None  # the GPU's peak allocation in its phases
    # what the training cost, in seconds: building the N's warm-up, the (N, 0) teacher (with
    # the (1, 0) model an N > 1 one distills from, when it built it) and the rest (the point's
    # own phases, evaluation, timing); 0 for an artifact it reused. None: not measured
    warmup_s: float | None = None
    teacher_s: float | None = None
    own_s: float | None = None
    # a STOPPED training's evidence: at step stop_step of its last phase the dev metric was
    # stop_accuracy, and the phase gains at most stop_margin from there (early_stop.MARGINS)
    stop_step: int | None = None
    stop_accuracy: float | None = None
    stop_margin: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task.strip():
            raise FieldError("task", "is empty; name the task (e.g. sst2)")
        point = GridPoint(self.n, self.sparsity)  # validates n and sparsity
        object.__setattr__(self, "sparsity", point.sparsity)
        if self.status is TrialStatus.COMPLETE:
            for name in ("accuracy", "throughput"):
                if getattr(self, name) is None:
                    raise FieldError(name, "is missing; a complete trial needs it")
        for name in ("accuracy", "stop_accuracy", *PRECISION_FIELDS):
            value = getattr(self, name)
            if value is not None and not -1.0 <= value <= 1.0:
                raise FieldError(
                    name,
                    f"{value!r} is outside [-1, 1] (the study's metric: a fraction in [0, 1], "
                    "or Matthews' coefficient)",
                )
        if self.throughput is not None and not self.throughput > 0:
            raise FieldError(
                "throughput", f"{self.throughput!r} is not positive (examples per second)"
            )
        if self.achieved_sparsity is not None and not 0.0 <= self.achieved_sparsity < 1.0:
            raise FieldError("achieved_sparsity", f"{self.achieved_sparsity!r} is outside [0, 1)")
        if self.status is TrialStatus.STOPPED:
            for name in ("stop_step", "stop_accuracy", "stop_margin"):
                if getattr(self, name) is None:
                    raise FieldError(name, "is missing; a stopped trial needs its evidence")
        for name in (
            *("wall_time_s", "gpu_hours", "from_trial", "warmup_s", "teacher_s", "own_s"),
            *("mfu", "peak_memory_gib"),
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise FieldError(name, f"{value!r} is negative")
        for name in RATIO_FIELDS:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise FieldError(name, f"{value!r} is not a positive ratio")

    @property
    def point(self) -> GridPoint:
        return GridPoint(self.n, self.sparsity)

    @property
    def served_accuracy(self) -> dict[GridPoint, float]:
        """Its dev figures in the precisions other than fp32: (N, s, precision) -> figure."""
        point = self.point
        return {
            point.served(precision): value
            for precision in EXTRA_PRECISIONS
            if (value := getattr(self, precision.record_field)) is not None
        }

    @property
    def recipe_speed(self) -> dict[GridPoint, RecipeSpeed]:
        """Its int8 file's speed against dynamic int8's, where a static recipe made it:
        (N, s, int8) -> ratios."""
        if self.int8_throughput_ratio is None or self.int8_latency_ratio is None:
            return {}
        speed = RecipeSpeed(throughput=self.int8_throughput_ratio, latency=self.int8_latency_ratio)
        return {self.point.served(Precision.INT8): speed}

    @property
    def accuracy_bound(self) -> float | None:
        """A stopped trial's most possible final accuracy; None for others."""
        if self.stop_accuracy is None or self.stop_margin is None:
            return None
        return self.stop_accuracy + self.stop_margin

    def to_row(self) -> dict[str, object]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["status"] = self.status.value
        return row


RECORD_FIELDS = tuple(f.name for f in fields(TrialRecord))


@dataclass(frozen=True, kw_only=True)
class HeldOutScore:
    """A trained model's figure on the study's held-out test split, in the study's metric:
    measured once, after the search has answered; shown beside dev, never decided by (no
    :class:`TrialRecord` holds one)."""

    score: float  # the study's metric on the test split (accuracy: a fraction)
    examples: int  # test examples scored
    dev: float  # the model's dev figure in the same metric: what the choice was made on


REQUIRED_COLUMNS = ("task", "n", "sparsity", "accuracy", "throughput")


@dataclass(frozen=True)
class Training:
    """What training one point gave: its record, and records of other grid points whose
    models it trained on the way (an (N, s) trial's (N, 0) teacher is that point's model)."""

    record: TrialRecord
    by_products: tuple[TrialRecord, ...] = ()

    @classmethod
    def failed(cls, task: str, point: GridPoint, reason: str) -> Training:
        return cls(
            TrialRecord(
                task=task,
                n=point.n,
                sparsity=point.sparsity,
                status=TrialStatus.FAILED,
                reason=reason,
            )
        )


@dataclass(frozen=True, kw_only=True)
class Observations:
    """What one task's records say about each point: the input of the surrogate models.

    A point with several complete records (several seeds) holds their mean. A point is
    ``failed`` only if none of its records completed.
    """

    accuracy: Mapping[GridPoint, float]  # fp32, (N, s) keys
    throughput: Mapping[GridPoint, float]
    failed: frozenset[GridPoint] = frozenset()
    source: str = field(default="results", compare=False)  # names them in errors
    # untrained points whose training stopped early: the most their accuracy can be
    bounds: Mapping[GridPoint, float] = field(default_factory=dict)
    # the trained models' figures in the other precisions: (N, s, precision) keys
    served_accuracy: Mapping[GridPoint, float] = field(default_factory=dict)
    # the trained models served by another file than the throughput table times (int8 made
    # static): (N, s, precision) -> its speed against the table's file
    recipe_speed: Mapping[GridPoint, RecipeSpeed] = field(default_factory=dict)

    @property
    def served_gain(self) -> float:
        """The most a trained model has scored above its fp32 figure in another precision;
        0 when none has (a training stops early only when no precision can reach the
        threshold: its stop threshold is lowered by this)."""
        gains = (
            value - self.accuracy[point.trained]
            for point, value in self.served_accuracy.items()
            if point.trained in self.accuracy
        )
        return max(0.0, max(gains, default=0.0))

    def without(self, point: GridPoint) -> Observations:
        """These observations with one point (its model, in every precision) removed, as if
        never trained: leave-one-out."""
        return Observations(
            accuracy={p: v for p, v in self.accuracy.items() if p != point},
            throughput={p: v for p, v in self.throughput.items() if p != point},
            failed=self.failed - {point},
            source=self.source,
            bounds={p: v for p, v in self.bounds.items() if p != point},
            served_accuracy={p: v for p, v in self.served_accuracy.items() if p.trained != point},
            recipe_speed={p: v for p, v in self.recipe_speed.items() if p.trained != point},
        )


@dataclass(frozen=True)
class ResultsTable:
    """Validated trial records, possibly of several tasks. ``source`` names them in errors."""

    records: tuple[TrialRecord, ...]
    source: str = field(default="results", compare=False)

    @classmethod
    def from_records(cls, records: Iterable[TrialRecord], source: str = "results") -> ResultsTable:
        """Drop exact duplicates; reject rows that disagree on the same (task, N, s, seed)."""
        kept: dict[tuple[object, ...], tuple[int, TrialRecord]] = {}
        for row_number, record in enumerate(records, start=1):
            key = (record.task, record.point, record.seed)
            if key not in kept:
                kept[key] = (row_number, record)
                continue
            first_row, first = kept[key]
            for name in ("accuracy", "throughput", "status"):
                if getattr(first, name) != getattr(record, name):
                    seed = "" if record.seed is None else f", seed {record.seed}"
                    raise DataError(
                        source,
                        f"conflicts with row {first_row}: same task {record.task!r}, "
                        f"point {record.point}{seed} but {name} {getattr(record, name)!r} vs "
                        f"{getattr(first, name)!r}; keep one row or give each a distinct seed",
                        row=row_number,
                        field=name,
                    )
        return cls(tuple(record for _, record in kept.values()), source)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted({r.task for r in self.records}))

    def resolve_task(self, task: str | None) -> str:
        """The task to use: ``task`` if the table has it, else the table's only task."""
        tasks = self.tasks
        if task is not None:
            if task not in tasks:
                allowed = ", ".join(tasks) or "none"
                raise DataError(self.source, f"has no rows for task {task!r} (it has: {allowed})")
            return task
        if len(tasks) != 1:
            allowed = ", ".join(tasks) or "none"
            raise DataError(
                self.source, f"holds {len(tasks)} tasks ({allowed}); choose one with --task"
            )
        return tasks[0]

    def for_task(self, task: str) -> tuple[TrialRecord, ...]:
        return tuple(r for r in self.records if r.task == task)

    def observations(self, task: str) -> Observations:
        accuracy: dict[GridPoint, list[float]] = {}
        served: dict[GridPoint, list[float]] = {}
        speeds: dict[GridPoint, list[RecipeSpeed]] = {}
        throughput: dict[GridPoint, list[float]] = {}
        attempted: set[GridPoint] = set()
        bounds: dict[GridPoint, float] = {}
        for record in self.for_task(task):
            bound = record.accuracy_bound
            if bound is not None:
                bounds[record.point] = min(bound, bounds.get(record.point, bound))
            if record.status is TrialStatus.COMPLETE:
                assert record.accuracy is not None and record.throughput is not None
                accuracy.setdefault(record.point, []).append(record.accuracy)
                for variant, value in record.served_accuracy.items():
                    served.setdefault(variant, []).append(value)
                for variant, speed in record.recipe_speed.items():
                    speeds.setdefault(variant, []).append(speed)
                throughput.setdefault(record.point, []).append(record.throughput)
            elif record.status is TrialStatus.FAILED:
                attempted.add(record.point)
        return Observations(
            accuracy={p: fmean(v) for p, v in accuracy.items()},
            throughput={p: fmean(v) for p, v in throughput.items()},
            failed=frozenset(attempted - accuracy.keys()),
            source=self.source,
            bounds={p: b for p, b in bounds.items() if p not in accuracy},
            served_accuracy={p: fmean(v) for p, v in served.items()},
            recipe_speed={
                p: RecipeSpeed(
                    throughput=fmean(r.throughput for r in v), latency=fmean(r.latency for r in v)
                )
                for p, v in speeds.items()
            },
        )


def is_missing(value: object) -> bool:
    """Empty cells: None, '', or a float NaN from a typed reader (Parquet)."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def distinct_seeds(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Repeated trainings of one point (a search's retries) as distinct seeds, so that they
    average instead of conflicting."""
    seen: Counter[GridPoint] = Counter()
    out = []
    for record in records:
        out.append(replace(record, seed=seen[record.point]))
        seen[record.point] += 1
    return out
