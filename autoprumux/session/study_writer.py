"""``autoprumux init``: a study file written from a user's data.

:func:`draft_study` reads the training file (through ``datasets``,
:func:`trainers.data.tables.read_source`), infers the columns not given
(:mod:`trainers.data.inspect`), loads and checks every split as a search would
(:func:`trainers.data.tables.load_tables`), measures the texts' token lengths with the model's
tokenizer (train and dev: nothing it decides reads the test split), and builds the study from
the shipped study for the machine (the template: ``studies/sst2-tiny.toml`` on a CPU,
``studies/sst2.toml`` with a GPU): the template's grid (less the N values whose batches the
training split cannot fill) and settings, the data's own section, a ``max_seq_length`` that
holds ~99% of the rows whole, and the template's training steps scaled to the data's size
(:func:`scale_recipe`). Before anything is
written, the study's text is read back as a study file, its data loaded and its model checked
against them. :func:`staged_study` writes it beside its file under a temporary name, for the
search's checks to read, and moves it into place once they pass: never over an existing file
unless asked, never a study they refused.

The recipe's scaling is :mod:`autoprumux.session.recipe_scaling`; the TOML writer
:mod:`autoprumux.files.toml_text`.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoprumux.core.data_spec import FileFormat, FileSource, file_format
from autoprumux.core.errors import FieldError
from autoprumux.core.metrics import Metric
from autoprumux.core.package_paths import PACKAGE_SCHEME
from autoprumux.core.study import (
    MIN_SEQ_LENGTH,
    SCHEMA_VERSION,
    SECTIONS,
    DataSection,
    Study,
    check_name,
    load_study,
    read_study_document,
    study_from_dict,
)
from autoprumux.files.atomic import check_output, explained_write_errors, output_folders
from autoprumux.files.toml_text import toml_text
from autoprumux.session.recipe_scaling import PHASES, ScaledRecipe, scale_recipe

if TYPE_CHECKING:
    import pyarrow as pa

    from trainers.data.inspect import Columns, TokenLengths
    from trainers.data.tables import TaskTables


# -- the draft -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class InitRequest:
    """``autoprumux init``'s options. Paths as given (relative to the current folder)."""

    train: str
    out: Path  # the study file to write
    template: Path  # the shipped study the settings start from (CPU or GPU)
    gpu: bool  # the study is for a GPU (said in the plan)
    dev: str = ""
    test: str = ""
    text: str = ""  # "": inferred
    text_pair: str = ""
    label: str = ""
    model: str = ""  # "": the template's
    metric: str = "accuracy"
    positive_label: str = ""
    name: str = ""  # "": the file's stem
    new_head: bool = False  # [model] fine_tuned = false: a head the model carries is trained anew
    force: bool = False  # overwrite ``out``
    search_command: str = ""  # the command that searches the study (the file's header says it)


@dataclass(frozen=True, kw_only=True)
class StudyDraft:
    """The study ``init`` writes: its file's text, the study it loads as, what was found."""

    path: Path
    text: str
    study: Study
    lines: tuple[str, ...]  # what it chose and found, for the user


