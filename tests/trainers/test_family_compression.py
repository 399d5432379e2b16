"""Pruning and multiplexing every encoder family: CoFi's masks and the physical shrink
(ELECTRA's projection, DistilBERT's missing token types, RoBERTa's positions), the retrieval
warm-up, and a released multiplexed ELECTRA computed as MUX-ELECTRA's code computes it."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from family_models import CASES, Case, bert_fields, inputs, save_random
from mux_reference import index_pos_demux, mix, mux_config, mux_weights
from safetensors.torch import save_file
from transformers import ElectraConfig, ElectraForSequenceClassification

from trainers.data.splits import Encoded
from trainers.model.architecture import Family, MuxStyle, Pooling, prunable_params
from trainers.model.checkpoints import load_classifier, load_pretrained, save_model
from trainers.model.masks import Masks
from trainers.pruning.l0 import L0Module
from trainers.pruning.materialize import materialize
from trainers.training.retrieval import RetrievalHead, retrieval_loss

# one case of each family with 4 heads, and ELECTRA both with and without a projection
FAMILY_CASES = [c for c in CASES if c.name in {
    "bert/h32", "electra/h32-e16", "electra/h64-e64", "roberta/h32", "xlm-roberta/h48",
    "distilbert/h32",
}]  # fmt: skip
VARIANTS = {
    "n1": {},
    "n2": {"mux_width": 2},
    "n2-published": {"mux_width": 2, "mux_style": MuxStyle.PUBLISHED},
    "n3-mean-hidden": {"mux_width": 3, "pooling": Pooling.MEAN_HIDDEN},
}


def family_masks(case: Case, hidden: int, heads: int, units: int) -> Masks:
    """Two layers: layer 0 loses a head and its FFN block, layer 1 its attention block; every
    third FFN unit and every fourth hidden dim are gone; the rest have soft values."""
    generator = torch.Generator().manual_seed(3)

    def soft(*shape: int) -> torch.Tensor:
        return 0.5 + 0.5 * torch.rand(*shape, generator=generator)

    head, attention, intermediate, ffn, hidden_mask = (
        soft(2, heads), soft(2), soft(2, units), soft(2), soft(hidden)
    )  # fmt: skip
    head[0, 0] = 0
    attention[1] = 0
    intermediate[:, ::3] = 0
    ffn[0] = 0
    hidden_mask[::4] = 0
    return Masks(head, attention, intermediate, ffn, hidden_mask)


def arguments(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    batch = inputs(case, padded=True)
    return batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
@pytest.mark.parametrize("case", FAMILY_CASES, ids=[c.name for c in FAMILY_CASES])
def test_the_materialized_model_computes_what_the_masked_one_does(case, variant, tmp_path):
    model, _ = load_pretrained(str(save_random(case, tmp_path / "hf")), **VARIANTS[variant])
    model.eval()
    arch = model.arch
    masks = family_masks(case, arch.hidden_size, arch.num_heads, arch.intermediate[0])
    small = materialize(model, masks)
    kept_hidden = arch.hidden_size - len(range(0, arch.hidden_size, 4))
    assert small.arch.hidden_size == kept_hidden
    assert small.arch.heads == (arch.num_heads - 1, 0)
    assert small.arch.intermediate == (
        0,
        arch.intermediate[0] - len(range(0, arch.intermediate[0], 3)),
    )
    # ELECTRA's tables and keys keep their width: its projection's outputs are what shrink
    assert small.arch.embedding_width == (16 if case.name == "electra/h32-e16" else kept_hidden)
    assert small.encoder.embeddings.word.weight.shape[1] == small.arch.embedding_width
    assert sum(
        p.numel() for name, p in small.encoder.layers.named_parameters() if ".norm." not in name
    ) == prunable_params(small.arch)
    with torch.no_grad():
        expected = model(*arguments(case), masks=masks)
        got = small(*arguments(case))
    assert expected.std() > 0.01  # the logits differ per row: a wrong fold would show
    assert (got - expected).abs().max() < 1e-5
    again = load_classifier(save_model(small, tmp_path / "small"))
    with torch.no_grad():
        assert torch.equal(again(*arguments(case)), got)


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("case", FAMILY_CASES, ids=[c.name for c in FAMILY_CASES])
def test_cofi_gates_of_every_type_train_on_every_family(case, width, tmp_path):
    """A sampled-mask step's gradient reaches all five gate types and the encoder's weights."""
    model, _ = load_pretrained(str(save_random(case, tmp_path)), mux_width=width)
    gates = L0Module(model.arch)
    with torch.no_grad():  # gates in mid-course (kept gates start saturated, with no gradient)
        for log_alpha in gates.log_alpha.values():
            log_alpha.fill_(0.5)
    model.train()
    for _ in range(8):  # a hard-concrete sample may close or open a gate fully (no gradient)
        logits = model(*arguments(case), masks=gates.sample())
        loss = F.cross_entropy(logits, torch.arange(len(logits)) % logits.shape[1])
        (loss + gates.lagrangian(0.5)).backward()
    for name, log_alpha in gates.log_alpha.items():
        assert log_alpha.grad is not None and log_alpha.grad.abs().sum() > 0, name
    assert model.encoder.layers[0].attention.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("case", FAMILY_CASES, ids=[c.name for c in FAMILY_CASES])
def test_the_retrieval_warm_up_trains_every_family(case, tmp_path):
    """The warm-up's loss reaches the encoder and the demultiplexer, and a few steps lower it."""
    model, _ = load_pretrained(str(save_random(case, tmp_path)), mux_width=2)
    head = RetrievalHead(model)
    input_ids, attention_mask, token_type_ids = (
        None if t is None else t[:4] for t in arguments(case)
    )  # two groups of two
    batch = Encoded(
        input_ids,
        attention_mask,
        torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
        torch.zeros(len(input_ids), dtype=torch.long),
    )
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=3e-3)
    model.train()
    losses = []
    for _ in range(30):
        torch.manual_seed(0)  # the same sampled positions every step
        loss = retrieval_loss(model, head, batch, positions=16, negatives=8)
        optimizer.zero_grad()
        loss.backward()
        losses.append(float(loss))
        optimizer.step()
    assert model.demux.keys.grad.abs().sum() > 0
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("embedding_size", [16, 32], ids=["projected", "same-width"])
def test_a_published_muxelectra_loads_and_computes_as_released(embedding_size, tmp_path):
    """A checkpoint with MUX-ELECTRA's key names and config (princeton-nlp/muxelectra_*)
    gives the logits of its released classification forward: the embeddings (at the tables'
    width) mixed by the instance keys, embedded again and projected inside ElectraModel, every
    position attended, the demultiplexer on position 0, ElectraClassificationHead."""
    torch.manual_seed(0)
    n, hidden = 2, 32
    config = ElectraConfig(**bert_fields(hidden, 4), embedding_size=embedding_size)
    config.num_labels = 2
    reference = ElectraForSequenceClassification(config).eval()
    weights = {k: v for k, v in reference.state_dict().items() if "position_ids" not in k}
    weights.update(mux_weights(n, embedding_size, hidden, vocab=config.vocab_size))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({**config.to_dict(), **mux_config(n)}))

    model, report = load_pretrained(str(tmp_path))
    assert model.arch.family is Family.ELECTRA and model.arch.mux_style is MuxStyle.PUBLISHED
    assert model.arch.mux_width == n and report.initialized == ()
    assert "retrieval_head.decoder.weight" in report.dropped
    assert model.mux.keys.shape == (n, embedding_size)

    batch = inputs(CASES[2], padded=True)
    input_ids = batch["input_ids"][:4].clone()
    input_ids[:, 0] = 101  # a tokenizer's [CLS]; the released code does not force it
    with torch.no_grad():
        electra = reference.electra
        mixed = mix(electra.embeddings(input_ids=input_ids), weights["instance_embedding"])
        sequence = electra(inputs_embeds=mixed).last_hidden_state  # [G, L, H]
        demuxed = index_pos_demux(weights, sequence[:, 0], n)  # [G*N, H]
        expected = reference.classifier(demuxed[:, None, :])
        got = model.eval()(input_ids, batch["attention_mask"][:4])
    assert expected.std() > 0.01
    assert (got - expected).abs().max() < 1e-5
