"""The cache keys of a trial's artifacts (trainers.trial.cache_keys): a setting an artifact's build
reads changes its key, and the keys of the artifacts built from it; a setting it does not
read leaves the key alone, so the artifact is reused. Every field of every study section is
in the table below, so a new field must be placed, and the table agrees with what each field
declares (its about(...) effect and stages, autoprumux.core.study_fields). Pure: no model, no
data, no training."""

import dataclasses
from pathlib import Path

import pytest
import torch

from autoprumux.core.errors import DataError
from autoprumux.core.metrics import Metric
from autoprumux.core.study import (
    STUDY_FIELDS,
    DataSection,
    DataSource,
    FineTuned,
    Study,
    StudySection,
)
from autoprumux.core.study_fields import Stage, downstream, field_info
from trainers.runtime.device import Precision, resolve_precision
from trainers.trial.cache_keys import (
    teacher_folders,
    teacher_key,
    trial_folder,
    trial_key,
    warmup_folder,
    warmup_key,
)

WARMUP, TEACHER, TRIAL = "warmup", "teacher", "trial"
EVERY = {WARMUP, TEACHER, TRIAL}
TASK_MODELS = {TEACHER, TRIAL}  # the task phases' artifacts: not the warm-up
NOTHING: set[str] = set()
DISTILLING = {"training.distill_from_n1": True}
MULTIPLEXED = {"model.multiplexed_name_or_path": "mux-bert-{n}"}
RANDOM_SUBSET = {"data.max_train_examples": 100}  # subset "random" by default
NAMED_TEXT = {"warmup.text": "hub:wikitext"}
# a study's own data: a file (written by a_study), or a hub dataset
OWN_FILE = {"study.task": "", "data.train": "train.csv", "data.text": "review", "data.label": "y"}
OWN_HUB = {**OWN_FILE, "data.train": "", "data.dataset": "someone/reviews"}