def draft_study(request: InitRequest) -> StudyDraft:
    """Everything ``init`` decides and checks before it writes (module doc); the text loads
    as a study and its data load, or a one-line error is raised."""
    out = _check_out(request.out, request.force)
    if request.name:
        check_name(request.name, "--name")
    if request.positive_label and request.metric != Metric.F1.value:
        raise FieldError("--positive-label", "is only read with --metric f1")
    template = load_study(request.template)
    model = _model_text(request.model or template.model.name_or_path)
    files = {
        split: _absolute(path)
        for split, path in (("train", request.train), ("dev", request.dev), ("test", request.test))
        if path
    }
    train, raw, columns = _columns(files["train"], request)
    data: dict[str, Any] = {split: _study_path(path, out.parent) for split, path in files.items()}
    data.update({"text": columns.text, "label": columns.label})
    if columns.text_pair:
        data["text_pair"] = columns.text_pair
    study_part: dict[str, Any] = {"seed": template.study.seed}
    if request.name:
        study_part["name"] = request.name
    # the data read and checked first, the metric's options then checked against its labels in
    # the words of init's options (the search's check names the study's fields)
    data_study = study_from_dict({"study": study_part, "data": data}, out)
    tables = _load(data_study)
    _check_metric_options(request, tables.label_names)
    study_part["metric"] = request.metric
    if request.positive_label:
        study_part["positive_label"] = request.positive_label
    lengths, positions = _token_lengths(model, tables, template.study.seed)
    from trainers.data.inspect import propose_max_seq_length

    max_length = propose_max_seq_length(lengths, positions)
    recipe = scale_recipe(template.training, tables.train.num_rows, _reference_rows(template))
    same_model = model == template.model.name_or_path
    document = _document(
        read_study_document(request.template),
        study=study_part,
        model={"name_or_path": model, **({"fine_tuned": False} if request.new_head else {})},
        same_model=same_model,
        max_length=max_length,
        data=data,
        recipe=recipe,
    )
    grid_note = _fit_grid(document, study_from_dict(document, out), tables.train.num_rows)
    notes: dict[tuple[str, ...], str] = {
        ("data",): _data_comment(data_study.data),
        ("data", "text"): columns.why_of("text"),
        ("data", "label"): columns.why_of("label"),
        ("model", "max_seq_length"): _length_words(lengths, max_length, positions),
        ("training", "finetune_steps"): recipe.rule,
    }
    if grid_note:
        notes[("grid", "n")] = grid_note
    header = _header(request, files["train"], tables.train.num_rows)
    text = toml_text(document, header=header, comments={**SECTION_COMMENTS, **notes})
    study = study_from_dict(tomllib.loads(text), out)  # the file as it will be read
    _load(study)  # its data as a search reads them (the same data: read above)
    from trainers.model.label_map import LabelMismatch
    from trainers.trial.task_data import check_model_fits

    # the model against the data as a search checks it (a fine-tuned head's labels, the
    # tokenizer against the embedding table): refused before anything is printed, a GPU
    # study's too (its plan runs on the GPU machine)
    try:
        check_model_fits(study, tables.label_names)
    except LabelMismatch as err:  # the study's words for a study file, init's for init
        advice = "set [model] fine_tuned = false to train a new head"
        raise LabelMismatch(
            str(err).replace(advice, "give --new-head to train a new head")
        ) from None
    lines = [
        f"data: {files['train']} ({train.format.value.upper()}, {raw.num_rows:,} rows; columns: "
        f"{', '.join(raw.column_names)})",
        *columns.reasons,
        _rows_line(tables, study),
        *_label_lines(tables, study),
        _tokens_line(lengths, model, template.study.seed),
        _max_length_line(lengths, max_length, positions),
        f"template: {request.template} ({'a GPU: the paper' if request.gpu else 'a CPU: the tiny'}"
        f" grid, {len(study.grid.grid)} points), model {model}"
        + ("" if same_model else " (the template's model-specific settings left out)"),
        f"recipe: {recipe.rule}",
        *(f"note: {note}" for note in columns.notes),
        *(f"note: {note}" for note in tables.notes),
        *(f"note: {note}" for note in _token_notes(lengths, max_length, positions, model)),
        *([f"note: {grid_note}"] if grid_note else []),
    ]
    return StudyDraft(path=out, text=text, study=study, lines=tuple(lines))


def _columns(path: Path, request: InitRequest) -> tuple[FileSource, pa.Table, Columns]:
    """The training file as read, and its columns: given, else inferred."""
    from trainers.data.inspect import infer_columns
    from trainers.data.tables import read_source

    source = FileSource(path=path, format=file_format(path))
    raw = read_source(source)
    columns = infer_columns(
        raw,
        str(path),
        text=request.text,
        text_pair=request.text_pair,
        label=request.label,
        header_row=source.format in (FileFormat.CSV, FileFormat.TSV),
    )
    return source, raw, columns


