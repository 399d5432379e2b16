"""Compress a classifier you already fine-tuned: a tiny study's trained (1, 0) model, saved in
transformers' format with its labels in the other order (as transformers/optimum swaps hit
users), is the (1, 0) teacher of a second study as is: its dev accuracy is the one transformers
computes for that checkpoint on its own, and the trained model's; nothing is trained for it
(teacher.json: 0 steps, "teacher": "checkpoint"); the (2, 0) model distils from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from fixtures import study_text
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from autoprumux.core.study import load_study
from trainers.model.architecture import Architecture
from trainers.model.checkpoints import load_classifier
from trainers.model.classifier import Classifier
from trainers.model.hf_checkpoint import NotDense, check_dense, logits_difference, save_transformers
from trainers.model.label_map import permute_head
from trainers.runtime.device import Precision
from trainers.trial.cache_keys import teacher_folders
from trainers.trial.run import TrialSpec, run_trial
from trainers.trial.trial_results import FINETUNE_TIMER

DATA_LABELS = ("negative", "positive")  # SST-2's, in the data's id order


def transformers_accuracy(folder: Path, glue: Path, max_length: int) -> float:
    """The checkpoint's dev accuracy computed with transformers alone: its own tokenizer and
    id2label, SST-2's dev.tsv read by hand."""
    rows = [line.split("\t") for line in (glue / "SST-2" / "dev.tsv").read_text().splitlines()]
    texts, gold = [r[0] for r in rows[1:]], [DATA_LABELS[int(r[1])] for r in rows[1:]]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = tokenizer(
        texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    names = [model.config.id2label[i] for i in predicted]
    return sum(n == g for n, g in zip(names, gold, strict=True)) / len(gold)


# three short trainings of the tiny random BERT: about 2 s
def test_a_fine_tuned_checkpoint_is_the_teacher_as_is(tiny_sources, tiny_study_file, tmp_path):
    model_dir, glue = tiny_sources
    trained = run_trial(
        TrialSpec(study=load_study(tiny_study_file()), n=1, sparsity=0.0, device="cpu")
    )
    assert trained.reason is None and 0.6 < trained.accuracy <= 1.0

    # the user's classifier: the trained model, its labels numbered the other way round
    swapped = permute_head(load_classifier(trained.artifact_path), (1, 0))
    tuned = save_transformers(
        swapped,
        tmp_path / "my-classifier",
        ("positive", "negative"),
        AutoTokenizer.from_pretrained(str(model_dir)),
    )
    assert json.loads((tuned / "config.json").read_text())["id2label"]["0"] == "positive"
    expected = transformers_accuracy(tuned, glue, max_length=16)

    (tmp_path / "mine").mkdir()
    study_file = tmp_path / "mine" / "mine.toml"
    text = study_text(tuned, glue).replace(
        "max_seq_length = 16", "max_seq_length = 16\nfine_tuned = true"
    )
    study_file.write_text(text)
    study = load_study(study_file)
    teacher = run_trial(TrialSpec(study=study, n=1, sparsity=0.0, device="cpu"))
    assert teacher.reason is None
    assert teacher.accuracy == expected == trained.accuracy  # reproduced before any pruning
    assert FINETUNE_TIMER not in teacher.phase_seconds  # nothing trained
    assert teacher.curve is None and teacher.labels == DATA_LABELS
    record = json.loads((Path(teacher.artifact_path) / "teacher.json").read_text())
    assert (record["steps"], record["teacher"], record["label_order"]) == (0, "checkpoint", [1, 0])
    assert record["checkpoint"] == str(tuned)

    # the (2, 0) model learns the checkpoint's logits: its guide is the checkpoint teacher
    folders = teacher_folders(study, 2, 0, Precision.FP32, fine_tuned=True)
    assert folders.guide == Path(teacher.artifact_path)
    wide = run_trial(TrialSpec(study=study, n=2, sparsity=0.0, device="cpu"))
    assert wide.reason is None and wide.artifact_path == str(folders.teacher)
    assert folders.teacher != teacher_folders(study, 2, 0, Precision.FP32, False).teacher


def test_export_writes_a_trained_model_as_a_transformers_checkpoint(
    tiny_sources, tiny_study_file, tmp_path, capsys
):
    """``export --format transformers``: the (1, 0) folder as a checkpoint transformers loads,
    with the data's labels and the same dev accuracy; a multiplexed model is refused."""
    from autoprumux.cli.main import main

    _, glue = tiny_sources
    study = load_study(tiny_study_file())
    trained = run_trial(TrialSpec(study=study, n=1, sparsity=0.0, device="cpu"))
    out = tmp_path / "exported"
    argv = ["export", "--model", trained.artifact_path, "--format", "transformers", "--out"]
    assert main([*argv, str(out), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["max_abs_diff"] < 1e-5 and done["labels"] == list(DATA_LABELS)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert transformers_accuracy(out, glue, max_length=16) == trained.accuracy
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    capsys.readouterr()
    assert main([*argv, str(out)]) == 2  # the folder it wrote: refused, not overwritten
    assert capsys.readouterr().err == (
        f"autoprumux: error: --out: {out} exists; a transformers checkpoint goes to a new folder\n"
    )
    wide = run_trial(TrialSpec(study=study, n=2, sparsity=0.0, device="cpu"))
    argv[2] = wide.artifact_path
    capsys.readouterr()  # transformers' own loading bars, above
    assert main([*argv, str(tmp_path / "wide")]) == 2
    assert capsys.readouterr().err == (
        "autoprumux: error: a multiplexed model (N = 2) has no transformers counterpart; only "
        "an N = 1, s = 0 model is saved in transformers' format\n"
    )
    assert not (tmp_path / "wide").exists() and wide.reason is None


DENSE = Architecture.dense(
    vocab_size=40, hidden_size=32, num_heads=4, intermediate_size=64, num_layers=2, num_labels=2
)
WHY_NOT = "has no transformers counterpart; only an N = 1, s = 0 model is saved in transformers'"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"intermediate": (0, 0)}, "FFN width 0 in layers 0, 1: the block removed"),
        ({"heads": (0, 0)}, "no attention heads in layers 0, 1: the block removed"),
        ({"heads": (4, 0), "intermediate": (64, 0)},
         "no attention heads in layer 1: the block removed; FFN width 0 in layer 1: the block "
         "removed"),
        ({"heads": (4, 2)}, "heads per layer 4, 2 of 4"),
        ({"intermediate": (64, 30)}, "FFN widths per layer 64, 30"),
        ({"hidden_size": 24}, "hidden size 24 of 32"),
        ({"head_size": 16}, "a pooler of width 16 on hidden size 32"),
    ],
)  # fmt: skip
def test_a_pruned_architecture_is_refused_naming_what_transformers_lacks(changes, why):
    with pytest.raises(NotDense) as refused:
        check_dense(dataclasses.replace(DENSE, **changes))
    assert str(refused.value) == f"a pruned model ({why}) {WHY_NOT} format"


