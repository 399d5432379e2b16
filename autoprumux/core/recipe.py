"""A study's recipe: the study fields that decide a trial's result (their ``about(...)``
effect is ``Effect.RESULT``, :mod:`autoprumux.core.study_fields`), and how a stored study's
recorded recipe is compared with a study file's, so that results trained under another recipe
are never reused and a changed speed setting (``[training] compile``, ``checkpoint_every``)
refuses nothing.

A storage records :func:`recipe_settings` (a JSON object, ``{"section.field": value}``) and
compares what it holds with :func:`recipe_conflicts`; releases before recorded a hash instead
(:data:`_LEGACY_RECIPE_FIELDS`), which is still accepted for the same results.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field

from autoprumux.core.study import REMOVED_FIELDS, STUDY_FIELDS, Study
from autoprumux.core.study_fields import at_default, field_info


def recipe_settings(study: Study) -> dict[str, object]:
    """Every field that decides a trial's result (the task, the seed, ``[model]``, ``[data]``,
    ``[multiplexing]``, ``[warmup]`` and ``[training]`` but for its speed settings), as
    ``{"section.field": value}`` with JSON values."""
    return {
        name: _json_value(getattr(getattr(study, name.partition(".")[0]), item.name))
        for name, item in STUDY_FIELDS.items()
        if field_info(item).decides_results
    }


def recipe_hash(study: Study) -> str:
    """:attr:`Study.recipe`: a short hash of :func:`recipe_settings`, less the fields added
    later and left at their default (``added_later``), so that adding a setting keeps every
    recipe."""
    hashed = {
        name: value
        for name, value in recipe_settings(study).items()
        if not (field_info(STUDY_FIELDS[name]).added_later and _at_default(name, value))
    }
    text = json.dumps(hashed, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def recipe_record(study: Study) -> RecipeRecord:
    """What a storage records of a study's recipe and compares a stored one with
    (:func:`recipe_conflicts`)."""
    return RecipeRecord(
        settings=recipe_settings(study), hash=study.recipe, legacy_hashes=_legacy_recipes(study)
    )


@dataclass(frozen=True, kw_only=True)
class RecipeRecord:
    """A study's recipe as a storage keeps it: ``settings`` is what it records (a JSON
    object); ``hash`` and ``legacy_hashes`` are what an older record may hold instead."""

    settings: Mapping[str, object]  # recipe_settings(study)
    hash: str  # Study.recipe
    legacy_hashes: frozenset[str]  # what releases before the settings record stored for it
    # the content keys of what its trials read by path, which the settings hold the path of:
    # "data" (trainers.data.tables.data_id), "model" (a local model folder's files); a file
    # edited in place keeps its path
    contents: Mapping[str, str] = field(default_factory=dict)


def recipe_conflicts(stored: object, current: RecipeRecord) -> list[str]:
    """Why a stored study's results do not apply to ``current``: one line per result-deciding
    field that differs (``"training.finetune_learning_rate: 2e-05 recorded, 3e-05 now"``);
    empty when they apply. ``stored`` is what the storage recorded: the settings (a dict; a
    field it lacks was added since and counts at its default, a field that decides no result
    or was removed is ignored), or an older release's hash (accepted when it is the hash that
    release made of this study file, whatever its speed settings were: :func:`_legacy_recipes`)."""
    if isinstance(stored, str):
        if stored == current.hash or stored in current.legacy_hashes:
            return []
        return [
            f"the recipe hash {stored!r} recorded by an older autoprumux is not this study "
            "file's: a field that decides results changed since"
        ]
    if not isinstance(stored, Mapping):
        return [f"the recorded recipe {stored!r} is neither settings nor a hash"]
    conflicts = []
    for name, value in current.settings.items():
        default = STUDY_FIELDS[name].default
        if name not in stored and default is MISSING:
            conflicts.append(f"{name}: not recorded, {value!r} now")
            continue
        # a field the record lacks was added since: the trials were trained at its default
        before = stored[name] if name in stored else _json_value(default)
        if before != value:
            conflicts.append(f"{name}: {before!r} recorded, {value!r} now")
    conflicts += [f"{name}: recorded by a newer autoprumux, unknown here" for name in newer(stored)]
    return conflicts


def newer(stored: object) -> list[str]:
    """The recorded recipe's fields this release does not know: a newer one recorded them."""
    if not isinstance(stored, Mapping):
        return []
    return [n for n in stored if n not in STUDY_FIELDS and n not in REMOVED_FIELDS]


