"""The commands that use a trained model: ``classify`` (text in, labels out) and ``export`` (one
ONNX or TorchScript file that runs without the training engine, or a dense N = 1 model as a
transformers checkpoint folder)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from autoprumux.cli.options import (
    device_option,
    json_option,
    model_option,
    out_option,
    study_option,
)
from autoprumux.cli.progress_bar import ProgressBar
from autoprumux.core.errors import FieldError

if TYPE_CHECKING:  # torch and transformers load only when a model does
    from autoprumux.cli.classify_io import GoldScore, Inputs
    from autoprumux.core.progress import Progress
    from trainers.deploy.inference import Classified, TextClassifier

# below this many inputs classify is done in about a second: a bar would only flicker
_INPUTS_WORTH_A_BAR = 2000


@click.command()
@model_option("A model folder (a trial's), or an .onnx / .pt file `autoprumux export` wrote.")
@click.option(
    "--input",
    "input_path",
    default="-",
    show_default=True,
    help="One input per line (pair tasks: FIRST<TAB>SECOND), or a table: .tsv, .csv, .jsonl, "
    ".json or .parquet; either may be compressed (.xz, .gz, .bz2: GLUE's dev.tsv.xz as "
    "shipped); -: stdin. Blank lines and rows without text are skipped and counted.",
)
@click.option(
    "--column",
    default=None,
    help="The table's text column (pair tasks: FIRST,SECOND); default: the columns the model "
    "was trained on (its [data] text and text_pair).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Groups of N inputs per forward pass.",
)
@device_option("the model runs")
@json_option()
def classify(
    model_path: str, input_path: str, column: str | None, batch: int, device: str, as_json: bool
) -> None:
    """Classify text with a trained model: label and probabilities per input, in input order."""
    from autoprumux.cli.classify_io import InputSpec, gold_score, prediction_rows, read_inputs
    from autoprumux.core.metrics import Metric
    from trainers.deploy.inference import load_text_classifier

    model = load_text_classifier(model_path, device)
    info = model.info
    spec = InputSpec(
        text_columns=info.text_columns, label_column=info.label_column, labels=info.labels
    )
    inputs = read_inputs(input_path, spec, column)
    with ProgressBar() as bar:
        large = len(inputs.texts) >= _INPUTS_WORTH_A_BAR

        def update(progress: Progress) -> None:
            if large:
                bar.update(progress)

        done = model.classify(inputs.texts, batch, progress=update)
    # in the metric the model was chosen by (its study's), and accuracy
    graded = gold_score(
        inputs,
        [p.label for p in done.predictions],
        info.labels,
        Metric(info.metric),
        info.positive_id,
        info.positive_label,
    )
    if as_json:
        click.echo(json.dumps(_classified_document(model, inputs, done, graded), indent=1))
        return
    # the rows on stdout (a table to pipe on), the summary on stderr
    click.echo("\n".join(prediction_rows(inputs, list(done.predictions), info.labels)))
    notes = [f"{done.truncated} truncated to {info.max_length} tokens"]
    if inputs.blank_lines:
        notes.append(f"{inputs.blank_lines} blank line(s) or row(s) without text skipped")
    if graded is not None:
        notes.append(graded.describe(inputs.label_column))
    elif inputs.label_column is not None:  # the column is there, every cell of it empty
        notes.append(f"no {info.metric_label}: column {inputs.label_column!r} holds no label")
    click.echo(
        f"classified {len(inputs.texts)} inputs of {inputs.source} with {info.point} "
        f"in {model.precision} "
        f"in {done.seconds:.2f} s: {done.per_second:,.1f} inputs/s (forward passes "
        f"{done.model_seconds:.2f} s, {batch} groups of {info.n} a pass); " + "; ".join(notes),
        err=True,
    )


def _classified_document(
    model: TextClassifier, inputs: Inputs, done: Classified, graded: GoldScore | None
) -> dict[str, Any]:
    """classify's --json document: the run's summary, then every input's prediction, keyed
    by its line in the input (docs/commands.md lists the keys). With a gold column that holds
    labels, ``accuracy`` and ``metric_value`` (the model's metric, named by ``metric``) on its
    ``labelled`` inputs; else None."""
    info = model.info
    return {
        "model": model.source,
        "n": info.n,
        "sparsity": info.sparsity,
        "precision": model.precision,
        "input": inputs.source,
        "inputs": len(inputs.texts),
        "blank_lines": inputs.blank_lines,
        "truncated": done.truncated,
        "max_length": info.max_length,
        "seconds": done.seconds,
        "model_seconds": done.model_seconds,
        "inputs_per_s": done.per_second,
        "accuracy": None if graded is None else graded.accuracy,
        "metric": info.metric,
        "metric_label": info.metric_label,
        "metric_value": None if graded is None else graded.value,
        "label_column": inputs.label_column,
        "labelled": None if inputs.gold is None else inputs.labelled,
        "predictions": [
            {"line": line, "label": p.label, "probabilities": p.probabilities}
            for line, p in zip(inputs.lines, done.predictions, strict=True)
        ],
    }


@click.command()
@model_option("A model folder (a trial's).")
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["onnx", "torchscript", "transformers"]),
    help="onnx (opset 18), torchscript, or transformers (a checkpoint "
    "folder AutoModelForSequenceClassification loads; N = 1, s = 0 models only).",
)
@out_option(
    "The file to write (.onnx or .pt); for transformers, a new folder.",
    required=True,
    folder_ok=True,
)
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    help="fp32, or int8 with --format onnx: ONNX Runtime's quantization for CPUs (dynamic; "
    "static QDQ where dynamic loses too much), its labels checked against fp32's on sample "
    "inputs and both scored on the model's dev examples (recorded in the file and the model "
    "folder).",
)
@study_option(
    "With --precision int8: the study whose data calibrate and score the int8 file (the model's "
    "own, moved or copied: the same task, text and label columns and labels). Default: the "
    "study file the model folder records (autoprumux.json's study_file).",
    required=False,
)
@json_option()
def export(
    model_path: str,
    fmt: str,
    out_path: str,
    precision: str,
    study_path: str | None,
    as_json: bool,
) -> None:
    """Write a model folder as one ONNX or TorchScript file that `classify` runs alone, or as
    a transformers checkpoint."""
    from autoprumux.files.atomic import check_output
    from trainers.deploy.model_folder import export_source

    if fmt != "transformers":  # a transformers folder: checked there
        check_output(out_path, "--out")  # a folder, a device, a path under a file: refused
    export_source(model_path)  # a folder; an exported file refused before any work
    if _checked_precision(fmt, precision) == "int8":  # before any work (and torch's import)
        _export_int8(model_path, out_path, study_path, as_json)
        return
    if study_path is not None:
        raise FieldError(
            "--study",
            "is read with --precision int8 alone (its calibration and dev data); an fp32 "
            "export reads nothing but the model folder",
        )
    if fmt == "transformers":
        _export_transformers(model_path, out_path, as_json)
        return
    from trainers.deploy.export import ExportFormat, export_model

    done = export_model(model_path, ExportFormat(fmt), out_path)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(done.path),
                    "format": done.format.value,
                    "precision": "fp32",
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
    # the exported file was checked against the eager model: say how closely, and on what
    click.echo(
        f"exported {model_path} -> {done.path} ({done.format.value}, {done.bytes / 1e6:.1f} MB, "
        f"{done.seconds:.1f} s); {runtime} logits within {done.max_abs_diff:.1e} of PyTorch's "
        f"on {' and '.join(map(str, done.checked_groups))} group(s)"
    )


def _checked_precision(fmt: str, precision: str) -> str:
    """``--precision`` against ``--format``: fp32 or int8 (ONNX Runtime's) for onnx, fp32 else."""
    allowed = ("fp32", "int8") if fmt == "onnx" else ("fp32",)
    if precision not in allowed:
        raise FieldError(
            "--precision",
            f"{precision!r} is not one of: {', '.join(allowed)} (with --format {fmt}); int8 is "
            "ONNX Runtime's, with --format onnx",
        )
    return precision


def _export_int8(model_path: str, out_path: str, study_path: str | None, as_json: bool) -> None:
    from trainers.deploy.quantize import export_int8

    # progress on stderr: a static recipe may take minutes on a large model
    done = export_int8(
        model_path, out_path, lambda line: click.echo(line, err=True), study_file=study_path
    )
    dev, made = done.dev, done.made
    passed = made.tried[-1]
    if as_json:
        document = {
            "path": str(done.path),
            "format": "onnx",
            "precision": "int8",
            "bytes": done.bytes,
            "fp32_bytes": done.fp32_bytes,
            "fp32_max_abs_diff": done.fp32_max_abs_diff,
            "recipe": made.recipe.to_json(),
            "recipes_tried": [str(check) for check in made.tried],
            "fp32_ops": list(made.fp32_ops),
            "samples_checked": passed.decided,
            "samples": passed.samples,
            # a static file's examples/s and batch-1 seconds over dynamic int8's; null: dynamic
            "speed_vs_dynamic": None if done.speed is None else dataclasses.asdict(done.speed),
            "recorded": done.recorded,  # in the model folder (false: it could not be written)
        }
        click.echo(
            json.dumps({**document, "dev": dev.to_json(), "seconds": done.seconds}, indent=1)
        )
        return
    click.echo(
        f"exported {model_path} -> {done.path} (onnx int8, {done.bytes / 1e6:.1f} MB, "
        f"{done.bytes / done.fp32_bytes:.2f} x the fp32 file, {done.seconds:.1f} s) by the "
        f"recipe {made.recipe}; labels equal the fp32 model's on the {passed.decided} of "
        f"{passed.samples} sample inputs it decides; dev {dev.metric_label} {dev.int8:.4f} in "
        f"int8, {dev.fp32:.4f} in fp32 ({dev.delta_points:+.2f} points) on {dev.examples} "
        f"examples, {_where_recorded(done.recorded)}; ops left in fp32: "
        f"{', '.join(made.fp32_ops) or 'nothing'}"
    )
    if done.speed is not None:
        click.echo(
            f"  timed against dynamic int8 of the same weights, side by side: "
            f"{done.speed.throughput:.2f} x its examples/s, {done.speed.latency:.2f} x its "
            "batch-1 latency (a search ranks this model's int8 row so)"
        )
    for refused in made.tried[:-1]:
        click.echo(f"  refused first: {refused}")


def _where_recorded(recorded: bool) -> str:
    """Where the int8 figures are: the file's metadata always, the model folder where it
    could be written (the progress line before says why not)."""
    if recorded:
        return "recorded in the model folder"
    return "recorded in the file only (the model folder could not be written, above)"


# a saved transformers checkpoint computes our logits within this (fp32, CPU)
_TRANSFORMERS_TOLERANCE = 1e-4


def _export_transformers(model_path: str, out_path: str, as_json: bool) -> None:
    """A dense N = 1 model folder as a transformers checkpoint in the new folder ``out_path``
    (its data's labels as ``id2label``; the folders above it made), written under a temporary
    name, checked against our logits, then renamed: a refused or failed export leaves nothing
    (nor the folders made for it)."""
    from autoprumux.files.atomic import check_output, output_folders
    from trainers.deploy.export import SAMPLE_SENTENCES, ExportError
    from trainers.deploy.model_folder import read_info
    from trainers.model.checkpoints import load_classifier
    from trainers.model.hf_checkpoint import (
        check_dense,
        folder_tokenizer,
        logits_difference,
        save_transformers,
    )

    folder, out = Path(model_path), Path(out_path)
    if out.exists():
        raise FieldError("--out", f"{out} exists; a transformers checkpoint goes to a new folder")
    check_output(out, "--out")  # its missing folders are made when it is written
    info = read_info(folder)
    model = load_classifier(folder)
    check_dense(model.arch)  # before anything is written
    tokenizer = folder_tokenizer(folder)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with output_folders(out):
        try:
            save_transformers(model, staging, info.labels, tokenizer, info.max_length)
            diff = logits_difference(model, staging, tokenizer, SAMPLE_SENTENCES)
            if not diff <= _TRANSFORMERS_TOLERANCE:
                raise ExportError(
                    f"{out}: transformers' logits differ from ours by {diff:.2e} "
                    f"(> {_TRANSFORMERS_TOLERANCE:g}); nothing written"
                )
            staging.rename(out)
        finally:  # before the folders made for it are removed (a failed export)
            shutil.rmtree(staging, ignore_errors=True)
    if as_json:
        document = {"path": str(out), "format": "transformers", "max_abs_diff": diff}
        click.echo(json.dumps({**document, "labels": list(info.labels)}, indent=1))
        return
    click.echo(
        f"exported {model_path} -> {out} (transformers, labels {', '.join(info.labels)}); "
        f"AutoModelForSequenceClassification's logits within {diff:.1e} of ours"
    )