def _token_lengths(model: str, tables: TaskTables, seed: int) -> tuple[TokenLengths, int]:
    """The token lengths of the train and dev rows (sampled with ``seed`` where there are
    many) with the model's tokenizer, and the longest input the model's positions hold. Not
    the test rows: the study's recipe is a decision, and no decision reads the test split."""
    from trainers.data.inspect import token_lengths
    from trainers.model.architecture import Architecture
    from trainers.model.checkpoints import load_tokenizer, read_hf_config, resolve_model_path

    tokenizer = load_tokenizer(model)
    config = read_hf_config(resolve_model_path(model))
    positions = Architecture.from_hf_config(config).max_tokens
    if positions < MIN_SEQ_LENGTH:  # no max_seq_length the study allows fits it
        raise FieldError(
            "--model",
            f"{model} holds {positions} tokens (its position table), and a study keeps at least "
            f"{MIN_SEQ_LENGTH} a row",
        )
    return token_lengths(_searched_splits(tables), tokenizer, seed=seed), positions


def _check_metric_options(request: InitRequest, labels: tuple[str, ...]) -> None:
    """--positive-label against the data's labels, and --metric f1 on more than two labels
    without it: what the search's check refuses, said in the options' words."""
    if request.metric != Metric.F1.value:
        return
    if request.positive_label and request.positive_label not in labels:
        raise FieldError(
            "--positive-label",
            f"{request.positive_label!r} is not one of the data's labels: {', '.join(labels)}",
        )
    if not request.positive_label and len(labels) > 2:
        raise FieldError(
            "--metric",
            f"f1 is binary, and the data has {len(labels)} labels; name the positive one with "
            "--positive-label, or use --metric macro_f1",
        )


def _reference_rows(template: Study) -> int:
    """The training rows the template's recipe was sized for: its GLUE task's (SST-2's)."""
    from autoprumux.loop.costs import GLUE_TRAIN_EXAMPLES

    rows = GLUE_TRAIN_EXAMPLES[template.task]
    cap = template.data.max_train_examples
    return min(rows, cap) if cap else rows


@contextlib.contextmanager
def staged_study(draft: StudyDraft, force: bool = False) -> Iterator[Path]:
    """The draft's study written beside its file under a temporary name of the same stem
    (``reviews.init-<pid>`` for ``reviews.toml``), for the block to check; moved onto the
    draft's path by rename when the block ends without an error (an existing file only with
    ``force``), removed, with the folders it made, when it raises.

    The same folder and stem make the staged file the same study (its name, its relative
    paths, its database, table and report); the rename leaves the path holding the old file
    or the new one whole at any instant, and a refused study never there. A kill leaves at
    most the staged file beside it."""
    path = _check_out(draft.path, force)
    staged = path.with_name(f"{path.stem}.init-{os.getpid()}")
    with output_folders(path):
        try:
            with explained_write_errors(path):
                staged.write_text(draft.text, encoding="utf-8")
            yield staged
            _check_out(path, force)  # not over a file another init wrote meanwhile
            with explained_write_errors(path):
                os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)


def _check_out(path: Path, force: bool) -> Path:
    if path.exists() and not force and path.is_file():
        raise FieldError("--out", f"{path} exists; pass --force to overwrite it")
    return check_output(path, "--out")


def _absolute(path: str) -> Path:
    return Path(path).expanduser().resolve()


def _study_path(path: Path, folder: Path) -> str:
    """``path`` as the study file names it: relative to the study's folder where the file lies
    under that folder or its parent (a project's ``data/`` beside ``studies/``), else absolute."""
    folder = folder.expanduser().resolve()
    if path.is_relative_to(folder.parent):
        return Path(os.path.relpath(path, folder)).as_posix()
    return str(path)


