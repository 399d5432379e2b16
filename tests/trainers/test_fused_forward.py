"""The fused forward pass (issue 36): q/k/v in one matmul, the masked LayerNorm's indicator
path, removal flags and mask casts once per forward, ``_foreach`` clamps, and the bf16 copy of
a frozen teacher. Every fusion is checked against the computation it replaces, on the CPU;
the GPU path (the kept-dims indicator, no host reads) is run on CPU tensors."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from trainers.model.architecture import Architecture
from trainers.model.classifier import Classifier, frozen_copy, linear_weights_in
from trainers.model.encoder import SelfAttention, masked_layer_norm
from trainers.model.masks import KeptHidden, Masks, removed_blocks
from trainers.pruning.l0 import LOG_ALPHA_MAX, LOG_ALPHA_MIN, L0Module
from trainers.runtime.device import Engine, Precision

VIEWS = {"aten._unsafe_view", "aten.detach"}  # no kernel, as the ops whose schema is a view


class OpCount(TorchDispatchMode):
    """Counts the aten ops that run a kernel (views excluded), forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if not (func.is_view or name in VIEWS):
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def bert_shaped(layers: int, n: int = 1) -> Architecture:
    arch = Architecture.dense(
        num_layers=layers,
        hidden_size=32,
        num_heads=4,
        intermediate_size=64,
        vocab_size=200,
        max_positions=64,
    )
    return dataclasses.replace(arch, mux_width=n) if n > 1 else arch


