"""What a search answers at its end (:class:`SearchResult`): the text ``autoprumux search``
prints, its ``--json`` document, and the same answer as objects; and the progress line of each
event. Pure functions of the outcome, except :func:`search_report_input` (the stored study) and
:func:`write_search_report` (the HTML file).

Where the study has a held-out test split, the result also shows the test figures the session
measured once the search had answered (:class:`HeldOut`), each beside its dev figure: dev is
what the choice was made on, test what to expect."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoprumux.core.answer import ModelPointer, TrainCommand, locate_model
from autoprumux.core.budget import Budget
from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.metrics import Metric
from autoprumux.core.recommender import Decision
from autoprumux.core.records import HeldOutScore, TrialRecord, TrialStatus
from autoprumux.core.study import Study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.driver import Event, SearchOutcome, StopReason
from autoprumux.loop.store_contract import is_abandoned
from autoprumux.report.data import ReportInput
from autoprumux.session.decision_text import (
    decision_dict,
    format_decision,
    metric_dict,
    point_dict,
)


@dataclass(frozen=True, kw_only=True)
class HeldOut:
    """The held-out test figures a search measured once it had answered (a study with a test
    split only), and what it could not score, in words."""

    scores: Mapping[GridPoint, HeldOutScore]  # the answer's and the trained top-3's
    answer: GridPoint | None  # the search's answer (the others: a budget's top-3)
    notes: tuple[str, ...] = ()  # e.g. a predicted answer, a replayed search's missing folders

    def ordered(self) -> list[tuple[GridPoint, HeldOutScore]]:
        """The scored points, the answer first, then by point."""
        return sorted(self.scores.items(), key=lambda item: (item[0] != self.answer, item[0]))


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """A finished search: what the CLI prints (``text``, or ``document`` with --json) and the
    answer as objects, for a notebook."""

    text: str  # the summary, the top-k table, the answer and where the report is
    document: dict[str, Any]  # the --json document: plain values only (docs/commands.md)
    stop_reason: StopReason
    decision: Decision | None  # the top-k for the budget; None before (1, 0) is trained
    answer: ModelPointer | None  # the top-1's model folder, or the command that trains it
    best: GridPoint | None  # the top-1's point (the answer's)
    report: Path  # the HTML report written at the end
    records: tuple[TrialRecord, ...]  # every finished trial of the study
    test: HeldOut | None  # the held-out test figures; None: the study has no test split


@dataclass(frozen=True, kw_only=True)
class SearchFacts:
    """What the summary names besides the outcome: the study, where it is stored (the URL
    shown masked), the table it ranked by, and how its points are trained."""

    study: Study
    storage_shown: str  # the storage URL, its password masked
    dashboard: str  # the command that serves the study's dashboard
    table: ThroughputTable
    train: TrainCommand | None
    report: Path
    test: HeldOut | None = None  # None: the study has no test split
    # the dev score of predicting one label for every example, and that label (None: a
    # replay, which reads no data)
    one_label: tuple[float, str] | None = None


def summarize(outcome: SearchOutcome, facts: SearchFacts) -> SearchResult:
    """The search's result: the lines ``autoprumux search`` prints, its JSON document, and
    the objects they are made of."""
    table, answer = facts.table, recommended_model(outcome, facts.train)
    # what every accuracy of the outcome is: the study's metric
    metric, positive = facts.study.study.metric, facts.study.study.positive_label
    learned_nothing = _learned_nothing(outcome, facts.one_label, metric.label(positive))
    warnings = [learned_nothing] if learned_nothing else []
    text = [_totals_line(outcome), *(f"warning: {w}" for w in warnings), ""]
    if outcome.decision is not None:
        text.append(
            format_decision(outcome.decision, f"study {facts.study.name}", table, metric, positive)
        )
        # the table's throughput/s and speedup and its measured/s come from two sources
        text.append(
            f"throughput/s and speedup: {table.describe()}; measured/s: timed inside each trial"
        )
    else:
        text.append(f"no recommendation: {_no_baseline(outcome)}")
    if answer is not None:
        text += ["", f"answer: {answer.message}"]
    if facts.test is not None:
        text += ["", *held_out_lines(facts.test, metric.label(positive))]
    text += ["", f"report: {facts.report}", f"dashboard: {facts.dashboard}"]
    document = {
        "study": facts.study.name,
        **metric_dict(metric, positive),
        "storage": facts.storage_shown,
        "stop_reason": outcome.stop_reason.value,
        "trainings_this_run": outcome.trainings_this_run,
        "trainings_total": outcome.trainings_total,
        "free_total": outcome.free_total,
        "failed_total": outcome.failed_total,
        "stopped_total": outcome.stopped_total,
        "grid_size": outcome.grid_size,
        "gpu_hours_total": outcome.gpu_hours_total,
        "training_hours_total": outcome.training_hours_total,
        "best": None if answer is None else answer.to_dict(),
        "decision": (
            decision_dict(outcome.decision, facts.storage_shown, table, metric, positive)
            if outcome.decision
            else None
        ),
        "test": None if facts.test is None else held_out_dict(facts.test, metric, positive),
        "warnings": warnings,
        "report": str(facts.report),
    }
    return SearchResult(
        text="\n".join(text),
        document=document,
        stop_reason=outcome.stop_reason,
        decision=outcome.decision,
        answer=answer,
        best=None if answer is None else answer.point,
        report=facts.report,
        records=tuple(outcome.records),
        test=facts.test,
    )


# a (1, 0) within this of what predicting one label scores has learned nothing (half a point)
LEARNED_NOTHING_MARGIN = 0.005


def _learned_nothing(
    outcome: SearchOutcome, one_label: tuple[float, str] | None, metric: str
) -> str | None:
    """Why the answer means nothing, where the (1, 0) baseline scores no better than a model
    that predicts one label for every dev example: every budget is then measured from it."""
    baseline = next(
        (r.accuracy for r in outcome.records if r.point == BASELINE and r.accuracy is not None),
        None,
    )
    if one_label is None or baseline is None:
        return None
    floor, label = one_label
    if baseline > floor + LEARNED_NOTHING_MARGIN:
        return None
    return (
        f"the (1, 0) baseline's dev {metric} {baseline:.4f} is no better than predicting "
        f"{label!r} for every example ({floor:.4f}): it learned nothing, so every budget is "
        "measured from a model that does not classify; check the labels and the data, or train "
        "longer ([training] finetune_epochs or finetune_steps)"
    )


def held_out_lines(held: HeldOut, label: str) -> list[str]:
    """The test figures as text, e.g. ``answer (2, 0.5): dev macro-F1 0.8312, test 0.8190 on
    1,000 held-out examples`` (``label``: how the metric is named)."""
    lines = ["held-out test (dev: what the choice was made on; test: what to expect):"]
    for point, figure in held.ordered():
        role = "answer" if point == held.answer else "top-3"
        lines.append(
            f"{role} {point}: dev {label} {figure.dev:.4f}, test {figure.score:.4f} on "
            f"{figure.examples:,} held-out examples"
        )
    return lines + [f"not tested: {note}" for note in held.notes]


def held_out_dict(held: HeldOut, metric: Metric, positive: str = "") -> dict[str, Any]:
    """``search --json``'s ``test``: the metric, and each scored point's dev and test."""
    return {
        **metric_dict(metric, positive),
        "points": [
            {
                **point_dict(point),
                "answer": point == held.answer,
                "dev": figure.dev,
                "test": figure.score,
                "examples": figure.examples,
            }
            for point, figure in held.ordered()
        ],
        "notes": list(held.notes),
    }


def _no_baseline(outcome: SearchOutcome) -> str:
    """Why there is no (1, 0) accuracy to rank by: not trained yet, or failed for good."""
    if outcome.stop_reason is not StopReason.BASELINE_FAILED:
        return "the (1, 0) baseline has not been trained"
    failed = [
        r
        for r in outcome.records
        if r.point == BASELINE and r.status is TrialStatus.FAILED and not is_abandoned(r)
    ]
    return (
        f"the (1, 0) baseline failed to train {len(failed)} time(s), the last with "
        f"'{failed[-1].reason}'; every budget is measured from it. A study setting at fault "
        "(a learning rate, the model) needs a new study ([study] name or --storage); another "
        f"cause mended, run again with --max-retries {len(failed)} to try it once more"
    )


def _totals_line(outcome: SearchOutcome) -> str:
    """The counts, and the hours the study's trainings took: wall-clock on any device, and
    GPU-hours where its trials had GPUs (a CPU trial has none, so they are left out then)."""
    gpu = f", {outcome.gpu_hours_total:.2f} GPU-hours" if outcome.gpu_hours_total > 0 else ""
    return (
        f"stopped: {outcome.stop_reason.value} | trainings: {outcome.trainings_this_run} this "
        f"run, {outcome.trainings_total} in the study ({outcome.failed_total} failed, "
        f"{outcome.stopped_total} stopped early, "
        f"{outcome.free_total} more point(s) recorded free) of a "
        f"{outcome.grid_size}-point grid | {outcome.training_hours_total:.2f} h of training{gpu}"
    )


def recommended_model(outcome: SearchOutcome, train: TrainCommand | None) -> ModelPointer | None:
    """The top-1's model folder, or the command that trains it; None with no top-1."""
    if outcome.decision is None or not outcome.decision.recommendations:
        return None
    return locate_model(outcome.decision.recommendations[0].point, outcome.records, train)


