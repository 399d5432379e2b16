"""trainers.pruning.l0 against CoFiPruning's L0Module, every expected number worked out by hand.

Shorthand: c = beta * log(-a / b) = (2/3) * ln(0.1 / 1.1) = (2/3) * (-2.397895273) = -1.598596849,
so P(z > 0) = 1 - sigmoid(c - log_alpha) = sigmoid(log_alpha - c) (before the eps clamp), and a
kept gate's soft value is sigmoid(log_alpha / beta * 0.8) = sigmoid(1.2 * log_alpha).

The small model: L = 2 layers, H = 4, 2 heads (head_dim 2), I = 8 FFN units. CoFi counts a head
as (4H^2 + 4H) // heads = (64 + 16) // 2 = 40 parameters, an FFN layer as 2HI + 5H = 64 + 20 = 84,
so the full prunable size is L * heads * 40 + L * 84 = 160 + 168 = 328 (the exact count of the
model's matrices and biases is 312: CoFi's formula differs from it when I != 4H).
"""

import math

import pytest
import torch

from trainers.model.architecture import Architecture, prunable_params
from trainers.pruning.l0 import (
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    Gate,
    L0Module,
    deterministic_gates,
    keep_probability,
)

BERT_BASE = Architecture.dense(
    num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072, vocab_size=30522
)
SMALL = Architecture.dense(
    num_layers=2, hidden_size=4, num_heads=2, intermediate_size=8, vocab_size=10
)
OPEN, CLOSED = 100.0, -100.0  # P(z > 0) = 1 - 1e-6 and 1e-6 (the eps clamp)
C = -1.598596848532247  # (2/3) * ln(0.1 / 1.1)


def test_keep_probability_by_hand():
    # log_alpha 0: sigmoid(0 - c) = 1 / (1 + e^-1.598596849) = 1 / (1 + 0.202218) = 0.8318222
    # log_alpha 10: sigmoid(11.598596849) = 1 - e^-11.5986 / (1 + ...) = 1 - 9.178874e-6
    # log_alpha -5: sigmoid(-3.401403151) = 1 / (1 + 30.0064) = 0.0322516
    # log_alpha ln 100 = 4.605170: sigmoid(6.203767) = 0.9979823 (the clamp's upper end)
    values = keep_probability(torch.tensor([0.0, 10.0, -5.0, 4.605170186])).tolist()
    assert values == pytest.approx([0.8318222, 1 - 9.178874e-6, 0.0322516, 0.9979823], abs=2e-7)
    # the eps clamp: never exactly 0 or 1 (1 - clamp(...) in float32, as CoFi: 1 - 1e-6 is
    # 0.99999899 there, so the closed end is 1 - 0.99999899 = 1.0133e-6)
    assert keep_probability(torch.tensor([OPEN, CLOSED])).tolist() == pytest.approx(
        [1 - 1e-6, 1e-6], abs=2e-8
    )


def test_initialisation_follows_reset_loga():
    torch.manual_seed(0)
    module = L0Module(BERT_BASE)
    # N(10, 0.01) for heads, layer gates and hidden dims; N(ln(0.5) - ln(0.5) = 0, 0.01) for
    # FFN units. Tolerance: 5 standard errors of the mean, 0.01 / sqrt(n).
    expected = {"head": 10.0, "attention": 10.0, "ffn": 10.0, "hidden": 10.0, "intermediate": 0.0}
    for name, mean in expected.items():
        values = module.log_alpha[name].detach()
        assert abs(values.mean().item() - mean) < 5 * 0.01 / math.sqrt(values.numel()), name
        assert (values - mean).abs().max().item() < 0.06, name  # 6 standard deviations
    assert module.log_alpha["intermediate"].std().item() == pytest.approx(0.01, rel=0.05)
    assert module.log_alpha["hidden"].std().item() == pytest.approx(0.01, rel=0.15)


def test_expected_sparsity_right_after_initialisation_for_bert_base():
    torch.manual_seed(0)
    module = L0Module(BERT_BASE)
    # P(10) = 0.99999082 for heads, layer gates, hidden dims; P(0) = 0.83182218 for units.
    # heads: 12 * 12 * 196,864 * P(10)^2 = 28,348,416 * 0.99998164 = 28,347,895.6
    # units: 12 * 3072 * 1536 * P(0) * P(10) = 56,623,104 * 0.83181455 = 47,099,921.7
    # size = P(10) * (28,347,895.6 + 47,099,921.7) = P(10) * 75,447,817.3 = 75,447,124.8
    # sparsity = 1 - 75,447,124.8 / 85,017,600 = 0.1125705
    # (the old init, every gate at 0, and the old count, 2H + 1 per unit over the true full
    # size, gave 1 - 0.8318222^3 * (28,348,416 + 12 * 3072 * 1537) / 85,017,600 = 0.4245012)
    assert module.expected_sparsity().item() == pytest.approx(0.1125705, abs=2e-4)


