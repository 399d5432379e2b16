"""Multiplexing: grouping, padding, dependence on inputs, and the released MUX-BERT computation."""

import json

import pytest
import torch
import torch.nn.functional as F
from mux_reference import index_pos_demux, mix, mux_config, mux_weights
from transformers import BertConfig, BertModel

from trainers.model.architecture import DemuxKind, MuxStyle, Pooling
from trainers.model.checkpoints import load_pretrained
from trainers.model.classifier import Classifier, set_dropout
from trainers.model.multiplexing import gaussian_keys


def test_keys_have_the_requested_norm():
    keys = gaussian_keys(5, 384, norm=384**0.5)
    assert torch.allclose(keys.norm(dim=1), torch.full((5,), 384**0.5))


def test_n1_has_no_multiplexer(tiny_arch):
    model = Classifier(tiny_arch)
    assert not hasattr(model, "mux") and hasattr(model, "pooler")


def run(model, input_ids, attention_mask):
    with torch.no_grad():
        return model.eval()(input_ids, attention_mask)


def test_outputs_depend_on_own_input_and_other_inputs_only_through_mixing(tiny_arch, batch):
    torch.manual_seed(0)
    for demux in DemuxKind:
        model = Classifier(tiny_arch.with_mux(2, demux=demux))
        input_ids, attention_mask = batch
        base = run(model, input_ids, attention_mask)
        changed = input_ids.clone()
        changed[1, 1:4] = (changed[1, 1:4] + 7) % 200  # row 1: instance 1 of group 0
        out = run(model, changed, attention_mask)
        assert (out[1] - base[1]).abs().max() > 1e-4  # its own output moves
        assert (out[0] - base[0]).abs().max() > 0  # its group partner's moves (mixing)
        assert torch.equal(out[2:], base[2:])  # other groups do not
        # with instance 1's key zeroed, instance 0 no longer sees instance 1 at all
        model.mux.keys[1] = 0
        assert torch.equal(
            run(model, changed, attention_mask)[0], run(model, input_ids, attention_mask)[0]
        )


def test_a_batch_not_a_multiple_of_n_is_padded_and_trimmed(tiny_arch, batch):
    model = Classifier(tiny_arch.with_mux(4))
    input_ids, attention_mask = batch  # 6 rows: one full group of 4, one group of 2 + 2 padding
    out = run(model, input_ids, attention_mask)
    assert out.shape == (6, 2)
    assert torch.allclose(out[:4], run(model, input_ids[:4], attention_mask[:4]))


def test_the_caller_input_is_not_modified(tiny_arch, batch):
    model = Classifier(tiny_arch.with_mux(2, mux_style=MuxStyle.PUBLISHED))
    input_ids, attention_mask = batch
    before = input_ids.clone()
    run(model, input_ids, attention_mask)
    assert torch.equal(input_ids, before)


def published_reference(bert, weights, input_ids, n):
    """The released MUX-BERT classification forward, written out with transformers' BertModel."""
    ids = input_ids.clone()
    ids[:, 0] = 101
    mixed = mix(bert.embeddings(input_ids=ids), weights["instance_embedding"])  # token type 0
    sequence = bert(inputs_embeds=mixed).last_hidden_state  # embeddings applied a second time
    x = index_pos_demux(weights, sequence[:, 0], n)
    return F.linear(x, weights["classifier.weight"], weights["classifier.bias"])


def test_published_muxbert_checkpoint_keys_and_logits(tmp_path, batch):
    """A state dict with the released key names loads into our model and gives its logits."""
    torch.manual_seed(0)
    n, hidden = 2, 32
    config = BertConfig(
        vocab_size=200,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    bert = BertModel(config, add_pooling_layer=False).eval()
    weights = {f"bert.{k}": v for k, v in bert.state_dict().items()}
    weights.update(mux_weights(n, hidden, hidden, vocab=200))
    weights["classifier.weight"] = torch.randn(2, hidden)
    weights["classifier.bias"] = torch.randn(2)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                **config.to_dict(),
                "model_type": "bert",
                **mux_config(n),
            }
        )
    )

    model, report = load_pretrained(str(tmp_path))
    assert model.arch.mux_width == 2 and model.arch.mux_style is MuxStyle.PUBLISHED
    assert report.initialized == ()
    assert (
        "retrieval_head.decoder.weight" in report.dropped
        and "demux_module.dense_3.weight" in report.dropped
    )
    assert torch.equal(model.mux.keys, weights["instance_embedding"])
    input_ids, attention_mask = batch
    with torch.no_grad():
        expected = published_reference(bert, weights, input_ids, n)
        got = model.eval()(input_ids, attention_mask)  # the released models ignore the mask
    assert (got - expected).abs().max() < 1e-5