# (setting, its new value, the study's other settings, N, the artifacts whose keys change);
# the trial is of sparsity 0.5, and its teacher's key is part of its own
SETTINGS = [
    ("study.task", "mnli", {}, 2, EVERY),
    ("study.name", "other", {}, 2, NOTHING),  # it names the artifacts folder
    ("study.seed", 7, {}, 2, EVERY),  # the trials' seed (test_the_study_seed_draws_the_subset)
    ("study.description", "a note", {}, 2, NOTHING),
    # what the records and the dev checks are in (early stopping decides on it)
    ("study.metric", Metric.MACRO_F1, {}, 2, TASK_MODELS),
    ("study.metric", Metric.MACRO_F1, {}, 1, TASK_MODELS),
    ("study.positive_label", "0", {"study.metric": Metric.F1}, 2, TASK_MODELS),
    ("grid.n", (1, 2, 4), {}, 2, NOTHING),
    ("grid.sparsity", (0.0, 0.9), {}, 2, NOTHING),
    ("model.name_or_path", "other-bert", {}, 2, EVERY),
    ("model.name_or_path", "other-bert", {}, 1, TASK_MODELS),
    ("model.max_seq_length", 64, {}, 2, EVERY),
    ("model.num_layers", 2, {}, 2, EVERY),
    ("model.multiplexed_name_or_path", "mux-bert-{n}", {}, 2, EVERY),  # no warm-up then
    ("model.multiplexed_name_or_path", "mux-bert-{n}", {}, 1, NOTHING),
    ("model.multiplexed_name_or_path", "other-mux-{n}", MULTIPLEXED, 2, TASK_MODELS),
    # a fine-tuned checkpoint is the (1, 0) teacher as is, and every (N, 0) distils from it
    ("model.fine_tuned", FineTuned.TRUE, {}, 1, TASK_MODELS),
    ("model.fine_tuned", FineTuned.TRUE, {}, 2, TASK_MODELS),
    ("model.fine_tuned", FineTuned.FALSE, {}, 2, NOTHING),  # a base model: auto is false
    ("data.source", DataSource.HUB, {}, 2, EVERY),
    ("data.glue_dir", "other-glue", {}, 2, EVERY),
    ("data.glue_dir", "other-glue", {"data.source": DataSource.HUB}, 2, NOTHING),
    ("data.max_train_examples", 100, {}, 2, EVERY),
    ("data.max_train_examples", 100, NAMED_TEXT, 2, TASK_MODELS),
    ("data.max_eval_examples", 100, {}, 2, EVERY),  # the dev set its record measures
    ("data.subset", "first", {}, 2, NOTHING),  # the whole training set
    ("data.subset", "first", RANDOM_SUBSET, 2, EVERY),
    # own data is keyed by its content: a copy of the file is the same data, an edit is not
    ("data.train", "copy.csv", OWN_FILE, 2, NOTHING),
    ("data.train", "edited.csv", OWN_FILE, 2, EVERY),
    ("data.dev", "dev.csv", OWN_FILE, 2, EVERY),  # no longer carved from train
    ("data.test", "test.csv", OWN_FILE, 2, NOTHING),  # read after the search, by no training
    ("data.format", "tsv", OWN_FILE, 2, EVERY),
    ("data.text", "title", OWN_FILE, 2, EVERY),
    ("data.text_pair", "title", OWN_FILE, 2, EVERY),
    ("data.label", "stars", OWN_FILE, 2, EVERY),
    ("data.labels", ("b", "a"), OWN_FILE, 2, EVERY),  # the classifier's order
    ("data.dev_fraction", 0.2, OWN_FILE, 2, EVERY),
    ("data.dev_max_rows", 100, OWN_FILE, 2, EVERY),
    ("data.test_fraction", 0.1, OWN_FILE, 2, EVERY),  # carved from train: less to train on
    ("data.dev_fraction", 0.2, {}, 2, NOTHING),  # a preset has its dev split
    ("data.dataset", "someone/other", OWN_HUB, 2, EVERY),
    ("data.config", "en", OWN_HUB, 2, EVERY),
    ("data.train_split", "train[:50%]", OWN_HUB, 2, EVERY),
    ("data.dev_split", "validation", OWN_HUB, 2, EVERY),
    ("data.test_split", "test", OWN_HUB, 2, NOTHING),
    ("training.finetune_epochs", 3.0, {}, 2, TASK_MODELS),
    ("training.finetune_steps", 10, {}, 2, TASK_MODELS),
    ("training.finetune_learning_rate", 1e-4, {}, 2, TASK_MODELS),
    ("training.new_learning_rate", 1e-3, {}, 2, TASK_MODELS),
    ("training.batch_rows", 16, {}, 2, TASK_MODELS),
    ("training.max_grad_norm", 2.0, {}, 2, TASK_MODELS),
    ("training.dropout", 0.0, {}, 2, TASK_MODELS),
    ("training.freeze_word_embeddings", True, {}, 2, EVERY),
    ("training.freeze_word_embeddings", True, {}, 1, TASK_MODELS),
    ("training.pruning_epochs", 3.0, {}, 2, {TRIAL}),
    ("training.pruning_steps", 10, {}, 2, {TRIAL}),
    ("training.lagrangian_warmup_epochs", 1.0, {}, 2, {TRIAL}),
    ("training.lagrangian_warmup_steps", 5, {}, 2, {TRIAL}),
    ("training.post_pruning_epochs", 3.0, {}, 2, {TRIAL}),
    ("training.post_pruning_steps", 10, {}, 2, {TRIAL}),
    ("training.pruning_learning_rate", 1e-4, {}, 2, {TRIAL}),
    ("training.l0_learning_rate", 0.1, {}, 2, {TRIAL}),
    ("training.lagrangian_learning_rate", 0.1, {}, 2, {TRIAL}),
    ("training.distill_ce_alpha", 0.7, {}, 2, {TRIAL}),
    ("training.distill_temperature", 4.0, {}, 2, {TRIAL}),
    # the N > 1 teacher learns the (1, 0) teacher's logits at this temperature
    ("training.distill_temperature", 4.0, DISTILLING, 2, TASK_MODELS),
    ("training.distill_temperature", 4.0, DISTILLING, 1, {TRIAL}),
    ("training.distill_from_n1", True, {}, 2, TASK_MODELS),
    ("training.distill_from_n1", True, {}, 1, NOTHING),
    ("training.checkpoint_every", 7, {}, 2, NOTHING),  # a resumed phase is the same phase
    ("training.checkpoint_minutes", 0.5, {}, 2, NOTHING),  # when checkpoints are written
    ("training.length_buckets", (16, 64), {}, 2, NOTHING),  # padding a masked model ignores
    # keyed by the precision it resolves to on the trial's device, here a CPU: auto is fp32
    ("training.precision", "fp32", {}, 2, NOTHING),
    ("training.precision", "bf16", {}, 2, EVERY),
    ("training.compile", True, {}, 2, NOTHING),
    ("training.deterministic", "strict", {}, 2, NOTHING),  # which kernels sum, recorded
    ("training.group_by_length", True, {}, 2, TASK_MODELS),
    ("warmup.group_by_length", True, {}, 2, EVERY),
    ("warmup.group_by_length", True, {}, 1, NOTHING),
    ("multiplexing.style", "published", {}, 2, EVERY),
    ("multiplexing.demux", "mlp", {}, 2, EVERY),
    ("multiplexing.key_norm", 1.0, {}, 2, EVERY),
    ("multiplexing.demux_depth", 4, {}, 2, EVERY),
    ("multiplexing.style", "published", {}, 1, NOTHING),
    ("multiplexing.pooling", "mean", {}, 2, TASK_MODELS),  # the warm-up never pools
    ("multiplexing.pooling", "mean", {}, 1, NOTHING),
    ("multiplexing.pooling", "mean", MULTIPLEXED, 2, NOTHING),  # its checkpoint's own
    ("multiplexing.key_norm", 1.0, MULTIPLEXED, 2, NOTHING),
    ("warmup.steps_per_instance", 20, {}, 2, EVERY),
    ("warmup.batch_rows", 16, {}, 2, EVERY),
    ("warmup.max_length", 16, {}, 2, EVERY),
    ("warmup.learning_rate", 1e-3, {}, 2, EVERY),
    ("warmup.new_learning_rate", 1e-2, {}, 2, EVERY),
    ("warmup.positions", 64, {}, 2, EVERY),
    ("warmup.negatives", 64, {}, 2, EVERY),
    ("warmup.mlm_steps", 10, {}, 2, EVERY),
    ("warmup.text", "hub:wikitext", {}, 2, EVERY),
    ("warmup.steps_per_instance", 20, {}, 1, NOTHING),
    ("warmup.steps_per_instance", 20, MULTIPLEXED, 2, NOTHING),
    ("throughput.device", "cpu", {}, 2, NOTHING),
    ("throughput.dtype", "float32", {}, 2, NOTHING),  # the only value: fp32 rows' dtype
    ("throughput.batch_rows", 64, {}, 2, NOTHING),
    ("throughput.examples_per_pass", 512, {}, 2, NOTHING),
    ("throughput.passes", 3, {}, 2, NOTHING),
    ("throughput.warmup_passes", 2, {}, 2, NOTHING),
    ("throughput.threads", 2, {}, 2, NOTHING),
    ("throughput.trial_examples_per_pass", 64, {}, 2, NOTHING),
    # what a trained model is evaluated in after its training, recorded in its folder
    ("deploy.precisions", ("fp32", "int8"), {}, 2, NOTHING),
    ("storage.url", "sqlite:///other.db", {}, 2, NOTHING),
]


