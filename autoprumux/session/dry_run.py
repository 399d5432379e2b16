"""``autoprumux search --dry-run``: what a search would train first and what it would cost,
trained nothing and written nothing.

The forecast replays the search's own decisions before any result is in, with the search's own
parts: the proposer (:class:`~autoprumux.loop.proposer.Proposer`) picks the points and the cost
model (:class:`~autoprumux.loop.costs.CostModel`) prices them.

- **First picks**, exact: the waves of trainings the search starts before any result decides
  its next point. With a budget relative to the baseline that is (1, 0) alone, then the wave
  the proposer picks once (1, 0) is measured: while (1, 0) is the only trained point the
  accuracy surface predicts nothing (it does not extrapolate from one point), so that wave is
  the same whatever accuracy (1, 0) reaches. With ``--min-accuracy`` the threshold is known at
  once: one wave of as many probes as trials run at once.
- **The whole grid**, an upper bound on the search: every point trained once, each row's
  warm-up and (N, 0) teacher paid once (no retries of failed trainings). Which points follow
  the first picks depends on the accuracies they reach, so the expected search lies between
  the two; the loop has no model of accuracies to replay it further.

Costs are the cost model's before any training: forward units at the throughput table's speed,
a unit a second (:mod:`autoprumux.loop.costs`), on the device the table was measured on. Once
a training finished, the search rescales them by the seconds it measured. A training's parts:
its N's warm-up unless an earlier training of the row built it, its (N, 0) teacher unless
trained (or built by a training of its wave), and its own phases. GPU-hours are seconds x the
trial's GPU share.

:func:`forecast_search` is pure; :func:`estimate_table` times the grid's training-free
architectures (torch) for a study without a throughput table, in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoprumux.core.budget import Budget
from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.progress import Progress, ProgressLines
from autoprumux.core.study import Study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.costs import CostModel, Recipe, recipe_of
from autoprumux.loop.proposer import Proposer, SearchState
from autoprumux.session.decision_text import metric_dict
from autoprumux.session.sizing import TrialSlots

__all__ = [
    "ForecastRow",
    "ForecastTotal",
    "SearchForecast",
    "TableUsed",
    "cap_notes",
    "estimate_table",
    "first_picks",
    "forecast_search",
    "forecast_text",
    "storage_notes",
    "table_used",
]

# two accuracies of (1, 0) the wave after it is planned for: kept only when both give the same
# wave (they do while the surface cannot predict from one point)
BASELINE_PLACEHOLDERS = (0.9, 0.6)


@dataclass(frozen=True, kw_only=True)
class _Seconds:
    """Predicted seconds, part by part, and the GPU-hours they take."""

    warmup_s: float  # N's retrieval warm-up; 0 for N = 1 or a row built already
    teacher_s: float  # (N, 0) teacher's fine-tuning; 0 when trained already
    own_s: float  # own phases (s > 0): pruning with the teacher, then fine-tuning
    gpu_hours: float  # seconds / 3600 x the trial's GPU share (0 for a CPU trial)

    @property
    def seconds(self) -> float:
        return self.warmup_s + self.teacher_s + self.own_s

    def seconds_dict(self) -> dict[str, Any]:
        return {
            "warmup_s": self.warmup_s,
            "teacher_s": self.teacher_s,
            "own_s": self.own_s,
            "seconds": self.seconds,
            "gpu_hours": self.gpu_hours,
        }


@dataclass(frozen=True, kw_only=True)
class ForecastRow(_Seconds):
    """One training and its predicted seconds, part by part."""

    point: GridPoint

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.point.n, "sparsity": self.point.sparsity, **self.seconds_dict()}


@dataclass(frozen=True, kw_only=True)
class ForecastTotal(_Seconds):
    """The sums over some trainings' rows."""

    trainings: int

    @classmethod
    def of(cls, rows: Sequence[ForecastRow]) -> ForecastTotal:
        return cls(
            trainings=len(rows),
            warmup_s=sum(r.warmup_s for r in rows),
            teacher_s=sum(r.teacher_s for r in rows),
            own_s=sum(r.own_s for r in rows),
            gpu_hours=sum(r.gpu_hours for r in rows),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"trainings": self.trainings, **self.seconds_dict()}


