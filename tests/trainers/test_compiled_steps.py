"""Compiled training steps (``[training] compile``): the same loss curve as eager steps, one
graph per batch shape and never a recompile as steps go on, checkpoints that resume either
way, and (marked ``gpu``) steps that never wait for the device, replayed as CUDA graphs.

On the CPU the compiled steps run dynamo's ``aot_eager`` backend (``Engine.compile_backend``):
the same graph capture, forward and backward through AOTAutograd, with eager kernels, in
seconds instead of inductor's minutes of C++ on 2 cores; one slow test runs inductor."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from random_batches import random_encoded

from autoprumux.core.study import TrainingSection, WarmupSection
from trainers.data.splits import Encoded
from trainers.model.architecture import Architecture
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.pruning.materialize import materialize
from trainers.runtime.device import Engine, compilable_adamw, compiled_graphs
from trainers.training.loop import Phase, PhaseFigures, run_phase, train_step
from trainers.training.phases import (
    BatchCounts,
    confusion,
    finetune_phase,
    identity_map,
    pruning_phase,
    warmup_phase,
)
from trainers.training.retrieval import RetrievalHead, _pair_features, retrieval_loss

AOT = Engine(compile=True, compile_backend="aot_eager")
# graphs the update compiles besides the loss's: optimizer.step graph-breaks before and after
# itself (torch.optim's _use_grad: so that AOTAutograd sees a no-grad graph), so the update
# is up to three graphs (before the step: negation and clipping; the step; after it: clamp)
UPDATE_GRAPHS = 3


def _run(phase: Phase, engine: Engine, **kwargs: object) -> tuple[list[float], PhaseFigures]:
    losses: list[float] = []
    figures: list[PhaseFigures] = []
    run_phase(
        phase,
        engine=engine,
        progress=lambda p: losses.append(p.loss),
        figures=figures.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return losses, figures[0]


def _phase(kind: str, arch: Architecture, data: Encoded, steps: int = 10) -> Phase:
    torch.manual_seed(0)  # the same weights, and the same dropout and L0 draws, each run
    model = Classifier(arch)
    training = TrainingSection(batch_rows=4)
    if kind == "finetune":
        return finetune_phase(model, data, steps, 1e-3, 4, 0, training)
    teacher = Classifier(arch).eval()
    return pruning_phase(
        model, teacher, L0Module(arch), identity_map(32), data, training, steps, 4, 0.5, 0
    )


@pytest.mark.slow  # dynamo traces each step's graphs: 7 to 10 s a case on 2 cores
@pytest.mark.parametrize(("kind", "width"), [("finetune", 1), ("finetune", 2), ("prune", 1)])
def test_compiled_steps_follow_the_eager_loss_curve(tiny_arch, kind, width):
    """aot_eager runs the very ops eager runs, in the same order (dropout and L0 gates draw
    the same numbers): the losses agree to float32 rounding (the optimizer's update reads
    its learning rate from a float32 tensor, the eager one from a Python float)."""
    arch = dataclasses.replace(tiny_arch, mux_width=width)
    data = random_encoded(48)
    eager, plain = _run(_phase(kind, arch, data), Engine())
    phase = _phase(kind, arch, data)
    compiled, figures = _run(phase, AOT)
    assert len(eager) == len(compiled) == 10
    assert compiled == pytest.approx(eager, abs=1e-4)
    assert plain.compiles == 0 and 1 <= figures.compiles <= 1 + UPDATE_GRAPHS
    model = phase.modules["student" if kind == "prune" else "model"]
    assert isinstance(model, Classifier)
    assert confusion(model, data, 4, AOT) == confusion(model, data, 4)


@pytest.mark.slow  # three buckets' graphs traced: about 8 s on 2 cores
def test_a_phase_compiles_one_graph_per_bucket_and_never_again(tiny_arch):
    """Batches of one row of 2 to 24 tokens, padded to the buckets 8, 16 and 24: three loss
    graphs (and the update's), all compiled by the time every bucket has been seen; the
    learning rate's decay and the step count never recompile."""
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 25, (40,), generator=generator)
    mask = (torch.arange(24)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 200, mask.shape, generator=generator) * mask
    data = Encoded(ids, mask, torch.zeros_like(ids), torch.randint(0, 2, (40,)))
    training = TrainingSection(batch_rows=1, length_buckets=(8, 16, 24))
    torch.manual_seed(0)
    phase = finetune_phase(Classifier(tiny_arch), data, 24, 1e-3, 1, 0, training)
    buckets: list[int] = []  # each step's batch length
    drawn = phase.data

    def recorded(start: int):  # type: ignore[no-untyped-def]
        for batch in drawn(start):
            buckets.append(batch.input_ids.shape[1])
            yield batch

    phase.data = recorded
    before = compiled_graphs()
    graphs: list[int] = []  # graphs compiled so far, after each step
    _, figures = _run(
        phase, AOT, check=lambda step: graphs.append(compiled_graphs()), check_steps=range(24)
    )
    assert set(buckets) == {8, 16, 24}
    all_seen = max(buckets.index(b) for b in (8, 16, 24)) + 1  # steps until every bucket ran
    assert graphs[all_seen - 1] == graphs[-1] == before + figures.compiles
    assert 3 <= figures.compiles <= 3 + UPDATE_GRAPHS