def test_full_size_is_cofis_formula():
    # BERT-base: 12 * 12 * ((4 * 768^2 + 4 * 768) // 12) + 12 * (2 * 768 * 3072 + 5 * 768)
    #          = 12 * 12 * 196,864 + 12 * 4,722,432 = 28,348,416 + 56,669,184 = 85,017,600
    assert L0Module(BERT_BASE).full_size == 85_017_600
    assert L0Module(SMALL).full_size == 328  # see the module docstring
    assert prunable_params(SMALL) == 312  # the exact count stays the model's own
    # per layer 4*2*2*4 + 3*2*2 + 4 = 80 (attention) + 2*8*4 + 8 + 4 = 76 (FFN); times 2


def set_gates(module, **values):
    with torch.no_grad():
        for name, value in values.items():
            module.log_alpha[name].copy_(torch.tensor(value))


def test_expected_size_with_every_gate_open():
    module = L0Module(SMALL)
    set_gates(
        module,
        head=[[OPEN] * 2] * 2,
        attention=[OPEN] * 2,
        intermediate=[[OPEN] * 8] * 2,
        ffn=[OPEN] * 2,
        hidden=[OPEN] * 4,
    )
    # 4 kept hidden dims * (4 heads * 40 / 4 + 16 units * 2) = 4 * (40 + 32) = 288;
    # the L * 5H = 40 that no gate reaches is the sparsity left: 40 / 328 = 0.1219512
    assert module.expected_size().item() == pytest.approx(288, rel=1e-5)
    assert module.expected_sparsity().item() == pytest.approx(0.1219512, abs=1e-5)


def test_expected_size_with_some_gates_closed():
    module = L0Module(SMALL)
    set_gates(
        module,
        head=[[OPEN, CLOSED], [OPEN, OPEN]],
        attention=[OPEN, CLOSED],  # layer 1's two heads go with its attention block
        intermediate=[[OPEN] * 5 + [CLOSED] * 3, [OPEN] * 8],
        ffn=[OPEN, OPEN],
        hidden=[OPEN, OPEN, OPEN, CLOSED],
    )
    # 3 kept hidden dims * (1 head * 40 / 4 + 13 units * 2) = 3 * (10 + 26) = 108
    # sparsity = 1 - 108 / 328 = 220 / 328 = 0.6707317
    assert module.expected_size().item() == pytest.approx(108, abs=1e-3)
    assert module.expected_sparsity().item() == pytest.approx(0.6707317, abs=1e-5)


def test_expected_size_without_hidden_gates_uses_cofis_other_branch():
    module = L0Module(SMALL, gates=(Gate.HEAD, Gate.INTERMEDIATE))
    set_gates(
        module,
        head=[[OPEN, CLOSED], [OPEN, OPEN]],
        intermediate=[[OPEN] * 5 + [CLOSED] * 3, [OPEN] * 8],
    )
    # get_num_parameters_and_constraint: a unit is (2HI + 5H) // I = 84 // 8 = 10 parameters
    # 3 heads * 40 + 13 units * 10 = 250; sparsity = 1 - 250 / 328 = 0.2378049
    assert module.expected_size().item() == pytest.approx(250, abs=1e-3)
    assert module.expected_sparsity().item() == pytest.approx(0.2378049, abs=1e-5)


def test_lagrangian_by_hand():
    module = L0Module(SMALL)
    set_gates(  # expected sparsity 55 / 82, as in test_expected_size_with_some_gates_closed
        module,
        head=[[OPEN, CLOSED], [OPEN, OPEN]],
        attention=[OPEN, CLOSED],
        intermediate=[[OPEN] * 5 + [CLOSED] * 3, [OPEN] * 8],
        ffn=[OPEN, OPEN],
        hidden=[OPEN, OPEN, OPEN, CLOSED],
    )
    with torch.no_grad():
        module.lambda_1.fill_(2.0)
        module.lambda_2.fill_(3.0)
    # gap = 55/82 - 1/2 = 7/41; 2 * 7/41 + 3 * 49/1681 = 574/1681 + 147/1681 = 721/1681
    loss = module.lagrangian(0.5)
    assert loss.item() == pytest.approx(0.4289114, abs=1e-5)
    loss.backward()  # d/d lambda_1 = gap = 0.1707317, d/d lambda_2 = gap^2 = 0.0291493
    assert module.lambda_1.grad.item() == pytest.approx(0.1707317, abs=1e-5)
    assert module.lambda_2.grad.item() == pytest.approx(0.0291493, abs=1e-5)


