"""CoFi gates, expected sparsity, deterministic masks, and materialization."""

import math

import pytest
import torch

from trainers.model.architecture import Architecture, DemuxKind, MuxStyle, Pooling, prunable_params
from trainers.model.checkpoints import load_classifier, save_model
from trainers.model.classifier import Classifier
from trainers.model.masks import Masks
from trainers.pruning.l0 import Gate, L0Module, deterministic_gates, keep_probability, sample_gates
from trainers.pruning.materialize import materialize

BERT_BASE = Architecture.dense(
    num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072, vocab_size=30522
)


def test_gate_probability_by_hand():
    # P(z > 0) = 1 - sigmoid(beta log(-a/b) - log_alpha) with beta = 2/3, a = -0.1, b = 1.1
    # log_alpha 0: 1 - sigmoid((2/3) ln(1/11)) = 1 - sigmoid(-1.5985968) = 0.8318222
    assert float(keep_probability(torch.tensor(0.0))) == pytest.approx(0.8318222, abs=2e-7)
    by_hand = 1 - 1 / (1 + math.exp(-((2 / 3) * math.log(0.1 / 1.1) - 2.0)))
    assert float(keep_probability(torch.tensor(2.0))) == pytest.approx(by_hand, rel=1e-6)
    assert float(keep_probability(torch.tensor(100.0))) == pytest.approx(1 - 1e-6)
    # 1 - clamp(1.0, eps, 1 - eps) in float32: 1 - 0.99999899 = 1.0133e-6
    assert float(keep_probability(torch.tensor(-100.0))) == pytest.approx(1e-6, abs=2e-8)


def test_samples_are_hard_concrete():
    torch.manual_seed(0)
    log_alpha = torch.zeros(200_000)
    z = sample_gates(log_alpha)
    assert z.min() == 0 and z.max() == 1  # stretched and clamped: exact zeros and ones occur
    assert float((z > 0).float().mean()) == pytest.approx(
        float(keep_probability(log_alpha[0])), abs=0.005
    )


def test_full_prunable_size_generalises():
    # CoFi's L * heads * ((4H^2 + 4H) // heads) + L * (2HI + 5H); with I = 4H it is also the
    # exact count of the model (tests/trainers/test_l0_cofi.py has a model where they differ)
    # BERT-base: 12 * 12 * 196,864 + 12 * (4,718,592 + 3,840) = 85,017,600
    assert L0Module(BERT_BASE).full_size == 85_017_600 == prunable_params(BERT_BASE)
    minilm = Architecture.dense(
        num_layers=6, hidden_size=384, num_heads=12, intermediate_size=1536, vocab_size=30522
    )
    # 6 * 12 * ((4*384^2 + 4*384) // 12) + 6 * (2*384*1536 + 5*384)
    #   = 6 * 12 * 49,280 + 6 * 1,181,568 = 3,548,160 + 7,089,408 = 10,637,568
    assert L0Module(minilm).full_size == 10_637_568 == prunable_params(minilm)


def set_log_alpha(module, value):
    with torch.no_grad():
        for parameter in module.log_alpha.values():
            parameter.fill_(value)


def test_expected_sparsity_of_open_and_closed_gates():
    module = L0Module(BERT_BASE)
    set_log_alpha(module, 100.0)
    # every gate kept: CoFi's 5H per FFN layer belongs to no gate,
    # 12 * 5 * 768 / 85,017,600 = 46,080 / 85,017,600 = 0.000542005
    assert module.expected_sparsity().item() == pytest.approx(0.000542005, abs=1e-5)
    set_log_alpha(module, -100.0)
    assert module.expected_sparsity().item() == pytest.approx(1.0, abs=1e-5)


def test_expected_size_by_hand_on_a_small_model():
    arch = Architecture.dense(
        num_layers=1, hidden_size=4, num_heads=2, intermediate_size=3, vocab_size=10
    )
    module = L0Module(arch, gates=(Gate.HEAD, Gate.INTERMEDIATE))
    with torch.no_grad():
        module.log_alpha["head"].copy_(torch.tensor([[100.0, -100.0]]))  # one head of two kept
        module.log_alpha["intermediate"].copy_(torch.tensor([[100.0, 100.0, -100.0]]))  # two units
    # without hidden gates (CoFi's get_num_parameters_and_constraint) a head carries
    # (4*16 + 4*4) // 2 = 40, a unit (2*4*3 + 5*4) // 3 = 44 // 3 = 14: 40 + 28 = 68 of the
    # full 1 * 2 * 40 + 1 * 44 = 124; sparsity 1 - 68 / 124 = 0.4516129
    assert module.expected_size().item() == pytest.approx(68, rel=1e-5)
    assert module.expected_sparsity().item() == pytest.approx(0.4516129, abs=1e-6)


def test_deterministic_masks_zero_the_expected_number_and_keep_soft_values():
    log_alpha = torch.tensor([[3.0, -3.0, 0.5, -0.2, 2.0]])
    probability = keep_probability(log_alpha)  # about [0.99, 0.19, 0.88, 0.79, 0.97]
    zeros = round(5 - float(probability.sum()))
    assert zeros == 1
    mask = deterministic_gates(log_alpha)
    soft = torch.sigmoid(log_alpha / (2 / 3) * 0.8)
    assert mask[0, 1] == 0  # the smallest soft value goes
    keep = [0, 2, 3, 4]
    assert torch.allclose(mask[0, keep], soft[0, keep])