@dataclass(frozen=True, kw_only=True)
class TableUsed:
    """The throughput table the forecast priced by, in words."""

    source: str  # its file, or how it was estimated
    device: str  # the device its throughputs were timed on ("cpu", "cuda:0"; "" if unknown)
    estimated: bool = False  # timed now, in memory: the search would measure its own first
    # where estimated: about how long the search's measuring of its table takes, in seconds
    # (before any training: measure_seconds)
    measure_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class SearchForecast:
    """A search's plan: its first picks and the whole grid's bound, in predicted seconds."""

    study: str
    metric: Metric  # the study's metric (the budget is in it)
    positive_label: str  # F1's positive label, named in the metric's label
    budget: Budget
    grid_size: int  # grid points the search may train (those the table has a throughput of)
    table: TableUsed
    slots: TrialSlots  # trials at once, and each one's CPUs and GPU share
    # how the local executor places them: ", 2 a GPU on cuda:0..1, each in a process of its
    # own" ("" for CPU trials and on Ray, which places its own)
    placement: str = ""
    # waves of trainings before a result decides the next point: wave 2 starts once wave 1's
    # results are in (with --min-accuracy, one wave)
    first: tuple[tuple[ForecastRow, ...], ...]
    grid: tuple[ForecastRow, ...]  # every point once, by N then s: the upper bound
    notes: tuple[str, ...] = ()
    # the precisions the search ranks: fp32, and those each trained model is evaluated in after
    # its training (no training of their own; their seconds are not in the rows)
    precisions: tuple[Precision, ...] = (Precision.FP32,)

    @property
    def first_total(self) -> ForecastTotal:
        return ForecastTotal.of([row for wave in self.first for row in wave])

    @property
    def metric_label(self) -> str:
        """How the metric is printed (``F1 of 'spam'``)."""
        return self.metric.label(self.positive_label)

    @property
    def grid_total(self) -> ForecastTotal:
        return ForecastTotal.of(self.grid)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document: plain values only."""
        return {
            "study": self.study,
            **metric_dict(self.metric, self.positive_label),  # as the search's document
            "budget": {"kind": self.budget.kind.value, "value": self.budget.value},
            "grid_size": self.grid_size,
            "table": dataclasses.asdict(self.table),
            "trials_at_once": self.slots.workers,
            "cpus_per_trial": self.slots.cpus_per_trial,
            "gpus_per_trial": self.slots.gpus_per_trial,
            "placement": self.placement.removeprefix(", "),
            "first_picks": [
                {"wave": i, **row.to_dict()} for i, wave in enumerate(self.first, 1) for row in wave
            ],
            "first_picks_total": self.first_total.to_dict(),
            "grid": [row.to_dict() for row in self.grid],
            "grid_total": self.grid_total.to_dict(),
            "precisions": [p.value for p in self.precisions],
            "notes": list(self.notes),
        }


def forecast_search(
    study: Study,
    budget: Budget,
    table: ThroughputTable,
    used: TableUsed,
    slots: TrialSlots,
    notes: Sequence[str] = (),
    recipe: Recipe | None = None,  # as the data read says; None: recipe_of(study)
    placement: str = "",  # SearchForecast.placement
    precisions: tuple[Precision, ...] = (Precision.FP32,),  # SearchForecast.precisions
) -> SearchForecast:
    """The plan of a fresh search of ``study`` for ``budget``, ranked and priced by ``table``
    (``used`` says which), ``slots.workers`` trials at a time."""
    # the driver's trainings: the grid's points the table has an fp32 throughput of (the
    # plan is the fp32 proposer's: with no result yet, no other precision predicts anything)
    candidates = {
        p: v
        for p, v in table.throughput.items()
        if p in study.grid.grid and p.precision is Precision.FP32
    }
    missing = len(study.grid.grid) - len(candidates)
    notes = list(notes)
    if missing:
        notes.append(f"{missing} grid point(s) have no throughput in the table: never trained")
    # no training yet: the table's seconds
    costs = CostModel.for_study(recipe or recipe_of(study), candidates)
    share = slots.gpus_per_trial
    everything = [[p] for p in sorted(candidates)]  # one after another: each row built once
    return SearchForecast(
        study=study.name,
        metric=study.study.metric,
        positive_label=study.study.positive_label,
        budget=budget,
        grid_size=len(candidates),
        table=used,
        slots=slots,
        placement=placement,
        first=_charged(costs, first_picks(budget, candidates, costs, slots.workers), share),
        grid=tuple(row for (row,) in _charged(costs, everything, share)),
        notes=tuple(notes),
        precisions=precisions,
    )


def first_picks(
    budget: Budget, candidates: Mapping[GridPoint, float], costs: CostModel, workers: int
) -> list[list[GridPoint]]:
    """The waves the search starts before any result decides its next point (module doc):
    what :meth:`Proposer.propose` answers the driver with no result, then, where that is (1, 0)
    alone, what it answers once (1, 0) is measured. The costs' scale does not change a pick:
    (1, 0) measures its teacher's seconds only, whose ratio to the table's every part then
    takes (:func:`~autoprumux.loop.costs.seconds_per_unit`), so the table's seconds pick as the
    search's would."""
    proposer = Proposer()
    known = None if budget.needs_baseline else budget.threshold(None)
    state = SearchState(candidates=candidates, accuracy={}, threshold=known, costs=costs)
    first = proposer.propose(state, workers)
    if not first:
        return []
    if first != [BASELINE] or not budget.needs_baseline:
        return [first]
    after = [
        proposer.propose(
            SearchState(
                candidates=candidates,
                accuracy={BASELINE: accuracy},
                threshold=budget.threshold(accuracy),
                costs=costs,
            ),
            workers,
        )
        for accuracy in BASELINE_PLACEHOLDERS
    ]
    if after[0] and all(wave == after[0] for wave in after):
        return [first, after[0]]
    return [first]


