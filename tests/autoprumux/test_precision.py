"""The precision axis (autoprumux.core.precision): (N, s, precision) points, the tables and
surfaces per precision, and the recommender and proposer over them (what a device can serve:
tests/trainers/test_served_precisions.py)."""

import dataclasses
import json

import pytest

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import Grid, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Exclusion, Objective, Recommender
from autoprumux.core.records import Observations, RecipeSpeed, ResultsTable, TrialRecord
from autoprumux.core.study import DeploySection
from autoprumux.core.surface import ServedSurface
from autoprumux.core.surrogate import Source
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import read_throughput_table, write_throughput_table
from autoprumux.loop.proposer import Proposer, SearchState

FP32, INT8, BF16, FP16 = Precision.FP32, Precision.INT8, Precision.BF16, Precision.FP16


def p(n: int, s: float, precision: Precision = FP32) -> GridPoint:
    return GridPoint(n, s, precision)


def test_a_point_in_another_precision_serves_the_fp32_model_its_trial_trains():
    point = p(2, 0.7, INT8)
    assert str(point) == "(2, 0.7, int8)" and str(p(2, 0.7)) == "(2, 0.7)"
    assert point.trained == p(2, 0.7) and point.trained.served(INT8) == point
    assert point != p(2, 0.7) and point in Grid((1, 2), (0.0, 0.7))  # the grid trains it
    assert GridPoint(1, 0.0, "int8") == p(1, 0, INT8)  # a name is read as its precision
    assert sorted([p(2, 0.7, INT8), p(2, 0.7), p(1, 0.5)]) == [p(1, 0.5), p(2, 0.7), point]
    assert Grid((1,), (0.0, 0.5)).served((FP32, INT8)) == (
        p(1, 0),
        p(1, 0, INT8),
        p(1, 0.5),
        p(1, 0.5, INT8),
    )
    with pytest.raises(FieldError, match="precision: 'int4' is not one of: fp32, bf16, fp16, int8"):
        GridPoint(1, 0.0, "int4")  # type: ignore[arg-type]


def test_a_study_serves_fp32_always_and_each_precision_once():
    assert DeploySection().precisions == ()
    with pytest.raises(FieldError, match="precisions: must hold 'fp32'"):
        DeploySection(precisions=(INT8,))
    with pytest.raises(FieldError, match="repeats one"):
        DeploySection(precisions=(FP32, INT8, INT8))


def test_records_give_each_precisions_figure_and_the_largest_gain_over_fp32():
    rows = [
        TrialRecord(task="t", n=1, sparsity=0.0, accuracy=0.90, throughput=1.0,
                    accuracy_int8=0.89, seed=0),
        TrialRecord(task="t", n=1, sparsity=0.0, accuracy=0.92, throughput=1.0,
                    accuracy_int8=0.90, seed=1),
        TrialRecord(task="t", n=1, sparsity=0.5, accuracy=0.85, throughput=2.0,
                    accuracy_int8=0.855, accuracy_bf16=0.845),
    ]  # fmt: skip
    observed = ResultsTable.from_records(rows).observations("t")
    assert observed.served_accuracy == pytest.approx(
        {p(1, 0, INT8): 0.895, p(1, 0.5, INT8): 0.855, p(1, 0.5, BF16): 0.845}
    )
    assert observed.served_gain == pytest.approx(0.005)  # int8 over fp32 at (1, 0.5)
    assert observed.without(p(1, 0.5)).served_accuracy.keys() == {p(1, 0, INT8)}
    with pytest.raises(FieldError, match="accuracy_int8: 1.5 is outside"):
        TrialRecord(task="t", n=1, sparsity=0.0, accuracy=0.9, throughput=1.0, accuracy_int8=1.5)


