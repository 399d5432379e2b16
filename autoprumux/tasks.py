"""The GLUE tasks autoprumux knows: where their data live and what their rows hold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str  # as used in study files and on the command line
    glue_folder: str  # sub-folder of a GLUE download (official TSV layout)
    hub_config: str  # configuration of the ``nyu-mll/glue`` dataset on the hub
    text_fields: tuple[str, ...]  # one field: single sentence; two: a pair
    num_labels: int
    dev_split: str  # the split reported as "dev" (MNLI: the matched validation set)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("sst2", "SST-2", "sst2", ("sentence",), 2, "validation"),
        TaskSpec("mnli", "MNLI", "mnli", ("premise", "hypothesis"), 3, "validation_matched"),
        TaskSpec("qnli", "QNLI", "qnli", ("question", "sentence"), 2, "validation"),
        TaskSpec("qqp", "QQP", "qqp", ("question1", "question2"), 2, "validation"),
    )
}
