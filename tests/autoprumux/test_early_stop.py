"""Early stopping on hand-made numbers: check steps, the rule's checks and verdict, margins
calibrated from curves (autoprumux.testing.stop_margins), stops counted on curves, the evidence,
and a stopped record."""

import pytest

from autoprumux.core.budget import FEASIBILITY_TOLERANCE, NEAR_MISS
from autoprumux.core.early_stop import (
    MARGINS,
    MAX_CHECK_SHARE,
    Curve,
    StopEvidence,
    StoppedEarly,
    StopPhase,
    StopRule,
    check_step,
)
from autoprumux.core.errors import FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.testing.stop_margins import (
    StopCount,
    accuracy_at,
    best_until,
    calibrate,
    count_stops,
    gain,
)

# gains from each check to the end: 0.25: 0.12, 0.5: 0.04, 0.75: 0.02
RISING = Curve(
    label="(2, 0) finetune", steps=100, points=((25, 0.70), (50, 0.78), (75, 0.80), (100, 0.82))
)
# checks at steps 2, 4, 6 of 8; gains 0.09, 0.03, -0.01 (it ends lower than at 0.75)
SHORT = Curve(label="(1, 0.5) post", steps=8, points=((2, 0.60), (4, 0.66), (6, 0.70), (8, 0.69)))
# only the middle check recorded; gain -0.05
FALLING = Curve(label="(4, 0.9) post", steps=100, points=((50, 0.90), (100, 0.85)))
# a late surge: hopeless-looking at 0.25, in the end 0.86
SURGING = Curve(
    label="(4, 0) finetune", steps=100, points=((25, 0.60), (50, 0.70), (75, 0.80), (100, 0.86))
)
# flat and low: 0.72 in the end
FLAT = Curve(
    label="(2, 0.8) post", steps=100, points=((25, 0.76), (50, 0.74), (75, 0.71), (100, 0.72))
)


@pytest.mark.parametrize(
    ("fraction", "steps", "step"),
    [
        (0.25, 100, 25),
        (0.5, 100, 50),
        (0.75, 100, 75),
        (0.25, 1200, 300),
        (0.75, 1200, 900),
        (0.25, 3, 1),  # 0.75 rounds to 1
        (0.75, 3, 2),  # 2.25 rounds to 2
        (0.5, 8, 4),
        (1.0, 8, 8),
    ],
)
def test_check_step(fraction, steps, step):
    assert check_step(fraction, steps) == step


def test_checks_after_every_eighth_of_the_second_half():
    rule = StopRule(threshold=0.9)
    assert rule.margins == tuple(sorted(MARGINS.items()))
    assert [f for f, _ in rule.margins] == [0.5, 0.625, 0.75, 0.875]
    # 4 checks x 2.5 steps' worth = 10 <= 0.1 x 100 = 10: they pay
    assert rule.checks(100, 2.5) == {
        50: MARGINS[0.5],
        62: MARGINS[0.625],  # 62.5 rounds to even
        75: MARGINS[0.75],
        88: MARGINS[0.875],  # 87.5 rounds to even
    }
    assert rule.checks(1200, 0.0) == {
        600: MARGINS[0.5],
        750: MARGINS[0.625],
        900: MARGINS[0.75],
        1050: MARGINS[0.875],
    }


def test_checks_that_would_cost_too_much_are_none():
    rule = StopRule(threshold=0.9)
    assert MAX_CHECK_SHARE == 0.1
    assert rule.checks(100, 2.6) == {}  # 4 x 2.6 = 10.4 > 10
    assert rule.checks(20, 1.0) == {}  # 4 > 2: a phase too short for its checks
    assert rule.checks(300, 7.5) != {}  # 30 = 30: at most the share is allowed
    assert rule.checks(300, 7.51) == {}


