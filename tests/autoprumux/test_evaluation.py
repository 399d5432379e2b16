"""The paper's protocol on a grid small enough to derive every answer by hand.

accuracy = 0.90 - 0.02 (N - 1) - 0.1 s (bilinear, so interpolation is exact) except at the
test-only point (2, 0.7), which truly scores 0.84 instead of the interpolated 0.81.
throughput = 100 N / (1 - s): time per example is linear in s, so the throughput rule is exact.
Training grid: N in {1, 2, 4} x s in {0, 0.5, 0.9}; test points add s = 0.7.
"""

import pytest

from autoprumux.core.budget import BudgetKind
from autoprumux.core.errors import FieldError
from autoprumux.core.evaluation import evaluate
from autoprumux.core.grid import Grid
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.records import ResultsTable, TrialRecord
from autoprumux.core.throughput import ThroughputTable

TRAIN = Grid((1, 2, 4), (0.0, 0.5, 0.9))


def accuracy(n, s):
    return 0.84 if (n, s) == (2, 0.7) else round(0.90 - 0.02 * (n - 1) - 0.1 * s, 4)


def results():
    return ResultsTable.from_records(
        TrialRecord(
            task="t", n=n, sparsity=s, accuracy=accuracy(n, s), throughput=100 * n / (1 - s)
        )
        for n in (1, 2, 4)
        for s in (0.0, 0.5, 0.7, 0.9)
    )


def test_leave_one_out_accuracy_model():
    evaluation = evaluate(results(), "t", TRAIN, budgets=[0.0])
    checks = {c.point: c for c in evaluation.accuracy.checks}
    # only N > 1, s > 0 training points are left out
    assert set(checks) == {P(2, 0.5), P(2, 0.9), P(4, 0.5), P(4, 0.9)}
    assert checks[P(2, 0.5)].predicted == pytest.approx(0.83)  # along row N=2: 0 .. 0.9
    assert checks[P(2, 0.9)].predicted == pytest.approx(0.79)  # along column s=0.9: N 1 .. 4
    assert checks[P(4, 0.9)].predicted is None  # a corner of the hull
    assert (evaluation.accuracy.within, evaluation.accuracy.evaluated) == (3, 3)
    assert evaluation.accuracy.unpredictable == 1 and evaluation.accuracy.fraction == 1.0


def test_leave_one_out_throughput_model():
    evaluation = evaluate(results(), "t", TRAIN, budgets=[0.0])
    checks = {c.point: c for c in evaluation.throughput.checks}
    assert evaluation.throughput.method == "leave-one-out"
    assert checks[P(2, 0.5)].predicted == pytest.approx(400.0)  # between s = 0 and s = 0.7
    assert checks[P(4, 0.9)].predicted is None  # end of its row
    assert (evaluation.throughput.within, evaluation.throughput.unpredictable) == (2, 2)


def test_throughput_table_from_another_task():
    # "task 0" runs 30% faster at (2, 0.5) and 10% faster elsewhere: one miss of four
    table = ThroughputTable(
        {
            P(n, s): 100 * n / (1 - s) * (1.3 if (n, s) == (2, 0.5) else 1.1)
            for n in (1, 2, 4)
            for s in (0.0, 0.5, 0.7, 0.9)
        }
    )
    evaluation = evaluate(results(), "t", TRAIN, throughput_table=table, budgets=[0.0])
    assert evaluation.throughput.method == "table"
    assert (evaluation.throughput.within, evaluation.throughput.evaluated) == (3, 4)


def test_top_k_outcomes_per_budget():
    evaluation = evaluate(results(), "t", TRAIN, budgets=[0.0, 0.03, 0.07])
    zero, small, large = evaluation.budgets
    # 0.00: only (1, 0) reaches 0.90
    assert zero.true_best == P(1, 0) and zero.predicted[0] == P(1, 0)
    # 0.03 (>= 0.87): (1, 0) 0.90 and (2, 0) 0.88 -> (2, 0) at 200/s
    assert small.true_best == P(2, 0) and small.top1_hit
    # 0.07 (>= 0.83): truly (2, 0.7) at 666.7/s (0.84), but it interpolates to 0.81;
    # the prediction ranks (4, 0) 400/s (0.84 beats (2, 0.5)'s 0.83 on the tie), (2, 0.5),
    # then (1, 0.7) 333/s (interpolated to exactly 0.83)
    assert large.true_best == P(2, 0.7)
    assert large.predicted == (P(4, 0), P(2, 0.5), P(1, 0.7))
    assert not large.top1_hit and not large.topk_hit
    assert evaluation.top1_rate == pytest.approx(2 / 3) and evaluation.topk_rate == pytest.approx(
        2 / 3
    )
    assert len(evaluation.test_points) == 12 and len(evaluation.train_points) == 9


def test_relative_budgets():
    evaluation = evaluate(results(), "t", TRAIN, budgets=[0.03], budget_kind=BudgetKind.RELATIVE)
    (outcome,) = evaluation.budgets
    assert outcome.threshold == pytest.approx(0.873)
    assert outcome.true_best == P(2, 0)


def test_train_grid_must_hold_the_baseline():
    with pytest.raises(FieldError, match="lacks"):
        evaluate(results(), "t", Grid((2, 4), (0.0, 0.5)))


def test_paper_budget_sweep_is_the_default():
    assert len(evaluate(results(), "t", TRAIN).budgets) == 21
