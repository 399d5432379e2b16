"""Render the report's data (:mod:`autoprumux.report.data`) as one self-contained HTML file.

Every title, axis and column that shows the study's metric names it
(:attr:`~autoprumux.report.data.ReportInput.metric_label`: accuracy, F1, macro-F1 or MCC).
Where the search measured held-out test figures, the answer box and the top-3 tables show
them beside dev: dev is what the choice was made on, test what to expect.
Each precision the report ranks (:attr:`~autoprumux.report.data.ReportInput.served`) is its own
series in figure 1 (a marker symbol per precision, a frontier per family and precision), and a
column of the top-3 tables, beside the batch-1 latency where the throughput table measured it;
a report of fp32 alone looks as it did before precisions were an axis.
plotly.js is inlined once (the file works offline and from file://); every user-provided
string (study and task names, paths, fingerprints) is HTML-escaped and never enters a script.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from autoprumux.core.budget import BudgetKind
from autoprumux.core.grid import BASELINE, Family, GridPoint
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Objective
from autoprumux.core.records import HeldOutScore
from autoprumux.files.atomic import explained_write_errors, write_text_atomic
from autoprumux.report.data import (
    Answer,
    BudgetRow,
    NoAnswer,
    ReportInput,
    TradeoffPoint,
    answer,
    cost,
    no_answer,
    pareto_frontier,
    precision_quality,
    recommendations,
    surface_heatmaps,
    surrogate_quality,
    tradeoff,
)

FAMILY_STYLE = {
    Family.BASELINE: ("BERT-base (1, 0)", "#222222"),
    Family.COFI: ("CoFi (N = 1)", "#1f77b4"),
    Family.DATAMUX: ("DataMUX (s = 0)", "#2ca02c"),
    Family.PRUMUX: ("PruMUX (N > 1, s > 0)", "#d62728"),
}
# figure 1: a family is a colour, a precision a marker symbol (open: predicted) and the dash of
# its frontier
PRECISION_STYLE = {
    Precision.FP32: ("circle", "dot"),
    Precision.BF16: ("square", "longdash"),
    Precision.FP16: ("triangle-up", "dash"),
    Precision.INT8: ("diamond", "dashdot"),
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _capitalized(text: str) -> str:  # "macro-F1" -> "Macro-F1", at the start of a title
    return text[:1].upper() + text[1:]


class _Figures:
    """Turns figures into HTML divs: the first carries plotly.js inline (the file then works
    offline and from file://), the others reuse it."""

    def __init__(self) -> None:
        self._include_js: bool = True

    def html(self, fig: go.Figure, name: str) -> str:
        fig.update_layout(
            margin={"l": 60, "r": 20, "t": 40, "b": 50}, height=460, template="plotly_white"
        )
        out: str = fig.to_html(
            full_html=False,
            include_plotlyjs=self._include_js,
            div_id=name,
            config={"displaylogo": False, "responsive": True},
        )
        self._include_js = False
        return out


def render(data: ReportInput) -> str:
    """The whole page: a header with the answer, then the six sections in order."""
    started = time.perf_counter()
    figures = _Figures()
    top = answer(data)
    source = f"<p>Speedup: {_e(data.table.describe())}.</p>" if data.table else ""
    metric = _e(data.metric_label)
    parts = [
        header(data, top),
        f"<h2>1. Throughput vs {metric}</h2>"
        + source
        + figures.html(tradeoff_figure(data, top), "tradeoff"),
        f"<h2>2. Recommendations per {metric} budget</h2>"
        "<p>Highlighted: the budget asked for.</p>"
        + recommendations_table(data, recommendations(data)),
        f"<h2>3. {_capitalized(metric)} surface</h2>"
        + figures.html(surface_figure(data), "surface"),
        quality_section(data, figures),
        cost_section(data),
        provenance_section(data),
        f"<p class='small'>rendered in {time.perf_counter() - started:.2f} s</p>",
    ]
    return PAGE.format(title=_e(f"autoprumux: {data.title}"), body="\n".join(parts))


def header(data: ReportInput, top: Answer | None) -> str:
    """The title, the task, the metric and the budget, what is missing and the notes, and the
    answer box (or, with nothing meeting the budget, what predict says then)."""
    metric = data.metric_label
    served = data.served
    ranked = (" | precisions " + ", ".join(p.value for p in served)) if len(served) > 1 else ""
    if data.objective is Objective.LATENCY:
        ranked += " | ranked by batch-1 latency"
    parts = [
        f"<h1>autoprumux report: {_e(data.title)}</h1>",
        f"<p class='lead'>task <b>{_e(data.task)}</b> | metric <b>{_e(metric)}</b> | "
        f"{_e(budget_words(data))}{_e(ranked)}</p>",
        _listed_box("This report is incomplete:", data.missing()),
        _listed_box("Note:", data.notes),
    ]
    if top is not None:
        parts.append(answer_box(top, metric, data.test_scores.get(top.point)))
    else:
        unmet = no_answer(data)
        parts.append(no_answer_box(unmet, data) if unmet is not None else "")
    return "\n".join(part for part in parts if part)


def budget_words(data: ReportInput) -> str:
    """The budget asked for and the threshold it gives, as predict states them
    (:meth:`Budget.describe`: a threshold every point meets says so), or why there is no
    threshold yet."""
    metric = data.metric_label
    if data.threshold is None:  # a budget of the baseline's, which is not measured
        why = ": it failed" if BASELINE in data.observations.failed else " yet"
        return f"{data.budget.kind.value} {metric} budget {data.budget.value:g} (no baseline{why})"
    return data.budget.describe(data.baseline_accuracy, metric, data.metric.lowest)


def _listed_box(title: str, items: Sequence[str]) -> str:
    """A warning box of ``items`` under ``title``; nothing when there are none."""
    if not items:
        return ""
    listed = "".join(f"<li>{_e(item)}</li>" for item in items)
    return f"<div class='warn'><b>{_e(title)}</b><ul>{listed}</ul></div>"


def no_answer_box(unmet: NoAnswer, data: ReportInput) -> str:
    """Nothing meets the budget asked for: said as predict says it, naming the candidate of
    highest metric."""
    words = (
        "the most accurate candidate"
        if data.metric is Metric.ACCURACY
        else f"the candidate of highest {data.metric_label}"
    )
    closest = (
        f"; {words} is {unmet.closest} at {unmet.closest_accuracy:.4f}"
        if unmet.closest is not None and unmet.closest_accuracy is not None
        else ""
    )
    return (
        f"<div class='warn'>No candidate meets the threshold {unmet.threshold:.4f}"
        f"{_e(closest)}.</div>"
    )


def surface_figure(data: ReportInput) -> go.Figure:
    """Section 3: the metric over the grid (N rows, s columns), the trained points marked, and
    each N's largest feasible s under the requested budget; one such view per precision the
    report ranks (fp32 shown, buttons switch: one colour scale for all)."""
    heatmaps = surface_heatmaps(data)
    values = [v for heat in heatmaps for row in heat.accuracy for v in row if v is not None]
    fig = go.Figure()
    views = []  # per heatmap: the indices of its traces
    for heat in heatmaps:
        first = len(fig.data)
        suffix = "" if heat.precision is Precision.FP32 else f" ({heat.precision.value})"
        fig.add_trace(
            go.Heatmap(
                z=[list(r) for r in heat.accuracy],
                x=[f"{s:g}" for s in heat.sparsities],
                y=[str(n) for n in heat.n_values],
                colorscale="Viridis",
                zmin=min(values, default=None),
                zmax=max(values, default=None),
                colorbar={"title": data.metric_label},
                name=f"{data.metric_label}{suffix}",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[f"{p.sparsity:g}" for p in heat.trained],
                y=[str(p.n) for p in heat.trained],
                mode="markers",
                # outlined: white alone is invisible in the legend
                marker={"symbol": "x", "color": "white", "size": 11, "line": {"width": 1}},
                name=f"trained{suffix}",
            )
        )
        edge = [(n, s) for n, s in heat.boundary if s is not None]
        if edge:
            fig.add_trace(
                go.Scatter(
                    x=[f"{s:g}" for _, s in edge],
                    y=[str(n) for n, _ in edge],
                    mode="lines+markers",
                    line={"color": "red"},
                    name=f"largest feasible s (requested budget){suffix}",
                )
            )
        views.append(range(first, len(fig.data)))
    if len(views) > 1:
        for index, trace in enumerate(fig.data):
            trace.visible = index in views[0]
        buttons = [
            {
                "label": heat.precision.value,
                "method": "update",
                "args": [{"visible": [i in view for i in range(len(fig.data))]}],
            }
            for heat, view in zip(heatmaps, views, strict=True)
        ]
        fig.update_layout(
            updatemenus=[
                {
                    "type": "buttons",
                    "direction": "right",
                    "buttons": buttons,
                    **{"x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
                }
            ]
        )
    # the legend above the grid, right: on the right it would cover the colour bar
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1}
    )
    fig.update_xaxes(title="sparsity s", type="category")
    fig.update_yaxes(title="N", type="category")
    return fig