def test_checks_at_the_phase_ends_are_left_out():
    rule = StopRule(threshold=0.9, margins=((0.25, 0.1), (0.5, 0.05), (0.75, 0.03)))
    # one step: the checks round to steps 0, 0 and 1 (its end): none is inside the phase
    assert rule.checks(1, 0.0) == {}
    # two steps: 0.25 -> 0 and 0.75 -> 2 (the ends) are left out, 0.5 -> 1 stays
    assert rule.checks(2, 0.0) == {1: 0.05}
    assert StopRule(threshold=0.9, margins=((0.5, 0.2),)).checks(10, 0.0) == {5: 0.2}


def test_hopeless_with_the_feasibility_tolerance():
    rule = StopRule(threshold=0.9)
    assert rule.hopeless(0.84, 0.05)  # 0.89 < 0.9
    assert not rule.hopeless(0.86, 0.05)  # 0.91
    assert not rule.hopeless(0.9, 0.0)  # exactly the threshold: it may reach it
    # within the tolerance below the threshold it may still reach it (as feasibility says)
    assert not rule.hopeless(0.9 - FEASIBILITY_TOLERANCE / 2, 0.0)
    assert rule.hopeless(0.9 - 2 * FEASIBILITY_TOLERANCE, 0.0)


def test_a_teacher_misses_by_more_than_a_near_miss():
    rule = StopRule(threshold=0.9)
    assert NEAR_MISS == 0.01
    assert not rule.teacher_misses(0.895)  # half a point under: its pruned model may meet it
    assert not rule.teacher_misses(0.89)  # exactly the near miss under
    assert rule.teacher_misses(0.88)


def test_curve_reads_its_checks():
    assert RISING.final == 0.82
    assert accuracy_at(RISING, 0.5) == 0.78 and gain(RISING, 0.5) == pytest.approx(0.04)
    assert accuracy_at(FALLING, 0.25) is None and gain(FALLING, 0.25) is None
    assert accuracy_at(SHORT, 0.75) == 0.70 and gain(SHORT, 0.75) == pytest.approx(-0.01)
    # the best of the checks so far, not the last: FLAT's first check stays its best
    assert [best_until(FLAT, f) for f in (0.25, 0.5, 0.75, 1.0)] == [0.76, 0.76, 0.76, 0.76]
    assert [best_until(SHORT, f) for f in (0.25, 0.5, 0.75, 1.0)] == [0.60, 0.66, 0.70, 0.70]
    assert best_until(FALLING, 0.25) is None  # no check there
    assert Curve.from_json(RISING.to_json()) == RISING
    assert RISING.to_json() == {
        "label": "(2, 0) finetune",
        "steps": 100,
        "points": [[25, 0.70], [50, 0.78], [75, 0.80], [100, 0.82]],
    }


def test_calibrate_takes_the_largest_gain_plus_slack():
    margins = calibrate([RISING, SHORT, FALLING], fractions=(0.25, 0.5, 0.75), slack=0.01)
    # 0.25: max(0.12, 0.09) + 0.01; 0.5: max(0.04, 0.03, -0.05) + 0.01;
    # 0.75: max(0.02, -0.01) + 0.01
    assert margins.keys() == {0.25, 0.5, 0.75}
    assert margins[0.25] == pytest.approx(0.13)
    assert margins[0.5] == pytest.approx(0.05)
    assert margins[0.75] == pytest.approx(0.03)


def test_calibrate_never_goes_below_the_slack():
    # the only gain at 0.5 is -0.05: the margin is 0 + slack, not negative
    assert calibrate([FALLING], fractions=(0.5,), slack=0.01) == {0.5: pytest.approx(0.01)}
    assert calibrate([RISING], fractions=(0.25,), slack=0.0) == {0.25: pytest.approx(0.12)}


def test_calibrate_without_a_point_at_a_fraction_says_which():
    with pytest.raises(ValueError, match="no curve has a point at fraction 0.25"):
        calibrate([FALLING], fractions=(0.25, 0.5))