def _json_value(value: object) -> object:
    """A setting as a JSON storage gives it back: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _at_default(name: str, value: object) -> bool:
    item = STUDY_FIELDS[name]
    return item.default is not MISSING and value == _json_value(item.default)


# What releases before the recorded settings stored as a study's recipe: a hash of the seed and
# of every field these sections had then (the group_by_length ones only when set), three of
# which decide no result.
_LEGACY_RECIPE_FIELDS = {
    "model": ("name_or_path", "max_seq_length", "num_layers", "multiplexed_name_or_path"),
    "data": ("source", "glue_dir", "max_train_examples", "max_eval_examples", "subset"),
    "training": (
        *("finetune_epochs", "pruning_epochs", "lagrangian_warmup_epochs"),
        *("post_pruning_epochs", "finetune_steps", "pruning_steps", "lagrangian_warmup_steps"),
        *("post_pruning_steps", "batch_rows", "finetune_learning_rate", "new_learning_rate"),
        *("freeze_word_embeddings", "pruning_learning_rate", "l0_learning_rate"),
        *("lagrangian_learning_rate", "distill_temperature", "distill_ce_alpha"),
        *("sparsity_epsilon", "max_grad_norm", "checkpoint_every", "dropout"),
        *("distill_from_n1", "group_by_length", "precision", "compile"),
    ),
    "multiplexing": ("style", "demux", "key_norm", "demux_depth", "pooling"),
    "warmup": (
        *("steps_per_instance", "batch_rows", "max_length", "learning_rate"),
        *("new_learning_rate", "positions", "negatives", "mlm_steps", "text", "group_by_length"),
    ),
}
_LEGACY_WHEN_SET = ("training.group_by_length", "warmup.group_by_length")
# The fields of the old hash that decide no result, and the values it may have been made with
# besides the study file's current ones: each default (and the shipped studies' values), and
# both of a switch.
_LEGACY_FREE: dict[str, tuple[object, ...]] = {
    "training.checkpoint_every": (200, 100),  # the default, the tiny study's
    "training.compile": (False, True),
    "training.sparsity_epsilon": (0.01,),  # removed: its only default
}


def _legacy_recipes(study: Study) -> frozenset[str]:
    """The hashes an older release recorded for a study whose result-deciding fields are
    ``study``'s, one per combination of the :data:`_LEGACY_FREE` values; none for a study that
    sets a field that release did not have."""
    sections = {name: getattr(study, name) for name in _LEGACY_RECIPE_FIELDS}
    for name, item in STUDY_FIELDS.items():
        section, _, key = name.partition(".")
        newer = section in sections and key not in _LEGACY_RECIPE_FIELDS[section]
        if newer and not at_default(item, getattr(sections[section], key)):
            return frozenset()
    choices = [(name, {*values, *_current(study, name)}) for name, values in _LEGACY_FREE.items()]
    hashes = set()
    for values in itertools.product(*(options for _, options in choices)):
        free = {name: value for (name, _), value in zip(choices, values, strict=True)}
        parts: list[object] = [study.study.seed]
        for section, names in _LEGACY_RECIPE_FIELDS.items():
            part = {}
            for key in names:
                name = f"{section}.{key}"
                value = free[name] if name in free else getattr(sections[section], key)
                if not (name in _LEGACY_WHEN_SET and value is False):
                    part[key] = value
            parts.append(part)
        text = json.dumps(parts, sort_keys=True, default=str)  # enums as str(): as it did
        hashes.add(hashlib.sha256(text.encode()).hexdigest()[:12])
    return frozenset(hashes)


def _current(study: Study, name: str) -> tuple[object, ...]:
    """A field's value in ``study``; none for a removed field."""
    section, _, key = name.partition(".")
    return (getattr(getattr(study, section), key),) if name in STUDY_FIELDS else ()
