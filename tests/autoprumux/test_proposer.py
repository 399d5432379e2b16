"""The proposer on hand-made grids: monotone inference, the stop rule, batches."""

import dataclasses

import pytest

from autoprumux.core.budget import NEAR_MISS
from autoprumux.core.grid import BASELINE, PAPER_GRID
from autoprumux.core.grid import GridPoint as P
from autoprumux.loop.costs import CostModel, PartCosts
from autoprumux.loop.proposer import ProbeRule, Proposer, SearchState
from autoprumux.testing.synthetic import SyntheticFamily, synthetic_results

FAMILY = SyntheticFamily()
SPEED = {p: 1000 * FAMILY.expected_speedup(p) for p in PAPER_GRID}


def run(truth, failed_truth, budget, k=1, rule=ProbeRule.SETTLED_PER_SECOND, near_miss=NEAR_MISS):
    """Simulate a search; returns (points trained in order, best found)."""
    accuracy, failed, threshold, order = {}, set(), None, []
    proposer = Proposer(rule=rule, near_miss=near_miss)
    while True:
        state = SearchState(
            candidates=SPEED,
            accuracy=accuracy,
            failed=frozenset(failed),
            pending=frozenset(),
            threshold=threshold,
        )
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
    state = SearchState(
        candidates=SPEED, accuracy={}, failed=frozenset(), pending=frozenset(), threshold=None
    )
    assert Proposer().propose(state, 4) == [BASELINE]


def test_a_failed_baseline_is_not_proposed_again():
    """It stayed open while no threshold was known: the local search retried it forever."""
    state = SearchState(
        candidates=SPEED,
        accuracy={},
        failed=frozenset({BASELINE}),
        pending=frozenset(),
        threshold=None,
    )
    assert Proposer().status(state).open == () and Proposer().propose(state, 4) == []


def test_a_certified_point_faster_than_the_best_is_trained_not_answered_untrained():
    """(1, 0.7) trained feasible certifies (1, 0.5); where a noisy table times (1, 0.5)
    faster, (1, 0.5) is the answer, so it stays open (it was skipped: the search stopped with
    `answer known` and a predicted answer)."""
    speeds = {**SPEED, P(1, 0.5): SPEED[P(1, 0.7)] * 1.3}
    state = SearchState(
        candidates=speeds,
        accuracy={BASELINE: 0.9, P(1, 0.7): 0.89},
        failed=frozenset(),
        pending=frozenset(),
        threshold=0.87,
    )
    status = Proposer().status(state)
    assert P(1, 0.5) in status.open and P(1, 0.6) not in status.open  # (1, 0.6) is slower
    monotone = Proposer().status(dataclasses.replace(state, candidates=SPEED))
    assert P(1, 0.5) not in monotone.open  # certified, and no faster than (1, 0.7)


def test_monotone_inference_rules_out_more_compressed_points():
    state = SearchState(
        candidates=SPEED,
        accuracy={BASELINE: 0.9, P(2, 0.6): 0.8},
        failed=frozenset(),
        pending=frozenset(),
        threshold=0.85,
    )
    status = Proposer().status(state)
    assert {P(2, 0.7), P(5, 0.6), P(10, 0.95)} <= status.ruled_out
    assert P(2, 0) not in status.ruled_out and P(1, 0.95) not in status.ruled_out


def test_a_feasible_point_closes_slower_points():
    accuracy = {BASELINE: 0.9, P(1, 0.95): 0.89}
    status = Proposer().status(
        SearchState(
            candidates=SPEED,
            accuracy=accuracy,
            failed=frozenset(),
            pending=frozenset(),
            threshold=0.85,
        )
    )
    assert status.best == P(1, 0.95)
    assert all(SPEED[p] > SPEED[P(1, 0.95)] for p in status.open)


def near_miss_status(accuracy, bounds=None):
    state = SearchState(
        candidates=SPEED,
        accuracy={BASELINE: 0.9, **accuracy},
        bounds=bounds or {},
        threshold=0.85,
    )
    return Proposer().status(state)


def test_a_near_miss_leaves_its_neighbours_open():
    # 0.5 points under the threshold: the seed-to-seed noise of one training
    status = near_miss_status({P(2, 0.6): 0.845})
    # the next s of its row and the next N of its column may still meet it
    assert P(2, 0.65) in status.open and P(5, 0.6) in status.open
    # two steps on, or one on each axis, they do not: no inversion is that large
    assert {P(2, 0.7), P(10, 0.6), P(5, 0.65)} <= status.ruled_out
    assert P(2, 0.6) not in status.open