def changed(study: Study, settings: dict[str, object]) -> Study:
    """``study`` with ``{"section.field": value}`` set (validated as a study file is, the
    sections together: a preset's task and own data exclude each other)."""
    by_section: dict[str, dict[str, object]] = {}
    for name, value in settings.items():
        section, field = name.split(".")
        by_section.setdefault(section, {})[field] = value
    return dataclasses.replace(
        study,
        **{
            section: dataclasses.replace(getattr(study, section), **values)
            for section, values in by_section.items()
        },
    )


def a_study(tmp_path: Path, settings: dict[str, object] | None = None) -> Study:
    """The tiny study's shape; its own data's files are written beside it."""
    rows = "review,y\ngood,a\nbad,b\n"
    for name, text in {"train": rows, "copy": rows, "edited": rows + "fine,a\n"}.items():
        (tmp_path / f"{name}.csv").write_text(text)
    (tmp_path / "dev.csv").write_text("review,y\nokay,a\n")
    (tmp_path / "test.csv").write_text("review,y\nmeh,b\n")
    study = Study(
        study=StudySection(task="sst2", seed=0),
        data=DataSection(source=DataSource.GLUE_DIR, glue_dir="glue"),
        path=tmp_path / "tiny.toml",
    )
    return changed(study, settings or {})


