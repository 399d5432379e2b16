"""The cache keys and folders of a trial's artifacts (:mod:`trainers.trial.artifacts`), one key
function per kind. Each lists every setting its artifact's build reads, and nothing else: a
changed setting builds a new artifact, an unrelated one (the pruning's steps, for a teacher)
reuses the old. An upstream artifact enters a key by its folder name, which holds its own key:
a changed warm-up setting rebuilds the teachers that start from that warm-up, and a changed
teacher setting the trials pruned from that teacher.

- :func:`warmup_key`: the retrieval warm-up of width N (:mod:`trainers.trial.warmup_stage`), shared
  by every study in the studies folder with the same model, N, recipe and text;
- :func:`teacher_key`: the fine-tuned (N, 0) model of a study (:mod:`trainers.trial.teacher_stage`);
  :func:`checkpoint_teacher_key` where the (1, 0) teacher is a fine-tuned checkpoint as is;
- :func:`trial_key`: the pruned, materialized and fine-tuned (N, s) model
  (:mod:`trainers.trial.pruned_stage`).

Which artifacts read a study field is declared with the field (its ``about(...)`` stages,
:mod:`autoprumux.core.study_fields`); tests/trainers/test_cache_keys.py checks every key
against those declarations. The warm-up's own settings and its architecture are taken from
them (:func:`_read_by`); the other parts are listed by hand, where a key renames a setting,
groups it by phase or adds it only in some cases. Read by no artifact, so in no key: the fields
that decide no result (``[training] checkpoint_every`` and ``compile``: a resumed phase is the
same phase, a compiled model sums floats in another order, which each artifact records,
``numerics``; ``[grid]``, ``[throughput]``, ``[storage]``, the study's name, which names the
artifacts folder), and the ``precision`` setting itself (the precision it resolves to is keyed).

A setting added to a key later should enter it only when it differs from its default, so the
artifacts built before it existed keep their keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoprumux.core.data_spec import data_spec
from autoprumux.core.errors import DataError
from autoprumux.core.metrics import Metric
from autoprumux.core.package_paths import PACKAGE_SCHEME
from autoprumux.core.study import DataSource, FineTuned, Study
from autoprumux.core.study_fields import Stage, at_default, field_info
from trainers.data.tables import data_id, file_digest
from trainers.runtime.device import Precision
from trainers.trial.artifacts import cache_key, slug

# Bumped when the pruning's conventions change what a trained (N, s) is, so cached trials of
# the old rules are not reused: "cofi-exact" is CoFi's initialisation, size, ramp and clamp;
# "-token-layer-loss" its layer loss over real tokens only (trainers.training.phases.token_mse).
PRUNING_RULES = "cofi-exact-token-layer-loss"

# a key's settings: JSON values, hashed by trainers.trial.artifacts.cache_key
Settings = dict[str, object]


def warms_up(study: Study, n: int) -> bool:
    """Whether the (N, 0) teacher starts from this project's retrieval warm-up (else from a
    checkpoint: the base model for N = 1, a multiplexed one when the study names it)."""
    return n > 1 and not study.model.multiplexed_name_or_path


def starting_checkpoint(study: Study, n: int) -> str:
    """The checkpoint whose weights the model of width N starts from: the multiplexed one of
    width N when the study names it, else the base model (warmed up first for N > 1)."""
    template = study.model.multiplexed_name_or_path
    return template.format(n=n) if n > 1 and template else study.model.name_or_path


def declared_fine_tuned(study: Study) -> bool:
    """Whether the study says its checkpoint is a fine-tuned classifier (``[model] fine_tuned =
    true``). ``auto`` is decided by the checkpoint's weights, which a key does not read: the
    trial resolves it (:func:`trainers.model.label_map.is_fine_tuned`) and passes it on."""
    return study.model.fine_tuned is FineTuned.TRUE


def teacher_is_checkpoint(n: int, fine_tuned: bool) -> bool:
    """Whether the (N, 0) teacher is the fine-tuned checkpoint as is (N = 1), not trained."""
    return n == 1 and fine_tuned


def distills_from_n1(study: Study, n: int, fine_tuned: bool = False) -> bool:
    """Whether the (N, 0) fine-tuning also learns the (1, 0) teacher's logits: when the study
    asks, and always from a fine-tuned checkpoint (every (N, s) distils from it)."""
    return n > 1 and (study.training.distill_from_n1 or fine_tuned)


def warmup_key(study: Study, n: int, seed: int, precision: Precision) -> str:
    """The retrieval warm-up (and masked-LM steps) of the base model at width N."""
    model, mux, warmup = study.model, study.multiplexing, study.warmup
    settings: Settings = {
        "model": model.name_or_path,  # its weights and its tokenizer
        "num_layers": model.num_layers,
        # the task's sentences are encoded to it before they are cut to warmup.max_length (the
        # dev sentences of the token recovery too)
        "max_seq_length": model.max_seq_length,
        "n": n,
        # not pooling: the warm-up never pools, and the teacher sets the study's
        "multiplexing": _read_by(mux, Stage.WARMUP),
        # the text is keyed by its content (below), group_by_length beside (added later)
        "warmup": _read_by(warmup, Stage.WARMUP, besides=("text", "group_by_length")),
        "freeze_word_embeddings": study.training.freeze_word_embeddings,
        "seed": seed,
        "precision": precision.value,
    }
    if warmup.text:
        # a named text is shared across tasks; the task enters by its label count only: the
        # shape of the (untrained) classifier the artifact holds, and the random numbers its
        # initialisation draws before the retrieval head's. (The recorded token recovery is
        # measured on the dev sentences of the task that built it.)
        settings["text"] = warmup_text_id(study)
        settings["num_labels"] = label_count(study)
    else:
        settings["text"] = task_data_settings(study)
    _add_when_set(settings, "group_by_length", warmup.group_by_length)
    _add_model_files(settings, study)
    return cache_key(settings)


def teacher_key(
    study: Study,
    n: int,
    seed: int,
    precision: Precision,
    *,
    start: str,  # the warm-up's folder name (warms_up), else the starting_checkpoint
    guide: str | None,  # the folder name of the (1, 0) teacher (distills_from_n1), else None
    from_checkpoint: bool = False,  # teacher_is_checkpoint: evaluated, not trained
) -> str:
    """The fine-tuned (N, 0) model, the teacher of every (N, s) of the study."""
    model, training = study.model, study.training
    if from_checkpoint:
        return checkpoint_teacher_key(study, n, precision, start=start)
    settings: Settings = {
        "n": n,
        "start": start,
        "model": model.name_or_path,  # its tokenizer: the task's encoding and the [CLS] id
        "num_layers": model.num_layers,
        "max_seq_length": model.max_seq_length,
        "data": task_data_settings(study),
        "finetune": {
            "epochs": training.finetune_epochs,
            "steps": training.finetune_steps,
            "learning_rate": training.finetune_learning_rate,
            "new_learning_rate": training.new_learning_rate,
            "batch_rows": training.batch_rows,
            "max_grad_norm": training.max_grad_norm,
        },
        "freeze_word_embeddings": training.freeze_word_embeddings,
        "dropout": training.dropout,
        "seed": seed,
        "precision": precision.value,
    }
    if warms_up(study, n):
        # set on the warmed-up model (a multiplexed checkpoint brings its own architecture)
        settings["pooling"] = study.multiplexing.pooling
    if guide is not None:
        settings["guide"] = guide
        settings["distill_temperature"] = training.distill_temperature  # of the guide's logits
    _add_when_set(settings, "group_by_length", training.group_by_length)
    _add_metric(settings, study)
    _add_model_files(settings, study)
    return cache_key(settings)


def checkpoint_teacher_key(study: Study, n: int, precision: Precision, *, start: str) -> str:
    """The (1, 0) teacher that is a fine-tuned checkpoint as is: its head mapped onto the
    data's labels and evaluated on dev, never trained, so no training setting (nor the seed)
    is read. ``trained: False`` keeps it apart from every trained teacher's key."""
    model = study.model
    settings: Settings = {
        "n": n,
        "start": start,
        "trained": False,
        "model": model.name_or_path,
        "num_layers": model.num_layers,
        "max_seq_length": model.max_seq_length,
        "data": task_data_settings(study),  # the dev set, and the label order of the head
        "precision": precision.value,  # the evaluation's
    }
    _add_metric(settings, study)
    _add_model_files(settings, study)
    return cache_key(settings)


