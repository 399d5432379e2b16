"""Rewrite docs/studies.md's field tables from the study fields' declarations (their
``about(...)`` metadata in autoprumux/core/study.py), after a field is added, removed or
re-described:

    .venv/bin/python benchmarks/write_study_tables.py

Only the tables between ``<!-- generated: [SECTION] fields ... -->`` and
``<!-- end generated -->`` change; tests/autoprumux/test_study_docs.py fails until they match.
"""

from __future__ import annotations

from pathlib import Path

from autoprumux.core.study import SECTIONS
from autoprumux.core.study_fields import field_tables_in

DOCS = Path(__file__).resolve().parents[1] / "docs" / "studies.md"


def main() -> None:
    text = DOCS.read_text()
    updated = field_tables_in(text, SECTIONS)
    DOCS.write_text(updated)
    print(f"{DOCS}: {'rewritten' if updated != text else 'already up to date'}")


if __name__ == "__main__":
    main()
