"""A model folder as people use it, on an untrained tiny BERT described as a trial describes
its folder (no training: seconds): ``load_model(...).predict``'s inputs, the transformers
export's tokenizer length, and the mode of the weights files written."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from autoprumux.cli.main import main
from trainers.deploy.inference import load_text_classifier
from trainers.deploy.model_folder import ModelInfo, describe
from trainers.model.architecture import Architecture
from trainers.model.checkpoints import WEIGHTS_FILE, save_model
from trainers.model.classifier import Classifier

MAX_LENGTH = 16  # the folder's trained length; the base tokenizer sets none (no limit)
LONG = " ".join(["good", "film"] * 20)  # 40 words: 42 tokens with [CLS] and [SEP]


def _info(**fields: object) -> ModelInfo:
    values: dict[str, object] = {
        "task": "sst2", "labels": ("negative", "positive"), "text_columns": ("sentence",),
        "label_column": "label", "max_length": MAX_LENGTH, "n": 1, "sparsity": 0.0,
        "achieved_sparsity": 0.0, "parameters": 1000, "dev_accuracy": 0.5,
        "dev_examples": 64, "throughput": None, "throughput_device": "cpu", "study": "tiny",
        "study_file": "", "recipe": "r", "base_model": "tiny", "teacher": None, "seed": 0,
        **fields,
    }  # fmt: skip
    return ModelInfo(**values)  # type: ignore[arg-type]


def _folder(root: Path, base: Path, n: int = 1) -> Path:
    """An untrained dense (n, 0) BERT of the fixtures' vocabulary, described in ``root``."""
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    arch = Architecture.dense(
        num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64, vocab_size=64,
        max_positions=64,
    )  # fmt: skip
    folder = save_model(Classifier(arch.with_mux(n) if n > 1 else arch), root)
    describe(folder, _info(n=n), AutoTokenizer.from_pretrained(str(base)))
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_sources) -> Path:
    return _folder(tmp_path_factory.mktemp("model") / "dense", tiny_sources[0])


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    kept = os.umask(mask)
    try:
        yield
    finally:
        os.umask(kept)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- predict's inputs ---------------------------------------------------------------------


def test_a_bare_string_is_one_input_answered_as_a_list_of_one(folder):
    """``predict("a fine film")`` classified each of its 11 characters."""
    model = load_text_classifier(folder, device="cpu")
    [one] = model.predict("good film")
    assert one == model.predict(["good film"])[0]
    assert len(model.classify("good film").predictions) == 1


def test_no_inputs_is_no_answer_and_a_blank_one_is_refused_naming_its_index(folder):
    model = load_text_classifier(folder, device="cpu")
    assert model.predict([]) == []
    done = model.classify([])
    assert (done.predictions, done.truncated, done.per_second) == ((), 0, 0.0)
    with pytest.raises(ValueError) as refused:
        model.predict(["good film", "  "])
    assert str(refused.value) == (
        "texts[1] has no text ('  '): every input needs some (the CLI skips blank lines; leave "
        "it out here)"
    )
    with pytest.raises(ValueError, match=r"^texts\[0\] has no text \(''\)"):
        model.predict("")


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory, tiny_sources) -> Path:
    """The dense folder, described as a pair task's (question, sentence)."""
    from trainers.deploy.model_folder import INFO_FILE

    folder = _folder(tmp_path_factory.mktemp("model") / "pair", tiny_sources[0])
    info = (folder / INFO_FILE).read_text().replace('"sentence"', '"question", "sentence"')
    (folder / INFO_FILE).write_text(info)
    return folder


def test_a_pair_models_tuple_is_one_pair(pair_folder):
    model = load_text_classifier(pair_folder, device="cpu")
    [one] = model.predict(("who is it ?", "good film"))
    assert one == model.predict([("who is it ?", "good film")])[0]
    with pytest.raises(ValueError, match=r"^texts\[0\] has no text \(\('', ' '\)\)"):
        model.predict([("", " ")])


def test_a_pair_with_one_blank_text_is_refused_as_the_cli_refuses_its_line(pair_folder):
    """``('good film', '')`` was classified; the CLI refuses the same line."""
    model = load_text_classifier(pair_folder, device="cpu")
    with pytest.raises(ValueError) as refused:
        model.predict([("who is it ?", "good film"), ("good film", "")])
    assert str(refused.value) == (
        "texts[1]'s second text is empty (('good film', '')); a pair needs both texts"
    )
    with pytest.raises(ValueError) as refused:
        model.predict([("  ", "good film")])
    assert str(refused.value) == (
        "texts[0]'s first text is empty (('  ', 'good film')); a pair needs both texts"
    )