def _model_text(name: str) -> str:
    """The model as the study names it: a local folder absolute (the study reads
    ``name_or_path`` from the current folder, not the study's), else as given (a hub id or
    ``package:`` path)."""
    if name.startswith(PACKAGE_SCHEME):
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def _load(study: Study) -> TaskTables:
    """The study's splits as a search checks them (every refusal one line), read once per
    process: the written study's check, and the plan that follows, reuse them."""
    from trainers.trial.task_data import checked_tables

    with _notes_unlogged():
        return checked_tables(study)


@contextlib.contextmanager
def _notes_unlogged() -> Iterator[None]:
    """The loader's warnings (skipped rows, imbalance) kept out of the log: ``init`` prints
    them as notes, once."""
    log = logging.getLogger("trainers.data.tables")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _searched_splits(tables: TaskTables) -> pa.Table:
    """The rows the search trains and chooses on: train and dev."""
    import pyarrow as pa

    columns = tables.train.column_names
    return pa.concat_tables([part.select(columns) for part in (tables.train, tables.dev)])


def _fit_grid(document: dict[str, Any], study: Study, train_rows: int) -> str:
    """The template's grid less the N values whose batches the training split cannot fill
    (:func:`~autoprumux.session.search_checks.batch_needs`: a trial of such an N fails at its
    first step), set in ``document``; what was left out and why ("" where nothing was). A
    split that cannot fill N = 1's batch is refused, naming --train."""
    from autoprumux.session.search_checks import batch_needs

    # fine_tuned: what a fine-tuned checkpoint spares (N = 1 training nothing) applies only
    # to a grid without pruning, which no template is
    needs = batch_needs(study, fine_tuned=False)
    short = [need for need in needs if need.examples > train_rows]
    if not short:
        return ""
    kept = [n for n in study.grid.n if n not in {need.n for need in short}]
    if 1 not in kept:
        need = next(need for need in needs if need.n == 1)
        raise FieldError(
            "--train",
            f"its training split holds {train_rows:,} rows, fewer than one batch of the "
            f"template's recipe ({need.rows} rows, {need.setting}); give at least "
            f"{need.examples:,} training rows",
        )
    document["grid"] = {**document.get("grid", {}), "n": kept}
    largest = max(short, key=lambda need: need.examples)
    left_out = ", ".join(str(need.n) for need in short)
    return (
        f"N = {left_out} left out of the template's grid: the {train_rows:,} training rows "
        f"cannot fill one of its batches (at N = {largest.n}: {largest.rows} rows x "
        f"{largest.n} = {largest.examples:,} examples, {largest.setting})"
    )


# -- the document ----------------------------------------------------------------------------

# what each section is: the comment above its header in the written file
SECTION_COMMENTS: dict[tuple[str, ...], str] = {
    ("study",): "The study: named after this file (or `name`); `metric`: what the budget and "
    "every figure are in",
    ("grid",): "The (N, s) points the search may train: N inputs multiplexed into one pass, s "
    "the share of the encoder pruned away",
    ("model",): "The pretrained model, and the tokens a text is cut to",
    ("multiplexing",): "How N > 1 models mix and unmix their inputs",
    ("warmup",): "The retrieval warm-up that primes an N > 1 model before its fine-tuning "
    "(not scaled: it learns to mix N inputs, whatever the task's size)",
    ("training",): "The recipe of every training: each phase's steps, batches, learning rates",
    ("throughput",): "How throughput is measured",
    ("storage",): "Where the search keeps its trials; empty: <name>.db beside this file",
}
_MODEL_SPECIFIC = ("num_layers", "multiplexed_name_or_path")  # the template model's own


def _data_comment(data: DataSection) -> str:
    """The comment above [data]: what its fields are, and where dev comes from."""
    common = "Your data: files relative to this file; the text and label columns"
    if data.dev:
        return f"{common}; dev: the given file, the split the search chooses on"
    return (
        f"{common}; no dev file: dev is carved from train ({data.dev_fraction:.0%}, at most "
        f"{data.dev_max_rows:,} rows, stratified, with [study] seed)"
    )


