"""The commands that run the training engine on one study, outside a search: ``train`` (one
point), ``warmup`` (a width's retrieval warm-up, ahead of a search) and ``measure`` (the
throughput table of the study's grid). Each loads the study first, so a bad file or option is
refused before torch is imported."""

from __future__ import annotations

import dataclasses
import json

import click

from autoprumux.cli.options import device_option, json_option, out_option, study_option
from autoprumux.cli.progress_bar import ProgressBar
from autoprumux.core.errors import FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.study import MAX_BATCH_ROWS


@click.command()
@study_option("Study file (TOML).")
@click.option("--n", "n", required=True, type=int, help="Multiplexing width N (1: none).")
@click.option("--sparsity", required=True, type=float, help="Target sparsity s in [0, 1).")
@click.option("--seed", type=int, default=None, help="Seed (default: the study's).")
@device_option("the trial trains")
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    help="CPU threads of the trial's kernels; 0: every core. A search uses its CPUs per trial.",
)
@json_option("the result as one JSON document")
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
    except FieldError as err:  # the point's field is n or sparsity: name the option
        raise err.as_option() from None
    if point not in study.grid.grid:  # allowed (a point between grid points), but said
        click.echo(f"note: {point} is not in the study grid {study.grid.grid.spec()}", err=True)
    from trainers.trial.run import TrialSpec, run_trial

    with ProgressBar() as bar:
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

        scoring = study.study
        click.echo(format_trial(result, scoring.metric.label(scoring.positive_label)))
    # a failed training is a result, printed in full, but the exit code tells a script
    return 0 if result.reason is None else 1


@click.command()
@study_option(
    "Study file (TOML); its [model], [warmup] and [training] settings apply (not with "
    "[model] multiplexed_name_or_path: those checkpoints are warmed up already)."
)
@click.option("--n", "n", required=True, type=click.IntRange(min=2), help="Multiplexing width N.")
@device_option("the warm-up trains")
@json_option("one JSON document (n, token_recovery, artifact_path, reused, seconds)")
def warmup(study_path: str, n: int, device: str, as_json: bool) -> None:
    """Build (or reuse) the retrieval warm-up of width N ahead of a search."""
    from autoprumux.core.study import load_study
    from trainers.trial.run import warm_up

    study = load_study(study_path)
    with ProgressBar() as bar:
        result = warm_up(study, n, progress=bar.update, device=device)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(
            f"warm-up N={n}: token recovery {result['token_recovery']:.3f} "
            f"({'reused' if result['reused'] else 'trained'}) -> {result['artifact_path']}"
        )


@click.command()
@study_option("Study file (TOML); its [grid], [model], [throughput] and [deploy] apply.")
@device_option(
    "the models are timed", default=None, note="Default: the study's [throughput] device."
)
@click.option(
    "--dtype",
    # any value reaches the study's dtype check, which refuses all but float32 and says how to
    # time the other precisions ([deploy] precisions)
    metavar="float32",
    default=None,
    help="float32 only (kept for older scripts): the fp32 rows are IEEE float32. To time bf16 "
    "or fp16 rows, add them to the study's [deploy] precisions.",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1, max=MAX_BATCH_ROWS),
    default=None,
    help="Rows per batch; a batch holds rows x N sequences (the paper: 128).",
)
@click.option("--passes", type=click.IntRange(min=1), default=None, help="Timed passes.")
@click.option(
    "--trained",
    is_flag=True,
    help="Also measure the study's trained models, side by side with the estimates.",
)
@out_option(
    "Table file (.json keeps the fingerprint); default "
    "studies/throughput/<study>-<device>-<dtype>.json"
)
@json_option()
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
    """Measure the throughput table of a study's grid (training-free estimates): every (N, s) in
    each of the study's precisions ([deploy]; int8 in ONNX Runtime), with the latency of one
    request at batch 1, all in one round-robin run."""
    from autoprumux.cli.outputs import format_measurement
    from autoprumux.core.study import load_study
    from autoprumux.measurement import run_measure

    study = load_study(study_path)
    given = study.throughput
    # an option given overrides the study's [throughput] setting (CLI > study file > default)
    try:
        settings = dataclasses.replace(
            given,
            device=given.device if device is None else device,
            dtype=given.dtype if dtype is None else dtype,
            batch_rows=given.batch_rows if batch_rows is None else batch_rows,
            passes=given.passes if passes is None else passes,
        )
    except FieldError as err:  # the option's value is at fault: name the option
        raise err.as_option() from None
    with ProgressBar() as bar:
        report = run_measure(study, settings, trained, out_path, progress=bar.update)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo(format_measurement(report))
