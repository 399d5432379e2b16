"""What the CLI prints: JSON documents (stable keys: docs/commands.md) and plain-text tables.

Pure functions from decision-core records to dicts and strings; the CLI only prints them. A
decision's (``predict``, ``search``) are :mod:`autoprumux.session.decision_text`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autoprumux.core.evaluation import Evaluation, ModelCheck
from autoprumux.session.decision_text import point_dict, table_lines

if TYPE_CHECKING:
    from trainers.trial.run import TrialResult
    from trainers.trial.trial_results import PhaseRecord

__all__ = ["evaluation_dict", "format_evaluation", "format_measurement", "format_trial"]


def _check_dict(check: ModelCheck) -> dict[str, object]:
    return {
        "fraction": check.fraction,
        "within": check.within,
        "evaluated": check.evaluated,
        "unpredictable": check.unpredictable,
        "tolerance": check.tolerance,
        "method": check.method,
        "points": [
            {
                **point_dict(c.point),
                "measured": c.measured,
                "predicted": c.predicted,
                "within": c.within,
            }
            for c in check.checks
        ],
    }


def evaluation_dict(evaluation: Evaluation, results: str) -> dict[str, object]:
    return {
        "task": evaluation.task,
        "results": results,
        "train_points": len(evaluation.train_points),
        "test_points": len(evaluation.test_points),
        "budget_kind": evaluation.budget_kind.value,
        "top_k": evaluation.top_k,
        "m_a": _check_dict(evaluation.accuracy),
        "m_t": _check_dict(evaluation.throughput),
        "budgets": [
            {
                "budget": b.budget,
                "threshold": b.threshold,
                "true_best": point_dict(b.true_best),
                "predicted": [point_dict(p) for p in b.predicted],
                "top1_hit": b.top1_hit,
                "topk_hit": b.topk_hit,
            }
            for b in evaluation.budgets
        ],
        "top1_rate": evaluation.top1_rate,
        "topk_rate": evaluation.topk_rate,
    }


def _fraction_text(name: str, check: ModelCheck, unit: str) -> str:
    fraction = "n/a" if check.fraction is None else f"{check.fraction:.1%}"
    return (
        f"{name}: {fraction} ({check.within}/{check.evaluated} within {unit}, {check.method}"
        f"; {check.unpredictable} unpredictable)"
    )


def format_evaluation(evaluation: Evaluation, results: str) -> str:
    k = evaluation.top_k
    lines = [
        f"task {evaluation.task} | results {results} | "
        f"{len(evaluation.train_points)} training points, {len(evaluation.test_points)} test "
        f"points | {evaluation.budget_kind.value} budgets",
        _fraction_text("M_A", evaluation.accuracy, f"{evaluation.accuracy.tolerance:g} accuracy"),
        _fraction_text("M_T", evaluation.throughput, f"{evaluation.throughput.tolerance:.0%}"),
        f"true best in predicted top-1: {evaluation.top1_rate:.1%}, top-{k}: "
        f"{evaluation.topk_rate:.1%} of {len(evaluation.budgets)} budgets",
        "",
    ]
    rows = [
        [
            f"{b.budget:g}",
            f"{b.threshold:.4f}",
            str(b.true_best),
            " ".join(str(p) for p in b.predicted) or "-",
            "yes" if b.topk_hit else "no",
        ]
        for b in evaluation.budgets
    ]
    lines += table_lines(["budget", "threshold", "true best", f"predicted top-{k}", "hit"], rows)
    return "\n".join(lines)


def format_trial(result: TrialResult, metric: str = "accuracy") -> str:
    """A trained trial (trainers.trial.run.TrialResult) as a few lines of text; ``metric``
    names the study's metric, which its ``accuracy`` holds (``Metric.label``)."""
    head = (
        f"task {result.task} | (N, s) = ({result.n}, {result.sparsity:g}) | {result.status.value}"
    )
    ran = [phase_line(record) for record in result.phase_figures]
    if result.reason:  # with the phases it finished
        return "\n".join([head, f"reason: {result.reason}", *ran])
    phases = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.phase_seconds.items())
    # the dev figure in the other serving precisions, beside fp32's
    served = "".join(f" ({name} {figure:.4f})" for name, figure in result.served.items())
    lines = [
        head,
        f"dev {metric} {result.accuracy:.4f}{served} | achieved sparsity "
        f"{result.achieved_sparsity:.4f} | "
        f"{result.parameters:,} prunable parameters | {result.throughput:,.1f} examples/s",
        f"wall time {result.wall_time_s:.1f}s ({phases})",
        f"artifact {result.artifact_path}",
    ]
    numerics = result.numerics
    if numerics:  # where the model was trained, as recorded with it
        lines.insert(
            -1,
            f"trained on {numerics['device']} ({numerics['device_name']}) | "
            f"{numerics['precision']} | {numerics['threads']} threads | torch {numerics['torch']}",
        )
    lines[-1:-1] = ran  # before the artifact: how fast each phase this run ran went
    if result.token_recovery is not None:
        lines.insert(2, f"warm-up token recovery {result.token_recovery:.3f}")
    if result.int8_throughput_ratio is not None and result.int8_latency_ratio is not None:
        lines.insert(
            2,
            f"int8 by a static recipe: {result.int8_throughput_ratio:.2f} x dynamic int8's "
            f"examples/s, {result.int8_latency_ratio:.2f} x its batch-1 latency (timed side "
            "by side)",
        )
    if result.reused:
        lines.append(f"reused: {', '.join(result.reused)}")
    return "\n".join(lines)