@pytest.mark.slow  # about 5 s on 2 cores
def test_a_compiled_phase_resumes_on_the_eager_curve(tiny_arch, tmp_path):
    """A compiled phase stopped after its checkpoint at step 5 resumes eagerly (and a
    learning rate saved as a tensor comes back a number), on the uninterrupted curve."""

    class Stop(Exception):
        pass

    def stop_at_6(progress):  # type: ignore[no-untyped-def]
        if progress.step == 6:
            raise Stop

    data = random_encoded(48)
    eager, _ = _run(_phase("finetune", tiny_arch, data), Engine())
    with pytest.raises(Stop):
        run_phase(
            _phase("finetune", tiny_arch, data),
            tmp_path / "ckpt",
            checkpoint_every=5,
            progress=stop_at_6,
            engine=AOT,
        )
    phase = _phase("finetune", tiny_arch, data)
    resumed, figures = _run(phase, Engine(), checkpoint_dir=tmp_path / "ckpt", checkpoint_every=5)
    assert figures.steps == 5 and resumed == pytest.approx(eager[5:], abs=1e-4)
    assert all(isinstance(group["lr"], float) for group in phase.optimizer.param_groups)
    assert not any(group["foreach"] for group in phase.optimizer.param_groups)


def test_compiled_engines_compile_with_fixed_shapes_and_cuda_graphs_on_a_gpu():
    assert Engine(compile=True).compile_options() == {"backend": "inductor", "dynamic": False}
    gpu = Engine(device=torch.device("cuda"), compile=True)
    assert gpu.compile_options()["mode"] == "reduce-overhead"
    on_gpu = dataclasses.replace(gpu, compile_backend="aot_eager")  # mode is inductor's
    assert on_gpu.compile_options() == {"backend": "aot_eager", "dynamic": False}


