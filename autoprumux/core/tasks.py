"""The GLUE tasks autoprumux knows: where their data live and what their rows hold."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    name: str  # as used in study files and on the command line
    hub_config: str  # configuration of the ``nyu-mll/glue`` dataset on the hub
    text_fields: tuple[str, ...]  # hub column names; one field: single sentence; two: a pair
    num_labels: int
    dev_split: str  # the hub split reported as "dev" (MNLI: the matched validation set)
    # The official GLUE download (one folder per task, tab-separated, a header row):
    glue_folder: str
    glue_train_file: str
    glue_dev_file: str
    glue_text_columns: tuple[str, ...]  # same order as text_fields
    glue_label_column: str
    # Label text -> id, as the hub numbers them; empty: labels are already integers.
    label_names: dict[str, int] = field(default_factory=dict)
    # What the ids mean where the files hold integers (the hub's ClassLabel names).
    integer_label_meanings: tuple[str, ...] = ()

    @property
    def label_texts(self) -> tuple[str, ...]:
        """The name of every label id, in id order (what a classifier prints)."""
        if self.label_names:
            return tuple(sorted(self.label_names, key=self.label_names.__getitem__))
        return self.integer_label_meanings


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "sst2",
            "sst2",
            ("sentence",),
            2,
            "validation",
            "SST-2",
            "train.tsv",
            "dev.tsv",
            ("sentence",),
            "label",
            integer_label_meanings=("negative", "positive"),
        ),
        TaskSpec(
            "mnli",
            "mnli",
            ("premise", "hypothesis"),
            3,
            "validation_matched",
            "MNLI",
            "train.tsv",
            "dev_matched.tsv",
            ("sentence1", "sentence2"),
            "gold_label",
            {"entailment": 0, "neutral": 1, "contradiction": 2},
        ),
        TaskSpec(
            "qnli",
            "qnli",
            ("question", "sentence"),
            2,
            "validation",
            "QNLI",
            "train.tsv",
            "dev.tsv",
            ("question", "sentence"),
            "label",
            {"entailment": 0, "not_entailment": 1},
        ),
        TaskSpec(
            "qqp",
            "qqp",
            ("question1", "question2"),
            2,
            "validation",
            "QQP",
            "train.tsv",
            "dev.tsv",
            ("question1", "question2"),
            "is_duplicate",
            integer_label_meanings=("not_duplicate", "duplicate"),
        ),
    )
}
