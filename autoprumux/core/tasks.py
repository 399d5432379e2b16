"""The GLUE tasks autoprumux knows: where their data live and what their rows hold."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
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
            name="sst2",
            hub_config="sst2",
            text_fields=("sentence",),
            num_labels=2,
            dev_split="validation",
            glue_folder="SST-2",
            glue_train_file="train.tsv",
            glue_dev_file="dev.tsv",
            glue_text_columns=("sentence",),
            glue_label_column="label",
            integer_label_meanings=("negative", "positive"),
        ),
        TaskSpec(
            name="mnli",
            hub_config="mnli",
            text_fields=("premise", "hypothesis"),
            num_labels=3,
            dev_split="validation_matched",
            glue_folder="MNLI",
            glue_train_file="train.tsv",
            glue_dev_file="dev_matched.tsv",
            glue_text_columns=("sentence1", "sentence2"),
            glue_label_column="gold_label",
            label_names={"entailment": 0, "neutral": 1, "contradiction": 2},
        ),
        TaskSpec(
            name="qnli",
            hub_config="qnli",
            text_fields=("question", "sentence"),
            num_labels=2,
            dev_split="validation",
            glue_folder="QNLI",
            glue_train_file="train.tsv",
            glue_dev_file="dev.tsv",
            glue_text_columns=("question", "sentence"),
            glue_label_column="label",
            label_names={"entailment": 0, "not_entailment": 1},
        ),
        TaskSpec(
            name="qqp",
            hub_config="qqp",
            text_fields=("question1", "question2"),
            num_labels=2,
            dev_split="validation",
            glue_folder="QQP",
            glue_train_file="train.tsv",
            glue_dev_file="dev.tsv",
            glue_text_columns=("question1", "question2"),
            glue_label_column="is_duplicate",
            integer_label_meanings=("not_duplicate", "duplicate"),
        ),
    )
}