def test_count_stops_on_hand_made_curves():
    margins = {0.25: 0.1, 0.5: 0.05, 0.75: 0.03}
    count = count_stops([RISING, SHORT, SURGING, FLAT], margins, [0.75, 0.85])
    # RISING (0.82):  0.75 met, checks 0.80, 0.83, 0.83: no stop
    #                 0.85 missed, stops at 25 (0.70 + 0.1 < 0.85): right, saves 75
    # SHORT (0.69):   0.75 missed, stops at 2 (0.60 + 0.1 < 0.75): right, saves 6
    #                 0.85 missed, stops at 2: right, saves 6
    # SURGING (0.86): 0.75 met, stops at 25 (0.70 < 0.75): wrong, saves 75
    #                 0.85 met, stops at 25: wrong, saves 75
    # FLAT (0.72):    the best so far stays 0.76 (its first check):
    #                 0.75 missed, 0.86, 0.81, 0.79: never under 0.75, runs to its end
    #                 0.85 missed, 0.86, then 0.76 + 0.05 < 0.85 at 50: right, saves 50
    # misses: 5, of 100 + 8 + 8 + 100 + 100 = 316 steps; saved 75+6+6+75+75+50 = 287
    assert count == StopCount(wrong=2, right=4, misses=5, steps_saved=287, steps_of_misses=316)


def test_count_stops_a_final_accuracy_at_the_threshold_is_met():
    curve = Curve(label="c", steps=4, points=((1, 0.5), (4, 0.8)))
    # 0.5 + 0.1 < 0.8 stops it at step 1 of 4, but it ends at the threshold: a wrong stop
    count = count_stops([curve], {0.25: 0.1}, [0.8])
    assert count == StopCount(wrong=1, right=0, misses=0, steps_saved=3, steps_of_misses=0)


def test_count_stops_without_a_stop():
    count = count_stops([RISING], {0.25: 0.2, 0.5: 0.2, 0.75: 0.2}, [0.85])
    # 0.70 + 0.2 = 0.90 >= 0.85 at every check: the miss runs to its end
    assert count == StopCount(wrong=0, right=0, misses=1, steps_saved=0, steps_of_misses=100)


def test_stop_evidence_bound_and_reason():
    evidence = StopEvidence(
        point=GridPoint(2, 0.6),
        phase=StopPhase.POST_FINETUNE,
        step=25,
        steps=100,
        accuracy=0.8,
        margin=0.07,
        threshold=0.9,
    )
    assert evidence.bound == pytest.approx(0.87)
    assert evidence.reason() == (
        "stopped early: (2, 0.6) post-finetune at step 25/100 had best dev score 0.8000; "
        "+ margin 0.070 = 0.8700 < threshold 0.9000"
    )
    error = StoppedEarly(evidence)
    assert error.evidence is evidence and str(error) == evidence.reason()


@pytest.mark.parametrize("missing", ["stop_step", "stop_accuracy", "stop_margin"])
def test_a_stopped_record_needs_its_evidence(missing):
    evidence = {"stop_step": 25, "stop_accuracy": 0.8, "stop_margin": 0.07}
    del evidence[missing]
    with pytest.raises(FieldError, match=missing) as error:
        TrialRecord(task="sst2", n=2, sparsity=0.6, status=TrialStatus.STOPPED, **evidence)
    assert error.value.field == missing


def test_a_stopped_record_bounds_its_accuracy():
    stopped = TrialRecord(
        task="sst2",
        n=2,
        sparsity=0.6,
        status=TrialStatus.STOPPED,
        stop_step=25,
        stop_accuracy=0.8,
        stop_margin=0.07,
    )
    assert stopped.accuracy is None and stopped.accuracy_bound == pytest.approx(0.87)
    assert (
        TrialRecord(task="sst2", n=2, sparsity=0.6, accuracy=0.85, throughput=3000.0).accuracy_bound
        is None
    )
    assert stopped.to_row()["status"] == "stopped"
