"""The commands that answer from trials already recorded — a results table, or the Optuna
storage of a search — without training: ``predict``, ``evaluate`` and ``report``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from autoprumux.cli.options import (
    Command,
    budget_from,
    budget_options,
    grid_from,
    json_option,
    objective_option,
    options,
    out_option,
    storage_option,
    task_option,
    throughput_option,
    top_option,
)
from autoprumux.core.budget import BudgetKind
from autoprumux.core.errors import FieldError
from autoprumux.core.evaluation import (
    check_train_grid_covered,
    paper_rule_train_grid,
    results_grid,
)
from autoprumux.core.grid import PAPER_TRAIN_GRID, Grid, GridPoint
from autoprumux.core.recommender import Objective, Recommender
from autoprumux.core.records import ResultsTable
from autoprumux.core.throughput import ThroughputTable


def results_table_options(func: Command) -> Command:
    """The tables predict and evaluate read, and how: the same options for both."""
    return options(
        click.option(
            "--results",
            "results_path",
            required=True,
            type=click.Path(dir_okay=False),
            help="Results table (.csv, .json, .parquet): task, n, sparsity, accuracy, "
            "throughput, ...",
        ),
        task_option(),
        throughput_option(
            "Throughput table measured on one task ('task 0'); default: the results' own "
            "throughputs."
        ),
        click.option(
            "--throughput-task",
            default=None,
            help="Task whose rows to read from a --throughput file with several tasks.",
        ),
    )(func)


@click.command()
@results_table_options
@top_option("How many recommendations to print.")
@json_option()
@budget_options()
@click.option(
    "--grid",
    "grid_spec",
    default=None,
    metavar="SPEC|STUDY.toml",
    help="Rank this grid ('1,2,5,10:0,0.6,0.7' or a study file's [grid]) instead of "
    "the throughput table's points.",
)
@objective_option()
def predict(
    results_path: str,
    task: str | None,
    throughput_path: str | None,
    throughput_task: str | None,
    top_k: int,
    as_json: bool,
    budget: float | None,
    relative_budget: float | None,
    min_accuracy: float | None,
    grid_spec: str | None,
    objective: Objective,
) -> None:
    """Recommend the top (N, s, precision) for an accuracy budget (paper section 4.3)."""
    from autoprumux.report.data import ranked_precisions
    from autoprumux.session.decision_text import decision_dict, format_decision

    chosen = budget_from(budget, relative_budget, min_accuracy)
    results, task, table = _load(results_path, task, throughput_path, throughput_task)
    if objective is Objective.LATENCY and not table.latency:
        raise FieldError(
            "--objective",
            f"latency needs a throughput table with a latency_s column (seconds of one request "
            f"at batch 1); {table.source} has none: give --throughput such a table",
        )
    grid = grid_from(grid_spec, "--grid") if grid_spec else None
    observations = results.observations(task)
    # the (N, s, precision) points: each precision the table times and the results measured
    precisions = ranked_precisions(table, observations)
    points: tuple[GridPoint, ...] = (
        grid.served(precisions)
        if grid is not None
        else tuple(p for p in table.points if p.precision in precisions)
    )
    recommender = Recommender(top_k=top_k, objective=objective).fit(task, observations, table)
    decision = recommender.recommend(chosen, points)
    table = recommender.table_  # what it ranked by: a static int8 model's row scaled to its file
    if as_json:
        click.echo(json.dumps(decision_dict(decision, results_path, table), indent=1))
    else:
        click.echo(format_decision(decision, results_path, table))
        if table.rescaled:  # a static int8 model's row: say where its figures come from
            click.echo(f"throughput/s and speedup: {table.describe()}")


@click.command()
@results_table_options
@top_option("The k of the top-k hits: whether the true best is among the predicted top k.")
@json_option()
@click.option(
    "--train-grid",
    "train_spec",
    default=None,
    metavar="SPEC|STUDY.toml",
    help="Points that count as training points, a subset of the results' grid. Default: the "
    "paper's rule on the results' grid: every N, s = 0, and every other non-zero sparsity "
    "from the smallest, plus the largest (on the paper's grid, its training grid "
    f"{PAPER_TRAIN_GRID.spec()}).",
)
@click.option(
    "--budget-kind",
    type=click.Choice([BudgetKind.ABSOLUTE.value, BudgetKind.RELATIVE.value]),
    default=BudgetKind.ABSOLUTE.value,
    show_default=True,
    help="How the budgets 0, 0.005, ..., 0.10 are read.",
)
def evaluate(
    results_path: str,
    task: str | None,
    throughput_path: str | None,
    throughput_task: str | None,
    top_k: int,
    as_json: bool,
    train_spec: str | None,
    budget_kind: str,
) -> None:
    """Score the meta-model on a full grid: M_A, M_T and top-k hits (paper section 4.4)."""
    from autoprumux.cli.outputs import evaluation_dict, format_evaluation
    from autoprumux.core.evaluation import evaluate as run_evaluation

    results, task, table = _load(results_path, task, throughput_path, throughput_task)
    train_grid, origin = _train_grid(train_spec, results, task)
    evaluation = run_evaluation(
        results,
        task,
        train_grid=train_grid,
        throughput_table=table if throughput_path else None,
        budget_kind=BudgetKind(budget_kind),
        top_k=top_k,
    )
    if as_json:
        document = evaluation_dict(evaluation, results_path)
        click.echo(json.dumps({**document, "train_grid": train_grid.spec()}, indent=1))
    else:
        header, _, rest = format_evaluation(evaluation, results_path).partition("\n")
        click.echo(f"{header}\ntraining grid {train_grid.spec()} ({origin})\n{rest}")


def _train_grid(spec: str | None, results: ResultsTable, task: str) -> tuple[Grid, str]:
    """evaluate's training points, and where they came from (printed beneath the header)."""
    covered = results_grid(results, task)
    if spec is not None:
        train_grid = grid_from(spec, "--train-grid")
        check_train_grid_covered(train_grid, covered, results.source)
        return train_grid, "--train-grid"
    # the paper's training grid holds points a smaller table lacks (N = 5, 10; s = 0.95):
    # its rule, not its points, carries over to another grid
    train_grid = paper_rule_train_grid(covered)
    if train_grid == PAPER_TRAIN_GRID:
        return train_grid, "the paper's"
    return train_grid, (
        f"the paper's rule on the results' grid {covered.spec()}; --train-grid chooses others"
    )


