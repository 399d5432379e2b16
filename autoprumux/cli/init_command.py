"""``autoprumux init``: from a data file to a study file, and the plan of its search.

The work is :mod:`autoprumux.session.study_writer`'s; this module parses the options, picks the
shipped study for the machine (the template), prints what was found, and prints the plan by
running ``autoprumux search --dry-run`` on the study: the same plan, from the same code. The
plan runs on the study staged beside its file, before it is moved into place: a study the
search's checks refuse is one line, exit code 2, and no file written.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import click

from autoprumux.cli.options import budget_from, budget_options, out_option
from autoprumux.cli.search_commands import search
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.metrics import Metric
from autoprumux.embedded import checkout_studies, packaged_studies

DEFAULT_BUDGET = 0.03  # the plan's budget when none is given: three points of the metric
# the search option (its parameter's name) of each kind of budget
BUDGET_PARAMS = {
    BudgetKind.ABSOLUTE: "budget",
    BudgetKind.RELATIVE: "relative_budget",
    BudgetKind.MIN_ACCURACY: "min_accuracy",
}


@click.command()
@click.option(
    "--train",
    required=True,
    type=click.Path(dir_okay=False),
    help="The training file: CSV, TSV, JSON Lines or Parquet (.gz, .xz or .bz2 too; .zst with "
    "the zstandard package).",
)
@click.option(
    "--dev",
    default="",
    type=click.Path(dir_okay=False),
    help="The dev file the search chooses on. Default: carved from train (10%, at most 5,000 "
    "rows, stratified by label).",
)
@click.option(
    "--test",
    default="",
    type=click.Path(dir_okay=False),
    help="A held-out test file, read once after the search has answered. Default: none.",
)
@click.option("--text", default="", help="The text column. Default: the longest text column.")
@click.option(
    "--text-pair",
    default="",
    help="The second text's column, for a pair task. Default: none, unless --text is not given "
    "and two text columns are named as a pair (question1/question2, sentence1/sentence2, "
    "premise/hypothesis, question/sentence, text_a/text_b, text1/text2).",
)
@click.option(
    "--label",
    default="",
    help="The label column. Default: a column of 2 to 50 distinct values and at least 5 times "
    "as many rows as values, a name such as label, class, category, sentiment, target or "
    "intent first.",
)
@click.option(
    "--model",
    default="",
    help="The pretrained model: a hub id, a local folder or package:MODULE/DIR. Default: the "
    "shipped study's (a 2-layer all-MiniLM-L6-v2 on a CPU, bert-base-uncased with a GPU).",
)
@click.option(
    "--new-head",
    is_flag=True,
    help="Train a new classification head on --model, a classifier fine-tuned for other labels "
    "([model] fine_tuned = false). Default: a fine-tuned classifier is the (1, 0) model as is, "
    "its labels matched by name.",
)
@click.option(
    "--metric",
    type=click.Choice([m.value for m in Metric]),
    default=Metric.ACCURACY.value,
    show_default=True,
    help="What the budget and every figure are in.",
)
@click.option(
    "--positive-label",
    default="",
    help="With --metric f1: the label whose F1 counts. Default: the second of two labels.",
)
@click.option(
    "--name",
    default="",
    help="The study's name (it names <name>.db, reports/<name>.html, artifacts/<name>/). "
    "Default: the --out file's stem.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="The machine the study is for: cpu (studies/sst2-tiny.toml's grid and recipe), cuda "
    "(studies/sst2.toml's: the paper's grid), auto (cuda when this machine has a GPU).",
)
@budget_options(default=DEFAULT_BUDGET)
@out_option("The study file to write; refused if it exists, unless --force.", required=True)
@click.option("--force", is_flag=True, help="Overwrite --out.")
def init(
    out_path: str,
    device: str,
    budget: float | None,
    relative_budget: float | None,
    min_accuracy: float | None,
    **options: str | bool,
) -> None:
    """Write a study file for your data: columns, labels, token lengths, grid and recipe."""
    from autoprumux.cli.default_study import cuda_available
    from autoprumux.session.study_writer import InitRequest, draft_study, staged_study

    chosen = budget_from(budget, relative_budget, min_accuracy, default=DEFAULT_BUDGET)
    gpu_here = cuda_available()
    gpu = device == "cuda" or (device == "auto" and gpu_here)
    # the search's trials on the CPU where the study is a CPU one but this machine has a GPU
    cpu_only = ["--device", "cpu", "--gpus", "0"] if gpu_here and not gpu else []
    param = BUDGET_PARAMS[chosen.kind]
    budget_args = ["--" + param.replace("_", "-"), f"{chosen.value:g}"]
    command = ["autoprumux", "search", "--study", out_path, *budget_args, *cpu_only]
    request = InitRequest(
        out=Path(out_path),
        template=template_study(gpu),
        gpu=gpu,
        search_command=shlex.join(command),
        **options,  # type: ignore[arg-type]
    )
    draft = draft_study(request)
    for line in draft.lines:
        click.echo(line)
    with staged_study(draft, force=request.force) as staged:
        if gpu and not gpu_here:
            plan = (
                f"no GPU here: run `{shlex.join([*command[:2], '--dry-run', *command[2:]])}` on "
                "the GPU machine for the plan"
            )
        else:
            plan = dry_run_text(staged, draft.path, chosen, cpu_only=bool(cpu_only))
    click.echo(f"wrote {out_path}")
    click.echo("")
    click.echo(plan)
    click.echo("")
    click.echo(f"search it: {shlex.join(command)}")


def dry_run_text(staged: Path, out: Path, budget: Budget, cpu_only: bool) -> str:
    """The plan ``autoprumux search --dry-run`` prints for the staged study, every check of the
    search made: printed once the study is in place, after ``wrote``. A refusal names ``out``,
    the file the user asked for, not the staged one."""
    param = BUDGET_PARAMS[budget.kind]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            click.get_current_context().invoke(
                search,
                study_path=str(staged),
                **{
                    name: budget.value if name == param else None for name in BUDGET_PARAMS.values()
                },
                dry_run=True,
                **({"device": "cpu", "gpus": 0.0} if cpu_only else {}),
            )
    except AutoPruMuxError as err:
        text = STORAGE_ADVICE.sub("(--name)", str(err))
        if str(staged) not in text and text == str(err):
            raise
        raise AutoPruMuxError(text.replace(str(staged), str(out))) from None
    return printed.getvalue().removesuffix("\n")


# the storage's refusal of a study name its database holds for another study, in the study
# file's words ("use another study name ([study] name) or another --storage"): init names the
# study with --name, and has no --storage (the database is <name>.db beside the study)
STORAGE_ADVICE = re.compile(r"\(\[study\] name\) or (another )?--storage")


def template_study(gpu: bool) -> Path:
    """The shipped study ``init`` starts from: ``sst2-tiny.toml`` for a CPU, ``sst2.toml`` for
    a GPU, from the checkout or the installed wheel (never a local copy edited since)."""
    name = "sst2.toml" if gpu else "sst2-tiny.toml"
    for folder in (checkout_studies(), packaged_studies()):
        if folder is not None and (folder / name).is_file():
            return folder / name
    raise FieldError("--device", f"the shipped study {name} is missing from this installation")
