"""The ``autoprumux`` command. The only module that prints.

Every user mistake (an :class:`AutoPruMuxError` or a usage error) becomes one line on stderr
and exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.grid import PAPER_TRAIN_GRID, Grid, GridPoint, parse_grid_spec
from autoprumux.core.recommender import Recommender
from autoprumux.core.records import ResultsTable
from autoprumux.core.throughput import ThroughputTable
from autoprumux.core.version import __version__

# the commands import what they use (the search, report and engine adapters: Optuna, Ray,
# plotly, torch) when they run, so `autoprumux --help` and the core stay light
if TYPE_CHECKING:
    from tqdm import tqdm

    from autoprumux.core.progress import Progress

EXIT_USER_ERROR = 2
# a command's function, or the command click made of it, that an option decorates
_Command = TypeVar("_Command", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="autoprumux")
def cli() -> None:
    """Find the fastest multiplexed (N) and pruned (s) BERT within an accuracy budget."""


def _device_option(func: _Command) -> _Command:
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto (CUDA when present), cpu, cuda or cuda:INDEX: where the trial trains.",
    )(func)


def _results_option(func: _Command) -> _Command:
    options = [
        click.option(
            "--results",
            "results_path",
            required=True,
            type=click.Path(dir_okay=False),
            help="Results table (.csv, .json, .parquet): task, n, sparsity, accuracy, "
            "throughput, ...",
        ),
        click.option("--task", default=None, help="Task to use when the results hold several."),
        click.option(
            "--throughput",
            "throughput_path",
            type=click.Path(dir_okay=False),
            help="Throughput table measured on one task ('task 0'); default: the "
            "results' own throughputs.",
        ),
        click.option(
            "--throughput-task",
            default=None,
            help="Task whose rows to read from a --throughput file with several tasks.",
        ),
        click.option(
            "--top",
            "top_k",
            default=3,
            show_default=True,
            type=click.IntRange(min=1),
            help="How many recommendations per budget.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@_results_option
@click.option("--budget", type=float, help="Accuracy points below (1, 0) that may be lost (0.03).")
@click.option(
    "--relative-budget", type=float, help="Fraction of the (1, 0) accuracy that may be lost."
)
@click.option("--min-accuracy", type=float, help="Lowest acceptable accuracy (a fraction).")
@click.option(
    "--grid",
    "grid_spec",
    default=None,
    metavar="SPEC|STUDY.toml",
    help="Rank this grid ('1,2,5,10:0,0.6,0.7' or a study file's [grid]) instead of "
    "the throughput table's points.",
)
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
) -> None:
    """Recommend the top (N, s) for an accuracy budget (paper section 4.3)."""
    from autoprumux.cli.outputs import decision_dict, format_decision

    chosen = _budget(budget, relative_budget, min_accuracy)
    results, task, table = _load(results_path, task, throughput_path, throughput_task)
    grid = _grid(grid_spec, "--grid") if grid_spec else None
    recommender = Recommender(top_k=top_k).fit(task, results.observations(task), table)
    decision = recommender.recommend(chosen, grid)
    if as_json:
        click.echo(json.dumps(decision_dict(decision, results_path, table), indent=1))
    else:
        click.echo(format_decision(decision, results_path, table))


@cli.command()
@_results_option
@click.option(
    "--train-grid",
    "train_spec",
    default=PAPER_TRAIN_GRID.spec(),
    show_default=True,
    metavar="SPEC|STUDY.toml",
    help="Points that count as training points.",
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
    train_spec: str,
    budget_kind: str,
) -> None:
    """Score the meta-model on a full grid: M_A, M_T and top-k hits (paper section 4.4)."""
    from autoprumux.cli.outputs import evaluation_dict, format_evaluation
    from autoprumux.core.evaluation import evaluate as run_evaluation

    results, task, table = _load(results_path, task, throughput_path, throughput_task)
    evaluation = run_evaluation(
        results,
        task,
        train_grid=_grid(train_spec, "--train-grid"),
        throughput_table=table if throughput_path else None,
        budget_kind=BudgetKind(budget_kind),
        top_k=top_k,
    )
    if as_json:
        click.echo(json.dumps(evaluation_dict(evaluation, results_path), indent=1))
    else:
        click.echo(format_evaluation(evaluation, results_path))


@cli.command()
@click.option(
    "--study",
    "study_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Study file (TOML).",
)
@click.option("--n", "n", required=True, type=int, help="Multiplexing width N (1: none).")
@click.option("--sparsity", required=True, type=float, help="Target sparsity s in [0, 1).")
@click.option("--seed", type=int, default=None, help="Seed (default: the study's).")
@_device_option
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    help="CPU threads of the trial's kernels; 0: every core. A search uses its CPUs per trial.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def train(
    study_path: str,
    n: int,
    sparsity: float,
    seed: int | None,
    device: str,
    threads: int,
    as_json: bool,
) -> int:
    """Train one (N, s) point of a study: warm-up, fine-tuning, pruning, evaluation."""
    from autoprumux.core.study import load_study

    study = load_study(study_path)
    try:
        point = GridPoint(n, sparsity)
    except FieldError as err:
        raise FieldError("--" + err.field, err.message) from None
    if point not in study.grid.grid:
        click.echo(f"note: {point} is not in the study grid {study.grid.grid.spec()}", err=True)
    from trainers.trial.run import TrialSpec, run_trial

    with _ProgressBar() as bar:
        spec = TrialSpec(
            study=study,
            n=point.n,
            sparsity=point.sparsity,
            seed=seed,
            device=device,
            threads=threads,
        )
        result = run_trial(spec, progress=bar.update)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
    else:
        from autoprumux.cli.outputs import format_trial

        click.echo(format_trial(result))
    return 0 if result.reason is None else 1


@cli.command()
@click.option(
    "--study",
    "study_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Study file (TOML); its [grid], [model] and [throughput] apply.",
)
@click.option(
    "--device",
    default=None,
    help="auto, cpu, cuda or cuda:INDEX: where to measure (default: the study's [throughput]).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Precision of the timed forward passes (default: the study's [throughput] dtype).",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows per batch; a batch holds rows x N sequences (the paper: 128).",
)
@click.option("--passes", type=click.IntRange(min=1), default=None, help="Timed passes.")
@click.option(
    "--trained",
    is_flag=True,
    help="Also measure the study's trained models, side by side with the estimates.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Table file (.json keeps the fingerprint); default "
    "studies/throughput/<study>-<device>-<dtype>.json",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def measure(
    study_path: str,
    device: str | None,
    dtype: str | None,
    batch_rows: int | None,
    passes: int | None,
    trained: bool,
    out_path: str | None,
    as_json: bool,
) -> None:
    """Measure the throughput table of a study's grid (training-free estimates)."""
    from autoprumux.cli.outputs import format_measurement
    from autoprumux.core.study import load_study
    from autoprumux.measurement import run_measure

    study = load_study(study_path)
    given = study.throughput
    settings = dataclasses.replace(
        given,
        device=given.device if device is None else device,
        dtype=given.dtype if dtype is None else dtype,
        batch_rows=given.batch_rows if batch_rows is None else batch_rows,
        passes=given.passes if passes is None else passes,
    )
    with _ProgressBar() as bar:
        report = run_measure(study, settings, trained, out_path, progress=bar.update)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(format_measurement(report))