def test_the_learning_rate_is_a_tensor_the_schedule_fills_in_place(tiny_arch):
    model = Classifier(tiny_arch)
    phase = finetune_phase(model, random_encoded(48), 4, 1e-3, 4, 0, TrainingSection())
    optimizer = compilable_adamw(phase.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    rates = [group["lr"] for group in optimizer.param_groups]
    assert all(isinstance(r, torch.Tensor) and r.dim() == 0 for r in rates)
    assert [g["initial_lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / 4)
    optimizer.step()  # no gradients: nothing moves
    schedule.step()
    assert [group["lr"] for group in optimizer.param_groups] == rates  # the same tensors
    assert rates[0].item() == pytest.approx(0.75e-3)
    assert schedule.base_lrs == [1e-3, 1e-3]  # numbers: a step computes no tensors


def _reference_retrieval_loss(model, head, batch):  # type: ignore[no-untyped-def]
    """The loss over every real token (what any draw of more positions than there are
    tokens gives), over unique() candidates: the shape-changing form this module had."""
    width = model.arch.mux_width
    ids = batch.input_ids
    groups_count, length = ids.shape[0] // width, ids.shape[1]
    valid = batch.attention_mask.view(groups_count, width, length).clone()
    valid[:, :, 0] = 0
    triples = torch.nonzero(valid)
    groups, instances, places = triples[:, 0], triples[:, 1], triples[:, 2]
    hidden = model.multiplexed_hidden(ids, batch.attention_mask, batch.token_type_ids, None)
    features = _pair_features(model, hidden, groups, places, instances)
    targets = ids[groups * width + instances, places]
    candidates = torch.unique(targets)
    return F.cross_entropy(head(features, candidates), torch.searchsorted(candidates, targets))


@pytest.mark.parametrize("positions", [1000, 10])
def test_the_retrieval_loss_has_fixed_shapes_and_the_sampled_softmax_of_unique_ids(
    tiny_arch, positions
):
    """Drawing more positions than a batch has tokens takes every token (the rest weigh 0);
    repeated target ids count once in the softmax, as unique() made them; and no shape
    depends on values: the loss runs on the meta device, where nonzero() and unique() cannot."""
    torch.manual_seed(0)
    model = Classifier(tiny_arch.with_mux(2)).eval()
    head = RetrievalHead(model)
    batch = random_encoded(8, length=6)
    loss = retrieval_loss(model, head, batch, positions=positions, negatives=0)
    tokens = int(batch.attention_mask[:, 1:].sum())
    assert tokens < 1000 and len(set(batch.input_ids[batch.attention_mask.bool()].tolist())) < 40
    if positions > tokens:
        reference = _reference_retrieval_loss(model, head, batch)
        assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    else:
        assert torch.isfinite(loss) and loss.item() > 0
    on_meta = Classifier(tiny_arch.with_mux(2)).to("meta")
    meta_loss = retrieval_loss(
        on_meta, RetrievalHead(on_meta), batch.to("meta"), positions, negatives=8
    )
    assert meta_loss.shape == () and meta_loss.device.type == "meta"


@pytest.mark.slow  # inductor's C++ compiles: a minute or more on 2 cores
def test_inductor_on_the_cpu_follows_the_eager_loss_curve(tiny_arch):
    """Inductor fuses kernels and so sums in another order (float32 rounding, ~1e-7 relative
    a sum; 1.4e-6 at most over these 10 losses of ~0.7 when measured), and its random numbers
    come from its own generator: with dropout the curves would differ from the first step,
    so this fine-tuning has dropout off. The rounding differences grow through Adam's
    updates: 1e-4 leaves them room over 10 steps, and still fails a wrong step."""
    arch = dataclasses.replace(tiny_arch, hidden_dropout=0.0, attention_dropout=0.0)
    data = random_encoded(48)
    eager, _ = _run(_phase("finetune", arch, data), Engine())
    compiled, figures = _run(_phase("finetune", arch, data), Engine(compile=True))
    assert compiled == pytest.approx(eager, abs=1e-4) and figures.compiles >= 1


# -- on a GPU ---------------------------------------------------------------------------------


def _gpu_phases(arch: Architecture, width: int, steps: int = 4) -> list[Phase]:
    """A phase of every kind on CUDA at width N: warm-up (N > 1), fine-tune, prune + distill,
    post-prune fine-tune (the materialized student, distilled from the teacher)."""
    arch = arch.with_mux(width) if width > 1 else arch
    data = random_encoded(96, length=16).to("cuda")
    training = TrainingSection(batch_rows=4, length_buckets=(8, 16))
    torch.manual_seed(0)
    student, teacher = Classifier(arch).cuda(), Classifier(arch).cuda().eval()
    l0 = L0Module(arch).cuda()
    layer_map = identity_map(32).cuda()
    small = materialize(Classifier(arch), L0Module(arch).calibrated(0.5)).cuda()
    phases = [
        finetune_phase(student, data, steps, 1e-3, 4, 0, training),
        pruning_phase(student, teacher, l0, layer_map, data, training, steps, 2, 0.5, 0),
        finetune_phase(small, data, steps, 1e-3, 4, 0, training, teacher, "post-finetune"),
    ]
    if width > 1:
        settings = WarmupSection(batch_rows=4, positions=8, negatives=16)
        head = RetrievalHead(student)
        phases.insert(0, warmup_phase(student, head, data, settings, 0, steps, None, (8, 16)))
    return phases


def _without_host_waits(run: Callable[[], object]) -> None:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any wait for the device raises
    try:
        run()
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.gpu
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("width", [1, 2])
def test_a_step_of_every_phase_never_waits_for_the_gpu(tiny_arch, width, compiled):
    """After its first steps (compiled: the first runs the graphs once, the second records
    them as CUDA graphs, each of which may synchronise), a step of every phase and an
    evaluation batch run with no host synchronisation: eager, and replayed as CUDA graphs."""
    engine = dataclasses.replace(Engine.resolve("cuda", "bf16"), compile=compiled)
    warm = 2 if compiled else 1
    for phase in _gpu_phases(tiny_arch, width):
        if compiled:
            phase.optimizer = compilable_adamw(phase.optimizer)  # as run_phase makes it
        trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
        batches = phase.data(0)
        drawn = [next(batches) for _ in range(warm + 1)]  # before: drawing is not the step
        for step, batch in enumerate(drawn[:warm]):
            train_step(phase, batch, step, engine, None, trained)
        last = functools.partial(train_step, phase, drawn[-1], warm, engine, None, trained)
        _without_host_waits(last)
    model = phase.modules["model"]
    assert isinstance(model, Classifier)
    model.eval()
    count = BatchCounts(model, 2, 4 * width, engine)
    batch = random_encoded(4 * width, length=16).to("cuda")
    with torch.no_grad(), engine.autocast():
        for _ in range(warm):
            count(batch)
        _without_host_waits(lambda: count(batch))


@pytest.mark.gpu
def test_a_compiled_phase_on_cuda_records_at_most_one_graph_per_bucket(tiny_arch):
    """40 steps over batches of 1 to 4 buckets' lengths: the loss compiles once per bucket
    (plus the update's graphs), never again, and no graph is left out of CUDA graphs."""
    from torch._dynamo.utils import counters

    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 33, (64,), generator=generator)
    mask = (torch.arange(32)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 200, mask.shape, generator=generator) * mask
    data = Encoded(ids, mask, torch.zeros_like(ids), torch.randint(0, 2, (64,))).to("cuda")
    buckets = (8, 16, 24, 32)
    training = TrainingSection(batch_rows=1, length_buckets=buckets)
    model = Classifier(tiny_arch).cuda()
    engine = Engine.resolve("cuda", "bf16", compile=True)
    skips = counters["inductor"]["cudagraph_skips"]
    _, figures = _run(finetune_phase(model, data, 40, 1e-3, 1, 0, training), engine)
    assert figures.compiles <= len(buckets) + UPDATE_GRAPHS
    assert counters["inductor"]["cudagraph_skips"] == skips