def test_a_clear_miss_rules_out_its_neighbours():
    status = near_miss_status({P(2, 0.6): 0.835})  # 1.5 points under
    assert {P(2, 0.65), P(5, 0.6), P(2, 0.7)} <= status.ruled_out


def test_a_training_stopped_within_the_near_miss_rules_out_its_neighbours():
    # a bound already carries the margin of what the training could still gain
    status = near_miss_status({}, bounds={P(2, 0.6): 0.845})
    assert {P(2, 0.65), P(5, 0.6)} <= status.ruled_out
    # a bound over the threshold settles nothing
    assert P(2, 0.65) not in near_miss_status({}, bounds={P(2, 0.6): 0.86}).ruled_out


def test_the_answer_behind_a_near_miss_is_found():
    # exactly monotone but for one inversion a training's noise makes: (2, 0.8) half a point
    # under the threshold, its row neighbour (2, 0.85), the true best, over it
    family = SyntheticFamily(accuracy_noise=0.0)
    truth = dict(synthetic_results(family=family).observations("sst2").accuracy)
    budget = 0.03
    truth[P(2, 0.8)] = truth[BASELINE] - budget - 0.005
    assert true_best(truth, budget) == P(2, 0.85)
    assert run(truth, set(), budget)[1] == P(2, 0.85)
    # the plain monotone rule (no near miss) takes (2, 0.8)'s miss for (2, 0.85)'s
    assert run(truth, set(), budget, near_miss=0.0)[1] != P(2, 0.85)


def test_failed_points_count_as_infeasible():
    state = SearchState(
        candidates=SPEED,
        accuracy={BASELINE: 0.9},
        failed=frozenset({P(2, 0)}),
        pending=frozenset(),
        threshold=0.85,
    )
    status = Proposer().status(state)
    assert P(5, 0.6) in status.ruled_out and P(2, 0.6) in status.ruled_out


RULES = list(ProbeRule)


@pytest.mark.parametrize("rule", RULES)
def test_budget_zero_stops_after_ruling_everything_out(rule):
    truth = synthetic_results().observations("sst2").accuracy
    order, best = run(truth, set(), 0.0, rule=rule)
    assert best == BASELINE and len(order) < len(PAPER_GRID) // 2


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [0.01, 0.02, 0.03, 0.05, 0.08])
def test_finds_the_true_best_on_exactly_monotone_grids(seed, budget, rule):
    # noise-free accuracies are exactly monotone: the answer must be exact
    family = SyntheticFamily(accuracy_noise=0.0)
    truth = synthetic_results(family=family, seed=seed).observations("sst2").accuracy
    order, best = run(truth, set(), budget, rule=rule)
    assert best == true_best(truth, budget)
    assert len(order) < len(PAPER_GRID) // 2


@pytest.mark.parametrize("rule", RULES)
def test_batches_are_distinct_and_find_the_same_answer(rule):
    family = SyntheticFamily(accuracy_noise=0.0)
    truth = synthetic_results(family=family).observations("sst2").accuracy
    order, best = run(truth, set(), 0.05, k=4, rule=rule)
    assert best == true_best(truth, 0.05)


def test_an_untouched_row_is_probed_at_its_teacher_first():
    # after the baseline nothing predicts the N > 1 rows: the fastest row offers its (N, 0), the
    # teacher its other points are trained from (paid for anyway), not the middle of the row
    state = SearchState(
        candidates=SPEED,
        accuracy={BASELINE: 0.9},
        failed=frozenset(),
        pending=frozenset(),
        threshold=0.87,
    )
    assert Proposer(rule=ProbeRule.THROUGHPUT_X_CHANCE).propose(state) == [P(10, 0)]
    # a missed teacher rules its whole row out in one training; (2, 0), interpolated between
    # (1, 0) and (10, 0) as feasible, is next after the CoFi row's middle (at a 1-point spread
    # its chance is 0.87; at the calibrated 1.4 points 0.79, and (1, 0.75) at even odds but
    # 1.7 times faster comes first)
    state = SearchState(
        candidates=SPEED,
        accuracy={BASELINE: 0.9, P(10, 0): 0.8},
        failed=frozenset(),
        pending=frozenset(),
        threshold=0.87,
    )
    assert not [p for p in Proposer().status(state).open if p.n == 10]
    old_rule = ProbeRule.THROUGHPUT_X_CHANCE
    assert Proposer(0.01, rule=old_rule).propose(state, 2) == [P(1, 0.8), P(2, 0)]
    assert Proposer(rule=old_rule).propose(state, 2) == [P(1, 0.8), P(1, 0.75)]