def quality_section(data: ReportInput, figures: _Figures) -> str:
    """Section 4: leave-one-out predictions against the measured metric, M_A and M_T."""
    title = "<h2>4. How far to trust the surrogate</h2>" + precision_checks(data)
    quality, m_a, m_t = surrogate_quality(data)
    predicted = [q for q in quality if q.predicted_accuracy is not None]
    if not predicted:
        return (
            f"{title}<p>Not enough trained PruMUX points (N &gt; 1, s &gt; 0) for a "
            "leave-one-out check yet.</p>"
        )
    measured = [q.measured_accuracy for q in predicted]
    estimates = [q.predicted_accuracy for q in quality if q.predicted_accuracy is not None]
    fig = go.Figure(
        go.Scatter(
            x=measured,
            y=estimates,
            mode="markers+text",
            text=[str(q.point) for q in predicted],
            textposition="top center",
            name="leave-one-out",
        )
    )
    low, high = min(measured + estimates), max(measured + estimates)
    fig.add_trace(
        go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"dash": "dash"}, name="exact")
    )
    metric = data.metric_label
    fig.update_xaxes(title=f"measured {metric}")
    fig.update_yaxes(title=f"predicted {metric} (leave-one-out)")
    text = (
        f"M_A (within 1.5 points of {metric}): {m_a:.0%} of {len(predicted)}"
        if m_a is not None
        else ""
    )
    if m_t is not None:
        text += (
            "; M_T (the throughput table within 20% of the throughput timed inside each "
            f"trial): {m_t:.0%}"
        )
    return f"{title}<p>{_e(text)}</p>" + figures.html(fig, "quality")