def trial_key(
    study: Study,
    n: int,
    sparsity: float,
    seed: int,
    precision: Precision,
    *,
    teacher: str,  # the (N, 0) teacher's folder name: its settings, the data's too
) -> str:
    """The (N, s) model: CoFi pruning of the teacher with distillation from it, then the
    materialized model's fine-tuning with the teacher's logits."""
    training = study.training
    settings: Settings = {
        "teacher": teacher,
        "n": n,
        "sparsity": sparsity,
        "pruning": {
            "epochs": training.pruning_epochs,
            "steps": training.pruning_steps,
            "lagrangian_warmup_epochs": training.lagrangian_warmup_epochs,
            "lagrangian_warmup_steps": training.lagrangian_warmup_steps,
            "learning_rate": training.pruning_learning_rate,
            "l0_learning_rate": training.l0_learning_rate,
            "lagrangian_learning_rate": training.lagrangian_learning_rate,
            "distill_ce_alpha": training.distill_ce_alpha,
        },
        "post_pruning": {
            "epochs": training.post_pruning_epochs,
            "steps": training.post_pruning_steps,
            "learning_rate": training.finetune_learning_rate,
            "new_learning_rate": training.new_learning_rate,
        },
        "distill_temperature": training.distill_temperature,  # both phases' logit KL
        "batch_rows": training.batch_rows,
        "max_grad_norm": training.max_grad_norm,
        "freeze_word_embeddings": training.freeze_word_embeddings,
        "dropout": training.dropout,
        "seed": seed,
        "precision": precision.value,
        "pruning_rules": PRUNING_RULES,
    }
    _add_when_set(settings, "group_by_length", training.group_by_length)  # both phases' batches
    _add_metric(settings, study)
    return cache_key(settings)