def _charged(
    costs: CostModel, waves: Sequence[Sequence[GridPoint]], gpus_per_trial: float
) -> tuple[tuple[ForecastRow, ...], ...]:
    """Each training's parts as the search's cost model charges them
    (:meth:`CostModel.charged`): trained are the earlier waves' points and their (N, 0)
    teachers (recorded free), building the points of its wave started before it."""
    built: set[GridPoint] = set()
    rows = []
    for wave in waves:
        building: list[GridPoint] = []
        charged_wave = []
        for point in wave:
            parts = costs.charged(point, built, building)
            seconds = parts.warmup + parts.teacher + parts.own
            charged_wave.append(
                ForecastRow(
                    point=point,
                    warmup_s=parts.warmup,
                    teacher_s=parts.teacher,
                    own_s=parts.own,
                    gpu_hours=seconds / 3600 * gpus_per_trial,
                )
            )
            building.append(point)
        built |= {*building, *(GridPoint(p.n, 0.0) for p in building)}
        rows.append(tuple(charged_wave))
    return tuple(rows)


def table_used(table: ThroughputTable, path: Path | None) -> TableUsed:
    """A table read from ``path`` (None: a replay's own throughputs), in words."""
    device = str(table.fingerprint.get("device", ""))
    return TableUsed(source=str(path) if path is not None else table.source, device=device)


def estimate_table(
    study: Study, missing: Path, say: Callable[[str], None] = lambda line: None
) -> tuple[ThroughputTable, TableUsed]:
    """The study's training-free throughput estimates, timed now and kept in memory (the
    search would measure and save ``missing`` first): every grid point's architecture with
    random weights, as ``autoprumux measure`` times it, but one pass of
    ``trial_examples_per_pass`` examples (the short timing a trial records) instead of
    ``passes`` passes of ``examples_per_pass``: a fraction of the time, and noisier; still
    minutes for long rows, so its phases are said to ``say`` a few times each."""
    from autoprumux.measurement import (  # torch
        estimate_models,
        fingerprint,
        measure_seconds,
        resolve_device,
    )
    from trainers.deploy.timing import measure

    settings = dataclasses.replace(
        study.throughput, passes=1, examples_per_pass=study.throughput.trial_examples_per_pass
    )
    points = sorted(study.grid.grid)
    models = estimate_models(study, points)
    lines = ProgressLines("throughput estimate:", say)

    def reporter(phase: str) -> Callable[[int, int], None]:
        return lambda done, total: lines(Progress(phase=phase, step=done, total=total))

    timed = measure(
        models,
        settings,
        study.model.max_seq_length,
        "estimate",
        reporter("measure"),
        preparing=reporter("prepare"),
    )
    speeds = {p: timed[p].timing.median for p in points}
    device = resolve_device(settings)
    table = ThroughputTable(
        speeds, fingerprint(settings, device, study), source="a quick training-free estimate"
    )
    used = TableUsed(
        source=f"one short timing a point, not saved; the search measures {missing} first",
        device=device,
        estimated=True,
        measure_seconds=measure_seconds(study, models, speeds),
    )
    return table, used


def cap_notes(
    max_trials: int | None, max_gpu_hours: float | None, timeout_s: float | None
) -> list[str]:
    """The search's caps, which the plan's figures do not count: the search stops starting
    trainings at the first one it reaches (the study's trainings, all runs together)."""
    caps = [
        *([f"--max-trials {max_trials}"] if max_trials is not None else []),
        *([f"--max-gpu-hours {max_gpu_hours:g}"] if max_gpu_hours is not None else []),
        *([f"--timeout {timeout_s:g} s"] if timeout_s is not None else []),
    ]
    if not caps:
        return []
    return [
        f"capped by {', '.join(caps)}: the search starts no training once the study reaches "
        "it, so it may stop before the figures below; they count no cap"
    ]


