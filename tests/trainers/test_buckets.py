"""Length buckets: their choice (hand-computed and against brute force), batches padded to
them, the same outputs as cut batches, the shapes a phase produces, the check of a list that
cannot hold the data, and a tiny trial trained with them on the CPU."""

import itertools
import random

import pytest
import torch

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import TrainingSection, WarmupSection, load_study
from trainers.data.buckets import check_buckets, choose_buckets, mean_padded
from trainers.data.splits import Encoded, batch_cuts, batches, chosen_buckets, endless_batches
from trainers.model.architecture import MuxStyle
from trainers.model.classifier import Classifier, set_dropout
from trainers.pruning.l0 import L0Module
from trainers.training import phases
from trainers.training.loop import run_phase
from trainers.training.phases import (
    confusion,
    finetune_phase,
    identity_map,
    padding_buckets,
    pruning_phase,
    training_buckets,
    warmup_phase,
)
from trainers.training.retrieval import RetrievalHead
from trainers.trial.run import TrialSpec, run_trial

# -- the choice ----------------------------------------------------------------------------


def test_the_fewest_buckets_within_two_percent_of_the_best_eight():
    """Cuts 5, 12, 13, 30, 64 round to the candidates 8, 16, 16, 32, 64. Total padded
    length (5 batches): {64} 320; best 2: {16, 64} 176; best 3: {16, 32, 64} 144; all 4
    candidates {8, 16, 32, 64}: 136. 144 is 5.9 % above 136: a 2 % tolerance keeps all four,
    a 6 % one drops 8."""
    cuts = [5, 12, 13, 30, 64]
    assert choose_buckets(cuts, 64) == (8, 16, 32, 64)
    assert mean_padded(cuts, (8, 16, 32, 64)) == 136 / 5
    assert choose_buckets(cuts, 64, tolerance=0.06) == (16, 32, 64)
    assert mean_padded(cuts, (16, 32, 64)) == 144 / 5
    assert choose_buckets(cuts, 64, most=2) == (16, 64)
    assert choose_buckets(cuts, 64, most=1) == (64,)
    assert choose_buckets([], 64) == (64,)


def test_the_top_bucket_is_the_top_even_off_a_multiple_of_eight():
    """Width 20: cuts 3, 9, 17, 20 round to 8, 16, 20, 20 (capped). Totals: {20} 80,
    {8, 20} 68, {8, 16, 20} 64 (68 is 6 % above 64)."""
    assert choose_buckets([3, 9, 17, 20], 20) == (8, 16, 20)
    assert choose_buckets([3, 9, 17, 20], 20, most=2) == (8, 20)
    # the top is kept even when no batch needs it: rows longer than every cut seen may come
    assert choose_buckets([3, 4, 5], 64) == (8, 64)
    with pytest.raises(ValueError, match="longer than the top bucket 16"):
        choose_buckets([3, 17], 16)