def _read_by(section: Any, stage: Stage, *, besides: tuple[str, ...] = ()) -> Settings:
    """The fields of a study section that ``stage``'s build reads (their declared stages), by
    name, less those ``besides`` (keyed by hand) and those added later and left at their
    default. Any: a study section dataclass."""
    return {
        item.name: getattr(section, item.name)
        for item in dataclasses.fields(section)
        if stage in field_info(item).stages
        and item.name not in besides
        and not (field_info(item).added_later and at_default(item, getattr(section, item.name)))
    }


def _add_metric(settings: Settings, study: Study) -> None:
    """What the model's record and its dev checks (early stopping) are in: added later, so in
    the keys only when it is not accuracy."""
    if study.study.metric is not Metric.ACCURACY:
        settings["metric"] = study.study.metric.value
        settings["positive_label"] = study.study.positive_label


def _add_when_set(settings: Settings, name: str, value: bool) -> None:
    """A setting added to the keys later: in them only when set, so that the artifacts built
    before it existed keep their keys."""
    if value:
        settings[name] = value


def _add_model_files(settings: Settings, study: Study) -> None:
    """A local model folder's content (:func:`model_files_id`), beside its name: added later,
    so a hub or package model keeps the keys of the artifacts built before."""
    files = model_files_id(study)
    if files is not None:
        settings["model_files"] = files


def task_data_settings(study: Study) -> Settings:
    """What decides the task's (train, dev) sentences (:mod:`trainers.trial.task_data`), besides the
    tokenizer and length of the model."""
    data = study.data
    settings: Settings = {
        "task": study.task,
        "source": data.source.value,
        "max_train_examples": data.max_train_examples,
        "max_eval_examples": data.max_eval_examples,  # the dev set the records measure
    }
    if data.has_own_data:
        # its files by content (a moved file still matches, an edited one does not), its columns,
        # labels and carving: data_id; a preset keeps the keys it had before own data existed
        settings["own_data"] = data_id(data_spec(study))
    elif data.source is DataSource.GLUE_DIR:
        # as written: relative to the study file's folder, which also holds the artifacts
        settings["glue_dir"] = data.glue_dir
    if data.max_train_examples:
        settings["subset"] = data.subset
        if data.subset == "random":
            settings["subset_seed"] = study.study.seed  # the study's, whatever a trial's seed
    return settings


