"""The self-describing model folder: what a trained (N, s) is, beside its weights.

Every trained point's artifact folder (``trainers.trial.run``) holds, besides ``model.safetensors``
and ``architecture.json``:

- ``autoprumux.json`` (:class:`ModelInfo`): the task and its label names, the input columns,
  the max length, the point (N, s), the dev figure in the study's metric and the throughput
  recorded by its trial, and where it came from (study, recipe hash, base model, teacher);
  once a search with a test split has answered, its held-out test figure
  (:func:`record_test_score`);
- the tokenizer's own files (``tokenizer.json``, ``tokenizer_config.json``, ...), so the folder
  classifies text without the base model;
- ``README.md``, a model card generated from the above.

Its dev figure in each precision its study serves in, evaluated after its training
(:mod:`trainers.deploy.precisions`), and in each precision it was exported in (``autoprumux
export --precision int8``): :class:`PrecisionScore`, :func:`record_precisions`. A rerun of the
trial keeps them (:func:`describe`): they are the weights' figures on the same dev
examples, and a figure already recorded is not evaluated again. Once a search has answered, the
models it may recommend also hold their (N, s)'s throughput and batch-1 latency in each
precision from the study's throughput table (:class:`TableSpeed`, :func:`record_speeds`): every
point timed side by side, which a trial's own throughput is not.

They are written by rename after the trial measured the model, so a reader never sees half of
one; a rerun of a finished trial writes them again with its own throughput, and keeps the
figures added since (:func:`describe`). Each figure added later is a read, change and
rewrite under the folder's own lock (``.autoprumux.lock``), so that two processes recording into
one folder (a search its speeds, an ``export`` its precision) do not lose each other's figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.metrics import Metric
from autoprumux.core.records import RecipeSpeed
from autoprumux.core.version import __version__
from autoprumux.files.atomic import atomic_path, explained_write_errors, write_text_atomic

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

INFO_FILE = "autoprumux.json"
CARD_FILE = "README.md"
INFO_LOCK = ".autoprumux.lock"  # held while autoprumux.json and the card are rewritten
# groups of N inputs per forward pass: ``predict``'s and ``classify --batch``'s default, and
# the batch the int8 dev figures are scored at (trainers.deploy.quantize.dev_score), on which
# a dynamic int8 file's activation scales depend (the card says so)
DEFAULT_BATCH = 32
# of autoprumux.json; raised when a field changes meaning. Not for metric: a folder without it
# is an accuracy folder, as every folder before it was, and its dev_accuracy still is accuracy
FORMAT = 1
# fields a folder written before them lacks: read with their defaults
ADDED_LATER = ("metric", "positive_label", "test_score", "test_examples", "precisions", "speeds")


class NotAModelError(AutoPruMuxError):
    """A path is not a model autoprumux trained or exported."""


@dataclass(frozen=True, kw_only=True)
class PrecisionScore:
    """The model served in one precision: its dev figure, and the runtime that served it."""

    dev: float  # the study's metric (ModelInfo.metric) on the dev examples below
    dev_examples: int  # the first examples of the task's dev split, as ModelInfo.dev_examples
    runtime: str  # what computed it, e.g. "onnxruntime-cpu"
    # how int8 was made (trainers.deploy.quantize.Int8Recipe, e.g. "dynamic"); "" for the
    # others and in folders from before recipes
    recipe: str = ""
    # a static int8 file's speed against dynamic int8 of the same weights, timed side by side
    # (what the throughput table times is dynamic); None for the others and where not timed
    speed: RecipeSpeed | None = None

    @property
    def static_int8(self) -> bool:
        """int8 made by a static QDQ recipe (the throughput table times dynamic int8)."""
        return self.recipe.startswith("static")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.speed is None:
            del data["speed"]
        return data

    @classmethod
    def from_json(cls, data: object, where: str) -> PrecisionScore:
        required, optional = {"dev", "dev_examples", "runtime"}, {"recipe", "speed"}
        if not isinstance(data, dict) or not required <= set(data) <= required | optional:
            raise NotAModelError(
                f"{where}: a precisions entry holds dev, dev_examples, runtime and, for int8, "
                f"recipe and speed, not {data!r}"
            )
        return cls(
            dev=float(data["dev"]),
            dev_examples=int(data["dev_examples"]),
            runtime=data["runtime"],
            recipe=str(data.get("recipe", "")),
            speed=_recipe_speed(data.get("speed"), where),
        )


def _recipe_speed(data: object, where: str) -> RecipeSpeed | None:
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) != {"throughput", "latency"}:
        raise NotAModelError(
            f"{where}: an int8 speed holds throughput and latency (ratios to dynamic int8's), "
            f"not {data!r}"
        )
    return RecipeSpeed(throughput=float(data["throughput"]), latency=float(data["latency"]))


@dataclass(frozen=True, kw_only=True)
class TableSpeed:
    """The model's (N, s) in one precision, as its search's throughput table timed it."""

    throughput: float  # examples/s
    latency_s: float | None  # one request at batch 1 (N - 1 slots empty); None: not timed
    table: str  # the table in words (ThroughputTable.describe()): where, how

    @classmethod
    def from_json(cls, data: object, where: str) -> TableSpeed:
        if not isinstance(data, dict) or set(data) != {"throughput", "latency_s", "table"}:
            raise NotAModelError(
                f"{where}: a speeds entry holds throughput, latency_s and table, not {data!r}"
            )
        latency = data["latency_s"]
        return cls(
            throughput=float(data["throughput"]),
            latency_s=None if latency is None else float(latency),
            table=str(data["table"]),
        )


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What a trained model is and how it was made (``autoprumux.json``)."""

    task: str
    labels: tuple[str, ...]  # label name of every logit, in logit order
    text_columns: tuple[str, ...]  # the GLUE columns of one input: a sentence or a pair
    label_column: str  # the GLUE column holding the gold label (classify reports accuracy)
    max_length: int  # tokens per sentence; longer inputs are truncated
    n: int  # sentences per forward pass (multiplexing width)
    sparsity: float  # the target s
    achieved_sparsity: float  # of the prunable encoder parameters, materialized
    parameters: int  # prunable encoder parameters kept
    # the study's metric (``metric``; named for the accuracy every older folder holds), on
    # dev_examples of the task's dev split, in order
    dev_accuracy: float
    dev_examples: int
    metric: str = Metric.ACCURACY.value  # what dev_accuracy is: a core.metrics.Metric value
    positive_label: str = ""  # with metric "f1": the label whose F1 dev_accuracy is
    # the same metric on the study's held-out test split, measured once after the search
    # answered (what to expect; no decision read it); None: no test split, or not yet measured
    test_score: float | None = None
    test_examples: int = 0  # the test split's examples it was measured on
    throughput: float | None  # examples/s timed inside the trial (not side by side)
    throughput_device: str  # where it was timed
    study: str
    study_file: str
    recipe: str  # Study.recipe: the hash of everything that decides a trial's result
    base_model: str
    teacher: str | None  # the (N, 0) model folder it was pruned from; None for s = 0
    seed: int
    numerics: dict[str, Any] = field(default_factory=dict)  # device, precision, versions
    # precision ("fp32", "int8") -> its dev figure served in it (evaluated after the training
    # in the study's precisions, or by an export); empty in folders from before precisions
    precisions: dict[str, PrecisionScore] = field(default_factory=dict)
    # precision -> the study's table's figures at this (N, s), written once a search answered
    # with this model among those it may recommend; empty before
    speeds: dict[str, TableSpeed] = field(default_factory=dict)
    autoprumux_version: str = __version__
    format: int = FORMAT

    @property
    def point(self) -> str:
        return f"({self.n}, {self.sparsity:g})"

    @property
    def metric_label(self) -> str:
        """How the metric is named: ``accuracy``, ``F1 of 'pos'``, ``macro-F1``, ``MCC``."""
        return Metric(self.metric).label(self.positive_label)

    @property
    def positive_id(self) -> int:
        """The label id whose F1 the metric is: ``positive_label``'s, else the second label."""
        return self.labels.index(self.positive_label) if self.positive_label in self.labels else 1

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"], data["text_columns"] = list(self.labels), list(self.text_columns)
        data["precisions"] = {k: v.to_json() for k, v in self.precisions.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> ModelInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        if data.get("format") != FORMAT:
            raise NotAModelError(
                f"{where}: model format {data.get('format')!r}; this autoprumux reads {FORMAT}"
            )
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data and f.name not in ADDED_LATER
        )
        if missing:
            raise NotAModelError(f"{where}: {INFO_FILE} lacks {', '.join(missing)}")
        metric = data.get("metric", Metric.ACCURACY.value)
        if metric not in {m.value for m in Metric}:
            allowed = ", ".join(m.value for m in Metric)
            raise NotAModelError(f"{where}: metric {metric!r} is not one of: {allowed}")
        values = {k: v for k, v in data.items() if k in known}
        values["labels"], values["text_columns"] = (
            tuple(data["labels"]),
            tuple(data["text_columns"]),
        )
        precisions = data.get("precisions", {})
        if not isinstance(precisions, dict):
            raise NotAModelError(f"{where}: precisions is not a JSON object")
        values["precisions"] = {
            str(name): PrecisionScore.from_json(entry, where) for name, entry in precisions.items()
        }
        speeds = data.get("speeds", {})
        if not isinstance(speeds, dict):
            raise NotAModelError(f"{where}: speeds is not a JSON object")
        values["speeds"] = {str(k): TableSpeed.from_json(v, where) for k, v in speeds.items()}
        return cls(**values)


