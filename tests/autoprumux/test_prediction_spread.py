"""The proposer's prediction spread is the one the committed full grids give, and under it no
recorded prediction closes a point that meets the threshold."""

import math
from pathlib import Path

import pytest

from autoprumux.core.grid import BASELINE
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.precision import Precision
from autoprumux.files.results_io import read_results
from autoprumux.loop.proposer import (
    DELTA_SPREAD,
    MIN_CHANCE,
    PREDICTION_SPREAD,
    Proposer,
    SearchState,
)
from autoprumux.testing.prediction_spread import (
    calibrate_delta_spread,
    calibrate_spread,
    delta_falls,
    prediction_falls,
)

RESULTS = Path(__file__).parents[2] / "studies" / "results"
GRID_FILES = [RESULTS / "sst2-tiny-grid.json", RESULTS / "sst2-tiny-grid-grouped.json"]


def recorded(path: Path) -> dict:
    results = read_results(path)
    return dict(results.observations(results.resolve_task(None)).accuracy)


def test_falls_on_a_hand_computed_grid():
    # N in {1, 2}, s in {0, 0.5, 0.9}; each row concave: flat, then falling
    accuracy = {
        P(1, 0): 0.90, P(1, 0.5): 0.89, P(1, 0.9): 0.80,
        P(2, 0): 0.85, P(2, 0.5): 0.84, P(2, 0.9): 0.76,
    }  # fmt: skip
    # (1, 0.5) from (1, 0) and (1, 0.9): 0.90 - 0.10 x 0.5 / 0.9 = 0.8444, 4.56 points under;
    # (2, 0.5): 0.85 - 0.09 x 0.5 / 0.9 = 0.80, 4 points under; each once from its row and once
    # from the box N in [1, 2], s in [0, 0.9]. The additive rule: (2, 0.5) 0.85 + 0.89 - 0.90 =
    # 0.84, exact; (2, 0.9) 0.85 + 0.80 - 0.90 = 0.75, 1 point under
    expected = [0.0, 0.01, 0.04, 0.04, 0.1 / 1.8 - 0.01, 0.1 / 1.8 - 0.01]
    assert sorted(prediction_falls(accuracy)) == pytest.approx(expected, abs=1e-12)
    # ceil(1000 x 0.04556 / ln 19) / 1000 = ceil(15.47) / 1000
    assert calibrate_spread([accuracy], MIN_CHANCE) == 0.016


def test_the_spread_is_calibrated_on_the_committed_grids():
    grids = [recorded(path) for path in GRID_FILES]
    assert calibrate_spread(grids, MIN_CHANCE) == PREDICTION_SPREAD
    largest = max(max(prediction_falls(g)) for g in grids)
    assert math.log(1 / MIN_CHANCE - 1) * PREDICTION_SPREAD > largest > 0.03


def test_the_additive_rule_no_longer_closes_the_grouped_grids_answer_at_8_percent():
    # the replay at 8% (threshold 0.7663) after (1, 0), (1, 0.7), (1, 0.9), (2, 0), (2, 0.8):
    # (2, 0.9) lies outside its row's trained points, and the additive rule predicts
    # 0.8016 + 0.7741 - 0.8463 = 0.7294, 3.7 points under the threshold: a chance of 2.4% at a
    # 1-point spread (closed), 6.7% at 1.4 (open). Its true accuracy is 0.7683: the fastest
    # point that meets the threshold (12.25x)
    results = read_results(GRID_FILES[1])
    observed = results.observations(results.resolve_task(None))
    trained = [BASELINE, P(1, 0.7), P(1, 0.9), P(2, 0), P(2, 0.8)]

    def state(*more: P) -> SearchState:
        return SearchState(
            candidates=dict(observed.throughput),
            accuracy={p: observed.accuracy[p] for p in [*trained, *more]},
            threshold=observed.accuracy[BASELINE] - 0.08,
        )

    one_point = Proposer(uncertainty=0.01)
    assert one_point.status(state()).open == (P(4, 0.8), P(4, 0.9))
    assert one_point.propose(state()) == [P(4, 0)]
    # (4, 0) misses: the 1-point spread stops with (2, 0.8), 7.92x
    assert one_point.status(state(P(4, 0))).done
    assert one_point.status(state(P(4, 0))).best == P(2, 0.8)
    # the calibrated spread trains (2, 0.9) next
    assert Proposer().status(state()).open == (P(2, 0.9), P(4, 0.8), P(4, 0.9))
    assert Proposer().propose(state()) == [P(2, 0.9)]


def test_delta_falls_on_a_hand_computed_grid():
    int8 = Precision.INT8
    accuracy = {P(1, 0): 0.90, P(1, 0.5): 0.88, P(2, 0): 0.85, P(2, 0.5): 0.80}
    served = {
        P(1, 0, int8): 0.89,
        P(1, 0.5, int8): 0.875,
        P(2, 0, int8): 0.85,
        P(2, 0.5, int8): 0.79,
    }  # deltas -0.01, -0.005, 0, -0.01
    # (1, 0.5) from (1, 0)'s delta alone: -0.01, the truth -0.005: 0.5 points under;
    # (2, 0.5) from (1, 0) and (2, 0), no rule reaching it: their mean -0.005, the truth
    # -0.01: 0.5 points over
    assert sorted(delta_falls(accuracy, served)) == pytest.approx([-0.005, 0.005], abs=1e-12)
    # ceil(1000 x 0.005 / ln 19) / 1000 = ceil(1.70) / 1000
    assert calibrate_delta_spread([(accuracy, served)], MIN_CHANCE) == 0.002


def test_the_delta_spread_is_calibrated_on_the_committed_precision_grid():
    results = read_results(RESULTS / "sst2-tiny-precisions.json")
    observed = results.observations(results.resolve_task(None))
    grid = (observed.accuracy, observed.served_accuracy)
    assert calibrate_delta_spread([grid], MIN_CHANCE) == DELTA_SPREAD
    assert len(delta_falls(*grid)) == 15  # the 15 pruned points, each with its int8 figure