@cli.command()
@click.option(
    "--task",
    default=None,
    help="GLUE task (sst2, mnli, qnli, qqp) [default: the --study file's task, else sst2].",
)
@click.option(
    "--study",
    "study_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Study file; default studies/<task>-tiny.toml without a GPU, "
    "studies/<task>.toml with one.",
)
@click.option("--budget", type=float, help="Accuracy points below (1, 0) that may be lost.")
@click.option(
    "--relative-budget", type=float, help="Fraction of the (1, 0) accuracy that may be lost."
)
@click.option("--min-accuracy", type=float, help="Lowest acceptable accuracy.")
@click.option(
    "--gpus",
    type=click.FloatRange(min=0),
    default=None,
    help="GPUs for the whole search (default: 0 without CUDA, else all visible; with "
    "--address, the cluster's); with --gpus-per-trial it sets the concurrency.",
)
@click.option(
    "--gpus-per-trial",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="A trial's share of GPUs (> 0 with --gpus above 0).",
)
@click.option(
    "--cpus-per-trial",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Default: 1 with GPUs, else all cores (with --address, the smallest node's).",
)
@click.option(
    "--executor",
    type=click.Choice(["ray", "local"]),
    default="ray",
    show_default=True,
    help="ray: each training is a Ray Tune trial (a local Ray, or the cluster at --address); "
    "local: threads of this process, without Ray.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where trials train: auto (each Ray trial's own GPU when it has one), cpu, cuda, or "
    "cuda:INDEX with --executor local.",
)
@click.option(
    "--address",
    default=None,
    help="Join this Ray cluster (HOST:PORT of its head) instead of starting one; its token "
    "from RAY_AUTH_TOKEN or ~/.ray/auth_token. Every node must see the study's folder at the "
    "same path.",
)
@click.option(
    "--storage",
    default=None,
    help="SQLAlchemy URL of the Optuna storage; default the study's [storage] url, else "
    "<study>.db (SQLite) beside the study file. Shown with its password masked.",
)
@click.option(
    "--trainer",
    "trainer_spec",
    default="study",
    show_default=True,
    help="'study' trains for real; 'replay:FILE' answers from a results table "
    "('replay:FILE?delay=SECONDS': each answer takes that long, for demos and tests).",
)
@click.option(
    "--throughput",
    "throughput_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Throughput table; default studies/throughput/<study>-<device>-<dtype>.json, "
    "measured first if missing (replay: the replayed table's throughputs).",
)
@click.option(
    "--max-trials",
    type=click.IntRange(min=1),
    default=None,
    help="Stop starting trainings once the study holds this many (all runs together, running "
    "ones included; free by-products do not count). Default: no cap.",
)
@click.option(
    "--max-gpu-hours",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop starting trainings once the study's trainings used this many GPU-hours (wall "
    "time x GPUs per trial, all runs together). Default: no cap.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Tries of a failing point after its first: it is given up after 1 + this many failures.",
)
@click.option(
    "--top",
    "top_k",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="How many recommendations to print (the HTML report always shows the top 3).",
)
@click.option(
    "--no-early-stop",
    "no_early_stop",
    is_flag=True,
    help="Train every point to its end, even when its dev accuracy shows it cannot reach the "
    "threshold (by default such a training stops, recorded as a miss with the evidence).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document at the end.")
def search(
    task: str,
    study_path: str | None,
    budget: float | None,
    relative_budget: float | None,
    min_accuracy: float | None,
    gpus: float | None,
    gpus_per_trial: float,
    cpus_per_trial: float | None,
    executor: str,
    device: str,
    address: str | None,
    storage: str | None,
    trainer_spec: str,
    throughput_path: str | None,
    max_trials: int | None,
    max_gpu_hours: float | None,
    max_retries: int,
    top_k: int,
    no_early_stop: bool,
    as_json: bool,
) -> None:
    """Find the fastest (N, s) within the budget, training as few models as possible."""
    from autoprumux.cli.search_command import SearchRequest, run_search_command

    chosen = _budget(budget, relative_budget, min_accuracy)
    request = SearchRequest(
        task=task,
        study_path=study_path,
        budget=chosen,
        gpus=gpus,
        gpus_per_trial=gpus_per_trial,
        cpus_per_trial=cpus_per_trial,
        executor=executor,
        address=address,
        storage=storage,
        trainer_spec=trainer_spec,
        throughput_path=throughput_path,
        max_trials=max_trials,
        max_gpu_hours=max_gpu_hours,
        max_retries=max_retries,
        top_k=top_k,
        device=device,
        early_stop=not no_early_stop,
    )
    summary = run_search_command(request, echo=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(summary.document, indent=1))
    else:
        click.echo(summary.text)


@cli.command()
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A results table (.csv/.json/.parquet) ...",
)
@click.option(
    "--storage", default=None, help="... or the Optuna storage of a search, with --study-name."
)
@click.option("--study-name", default=None, help="The study's name in --storage.")
@click.option("--task", default=None, help="Task to use when the results hold several.")
@click.option(
    "--throughput",
    "throughput_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Throughput table (default: the measured throughputs).",
)
@click.option(
    "--budget",
    type=float,
    help="The budget to highlight: accuracy points below (1, 0) that may be lost (default "
    "0.03 when no budget option is given).",
)
@click.option(
    "--relative-budget",
    type=float,
    help="... or as the fraction of the (1, 0) accuracy that may be lost.",
)
@click.option(
    "--min-accuracy", type=float, help="... or as the lowest acceptable accuracy (a fraction)."
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Default reports/<name>.html",
)
def report(
    results_path: str | None,
    storage: str | None,
    study_name: str | None,
    task: str | None,
    throughput_path: str | None,
    budget: float | None,
    relative_budget: float | None,
    min_accuracy: float | None,
    out_path: str | None,
) -> None:
    """Write the HTML report: Pareto frontiers, top-3 per budget, surrogate quality, cost."""
    from autoprumux.files.atomic import check_output
    from autoprumux.report import sources as report_command
    from autoprumux.report.html import write_report
    from autoprumux.report.sources import default_report_path

    if budget is None and relative_budget is None and min_accuracy is None:
        budget = 0.03
    chosen = _budget(budget, relative_budget, min_accuracy)
    # the output is checked before anything is read; the title is the one the data will have
    if results_path and not storage:
        out = check_output(out_path or default_report_path(Path(results_path).stem), "--out")
        data = report_command.from_results(results_path, task, chosen, throughput_path)
    elif storage and study_name and not results_path:
        out = check_output(out_path or default_report_path(study_name), "--out")
        from autoprumux.loop.storage_check import check_existing_storage  # SQLAlchemy, Optuna

        check_existing_storage(storage)  # before Optuna opens (and writes to) it
        data = report_command.from_storage(storage, study_name, chosen, throughput_path)
    else:
        raise FieldError(
            "--results", "give --results FILE, or --storage URL with --study-name NAME"
        )
    click.echo(str(write_report(data, out)))