def precision_checks(data: ReportInput) -> str:
    """Section 4's line per precision but fp32: how well its figures are predicted from fp32's
    (an untrained point's figure in it is fp32's prediction plus the predicted change)."""
    metric = data.metric_label
    lines = []
    for check in precision_quality(data):
        if check.largest_error is None:
            lines.append(
                f"{check.precision.value}: fewer than two trained models with a figure in it; "
                "its change from fp32 cannot be checked leave-one-out yet."
            )
            continue
        lines.append(
            f"{check.precision.value}: each trained model's change from fp32, predicted "
            f"leave-one-out from the others' changes, within 1.5 {metric} points for "
            f"{check.within} of {check.checked} (largest error "
            f"{100 * check.largest_error:.2f} points)."
        )
    return "".join(f"<p>{_e(line)}</p>" for line in lines)


def cost_section(data: ReportInput) -> str:
    """Section 5: what the study trained, and the hours it took against the exhaustive grid's
    (wall-clock hours on any device; GPU-hours where the trials had GPUs)."""
    spent = cost(data)

    def hours(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    return (
        "<h2>5. Cost</h2><table><tr><th>trained</th><th>free (the teacher of a training)</th>"
        "<th>failed</th><th>stopped early</th><th>never trained</th><th>grid</th>"
        "<th>training hours (wall clock)</th><th>for the exhaustive grid (est.)</th>"
        "<th>GPU-hours</th><th>for the exhaustive grid (est.)</th></tr>"
        f"<tr><td>{spent.trained}</td><td>{spent.free}</td><td>{spent.failed}</td>"
        f"<td>{spent.stopped}</td><td>{spent.skipped}</td><td>{spent.grid_size}</td>"
        f"<td>{hours(spent.wall.spent)}</td><td>{hours(spent.wall.exhaustive)}</td>"
        f"<td>{hours(spent.gpu.spent)}</td><td>{hours(spent.gpu.exhaustive)}</td></tr></table>"
    )


def provenance_section(data: ReportInput) -> str:
    """Section 6: where the data came from, the throughput table's machine, and when."""
    stamp = {
        **data.provenance,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "throughput table": data.table.source if data.table else "-",
        **{
            f"fingerprint.{k}": v for k, v in (data.table.fingerprint if data.table else {}).items()
        },
    }
    return (
        "<h2>6. Provenance</h2><table>"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in stamp.items())
        + "</table>"
    )