# report --help: the budget and objective it uses when none is given
_STUDY_DEFAULT = "with --storage, the {0} the study's last search ran with; otherwise {1}"


@click.command()
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A results table (.csv/.json/.parquet) ...",
)
@storage_option("... or the Optuna storage of a search, with --study-name.")
@click.option("--study-name", default=None, help="The study's name in --storage.")
@task_option()
@throughput_option(
    "Throughput table the report ranks by. Default: with --storage, the table the search "
    "ranked by (recorded in the study, when that file still exists); otherwise the "
    "results' own throughputs, those timed inside each trial."
)
@budget_options(default=0.03, default_text=_STUDY_DEFAULT.format("budget", "0.03"))
@objective_option(default_text=_STUDY_DEFAULT.format("objective", "throughput"))
@out_option("Default reports/<name>.html")
def report(
    results_path: str | None,
    storage: str | None,
    study_name: str | None,
    task: str | None,
    throughput_path: str | None,
    budget: float | None,
    relative_budget: float | None,
    min_accuracy: float | None,
    objective: Objective,
    out_path: str | None,
) -> None:
    """Write the HTML report: Pareto frontiers, top-3 per budget, surrogate quality, cost.

    Without a budget option or --objective: with --storage, the budget and objective the
    study's last search ran with (a study recorded before they were: --budget 0.03,
    throughput); with --results, --budget 0.03 and throughput."""
    from autoprumux.report import sources as report_command
    from autoprumux.report.html import write_report
    from autoprumux.report.sources import check_report_output, default_report_path

    given = any(value is not None for value in (budget, relative_budget, min_accuracy))
    chosen = budget_from(budget, relative_budget, min_accuracy, default=0.03)
    source = click.get_current_context().get_parameter_source("objective")
    ranked_by = objective if source is not ParameterSource.DEFAULT else None
    _check_report_sources(results_path, storage, study_name)
    # the output is checked before anything is read; the title is the one the data will have
    if results_path:
        out = check_report_output(out_path or default_report_path(Path(results_path).stem))
        data = report_command.from_results(
            results_path, task, chosen, throughput_path, objective=objective
        )
    else:
        assert storage is not None and study_name is not None  # _check_report_sources
        out = check_report_output(out_path or default_report_path(study_name))
        from autoprumux.loop.storage_check import check_existing_storage  # SQLAlchemy, Optuna

        check_existing_storage(storage)  # before Optuna opens (and writes to) it
        data = report_command.from_storage(
            storage, study_name, chosen if given else None, throughput_path, ranked_by
        )
    if ranked_by is Objective.LATENCY and data.table is not None and not data.table.latency:
        raise FieldError(
            "--objective",
            f"latency needs a throughput table with a latency_s column (seconds of one request "
            f"at batch 1); {data.table.source} has none: give --throughput such a table",
        )
    click.echo(str(write_report(data, out)))


def _check_report_sources(
    results_path: str | None, storage: str | None, study_name: str | None
) -> None:
    """report reads one source: --results FILE, or --storage URL with --study-name NAME."""
    if results_path and storage:
        raise FieldError("--results", "give --results FILE or --storage URL, not both")
    if storage and not study_name:
        from autoprumux.loop.optuna_store import stored_study_names  # SQLAlchemy, Optuna
        from autoprumux.loop.storage_check import check_existing_storage

        check_existing_storage(storage)
        names = stored_study_names(storage)
        held = f"it holds: {', '.join(names)}" if names else "it holds no study"
        raise FieldError("--study-name", f"is needed with --storage: the study to report ({held})")
    if not results_path and not storage:
        raise FieldError(
            "--results", "give --results FILE, or --storage URL with --study-name NAME"
        )


def _load(
    results_path: str, task: str | None, throughput_path: str | None, throughput_task: str | None
) -> tuple[ResultsTable, str, ThroughputTable]:
    """The results, the task they are read for, and the throughput table to rank by."""
    from autoprumux.files.results_io import read_results, read_throughput_table

    if throughput_task and not throughput_path:
        raise FieldError("--throughput-task", "is read only with --throughput (its table's task)")
    results = read_results(results_path)
    task = results.resolve_task(task)
    if throughput_path:
        table = read_throughput_table(throughput_path, throughput_task)
    else:
        table = ThroughputTable.from_results(results, task)
    return results, task, table
