"""What each study field declares about itself, in one place: its help text, what it changes
(:class:`Effect`) and which artifacts' builds read it (:class:`Stage`).

The study sections (:mod:`autoprumux.core.study`) attach a :class:`FieldInfo` to every field
as dataclass field metadata, in the style of transformers' ``TrainingArguments``::

    finetune_learning_rate: float = field(
        default=2e-5, metadata=about(Effect.RESULT, "task fine-tuning's", Stage.TEACHER)
    )

and every reader takes it from there: ``Study.recipe`` holds exactly the fields of
``Effect.RESULT``; the cache keys (``trainers/trial/cache_keys.py``) are tested against each
field's stages; docs/studies.md's field tables are :func:`field_tables_in` of the sections.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

METADATA_KEY = "autoprumux"  # the key of a field's FieldInfo in its dataclass metadata


class Effect(enum.Enum):
    """What changing a study field changes."""

    RESULT = "result"  # the trained models and their accuracy: the recipe and the cache keys
    SEARCH = "search"  # which (N, s) points a search may train ([grid])
    MEASUREMENT = "measurement"  # how throughput is measured ([throughput]), not what is trained
    SPEED = "speed"  # how fast a training runs or resumes, not what it learns
    RECORD = "record"  # names, notes and where results are stored


class Stage(enum.Enum):
    """The artifacts a trial builds, in build order: each starts from the one before."""

    WARMUP = "warmup"  # the retrieval warm-up of width N (N > 1, without a multiplexed checkpoint)
    TEACHER = "teacher"  # the fine-tuned (N, 0) model
    TRIAL = "trial"  # the pruned, materialized and fine-tuned (N, s) model


EVERY_STAGE = frozenset(Stage)


def downstream(stages: Iterable[Stage]) -> frozenset[Stage]:
    """The stages whose artifacts a change of these stages' settings rebuilds: each stage's
    artifact enters the cache key of the next by its folder name."""
    order = list(Stage)
    first = min((order.index(stage) for stage in stages), default=len(order))
    return frozenset(order[first:])


@dataclass(frozen=True, kw_only=True)
class FieldInfo:
    """A study field's declaration: read by the recipe, the cache-key tests and the docs."""

    help: str  # one markdown sentence or two: docs/studies.md's "meaning" column
    effect: Effect
    # the stages whose build reads the field directly (Effect.RESULT only); the later stages
    # follow through their cache keys (downstream)
    stages: frozenset[Stage] = frozenset()
    # A field added after studies were stored and artifacts built: it enters the recipe hash
    # and the cache keys only when it differs from its default (which must be the behaviour
    # before it existed), so those keep their hashes.
    added_later: bool = False

    @property
    def decides_results(self) -> bool:
        return self.effect is Effect.RESULT


def about(
    effect: Effect, help: str, *stages: Stage, added_later: bool = False
) -> dict[str, FieldInfo]:
    """The metadata of a study field (``dataclasses.field(metadata=about(...))``)."""
    if (effect is Effect.RESULT) != bool(stages):
        # a programming error in a section's declaration, caught when the module is imported
        raise ValueError(f"a {effect.value} field names stages only if it decides results: {help}")
    info = FieldInfo(help=help, effect=effect, stages=frozenset(stages), added_later=added_later)
    return {METADATA_KEY: info}


def field_info(item: dataclasses.Field[Any]) -> FieldInfo:
    """The declaration of a section's field (every study field has one)."""
    info = item.metadata.get(METADATA_KEY)
    if not isinstance(info, FieldInfo):
        raise TypeError(f"study field {item.name!r} has no about(...) metadata")
    return info


def at_default(item: dataclasses.Field[Any], value: object) -> bool:
    return item.default is not MISSING and value == item.default


# -- docs/studies.md's field tables ---------------------------------------------------------

# A generated table sits between these two lines; the first names the section.
TABLE_START = re.compile(r"^<!-- generated: \[(\w+)\] fields .*-->$", flags=re.M)
TABLE_END = "<!-- end generated -->"


def field_rows(section: type) -> list[tuple[str, str, str, str]]:
    """(field, default, effect, help) of each field of a section dataclass, in order."""
    rows = []
    for item in dataclasses.fields(section):
        info = field_info(item)
        rows.append((f"`{item.name}`", _shown_default(item), info.effect.value, info.help))
    return rows


def field_table(section: type) -> str:
    """A section's fields as a markdown table."""
    lines = ["| field | default | changes | meaning |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in field_rows(section)]
    return "\n".join(lines) + "\n"


def field_tables_in(text: str, sections: Mapping[str, type]) -> str:
    """``text`` with every generated table replaced by its section's :func:`field_table`."""
    out, position = [], 0
    for start in TABLE_START.finditer(text):
        end = text.index(TABLE_END, start.end())
        out += [text[position : start.end()], "\n", field_table(sections[start.group(1)])]
        position = end
    return "".join(out) + text[position:]


def _shown_default(item: dataclasses.Field[Any]) -> str:
    if item.default is MISSING:
        return "required"
    value = item.default.value if isinstance(item.default, enum.Enum) else item.default
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()  # as TOML writes it
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(_number(v) for v in value) + "]`"
    return _number(value)


def _number(value: object) -> str:
    """A number as a study file would write it: 2e-5, 0.01, 40, 1024."""
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, _, exponent = f"{value:e}".partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"  # a float field reads as one: 40.0, not 40
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
