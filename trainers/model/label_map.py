"""A fine-tuned checkpoint's labels mapped onto the data's, by name.

A classifier someone fine-tuned numbers its labels in its own order (``config.json``'s
``id2label``); the data numbers them in its order (``TaskTables.label_names``). The orders
often differ (the transformers / optimum label swaps users hit are exactly this), so the head
is never trusted by position: each data label is looked up by
name among the checkpoint's, and the head's rows are permuted so that logit ``j`` is the data's
label ``j``. A label count or a name that does not match is refused in one line naming both
lists.

The rule (:func:`label_permutation`): names compare after ``str()``, exactly or, where that
leaves no two names alike, regardless of case (``NEGATIVE`` is ``negative``). A data label is
known by its display name (``negative``) and by its value in the data (``0``, where a preset's
files hold integers); the checkpoint's names must all be found among the data's display names,
or all among its values. transformers' default names ``LABEL_i`` (a config written without
``id2label``) stand for the data label whose name or value is ``str(i)``, and only when every
name of the checkpoint is of that form.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.study import FineTuned
from trainers.model.architecture import family_of
from trainers.model.checkpoints import (
    CheckpointError,
    map_key,
    read_hf_config,
    read_weights,
    resolve_model_path,
)
from trainers.model.classifier import Classifier

DEFAULT_NAME = re.compile(r"LABEL_(\d+)")  # transformers' name of a label id without id2label
HEAD_WEIGHT = "classifier.weight"  # our key of the head's last linear layer: [labels, size]


class LabelMismatch(AutoPruMuxError):
    """A checkpoint's labels cannot be mapped onto the data's (the message names both)."""


def label_permutation(
    checkpoint_labels: Sequence[str],
    data_labels: Sequence[str],
    data_values: Sequence[str] = (),
) -> tuple[int, ...]:
    """``permutation[j]``: the checkpoint's label id of the data's label ``j``, so that the
    head's rows ``weight[permutation]`` give logits in the data's order.

    ``checkpoint_labels``: the checkpoint's name of each of its ids, in id order;
    ``data_labels``: the data's display names in id order; ``data_values``: the data's raw
    label values in id order (empty: the display names are the values)."""
    theirs = tuple(str(name) for name in checkpoint_labels)
    ours = tuple(str(name) for name in data_labels)
    if len(theirs) != len(ours):
        raise LabelMismatch(
            f"its classification head has {len(theirs)} labels ({_listed(theirs)}), the data "
            f"{len(ours)} ({_listed(ours)})"
        )
    defaults = [m.group(1) for m in map(DEFAULT_NAME.fullmatch, theirs) if m]
    # a default name LABEL_i stands for the name str(i), only when every name is a default one
    wanted = defaults if len(defaults) == len(theirs) else list(theirs)
    # exact names first; then regardless of case where that is unambiguous: a hub classifier's
    # NEGATIVE / POSITIVE are the data's negative / positive
    for key in (str, str.casefold):
        want = [key(name) for name in wanted]
        for naming in (ours, tuple(str(v) for v in data_values)):
            names = [key(name) for name in naming]
            if len(names) == len(ours) == len(set(names)) and sorted(want) == sorted(names):
                return tuple(want.index(name) for name in names)
    missing = [
        (their, name)
        for their, name in zip(theirs, wanted, strict=True)
        if name not in ours and name not in data_values
    ]
    which = "they name a label twice"
    if missing:  # named as the checkpoint spells it, with what a default name stands for
        their, name = missing[0]
        read_as = "" if their == name else f" (read as {name!r})"
        which = f"{their!r}{read_as} is not one of the data's"
    raise LabelMismatch(
        f"its labels ({_listed(theirs)}) are not the data's ({_listed(ours)}): {which}; "
        "names must match (up to case)"
    )


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names)


def permute_head(model: Classifier, permutation: Sequence[int]) -> Classifier:
    """``model`` with its classifier's rows (weight and bias) reordered: logit ``j`` is then
    the old logit ``permutation[j]``. In place; returns the model."""
    order = torch.as_tensor(list(permutation), dtype=torch.long)
    if sorted(permutation) != list(range(model.classifier.out_features)):
        raise ValueError(f"{list(permutation)} is not a permutation of the model's labels")
    with torch.no_grad():
        linear = model.classifier
        linear.weight.copy_(linear.weight[order.to(linear.weight.device)].clone())
        linear.bias.copy_(linear.bias[order.to(linear.bias.device)].clone())
    return model


@dataclass(frozen=True)
class CheckpointHead:
    """What a checkpoint says of its classification head."""

    rows: int  # the head's labels (its last linear layer's rows); 0: it carries no head
    labels: tuple[str, ...]  # the name of each label id (LABEL_i where its config names none)


def checkpoint_labels(config: Mapping[str, Any], rows: int) -> tuple[str, ...]:
    """The name of each of a head's ``rows`` label ids, from ``config.json``'s ``id2label``
    (transformers' ``LABEL_i`` where it has none)."""
    id2label = config.get("id2label") or {}
    if not id2label:
        return tuple(f"LABEL_{i}" for i in range(rows))
    try:
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise FieldError("id2label", "has a key that is not a label id (an integer)") from None
    if sorted(by_id) != list(range(rows)):
        raise FieldError(
            "id2label", f"names ids {sorted(by_id)}, but the classification head has {rows} rows"
        )
    return tuple(by_id[i] for i in range(rows))


def read_head(folder: Path) -> CheckpointHead:
    """The classification head a checkpoint folder's weights carry (read from the file's
    header where it is safetensors)."""
    config = read_hf_config(folder)
    family = family_of(config)
    rows = 0
    for key, shape in _weight_shapes(folder).items():
        if map_key(key, family=family) == HEAD_WEIGHT:
            rows = int(shape[0])
    return CheckpointHead(rows, checkpoint_labels(config, rows) if rows else ())


def _weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    weights = folder / "model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    return {k: tuple(v.shape) for k, v in read_weights(folder).items()}


@functools.lru_cache(maxsize=8)
def checkpoint_head(name_or_path: str) -> CheckpointHead:
    """:func:`read_head` of a model named as a study names it (read once per process)."""
    folder = resolve_model_path(name_or_path)
    try:
        return read_head(folder)
    except FieldError as err:
        raise CheckpointError(f"model {name_or_path!r}: config.json {err}") from None


def is_fine_tuned(setting: FineTuned, name_or_path: str) -> bool:
    """Whether the checkpoint is the (1, 0) teacher as is (``[model] fine_tuned``): ``auto``
    when it carries a classification head; ``true`` refuses one that carries none."""
    if setting is FineTuned.FALSE:
        return False
    head = checkpoint_head(name_or_path)
    if setting is FineTuned.TRUE and not head.rows:
        raise CheckpointError(
            f"[model] fine_tuned = true, but {name_or_path!r} carries no classification head "
            "(no classifier weights): it is a base model; set fine_tuned = false to train one"
        )
    return bool(head.rows)


def head_permutation(
    name_or_path: str, data_labels: Sequence[str], data_values: Sequence[str] = ()
) -> tuple[int, ...]:
    """The permutation of a fine-tuned checkpoint's head onto the data's labels
    (:func:`label_permutation`); a mismatch is one line naming the model and both lists."""
    head = checkpoint_head(name_or_path)
    try:
        return label_permutation(head.labels, data_labels, data_values)
    except LabelMismatch as err:
        raise LabelMismatch(
            f"[model] name_or_path {name_or_path!r} is a fine-tuned classifier, but {err} (set "
            "[model] fine_tuned = false to train a new head)"
        ) from None
