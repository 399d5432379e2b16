"""``autoprumux search`` and ``autoprumux dashboard``: the options of a search and of the view
of its storage. The search itself (trainer, executor, the loop, the report) is
:class:`~autoprumux.session.search_session.SearchSession`'s; this module parses and prints."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from autoprumux.cli.options import (
    budget_from,
    budget_options,
    device_option,
    json_option,
    objective_option,
    storage_option,
    study_option,
    throughput_option,
    top_option,
)
from autoprumux.core.errors import FieldError
from autoprumux.core.tasks import TASKS

if TYPE_CHECKING:  # the session brings the search loop: imported when a search runs
    from autoprumux.session.dry_run import SearchForecast
    from autoprumux.session.search_request import SearchRequest
    from autoprumux.session.summary import SearchResult


@click.command()
@click.option(
    "--task",
    default=None,
    help=f"GLUE task ({', '.join(TASKS)}) [default: the --study file's task, else sst2]. "
    "Without a GPU and --study, a task needs a CPU study (studies/<task>-tiny.toml; shipped "
    "for sst2 only).",
)
@study_option(
    "Study file; default studies/<task>-tiny.toml without a GPU, studies/<task>.toml with one.",
    required=False,
)
@budget_options()
@click.option(
    "--gpus",
    type=click.FloatRange(min=0),
    default=None,
    help="GPUs for the whole search; with --gpus-per-trial it sets the concurrency. Default: "
    "0 without CUDA; on Ray every visible GPU (with --address, the cluster's); with "
    "--executor local every GPU of this machine (trials spread over cuda:0..k-1), or the one "
    "--device cuda:i names.",
)
@click.option(
    "--gpus-per-trial",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="A trial's share of one GPU, in [0.01, 1] (0.25: four trials a GPU, each capped to a "
    "quarter of its memory); unused, and said so, where the trials run on the CPU.",
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
@device_option(
    "trials train",
    spellings="auto (each Ray trial's own GPU when it has one, else the CPU), cpu, cuda, or "
    "cuda:INDEX with --executor local",
)
@click.option(
    "--address",
    default=None,
    help="Join this Ray cluster (HOST:PORT of its head) instead of starting one; its token "
    "from RAY_AUTH_TOKEN or ~/.ray/auth_token. Every node must see the study's folder at the "
    "same path. Default: RAY_ADDRESS, else the cluster a `ray start` on this machine started.",
)
@storage_option(
    "SQLAlchemy URL of the Optuna storage; default the study's [storage] url, else "
    "<study>.db (SQLite) beside the study file. Shown with its password masked."
)
@click.option(
    "--trainer",
    "trainer_spec",
    default="study",
    show_default=True,
    help="'study' trains for real; 'replay:FILE' answers from a results table "
    "('replay:FILE?delay=SECONDS': each answer takes that long, for demos and tests).",
)
@throughput_option(
    "Throughput table; default studies/throughput/<study>-<device>-<dtype>.json, "
    "measured first if missing (replay: the replayed table's throughputs)."
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
    "time x GPUs per trial, all runs together). Refused for a search whose trials get no GPU "
    "(a CPU trial uses none): cap its time with --timeout. Default: no cap.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Start no training once this many seconds of wall-clock time have passed since the "
    "search opened its study (after Ray started and the throughput table was ready); the "
    "running ones finish, as with Optuna's optimize(timeout=). Default: no limit.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Tries of a failing point after its first: it is given up after 1 + this many failures.",
)
@top_option("How many recommendations to print (the HTML report always shows the top 3).")
@objective_option()
@click.option(
    "--no-early-stop",
    "no_early_stop",
    is_flag=True,
    help="Train every point to its end, even when its dev accuracy shows it cannot reach the "
    "threshold (by default such a training stops, recorded as a miss with the evidence).",
)
@click.option(
    "--dry-run",
    "dry_run",
    is_flag=True,
    help="Make every check, then print the plan instead of searching: the points it trains "
    "first, each one's predicted cost from the search's cost model (GPU-hours for GPU trials), "
    "and the whole grid's cost as the upper bound. Trains and writes nothing.",
)
@json_option("one JSON document at the end (with --dry-run: the plan)")
def search(
    budget: float | None,
    relative_budget: float | None,
    min_accuracy: float | None,
    no_early_stop: bool,
    dry_run: bool,
    as_json: bool,
    **fields: Any,
) -> int:
    """Find the fastest (N, s) within the budget, training as few models as possible."""
    from autoprumux.session.search_request import SearchRequest

    # every other option is the SearchRequest field of its name (task, study_path, gpus, ...,
    # timeout_s, top_k), so an option is named once here and once in the request
    chosen = budget_from(budget, relative_budget, min_accuracy)
    request = SearchRequest(budget=chosen, early_stop=not no_early_stop, **fields)
    if dry_run:
        from autoprumux.session.dry_run import forecast_text

        forecast = run_dry_run_command(request, echo=lambda line: click.echo(line, err=True))
        click.echo(json.dumps(forecast.to_dict(), indent=1) if as_json else forecast_text(forecast))
        return 0
    # progress lines on stderr: stdout holds only the answer (or the --json document)
    result = run_search_command(request, echo=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(result.document, indent=1))
    else:
        click.echo(result.text)
    from autoprumux.loop.driver import StopReason

    # a search that cannot answer at all failed, as a failed `train` does: exit code 1
    return 1 if result.stop_reason is StopReason.BASELINE_FAILED else 0


def run_search_command(request: SearchRequest, echo: Callable[[str], None]) -> SearchResult:
    """The search of ``request``, the task's default study found first when it names none
    (a task without a CPU study refused first on a machine without a GPU); its progress lines
    to ``echo``."""
    from autoprumux.cli.default_study import check_default_study, find_default_study
    from autoprumux.session.search_session import SearchSession

    if not request.study_path:
        if request.task is not None:
            check_default_study(request.task, request.gpus)
        path = find_default_study(request.task, request.gpus, echo)
        request = dataclasses.replace(request, study_path=str(path))
    return SearchSession(request, echo).run()


def run_dry_run_command(request: SearchRequest, echo: Callable[[str], None]) -> SearchForecast:
    """The plan of ``request``'s search (every check of :meth:`SearchSession.plan`, then
    :meth:`SearchSession.forecast`), its default study found as the search finds it but never
    copied: an installed wheel's studies are copied into ./studies only by a real search."""
    from autoprumux.cli.default_study import check_default_study, find_default_study
    from autoprumux.session.search_session import SearchSession

    if not request.study_path:
        if request.task is not None:
            check_default_study(request.task, request.gpus)
        path = find_default_study(request.task, request.gpus, echo, copy=False)
        request = dataclasses.replace(request, study_path=str(path))
    session = SearchSession(request, echo)
    return session.forecast(session.plan())


@click.command()
@storage_option(
    "SQLAlchemy URL of the storage (default: --study's, else the sst2 study's: "
    "studies/sst2-tiny.toml without a GPU, studies/sst2.toml with one)."
)
@study_option("Take the storage from this study file.", required=False)
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
        from autoprumux.cli.default_study import cuda_available, default_study_path

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