def test_deterministic_layer_gates_are_rows_of_one():
    arch = Architecture.dense(
        num_layers=3, hidden_size=8, num_heads=2, intermediate_size=4, vocab_size=10
    )
    module = L0Module(arch)
    with torch.no_grad():
        module.log_alpha["attention"].copy_(torch.tensor([5.0, -5.0, 0.0]))
    masks = module.deterministic()
    assert masks.attention[1] == 0 and masks.attention[0] > 0.99 and masks.attention[2] > 0


def test_lagrangian_by_hand():
    module = L0Module(BERT_BASE)
    set_log_alpha(module, 100.0)  # expected sparsity 0.000542005 (every gate kept, see above)
    with torch.no_grad():
        module.lambda_1.fill_(2.0)
        module.lambda_2.fill_(3.0)
    # gap = 0.000542005 - 0.6 = -0.5994580; 2 * gap + 3 * gap^2 = -1.1989160 + 1.0780496
    assert module.lagrangian(0.6).item() == pytest.approx(-0.1208663, abs=1e-5)


def structured_masks(arch):
    """Masks that drop heads, a whole attention block, FFN units, a whole FFN and hidden dims,
    with soft values elsewhere."""
    generator = torch.Generator().manual_seed(3)
    layers, heads, units, hidden = (
        arch.num_layers,
        arch.heads[0],
        arch.intermediate[0],
        arch.hidden_size,
    )

    def soft(*shape):
        return 0.5 + 0.5 * torch.rand(*shape, generator=generator)

    head = soft(layers, heads)
    head[0, 1] = 0
    head[2, :2] = 0
    attention = soft(layers)
    attention[1] = 0  # whole attention block of layer 1 gone
    intermediate = soft(layers, units)
    intermediate[:, ::3] = 0
    ffn = soft(layers)
    ffn[2] = 0  # whole FFN of layer 2 gone
    hidden_mask = soft(hidden)
    hidden_mask[::4] = 0
    return Masks(head, attention, intermediate, ffn, hidden_mask)


ARCH_VARIANTS = [
    {},
    {"mux_width": 2},
    {"mux_width": 3, "demux": DemuxKind.MLP},
    {"mux_width": 2, "mux_style": MuxStyle.PUBLISHED},
    {"mux_width": 2, "pooling": Pooling.MEAN},
    {"mux_width": 3, "pooling": Pooling.MEAN_HIDDEN},
]


@pytest.mark.parametrize(
    "variant",
    ARCH_VARIANTS,
    ids=lambda v: "-".join(f"{k}={getattr(x, 'value', x)}" for k, x in v.items()) or "n1",
)
def test_materialized_model_equals_masked_model(tiny_arch, batch, variant):
    torch.manual_seed(0)
    arch = tiny_arch.with_mux(variant.pop("mux_width", 1), **variant)
    model = Classifier(arch).eval()
    masks = structured_masks(arch)
    small = materialize(model, masks)
    assert small.arch.heads == (3, 0, 2)
    assert small.arch.intermediate == (42, 42, 0)
    assert small.arch.hidden_size == 24
    with torch.no_grad():
        assert (small(*batch) - model(*batch, masks=masks)).abs().max() < 1e-4


def test_materialized_parameter_count_is_the_count_the_masks_imply(tiny_arch):
    model = Classifier(tiny_arch)
    masks = structured_masks(tiny_arch)
    small = materialize(model, masks)
    counted = sum(
        p.numel() for name, p in small.encoder.layers.named_parameters() if ".norm." not in name
    )
    # by hand from the masks: H' = 24, head_dim 8; layer 0: 3 heads, 42 units; layer 1: 42
    # units; layer 2: 2 heads
    attention = lambda h: 4 * h * 8 * 24 + 3 * h * 8 + 24  # noqa: E731
    ffn = lambda i: 2 * i * 24 + i + 24  # noqa: E731
    assert counted == prunable_params(small.arch) == attention(3) + ffn(42) + ffn(42) + attention(2)


def test_save_load_gives_identical_outputs(tiny_arch, batch, tmp_path):
    torch.manual_seed(0)
    arch = tiny_arch.with_mux(2)
    small = materialize(Classifier(arch).eval(), structured_masks(arch))
    folder = save_model(small, tmp_path / "model")
    loaded = load_classifier(folder)
    assert loaded.arch == small.arch and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(*batch), small(*batch))


def test_materialized_model_is_smaller_and_unaffected_by_masks_on_the_dense_one(tiny_arch):
    model = Classifier(tiny_arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = materialize(model, structured_masks(tiny_arch))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_sampled_masks_train_the_gates(tiny_arch, batch):
    torch.manual_seed(0)
    for arch in (tiny_arch, tiny_arch.with_mux(2)):
        model, module = Classifier(arch), L0Module(arch)
        # undecided gates: at CoFi's initial log_alpha of 10 nearly every sample is clamped to
        # 1 and carries no gradient (with lambdas 0 the Lagrangian carries none either)
        set_log_alpha(module, 0.0)
        logits = model(*batch, masks=module.sample())
        loss = logits.square().mean() + module.lagrangian(0.5)
        loss.backward()
        for gate, parameter in module.log_alpha.items():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), gate
            assert parameter.grad.abs().sum() > 0, gate
