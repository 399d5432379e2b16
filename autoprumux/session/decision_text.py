"""A recommender's decision as the CLI prints it: a JSON-ready dict (stable keys:
docs/commands.md) and a plain-text table. Pure functions; ``predict`` and ``search`` print them.

A decision's accuracies hold the study's metric (:mod:`autoprumux.core.metrics`); both name it:
the text in its headers and budget line, the dict with :func:`metric_dict`'s keys."""

from __future__ import annotations

from collections.abc import Sequence

from autoprumux.core.grid import GridPoint
from autoprumux.core.metrics import Metric
from autoprumux.core.recommender import Decision
from autoprumux.core.throughput import ThroughputTable


def point_dict(point: GridPoint) -> dict[str, object]:
    return {"n": point.n, "sparsity": point.sparsity}


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
        "throughput_table": {"source": table.source, "fingerprint": dict(table.fingerprint)},
        "budget": {"kind": decision.budget.kind.value, "value": decision.budget.value},
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
    """The budget, the threshold and the top-k as a table, the metric named in each."""
    label = metric.label(positive_label)
    lines = [
        f"task {decision.task} | results {results} | throughput table {table.source}",
        decision.budget.describe(decision.baseline_accuracy, label),
        "",
    ]
    if decision.recommendations:
        rows = [
            [
                str(r.rank),
                str(r.point),
                r.family.value,
                f"{r.accuracy:.4f}",
                r.accuracy_source.value,
                f"{r.throughput:,.1f}",
                f"{r.speedup:.2f}x",
                "-" if r.measured_throughput is None else f"{r.measured_throughput:,.1f}",
            ]
            for r in decision.recommendations
        ]
        header = [
            "rank",
            "(N, s)",
            "family",
            label,
            f"{label} is",
            "throughput/s",
            "speedup",
            "measured/s",
        ]
        lines += table_lines(header, rows)
    else:
        best = decision.best_accuracy_candidate
        words = (
            "the most accurate candidate"
            if metric is Metric.ACCURACY
            else f"the candidate of highest {label}"
        )
        hint = f"; {words} is {best.point} at {best.accuracy.value:.4f}" if best is not None else ""
        lines.append(f"no candidate meets the threshold {decision.threshold:.4f}{hint}")
    excluded = ", ".join(f"{r.description}: {c}" for r, c in decision.exclusions.items())
    lines += [
        "",
        f"{len(decision.candidates)} candidates" + (f"; excluded {excluded}" if excluded else ""),
    ]
    return "\n".join(lines)


def table_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