def test_mean_pooling_reads_only_the_instances_own_tokens(tiny_arch, batch):
    from trainers.model.architecture import Pooling

    torch.manual_seed(0)
    model = Classifier(tiny_arch.with_mux(2, pooling=Pooling.MEAN)).eval()
    input_ids, attention_mask = batch
    with torch.no_grad():
        features = model.features(input_ids, attention_mask)
        hidden = model.multiplexed_hidden(input_ids, attention_mask, None, None)
        tokens = model.demux(hidden)  # [B, L, size]
        own = attention_mask[2].bool()  # row 2 has 8 real tokens
        assert torch.allclose(features[2], tokens[2][own].mean(0), atol=1e-6)


def test_mean_hidden_pooling_demultiplexes_each_instances_own_mean(tiny_arch, batch):
    from trainers.model.architecture import Pooling

    torch.manual_seed(0)
    model = Classifier(tiny_arch.with_mux(2, pooling=Pooling.MEAN_HIDDEN)).eval()
    input_ids, attention_mask = batch
    with torch.no_grad():
        features = model.features(input_ids, attention_mask)
        hidden = model.multiplexed_hidden(input_ids, attention_mask, None, None)  # [3, L, H]
        own = attention_mask[5].bool()  # row 5: instance 1 of group 2, 5 real tokens
        mean = hidden[2][own].mean(0)  # [H]
        expected = model.demux(mean.unsqueeze(0)).view(2, -1)[1]  # instance 1's demux of it
        assert torch.allclose(features[5], expected, atol=1e-6)


def test_set_dropout_reaches_every_dropout(tiny_arch, batch):
    """Dropout 0 in train mode gives the eval-mode output: no dropout is left anywhere (hidden,
    attention, demultiplexer, classifier); the model's own 0.1 does not."""
    input_ids, attention_mask = batch
    model = Classifier(tiny_arch.with_mux(2))
    expected = run(model, input_ids, attention_mask)
    model.train()
    torch.manual_seed(0)
    assert not torch.allclose(model(input_ids, attention_mask), expected)
    set_dropout(model, 0.0)
    assert torch.allclose(model(input_ids, attention_mask), expected, atol=1e-6)
    set_dropout(model, 0.3)
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.3} and model.encoder.layers[0].attention.attention_dropout == 0.3


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("pooling", list(Pooling))
def test_cutting_unused_padding_changes_no_output(tiny_arch, width, pooling):
    """Dynamic padding (splits.batches(trim=True)) is exact for every model that says it
    ignores padding: the logits of a batch cut to its longest example are those of the batch
    padded to 20 tokens (to float rounding), for every width and pooling."""
    torch.manual_seed(0)
    lengths = torch.tensor([3, 9, 2, 6, 4, 8, 5, 7])  # the longest is 9 of 20 columns
    mask = (torch.arange(20)[None, :] < lengths[:, None]).long()
    input_ids = torch.randint(1, 200, mask.shape) * mask
    model = Classifier(tiny_arch.with_mux(width, pooling=pooling))
    assert model.arch.ignores_padding
    padded = run(model, input_ids, mask)
    cut = run(model, input_ids[:, :9], mask[:, :9])
    assert torch.allclose(cut, padded, atol=1e-5)
    # the released MUX-BERT computation attends to padding too: it is never cut
    published = Classifier(tiny_arch.with_mux(width, pooling=pooling, mux_style=MuxStyle.PUBLISHED))
    assert published.arch.ignores_padding == (width == 1)
    if width > 1:
        published_cut = run(published, input_ids[:, :9], mask[:, :9])
        assert not torch.allclose(published_cut, run(published, input_ids, mask), atol=1e-3)
