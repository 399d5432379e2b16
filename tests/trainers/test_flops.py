"""FLOP counts of trainers.runtime.flops against torch's own counter on real models and phases,
a hand-computed case, BERT-base against the issue's figure, and the GPUs' peaks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from autoprumux.core.study import TrainingSection, WarmupSection
from trainers.data.splits import Encoded
from trainers.model.architecture import Architecture, DemuxKind, Family, Pooling
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.runtime import flops
from trainers.training.phases import finetune_phase, identity_map, pruning_phase, warmup_phase
from trainers.training.retrieval import RetrievalHead

BASE = Architecture.dense(
    num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64, vocab_size=120
)
# a materialized pruned model: uneven heads and units, a layer without attention, one
# without FFN
PRUNED = dataclasses.replace(BASE, heads=(4, 1, 0), intermediate=(5, 0, 64))
ELECTRA = dataclasses.replace(BASE, family=Family.ELECTRA, embedding_size=16)
ARCHITECTURES = {
    "n1": BASE,
    "n2": BASE.with_mux(2),
    "n3-mean-mlp": BASE.with_mux(3, pooling=Pooling.MEAN, demux=DemuxKind.MLP),
    "n2-mean-hidden": BASE.with_mux(2, pooling=Pooling.MEAN_HIDDEN),
    "pruned": PRUNED,
    "pruned-n2": PRUNED.with_mux(2),
    "electra": ELECTRA,
    "electra-n2": ELECTRA.with_mux(2),  # a pooler after the demultiplexer
}


def inputs(rows: int, length: int) -> Encoded:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 120, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[::3, length // 2 :] = 0  # some padding: the kernels compute it all the same
    labels = torch.randint(0, 2, (rows,), generator=generator)
    return Encoded(ids * mask, mask, torch.zeros_like(ids), labels)


def torch_count(model: Classifier, batch: Encoded, train: bool) -> int:
    """torch's count of a forward (and with ``train`` a backward) pass. The math attention
    backend, whose products torch counts as bmm: the fused CPU kernel is not in its registry
    (it counts no attention at all), and on CUDA its flash kernel's backward counts 5 products
    (it recomputes the scores), 2.5 times the forward's, where ours counts the 4 a backward
    needs."""
    model.train(train)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        if train:
            logits.sum().backward()
    return counter.get_total_flops()


def test_a_tiny_forward_and_step_counted_by_hand():
    arch = Architecture.dense(
        num_layers=1, hidden_size=4, num_heads=2, intermediate_size=8, vocab_size=10
    )  # d = 2, 2 labels, N = 1; 3 sequences of 5 tokens: 15 tokens
    # q, k, v, o: 2 * 4 * 4 * 4 * 15 = 1920; QKᵀ and PV: 2 * 2 * (3 * 2 heads) * 5² * 2 = 1200;
    # FFN: 2 * 2 * 4 * 8 * 15 = 1920; pooler 2 * 4 * 4 * 3 = 96; classifier 2 * 4 * 2 * 3 = 48
    assert flops.encoder_flop(arch, 3, 5) == 1920 + 1200 + 1920
    assert flops.forward_flop(arch, 3, 5) == 5184
    assert flops.training_flop(arch, 3, 5) == 3 * 5184
    # a teacher's forward, and the layer map: 3 * 2 * 4² * 15 tokens * 1 layer = 1440
    assert flops.training_flop(arch, 3, 5, teacher=arch, layer_map=True) == 4 * 5184 + 1440


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_forward_count_is_torchs(name):
    arch = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = Classifier(arch)
    batch = inputs(7, 10)  # 7 rows: a multiplexed model pads them to a multiple of N
    assert flops.forward_flop(arch, 7, 10) == torch_count(model, batch, train=False)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_training_count_is_torchs_but_for_a_mask_product(name):
    arch = ARCHITECTURES[name]
    torch.manual_seed(0)
    model = Classifier(arch)
    counted = torch_count(model, inputs(7, 10), train=True)
    expected = flops.training_flop(arch, 7, 10)
    if arch.pooling is Pooling.MEAN_HIDDEN and arch.is_multiplexed:
        # its mean over each instance's tokens is a product with the attention mask, which
        # needs no gradient: its backward is one product, where the rule counts two
        groups, width, length = 4, 2, 10
        expected -= 2 * groups * width * length * arch.hidden_size
    assert expected == counted


def phase_count(phase) -> tuple[int, Encoded]:  # type: ignore[no-untyped-def]
    """torch's count of one step of a phase's loss and its backward, and the batch."""
    batch = next(phase.data(0))
    done = torch.zeros((), dtype=torch.float64)  # the steps done, as the loop passes them
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        phase.loss(batch, done).backward()
    return counter.get_total_flops(), batch


def test_the_phase_counts_are_torchs_on_the_phases_losses():
    training = TrainingSection(batch_rows=4)
    train = inputs(64, 10)
    torch.manual_seed(0)
    # fine-tuning an N = 2 model that also learns a (1, 0) teacher's logits
    guide, model = Classifier(BASE).eval(), Classifier(BASE.with_mux(2))
    phase = finetune_phase(model, train, 5, 1e-3, 4, 0, training, teacher=guide)
    counted, batch = phase_count(phase)
    assert batch.input_ids.shape[0] == 8  # 4 rows x N = 2
    assert flops.finetune_flop(model.arch, guide.arch)(batch) == counted
    # pruning: the masked student at its dense shape, the teacher, the layer map
    teacher, student = Classifier(BASE).eval(), Classifier(BASE)
    l0 = L0Module(student.arch)
    phase = pruning_phase(student, teacher, l0, identity_map(32), train, training, 5, 2, 0.5, 0)
    counted, batch = phase_count(phase)
    assert flops.pruning_flop(student.arch, teacher.arch)(batch) == counted
    # the pruned model's fine-tuning with the dense teacher's logits
    small = Classifier(PRUNED)
    phase = finetune_phase(small, train, 5, 1e-3, 4, 0, training, teacher=teacher)
    counted, batch = phase_count(phase)
    assert flops.finetune_flop(small.arch, teacher.arch)(batch) == counted


def test_the_warmup_count_bounds_torchs_by_the_candidates_that_repeat():
    torch.manual_seed(0)
    model = Classifier(BASE.with_mux(2))
    head = RetrievalHead(model)
    settings = WarmupSection(batch_rows=4, positions=16, negatives=8)
    phase = warmup_phase(model, head, inputs(64, 10), settings, 0, 5)
    counted, batch = phase_count(phase)
    ours = flops.warmup_flop(model.arch, 16, 8)(batch)
    # the logits over the candidates: 3 * 2 * size * candidates * positions; the count takes
    # all 16 + 8 candidates (an upper bound), where a token drawn twice is one candidate
    per_candidate = 3 * 2 * 32 * 16
    assert 0 <= ours - counted <= 23 * per_candidate
    assert (ours - counted) % per_candidate == 0


def test_bert_base_at_the_papers_batch_is_the_issues_step():
    bert = Architecture.dense(
        num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072, vocab_size=30522
    )
    step = flops.training_flop(bert, 32, 128)
    # 6 x 84,934,656 weight-matrix entries x 128 tokens (65.23 GFLOP an example) + attention
    # 3 x 12 layers x 4 x 128² x 768 (1.81 GFLOP) + pooler and classifier 6 x (768² + 768 x 2)
    per_example = 6 * 84_934_656 * 128 + 3 * 12 * 4 * 128**2 * 768 + 6 * (768**2 + 768 * 2)
    assert step == 32 * per_example == 2_145_449_705_472
    # the issue's 2.15 TFLOP a step, 67.1 GFLOP an example: its 85.05 M "matmul parameters"
    # hold the biases too (adds, not multiply-adds): 0.08 % more
    assert step / 32 == pytest.approx(67.1e9, rel=1e-3)
    assert step == pytest.approx(2.15e12, rel=3e-3)


@pytest.mark.parametrize(
    ("name", "precision", "tf32", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", True, 989.5),
        ("NVIDIA H100 PCIe", "bf16", True, 756.5),
        ("NVIDIA H100 80GB HBM3", "fp32", True, 494.5),
        ("NVIDIA H100 80GB HBM3", "fp32", False, 67.0),
        ("NVIDIA H200", "bf16", True, 989.5),
        ("NVIDIA H200 NVL", "fp16", True, 835.5),
        ("NVIDIA A100-SXM4-40GB", "bf16", True, 312.0),
        ("NVIDIA A100 80GB PCIe", "fp32", True, 156.0),
        ("NVIDIA L4", "bf16", True, 121.0),
        ("NVIDIA L40S", "bf16", True, 362.05),
        ("NVIDIA A10", "fp16", True, 125.0),
        ("Tesla V100-SXM2-16GB", "fp16", True, 125.0),
        ("Tesla V100-PCIE-32GB", "fp32", True, 14.0),  # no TF32: plain fp32
        ("NVIDIA GeForce RTX 4090", "bf16", True, 165.2),
    ],
)
def test_the_peaks_are_the_datasheets_dense_figures(name, precision, tf32, tflops):
    assert flops.peak_flops(name, precision, tf32) == pytest.approx(tflops * 1e12)


@pytest.mark.parametrize(
    ("name", "precision"),
    [
        ("x86_64", "fp32"),  # a CPU
        ("NVIDIA A10G", "bf16"),  # not the A10: its own figures, not listed
        ("NVIDIA L40", "bf16"),
        ("Tesla V100-SXM2-16GB", "bf16"),  # no bfloat16 units
    ],
)
def test_an_unknown_peak_is_none_never_guessed(name, precision):
    assert flops.peak_flops(name, precision) is None


def test_mfu_is_the_share_of_the_peak():
    assert flops.mfu(2.15e12 * 100, 10.0, 989.5e12) == pytest.approx(21.5e12 / 989.5e12)
    assert flops.mfu(1e12, 1.0, None) is None
    assert flops.mfu(1e12, 0.0, 1e12) is None