def _document(
    template: Mapping[str, Any],
    *,
    study: Mapping[str, Any],
    model: Mapping[str, Any],  # name_or_path, and fine_tuned where set
    same_model: bool,
    max_length: int,
    data: Mapping[str, Any],
    recipe: ScaledRecipe,
) -> dict[str, Any]:
    """The study document: the template's sections, in the study file's order, with the
    study's own [study], [model] and [data] and the scaled phases."""
    document: dict[str, Any] = {"schema": SCHEMA_VERSION}
    for section in SECTIONS:
        values = dict(template.get(section, {}))
        if section == "study":
            kept = {k: v for k, v in values.items() if k not in ("task", "description", "name")}
            values = {**kept, **study}
        elif section == "model":
            if not same_model:
                values = {k: v for k, v in values.items() if k not in _MODEL_SPECIFIC}
            values.update(**model, max_seq_length=max_length)
        elif section == "data":
            values = dict(data)
        elif section == "training":
            phase_fields = {f"{p}_{unit}" for p in PHASES for unit in ("steps", "epochs")}
            values = {k: v for k, v in values.items() if k not in phase_fields}
            values = {**{f"{p}_steps": recipe.steps[p] for p in PHASES}, **values}
        if values:
            document[section] = values
    return document


def _header(request: InitRequest, train: Path, rows: int) -> tuple[str, ...]:
    today = datetime.date.today().isoformat()
    machine = "a GPU" if request.gpu else "a CPU"
    return (
        f"Written by autoprumux init on {today} for {train.name} ([data] train).",
        f"Its settings start from {request.template.name} (the shipped study for {machine}: its "
        f"grid and recipe), the training steps scaled to {rows:,} training rows.",
        *(["Search it:", f"  {request.search_command}"] if request.search_command else []),
    )


# -- the lines printed -----------------------------------------------------------------------


def _rows_line(tables: TaskTables, study: Study) -> str:
    data = study.data
    dev = (
        f"dev {tables.dev.num_rows:,} (its file)"
        if data.dev
        else f"dev {tables.dev.num_rows:,} (carved from train: {data.dev_fraction:.0%}, at most "
        f"{data.dev_max_rows:,})"
    )
    if tables.test is None:
        test = "no test split (give --test for a held-out figure)"
    else:
        test = f"test {tables.test.num_rows:,}" + (" (its file)" if data.test else " (carved)")
    return f"rows: train {tables.train.num_rows:,}, {dev}, {test}"


SHOWN_LABELS = 20  # labels listed one a line; the rest summed up


def _label_lines(tables: TaskTables, study: Study) -> list[str]:
    from trainers.data.inspect import label_balance
    from trainers.data.tables import IMBALANCE_RATIO

    counts = label_balance(tables.train["label"], tables.label_names)
    names = [_label_text(c.name) for c in counts]
    width = max(len(name) for name in names)
    lines = [f"labels: {len(counts)}, in the training split:"]
    lines += [
        f"  {name:<{width}}  {c.count:>9,}  {_percent(c.share)}"
        for name, c in zip(names[:SHOWN_LABELS], counts[:SHOWN_LABELS], strict=True)
    ]
    if len(counts) > SHOWN_LABELS:
        rest = counts[SHOWN_LABELS:]
        lines.append(f"  ... {len(rest)} more ({sum(c.count for c in rest):,} rows)")
    sizes = [c.count for c in counts]
    skewed = min(sizes) and max(sizes) >= IMBALANCE_RATIO * min(sizes)
    if skewed and study.study.metric is Metric.ACCURACY:
        lines.append(
            "  the labels are imbalanced: accuracy favours the largest; consider --metric "
            "macro_f1 (or f1 with --positive-label)"
        )
    return lines


def _label_text(name: str) -> str:
    """A label as the table shows it: quoted where spaces around it would not show."""
    return repr(name) if name != name.strip() else name