def phase_line(record: PhaseRecord) -> str:
    """One phase a trial ran: its speed, and the FLOP rate, MFU and peak memory where known
    (a phase counts FLOP once its Phase.flop is set; MFU needs a GPU of known peak; peak
    memory a GPU)."""
    parts = [f"{record.steps:,} steps", f"{record.examples_per_s:,.1f} examples/s"]
    if record.flop > 0:
        parts.append(f"{record.tflop_per_s:.3g} TFLOP/s")
    if record.mfu is not None:
        parts.append(f"MFU {record.mfu:.1%}")
    if record.peak_memory_gib is not None:
        parts.append(f"peak {record.peak_memory_gib:.1f} GiB")
    return f"phase {record.name}: {', '.join(parts)}"


def format_measurement(report: dict[str, Any]) -> str:  # run_measure's report (JSON)
    """``autoprumux measure``'s table: throughput of every (N, s, precision), speedup over the
    fp32 (1, 0) row, and the latency of one request at batch 1 (a multiplexed model serves it
    as a group of N with N - 1 empty slots)."""
    stamp = report["fingerprint"]
    runtimes = stamp.get("runtimes", {})
    ran = ", ".join(f"{p} on {runtime}" for p, runtime in runtimes.items())
    lines = [
        f"study {report['study']} | {stamp['device']} ({stamp['device_name']}) | "
        f"{stamp['dtype']} | {stamp['threads']} threads | batch {stamp['batch_rows']} x N | "
        f"{stamp['seq_len']} tokens",
        *([f"precisions: {ran}"] if ran else []),
        f"table written to {report['table']}",
        "",
    ]
    trained = any("trained_throughput" in r for r in report["rows"])
    header = ["(N, s)", "precision", "params", "examples/s", "interval", "speedup", "ideal"]
    header += ["latency (ms)"]
    if trained:
        header += ["trained/s", "estimate error"]
    rows = []
    for r in report["rows"]:
        latency = r.get("latency_s")
        row = [
            f"({r['n']}, {r['sparsity']:g})",
            r.get("precision", "fp32"),
            f"{r['parameters']:,}",
            f"{r['throughput']:,.1f}",
            f"{r['low']:,.0f}-{r['high']:,.0f}",
            f"{r['speedup']:.2f}x",
            f"{r['ideal_speedup']:.2f}x",
            "-" if latency is None else f"{1000 * latency:,.2f}",
        ]
        if trained:
            has = "trained_throughput" in r
            row.append(f"{r['trained_throughput']:,.1f}" if has else "-")
            row.append(f"{r['estimate_error']:+.1%}" if has else "-")
        rows.append(row)
    lines += table_lines(header, rows)
    if report["batch_rows_reduced_to"]:
        reduced = report["batch_rows_reduced_to"]
        lines.append(f"note: batches did not fit in memory; rows reduced to {reduced}")
    lines += [f"warning: {warning}" for warning in report.get("warnings", [])]
    return "\n".join(lines)
