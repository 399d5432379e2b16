"""ELECTRA, RoBERTa / XLM-R and DistilBERT beside BERT: our classifier against transformers'
AutoModelForSequenceClassification, on random-weight checkpoints built with transformers' own
config classes (fp32, CPU, eval).

Run as a script, it prints the parity table (family x size x max abs logit difference):
    PYTHONPATH=.:tests/support .venv/bin/python tests/trainers/test_families.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from family_models import (
    CASES,
    Case,
    bert_fields,
    distilbert_config,
    inputs,
    roberta_fields,
    save_random,
)
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    ElectraConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from autoprumux.core.errors import FieldError
from trainers.model.architecture import Architecture, Family
from trainers.model.checkpoints import (
    CheckpointError,
    load_classifier,
    load_pretrained,
    map_key,
    save_model,
)


def max_abs_diff(case: Case, folder: Path, padded: bool) -> tuple[float, Any, torch.Tensor]:
    """Save a random-weight model of the case, load it both ways, compare the logits;
    returns the max abs difference, our load report and transformers' logits."""
    save_random(case, folder)
    reference = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    ours, report = load_pretrained(str(folder))
    batch = inputs(case, padded)
    with torch.no_grad():
        expected = reference(**batch).logits
        got = ours.eval()(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    return float((got - expected).abs().max()), report, expected


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_logits_equal_transformers(case, padded, tmp_path):
    diff, report, expected = max_abs_diff(case, tmp_path, padded)
    assert report.initialized == ()  # every parameter of ours came from the checkpoint
    assert expected.std() > 0.05  # logits of order 0.1 to 1, different per row and label
    assert diff < 1e-5


def test_family_and_fields_from_the_config(tmp_path):
    electra = Architecture.from_hf_config(
        ElectraConfig(**bert_fields(32, 4), embedding_size=16).to_dict()
    )
    assert electra.family is Family.ELECTRA and electra.embedding_width == 16
    assert electra.projects_embeddings
    xlmr = Architecture.from_hf_config(XLMRobertaConfig(**roberta_fields(32, 2)).to_dict())
    assert (xlmr.family, xlmr.padding_idx, xlmr.type_vocab_size) == (Family.ROBERTA, 1, 1)
    assert xlmr.layer_norm_eps == 1e-5
    # 42 position rows, the first two of them never a token's: 40 tokens, as BERT's 40 rows
    assert (xlmr.max_positions, xlmr.max_tokens) == (42, 40)
    assert Architecture.from_hf_config(BertConfig(**bert_fields(32, 4)).to_dict()).max_tokens == 40
    distil = Architecture.from_hf_config(distilbert_config(64, 2).to_dict())
    assert (distil.family, distil.type_vocab_size, distil.intermediate) == (
        Family.DISTILBERT,
        0,
        (192, 192),
    )


def test_architecture_json_keeps_bert_as_it_was_and_round_trips_the_others(tiny_arch):
    assert {"family", "embedding_size", "padding_idx"}.isdisjoint(tiny_arch.to_json())
    electra = Architecture.from_hf_config(
        ElectraConfig(**bert_fields(32, 4), embedding_size=16).to_dict()
    )
    data = json.loads(json.dumps(electra.to_json()))
    assert (data["family"], data["embedding_size"]) == ("electra", 16)
    assert Architecture.from_json(data) == electra
    roberta = Architecture.from_hf_config(RobertaConfig(**roberta_fields(32, 4)).to_dict())
    assert Architecture.from_json(json.loads(json.dumps(roberta.to_json()))) == roberta


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[8]], ids=lambda c: c.name)
def test_a_saved_model_of_a_family_loads_back_the_same(case, tmp_path):
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(case.config).save_pretrained(tmp_path / "hf")
    ours, _ = load_pretrained(str(tmp_path / "hf"))
    again = load_classifier(save_model(ours, tmp_path / "ours"))
    assert again.arch == ours.arch
    batch = inputs(case, padded=True)
    args = (batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    with torch.no_grad():
        assert torch.equal(again(*args), ours.eval()(*args))


def test_family_key_names():
    assert (
        map_key("distilbert.transformer.layer.1.attention.q_lin.weight", family=Family.DISTILBERT)
        == "encoder.layers.1.attention.query.weight"
    )
    assert map_key("pre_classifier.bias", family=Family.DISTILBERT) == "pooler.dense.bias"
    assert map_key("distilbert.vocab_projector.weight", family=Family.DISTILBERT) is None
    assert map_key("classifier.out_proj.weight", family=Family.ROBERTA) == "classifier.weight"
    assert map_key("roberta.pooler.dense.weight", family=Family.ROBERTA) is None
    assert (
        map_key("electra.embeddings_project.weight", family=Family.ELECTRA)
        == "encoder.embeddings.project.weight"
    )
    assert map_key("classifier.dense.bias", family=Family.ELECTRA) == "pooler.dense.bias"
    assert map_key("discriminator_predictions.dense.weight", family=Family.ELECTRA) is None


@pytest.mark.parametrize("model_type", ["deberta-v2", "modernbert", "gpt2"])
def test_an_unsupported_model_type_is_one_line(model_type, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(str(tmp_path))
    message = str(err.value)
    assert message == (
        f"model {str(tmp_path)!r}: config.json model_type: {model_type!r} is not supported; "
        "supported model types: bert, electra, roberta, xlm-roberta, distilbert"
    )


@pytest.mark.parametrize("case", [CASES[0], CASES[8]], ids=lambda c: c.name)
def test_more_layers_than_the_model_has_are_refused_when_it_loads(case, tmp_path):
    """`autoprumux train` loads without the search's plan: the load itself refuses."""
    save_random(case, tmp_path)
    assert load_pretrained(str(tmp_path), num_layers=1)[0].arch.num_layers == 1
    with pytest.raises(FieldError) as err:
        load_pretrained(str(tmp_path), num_layers=3)
    assert str(err.value) == (
        "model.num_layers: 3 is more than the 2 layers of the model; give at most 2 "
        "(0: all of them)"
    )


def parity_table() -> list[tuple[str, float, float, float]]:
    """(case, max abs diff without padding, with padding, max abs logit) for every case."""
    rows = []
    for case in CASES:
        diffs, largest = [], 0.0
        for padded in (False, True):
            with tempfile.TemporaryDirectory() as folder:
                diff, _, expected = max_abs_diff(case, Path(folder), padded)
            diffs.append(diff)
            largest = max(largest, float(expected.abs().max()))
        rows.append((case.name, diffs[0], diffs[1], largest))
    return rows


if __name__ == "__main__":
    print("| family / size | pairs | max abs logit | max abs diff, no padding | padded |")
    print("|---|---|---|---|---|")
    for (name, full, padded, largest), case in zip(parity_table(), CASES, strict=True):
        pairs = "yes" if case.pairs else "no"
        print(f"| {name} | {pairs} | {largest:.2f} | {full:.1e} | {padded:.1e} |")
