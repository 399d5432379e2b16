"""The options several commands share, each declared once with one help text, and the
conversions of their values (a budget, a grid) that every command does the same way.

A shared option is a decorator (``@json_option()``) or, where the commands word it for their
own purpose, a factory taking that wording (``@device_option("the trial trains")``); either
way the option's name, type and default are written here only, so a command cannot drift from
the others (the budget trio used to be declared three times with three helps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import FieldError
from autoprumux.core.grid import Grid, parse_grid_spec
from autoprumux.core.recommender import Objective

# a command's function, or the command click made of it, that an option decorates
Command = TypeVar("Command", bound=Callable[..., Any])

# as trainers.runtime.device.DEVICE_CHOICES spells them (not imported: it would import torch)
DEVICE_SPELLINGS = (
    "auto (the current CUDA device when this machine has one, else the CPU), cpu, cuda (the "
    "current CUDA device) or cuda:INDEX"
)


def options(*declared: Callable[[Command], Command]) -> Callable[[Command], Command]:
    """Several options as one decorator, listed in ``--help`` in the order given."""

    def decorate(func: Command) -> Command:
        for option in reversed(declared):
            func = option(func)
        return func

    return decorate


def json_option(what: str = "one JSON document") -> Callable[[Command], Command]:
    """``--json``: stdout holds only the document (progress and notes go to stderr)."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what}.")


def device_option(
    where: str, default: str | None = "auto", note: str = "", spellings: str = DEVICE_SPELLINGS
) -> Callable[[Command], Command]:
    """``--device``: ``where`` says what runs there ("the trial trains"); ``default`` None
    means the study's own setting, which ``note`` then names; ``spellings`` for a command
    whose ``auto`` means something else (a Ray trial's own GPU)."""
    return click.option(
        "--device",
        default=default,
        show_default=default is not None,
        help=f"Where {where}: {spellings}.{' ' + note if note else ''}",
    )


def study_option(help: str, required: bool = True) -> Callable[[Command], Command]:  # noqa: A002
    """``--study FILE``: a study TOML; its path stays a string until the command loads it."""
    return click.option(
        "--study",
        "study_path",
        required=required,  # no default=None: click >= 8.3 takes it as given, never missing
        type=click.Path(dir_okay=False),
        help=help,
    )


def storage_option(help: str) -> Callable[[Command], Command]:  # noqa: A002 - click's name
    """``--storage URL``: an SQLAlchemy URL of an Optuna storage (checked when it is used)."""
    return click.option("--storage", default=None, help=help)


def task_option(
    help: str = "Task to use when the results hold several.",
) -> Callable[[Command], Command]:  # noqa: A002
    return click.option("--task", default=None, help=help)


def throughput_option(help: str) -> Callable[[Command], Command]:  # noqa: A002 - click's name
    """``--throughput FILE``: the throughput table a command ranks by."""
    return click.option(
        "--throughput",
        "throughput_path",
        type=click.Path(dir_okay=False),
        default=None,
        help=help,
    )


def top_option(help: str) -> Callable[[Command], Command]:  # noqa: A002 - click's name
    """``--top K``: how many ranked points (predict, search) or the k of top-k (evaluate)."""
    return click.option(
        "--top", "top_k", type=click.IntRange(min=1), default=3, show_default=True, help=help
    )


def out_option(
    help: str,  # noqa: A002 - click's name
    required: bool = False,
    folder_ok: bool = False,
) -> Callable[[Command], Command]:
    """``--out FILE``: where a command writes its file (checked before the work starts);
    ``folder_ok``: the command checks an existing folder itself (export's checkpoint folder)."""
    return click.option(
        "--out",
        "out_path",
        required=required,  # no default=None (see study_option)
        type=click.Path(dir_okay=folder_ok),
        callback=_not_empty,
        help=help,
    )


def _not_empty(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    """An empty ``--out ''`` (a shell variable that was never set) is refused: taken for the
    default, it would replace the default file."""
    if value is not None and not value.strip():
        raise click.BadParameter("an empty path; leave --out out for the default", context)
    return value


def model_option(help: str) -> Callable[[Command], Command]:  # noqa: A002 - click's name
    """``--model PATH``: a model folder, or a file ``autoprumux export`` wrote."""
    return click.option("--model", "model_path", required=True, type=click.Path(), help=help)


def budget_options(
    default: float | None = None, default_text: str | None = None
) -> Callable[[Command], Command]:
    """The three ways to state an accuracy budget, of which a command takes exactly one
    (:func:`budget_from`); ``default``: the --budget used when none of the three is given,
    ``default_text`` what --help says of it where that depends on other options."""
    when_none = (
        f" Default when no budget option is given: {default_text or f'{default:g}'}."
        if default is not None
        else ""
    )
    return options(
        click.option(
            "--budget",
            type=float,
            help="Accuracy points below the (1, 0) accuracy that may be lost (0.03: three "
            "points); give one of --budget, --relative-budget, --min-accuracy." + when_none,
        ),
        click.option(
            "--relative-budget",
            type=float,
            help="Fraction of the (1, 0) accuracy that may be lost (0.03: 3% of it).",
        ),
        click.option(
            "--min-accuracy",
            type=float,
            help="Lowest acceptable accuracy, a fraction (0.88).",
        ),
    )


def budget_from(
    absolute: float | None,
    relative: float | None,
    minimum: float | None,
    default: float | None = None,
) -> Budget:
    """The one budget :func:`budget_options` stated; a value outside its range is refused
    naming the option it came from, not the core's field name."""
    if absolute is None and relative is None and minimum is None and default is not None:
        absolute = default
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
        raise err.as_option() from None


def grid_from(spec: str, option: str) -> Grid:
    """A grid option's value: ``N,N,...:s,s,...`` or a study file whose [grid] it takes."""
    if spec.endswith(".toml"):
        from autoprumux.core.study import load_study

        return load_study(spec).grid.grid
    return parse_grid_spec(spec, option)


def objective_option(default_text: str | None = None) -> Callable[[Command], Command]:
    """``--objective``: what "fastest" ranks by; its value is an ``Objective``.
    ``default_text``: what --help says of the default where that depends on other options."""
    return click.option(
        "--objective",
        type=click.Choice([o.value for o in Objective]),
        default=Objective.THROUGHPUT.value,
        show_default=default_text is None,
        callback=lambda _ctx, _param, value: Objective(value),
        help="throughput: examples per second at full batches (the paper's); latency: the "
        "seconds of one request at batch 1 (a multiplexed model then runs with N - 1 empty "
        "slots), as the throughput table measured it."
        + (f" Default: {default_text}." if default_text else ""),
    )
