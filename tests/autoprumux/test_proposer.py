"""The proposer on hand-made grids: monotone inference, the stop rule, batches."""

import pytest

from autoprumux.grid import BASELINE, PAPER_GRID
from autoprumux.grid import GridPoint as P
from autoprumux.proposer import Proposer, SearchState
from autoprumux.synthetic import SyntheticFamily, synthetic_results

FAMILY = SyntheticFamily()
SPEED = {p: 1000 * FAMILY.expected_speedup(p) for p in PAPER_GRID}


def run(truth, failed_truth, budget, k=1):
    """Simulate a search; returns (points trained in order, best found, proposer)."""
    accuracy, failed, threshold, order = {}, set(), None, []
    proposer = Proposer()
    while True:
        state = SearchState(SPEED, accuracy, frozenset(failed), frozenset(), threshold)
        batch = proposer.propose(state, k)
        if not batch:
            return order, proposer.status(state).best
        assert len(set(batch)) == len(batch) and not set(batch) & set(order)
        for point in batch:
            order.append(point)
            if point in truth:
                accuracy[point] = truth[point]
            else:
                failed.add(point)
            if point == BASELINE:
                threshold = accuracy[point] - budget


def true_best(truth, budget):
    threshold = truth[BASELINE] - budget
    return max((p for p, a in truth.items() if a >= threshold - 1e-9), key=SPEED.get)


def test_the_baseline_comes_first():
    state = SearchState(SPEED, {}, frozenset(), frozenset(), None)
    assert Proposer().propose(state, 4) == [BASELINE]


def test_monotone_inference_rules_out_more_compressed_points():
    state = SearchState(SPEED, {BASELINE: 0.9, P(2, 0.6): 0.8}, frozenset(), frozenset(), 0.85)
    status = Proposer().status(state)
    assert {P(2, 0.7), P(5, 0.6), P(10, 0.95)} <= status.ruled_out
    assert P(2, 0) not in status.ruled_out and P(1, 0.95) not in status.ruled_out


def test_a_feasible_point_closes_slower_points():
    accuracy = {BASELINE: 0.9, P(1, 0.95): 0.89}
    status = Proposer().status(SearchState(SPEED, accuracy, frozenset(), frozenset(), 0.85))
    assert status.best == P(1, 0.95)
    assert all(SPEED[p] > SPEED[P(1, 0.95)] for p in status.open)


def test_failed_points_count_as_infeasible():
    state = SearchState(SPEED, {BASELINE: 0.9}, frozenset({P(2, 0)}), frozenset(), 0.85)
    status = Proposer().status(state)
    assert P(5, 0.6) in status.ruled_out and P(2, 0.6) in status.ruled_out


def test_budget_zero_stops_after_ruling_everything_out():
    truth = synthetic_results().observations("sst2").accuracy
    order, best = run(truth, set(), 0.0)
    assert best == BASELINE and len(order) < len(PAPER_GRID) // 2


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [0.01, 0.02, 0.03, 0.05, 0.08])
def test_finds_the_true_best_on_exactly_monotone_grids(seed, budget):
    # noise-free accuracies are exactly monotone: the answer must be exact
    family = SyntheticFamily(accuracy_noise=0.0)
    truth = synthetic_results(family=family, seed=seed).observations("sst2").accuracy
    order, best = run(truth, set(), budget)
    assert best == true_best(truth, budget)
    assert len(order) < len(PAPER_GRID) // 2


def test_batches_are_distinct_and_find_the_same_answer():
    family = SyntheticFamily(accuracy_noise=0.0)
    truth = synthetic_results(family=family).observations("sst2").accuracy
    order, best = run(truth, set(), 0.05, k=4)
    assert best == true_best(truth, 0.05)


def test_an_untouched_row_is_probed_at_its_teacher_first():
    # after the baseline nothing predicts the N > 1 rows: the fastest row offers its (N, 0), the
    # teacher its other points are trained from (paid for anyway), not the middle of the row
    state = SearchState(SPEED, {BASELINE: 0.9}, frozenset(), frozenset(), 0.87)
    assert Proposer().propose(state) == [P(10, 0)]
    # a missed teacher rules its whole row out in one training; (2, 0), interpolated between
    # (1, 0) and (10, 0) as feasible, is next after the CoFi row's middle
    state = SearchState(SPEED, {BASELINE: 0.9, P(10, 0): 0.8}, frozenset(), frozenset(), 0.87)
    assert not [p for p in Proposer().status(state).open if p.n == 10]
    assert Proposer().propose(state, 2) == [P(1, 0.8), P(2, 0)]