def folder_names(
    study: Study,
    n: int = 2,
    sparsity: float = 0.5,
    seed: int | None = None,
    precision: Precision | None = None,
) -> dict[str, str | None]:
    """Each artifact's folder name (which ends in its key); None: no warm-up. By default with
    the seed and precision a trial of the study on a CPU takes: the study's, and the one its
    ``precision`` resolves to."""
    seed = study.study.seed if seed is None else seed
    if precision is None:
        precision = resolve_precision(study.training.precision, torch.device("cpu"))
    folders = teacher_folders(study, n, seed, precision)
    trial = trial_folder(study, n, sparsity, seed, precision, teacher=folders.teacher)
    return {
        WARMUP: folders.warmup.name if folders.warmup else None,
        TEACHER: folders.teacher.name,
        TRIAL: trial.name,
    }


def changed_artifacts(before: dict[str, str | None], after: dict[str, str | None]) -> set[str]:
    return {kind for kind in before if before[kind] != after[kind]}


@pytest.mark.parametrize(
    ("setting", "value", "others", "n", "expected"),
    SETTINGS,
    ids=[f"{s[0]}-{s[1]}-n{s[3]}{'-' + ','.join(s[2]) if s[2] else ''}" for s in SETTINGS],
)
def test_a_setting_changes_the_keys_of_the_artifacts_that_read_it(
    tmp_path, setting, value, others, n, expected
):
    study = a_study(tmp_path, others)
    before = folder_names(study, n)
    after = folder_names(changed(study, {setting: value}), n)
    assert changed_artifacts(before, after) == expected


def test_every_study_setting_is_placed():
    study = Study(study=StudySection(task="sst2"))
    sections = [
        f.name
        for f in dataclasses.fields(Study)
        if dataclasses.is_dataclass(getattr(study, f.name))
    ]
    every = {
        f"{section}.{f.name}"
        for section in sections
        for f in dataclasses.fields(getattr(study, section))
    }
    assert every == {s[0] for s in SETTINGS}


def test_the_table_agrees_with_what_each_field_declares():
    """A field that decides results rebuilds, in some study, exactly the artifacts of the
    stages it declares and those built from them; any other field rebuilds none."""
    rebuilt: dict[str, set[str]] = {name: set() for name in STUDY_FIELDS}
    for setting, _, _, _, expected in SETTINGS:
        rebuilt[setting] |= expected
    declared = {
        name: {stage.value for stage in downstream(field_info(item).stages)}
        for name, item in STUDY_FIELDS.items()
    }
    assert rebuilt == declared
    # so every field that decides results is in the key of at least one artifact
    assert all(rebuilt[n] for n, item in STUDY_FIELDS.items() if field_info(item).decides_results)
    assert {s.value for s in Stage} == EVERY


def test_the_study_seed_draws_the_random_subset(tmp_path):
    """With a trial's own seed (``train --seed``), the study's seed still draws the subset."""
    for others, expected in [
        ({}, NOTHING),
        (RANDOM_SUBSET, EVERY),
        ({**RANDOM_SUBSET, "data.subset": "first"}, NOTHING),
    ]:
        study = a_study(tmp_path, others)
        before = folder_names(study, seed=3)
        after = folder_names(changed(study, {"study.seed": 7}), seed=3)
        assert changed_artifacts(before, after) == expected, others


@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [
        ("n", 3, EVERY),
        ("seed", 1, EVERY),
        ("precision", Precision.BF16, EVERY),
        ("sparsity", 0.6, {TRIAL}),
    ],
)
def test_the_trials_point_seed_and_precision_key_its_artifacts(tmp_path, argument, value, expected):
    study = a_study(tmp_path)
    assert (
        changed_artifacts(folder_names(study), folder_names(study, **{argument: value})) == expected
    )


def test_the_distill_temperature_keys_a_teacher_that_distills_from_n1(tmp_path):
    """The bug: a teacher built at one temperature was reused at another."""
    study = a_study(tmp_path, DISTILLING)
    hotter = changed(study, {"training.distill_temperature": 4.0})
    before = teacher_folders(study, 2, 0, Precision.FP32)
    after = teacher_folders(hotter, 2, 0, Precision.FP32)
    assert after.teacher != before.teacher
    assert after.guide == before.guide and after.warmup == before.warmup  # built without it


