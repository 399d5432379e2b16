"""A training's record as an Optuna trial, and back.

One Optuna trial per training of an (N, s): params ``n`` and ``sparsity``, objectives
(accuracy, throughput), both maximized, so optuna-dashboard's Pareto view shows the trade-off.
Every metric of the record is a user attribute; ``constraint`` (accuracy - threshold) is one too,
and the system attribute ``constraints`` holds [threshold - accuracy] (<= 0 is feasible), which
is what Optuna's constrained samplers and the dashboard's feasibility view read. The threshold
is the one in force when the trial was recorded (a finished trial cannot be changed). Failed
trainings are FAIL trials with their ``reason``, trainings stopped early PRUNED ones with their
evidence. A model trained on the way by another trial (its (N, 0) teacher) is a trial of its
own, with ``from_trial`` naming that trial.

Reading tolerates what an older release could leave: a finished trial without params (asked,
then killed) has no point, a FAIL trial without a reason counts as interrupted.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from autoprumux.core.errors import AutoPruMuxError
from autoprumux.core.grid import Grid, GridPoint
from autoprumux.core.precision import PRECISION_FIELDS
from autoprumux.core.records import RATIO_FIELDS, TrialRecord, TrialStatus
from autoprumux.loop.store_contract import INTERRUPTED

# read back from user attributes as they were written (TrialRecord's field names)
COST_AND_STOP_FIELDS = (
    "warmup_s",
    "teacher_s",
    "own_s",
    "stop_step",
    "stop_accuracy",
    "stop_margin",
)
# and where and how well the training used its device
DEVICE_FIELDS = ("device", "mfu", "peak_memory_gib")
# the trial states a finished training may have: complete, failed, or stopped early
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def distributions(grid: Grid) -> dict[str, BaseDistribution]:
    """The params' distributions: the grid's values, as the dashboard shows them."""
    return {
        "n": CategoricalDistribution(grid.n_values),
        "sparsity": CategoricalDistribution(grid.sparsities),
    }


def params_of(point: GridPoint) -> dict[str, Any]:
    return {"n": point.n, "sparsity": point.sparsity}


def point_of(trial: FrozenTrial) -> GridPoint | None:
    """The trial's (N, s); None for a trial without (valid) params."""
    try:
        return GridPoint(int(trial.params["n"]), float(trial.params["sparsity"]))
    except (KeyError, TypeError, ValueError, AutoPruMuxError):
        return None


def record_of(trial: FrozenTrial, point: GridPoint, task: str) -> TrialRecord:
    """A finished trial (one of :data:`FINISHED`) as the record of its training."""
    attrs = trial.user_attrs
    complete = trial.state == TrialState.COMPLETE
    # a training stopped early is PRUNED in Optuna, with its evidence
    stopped = trial.state == TrialState.PRUNED and "stop_accuracy" in attrs
    reason = attrs.get("reason")
    if not complete and reason is None:  # failed by Optuna's stale-trial check, or by hand
        reason = INTERRUPTED
    status = TrialStatus.COMPLETE if complete else TrialStatus.FAILED
    return TrialRecord(
        task=task,
        n=point.n,
        sparsity=point.sparsity,
        accuracy=trial.values[0] if complete else None,
        throughput=trial.values[1] if complete else None,
        status=TrialStatus.STOPPED if stopped else status,
        reason=reason,
        achieved_sparsity=attrs.get("achieved_sparsity"),
        wall_time_s=attrs.get("wall_time_s"),
        gpu_hours=attrs.get("gpu_hours"),
        seed=attrs.get("seed"),
        artifact_path=attrs.get("artifact_path"),
        from_trial=attrs.get("from_trial"),
        node=attrs.get("node"),
        **{
            name: attrs.get(name)
            for name in (*PRECISION_FIELDS, *RATIO_FIELDS, *DEVICE_FIELDS, *COST_AND_STOP_FIELDS)
        },
    )


def state_of(record: TrialRecord) -> TrialState:
    """The final state a record's trial is given."""
    return {
        TrialStatus.COMPLETE: TrialState.COMPLETE,
        TrialStatus.STOPPED: TrialState.PRUNED,
    }.get(record.status, TrialState.FAIL)


def values_of(record: TrialRecord) -> list[float] | None:
    """The objectives (accuracy, throughput) of a complete record; None otherwise."""
    if record.status is not TrialStatus.COMPLETE:
        return None
    assert record.accuracy is not None and record.throughput is not None
    return [record.accuracy, record.throughput]


def constraints_of(record: TrialRecord, threshold: float | None) -> list[float] | None:
    """Optuna's ``constraints`` system attribute: [threshold - accuracy] (<= 0 is feasible)
    for a complete record under a known threshold; None otherwise."""
    if record.status is not TrialStatus.COMPLETE or threshold is None:
        return None
    assert record.accuracy is not None
    return [threshold - record.accuracy]


def user_attrs_of(record: TrialRecord, threshold: float | None) -> dict[str, Any]:
    """Every metric of the record, and for a complete one the threshold in force and the
    margin to it (``constraint``, >= 0 is feasible). A failure always has a reason: a FAIL
    trial without one is read as interrupted."""
    attrs = {
        k: v
        for k, v in record.to_row().items()
        if v is not None and k not in ("task", "n", "sparsity")
    }
    if record.status is TrialStatus.COMPLETE and threshold is not None:
        assert record.accuracy is not None
        attrs.update(threshold=threshold, constraint=record.accuracy - threshold)
    if record.status is TrialStatus.FAILED:
        attrs.setdefault("reason", "failed (the trainer gave no reason)")
    elif record.status is not TrialStatus.COMPLETE:
        attrs.setdefault("reason", f"{record.status.value} (the trainer gave no reason)")
    return attrs


def finished_trial(record: TrialRecord, threshold: float | None, grid: Grid) -> FrozenTrial:
    """A finished trial holding ``record``, to be added as it is (one write)."""
    constraints = constraints_of(record, threshold)
    return create_trial(
        state=state_of(record),
        values=values_of(record),
        params=params_of(record.point),
        distributions=distributions(grid),
        user_attrs=user_attrs_of(record, threshold),
        system_attrs={} if constraints is None else {"constraints": constraints},
    )