def test_ffns_narrowed_alike_in_every_layer_are_transformers_dense_shape(tmp_path):
    """FFN width 20 in every layer is intermediate_size = 20: saved, and transformers computes
    our logits (a width of 0 is not: test above)."""
    narrow = dataclasses.replace(DENSE, intermediate=(20, 20))
    check_dense(narrow)
    torch.manual_seed(0)
    model = Classifier(narrow).eval()
    from fixtures import VOCAB
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})
    folder = save_transformers(model, tmp_path / "narrow", ("no", "yes"), tokenizer)
    assert json.loads((folder / "config.json").read_text())["intermediate_size"] == 20
    assert logits_difference(model, folder, tokenizer, ["good film", "a dull plot"]) < 1e-5


def test_a_checkpoint_teacher_is_keyed_apart_from_trained_ones(tmp_path):
    """Its key says it was not trained, so a trained teacher's folder is never reused for it
    (nor the reverse); it reads no training setting and no seed; the default study's keys
    are those of test_cache_keys (auto, resolved false for a base model)."""
    import dataclasses

    from autoprumux.core.study import DataSection, DataSource, FineTuned, Study, StudySection
    from trainers.trial.cache_keys import teacher_key

    study = Study(
        study=StudySection(task="sst2", seed=0),
        data=DataSection(source=DataSource.GLUE_DIR, glue_dir="glue"),
        path=tmp_path / "tiny.toml",
    )
    fp32 = Precision.FP32
    trained = teacher_folders(study, 1, 0, fp32, fine_tuned=False).teacher
    checkpoint = teacher_folders(study, 1, 0, fp32, fine_tuned=True).teacher
    assert trained != checkpoint
    assert teacher_folders(study, 1, 0, fp32).teacher == trained  # auto: the caller resolves
    declared = dataclasses.replace(
        study, model=dataclasses.replace(study.model, fine_tuned=FineTuned.TRUE)
    )
    assert teacher_folders(declared, 1, 0, fp32).teacher == checkpoint
    other_recipe = dataclasses.replace(
        study, training=dataclasses.replace(study.training, finetune_learning_rate=1e-3)
    )
    assert teacher_folders(other_recipe, 1, 7, fp32, fine_tuned=True).teacher == checkpoint
    assert teacher_folders(other_recipe, 1, 7, fp32, fine_tuned=False).teacher != trained
    # N > 1: the (N, 0) model learns the checkpoint's logits, with or without distill_from_n1
    wide = teacher_folders(study, 2, 0, fp32, fine_tuned=True)
    assert wide.guide == checkpoint
    assert teacher_folders(study, 2, 0, fp32, fine_tuned=False).guide is None
    start = study.model.name_or_path
    assert teacher_key(study, 1, 0, fp32, start=start, guide=None) == trained.name.split("-")[-1]