@cli.command()
@click.option(
    "--storage",
    default=None,
    help="SQLAlchemy URL of the storage (default: --study's, else the sst2 study's: "
    "studies/sst2-tiny.toml without a GPU, studies/sst2.toml with one).",
)
@click.option(
    "--study",
    "study_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Take the storage from this study file.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port to serve on, on 127.0.0.1; refused if another server holds it.",
)
def dashboard(storage: str | None, study_path: str | None, port: int) -> None:
    """Serve optuna-dashboard for the studies in a storage, on 127.0.0.1."""
    from autoprumux.core.study import load_study
    from autoprumux.loop.masking import masked_url
    from autoprumux.loop.storage_check import check_existing_storage, connect_url

    if storage is None:
        from autoprumux.cli.search_command import cuda_available, default_study_path

        path = study_path or default_study_path("sst2", cuda_available())
        storage = load_study(path).storage_url
    _check_port(port)
    check_existing_storage(storage)  # a typo is not a new storage: nothing is created
    import optuna_dashboard

    click.echo(
        f"optuna-dashboard on http://127.0.0.1:{port} for {masked_url(storage)} (Ctrl-C stops it)",
        err=True,
    )
    # the real URL connects, a plain postgresql:// one through the installed driver
    optuna_dashboard.run_server(connect_url(storage), host="127.0.0.1", port=port)


