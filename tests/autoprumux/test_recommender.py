import pytest

from autoprumux.core.budget import Budget, BudgetKind, budget_sweep
from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import Grid
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.metrics import Metric
from autoprumux.core.recommender import Exclusion, Recommender
from autoprumux.core.records import Observations
from autoprumux.core.surrogate import Source
from autoprumux.core.throughput import ThroughputTable

ACCURACY = {P(1, 0): 0.90, P(1, 0.5): 0.88, P(2, 0): 0.87, P(2, 0.5): 0.84, P(4, 0): 0.80}
TABLE = ThroughputTable(
    {
        P(1, 0): 100.0,
        P(1, 0.5): 250.0,
        P(2, 0): 190.0,
        P(2, 0.5): 480.0,
        P(4, 0): 380.0,
        P(2, 0.25): 300.0,
        P(4, 0.5): 900.0,
    }
)


def recommender(accuracy=ACCURACY, failed=(), table=TABLE, top_k=3):
    obs = Observations(
        accuracy=accuracy,
        throughput={p: TABLE.throughput[p] for p in accuracy},
        failed=frozenset(failed),
    )
    return Recommender(top_k=top_k).fit("sst2", obs, table)


def ranked(decision):
    return [r.point for r in decision.recommendations]


def test_known_answers_per_budget():
    r = recommender()
    assert ranked(r.recommend(Budget(BudgetKind.ABSOLUTE, 0.0))) == [P(1, 0)]
    # threshold 0.87: (2, 0.25) interpolates to (0.87 + 0.84) / 2 = 0.855 -> infeasible
    assert ranked(r.recommend(Budget(BudgetKind.ABSOLUTE, 0.03))) == [P(1, 0.5), P(2, 0), P(1, 0)]
    # threshold 0.85: (2, 0.25) is feasible now and faster than (1, 0.5)
    decision = r.recommend(Budget(BudgetKind.ABSOLUTE, 0.05))
    assert ranked(decision) == [P(2, 0.25), P(1, 0.5), P(2, 0)]
    top = decision.recommendations[0]
    assert top.accuracy == pytest.approx(0.855) and top.accuracy_source is Source.INTERPOLATED
    assert top.speedup == pytest.approx(3.0) and top.measured_throughput is None
    assert decision.recommendations[1].measured_throughput == 250.0
    # (4, 0.5) is outside the accuracy hull: never recommended, whatever the budget
    loose = r.recommend(Budget(BudgetKind.ABSOLUTE, 0.5))
    assert ranked(loose) == [P(2, 0.5), P(4, 0), P(2, 0.25)]
    assert loose.exclusions == {Exclusion.ACCURACY_UNKNOWN: 1}


def test_threshold_is_inclusive_despite_floating_point():
    # 0.90 - 0.03 is 0.8700000000000001 in binary floating point; 0.87 must still pass
    decision = recommender().recommend(Budget(BudgetKind.ABSOLUTE, 0.03))
    assert P(2, 0) in ranked(decision)


def test_relative_and_minimum_budgets():
    r = recommender()
    relative = r.recommend(Budget(BudgetKind.RELATIVE, 0.05))
    assert relative.threshold == pytest.approx(0.855)
    assert ranked(relative)[0] == P(2, 0.25)
    floor = r.recommend(Budget(BudgetKind.MIN_ACCURACY, 0.88))
    assert floor.threshold == 0.88 and ranked(floor) == [P(1, 0.5), P(1, 0)]


def test_ties_break_by_accuracy_then_smaller_point():
    table = ThroughputTable({P(1, 0): 100.0, P(1, 0.5): 200.0, P(2, 0): 200.0, P(3, 0): 200.0})
    accuracy = {P(1, 0): 0.9, P(1, 0.5): 0.85, P(2, 0): 0.86, P(3, 0): 0.85}
    obs = Observations(accuracy=accuracy, throughput=table.throughput)
    decision = Recommender(top_k=4).fit("t", obs, table).recommend(Budget(BudgetKind.ABSOLUTE, 0.1))
    assert ranked(decision) == [P(2, 0), P(1, 0.5), P(3, 0), P(1, 0)]


def test_infeasible_budget_gives_no_recommendation_and_says_why():
    decision = recommender().recommend(Budget(BudgetKind.MIN_ACCURACY, 0.95))
    assert decision.recommendations == ()
    assert decision.best_accuracy_candidate.point == P(1, 0)
    assert decision.exclusions[Exclusion.BELOW_THRESHOLD] == 6


