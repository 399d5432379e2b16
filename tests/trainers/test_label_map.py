"""A fine-tuned checkpoint's labels mapped onto the data's by name (trainers.model.label_map), its
head detected from its weights, and a dense classifier saved in transformers' format
(trainers.model.hf_checkpoint): transformers' AutoModelForSequenceClassification computes our
logits from the saved folder, for every family, and our own loader reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from family_models import CASES, inputs, save_random
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

from autoprumux.core.study import FineTuned
from trainers.model.architecture import Architecture
from trainers.model.checkpoints import CheckpointError, load_pretrained
from trainers.model.classifier import Classifier
from trainers.model.hf_checkpoint import NotDense, save_transformers
from trainers.model.label_map import (
    LabelMismatch,
    checkpoint_labels,
    is_fine_tuned,
    label_permutation,
    permute_head,
    read_head,
)

# -- the permutation, by hand ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("theirs", "names", "values", "expected"),
    [
        # the same order: identity
        (("negative", "positive"), ("negative", "positive"), (), (0, 1)),
        # swapped (the optimum/transformers swap): data's label 0 is their 1
        (("positive", "negative"), ("negative", "positive"), (), (1, 0)),
        # three labels: data (contradiction, entailment, neutral); theirs
        # 0 entailment, 1 neutral, 2 contradiction -> contradiction is their 2, ...
        (
            ("entailment", "neutral", "contradiction"),
            ("contradiction", "entailment", "neutral"),
            (),
            (2, 0, 1),
        ),
        # default names stand for the values "0", "1" (a preset's integer labels)
        (("LABEL_0", "LABEL_1"), ("negative", "positive"), ("0", "1"), (0, 1)),
        (("LABEL_1", "LABEL_0"), ("negative", "positive"), ("0", "1"), (1, 0)),
        # ... or for display names "0", "1", "2" of a study's own integer labels
        (("LABEL_2", "LABEL_0", "LABEL_1"), ("0", "1", "2"), (), (1, 2, 0)),
        # names given as the data's values
        (("1", "0"), ("negative", "positive"), ("0", "1"), (1, 0)),
        # a hub SST-2 classifier's names against the preset's: the same up to case
        (("POSITIVE", "NEGATIVE"), ("negative", "positive"), ("0", "1"), (1, 0)),
        # an exact match wins over one up to case
        (("b", "B"), ("B", "b"), (), (1, 0)),
    ],
)
def test_label_permutation(theirs, names, values, expected):
    assert label_permutation(theirs, names, values) == expected


@pytest.mark.parametrize(
    ("theirs", "names", "message"),
    [
        (
            ("a", "b", "c"),
            ("a", "b"),
            "its classification head has 3 labels (a, b, c), the data 2 (a, b)",
        ),
        (
            ("NEG", "POS"),
            ("negative", "positive"),
            "its labels (NEG, POS) are not the data's (negative, positive): "
            "'NEG' is not one of the data's; names must match (up to case)",
        ),
        # up to case, two of the data's names are alike: no guess
        (("NEG", "POS"), ("neg", "Neg"), "'NEG' is not one of the data's"),
        # a default name is only a default where every name is: "LABEL_0" is then a name
        (("LABEL_0", "pos"), ("0", "pos"), "'LABEL_0' is not one of the data's"),
        # LABEL_i against names that are not integers
        (
            ("LABEL_0", "LABEL_1"),
            ("neg", "pos"),
            "'LABEL_0' (read as '0') is not one of the data's",
        ),
        (("a", "a"), ("a", "b"), "they name a label twice"),
    ],
)
def test_a_mismatch_is_one_line_naming_both_lists(theirs, names, message):
    with pytest.raises(LabelMismatch) as err:
        label_permutation(theirs, names)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_labels_from_id2label_or_transformers_defaults():
    assert checkpoint_labels({"id2label": {"1": "pos", "0": "neg"}}, 2) == ("neg", "pos")
    assert checkpoint_labels({}, 3) == ("LABEL_0", "LABEL_1", "LABEL_2")
    with pytest.raises(Exception, match="names ids \\[0, 1\\], but the classification head has 3"):
        checkpoint_labels({"id2label": {"0": "a", "1": "b"}}, 3)


def test_permute_head_reorders_the_logits(tiny_arch, batch):
    torch.manual_seed(0)
    model = Classifier(Architecture.from_json({**tiny_arch.to_json(), "num_labels": 3})).eval()
    with torch.no_grad():
        before = model(*batch)
        after = permute_head(model, (2, 0, 1))(*batch)
    assert torch.equal(after, before[:, [2, 0, 1]])
    with pytest.raises(ValueError, match="not a permutation"):
        permute_head(model, (0, 0, 1))


# -- the head a checkpoint carries ------------------------------------------------------------


def tiny_bert_config(**extra) -> BertConfig:
    return BertConfig(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        **extra,
    )


def test_a_head_is_read_from_the_weights(tmp_path):
    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(tmp_path / "base")
    config = tiny_bert_config(id2label={0: "pos", 1: "neg", 2: "meh"})
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "tuned")
    base, tuned = read_head(tmp_path / "base"), read_head(tmp_path / "tuned")
    assert (base.rows, base.labels) == (0, ())
    assert (tuned.rows, tuned.labels) == (3, ("pos", "neg", "meh"))
    base_name, tuned_name = str(tmp_path / "base"), str(tmp_path / "tuned")
    assert not is_fine_tuned(FineTuned.AUTO, base_name)
    assert is_fine_tuned(FineTuned.AUTO, tuned_name)
    assert is_fine_tuned(FineTuned.TRUE, tuned_name)
    assert not is_fine_tuned(FineTuned.FALSE, tuned_name)
    with pytest.raises(CheckpointError, match="fine_tuned = true, but .* carries no classif"):
        is_fine_tuned(FineTuned.TRUE, base_name)


def test_fine_tuned_reads_true_false_and_auto_from_a_study_file(tmp_path):
    from autoprumux.core.errors import FieldError
    from autoprumux.core.study import load_study

    for written, expected in [
        ("true", FineTuned.TRUE),
        ("false", FineTuned.FALSE),
        ('"auto"', FineTuned.AUTO),
        ('"true"', FineTuned.TRUE),
    ]:
        path = tmp_path / "s.toml"
        path.write_text(f'[study]\ntask = "sst2"\n[model]\nfine_tuned = {written}\n')
        assert load_study(path).model.fine_tuned is expected
    path.write_text('[study]\ntask = "sst2"\n[model]\nfine_tuned = "yes"\n')
    with pytest.raises(FieldError) as err:
        load_study(path)
    assert str(err.value) == (
        f"{path}: model.fine_tuned: 'yes' is not one of: 'auto', 'true', 'false'"
    )


# -- saved in transformers' format ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_saved_checkpoint_computes_our_logits_in_transformers(case, tmp_path):
    save_random(case, tmp_path / "source")
    ours, _ = load_pretrained(str(tmp_path / "source"))
    ours.eval()
    labels = ("c", "a", "b")
    folder = save_transformers(ours, tmp_path / "saved", labels)
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "c", "1": "a", "2": "b"}
    assert config["label2id"] == {"c": 0, "a": 1, "b": 2}
    reference = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    again, report = load_pretrained(str(folder))
    assert report.initialized == () and again.arch == ours.arch
    for padded in (False, True):
        batch = inputs(case, padded)
        args = (batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        with torch.no_grad():
            expected = ours(*args)
            assert expected.std() > 0.05  # logits that a wrong weight would change
            assert (reference(**batch).logits - expected).abs().max() < 1e-5
            assert torch.equal(again.eval()(*args), expected)


def test_bert_is_saved_under_transformers_key_names(tmp_path):
    save_random(CASES[0], tmp_path / "source")
    ours, _ = load_pretrained(str(tmp_path / "source"))
    from safetensors import safe_open

    folder = save_transformers(ours, tmp_path / "saved", ("x", "y", "z"))
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())  # noqa: SIM118
    assert {
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.attention.self.query.weight",
        "bert.encoder.layer.1.output.LayerNorm.bias",
        "bert.pooler.dense.weight",
        "classifier.weight",
    } <= keys


def test_multiplexed_and_pruned_models_are_refused(tiny_arch, tmp_path):
    with pytest.raises(NotDense, match="multiplexed model \\(N = 2\\)"):
        save_transformers(Classifier(tiny_arch.with_mux(2)), tmp_path / "m", ("a", "b"))
    pruned = Architecture.from_json({**tiny_arch.to_json(), "heads": [4, 2, 4]})
    with pytest.raises(NotDense, match="a pruned model"):
        save_transformers(Classifier(pruned), tmp_path / "p", ("a", "b"))
    assert not any(Path(tmp_path).iterdir())