def indicator_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CPU take the GPU's path: a KeptHidden without the kept dims' indices."""
    of = KeptHidden.of.__func__

    def without_index(cls: type[KeptHidden], hidden: torch.Tensor) -> KeptHidden:
        return dataclasses.replace(of(cls, hidden), index=None)

    monkeypatch.setattr(KeptHidden, "of", classmethod(without_index))


def random_norm(width: int) -> torch.nn.LayerNorm:
    norm = torch.nn.LayerNorm(width, eps=1e-12)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    return norm


# --- 1. q, k, v in one matmul ---------------------------------------------------------------


def test_one_qkv_matmul_equals_three_linears_forward_and_backward():
    torch.manual_seed(0)
    arch = bert_shaped(1)
    attention = SelfAttention(arch, heads=3).eval()  # 3 of 4 heads: a pruned layer's shape
    x = torch.randn(2, 5, 32, requires_grad=True)
    attend = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    attend[1, ..., 3:] = False
    out = attention(x, attend, None)
    out.square().sum().backward()
    fused = [p.grad.clone() for p in (x, attention.query.weight, attention.value.bias)]

    # the reference: three Linear modules, as before the fusion
    x.grad = None
    attention.zero_grad()

    def heads(t: torch.Tensor) -> torch.Tensor:  # [B, L, h*d] -> [B, h, L, d]
        return t.view(2, 5, 3, 8).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        heads(attention.query(x)), heads(attention.key(x)), heads(attention.value(x)), attend
    )
    projected = attention.output(context.transpose(1, 2).reshape(2, 5, -1))
    reference = attention.norm(projected + x)
    reference.square().sum().backward()
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(
        fused, (x.grad, attention.query.weight.grad, attention.value.bias.grad), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # the checkpoint still sees three projections
    keys = attention.state_dict().keys()
    assert {"query.weight", "key.weight", "value.weight", "value.bias"} <= set(keys)


# --- 2. the masked LayerNorm ----------------------------------------------------------------

KEEP = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0], dtype=torch.bool)


def gathered_reference(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """The LayerNorm kernel on the kept dims, zeros elsewhere."""
    kept = torch.nonzero(KEEP, as_tuple=True)[0]
    normed = F.layer_norm(x[..., kept], (len(kept),), norm.weight[kept], norm.bias[kept], 1e-12)
    return torch.zeros_like(x).index_copy(-1, kept, normed)


def test_the_indicator_path_equals_the_index_path_forward_and_backward():
    torch.manual_seed(0)
    norm = random_norm(8)
    hidden = torch.where(KEEP, torch.rand(8) + 0.1, torch.zeros(8))  # soft kept values
    kept = KeptHidden.of(hidden)
    assert kept.index is not None and kept.index.tolist() == [0, 2, 3, 5, 6]  # CPU: exact kernel
    indicator = dataclasses.replace(kept, index=None)
    # pruned dims of x hold values too (the LayerNorm must ignore them), and a large offset
    # tests the centring (no E[x^2] - mean^2 cancellation)
    x = (torch.randn(3, 5, 8) * 3 + 100.0).requires_grad_()
    results = []
    for path in (kept, indicator, None):
        out = gathered_reference(x, norm) if path is None else masked_layer_norm(x, norm, path)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * weights).sum().backward()
        results.append((out.detach(), x.grad.clone(), norm.weight.grad.clone()))
        x.grad = None
        norm.zero_grad()
    for got in results[:2]:
        for value, want in zip(got, results[2], strict=True):
            torch.testing.assert_close(value, want, rtol=1e-5, atol=1e-5)
    assert torch.all(results[1][0][..., ~KEEP] == 0)
    assert torch.all(results[1][1][..., ~KEEP] == 0)  # pruned inputs get no gradient


def test_the_indicator_path_computes_in_float32_and_returns_the_input_dtype():
    torch.manual_seed(0)
    norm = random_norm(8)
    kept = dataclasses.replace(KeptHidden.of(KEEP.float()), index=None)
    x = torch.randn(4, 8).to(torch.bfloat16)
    out = masked_layer_norm(x, norm, kept)
    assert out.dtype == torch.bfloat16
    want = gathered_reference(x.float(), norm).to(torch.bfloat16)  # one rounding, at the end
    torch.testing.assert_close(out, want, rtol=0, atol=0)


def test_all_hidden_dims_pruned_give_zeros_not_nan():
    norm = random_norm(8)
    kept = dataclasses.replace(KeptHidden.of(torch.zeros(8)), index=None)
    assert torch.equal(masked_layer_norm(torch.randn(2, 8), norm, kept), torch.zeros(2, 8))


def test_under_torch_compile_the_kept_dims_need_no_data_dependent_shape():
    """nonzero() would break a fullgraph compile (a data-dependent shape); the indicator path
    compiles as one graph and computes what the eager index path computes."""
    torch.manual_seed(0)
    norm = random_norm(8)
    hidden = KEEP.float() * 0.9

    def normed(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_layer_norm(x, norm, KeptHidden.of(mask))

    x = torch.randn(3, 8)
    compiled = torch.compile(normed, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, hidden), normed(x, hidden), rtol=1e-5, atol=1e-5)
    assert KeptHidden.of(hidden).index is not None  # eager on a CPU: the exact kernel


# --- 3. removal flags, once per forward -----------------------------------------------------


def test_removal_flags_of_all_layers_in_one_op():
    gate = torch.tensor([1.0, 0.0, 0.5, 1.0])  # layer 1's gate closed
    units = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.3, 0.0], [0.0, 0.0]])  # layers 0, 3 empty
    assert removed_blocks(gate, units).tolist() == [True, True, False, True]
    assert removed_blocks(gate, None).tolist() == [False, True, False, False]
    assert removed_blocks(None, units).tolist() == [True, False, False, True]
    assert removed_blocks(None, None) is None
    prepared = Masks(attention=gate, head=units, ffn=torch.ones(4)).prepared()
    assert [bool(prepared.layer(i).attention_removed) for i in range(4)] == [1, 1, 0, 1]
    assert [bool(prepared.layer(i).ffn_removed) for i in range(4)] == [0, 0, 0, 0]
    assert prepared.layer(2).head.tolist() == pytest.approx([0.3, 0.0])


def test_a_removed_block_is_the_identity():
    torch.manual_seed(0)
    arch = bert_shaped(2)
    model = Classifier(arch).eval()
    ids = torch.randint(1, 200, (3, 7))
    head = torch.ones(2, 4)
    head[1] = 0.0  # layer 1's every head off: its attention block passes x through
    masks = Masks(head=head, ffn=torch.tensor([1.0, 0.0]))  # and layer 1's FFN block too
    layers: list[torch.Tensor] = []
    model(ids, masks=masks, collect=layers)
    torch.testing.assert_close(layers[1], layers[0], rtol=0, atol=0)


def test_preparing_the_masks_costs_the_same_for_any_layer_count():
    """Removal flags, casts and the kept dims are computed once for all layers (vectorized):
    the ops of Masks.prepared() do not grow with the layer count."""
    counts = []
    for layers in (2, 6):
        masks = L0Module(bert_shaped(layers)).sample()
        with OpCount() as count:
            masks.prepared()
        counts.append(count.total)
    assert counts[0] == counts[1]


# --- 4. foreach clamps ----------------------------------------------------------------------


def test_the_clamp_is_two_launches_for_all_gates():
    module = L0Module(bert_shaped(2))
    with torch.no_grad():
        for log_alpha in module.log_alpha.values():
            log_alpha.copy_(torch.linspace(-10.0, 10.0, log_alpha.numel()).view_as(log_alpha))
    before = {name: value.detach().clone() for name, value in module.log_alpha.items()}
    with OpCount() as count:
        module.clamp_()
    assert count.ops == {"aten._foreach_clamp_min_": 1, "aten._foreach_clamp_max_": 1}
    for name, log_alpha in module.log_alpha.items():  # what clamp_ on each gate gave
        assert torch.equal(log_alpha, before[name].clamp(LOG_ALPHA_MIN, LOG_ALPHA_MAX)), name
        assert (before[name] < LOG_ALPHA_MIN).any() and (before[name] > LOG_ALPHA_MAX).any()


# --- 5. masks in the activation dtype -------------------------------------------------------


def test_masked_blocks_stay_in_bf16_under_autocast_and_the_gates_learn():
    torch.manual_seed(0)
    arch = bert_shaped(2)
    model = Classifier(arch)
    l0 = L0Module(arch)
    with torch.no_grad():  # gates open halfway: their samples are not clamped to 0 or 1
        for log_alpha in l0.log_alpha.values():
            log_alpha.zero_()
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(module, inputs):
            seen[name] = inputs[0].dtype

        return hook

    layer = model.encoder.layers[1]
    # the inputs of these modules are a masked activation: context * heads, units * their
    # mask, a block's output * its layer gate * the hidden mask
    layer.attention.output.register_forward_pre_hook(record("heads"))
    layer.ffn.down.register_forward_pre_hook(record("units"))
    layer.attention.dropout.register_forward_pre_hook(record("attention block"))
    layer.ffn.dropout.register_forward_pre_hook(record("ffn block"))
    ids = torch.randint(1, 200, (4, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids, torch.ones_like(ids), masks=l0.sample())
    assert seen == dict.fromkeys(seen, torch.bfloat16) and len(seen) == 4
    logits.float().sum().backward()
    for name, log_alpha in l0.log_alpha.items():
        assert log_alpha.grad is not None and log_alpha.grad.dtype == torch.float32, name
        assert torch.isfinite(log_alpha.grad).all() and log_alpha.grad.abs().sum() > 0, name
    seen.clear()  # without autocast the masks stay float32
    model(ids, masks=l0.sample())
    assert seen == dict.fromkeys(seen, torch.float32) and len(seen) == 4


def test_prepared_masks_are_cast_only_under_autocast():
    masks = L0Module(bert_shaped(2)).sample()
    plain = masks.prepared()
    assert plain.layer(0).intermediate.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = masks.prepared()
    layer = cast.layer(1)
    for mask in (layer.head, layer.attention, layer.intermediate, layer.ffn, cast.hidden):
        assert mask.dtype == torch.bfloat16
    assert cast.kept is not None and cast.kept.mean_weights.dtype == torch.float32
    torch.testing.assert_close(layer.intermediate.float(), masks.intermediate[1], rtol=4e-3, atol=0)


# --- 6. the bf16 copy of a frozen teacher ---------------------------------------------------


def test_frozen_copy_is_the_model_itself_unless_bf16_on_a_gpu():
    model = Classifier(bert_shaped(1))
    for engine in (
        Engine(device=torch.device("cpu"), precision=Precision.BF16),
        Engine(device=torch.device("cuda"), precision=Precision.FP32),
        Engine(device=torch.device("cuda"), precision=Precision.FP16),
    ):
        assert frozen_copy(model, engine) is model
    # the decision is the engine's; the copy itself stays where the model is (here a CPU)
    copy = frozen_copy(model, Engine(device=torch.device("cuda"), precision=Precision.BF16))
    assert copy is not model and copy.classifier.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("n", [1, 2])
def test_the_bf16_copy_computes_what_autocast_computes(n):
    """Its Linear weights are what autocast casts them to, the rest stays float32: under bf16
    autocast its logits and layer outputs are the teacher's, bit for bit."""
    torch.manual_seed(0)
    teacher = Classifier(bert_shaped(2, n)).eval()
    copy = linear_weights_in(teacher, torch.bfloat16)
    assert teacher.classifier.weight.dtype == torch.float32  # the teacher is untouched
    assert copy.encoder.layers[0].attention.query.weight.dtype == torch.bfloat16
    assert copy.encoder.layers[0].attention.norm.weight.dtype == torch.float32
    assert copy.encoder.embeddings.word.weight.dtype == torch.float32
    assert not any(p.requires_grad for p in copy.parameters())
    ids = torch.randint(1, 200, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    outputs = []
    for model in (teacher, copy):
        layers: list[torch.Tensor] = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outputs.append((model(ids, mask, collect=layers), layers))
    (want, want_layers), (got, got_layers) = outputs
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, w in zip(got_layers, want_layers, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


# --- fewer ops per layer --------------------------------------------------------------------

# aten ops (views excluded) one training step's forward + backward adds per layer, with all
# five CoFi gates sampled, on the GPU's path (kept-dims indicator). Before the fusions: 199
# (fp32) and 250 (bf16 autocast); after: 130 and 161. A bound that fails when per-call
# recounting, per-layer flags, per-layer mask selects or fp32 masks come back.
OPS_PER_LAYER = {torch.float32: 136, torch.bfloat16: 166}


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_training_step_launches_few_ops_per_layer(monkeypatch, n, dtype):
    indicator_path(monkeypatch)
    totals = []
    for layers in (2, 4):
        torch.manual_seed(0)
        arch = bert_shaped(layers, n)
        model, l0 = Classifier(arch), L0Module(arch)
        ids = torch.randint(1, 200, (4, 12))
        with OpCount() as count:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                logits = model(ids, torch.ones_like(ids), masks=l0.sample())
            logits.float().sum().backward()
        totals.append(count.total)
    assert (totals[1] - totals[0]) / 2 <= OPS_PER_LAYER[dtype]
