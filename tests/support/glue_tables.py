"""A GLUE preset's splits read the way a study reads them (trainers.data.tables), for tests."""

from pathlib import Path

from autoprumux.core.data_spec import data_spec
from autoprumux.core.study import DataSection, DataSource, Study, StudySection
from trainers.data.splits import Encoded
from trainers.data.tables import TaskTables, load_tables
from trainers.data.token_cache import encoded_table


def preset_study(glue_dir: Path, task: str = "sst2", **data: object) -> Study:
    return Study(
        study=StudySection(task=task),
        data=DataSection(source=DataSource.GLUE_DIR, glue_dir=str(glue_dir), **data),  # type: ignore[arg-type]
    )


def preset_tables(glue_dir: Path, task: str = "sst2", **data: object) -> TaskTables:
    return load_tables(data_spec(preset_study(glue_dir, task, **data)))


def preset_encoded(
    glue_dir: Path, tokenizer: object, length: int, task: str = "sst2", **data: object
) -> tuple[Encoded, Encoded]:
    """(train, dev) of a preset, tokenized to ``length`` (no cache)."""
    tables = preset_tables(glue_dir, task, **data)
    return (
        encoded_table(tables.train, tokenizer, length),  # type: ignore[arg-type]
        encoded_table(tables.dev, tokenizer, length),  # type: ignore[arg-type]
    )