@pytest.mark.parametrize("seed", range(5))
def test_the_choice_is_the_best_of_every_subset(seed):
    """Against brute force: for each k, no k candidates (the top among them) pad less than
    the chosen k; the choice is the fewest within 2 % of the best of 8."""
    rng = random.Random(seed)
    cuts = [min(96, int(rng.expovariate(1 / 25)) + 1) for _ in range(300)]
    candidates = sorted({min(96, -(-c // 8) * 8) for c in cuts} | {96})
    best = {}
    for k in range(1, 9):
        best[k] = min(
            mean_padded(cuts, (*subset, 96))
            for subset in itertools.combinations(candidates[:-1], k - 1)
        )
        assert mean_padded(cuts, choose_buckets(cuts, 96, most=k, tolerance=0.0)) == best[k]
    chosen = choose_buckets(cuts, 96)
    k = len(chosen)
    assert chosen[-1] == 96 and list(chosen) == sorted(set(chosen)) and k <= 8
    assert best[k] <= 1.02 * best[8] and (k == 1 or best[k - 1] > 1.02 * best[8])


# -- batches padded to buckets ---------------------------------------------------------------


def _padded(lengths: list[int], width: int) -> Encoded:
    """Examples of the given token counts (random ids), right-padded to ``width``; labels are
    the row numbers."""
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(1, 200, mask.shape, generator=torch.Generator().manual_seed(1)) * mask
    return Encoded(ids, mask, torch.zeros_like(ids), torch.arange(len(lengths)))


def _lengths(count: int, seed: int = 0, longest: int = 64) -> list[int]:
    """SST-2-like token counts: many short sentences, a few long ones."""
    rng = random.Random(seed)
    return [min(longest, 3 + int(rng.expovariate(1 / 12))) for _ in range(count)]


@pytest.mark.parametrize("group_rows", [0, 1, 2])
def test_every_batch_is_padded_to_the_smallest_bucket_that_holds_it(group_rows):
    lengths = _lengths(400)
    data = _padded(lengths, 64)
    draw = {"generator": torch.Generator().manual_seed(3), "trim": True, "group_rows": group_rows}
    cut = list(batches(data, 8, **draw))  # type: ignore[arg-type]
    draw["generator"] = torch.Generator().manual_seed(3)
    padded = list(batches(data, 8, buckets=(16, 32, 64), **draw))  # type: ignore[arg-type]
    assert len(cut) == len(padded) == 50
    for short, long in zip(cut, padded, strict=True):
        longest = max(lengths[i] for i in short.labels.tolist())
        assert short.input_ids.shape[1] == longest
        assert long.input_ids.shape[1] == min(b for b in (16, 32, 64) if b >= longest)
        assert torch.equal(long.labels, short.labels)  # the same rows, in the same order
        assert torch.equal(long.input_ids[:, :longest], short.input_ids)
        assert not long.attention_mask[:, longest:].any()  # only padding was added
    assert {b.input_ids.shape[1] for b in padded} <= {16, 32, 64}
    # a bucket beyond the data's width is its width; a batch longer than every bucket is
    # padded to the full width
    widths = {b.input_ids.shape[1] for b in batches(data, 8, trim=True, buckets=(16, 128))}
    assert widths == {16, 64}
    assert {b.input_ids.shape[1] for b in batches(data, 8, trim=True, buckets=(8,))} <= {8, 64}


@pytest.mark.parametrize("group_rows", [0, 1, 2])
def test_the_cuts_counted_are_those_the_batches_have(group_rows):
    """batch_cuts draws an epoch as batches(trim=True) does (seed 0 first), and evaluation's
    unshuffled batches, the last one partial."""
    lengths = _lengths(203)
    data = _padded(lengths, 64)
    drawn = batches(data, 8, torch.Generator().manual_seed(0), trim=True, group_rows=group_rows)
    cuts = batch_cuts(data, 8, group_rows, least=1)
    assert cuts == [b.input_ids.shape[1] for b in drawn] and len(cuts) == 25
    assert len(batch_cuts(data, 8, group_rows)) == 25 * 16  # 512 batches: at most 16 epochs
    assert len(batch_cuts(data, 4, group_rows)) == 50 * 11  # ceil(512 / 50) epochs
    unshuffled = batch_cuts(data, 8, shuffled=False)
    assert unshuffled == [max(lengths[i : i + 8]) for i in range(0, 203, 8)]
    assert len(unshuffled) == 26


def test_grouped_batches_choose_shorter_buckets_than_random_ones():
    lengths = _lengths(2000)
    data = _padded(lengths, 64)
    random_batches = chosen_buckets(data, 32)
    grouped = chosen_buckets(data, 32, group_rows=1)
    assert random_batches[-1] == grouped[-1] == 64 and len(grouped) <= 8
    assert mean_padded(batch_cuts(data, 32, 1), grouped) < mean_padded(
        batch_cuts(data, 32), random_batches
    )
    # the top is the longest example rounded up to a multiple of 8 where that is shorter
    assert chosen_buckets(_padded([3, 9, 21, 5] * 8, 64), 4)[-1] == 24
    assert chosen_buckets(_padded([3, 9, 19, 5] * 8, 20), 4)[-1] == 20


@pytest.mark.parametrize("width", [1, 2])
def test_padded_batches_give_the_logits_of_cut_ones(tiny_arch, width):
    """A STANDARD model ignores padding: each batch padded to a bucket gives its cut batch's
    logits to fp32 rounding, at N = 1 and N = 2."""
    torch.manual_seed(0)
    model = Classifier(tiny_arch.with_mux(width)).eval()
    assert model.arch.ignores_padding
    data = _padded(_lengths(96, longest=60), 64)
    cut = batches(data, 8, torch.Generator().manual_seed(2), trim=True, group_rows=width)
    padded = batches(
        data, 8, torch.Generator().manual_seed(2), trim=True, group_rows=width, buckets=(16, 64)
    )
    with torch.no_grad():
        for short, long in zip(cut, padded, strict=True):
            assert long.input_ids.shape[1] in (16, 64) and short.input_ids.shape[1] < 64
            expected = model(short.input_ids, short.attention_mask, short.token_type_ids)
            logits = model(long.input_ids, long.attention_mask, long.token_type_ids)
            assert (logits - expected).abs().max() <= 1e-5


# -- phases ----------------------------------------------------------------------------------


def _phases(tiny_arch, data, training, warmup_buckets=()):  # type: ignore[no-untyped-def]
    one, two = Classifier(tiny_arch), Classifier(tiny_arch.with_mux(2))
    rows = training.batch_rows
    return {
        "finetune": finetune_phase(one, data, 2, 1e-3, rows, 0, training),
        "distilled": finetune_phase(two, data, 2, 1e-3, rows, 0, training, teacher=one),
        "warmup": warmup_phase(
            two,
            RetrievalHead(two),
            data,
            WarmupSection(batch_rows=rows, group_by_length=training.group_by_length),
            0,
            2,
            length_buckets=warmup_buckets,
        ),
        "prune": pruning_phase(
            two, two, L0Module(two.arch), identity_map(32), data, training, 2, 1, 0.5, 0
        ),
    }


@pytest.mark.parametrize("grouped", [False, True])
def test_a_phase_produces_no_more_shapes_than_buckets(tiny_arch, grouped):
    data = _padded(_lengths(320), 64)
    buckets = (16, 32, 64)
    training = TrainingSection(batch_rows=4, length_buckets=buckets, group_by_length=grouped)
    for name, phase in _phases(tiny_arch, data, training, warmup_buckets=buckets).items():
        widths = {b.input_ids.shape[1] for b in itertools.islice(phase.data(0), 120)}
        assert widths <= set(buckets), name
        assert 1 < len(widths) <= len(buckets), name
    # a PUBLISHED multiplexed model attends to padding: full-length batches, buckets or not
    published = Classifier(tiny_arch.with_mux(2, mux_style=MuxStyle.PUBLISHED))
    phase = finetune_phase(published, data, 2, 1e-3, 4, 0, training)
    assert {b.input_ids.shape[1] for b in itertools.islice(phase.data(0), 20)} == {64}
    assert training_buckets(published, data, training) == ()


def test_on_a_cpu_without_buckets_batches_are_cut_as_before(tiny_arch):
    """Empty buckets on a CPU: every phase's batches are today's, cut to their longest."""
    data = _padded(_lengths(320), 64)
    training = TrainingSection(batch_rows=4, group_by_length=True)
    assert training_buckets(Classifier(tiny_arch), data, training) == ()
    for name, phase in _phases(tiny_arch, data, training).items():
        for batch in itertools.islice(phase.data(0), 40):
            assert batch.input_ids.shape[1] == max(batch.extents()), name


def test_on_a_gpu_without_buckets_they_are_chosen_from_the_data(tiny_arch, monkeypatch):
    """Empty buckets where the data is on a GPU (its device faked while the phase is built,
    when its buckets are chosen): the phase pads to the buckets chosen for its batches."""
    data = _padded(_lengths(640), 64)
    training = TrainingSection(batch_rows=4, group_by_length=True)
    one = Classifier(tiny_arch)
    monkeypatch.setattr(Encoded, "device", property(lambda self: torch.device("cuda")))
    chosen = training_buckets(one, data, training)
    assert padding_buckets(data, 4, 1, given=(16, 64)) == (16, 64)
    phase = finetune_phase(one, data, 2, 1e-3, 4, 0, training)
    monkeypatch.undo()
    assert chosen == chosen_buckets(data, 4, group_rows=1) and 1 < len(chosen) <= 8
    widths = {b.input_ids.shape[1] for b in itertools.islice(phase.data(0), 300)}
    assert widths <= set(chosen) and len(widths) > 1
    assert training_buckets(one, data, training) == ()  # on the CPU: cut to the longest


@pytest.mark.gpu
def test_on_cuda_the_phases_and_evaluation_pad_to_chosen_buckets(tiny_arch):
    data = _padded(_lengths(640), 64)
    data = Encoded(data.input_ids, data.attention_mask, data.token_type_ids, data.labels % 2)
    training = TrainingSection(batch_rows=4, group_by_length=True)
    one = Classifier(tiny_arch).cuda()
    chosen = training_buckets(one, data, training)
    assert chosen == chosen_buckets(data, 4, group_rows=1) and 1 < len(chosen) <= 8
    phase = finetune_phase(one, data, 2, 1e-3, 4, 0, training)
    batches_drawn = list(itertools.islice(phase.data(0), 300))
    assert all(b.input_ids.is_cuda for b in batches_drawn)
    assert {b.input_ids.shape[1] for b in batches_drawn} <= set(chosen)
    one.eval()
    cut = confusion(one, data, batch_rows=4, length_buckets=(64,))  # every batch at 64
    assert confusion(one, data, batch_rows=4) == cut  # the dev data's own buckets
    assert confusion(one, data, batch_rows=4, length_buckets=chosen) == cut


@pytest.mark.parametrize("width", [1, 2])
def test_evaluation_with_buckets_counts_what_cut_batches_do(tiny_arch, width):
    torch.manual_seed(4)
    model = Classifier(tiny_arch.with_mux(width, num_labels=3)).eval()
    data = _padded(_lengths(90, longest=60), 64)
    data = Encoded(data.input_ids, data.attention_mask, data.token_type_ids, data.labels % 3)
    expected = confusion(model, data, batch_rows=3)
    assert confusion(model, data, batch_rows=3, length_buckets=(16, 32, 64)) == expected


def test_cpu_without_buckets_trains_bit_for_bit_as_before(tiny_arch):
    """A fine-tuning phase with empty buckets against the same phase drawing today's batches
    (endless_batches without buckets): identical weights. With buckets given, the same
    computation on padded batches: the same losses to float rounding (no dropout)."""
    data = _padded(_lengths(160), 64)
    data = Encoded(data.input_ids, data.attention_mask, data.token_type_ids, data.labels % 2)
    training = TrainingSection(batch_rows=4, group_by_length=True)

    def trained(buckets: tuple[int, ...], todays: bool) -> tuple[Classifier, list[float]]:
        torch.manual_seed(0)
        model = Classifier(tiny_arch)
        set_dropout(model, 0.0)
        settings = TrainingSection(batch_rows=4, group_by_length=True, length_buckets=buckets)
        phase = finetune_phase(model, data, 12, 1e-3, 4, 0, settings)
        if todays:
            phase.data = lambda start: endless_batches(data, 4, 0, start, True, 1)
        losses: list[float] = []
        run_phase(phase, progress=lambda p: losses.append(p.loss))
        return model, losses

    now, now_losses = trained((), todays=False)
    before, before_losses = trained((), todays=True)
    assert now_losses == before_losses
    for (name, a), b in zip(now.state_dict().items(), before.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    _, padded_losses = trained((16, 32, 64), todays=False)
    assert padded_losses == pytest.approx(before_losses, abs=1e-5)  # the same computation
    assert training == TrainingSection(batch_rows=4, group_by_length=True)


def test_a_tiny_trial_trains_with_buckets_on_the_cpu(tiny_study_file, monkeypatch):
    """Fine-tuning, pruning and post-pruning fine-tuning all draw batches of 8 or 16 tokens."""
    study = load_study(tiny_study_file(length_buckets=[8, 16]))
    assert study.training.length_buckets == (8, 16)
    widths: list[int] = []

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        for batch in endless_batches(*args, **kwargs):
            widths.append(batch.input_ids.shape[1])
            yield batch

    monkeypatch.setattr(phases, "endless_batches", watched)
    result = run_trial(TrialSpec(study=study, n=1, sparsity=0.5))
    assert result.status is TrialStatus.COMPLETE, result
    assert result.accuracy > 0.7 and result.achieved_sparsity > 0.4
    assert len(widths) >= 60 + 40 + 20 and set(widths) == {8, 16}
    # recorded with what the numbers depend on, the teacher's and the pruned model's
    assert result.numerics["length_buckets"] == [8, 16]
    assert result.teacher is not None and result.teacher.numerics["length_buckets"] == [8, 16]


# -- a list that cannot hold the data ----------------------------------------------------------


def test_a_bucket_list_that_cannot_hold_the_longest_row_is_refused():
    check_buckets((), 64)  # chosen from the data: always holds it
    check_buckets((16, 64), 64)
    check_buckets((16, 128), 64)
    with pytest.raises(FieldError) as refused:
        check_buckets((16, 32), 64)
    message = str(refused.value)
    assert isinstance(refused.value, AutoPruMuxError) and "\n" not in message
    assert message.startswith("training.length_buckets: the largest bucket 32 is below")
