"""The embedded default: what autoprumux carries so that the bare ``autoprumux search`` works in
any folder, offline, from a wheel or a fresh clone.

- ``glue/SST-2/{train,dev}.tsv.xz``: SST-2 from GLUE (source, licence and hashes in
  ``glue/README.md``); the tiny study reads it as ``glue_dir = "package:autoprumux/embedded/glue"``.
- ``studies/``, in an installed wheel only: the repository's ``studies/*.toml`` with the committed
  throughput and results tables (pyproject.toml builds the package ``autoprumux.embedded.studies``
  from the repository's ``studies/`` folder, so there is one copy in the source tree).

A study writes beside its file: its SQLite database, ``artifacts/``, measured ``throughput/``
tables, and ``reports/`` beside its folder. So a study is never used in place inside an installed
package: :func:`copy_studies` first copies the packaged studies into ``./studies`` of the current
folder (``autoprumux.cli.default_study.default_study_path`` decides when).
"""

from __future__ import annotations

from pathlib import Path

from autoprumux.files.atomic import write_bytes_atomic

HERE = Path(__file__).resolve().parent


def checkout_studies() -> Path | None:
    """``studies/`` of the repository checkout autoprumux runs from (an editable install, or
    the source tree on the path); None for an installed wheel."""
    root = HERE.parents[1]
    studies = root / "studies"
    return studies if (root / "pyproject.toml").is_file() and studies.is_dir() else None


def packaged_studies() -> Path | None:
    """The studies an installed wheel carries (read-only to autoprumux); None in a checkout."""
    studies = HERE / "studies"
    return studies if studies.is_dir() else None


def copy_studies(source: Path, into: Path) -> list[Path]:
    """Copy the files of ``source`` (study files, throughput and results tables) that ``into``
    lacks, keeping its sub-folders; files already in ``into`` (edited, or measured on this
    machine) are kept as they are. Returns the files copied. Each file is written by rename, so
    two searches started at once in one folder both see whole files."""
    copied = []
    for file in sorted(source.rglob("*")):
        relative = file.relative_to(source)
        if not file.is_file() or "__pycache__" in relative.parts:
            continue
        target = into / relative
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, file.read_bytes())
        copied.append(target)
    return copied