# what of a model folder a training reads: its config, its weights and its tokenizer's files
MODEL_FILE_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.bin",
    "tokenizer*.json",
    "special_tokens_map.json",
    "vocab.*",
    "merges.txt",
    "*.model",
)


def model_files_id(study: Study) -> str | None:
    """What names a local model folder's content in the keys: a hash of the files a training
    reads (:data:`MODEL_FILE_PATTERNS`), so that a folder written again in place (a classifier
    fine-tuned anew into the same folder) keys new artifacts; None for a hub id or a package's
    model, whose name stands for its content."""
    name = study.model.name_or_path
    folder = Path(name).expanduser()
    if name.startswith(PACKAGE_SCHEME) or not folder.is_dir():
        return None
    files = sorted({f for pattern in MODEL_FILE_PATTERNS for f in folder.glob(pattern)})
    digests = []
    for file in files:
        stat = file.stat()
        digests.append(f"{file.name}:{file_digest(str(file), stat.st_size, stat.st_mtime_ns)}")
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]


def warmup_text_id(study: Study) -> str:
    """What names the warm-up text in its cache key: a file's content hash (so a moved file
    still matches and an edited one does not), or the hub id."""
    text = study.warmup.text
    if text.startswith("hub:"):
        return text
    path = study.resolve(text)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as err:
        raise DataError(f"[warmup] text {str(path)!r}", f"cannot be read: {err}") from None


def warmup_folder(study: Study, n: int, seed: int, precision: Precision = Precision.FP32) -> Path:
    """The warm-up artifact of this model, N, recipe and text; shared across studies."""
    source = slug(Path(study.warmup.text).stem) if study.warmup.text else study.task
    name = f"{slug(study.model.name_or_path)}-n{n}-{source}-{warmup_key(study, n, seed, precision)}"
    return study.folder.resolve() / "artifacts" / "warmup" / name


@dataclass(frozen=True, kw_only=True)
class TeacherFolders:
    """The folders of an (N, 0) teacher and of the artifacts it is built from."""

    warmup: Path | None  # the warm-up it starts from (warms_up)
    guide: Path | None  # the (1, 0) teacher whose logits it learns (distills_from_n1)
    teacher: Path


def teacher_folders(
    study: Study, n: int, seed: int, precision: Precision, fine_tuned: bool | None = None
) -> TeacherFolders:
    """The teacher's folder, ``<studies>/artifacts/<study>/teacher-n<N>-<key>``, and its
    upstream artifacts' (a named warm-up text is hashed once). ``fine_tuned``: whether the
    study's checkpoint is a fine-tuned classifier, as the trial resolved ``[model]
    fine_tuned``; None: as the study declares it (:func:`declared_fine_tuned`)."""
    if fine_tuned is None:
        fine_tuned = declared_fine_tuned(study)
    warmup = warmup_folder(study, n, seed, precision) if warms_up(study, n) else None
    guide = (
        teacher_folders(study, 1, seed, precision, fine_tuned).teacher
        if distills_from_n1(study, n, fine_tuned)
        else None
    )
    key = teacher_key(
        study,
        n,
        seed,
        precision,
        start=warmup.name if warmup else starting_checkpoint(study, n),
        guide=guide.name if guide else None,
        from_checkpoint=teacher_is_checkpoint(n, fine_tuned),
    )
    return TeacherFolders(
        warmup=warmup, guide=guide, teacher=study.artifacts_folder / f"teacher-n{n}-{key}"
    )


def trial_folder(
    study: Study, n: int, sparsity: float, seed: int, precision: Precision, *, teacher: Path
) -> Path:
    """The (N, s) model's folder, ``<studies>/artifacts/<study>/trial-n<N>-s<s>-<key>``."""
    key = trial_key(study, n, sparsity, seed, precision, teacher=teacher.name)
    return study.artifacts_folder / f"trial-n{n}-s{sparsity:g}-{key}"


def label_count(study: Study) -> int:
    """How many labels the study's classifier has: its preset's or ``[data] labels``' count,
    else read from its training data."""
    named = data_spec(study).labels
    if named:
        return len(named)
    from trainers.trial.task_data import task_tables  # reads the data: only when needed

    return len(task_tables(study).label_names)