def train_command(study: Study, device: str) -> TrainCommand | None:
    """How ``autoprumux train`` trains a point as this search does: the same study file, the
    study's seed, and the search's --device; and where its models are (the study's artifacts
    folder, where a recorded model folder is looked for first); None for a study without a
    file."""
    if study.path is None:
        return None
    return TrainCommand(
        study_path=str(study.path.resolve()),
        study_seed=study.study.seed,
        device=device,
        artifacts_folder=str(study.artifacts_folder),
    )


def dashboard_hint(url: str, study: Study, storage_given: bool) -> str:
    """The command that serves this study's dashboard, without the storage's password: a URL
    with one is named by the study file that holds it (a command that works as printed), or
    shown masked with a note to put the password back (it came from --storage)."""
    from autoprumux.loop.masking import has_password, masked_url  # SQLAlchemy

    if not has_password(url):
        return f"autoprumux dashboard --storage {shlex.quote(url)}"
    if not storage_given and study.path is not None:
        return f"autoprumux dashboard --study {shlex.quote(str(study.path))}"
    return (
        f"autoprumux dashboard --storage {shlex.quote(masked_url(url))} "
        "(the password is masked: put yours in place of ***)"
    )


def search_report_input(
    url: str, study: Study, budget: Budget, throughput_path: str | None
) -> ReportInput:
    """The study's report data, read back from its storage as ``autoprumux report`` would."""
    from autoprumux.report.sources import from_storage

    return from_storage(url, study.name, budget, throughput_path)


def write_search_report(data: ReportInput, out: Path) -> Path:
    """The study's HTML report (:func:`search_report_input`'s data), written to ``out``."""
    from autoprumux.report.html import write_report  # plotly

    return write_report(data, out)


def event_line(event: Event, metric: str = "accuracy") -> str:
    """One progress line: what happened, and the state of the search (``metric``: how the
    study's metric is named, :meth:`Metric.label <autoprumux.core.metrics.Metric.label>`)."""
    kind = event.kind.value
    what = f"{kind:<8} {event.point}" if event.point is not None else kind
    if event.record is not None and event.record.accuracy is not None:
        served = "".join(
            f" ({point.precision.value} {value:.4f})"
            for point, value in event.record.served_accuracy.items()
        )
        what += f" {metric} {event.record.accuracy:.4f}{served}, {event.record.throughput:,.1f}/s"
    elif event.record is not None and event.record.reason:
        what += f" ({event.record.reason})"
    if event.message:
        what += f" ({event.message})"
    return (
        f"{what} | running {event.running}, done {event.done}, failed {event.failed}"
        f" | best so far {event.best if event.best is not None else '-'}"
    )