def test_a_table_times_each_precision_on_rows_and_rules_of_its_own(tmp_path):
    table = ThroughputTable(
        {p(1, 0): 100.0, p(1, 0.5): 200.0, p(1, 0, INT8): 150.0, p(1, 0.8, INT8): 600.0},
        {"device": "cpu"},
        latency={p(1, 0): 0.01, p(1, 0, INT8): 0.004},
    )
    assert table.precisions == (FP32, INT8) and table.baseline == 100.0
    model = table.model()
    # seconds per example linear in s within each precision's own rows
    assert model.predict(p(1, 0.4)).value == pytest.approx(1 / (0.01 - 0.8 * 0.005))
    assert model.predict(p(1, 0.4, INT8)).value == pytest.approx(240.0)
    assert model.predict(p(1, 0.7)).source is Source.UNKNOWN  # no fp32 row beyond 0.5
    assert model.predict(p(1, 0.4, BF16)).source is Source.UNKNOWN  # no bf16 rows at all
    assert table.latency_model().predict(p(1, 0, INT8)).value == 0.004
    assert table.serving((FP32,)).points == (p(1, 0), p(1, 0.5))
    for suffix in ("json", "csv"):
        back = read_throughput_table(write_throughput_table(table, tmp_path / f"t.{suffix}"))
        assert back.throughput == table.throughput and back.latency == table.latency