def _tokens_line(lengths: TokenLengths, model: str, seed: int) -> str:
    sample = (
        f"{len(lengths.lengths):,} of {lengths.rows:,} train and dev rows sampled with seed {seed}"
        if lengths.sampled
        else f"all {lengths.rows:,} train and dev rows"
    )
    return (
        f"tokens ({model}'s tokenizer, {sample}): median {lengths.quantile(0.5)}, 95% within "
        f"{lengths.quantile(0.95)}, 99% within {lengths.quantile(0.99)}, longest "
        f"{lengths.lengths[-1] if lengths.lengths else 0}"
    )


def _max_length_line(lengths: TokenLengths, max_length: int, positions: int) -> str:
    return f"max_seq_length: {max_length} ({_length_reason(lengths, max_length, positions)})"


def _length_reason(lengths: TokenLengths, max_length: int, positions: int) -> str:
    """Why ``max_length``: the smallest length that holds 99% of the rows whole, or, where
    none does, the longest the model takes; the share it truncates, of a sample where the
    lengths are one."""
    from trainers.data.inspect import COVERAGE

    cut = lengths.share_longer_than(max_length)
    rows = f"the rows in a sample of {len(lengths.lengths):,}" if lengths.sampled else "the rows"
    truncated = f"{_percent(cut)} would be truncated"
    if 1 - cut >= COVERAGE - 1e-12:
        return (
            f"the smallest of {_choices(positions)} that holds {_percent(1 - cut)} of {rows} "
            f"whole; {truncated}"
        )
    return (
        f"none of {_choices(positions)} holds {COVERAGE:.0%} of {rows} whole: "
        f"{_longest(max_length, positions)}, which holds {_percent(1 - cut)}; {truncated}"
    )


def _longest(max_length: int, positions: int) -> str:
    """What ``max_length`` is where it was chosen as the longest allowed."""
    return "the longest the model takes" if max_length == positions else "the longest offered"


def _length_words(lengths: TokenLengths, max_length: int, positions: int) -> str:
    """The comment beside ``max_seq_length``."""
    from trainers.data.inspect import COVERAGE

    cut = lengths.share_longer_than(max_length)
    sample = f" in a sample of {len(lengths.lengths):,}" if lengths.sampled else ""
    held = f"holds {_percent(1 - cut)} of the rows{sample} whole ({_percent(cut)} truncated)"
    if 1 - cut >= COVERAGE - 1e-12:
        return held
    return f"{_longest(max_length, positions)}; {held}"


def _token_notes(lengths: TokenLengths, max_length: int, positions: int, model: str) -> list[str]:
    """Warnings from the token counts: rows truncated where no length holds 99% of them, a
    vocabulary that lacks much of the text (its unknown token)."""
    from trainers.data.inspect import COVERAGE, UNKNOWN_SHARE

    notes = []
    cut = lengths.share_longer_than(max_length)
    if 1 - cut < COVERAGE - 1e-12:
        notes.append(
            f"{_percent(cut)} of the rows are longer than {max_length} tokens "
            f"({_longest(max_length, positions)}): each is cut to its first {max_length} "
            "tokens, and what its end says is lost to the model"
        )
    if lengths.unknown_share > UNKNOWN_SHARE:
        notes.append(
            f"{_percent(lengths.unknown_share)} of the texts' tokens are the tokenizer's unknown "
            f"token: {model}'s vocabulary does not cover this text (a language or script it was "
            "not trained on); choose a model that does with --model"
        )
    return notes


def _choices(positions: int) -> str:
    from trainers.data.inspect import SEQ_LENGTHS

    allowed = [str(c) for c in SEQ_LENGTHS if c <= positions] or [str(positions)]
    return ", ".join(allowed)


def _percent(share: float) -> str:
    """A share as a percentage with the digits it needs: 44.2%, 0.04%, 99.96%, 100%."""
    value = 100 * share
    if value in (0.0, 100.0):
        return f"{value:.0f}%"
    digits = 1  # more where one would show a share that is not 0 or all as 0% or 100%
    while digits < 4 and round(value, digits) in (0.0, 100.0):
        digits += 1
    return f"{value:.{digits}f}%"