def test_clamp_keeps_log_alpha_in_cofis_range():
    # ln 0.01 = -4.6051702, ln 100 = 4.6051702
    assert abs(LOG_ALPHA_MIN + 4.6051702) < 1e-7 and abs(LOG_ALPHA_MAX - 4.6051702) < 1e-7
    module = L0Module(SMALL)
    set_gates(module, hidden=[-10.0, -4.0, 0.5, 7.0], attention=[10.0, -4.6])
    module.clamp_()
    assert module.log_alpha["hidden"].tolist() == pytest.approx([-4.6051702, -4.0, 0.5, 4.6051702])
    assert module.log_alpha["attention"].tolist() == pytest.approx([4.6051702, -4.6])
    assert module.log_alpha["hidden"].requires_grad  # still the trained parameter


def test_deterministic_rounding_is_half_to_even():
    c = torch.tensor(C)  # float32; P(z > 0) = sigmoid(0) = 0.5 exactly at log_alpha = c
    # P(c + t) + P(c - t) = sigmoid(t) + sigmoid(-t) = 1, so 5 - sum P = 5 - 2.5 = 2.5 and
    # round(2.5) = 2 zeros (half up would give 3)
    row = torch.stack([c + 1, c - 1, c + 2, c - 2, c])
    assert 5 - keep_probability(row).sum().item() == 2.5
    mask = deterministic_gates(row.unsqueeze(0))[0].tolist()
    # the two smallest soft values, c - 1 and c - 2, are zeroed; the others keep
    # sigmoid(1.2 * log_alpha): sigmoid(1.2 * -0.598597) = sigmoid(-0.718316) = 0.3277639,
    # sigmoid(1.2 * 0.401403) = sigmoid(0.481684) = 0.6181454, sigmoid(-1.918316) = 0.1280494
    assert mask == pytest.approx([0.3277639, 0.0, 0.6181454, 0.0, 0.1280494], abs=1e-6)
    # 7 - (3 + 0.5) = 3.5: round(3.5) = 4 zeros, the four smallest soft values
    row = torch.stack([c + 1, c - 1, c + 2, c - 2, c + 3, c - 3, c])
    assert 7 - keep_probability(row).sum().item() == 3.5
    mask = deterministic_gates(row.unsqueeze(0))[0].tolist()
    # sigmoid(1.2 * 1.401403) = sigmoid(1.681684) = 0.8431274
    # (c - 3 < c - 2 < c - 1 < c go; c + 1, c + 2, c + 3 stay)
    assert mask == pytest.approx([0.3277639, 0.0, 0.6181454, 0.0, 0.8431274, 0.0, 0.0], abs=1e-6)


def test_deterministic_rows_round_independently():
    # row 0: P = [0.99999082, 0.8318222, 0.0322516] -> 3 - 1.8640646 = 1.136 -> 1 zero (-5)
    # row 1: P(10) * 3 -> 3 - 2.9999725 = 0.0000275 -> 0 zeros
    log_alpha = torch.tensor([[10.0, 0.0, -5.0], [10.0, 10.0, 10.0]])
    mask = deterministic_gates(log_alpha)
    # sigmoid(12) = 0.99999386, sigmoid(0) = 0.5
    assert mask[0].tolist() == pytest.approx([0.9999939, 0.5, 0.0], abs=1e-6)
    assert mask[1].tolist() == pytest.approx([0.9999939] * 3, abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_result_stays_on_the_gates_device():
    torch.manual_seed(0)
    for gates in (tuple(Gate), (Gate.HEAD, Gate.INTERMEDIATE)):
        module = L0Module(SMALL, gates=gates).to("cuda")
        assert module.expected_sparsity().device.type == "cuda"
        module.lagrangian(0.5).backward()
        module.clamp_()
        for masks in (module.sample(), module.deterministic(), module.calibrated(0.5)):
            for name in ("head", "attention", "intermediate", "ffn", "hidden"):
                value = getattr(masks, name)
                assert value is None or value.device.type == "cuda", name


def test_missing_gates_are_made_on_the_gates_device():
    # the meta device stands in for an accelerator on a CPU-only machine: a CPU tensor of
    # ones mixed into the expected size would fail there
    module = L0Module(SMALL, gates=(Gate.HEAD, Gate.INTERMEDIATE)).to("meta")
    assert module.expected_sparsity().device.type == "meta"
    assert module._soft(Gate.HIDDEN, (4,)).device.type == "meta"


def test_mux_bert_config_without_demux_depth_reads_depth_two():
    # the released DataMUX code: num_hidden_demux_layers if the config has it, else 2
    config = {
        "model_type": "bert",
        "num_hidden_layers": 2,
        "hidden_size": 8,
        "num_attention_heads": 2,
        "intermediate_size": 16,
        "vocab_size": 30,
        "num_instances": 2,
    }
    assert Architecture.from_hf_config(config).demux_depth == 2
    assert Architecture.from_hf_config({**config, "num_hidden_demux_layers": 3}).demux_depth == 3