def test_a_pair_side_that_is_not_a_string_and_no_input_at_all_are_named(pair_folder):
    """transformers' own error ("text input must be of type str") named no input; None was
    "'NoneType' object is not iterable"."""
    model = load_text_classifier(pair_folder, device="cpu")
    with pytest.raises(TypeError) as refused:
        model.predict([("who is it ?", "good film"), ("a", None)])
    assert str(refused.value) == (
        "texts[1]'s second text is None, not a string: a pair is (first, second), two strings"
    )
    with pytest.raises(TypeError) as refused:
        model.predict(None)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "texts is None: predict takes a list of inputs (strings; a pair model's "
        "(first, second) tuples) or one input alone"
    )


@pytest.mark.parametrize("batch", [0, -1, "2", 1.5, True])
def test_a_batch_that_is_not_a_whole_number_from_1_is_refused_before_any_work(folder, batch):
    """0 divided by zero, -1 had nothing to concatenate, '2' was a TypeError of range()."""
    model = load_text_classifier(folder, device="cpu")
    with pytest.raises(ValueError) as refused:
        model.predict(["good film"], batch=batch)
    assert str(refused.value) == (
        f"batch is {batch!r}: give a whole number >= 1 (the groups of N inputs in one forward pass)"
    )
    with pytest.raises(ValueError, match="^batch is"):
        model.classify([], batch=batch)  # refused even with nothing to classify
    assert model.predict(["good film"], batch=1) == model.predict(["good film"])


# -- the transformers export: its tokenizer truncates where the model was trained ------------


def test_the_transformers_export_truncates_at_the_trained_length(
    folder, tmp_path, capsys, tiny_sources
):
    """The exported tokenizer kept the base model's length (MiniLM's 512): a pipeline read
    past the trained length and gave other probabilities than the model folder's."""
    from transformers import AutoTokenizer, pipeline

    out = tmp_path / "hf"
    argv = ["export", "--model", str(folder), "--format", "transformers", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.model_max_length == MAX_LENGTH
    assert len(tokenizer(LONG)["input_ids"]) == 42  # not truncated unless asked
    assert len(tokenizer(LONG, truncation=True)["input_ids"]) == MAX_LENGTH
    classifier = pipeline("text-classification", model=str(out), device="cpu", top_k=None)
    theirs = {d["label"]: d["score"] for d in classifier([LONG], truncation=True)[0]}
    ours = load_text_classifier(folder, device="cpu").predict(LONG)[0].probabilities
    assert theirs == pytest.approx(ours, abs=1e-5)
    # the folder's own tokenizer, read by autoprumux with its max length, is left as it was
    base = AutoTokenizer.from_pretrained(str(tiny_sources[0])).model_max_length
    assert AutoTokenizer.from_pretrained(str(folder)).model_max_length == base > 512


# -- file modes: the weights as readable as the other files ---------------------------------


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_the_weights_follow_the_umask_as_the_other_files_do(tmp_path, tiny_sources, mask, mode):
    """safetensors writes 0600: a serving container of another user could not read them."""
    with umask(mask):
        folder = _folder(tmp_path / "model", tiny_sources[0])
    assert _mode(folder / WEIGHTS_FILE) == mode
    assert _mode(folder / "autoprumux.json") == mode == _mode(folder / "tokenizer.json")


def test_classify_of_a_transformers_export_says_what_it_is(folder, tmp_path, capsys):
    """Not 'trained by an older version': a folder `export --format transformers` wrote."""
    out = tmp_path / "hf"
    argv = ["export", "--model", str(folder), "--format", "transformers", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    sentences = tmp_path / "one.txt"
    sentences.write_text("a fine film\n")
    assert main(["classify", "--model", str(out), "--input", str(sentences)]) == 2
    assert capsys.readouterr().err == (
        f"autoprumux: error: {out}: a transformers checkpoint, not an autoprumux model folder "
        "(no autoprumux.json): serve it with transformers (its pipeline), or classify with the "
        "trial folder it was exported from\n"
    )


def test_the_transformers_exports_weights_follow_the_umask(folder, tmp_path, capsys):
    out = tmp_path / "hf"
    argv = ["export", "--model", str(folder), "--format", "transformers", "--out", str(out)]
    with umask(0o022):
        assert main(argv) == 0
    capsys.readouterr()
    assert {p.name: _mode(p) for p in out.iterdir()} == {
        "config.json": 0o644,
        WEIGHTS_FILE: 0o644,
        "tokenizer.json": 0o644,
        "tokenizer_config.json": 0o644,
    }