def test_failed_points_are_excluded():
    accuracy = dict(ACCURACY)
    del accuracy[P(2, 0.5)]
    decision = recommender(accuracy, failed=[P(2, 0.5)]).recommend(Budget(BudgetKind.ABSOLUTE, 0.5))
    assert P(2, 0.5) not in ranked(decision)
    assert decision.exclusions[Exclusion.FAILED] == 1
    # (2, 0.25) lies between (2, 0) and the failed (2, 0.5): unknown, not recommended
    assert P(2, 0.25) not in ranked(decision)


def test_grid_candidates_use_the_throughput_rule():
    grid = Grid((1, 2), (0.0, 0.25, 0.5))
    decision = recommender().recommend(Budget(BudgetKind.ABSOLUTE, 0.5), grid)
    assert len(decision.candidates) == 6
    by_point = {c.point: c for c in decision.candidates}
    # (1, 0.25) is in no table row: latency midway between 1/100 and 1/250 s
    assert by_point[P(1, 0.25)].throughput.value == pytest.approx(1 / ((1 / 100 + 1 / 250) / 2))
    assert by_point[P(1, 0.25)].throughput.source is Source.INTERPOLATED


def test_budgets_need_a_baseline_unless_they_are_a_floor():
    accuracy = {p: v for p, v in ACCURACY.items() if p != P(1, 0)}
    r = recommender(accuracy)
    with pytest.raises(DataError, match=r"no complete \(1, 0\) row for task 'sst2'"):
        r.recommend(Budget(BudgetKind.ABSOLUTE, 0.03))
    assert ranked(r.recommend(Budget(BudgetKind.MIN_ACCURACY, 0.85)))[0] == P(2, 0.25)


@pytest.mark.parametrize(
    ("kind", "value", "field"),
    [
        (BudgetKind.ABSOLUTE, 1.0, "budget"),
        (BudgetKind.ABSOLUTE, -0.01, "budget"),
        (BudgetKind.RELATIVE, 1.5, "relative_budget"),
        (BudgetKind.MIN_ACCURACY, 1.01, "min_accuracy"),
        (BudgetKind.ABSOLUTE, float("nan"), "budget"),
    ],
)
def test_budget_validation(kind, value, field):
    with pytest.raises(FieldError) as err:
        Budget(kind, value)
    assert err.value.field == field


def test_budget_sweep_is_the_papers():
    sweep = budget_sweep()
    assert len(sweep) == 21 and sweep[1] == 0.005 and sweep[-1] == 0.1


def test_describe_says_which_budget_is_in_force():
    text = Budget(BudgetKind.RELATIVE, 0.05).describe(0.9)
    assert text == (
        "relative budget 0.05 (fraction of the (1, 0) accuracy): threshold 0.8550 "
        "(baseline 0.9000 x (1 - 0.05))"
    )


@pytest.mark.parametrize(
    ("budget", "baseline", "metric", "says"),
    [
        # a budget larger than the baseline: the threshold is below 0
        (
            Budget(BudgetKind.ABSOLUTE, 0.9),
            0.8463,
            "accuracy",
            "absolute budget 0.9 (accuracy points below (1, 0)): threshold -0.0537 "
            "(baseline 0.8463 - 0.9); every point meets it: the budget is as large as the "
            "baseline's accuracy",
        ),
        # imbalanced data whose baseline never finds the positive label
        (
            Budget(BudgetKind.ABSOLUTE, 0.05),
            0.0,
            "F1 of 'spam'",
            "absolute budget 0.05 (F1 of 'spam' points below (1, 0)): threshold -0.0500 "
            "(baseline 0.0000 - 0.05); every point meets it: the (1, 0) baseline scores 0 in "
            "F1 of 'spam'",
        ),
        (
            Budget(BudgetKind.RELATIVE, 0.5),
            0.0,
            "macro-F1",
            "relative budget 0.5 (fraction of the (1, 0) macro-F1): threshold 0.0000 "
            "(baseline 0.0000 x (1 - 0.5)); every point meets it: the (1, 0) baseline scores 0 "
            "in macro-F1",
        ),
    ],
)
def test_describe_says_when_every_point_meets_the_threshold(budget, baseline, metric, says):
    assert budget.describe(baseline, metric) == says
    # MCC goes down to -1: a threshold of -0.05 is not met by every point, -1.05 is
    mcc = Budget(BudgetKind.ABSOLUTE, 0.95).describe(0.9, "MCC", Metric.MATTHEWS.lowest)
    assert mcc.endswith("threshold -0.0500 (baseline 0.9000 - 0.95)")
    mcc = Budget(BudgetKind.ABSOLUTE, 0.85).describe(-0.2, "MCC", Metric.MATTHEWS.lowest)
    assert mcc.endswith("; every point meets it: the budget is as large as the baseline's MCC")
    # a minimum given is the user's own: nothing to explain
    assert "every point" not in Budget(BudgetKind.MIN_ACCURACY, 0.0).describe(None)