def test_a_table_without_a_precision_column_is_fp32(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("n,sparsity,throughput\n1,0,100\n1,0.5,200\n")
    assert read_throughput_table(path).points == (p(1, 0), p(1, 0.5))
    path.write_text("n,sparsity,precision,throughput\n1,0,int4,100\n")
    with pytest.raises(Exception, match="row 1: field 'precision': 'int4' is not one of"):
        read_throughput_table(path)


def test_an_older_table_timed_in_bfloat16_is_read_as_bf16_rows_not_fp32(tmp_path):
    # before precisions were rows, [throughput] dtype timed a whole table in bfloat16 and its
    # rows carried no precision: read as fp32, a search would rank fp32 models by bf16 speed
    path = tmp_path / "sst2-cuda-bfloat16.json"
    rows = [
        {"n": 1, "sparsity": 0, "throughput": 100},
        {"n": 1, "sparsity": 0.5, "throughput": 150},
    ]
    path.write_text(json.dumps({"fingerprint": {"dtype": "bfloat16"}, "rows": rows}))
    with pytest.raises(DataError, match=r"has no fp32 \(1, 0\) row \(it times bf16 only\)"):
        read_throughput_table(path)
    rows.append({"n": 1, "sparsity": 0, "precision": "fp32", "throughput": 40})
    path.write_text(json.dumps({"fingerprint": {"dtype": "bfloat16"}, "rows": rows}))
    assert read_throughput_table(path).throughput == {
        p(1, 0, BF16): 100.0,
        p(1, 0.5, BF16): 150.0,
        p(1, 0): 40.0,
    }


FP32_FIGURES = {p(1, 0): 0.90, p(1, 0.5): 0.88, p(2, 0): 0.86, p(2, 0.5): 0.80}


def test_an_untrained_precision_is_its_fp32_prediction_plus_the_interpolated_delta():
    served = {p(1, 0, INT8): 0.89, p(1, 0.5, INT8): 0.86}  # deltas -0.01 and -0.02
    surface = ServedSurface().fit(FP32_FIGURES, [p(3, 0)], served)
    assert surface.predict(p(1, 0, INT8)).value == 0.89
    assert surface.predict(p(1, 0, INT8)).source is Source.MEASURED
    # fp32 interpolated 0.89, delta interpolated -0.015
    assert surface.predict(p(1, 0.25, INT8)).value == pytest.approx(0.875)
    assert surface.predict(p(1, 0.25, INT8)).source is Source.INTERPOLATED
    # no delta measured around N = 2: fp32 interpolated 0.83, plus the mean delta, -0.015
    assert surface.predict(p(2, 0.25, INT8)).value == pytest.approx(0.815)
    assert surface.predict(p(3, 0, INT8)).source is Source.FAILED
    assert surface.predict(p(2, 0, BF16)).source is Source.UNKNOWN  # no bf16 delta yet
    assert surface.predict(p(1, 0.25)).value == pytest.approx(0.89)  # fp32 as AccuracySurface
    # trained, but without an int8 figure (its int8 file refused): nothing to rank
    assert surface.predict(p(2, 0, INT8)).source is Source.UNKNOWN


TABLE = ThroughputTable(
    {p(1, 0): 100.0, p(1, 0.5): 200.0, p(1, 0, INT8): 170.0, p(1, 0.5, INT8): 330.0},
    latency={p(1, 0): 0.010, p(1, 0.5): 0.006, p(1, 0, INT8): 0.005},
)
OBSERVED = Observations(
    accuracy={p(1, 0): 0.90, p(1, 0.5): 0.885},
    throughput={p(1, 0): 100.0, p(1, 0.5): 200.0},
    served_accuracy={p(1, 0, INT8): 0.895, p(1, 0.5, INT8): 0.86},
)


def test_the_recommender_ranks_every_point_in_every_precision():
    recommender = Recommender(top_k=3).fit("t", OBSERVED, TABLE)
    points = Grid((1,), (0.0, 0.5)).served((FP32, INT8))
    tight = recommender.recommend(Budget(BudgetKind.ABSOLUTE, 0.02), points)  # threshold 0.88
    assert [r.point for r in tight.recommendations] == [p(1, 0.5), p(1, 0, INT8), p(1, 0)]
    assert [r.speedup for r in tight.recommendations] == [2.0, 1.7, 1.0]  # over (1, 0) fp32
    assert tight.exclusions == {Exclusion.BELOW_THRESHOLD: 1}  # (1, 0.5, int8): 0.86
    loose = recommender.recommend(Budget(BudgetKind.ABSOLUTE, 0.05), points)  # threshold 0.85
    assert loose.recommendations[0].point == p(1, 0.5, INT8)
    assert loose.recommendations[0].precision is INT8


def test_by_latency_the_lowest_batch_1_seconds_win_and_unmeasured_ones_are_excluded():
    recommender = Recommender(top_k=3, objective=Objective.LATENCY).fit("t", OBSERVED, TABLE)
    points = Grid((1,), (0.0, 0.5)).served((FP32, INT8))
    decision = recommender.recommend(Budget(BudgetKind.ABSOLUTE, 0.05), points)
    assert decision.objective is Objective.LATENCY
    assert [(r.point, r.latency_s) for r in decision.recommendations] == [
        (p(1, 0, INT8), 0.005),
        (p(1, 0.5), 0.006),
        (p(1, 0), 0.010),
    ]
    assert decision.exclusions == {Exclusion.LATENCY_UNKNOWN: 1}  # (1, 0.5, int8): no latency


def test_the_proposer_searches_each_precision_with_its_own_monotone_rules():
    state = SearchState(
        candidates={p(1, 0): 100.0, p(1, 0.5): 150.0, p(1, 0.7): 200.0},
        served={p(1, 0, INT8): 120.0, p(1, 0.5, INT8): 180.0, p(1, 0.7, INT8): 240.0},
        accuracy={p(1, 0): 0.90, p(1, 0.5): 0.89},
        served_accuracy={p(1, 0, INT8): 0.895, p(1, 0.5, INT8): 0.85},
        threshold=0.88,
    )
    status = Proposer().status(state)
    assert status.best == p(1, 0.5)  # 150 fp32 beats (1, 0, int8)'s 120; int8 0.5 missed
    # an int8 miss at s = 0.5 rules out int8 at 0.7, and says nothing of fp32 at 0.7
    assert status.open == (p(1, 0.7),) and p(1, 0.7, INT8) in status.ruled_out
    assert Proposer().propose(state) == [p(1, 0.7)]


def test_the_proposer_trains_a_point_because_its_int8_model_could_be_the_answer():
    state = SearchState(
        candidates={p(1, 0): 100.0, p(1, 0.5): 150.0},
        served={p(1, 0, INT8): 300.0, p(1, 0.5, INT8): 400.0},
        accuracy={p(1, 0): 0.90},
        served_accuracy={p(1, 0, INT8): 0.895},
        threshold=0.88,
    )
    status = Proposer().status(state)
    assert status.best == p(1, 0, INT8)  # verified: measured in int8, 300/s
    assert status.open == (p(1, 0.5, INT8),)  # fp32 (1, 0.5) is slower than the best
    assert status.open_trainings == (p(1, 0.5),)
    assert Proposer().propose(state) == [p(1, 0.5)]
    fp32_only = SearchState(
        candidates=state.candidates, accuracy=state.accuracy, threshold=state.threshold
    )
    assert Proposer().status(fp32_only).best == p(1, 0)


def test_a_static_int8_models_row_is_scaled_once_to_its_files_speed():
    """A trained model whose int8 file is static QDQ (timed against dynamic: RecipeSpeed) is
    ranked by that file's speed: its row's examples/s and batch-1 seconds times the ratios;
    the other rows, and every interpolation between them, are the table's."""
    slower = RecipeSpeed(throughput=0.5, latency=1.6)
    scaled = TABLE.with_recipe_speeds({p(1, 0, INT8): slower, p(4, 0, INT8): slower})
    assert scaled.throughput == {**TABLE.throughput, p(1, 0, INT8): 85.0}  # 170 x 0.5
    assert scaled.latency == {**TABLE.latency, p(1, 0, INT8): pytest.approx(0.008)}  # x 1.6
    assert scaled.rescaled == (p(1, 0, INT8),)  # (4, 0): no row, nothing to scale
    assert scaled.with_recipe_speeds({p(1, 0, INT8): slower}) == scaled  # never twice
    assert TABLE.with_recipe_speeds({}) is TABLE
    assert scaled.serving((FP32,)).rescaled == () and scaled.serving((FP32, INT8)) == scaled
    assert scaled.describe().endswith(
        "; (1, 0, int8) scaled to the static int8 file its model is served by, timed against "
        "dynamic int8 side by side"
    )
    # the records carry it: a seed's ratios averaged with another's of the same point
    rows = [
        TrialRecord(task="t", n=1, sparsity=0.0, accuracy=0.9, throughput=1.0, accuracy_int8=0.89,
                    int8_throughput_ratio=0.4, int8_latency_ratio=2.0, seed=0),
        TrialRecord(task="t", n=1, sparsity=0.0, accuracy=0.9, throughput=1.0, accuracy_int8=0.89,
                    int8_throughput_ratio=0.6, int8_latency_ratio=1.2, seed=1),
        TrialRecord(task="t", n=1, sparsity=0.5, accuracy=0.9, throughput=2.0, accuracy_int8=0.89),
    ]  # fmt: skip
    observed = ResultsTable.from_records(rows).observations("t")
    assert observed.recipe_speed == {p(1, 0, INT8): pytest.approx(slower)}
    assert observed.without(p(1, 0)).recipe_speed == {}
    with pytest.raises(FieldError, match="int8_throughput_ratio: 0.0 is not a positive ratio"):
        TrialRecord(task="t", n=1, sparsity=0.0, accuracy=0.9, throughput=1.0,
                    int8_throughput_ratio=0.0)  # fmt: skip


def test_the_recommender_ranks_a_static_int8_model_by_its_own_files_speed():
    """At a budget of 2 points, (1, 0, int8) ranks second by dynamic int8's row (170/s); its
    static file, half as fast, ranks it last (85/s), below (1, 0) fp32's 100/s."""
    points = Grid((1,), (0.0, 0.5)).served((FP32, INT8))
    budget = Budget(BudgetKind.ABSOLUTE, 0.02)
    slower = RecipeSpeed(throughput=0.5, latency=1.6)
    static = dataclasses.replace(OBSERVED, recipe_speed={p(1, 0, INT8): slower})
    decision = Recommender(top_k=3).fit("t", static, TABLE).recommend(budget, points)
    assert [(r.point, r.throughput) for r in decision.recommendations] == [
        (p(1, 0.5), 200.0),
        (p(1, 0), 100.0),
        (p(1, 0, INT8), 85.0),
    ]
    by_latency = Recommender(top_k=3, objective=Objective.LATENCY).fit("t", static, TABLE)
    first = by_latency.recommend(Budget(BudgetKind.ABSOLUTE, 0.05), points).recommendations[0]
    assert (first.point, first.latency_s) == (p(1, 0.5), 0.006)  # int8's 0.008 s now slower
