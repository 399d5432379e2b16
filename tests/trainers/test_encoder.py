"""Our encoder against transformers' BertModel on the same weights."""

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from trainers.model.architecture import Architecture
from trainers.model.checkpoints import CheckpointError, load_pretrained, map_key


def save_hf(model, folder):
    model.save_pretrained(folder)
    return str(folder)


def test_matches_bert_model_on_a_random_tiny_config(tmp_path, batch):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=200,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    reference = BertModel(config).eval()
    ours, report = load_pretrained(save_hf(reference, tmp_path))
    assert set(report.initialized) == {"classifier.weight", "classifier.bias"}
    input_ids, attention_mask = batch
    token_types = torch.zeros_like(input_ids)
    token_types[:, 6:] = 1
    with torch.no_grad():
        expected = reference(input_ids, attention_mask, token_types).last_hidden_state
        got = ours.eval().encoder(input_ids, attention_mask, token_types)
    assert (got - expected).abs().max() < 1e-5


def test_matches_bert_model_with_the_real_minilm_weights(minilm_path, batch):
    reference = BertModel.from_pretrained(str(minilm_path)).eval()
    ours, _ = load_pretrained(str(minilm_path))
    assert ours.arch.num_layers == 6 and ours.arch.hidden_size == 384
    input_ids, attention_mask = batch
    input_ids = input_ids + 2000  # real word pieces
    with torch.no_grad():
        expected = reference(input_ids, attention_mask).last_hidden_state
        got = ours.eval().encoder(input_ids, attention_mask)
    assert (got - expected).abs().max() < 1e-4


def test_n1_classifier_equals_bert_for_sequence_classification(tmp_path, batch):
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=200,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    reference = BertForSequenceClassification(config).eval()
    ours, report = load_pretrained(save_hf(reference, tmp_path))
    assert report.initialized == () and ours.arch.num_labels == 3
    with torch.no_grad():
        assert (ours.eval()(*batch) - reference(*batch).logits).abs().max() < 1e-5


def test_key_mapping():
    assert (
        map_key("bert.encoder.layer.3.attention.self.query.weight")
        == "encoder.layers.3.attention.query.weight"
    )
    assert map_key("encoder.layer.0.output.LayerNorm.gamma") == "encoder.layers.0.ffn.norm.weight"
    assert map_key("bert.embeddings.LayerNorm.beta") == "encoder.embeddings.norm.bias"
    assert map_key("cls.predictions.bias") is None
    assert map_key("bert.embeddings.position_ids") is None
    assert map_key("demux_module.dense_2.weight") == "demux.dense.1.weight"
    assert map_key("demux_module.dense_3.weight") is None  # the retrieval head's last layer
    assert map_key("demux_module.layer_norm_1.weight") is None


def test_not_a_bert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="'gpt2' is not supported; supported model types"):
        load_pretrained(str(tmp_path))
    with pytest.raises(CheckpointError, match="not a folder"):
        load_pretrained(str(tmp_path / "missing"))
    with pytest.raises(
        CheckpointError,
        match="model 'package:no_such_module.*no installed package 'no_such_module'",
    ):
        load_pretrained("package:no_such_module/model")


def test_architecture_json_round_trip(tiny_arch):
    arch = tiny_arch.with_mux(4)
    assert Architecture.from_json(json.loads(json.dumps(arch.to_json()))) == arch


def test_a_hub_id_without_a_reachable_hub_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        load_pretrained("princeton-nlp/muxbert_base_sst2_gaussian_hadamard_index_pos_2")
    message = str(err.value)
    assert "not a local folder, and the hub download failed" in message and "\n" not in message
