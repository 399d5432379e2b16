"""The cost model: forward units per part by hand, what ``predict`` leaves out, the seconds per
unit measured by the study's trainings, and a study file's recipe."""

from dataclasses import replace
from pathlib import Path

import pytest
from small_recipe import SMALL_RECIPE

from autoprumux.core.grid import GridPoint
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.core.study import load_study
from autoprumux.loop.costs import (
    CostModel,
    CostPart,
    PartCosts,
    Recipe,
    forward_units,
    recipe_of,
    seconds_per_unit,
)

ROOT = Path(__file__).resolve().parents[2]

BASE, PRUNED_1 = GridPoint(1, 0.0), GridPoint(1, 0.5)
DENSE_2, PRUNED_2 = GridPoint(2, 0.0), GridPoint(2, 0.5)
# examples per second: a 2 x 2 table
THROUGHPUT = {BASE: 100.0, PRUNED_1: 200.0, DENSE_2: 160.0, PRUNED_2: 400.0}
RECIPE = SMALL_RECIPE
# By hand (a training step is 3 forward units, a teacher's logits 1):
# (1, 0):   no warm-up (N = 1); fine-tuning 20 steps x 4 rows x 1 = 80 examples:
#           teacher 3 x 80 / 100 = 2.4; own 0 (s = 0)
# (1, 0.5): teacher 2.4; pruning 10 x 4 x 1 = 40, post-pruning 5 x 4 x 1 = 20 examples:
#           own (3 + 1) x 40 / 100 + 20 x (3 / 200 + 1 / 100) = 1.6 + 0.5 = 2.1
# (2, 0):   warm-up (10 x 2 + 5) steps x 2 rows x 2 = 100 examples at half length:
#           3 x 100 x 0.5 / 160 = 0.9375; fine-tuning 20 x 4 x 2 = 160 examples:
#           3 x 160 / 160 = 3.0, plus the (1, 0) logits 160 / 100 = 1.6: teacher 4.6
# (2, 0.5): warm-up 0.9375, teacher 4.6; pruning 10 x 4 x 2 = 80, post 5 x 4 x 2 = 40:
#           own 4 x 80 / 160 + 40 x (3 / 400 + 1 / 160) = 2.0 + 0.55 = 2.55
UNITS = {
    BASE: (0.0, 2.4, 0.0),
    PRUNED_1: (0.0, 2.4, 2.1),
    DENSE_2: (0.9375, 4.6, 0.0),
    PRUNED_2: (0.9375, 4.6, 2.55),
}


def as_tuple(parts: PartCosts) -> tuple[float, float, float]:
    return (parts.warmup, parts.teacher, parts.own)


@pytest.mark.parametrize("point", list(UNITS))
def test_forward_units_by_hand(point):
    assert as_tuple(forward_units(RECIPE, THROUGHPUT, point)) == pytest.approx(UNITS[point])


def test_forward_units_of_a_recipe_in_epochs_without_warmup_or_distillation():
    recipe = replace(
        RECIPE,
        finetune_steps=0,
        finetune_epochs=0.5,
        pruning_steps=0,
        pruning_epochs=0.25,
        post_pruning_steps=0,
        post_pruning_epochs=0.1,
        distill_from_n1=False,
        needs_warmup=False,
    )
    # epochs: 0.5 x 1000 = 500 examples at any N; teacher 3 x 500 / 160 = 9.375, no logits
    # of (1, 0), no warm-up; pruning 0.25 x 1000 = 250, post 0.1 x 1000 = 100 examples:
    # own 4 x 250 / 160 + 100 x (3 / 400 + 1 / 160) = 6.25 + 1.375 = 7.625
    parts = forward_units(recipe, THROUGHPUT, PRUNED_2)
    assert as_tuple(parts) == pytest.approx((0.0, 9.375, 7.625))


def test_a_given_teacher_is_not_trained_and_guides_every_n():
    """A fine-tuned checkpoint as the (1, 0) teacher: (1, s) pays no fine-tuning; N = 2 pays
    the (1, 0) logits even where the study does not ask to distil from N = 1."""
    recipe = replace(RECIPE, teacher_given=True, distill_from_n1=False)
    assert as_tuple(forward_units(recipe, THROUGHPUT, BASE)) == (0.0, 0.0, 0.0)
    assert as_tuple(forward_units(recipe, THROUGHPUT, PRUNED_1)) == pytest.approx((0, 0, 2.1))
    # (2, 0) as by hand above: 3.0 of its own fine-tuning plus the (1, 0) logits 1.6
    assert forward_units(recipe, THROUGHPUT, DENSE_2).teacher == pytest.approx(4.6)


def test_distillation_is_left_out_without_a_baseline_throughput():
    table = {DENSE_2: 160.0}
    # teacher 3 x 160 / 160 = 3.0 only: there is no (1, 0) speed to price its logits
    assert forward_units(RECIPE, table, DENSE_2).teacher == pytest.approx(3.0)


def test_a_model_without_records_speaks_in_forward_units():
    model = CostModel.for_study(RECIPE, THROUGHPUT)
    assert model.parts.keys() == UNITS.keys()
    for point, parts in model.parts.items():
        assert as_tuple(parts) == pytest.approx(UNITS[point])


