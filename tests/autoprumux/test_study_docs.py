"""docs/studies.md's field tables are the study fields' declarations (autoprumux.core.study_fields):
generated from them, and checked to be up to date."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autoprumux.core.study import SECTIONS, STUDY_FIELDS
from autoprumux.core.study_fields import (
    Effect,
    Stage,
    about,
    downstream,
    field_info,
    field_table,
    field_tables_in,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "studies.md"


def test_the_docs_field_tables_are_generated_from_the_declarations():
    text = DOCS.read_text()
    assert field_tables_in(text, SECTIONS) == text, (
        "docs/studies.md is out of date: run .venv/bin/python benchmarks/write_study_tables.py"
    )


def test_the_docs_hold_one_table_per_section_with_every_field_and_its_help():
    text = DOCS.read_text()
    assert sorted(re.findall(r"<!-- generated: \[(\w+)\] fields", text)) == sorted(SECTIONS)
    for name, item in STUDY_FIELDS.items():
        section, _, key = name.partition(".")
        table = text.split(f"<!-- generated: [{section}] fields")[1].split("<!-- end")[0]
        row = next(line for line in table.splitlines() if line.startswith(f"| `{key}` |"))
        info = field_info(item)
        assert row.endswith(f"| {info.effect.value} | {info.help} |"), name


@dataclass(frozen=True)
class Example:
    task: str = field(metadata=about(Effect.RESULT, "the task", Stage.TEACHER))
    rate: float = field(default=2e-5, metadata=about(Effect.RESULT, "a rate", Stage.TRIAL))
    epochs: float = field(default=40.0, metadata=about(Effect.RESULT, "epochs", Stage.TRIAL))
    widths: tuple[float, ...] = field(default=(0.0, 0.65), metadata=about(Effect.SEARCH, "grid"))
    fast: bool = field(default=False, metadata=about(Effect.SPEED, "compile"))
    url: str = field(default="", metadata=about(Effect.RECORD, "where"))
    mode: str = field(default="auto", metadata=about(Effect.RECORD, "how"))


def test_a_field_table_shows_defaults_as_a_study_file_writes_them():
    assert field_table(Example) == (
        "| field | default | changes | meaning |\n"
        "|---|---|---|---|\n"
        "| `task` | required | result | the task |\n"
        "| `rate` | 2e-5 | result | a rate |\n"
        "| `epochs` | 40.0 | result | epochs |\n"
        "| `widths` | `[0.0, 0.65]` | search | grid |\n"
        "| `fast` | false | speed | compile |\n"
        "| `url` | empty | record | where |\n"
        "| `mode` | `auto` | record | how |\n"
    )


def test_only_the_generated_tables_are_rewritten():
    text = (
        "intro\n<!-- generated: [example] fields (x) -->\n| stale |\n<!-- end generated -->\n"
        "outro | kept\n"
    )
    rewritten = field_tables_in(text, {"example": Example})
    assert rewritten == text.replace("| stale |\n", field_table(Example))
    assert field_tables_in(rewritten, {"example": Example}) == rewritten


def test_a_result_field_names_the_stages_that_read_it_and_no_other_field_does():
    with pytest.raises(ValueError, match="names stages only if it decides results"):
        about(Effect.RESULT, "read by no artifact")
    with pytest.raises(ValueError, match="names stages only if it decides results"):
        about(Effect.SPEED, "a speed setting", Stage.TRIAL)


def test_a_stage_rebuilds_the_stages_built_from_it():
    assert downstream({Stage.WARMUP}) == {Stage.WARMUP, Stage.TEACHER, Stage.TRIAL}
    assert downstream({Stage.TEACHER, Stage.TRIAL}) == {Stage.TEACHER, Stage.TRIAL}
    assert downstream({Stage.TRIAL}) == {Stage.TRIAL}
    assert downstream(()) == frozenset()