def answer_box(top: Answer, metric: str = "accuracy", test: HeldOutScore | None = None) -> str:
    """What to deploy, and where its model is or the command that trains it (``metric``: how
    the study's metric is named; ``test``: its held-out test figure, shown beside dev)."""
    measured = "measured" if top.accuracy_measured else "predicted"
    # a point whose training stopped early is said to be one, not a point never trained
    words, code = top.model.describe(metric)
    where = _e(words) + (f": <code>{_e(code)}</code>" if code is not None else "")
    figure = f"{measured} {_e(metric)} {top.accuracy:.4f} (threshold {top.threshold:.4f})"
    if test is not None:
        figure = (
            f"dev {_e(metric)} {top.accuracy:.4f} (threshold {top.threshold:.4f}; what the "
            f"choice was made on), test {test.score:.4f} on {test.examples:,} held-out "
            "examples (what to expect)"
        )
    # the speedup is over the (1, 0) model in fp32, whatever the answer's precision
    base = "(1, 0)" if top.point.precision is Precision.FP32 else "(1, 0) in fp32"
    latency = (
        f"; one request at batch 1 takes {top.latency_s * 1000:,.2f} ms"
        if top.latency_s is not None
        else ""
    )
    return (
        f"<div class='answer'>Deploy <b>{_e(top.point)}</b>: {top.speedup:.2f}x the "
        f"throughput of {base} at {figure}{latency}.<br><span class='model'>{where}.</span></div>"
    )


def tradeoff_figure(data: ReportInput, top: Answer | None) -> go.Figure:
    """Figure 1: the metric (x, reversed) vs speedup over (1, 0) fp32 (y) per family and
    precision, with the requested budget's threshold (a vertical line: the metric is the x
    axis) and the recommended point."""
    fig = go.Figure()
    for family, points in tradeoff(data).items():
        for precision in Precision:
            served = [p for p in points if p.point.precision is precision]
            _add_family(fig, family, precision, served)
    threshold = data.threshold
    if threshold is not None:  # feasible points lie left of it (the x axis is reversed)
        fig.add_vline(
            x=threshold,
            line={"color": "#555555", "dash": "dash"},
            annotation_text=f"threshold {threshold:.4f}",
            annotation_position="top left",
            name="threshold",
        )
    if top is not None:
        _add_answer(fig, top)
    fig.update_xaxes(title=data.metric_label, autorange="reversed")
    fig.update_yaxes(title="throughput improvement over (1, 0) (x)")
    return fig


def _add_family(
    fig: go.Figure, family: Family, precision: Precision, points: list[TradeoffPoint]
) -> None:
    """One family's measured (filled) and predicted (open) points in one precision, and their
    Pareto frontier; fp32's named by the family alone, another's with its precision."""
    label, color = FAMILY_STYLE[family]
    symbol, dash = PRECISION_STYLE[precision]
    if precision is not Precision.FP32:
        label = f"{label}, {precision.value}"
    for measured in (True, False):
        chosen = [p for p in points if p.measured is measured]
        if chosen:
            fig.add_trace(
                go.Scatter(
                    x=[p.accuracy for p in chosen],
                    y=[p.speedup for p in chosen],
                    mode="markers+text",
                    name=f"{label}, {'measured' if measured else 'predicted'}",
                    text=[str(p.point) for p in chosen],
                    textposition="top center",
                    marker={
                        "color": color,
                        "size": 10 if measured else 8,
                        "symbol": symbol if measured else f"{symbol}-open",
                    },
                )
            )
    frontier = pareto_frontier(points)
    if len(frontier) > 1:
        fig.add_trace(
            go.Scatter(
                x=[p.accuracy for p in frontier],
                y=[p.speedup for p in frontier],
                mode="lines",
                line={"color": color, "dash": dash},
                name=f"{label} frontier",
            )
        )


def _add_answer(fig: go.Figure, top: Answer) -> None:
    """The recommended point: a star and an arrow saying to deploy it."""
    fig.add_trace(
        go.Scatter(
            x=[top.accuracy],
            y=[top.speedup],
            mode="markers",
            name=f"recommended {top.point}",
            marker={
                "symbol": "star",
                "size": 20,
                "color": "#ffbf00",
                "line": {"color": "#222222", "width": 1.5},
            },
        )
    )
    fig.add_annotation(
        x=top.accuracy, y=top.speedup, text=f"deploy {top.point}", showarrow=True, ay=-40
    )


