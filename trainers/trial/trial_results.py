"""What one trial returns: :class:`TrialResult`, with its JSON round trip and the search's
record of it; :class:`PhaseRecord`, what each phase's step loop did and how fast; and
:class:`SpanTimer`, the seconds of the trial's named spans (its phases, checks and
measurements) that the record's costs are split by."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from autoprumux.core.early_stop import Curve, StopEvidence, StopPhase
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.records import Training, TrialRecord, TrialStatus

# the span of the retrieval warm-up (masked-LM steps included)
WARMUP_TIMER = "warmup"
# the spans whose seconds are the (N, 0) teacher's cost (the fine-tuning's holds its checks);
# the (1, 0) model an N > 1 one distills from, when built inside the trial, is timed under
# GUIDE_PREFIX
FINETUNE_TIMER, TEACHER_EVALUATE_TIMER = "finetune", "teacher evaluate"
# the dev evaluations of a trained model in the study's other precisions
# (trainers.deploy.precisions): the (N, s) model's are its own cost, the (N, 0) teacher's the
# teacher's (paid once, by the trial that first describes it; a reuse reads them back)
PRECISIONS_TIMER, TEACHER_PRECISIONS_TIMER = "precisions", "teacher precisions"
TEACHER_TIMERS = (FINETUNE_TIMER, TEACHER_EVALUATE_TIMER, TEACHER_PRECISIONS_TIMER)
GUIDE_PREFIX = "guide "
# "<phase> checkpoints": the seconds a phase's step loop spent on its checkpoints (snapshots,
# waits for the writer), inside the span that times the phase: no cost of their own
CHECKPOINTS_SPAN = " checkpoints"


@dataclass(frozen=True, kw_only=True)
class PhaseRecord:
    """One phase's step loop in a trial, as this run ran it: a phase resumed from a checkpoint
    counts the steps from its checkpoint on only, and a phase of a reused stage is not run (no
    record). Counted on the host from the batches' shapes, timed with the device synchronized
    at the loop's end (its checks and checkpoints included)."""

    name: str  # the phase (warmup, mlm, finetune, prune, post-finetune; "guide " + the
    # phase of the (1, 0) model an N > 1 one distills from, where the trial built it)
    steps: int
    examples: int  # sequences: rows x N a step
    tokens: int  # sequences x their batch's padded length
    seconds: float
    examples_per_s: float
    flop: float  # trainers.runtime.flops: 0.0 where the phase counts none
    tflop_per_s: float
    # a fraction of the dense peak of the whole GPU (of a trial sharing it too), in the
    # trial's precision (trainers.runtime.flops.peak_flops); None on a CPU, on an unknown GPU,
    # or for a phase that counts no FLOP
    mfu: float | None
    peak_memory_gib: float | None  # the device's peak allocation in the phase; None on a CPU
    device_name: str  # the GPU's name (torch.cuda.get_device_name), or the CPU's
    compiles: int = 0  # graphs torch.compile made in the phase (compiled steps; 0 eager)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhaseRecord:  # Any: decoded JSON
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class TrialResult:
    task: str
    n: int
    sparsity: float  # the target
    status: TrialStatus
    reason: str | None = None
    accuracy: float | None = None  # dev figure in the study's metric (accuracy: a fraction)
    labels: tuple[str, ...] = ()  # the classifier's label names, in id order
    achieved_sparsity: float | None = None  # of the materialized model's prunable parameters
    parameters: int | None = None  # prunable encoder parameters of the final model
    throughput: float | None = None  # examples per second, simple forward timing (batch 32*N)
    # the model's dev figure in each of the study's other precisions it could be evaluated in
    # (precision value -> the study's metric; fp32's is ``accuracy``): bf16, fp16, int8
    served: dict[str, float] = field(default_factory=dict)
    # a static int8 file's speed against dynamic int8 of the same weights, timed side by side
    # (TrialRecord's fields of the same names); None for dynamic int8 and without int8
    int8_throughput_ratio: float | None = None
    int8_latency_ratio: float | None = None
    token_recovery: float | None = None  # of the warm-up (N > 1)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # SpanTimer.seconds
    wall_time_s: float = 0.0
    artifact_path: str | None = None
    reused: tuple[str, ...] = ()  # artifacts that were already there (warmup, teacher, trial)
    seed: int = 0
    teacher: TrialResult | None = None  # for s > 0: the (N, 0) model it was pruned from
    # what decided the model's numbers besides settings and seed, when it was trained:
    # device, precision, threads, versions (trainers.runtime.device.numerics); JSON values
    numerics: dict[str, Any] = field(default_factory=dict)
    # dev accuracy during the last phase, (step, accuracy), the phase's end last: where it
    # was checked (early stopping) or asked for (curve_points)
    curve: Curve | None = None
    stop: StopEvidence | None = None  # status STOPPED: why
    # each phase this run ran, in order (none for the stages it reused); a failed or stopped
    # trial holds the phases it finished
    phase_figures: tuple[PhaseRecord, ...] = ()

    def cost_parts(self) -> tuple[float, float, float]:
        """(warm-up, teacher, own) seconds of this run; 0 for what it reused."""
        warmup = self.phase_seconds.get(WARMUP_TIMER, 0.0)
        teacher = sum(
            v
            for k, v in self.phase_seconds.items()
            if k in TEACHER_TIMERS or (k.startswith(GUIDE_PREFIX) and not _nested(k))
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
            accuracy_bf16=self.served.get(Precision.BF16.value),
            accuracy_fp16=self.served.get(Precision.FP16.value),
            accuracy_int8=self.served.get(Precision.INT8.value),
            int8_throughput_ratio=self.int8_throughput_ratio,
            int8_latency_ratio=self.int8_latency_ratio,
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
            device=self.numerics.get("device"),
            mfu=self.mfu(),
            peak_memory_gib=max(
                (p.peak_memory_gib for p in self.phase_figures if p.peak_memory_gib is not None),
                default=None,
            ),
        )

    def mfu(self) -> float | None:
        """The MFU of the phases this run ran, over their seconds together (each phase's MFU
        weighted by its seconds: their FLOP over their time, against the one GPU's peak);
        None where none is known."""
        known = [p for p in self.phase_figures if p.mfu is not None and p.seconds > 0]
        seconds = sum(p.seconds for p in known)
        if not seconds:
            return None
        return sum(p.mfu * p.seconds for p in known if p.mfu is not None) / seconds

    def to_json(self) -> dict[str, Any]:
        """JSON values (``autoprumux train --json``); :meth:`from_json` reads them back."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["status"] = self.status.value
        data["reused"], data["labels"] = list(self.reused), list(self.labels)
        data["teacher"] = self.teacher.to_json() if self.teacher else None
        data["curve"] = self.curve.to_json() if self.curve else None
        data["stop"] = _evidence_json(self.stop) if self.stop else None
        data["phase_figures"] = [record.to_json() for record in self.phase_figures]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialResult:
        teacher, curve, stop = data.get("teacher"), data.get("curve"), data.get("stop")
        return cls(
            **{
                **data,
                "status": TrialStatus(data["status"]),
                "reused": tuple(data["reused"]),
                "labels": tuple(data.get("labels", ())),
                "teacher": cls.from_json(teacher) if teacher else None,
                "curve": Curve.from_json(curve) if curve else None,
                "stop": _evidence(stop) if stop else None,
                # absent from the results of older releases
                "phase_figures": tuple(
                    PhaseRecord.from_json(record) for record in data.get("phase_figures", ())
                ),
            }
        )


def _nested(span: str) -> bool:
    """A span timed inside another one (counting it would count its seconds twice)."""
    return span.endswith(CHECKPOINTS_SPAN)


def _evidence_json(evidence: StopEvidence) -> dict[str, Any]:
    data = dataclasses.asdict(evidence)
    data["point"] = [evidence.point.n, evidence.point.sparsity]
    data["phase"] = evidence.phase.value
    return data


def _evidence(data: dict[str, Any]) -> StopEvidence:  # Any: decoded JSON
    point, phase = GridPoint(*data["point"]), StopPhase(data["phase"])
    return StopEvidence(**{**data, "point": point, "phase": phase})


class SpanTimer:
    """Seconds per named span, summed over the span's runs; a prefixed view shares the sums
    (the guide's spans, ``GUIDE_PREFIX``)."""

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

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` measured elsewhere into the span ``name``."""
        key = self.prefix + name
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def prefixed(self, prefix: str) -> SpanTimer:
        return SpanTimer(self.seconds, self.prefix + prefix)