# the tiny study's grid (studies/results/sst2-tiny-grid.json): speedups over (1, 0)
TINY_SPEED = {
    P(1, 0): 1.0, P(1, 0.5): 1.96, P(1, 0.6): 2.35, P(1, 0.7): 2.74, P(1, 0.8): 3.89,
    P(1, 0.9): 6.55, P(2, 0): 2.02, P(2, 0.5): 3.66, P(2, 0.6): 4.22, P(2, 0.7): 5.25,
    P(2, 0.8): 7.35, P(2, 0.9): 11.8, P(4, 0): 3.35, P(4, 0.5): 5.51, P(4, 0.6): 5.93,
    P(4, 0.7): 8.03, P(4, 0.8): 10.04, P(4, 0.9): 11.9,
}  # fmt: skip
# seconds of each part, nothing built: warm-up and teacher grow with N, own phases too
TINY_COSTS = CostModel(
    parts={
        p: PartCosts(
            warmup={1: 0.0, 2: 300.0, 4: 900.0}[p.n],
            teacher={1: 400.0, 2: 700.0, 4: 1200.0}[p.n],
            own=0.0 if p.sparsity == 0 else {1: 100.0, 2: 200.0, 4: 400.0}[p.n],
        )
        for p in TINY_SPEED
    }
)


def tiny_state(accuracy, threshold=0.814, **kwargs):
    return SearchState(
        candidates=TINY_SPEED, accuracy=accuracy, threshold=threshold, costs=TINY_COSTS, **kwargs
    )


def test_cheap_probes_come_before_an_expensive_teacher_at_even_odds():
    # after the baseline nothing predicts: the CoFi row's middle (100 s, its teacher is built)
    # settles 9 points if it misses; (4, 0) would settle 6 for 2,100 s
    state = tiny_state({BASELINE: 0.844})
    assert Proposer().propose(state) == [P(1, 0.7)]
    assert state.cost(P(1, 0.7)) == 100.0 and state.cost(P(4, 0)) == 2100.0
    # throughput x chance, every training one, goes for the fastest row's teacher
    assert Proposer(rule=ProbeRule.THROUGHPUT_X_CHANCE).propose(state) == [P(4, 0)]


def test_a_slower_teacher_is_probed_when_its_miss_settles_the_wider_rows():
    # the CoFi row is settled: (1, 0.6) at 2.35x is the best verified point and (1, 0.7)
    # missed. Open: (2, 0.5), (2, 0.6), (4, 0), (4, 0.5), (4, 0.6). (2, 0) at 2.02x is not
    # open (slower than the best), but a miss there rules all five out for 1,000 s
    accuracy = {BASELINE: 0.844, P(1, 0.5): 0.8406, P(1, 0.6): 0.8257, P(1, 0.7): 0.7993}
    state = tiny_state(accuracy)
    status = Proposer().status(state)
    assert set(status.open) == {P(2, 0.5), P(2, 0.6), P(4, 0), P(4, 0.5), P(4, 0.6)}
    assert Proposer().propose(state) == [P(2, 0)]
    # two workers: (2, 0), then a point of its row, which costs only its own phases once the
    # first training builds the row's warm-up and teacher (200 s; (4, 0) would cost 2,100 s)
    assert Proposer().propose(state, 2) == [P(2, 0), P(2, 0.6)]
    # the old rule only probes open points
    assert P(2, 0) not in Proposer(rule=ProbeRule.THROUGHPUT_X_CHANCE).propose(state, 5)
    # (2, 0) stopped early with its accuracy at most 0.80: a miss, the search is over
    stopped = tiny_state(accuracy, bounds={P(2, 0): 0.80})
    assert Proposer().status(stopped).done and Proposer().propose(stopped) == []
    assert Proposer().status(stopped).best == P(1, 0.6)
    # at a looser budget (threshold 0.79) the same bound says nothing: the N = 2 row is open
    looser = tiny_state(accuracy, threshold=0.79, bounds={P(2, 0): 0.80})
    assert not looser.stopped_short() and P(2, 0.5) in Proposer().status(looser).open


def test_a_row_being_built_makes_its_points_cheaper():
    state = tiny_state({BASELINE: 0.844}, pending=frozenset({P(2, 0.5)}))
    assert state.cost(P(2, 0.9)) == 200.0  # the pending training builds warm-up and teacher
    assert state.cost(P(4, 0.9)) == 900.0 + 1200.0 + 400.0


def test_a_teacher_another_training_builds_is_not_proposed():
    # (2, 0.5) trains now and builds (2, 0) on the way: (2, 0) costs nothing and comes free
    state = tiny_state({BASELINE: 0.844}, pending=frozenset({P(2, 0.5)}))
    assert state.cost(P(2, 0)) == 0.0
    assert P(2, 0) not in Proposer().propose(state, 5)
    assert len(Proposer().propose(state, 5)) == 5