def recommendations_table(data: ReportInput, rows: list[BudgetRow]) -> str:
    """Section 2: top-k per budget; throughput and speedup from one source, the report's
    throughput table, named in the caption; a precision column where the report ranks more
    than fp32, and the batch-1 latency where the table measured it; beside dev, the held-out
    test figure of each scored point where the search measured them."""
    metric = _e(data.metric_label)
    tested = data.test_scores
    served, timed = len(data.served) > 1, data.timed_latency
    dev = f"dev {metric}" if tested else metric
    heads = [
        f"{metric} budget",
        "threshold",
        "rank",
        "(N, s)",
        *(["precision"] if served else []),
        dev,
        *([f"test {metric}"] if tested else []),
        "throughput (examples/s)",
        "speedup",
        *(["batch-1 latency (ms)"] if timed else []),
    ]
    table = ["<table><tr>" + "".join(f"<th>{head}</th>" for head in heads) + "</tr>"]
    for row in rows:
        css = " class='requested'" if row.requested else ""
        budget = (
            f"minimum {row.budget:g}" if row.kind is BudgetKind.MIN_ACCURACY else f"{row.budget:g}"
        )
        lead = f"<tr{css}><td>{budget}</td><td>{row.threshold:.4f}</td>"
        if not row.top:
            table.append(
                f"{lead}<td colspan='{len(heads) - 2}'>nothing meets the threshold</td></tr>"
            )
        for item in row.top:
            table.append(lead + _recommendation_cells(data, item, served, timed) + "</tr>")
    table.append("</table>")
    return _recommendations_caption(data) + "".join(table)


def _recommendation_cells(
    data: ReportInput, item: dict[str, Any], served: bool, timed: bool
) -> str:
    """One top-k row's cells after its budget and threshold (:func:`recommendations_table`):
    with a precision column, the point is its (N, s) and the precision a cell of its own."""
    point: GridPoint = item["point"]
    how = "measured" if item["accuracy_measured"] else "predicted"
    if item["bound"] is not None:  # trained, and stopped early under this bound
        how += f"; stopped early, at most {item['bound']:.4f}"
    where = f"{_e(point.trained)}</td><td>{point.precision.value}" if served else _e(point)
    latency: float | None = item["latency_s"]
    milliseconds = "-" if latency is None else f"{latency * 1000:,.2f}"
    return (
        f"<td>{item['rank']}</td><td>{where}</td>"
        f"<td>{item['accuracy']:.4f} ({how})</td>{_test_cell(data, point)}"
        f"<td>{item['throughput']:,.1f}</td><td>{item['speedup']:.2f}x</td>"
        + (f"<td>{milliseconds}</td>" if timed else "")
    )


def _recommendations_caption(data: ReportInput) -> str:
    """Where section 2's throughputs and figures come from, what a precision's figure is,
    what the batch-1 latency is, and what dev and test are."""
    metric = _e(data.metric_label)
    caption = (
        f"<p>Throughput and speedup: {_e(data.table.describe())}. {_capitalized(metric)}: "
        f"measured where the point was trained, else predicted by the {metric} surface.</p>"
        if data.table
        else ""
    )
    if len(data.served) > 1:
        caption += (
            "<p>Precision: what the trained model is served in (int8: ONNX Runtime's dynamic "
            f"quantization). Its {metric} is measured where the trained model was evaluated "
            f"in it, else the fp32 prediction plus the precision's measured change; every "
            "speedup is over (1, 0) in fp32.</p>"
        )
    if data.timed_latency:
        ranked = " The top-3 are ranked by it." if data.objective is Objective.LATENCY else ""
        caption += (
            "<p>Batch-1 latency: the milliseconds of one request alone (a multiplexed model "
            f"then runs with N - 1 empty slots), from the same table; - where not timed.{ranked}"
            "</p>"
        )
    if data.test_scores:
        examples = max(t.examples for t in data.test_scores.values())
        caption += (
            f"<p>dev {metric}: what the choice was made on; test {metric}: what to expect, "
            f"measured once on {examples:,} held-out examples after the search answered.</p>"
        )
    return caption


def _test_cell(data: ReportInput, point: GridPoint) -> str:
    """A top-k row's test cell: its held-out figure, '-' for a point not scored (predicted,
    or its model folder gone); no cell where the search measured no test figures."""
    if not data.test_scores:
        return ""
    held = data.test_scores.get(point)
    return f"<td>{held.score:.4f}</td>" if held is not None else "<td>-</td>"


def write_report(data: ReportInput, path: str | Path) -> Path:
    """Render and write the report by rename: a kill while it is written leaves the previous
    report whole (and at most a hidden temporary file beside it), never an empty one."""
    path = Path(path)
    page = render(data)
    with explained_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, page)
    return path


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
tr.requested td {{ background: #fff3c4; font-weight: 600; }}
.answer {{ font-size: 1.2em; background: #e8f4ea; padding: 0.8em; border-radius: 6px; }}
.answer .model {{ font-size: 0.8em; }} code {{ word-break: break-all; }}
.warn {{ background: #fde2e2; padding: 0.6em 1em; border-radius: 6px; }}
.lead {{ color: #555; }} .small {{ color: #888; font-size: 0.8em; }}
</style></head><body>
{body}
</body></html>
"""