@pytest.mark.parametrize(
    ("trained", "building", "expected"),
    [
        ((), (), 0.9375 + 4.6 + 2.55),  # nothing built: every part
        ([BASE, PRUNED_1], [BASE], 0.9375 + 4.6 + 2.55),  # another row: nothing saved
        ([DENSE_2], (), 2.55),  # (2, 0) trained: its warm-up and teacher are built
        ([PRUNED_2], (), 4.6 + 2.55),  # a point of the row trained: the warm-up, not (2, 0)
        ((), [DENSE_2], 2.55),  # a point of the row building: it builds both, this one waits
        ((), [PRUNED_2], 2.55),
    ],
)
def test_predict_leaves_out_what_is_built(trained, building, expected):
    model = CostModel.for_study(RECIPE, THROUGHPUT)
    assert model.predict(PRUNED_2, trained, building) == pytest.approx(expected)


def test_predict_of_a_teacher_point_itself():
    model = CostModel.for_study(RECIPE, THROUGHPUT)
    assert model.predict(DENSE_2, ()) == pytest.approx(0.9375 + 4.6)
    assert model.predict(DENSE_2, [PRUNED_2]) == pytest.approx(4.6)  # the warm-up is built
    assert model.predict(BASE, ()) == pytest.approx(2.4)


def record(point, status=TrialStatus.COMPLETE, **costs):
    if status is TrialStatus.COMPLETE:
        return TrialRecord(
            task="sst2",
            n=point.n,
            sparsity=point.sparsity,
            accuracy=0.9,
            throughput=1000.0,
            **costs,
        )
    evidence = {}
    if status is TrialStatus.STOPPED:
        evidence = {"stop_step": 5, "stop_accuracy": 0.5, "stop_margin": 0.05}
    return TrialRecord(
        task="sst2", n=point.n, sparsity=point.sparsity, status=status, **evidence, **costs
    )


def test_seconds_per_unit_without_records_is_one():
    units = {p: forward_units(RECIPE, THROUGHPUT, p) for p in THROUGHPUT}
    assert seconds_per_unit(units, []) == dict.fromkeys(CostPart, 1.0)


def test_seconds_per_unit_from_measured_parts():
    units = {p: forward_units(RECIPE, THROUGHPUT, p) for p in THROUGHPUT}
    records = [
        record(PRUNED_2, warmup_s=1.875, teacher_s=9.2),  # own not measured
        record(BASE, teacher_s=9.6),
        record(PRUNED_2, warmup_s=0.0, teacher_s=0.0),  # reused its artifacts: paid nothing
        record(DENSE_2, warmup_s=None, teacher_s=None),  # costs not measured
        record(PRUNED_1, TrialStatus.STOPPED, teacher_s=50.0, own_s=50.0),  # not in full
        record(PRUNED_2, TrialStatus.FAILED, warmup_s=50.0, own_s=50.0),
        record(GridPoint(5, 0.0), teacher_s=50.0),  # not a candidate: no units
    ]
    scale = seconds_per_unit(units, records)
    # warm-up: 1.875 s / 0.9375 units = 2.0
    # teacher: (9.2 + 9.6) s / (4.6 + 2.4) units = 18.8 / 7.0 = 2.685714...
    # own: never measured, takes the overall ratio (1.875 + 18.8) / (0.9375 + 7.0)
    #      = 20.675 / 7.9375 = 2.604724...
    assert scale[CostPart.WARMUP] == pytest.approx(2.0)
    assert scale[CostPart.TEACHER] == pytest.approx(2.6857142857)
    assert scale[CostPart.OWN] == pytest.approx(2.6047244094)


def test_seconds_per_unit_of_an_own_part():
    units = {p: forward_units(RECIPE, THROUGHPUT, p) for p in THROUGHPUT}
    # own of (1, 0.5): 4.2 s / 2.1 units = 2.0; (1, 0)'s own part is 0 units: not counted
    scale = seconds_per_unit(units, [record(PRUNED_1, own_s=4.2), record(BASE, own_s=99.0)])
    assert scale == pytest.approx(dict.fromkeys(CostPart, 2.0))


def test_for_study_scales_each_part_by_its_measured_ratio():
    model = CostModel.for_study(
        RECIPE, THROUGHPUT, [record(PRUNED_2, warmup_s=1.875, teacher_s=13.8, own_s=1.275)]
    )
    # warm-up 1.875 / 0.9375 = 2.0, teacher 13.8 / 4.6 = 3.0, own 1.275 / 2.55 = 0.5
    assert as_tuple(model.parts[PRUNED_1]) == pytest.approx((0.0, 2.4 * 3.0, 2.1 * 0.5))
    assert as_tuple(model.parts[DENSE_2]) == pytest.approx((0.9375 * 2.0, 4.6 * 3.0, 0.0))
    # (1, 0.5) with (1, 0) trained: own only, 1.05 s
    assert model.predict(PRUNED_1, [BASE]) == pytest.approx(1.05)


def test_recipe_of_the_tiny_study():
    study = load_study(ROOT / "studies" / "sst2-tiny.toml")
    assert recipe_of(study) == Recipe(
        warmup_steps_per_instance=200,
        warmup_mlm_steps=0,  # not set: the default
        warmup_rows=32,
        warmup_length_ratio=0.5,  # warm-up max_length 32 / max_seq_length 64
        finetune_steps=1200,
        finetune_epochs=40.0,  # defaults, unused: the steps are set
        pruning_steps=300,
        pruning_epochs=40.0,
        post_pruning_steps=100,
        post_pruning_epochs=20.0,
        batch_rows=32,
        train_examples=67349,  # max_train_examples 0: all of SST-2's training set
        distill_from_n1=True,
        needs_warmup=True,  # no multiplexed_name_or_path
    )
