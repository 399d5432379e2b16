"""Where a study's labelled text comes from and what its columns mean, resolved from ``[data]``
(and, for a GLUE preset, from :mod:`autoprumux.core.tasks`): one :class:`DataSpec` that the
engine's loader (:mod:`trainers.data.tables`) reads, whatever the source -- the study's own
files, a datasets-hub dataset, a local GLUE folder or GLUE on the hub.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoprumux.core.errors import DataError
from autoprumux.core.study import DataSource, Study
from autoprumux.core.tasks import TASKS, TaskSpec

GLUE_HUB_DATASET = "nyu-mll/glue"


class FileFormat(enum.Enum):
    CSV = "csv"
    TSV = "tsv"
    JSON = "json"  # JSON Lines: one object per line
    PARQUET = "parquet"


# extension -> format; a compressed file's format is that of the name without the compression
_EXTENSIONS = {
    ".csv": FileFormat.CSV,
    ".tsv": FileFormat.TSV,
    ".txt": FileFormat.TSV,
    ".json": FileFormat.JSON,
    ".jsonl": FileFormat.JSON,
    ".ndjson": FileFormat.JSON,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
}
COMPRESSIONS = (".gz", ".xz", ".bz2", ".zst")  # .zst: where the zstandard package is installed


def file_format(path: str | Path, declared: str = "auto") -> FileFormat:
    """The format of ``path``: ``declared`` unless it is ``auto``, else its extension's (under
    any compression)."""
    if declared != "auto":
        return FileFormat(declared)
    name = Path(path).name.lower()
    for compression in COMPRESSIONS:
        name = name.removesuffix(compression)
    found = _EXTENSIONS.get(Path(name).suffix)
    if found is None:
        raise DataError(
            str(path),
            "has no known extension (.csv, .tsv, .jsonl, .parquet, compressed or not); set "
            "[data] format",
        )
    return found


@dataclass(frozen=True, kw_only=True)
class FileSource:
    """A split in a local file."""

    path: Path
    format: FileFormat
    glue: bool = False  # a GLUE preset's file (a missing one says what a GLUE folder holds)

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True, kw_only=True)
class HubSource:
    """A split of a datasets-hub dataset (``datasets.load_dataset(dataset, config)[split]``)."""

    dataset: str
    config: str
    split: str

    def describe(self) -> str:
        config = f" ({self.config})" if self.config else ""
        return f"{self.dataset}{config} split {self.split!r}"


Source = FileSource | HubSource


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """A study's labelled text: its splits, its columns and how the missing splits are carved."""

    task: str  # what records name it: the preset, else the study's name
    train: Source
    dev: Source | None  # None: carved from train
    test: Source | None  # None: carved from train when test_fraction > 0, else no test split
    text: str  # the column of the (first) text
    text_pair: str  # the second text's column, "" for single-text tasks
    label: str  # the gold label's column
    labels: tuple[str, ...]  # the label values in classifier order; () from the training data
    # display names of integer labels (a GLUE preset whose files hold 0/1): label id -> name
    label_meanings: tuple[str, ...]
    dev_fraction: float
    dev_max_rows: int
    test_fraction: float
    seed: int  # the carving's and the random subset's (the study's seed, whatever a trial's)
    max_train_examples: int
    max_eval_examples: int
    subset: str  # "first" or "random"

    @property
    def text_columns(self) -> tuple[str, ...]:
        return (self.text, self.text_pair) if self.text_pair else (self.text,)


def data_spec(study: Study) -> DataSpec:
    """The study's :class:`DataSpec`: its own data (``[data] train`` or ``dataset``), else its
    GLUE preset's."""
    data = study.data
    if not data.has_own_data:
        return _preset_spec(study, TASKS[study.study.task])
    if not data.text or not data.label:
        missing = "text" if not data.text else "label"
        raise DataError(
            f"[data] {missing}",
            "is empty; name the column (autoprumux init writes a study with the columns it finds)",
        )
    sources: dict[str, Source | None]
    if data.dataset:
        sources = {
            name: HubSource(dataset=data.dataset, config=data.config, split=split)
            if split
            else None
            for name, split in (
                ("train", data.train_split),
                ("dev", data.dev_split),
                ("test", data.test_split),
            )
        }
    else:
        sources = {
            name: FileSource(path=study.resolve(path), format=file_format(path, data.format))
            if path
            else None
            for name, path in (("train", data.train), ("dev", data.dev), ("test", data.test))
        }
    train = sources["train"]
    assert train is not None  # has_own_data: train or a dataset's train_split
    return _spec(
        study,
        task=study.task,
        train=train,
        dev=sources["dev"],
        test=sources["test"],
        text=data.text,
        text_pair=data.text_pair,
        label=data.label,
        labels=data.labels,
        label_meanings=(),
    )


def _spec(study: Study, **where: Any) -> DataSpec:
    """A :class:`DataSpec` of the sources and columns ``where`` gives, carved and drawn as the
    study's ``[data]`` and seed say."""
    data = study.data
    return DataSpec(
        **where,
        dev_fraction=data.dev_fraction,
        dev_max_rows=data.dev_max_rows,
        test_fraction=data.test_fraction,
        seed=study.study.seed,
        max_train_examples=data.max_train_examples,
        max_eval_examples=data.max_eval_examples,
        subset=data.subset,
    )


def _preset_spec(study: Study, spec: TaskSpec) -> DataSpec:
    """A GLUE task from a local GLUE folder (``<split>.tsv`` or ``.tsv.xz``) or from the hub;
    labels numbered as the hub numbers them."""
    data = study.data
    train: Source
    dev: Source
    if data.source is DataSource.GLUE_DIR:
        folder = study.resolve(data.glue_dir) / spec.glue_folder
        train, dev = (
            FileSource(path=_glue_file(folder / name), format=FileFormat.TSV, glue=True)
            for name in (spec.glue_train_file, spec.glue_dev_file)
        )
        text, text_pair = (*spec.glue_text_columns, "")[:2]
        label = spec.glue_label_column
    else:
        train, dev = (
            HubSource(dataset=GLUE_HUB_DATASET, config=spec.hub_config, split=split)
            for split in ("train", spec.dev_split)
        )
        text, text_pair = (*spec.text_fields, "")[:2]
        label = "label"  # the hub's ClassLabel ids
    by_id = spec.label_texts
    values = (
        by_id  # MNLI's and QNLI's files hold the names
        if spec.label_names and data.source is DataSource.GLUE_DIR
        else tuple(str(k) for k in range(spec.num_labels))
    )
    return _spec(
        study,
        task=spec.name,
        train=train,
        dev=dev,
        test=None,
        text=text,
        text_pair=text_pair,
        label=label,
        labels=values,
        label_meanings=by_id,
    )


def _glue_file(path: Path) -> Path:
    """``path``, else ``path.xz`` where only that exists (the SST-2 autoprumux ships is
    compressed); a missing file is refused where it is read."""
    compressed = path.with_name(path.name + ".xz")
    return compressed if not path.is_file() and compressed.is_file() else path