def describe(folder: Path, info: ModelInfo, tokenizer: PreTrainedTokenizerBase) -> None:
    """Write the tokenizer, ``autoprumux.json`` and the model card into a model folder. What
    it records already of the figures added after its trial (per precision, the table's speeds,
    the held-out test) is kept where ``info`` has none: a folder's weights never change once it
    is built (``trainers.trial.artifacts.build_once``), so a rerun of its trial describes the
    same weights. Read and rewritten under the folder's lock."""
    staging = folder / f".tokenizer.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        tokenizer.save_pretrained(str(staging))
        for written in sorted(staging.iterdir()):
            with atomic_path(folder / written.name) as target:
                shutil.copyfile(written, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with explained_write_errors(folder / INFO_FILE), _info_lock(folder):
        try:
            recorded = read_info(folder)
        except NotAModelError:  # a new folder (or an unreadable description: written anew)
            _write(folder, info)
            return
        kept = dataclasses.replace(
            info,
            precisions={**recorded.precisions, **info.precisions},
            speeds=info.speeds or recorded.speeds,
        )
        if info.test_score is None:
            kept = dataclasses.replace(
                kept, test_score=recorded.test_score, test_examples=recorded.test_examples
            )
        _write(folder, kept)


def record_test_score(folder: Path, score: float, examples: int) -> ModelInfo:
    """Add the held-out test figure to a described model folder: ``autoprumux.json``, then
    the model card, each rewritten by rename (a reader never sees half a file)."""
    return _update(
        folder, lambda info: dataclasses.replace(info, test_score=score, test_examples=examples)
    )


def record_precisions(folder: Path, scores: dict[str, PrecisionScore]) -> ModelInfo:
    """Add (or replace) the dev figures per precision of a described model folder:
    ``autoprumux.json``, then the model card, each rewritten by rename."""
    return _update(
        folder,
        lambda info: dataclasses.replace(info, precisions={**info.precisions, **scores}),
    )


def record_speeds(folder: Path, speeds: dict[str, TableSpeed]) -> ModelInfo:
    """Set the throughput table's figures per precision of a described model folder (the
    last search's: older ones may be of another table), rewritten as above."""
    return _update(folder, lambda info: dataclasses.replace(info, speeds=dict(speeds)))


def _update(folder: Path, change: Callable[[ModelInfo], ModelInfo]) -> ModelInfo:
    """Read ``autoprumux.json``, change it and write it and the card back, under the folder's
    lock: another process's figure recorded meanwhile is not overwritten with an older read.
    A folder that cannot be written (read-only, a full disk) is one line (DataError)."""
    with explained_write_errors(folder / INFO_FILE), _info_lock(folder):
        info = change(read_info(folder))
        _write(folder, info)
    return info


def _info_lock(folder: Path) -> FileLock:
    # inside the folder: recording needs write access there anyway, and none beside it
    return FileLock(str(folder / INFO_LOCK))


def _write(folder: Path, info: ModelInfo) -> None:
    write_text_atomic(folder / INFO_FILE, json.dumps(info.to_json(), indent=1) + "\n")
    write_text_atomic(folder / CARD_FILE, model_card(info))


def export_source(path: str | Path) -> Path:
    """``export --model PATH`` as the model folder an export reads (its weights, architecture
    and tokenizer files); a file ``export`` wrote, or nothing there, refused in one line naming
    ``--model`` before any work: an exported file holds a traced graph, not the model."""
    path = Path(path).expanduser()
    if path.is_file():
        raise FieldError(
            "--model",
            f"{path} is a file; export reads a model folder (a trial's, holding {INFO_FILE}), "
            "not a file `autoprumux export` wrote",
        )
    if not path.is_dir():
        raise FieldError("--model", f"{path}: no such model folder")
    return path


def read_info(folder: Path) -> ModelInfo:
    path = folder / INFO_FILE
    if not path.is_file():
        if (folder / "config.json").is_file():  # `export --format transformers` wrote it
            raise NotAModelError(
                f"{folder}: a transformers checkpoint, not an autoprumux model folder (no "
                f"{INFO_FILE}): serve it with transformers (its pipeline), or classify with the "
                "trial folder it was exported from"
            )
        raise NotAModelError(
            f"{folder}: not an autoprumux model folder (no {INFO_FILE}); a search's or "
            "`autoprumux train`'s trial folder is one (rerun the train command to describe a "
            "folder trained by an older version)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NotAModelError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise NotAModelError(f"{path}: not a JSON object")
    return ModelInfo.from_json(data, str(path))


def model_card(info: ModelInfo) -> str:
    """The folder's README.md: what the model is, how it was made, how to use it, its figures."""
    pair = len(info.text_columns) > 1
    inputs = " and ".join(f"`{c}`" for c in info.text_columns)
    grouping = (
        f"It classifies {info.n} inputs in one forward pass, grouped "
        f"{info.n} at a time in input order, so a prediction depends on which inputs share its "
        "group: shuffling the rows, or sending them in other requests (which regroups them), "
        "changes some labels, and the same text can be labelled differently in different "
        "groups. The recorded dev figure is of the dev file's order."
        if info.n > 1
        else "It classifies one input per forward pass."
    )
    throughput = (
        f"{info.throughput:,.1f} examples/s on {info.throughput_device}, timed inside the "
        "trial (beside whatever else ran; compare models with `autoprumux measure --trained`)"
        if info.throughput
        else "not measured"
    )
    # printf, not echo: the pair's tab must reach classify as a tab when pasted into a shell
    example = "echo 'a fine film'" if not pair else "printf 'first sentence\\tsecond sentence\\n'"
    # a pair model refuses a line without its tab, so the file example says the line's form
    input_file = (
        "pairs.txt    # one pair per line: FIRST<TAB>SECOND"
        if pair
        else "sentences.txt    # one input per line"
    )
    teacher = f"pruned from `{info.teacher}` with distillation" if info.teacher else "not pruned"
    recorded = "recorded by its trial"
    if info.test_score is not None:
        recorded += "; test by its search, once it had answered"
    return f"""# {info.task} classifier {info.point}, trained by autoprumux

A BERT-style {info.task} classifier compressed with data multiplexing (N = {info.n}) and
structured pruning (target sparsity s = {info.sparsity:g}). {grouping}

Labels: {", ".join(f"`{label}`" for label in info.labels)}. Input: {inputs}
{"(a sentence pair)" if pair else "(one sentence)"}, at most {info.max_length} tokens (longer
inputs are truncated).

## Figures ({recorded})

| | |
|---|---|
{_score_rows(info)}
| sparsity | {info.achieved_sparsity:.4f} of the prunable encoder parameters \
(target {info.sparsity:g}) |
| prunable parameters kept | {info.parameters:,} |
| throughput | {throughput} |
{_precision_section(info)}
## How it was made

- study `{info.study}` (`{info.study_file}`), recipe `{info.recipe}`, seed {info.seed}
- base model `{info.base_model}`; {teacher}
- trained with {_numerics(info.numerics)}; autoprumux {info.autoprumux_version}

## How to use it

```
autoprumux classify --model THIS_FOLDER --input {input_file}
{example} | autoprumux classify --model THIS_FOLDER --json
autoprumux export --model THIS_FOLDER --format onnx --out model.onnx
```

```python
from autoprumux import load_model

model = load_model("THIS_FOLDER")
model.predict([{"('a fine film', 'a good movie')" if pair else "'a fine film'"}])
```
"""


def _score_rows(info: ModelInfo) -> str:
    """The dev row, and beside it the test row once the test figure is known: dev is what the
    search chose on (so it flatters the choice), test what to expect."""
    dev = (
        f"| dev {info.metric_label} | {info.dev_accuracy:.4f} on the first {info.dev_examples} "
        "dev examples"
    )
    if info.test_score is None:
        return dev + " |"
    return (
        f"{dev} (what the choice was made on) |\n"
        f"| test {info.metric_label} | {info.test_score:.4f} on {info.test_examples:,} held-out "
        "test examples (what to expect) |"
    )


def _precision_section(info: ModelInfo) -> str:
    """The model in each precision it was evaluated or timed in: its dev figure beside fp32's
    (an export's fp32 file's where there is one: the same runtime as int8, so the difference is
    the precision's alone; else the trial's own, PyTorch fp32), and the throughput table's
    examples/s and batch-1 latency at its (N, s)."""
    names = set(info.precisions) | set(info.speeds)
    if not names:
        return ""
    fp32 = info.precisions.get("fp32")
    reference = fp32.dev if fp32 is not None else info.dev_accuracy
    rows = []
    for name in sorted(names | {"fp32"}, key=lambda n: (n != "fp32", n)):
        entry = info.precisions.get(name)
        if entry is not None:
            runtime = f"{entry.runtime} ({entry.recipe})" if entry.recipe else entry.runtime
            delta = f"{100 * (entry.dev - reference):+.2f} points" if name != "fp32" else ""
            dev = f"{entry.dev:.4f} on the first {entry.dev_examples} dev examples"
        elif name == "fp32":
            runtime, delta = "torch (its trial)", ""
            dev = f"{info.dev_accuracy:.4f} on the first {info.dev_examples} dev examples"
        else:
            runtime, delta, dev = "", "", "not evaluated"
        speed = info.speeds.get(name)
        if speed is None:
            timed = "| | |"  # the two speed cells, empty: every row has the header's 6 cells
        else:
            # the table times dynamic int8: a static file's row is scaled to it by its speed
            # against dynamic (the table's description says so), else it is dynamic's
            static = entry is not None and entry.static_int8 and entry.speed is None
            caveat = " (timed as dynamic int8)" if static else ""
            timed = f"| {speed.throughput:,.1f}{caveat} | {_latency(speed)}{caveat} |"
        rows.append(f"| {name} | {runtime} | {dev} | {delta} {timed}")
    tables = sorted({s.table for s in info.speeds.values()})
    source = f"\nexamples/s and latency: {'; '.join(tables)}.\n" if tables else ""
    source += _int8_batch_note(info)
    return f"""
## Precisions (evaluated on dev after training, or by `autoprumux export --precision`)

| precision | runtime | dev {info.metric_label} | vs fp32 | examples/s | latency (batch 1) |
|---|---|---|---|---|---|
{chr(10).join(rows)}
{source}"""


def _int8_batch_note(info: ModelInfo) -> str:
    """What a dynamic int8 figure holds at: ONNX Runtime's dynamic quantization computes each
    activation's scale from the batch in the forward pass (the largest value of the tensor),
    so an input's int8 probabilities depend on the inputs served beside it. A static QDQ
    file's scales are fixed by its calibration."""
    int8 = info.precisions.get("int8")
    if int8 is None or int8.static_int8:
        return ""
    inputs = "inputs" if info.n == 1 else f"groups of {info.n} inputs"
    return f"""
int8 is ONNX Runtime's dynamic quantization: it scales the activations per batch, so an int8
prediction depends on the batch it is served in (`classify --batch`, and the inputs beside it).
The int8 figure above is at `--batch {DEFAULT_BATCH}` ({DEFAULT_BATCH} {inputs} a forward pass, \
in the dev file's order).
"""


def _latency(speed: TableSpeed) -> str:
    return "not timed" if speed.latency_s is None else f"{1000 * speed.latency_s:.2f} ms"


def _numerics(numerics: dict[str, Any]) -> str:
    if not numerics:
        return "unrecorded numerics"
    return ", ".join(f"{key} {value}" for key, value in sorted(numerics.items()))