def test_a_distilling_teacher_names_the_n1_teacher_it_learns_from(tmp_path):
    study = a_study(tmp_path, DISTILLING)
    folders = teacher_folders(study, 2, 0, Precision.FP32)
    assert folders.guide == teacher_folders(study, 1, 0, Precision.FP32).teacher
    assert teacher_folders(a_study(tmp_path), 2, 0, Precision.FP32).guide is None


def test_the_upstream_artifact_is_part_of_a_key(tmp_path):
    study, fp32 = a_study(tmp_path), Precision.FP32
    assert teacher_key(study, 2, 0, fp32, start="a", guide=None) != teacher_key(
        study, 2, 0, fp32, start="b", guide=None
    )
    assert teacher_key(study, 2, 0, fp32, start="a", guide="g1") != teacher_key(
        study, 2, 0, fp32, start="a", guide="g2"
    )
    assert trial_key(study, 2, 0.5, 0, fp32, teacher="t1") != trial_key(
        study, 2, 0.5, 0, fp32, teacher="t2"
    )


def test_a_named_warmup_text_is_shared_by_tasks_with_as_many_labels(tmp_path):
    study = a_study(tmp_path, NAMED_TEXT)
    key = warmup_key(study, 2, 0, Precision.FP32)
    assert warmup_key(changed(study, {"study.task": "qnli"}), 2, 0, Precision.FP32) == key
    # three labels: another classifier in the artifact, other random numbers before the head's
    assert warmup_key(changed(study, {"study.task": "mnli"}), 2, 0, Precision.FP32) != key


def test_a_warmup_text_file_is_keyed_by_its_content(tmp_path):
    (tmp_path / "corpus.txt").write_text("the film was good .\n")
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "corpus.txt").write_text("the film was good .\n")
    study = a_study(tmp_path, {"warmup.text": "corpus.txt"})
    folder = warmup_folder(study, 2, 0)
    assert "-n2-corpus-" in folder.name and folder.parent == tmp_path / "artifacts" / "warmup"
    moved = changed(study, {"warmup.text": "moved/corpus.txt"})
    assert warmup_folder(moved, 2, 0) == folder
    (tmp_path / "corpus.txt").write_text("the plot was bad .\n")
    assert warmup_folder(study, 2, 0) != folder


def test_keys_are_stable(tmp_path):
    assert folder_names(a_study(tmp_path)) == folder_names(a_study(tmp_path))


def test_settings_added_later_keep_the_keys_of_artifacts_built_before_them(tmp_path):
    """The folder names of the default study's artifacts, as before ``group_by_length``
    existed (the trial's changed with its layer loss over real tokens, PRUNING_RULES)."""
    assert folder_names(a_study(tmp_path)) == {
        WARMUP: "bert-base-uncased-n2-sst2-c62373f666",
        TEACHER: "teacher-n2-ba020e6b52",
        TRIAL: "trial-n2-s0.5-629e291530",
    }


def test_an_unreadable_warmup_text_is_one_line_naming_the_setting(tmp_path):
    study = a_study(tmp_path, {"warmup.text": "missing.txt"})
    with pytest.raises(DataError) as err:
        warmup_folder(study, 2, 0)
    message = str(err.value)
    assert message.startswith(f"[warmup] text {str(tmp_path / 'missing.txt')!r}: cannot be read")
    assert "\n" not in message


def test_a_local_model_folder_is_keyed_by_the_files_a_training_reads(tmp_path):
    """A classifier fine-tuned anew into the same folder keys new artifacts (its old teacher
    was reused); a file no training reads, or a copy elsewhere, keys the same ones."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    study = a_study(tmp_path, {"model.name_or_path": str(model)})
    before = folder_names(study)
    (model / "training_args.bin.bak").write_bytes(b"left by a trainer")
    (model / "README.md").write_text("notes")
    assert folder_names(study) == before
    (model / "model.safetensors").write_bytes(b"weights fine-tuned again")
    assert changed_artifacts(before, folder_names(study)) == {WARMUP, TEACHER, TRIAL}
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\nfilm\n")
    assert changed_artifacts(before, folder_names(study)) == {WARMUP, TEACHER, TRIAL}
