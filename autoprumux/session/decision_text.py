"""A recommender's decision as the CLI prints it: a JSON-ready dict (stable keys:
docs/commands.md) and a plain-text table. Pure functions; ``predict`` and ``search`` print them.

A decision's accuracies hold the study's metric (:mod:`autoprumux.core.metrics`); both name it:
the text in its headers and budget line, the dict with :func:`metric_dict`'s keys.

Each recommended point is an (N, s, precision) (:mod:`autoprumux.core.precision`): the text
prints it ``(2, 0.7, int8)`` (fp32's as ``(2, 0.7)``), the dict has its ``precision`` always.
Both say what the ranking was by (:class:`~autoprumux.core.recommender.Objective`) and give
the latency of one request at batch 1 where the throughput table measured it; the speedup is
always over the (1, 0) fp32 row."""

from __future__ import annotations

from collections.abc import Sequence

from autoprumux.core.grid import GridPoint
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Decision, Objective, Recommendation
from autoprumux.core.throughput import ThroughputTable

# what each objective ranks by, in the words the text prints beneath the budget
OBJECTIVE_WORDS = {
    Objective.THROUGHPUT: "objective: throughput (examples per second at full batches)",
    Objective.LATENCY: "objective: latency (one request at batch 1; a multiplexed model then "
    "runs with N - 1 empty slots)",
}


def point_dict(point: GridPoint) -> dict[str, object]:
    """A point's JSON keys: ``n``, ``sparsity`` and ``precision`` (``"fp32"`` when not
    another)."""
    return {"n": point.n, "sparsity": point.sparsity, "precision": point.precision.value}


def latency_ms(recommendation: Recommendation) -> float | None:
    """Milliseconds of one request at batch 1; None where the table has no latency for it."""
    seconds = recommendation.latency_s
    return None if seconds is None else seconds * 1000.0


def metric_dict(metric: Metric, positive_label: str = "") -> dict[str, str]:
    """The metric a document's accuracies are in: its setting and the name printed for it,
    e.g. ``{"metric": "macro_f1", "metric_label": "macro-F1"}``."""
    return {"metric": metric.value, "metric_label": metric.label(positive_label)}


def decision_dict(
    decision: Decision,
    results: str,
    table: ThroughputTable,
    metric: Metric = Metric.ACCURACY,
    positive_label: str = "",
) -> dict[str, object]:
    """``metric`` (and F1's ``positive_label``): what the decision's accuracies are."""
    return {
        "task": decision.task,
        **metric_dict(metric, positive_label),
        "results": results,
        "throughput_table": {
            "source": table.source,
            "fingerprint": dict(table.fingerprint),
            # rows scaled to the static int8 file their model is served by
            "rescaled": [point_dict(p) for p in table.rescaled],
        },
        "budget": {"kind": decision.budget.kind.value, "value": decision.budget.value},
        "objective": decision.objective.value,
        "baseline_accuracy": decision.baseline_accuracy,
        "threshold": decision.threshold,
        "recommendations": [
            {
                "rank": r.rank,
                **point_dict(r.point),
                "family": r.family.value,
                "accuracy": r.accuracy,
                "accuracy_source": r.accuracy_source.value,
                "throughput": r.throughput,
                "throughput_source": r.throughput_source.value,
                "speedup": r.speedup,
                "measured_throughput": r.measured_throughput,
                "latency_ms": latency_ms(r),
            }
            for r in decision.recommendations
        ],
        "candidates": len(decision.candidates),
        "excluded": {reason.value: count for reason, count in decision.exclusions.items()},
    }


def format_decision(
    decision: Decision,
    results: str,
    table: ThroughputTable,
    metric: Metric = Metric.ACCURACY,
    positive_label: str = "",
) -> str:
    """The budget, the threshold, what the ranking is by and the top-k as a table, the metric
    named in each."""
    label = metric.label(positive_label)
    lines = [
        f"task {decision.task} | results {results} | throughput table {table.source}",
        decision.budget.describe(decision.baseline_accuracy, label, metric.lowest),
        OBJECTIVE_WORDS[decision.objective],
        "",
    ]
    if decision.recommendations:
        lines += table_lines(*_recommendation_rows(decision, label))
    else:
        best = decision.best_accuracy_candidate
        words = (
            "the most accurate candidate"
            if metric is Metric.ACCURACY
            else f"the candidate of highest {label}"
        )
        value = None if best is None else best.accuracy.value
        if best is not None and value is not None and value >= decision.threshold:
            # it meets the threshold, and was left out for another reason: the exclusions say
            lines.append(
                f"no candidate can be ranked: {best.point} meets the threshold "
                f"{decision.threshold:.4f} at {value:.4f}, but every candidate is excluded (below)"
            )
        else:
            hint = f"; {words} is {best.point} at {value:.4f}" if best is not None else ""
            lines.append(f"no candidate meets the threshold {decision.threshold:.4f}{hint}")
    excluded = ", ".join(f"{r.description}: {c}" for r, c in decision.exclusions.items())
    lines += [
        "",
        f"{len(decision.candidates)} candidates" + (f"; excluded {excluded}" if excluded else ""),
    ]
    return "\n".join(lines)


def _recommendation_rows(decision: Decision, label: str) -> tuple[list[str], list[list[str]]]:
    """The top-k table's header and rows. The point column is ``(N, s, precision)`` where a
    candidate is served in another precision than fp32 (an fp32 point still prints
    ``(2, 0.7)``); the batch-1 latency column is there where the table measured one for a
    recommendation, or the ranking is by latency."""
    served = any(c.point.precision is not Precision.FP32 for c in decision.candidates)
    timed = decision.objective is Objective.LATENCY or any(
        r.latency_s is not None for r in decision.recommendations
    )
    header = [
        "rank",
        "(N, s, precision)" if served else "(N, s)",
        "family",
        label,
        f"{label} is",
        "throughput/s",
        "speedup",
        *(["batch-1 ms"] if timed else []),
        "measured/s",
    ]
    rows = []
    for r in decision.recommendations:
        milliseconds = latency_ms(r)
        latency = "-" if milliseconds is None else f"{milliseconds:,.2f}"
        rows.append(
            [
                str(r.rank),
                str(r.point),
                r.family.value,
                f"{r.accuracy:.4f}",
                r.accuracy_source.value,
                f"{r.throughput:,.1f}",
                f"{r.speedup:.2f}x",
                *([latency] if timed else []),
                "-" if r.measured_throughput is None else f"{r.measured_throughput:,.1f}",
            ]
        )
    return header, rows


def table_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