def storage_notes(url: str, study_checks: Callable[[], bool]) -> list[str]:
    """What the forecast cannot know from a storage that holds trainings already: it plans a
    fresh study. An existing SQLite file is read (``study_checks``: refuses a stored study the
    search would refuse; False when it holds no such study); another storage is not opened,
    as opening creates its tables."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and Path(url[len(prefix) :]).is_file() and study_checks():
        return [
            f"{url[len(prefix) :]} holds the study: a search resumes it and skips what it "
            "trained; this plan is a fresh study's"
        ]
    return []


# -- the text ``autoprumux search --dry-run`` prints -----------------------------------------


def forecast_text(forecast: SearchForecast) -> str:
    """The plan as lines: what is searched, the first picks, the whole grid, the range."""
    budget, slots, table = forecast.budget, forecast.slots, forecast.table
    gpu = slots.gpus_per_trial > 0
    where = (
        f"GPU trials, {slots.gpus_per_trial:g} GPU each"
        if gpu
        else f"CPU trials, {slots.cpus_per_trial:g} core(s) each"
    )
    lines = [
        f"dry run: study {forecast.study!r}, {budget.kind.value} budget {budget.value:g} "
        f"({forecast.metric_label}), {forecast.grid_size} grid points; nothing trained or written",
        f"trials: {slots.workers} at a time ({where}{forecast.placement})",
        _precisions_line(forecast.precisions),
        f"costs: the search's cost model, in seconds at the speed of {_table_words(table)}; "
        "once a training finished, the search rescales them by the seconds it took",
        "",
        "first picks (started before any result decides the next point):",
        _header("wave", "point", gpu),
    ]
    for number, wave in enumerate(forecast.first, 1):
        lines += [_line(str(number), str(row.point), row, gpu) for row in wave]
    first, grid = forecast.first_total, forecast.grid_total
    lines.append(_total_line("first picks", first, gpu))
    lines += ["", "every point of the grid (an upper bound: each warm-up and teacher once):"]
    lines += _rows_by_n(forecast.grid, gpu)
    lines.append(_total_line("whole grid", grid, gpu))
    table_first = (
        f"measuring its throughput table first, about {_duration(table.measure_seconds)}, then "
        if table.measure_seconds is not None
        else ""
    )
    lines += [
        "",
        f"expected search: {table_first}from {_duration(first.seconds)}, the first picks, to "
        f"{_duration(grid.seconds)}, the whole grid"
        + (f" ({first.gpu_hours:.2f} to {grid.gpu_hours:.2f} GPU-hours)" if gpu else "")
        + "; which points follow the first picks depends on the "
        + f"{forecast.metric_label} they reach",
    ]
    lines += [f"note: {note}" for note in forecast.notes]
    return "\n".join(lines)


def _precisions_line(precisions: tuple[Precision, ...]) -> str:
    others = [p.value for p in precisions if p is not Precision.FP32]
    if not others:
        return "precisions: fp32 only"
    return (
        f"precisions: fp32, {', '.join(others)}: each trained model is also evaluated on dev "
        f"in {' and '.join(others)} after its training (seconds, no training; not in the "
        "costs below), so any point may be the answer in any of them; the picks below are "
        "fp32's, with no figure yet to predict the others"
    )


def _table_words(table: TableUsed) -> str:
    if table.estimated:
        return f"a throughput table estimated now on {table.device} ({table.source})"
    return f"the throughput table {table.source}" + (f" ({table.device})" if table.device else "")


def _header(first: str, second: str, gpu: bool) -> str:
    head = f"  {first:<6}{second:<12}{'warm-up':>10}{'teacher':>10}{'own':>10}{'total':>10}"
    return head + (f"{'GPU-h':>9}" if gpu else "")


def _line(first: str, second: str, row: ForecastRow | ForecastTotal, gpu: bool) -> str:
    line = (
        f"  {first:<6}{second:<12}{row.warmup_s:>9.0f}s{row.teacher_s:>9.0f}s"
        f"{row.own_s:>9.0f}s{row.seconds:>9.0f}s"
    )
    return line + (f"{row.gpu_hours:>9.3f}" if gpu else "")


def _rows_by_n(rows: Sequence[ForecastRow], gpu: bool) -> list[str]:
    """One line a row of the grid (a fixed N): its warm-up and teacher once, and its points'
    own phases."""
    lines = [_header("N", "points", gpu)]
    for n in sorted({r.point.n for r in rows}):
        total = ForecastTotal.of([r for r in rows if r.point.n == n])
        lines.append(_line(str(n), str(total.trainings), total, gpu))
    return lines


def _total_line(what: str, total: ForecastTotal, gpu: bool) -> str:
    gpu_hours = f", {total.gpu_hours:.2f} GPU-hours" if gpu else ""
    return f"  {what}: {total.trainings} training(s), {_duration(total.seconds)}{gpu_hours}"


def _duration(seconds: float) -> str:
    """Seconds, with minutes or hours beside them where they read better."""
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 7200:
        return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:,.0f} s ({seconds / 3600:.1f} h)"