def _check_port(port: int) -> None:
    """Refuse a port something already listens on, in one line, before the server starts."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as the server will: a port left in TIME_WAIT by a stopped dashboard is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            raise FieldError(
                "--port",
                f"cannot listen on 127.0.0.1:{port} ({err.strerror}: another server holds "
                "it?); give another --port",
            ) from None


@cli.command()
@click.option(
    "--study",
    "study_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Study file (TOML); its [model], [warmup] and [training] settings apply (not with "
    "[model] multiplexed_name_or_path: those checkpoints are warmed up already).",
)
@click.option("--n", "n", required=True, type=click.IntRange(min=2), help="Multiplexing width N.")
@_device_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (n, token_recovery, artifact_path, reused, seconds).",
)
def warmup(study_path: str, n: int, device: str, as_json: bool) -> None:
    """Build (or reuse) the retrieval warm-up of width N ahead of a search."""
    from autoprumux.core.study import load_study
    from trainers.trial.run import warm_up

    study = load_study(study_path)
    with _ProgressBar() as bar:
        result = warm_up(study, n, progress=bar.update, device=device)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(
            f"warm-up N={n}: token recovery {result['token_recovery']:.3f} "
            f"({'reused' if result['reused'] else 'trained'}) -> {result['artifact_path']}"
        )


def _model_option(help: str) -> Callable[[_Command], _Command]:  # noqa: A002 - click's name
    return click.option("--model", "model_path", required=True, type=click.Path(), help=help)


@cli.command()
@_model_option("A model folder (a trial's), or an .onnx / .pt file `autoprumux export` wrote.")
@click.option(
    "--input",
    "input_path",
    default="-",
    show_default=True,
    help="One input per line (pair tasks: FIRST<TAB>SECOND), or a .tsv/.csv table; -: stdin.",
)
@click.option(
    "--column",
    default=None,
    help="The table's text column (pair tasks: FIRST,SECOND); default: the task's GLUE columns.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Groups of N inputs per forward pass.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda or cuda:INDEX: where the model runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def classify(
    model_path: str, input_path: str, column: str | None, batch: int, device: str, as_json: bool
) -> None:
    """Classify text with a trained model: label and probabilities per input, in input order."""
    from autoprumux.cli.classify_io import InputSpec, accuracy, prediction_rows, read_inputs
    from trainers.deploy.inference import load_text_classifier

    model = load_text_classifier(model_path, device)
    info = model.info
    spec = InputSpec(
        text_columns=info.text_columns, label_column=info.label_column, labels=info.labels
    )
    inputs = read_inputs(input_path, spec, column)
    with _ProgressBar() as bar:
        large = len(inputs.texts) >= 2000  # a bar only where it has something to show

        def update(progress: Progress) -> None:
            if large:
                bar.update(progress)

        done = model.classify(inputs.texts, batch, progress=update)
    predicted = [p.label for p in done.predictions]
    right = accuracy(inputs, predicted, info.labels)
    summary = {
        "model": model.source,
        "n": info.n,
        "sparsity": info.sparsity,
        "input": inputs.source,
        "inputs": len(inputs.texts),
        "blank_lines": inputs.blank_lines,
        "truncated": done.truncated,
        "max_length": info.max_length,
        "seconds": done.seconds,
        "model_seconds": done.model_seconds,
        "inputs_per_s": done.per_second,
        "accuracy": right,
        "label_column": inputs.label_column,
    }
    if as_json:
        predictions = [
            {"line": line, "label": p.label, "probabilities": p.probabilities}
            for line, p in zip(inputs.lines, done.predictions, strict=True)
        ]
        click.echo(json.dumps({**summary, "predictions": predictions}, indent=1))
        return
    click.echo("\n".join(prediction_rows(inputs, list(done.predictions), info.labels)))
    notes = [f"{done.truncated} truncated to {info.max_length} tokens"]
    if inputs.blank_lines:
        notes.append(f"{inputs.blank_lines} blank line(s) skipped")
    if right is not None:
        notes.append(f"accuracy {right:.4f} against column {inputs.label_column!r}")
    click.echo(
        f"classified {len(inputs.texts)} inputs of {inputs.source} with {info.point} "
        f"in {done.seconds:.2f} s: {done.per_second:,.1f} inputs/s (forward passes "
        f"{done.model_seconds:.2f} s, {batch} groups of {info.n} a pass); " + "; ".join(notes),
        err=True,
    )


@cli.command()
@_model_option("A model folder (a trial's).")
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["onnx", "torchscript"]),
    help="onnx (opset 18, needs the export extra) or torchscript.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The file to write (.onnx or .pt).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def export(model_path: str, fmt: str, out_path: str, as_json: bool) -> None:
    """Write a model folder as one ONNX or TorchScript file that `classify` runs alone."""
    from trainers.deploy.export import ExportFormat, export_model

    done = export_model(model_path, ExportFormat(fmt), out_path)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(done.path),
                    "format": done.format.value,
                    "bytes": done.bytes,
                    "max_abs_diff": done.max_abs_diff,
                    "checked_groups": list(done.checked_groups),
                    "seconds": done.seconds,
                },
                indent=1,
            )
        )
        return
    runtime = "ONNX Runtime" if done.format.value == "onnx" else "TorchScript"
    click.echo(
        f"exported {model_path} -> {done.path} ({done.format.value}, {done.bytes / 1e6:.1f} MB, "
        f"{done.seconds:.1f} s); {runtime} logits within {done.max_abs_diff:.1e} of PyTorch's "
        f"on {' and '.join(map(str, done.checked_groups))} group(s)"
    )


class _ProgressBar:
    """One tqdm bar per training phase, on stderr (stdout stays clean for --json)."""

    def __enter__(self) -> _ProgressBar:
        self.bar: tqdm | None = None
        self.phase: str | None = None
        return self

    def update(self, progress: Progress) -> None:
        from tqdm import tqdm

        if progress.phase != self.phase:
            if self.bar is not None:
                self.bar.close()
            self.phase = progress.phase
            self.bar = tqdm(
                total=progress.total,
                desc=progress.phase,
                file=sys.stderr,
                mininterval=1.0,
                unit="pass" if progress.loss is None else "step",
                dynamic_ncols=True,
            )
        assert self.bar is not None  # made above, for this phase
        self.bar.update(progress.step - self.bar.n)
        if progress.loss is not None:
            self.bar.set_postfix(loss=f"{progress.loss:.4f}", refresh=False)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _budget(absolute: float | None, relative: float | None, minimum: float | None) -> Budget:
    given = [
        (kind, value)
        for kind, value in (
            (BudgetKind.ABSOLUTE, absolute),
            (BudgetKind.RELATIVE, relative),
            (BudgetKind.MIN_ACCURACY, minimum),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise FieldError(
            "--budget", "give exactly one of --budget, --relative-budget, --min-accuracy"
        )
    kind, value = given[0]
    try:
        return Budget(kind, value)
    except FieldError as err:
        raise FieldError("--" + err.field.replace("_", "-"), err.message) from None


def _grid(spec: str, option: str) -> Grid:
    if spec.endswith(".toml"):
        from autoprumux.core.study import load_study

        return load_study(spec).grid.grid
    return parse_grid_spec(spec, option)


def _load(
    results_path: str, task: str | None, throughput_path: str | None, throughput_task: str | None
) -> tuple[ResultsTable, str, ThroughputTable]:
    from autoprumux.files.results_io import read_results, read_throughput_table

    results = read_results(results_path)
    task = results.resolve_task(task)
    if throughput_path:
        table = read_throughput_table(throughput_path, throughput_task)
    else:
        table = ThroughputTable.from_results(results, task)
    return results, task, table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        result = cli.main(args=argv, prog_name="autoprumux", standalone_mode=False)
    except AutoPruMuxError as err:
        return _fail(str(err))
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as err:
        return _fail(err.format_message().splitlines()[0])
    except (click.Abort, KeyboardInterrupt):
        print("autoprumux: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def _fail(message: str) -> int:
    print(f"autoprumux: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
