"""What a search answers names the study's metric: its text, its --json document, the
decision's table and the progress lines (autoprumux/session/summary.py, decision_text.py); and
each recommended point's precision, its batch-1 latency and the objective."""

from dataclasses import replace
from pathlib import Path

import pytest

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import BASELINE, Grid
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Objective, Recommender
from autoprumux.core.records import Observations, TrialRecord
from autoprumux.core.study import Study, StudySection
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.driver import Event, EventKind, SearchOutcome, StopReason
from autoprumux.session.decision_text import decision_dict, format_decision
from autoprumux.session.summary import SearchFacts, event_line, summarize

ACCURACY = {BASELINE: 0.80, P(1, 0.5): 0.78, P(2, 0.0): 0.76, P(2, 0.5): 0.70}
SPEED = {BASELINE: 100.0, P(1, 0.5): 250.0, P(2, 0.0): 190.0, P(2, 0.5): 480.0}
TABLE = ThroughputTable(SPEED)


def decision(budget=0.03):
    observed = Observations(accuracy=ACCURACY, throughput=SPEED)
    return (
        Recommender(2)
        .fit("reviews", observed, TABLE)
        .recommend(Budget(BudgetKind.ABSOLUTE, budget))
    )


def outcome(chosen):
    return SearchOutcome(
        stop_reason=StopReason.ANSWER_KNOWN,
        decision=chosen,
        trainings_this_run=3,
        trainings_total=3,
        free_total=0,
        failed_total=0,
        gpu_hours_total=0.0,
        stopped_total=0,
        training_hours_total=0.25,
        grid_size=4,
        best=P(1, 0.5),
    )


def facts(metric, positive=""):
    study = Study(
        study=StudySection(task="sst2", name="reviews", metric=metric, positive_label=positive)
    )
    return SearchFacts(
        study=study,
        storage_shown="sqlite:///reviews.db",
        dashboard="autoprumux dashboard --storage sqlite:///reviews.db",
        table=TABLE,
        train=None,
        report=Path("reports/reviews.html"),
    )


def test_a_macro_f1_searchs_json_and_text_name_the_metric():
    result = summarize(outcome(decision()), facts(Metric.MACRO_F1))
    document = result.document
    assert (document["metric"], document["metric_label"]) == ("macro_f1", "macro-F1")
    assert list(document)[:3] == ["study", "metric", "metric_label"]
    inner = document["decision"]
    assert (inner["metric"], inner["metric_label"]) == ("macro_f1", "macro-F1")
    assert inner["threshold"] == 0.80 - 0.03
    assert [r["accuracy"] for r in inner["recommendations"]] == [0.78, 0.80]
    text = result.text
    assert "absolute budget 0.03 (macro-F1 points below (1, 0)): threshold 0.7700" in text
    header = next(line for line in text.splitlines() if line.startswith("rank"))
    assert header.split() == [
        "rank",
        "(N,",
        "s)",
        "family",
        "macro-F1",
        "macro-F1",
        "is",
        "throughput/s",
        "speedup",
        "measured/s",
    ]
    assert " accuracy" not in text


def test_the_totals_give_the_trainings_hours_and_gpu_hours_only_where_there_were_gpus():
    """A CPU search's GPU-hours are 0 by definition: its line gives its wall-clock hours."""
    on_cpu = summarize(outcome(decision()), facts(Metric.ACCURACY))
    totals = next(line for line in on_cpu.text.splitlines() if line.startswith("stopped:"))
    assert totals.endswith("of a 4-point grid | 0.25 h of training")
    assert on_cpu.document["training_hours_total"] == 0.25
    on_gpu = replace(outcome(decision()), gpu_hours_total=0.5)
    totals = summarize(on_gpu, facts(Metric.ACCURACY)).text.splitlines()
    assert any(line.endswith("| 0.25 h of training, 0.50 GPU-hours") for line in totals)


@pytest.mark.parametrize(("baseline", "warned"), [(0.5267, True), (0.5300, True), (0.5400, False)])
def test_a_baseline_that_scores_what_one_label_scores_is_warned_of(baseline, warned):
    """A (1, 0) at the majority label's share (within half a point) learned nothing: the
    answer then means nothing, and the text and the JSON say so."""
    records = [TrialRecord(task="reviews", n=1, sparsity=0.0, accuracy=baseline, throughput=100.0)]
    ended = replace(outcome(decision()), records=records)
    said = replace(facts(Metric.ACCURACY), one_label=(158 / 300, "different"))
    result = summarize(ended, said)
    warning = (
        f"the (1, 0) baseline's dev accuracy {baseline:.4f} is no better than predicting "
        "'different' for every example (0.5267): it learned nothing, so every budget is "
        "measured from a model that does not classify; check the labels and the data, or train "
        "longer ([training] finetune_epochs or finetune_steps)"
    )
    assert result.document["warnings"] == ([warning] if warned else [])
    assert (f"warning: {warning}" in result.text.splitlines()) is warned
    assert not summarize(ended, facts(Metric.ACCURACY)).document["warnings"]  # a replay: no data


def test_an_f1_search_names_its_positive_label():
    document = summarize(outcome(decision()), facts(Metric.F1, "pos")).document
    assert (document["metric"], document["metric_label"]) == ("f1", "F1 of 'pos'")


def test_nothing_feasible_names_the_candidate_of_highest_metric():
    strict = Budget(BudgetKind.MIN_ACCURACY, 0.95)
    none = (
        Recommender(2)
        .fit("reviews", Observations(accuracy=ACCURACY, throughput=SPEED), TABLE)
        .recommend(strict)
    )
    assert "the most accurate candidate is (1, 0) at 0.8000" in format_decision(none, "r", TABLE)
    assert (
        "no candidate meets the threshold 0.9500; the candidate of highest MCC is (1, 0) at 0.8000"
        in format_decision(none, "r", TABLE, Metric.MATTHEWS)
    )
    assert decision_dict(none, "r", TABLE)["metric"] == "accuracy"


def test_progress_lines_name_the_metric():
    record = TrialRecord(task="reviews", n=1, sparsity=0.5, accuracy=0.7812, throughput=250.0)
    event = Event(
        kind=EventKind.COMPLETE,
        point=P(1, 0.5),
        record=record,
        running=0,
        done=2,
        failed=0,
        best=P(1, 0.5),
    )
    assert "(1, 0.5) macro-F1 0.7812, 250.0/s |" in event_line(event, "macro-F1")
    assert "(1, 0.5) accuracy 0.7812, 250.0/s |" in event_line(event)
    int8 = replace(event, record=replace(record, accuracy_int8=0.7798))
    assert "(1, 0.5) accuracy 0.7812 (int8 0.7798), 250.0/s |" in event_line(int8)


# --- precision as a third axis: a hand-made grid where an int8 point wins budget 0.03 ---------
INT8 = Precision.INT8
FP32_ACCURACY = {BASELINE: 0.90, P(1, 0.5): 0.88, P(2, 0.0): 0.87, P(2, 0.5): 0.84}
INT8_ACCURACY = {P(1, 0, INT8): 0.895, P(1, 0.5, INT8): 0.874, P(2, 0, INT8): 0.866}
TIMED_IN_TRIALS = {BASELINE: 95.0, P(1, 0.5): 240.0, P(2, 0.0): 180.0, P(2, 0.5): 470.0}
SERVED = ThroughputTable(
    {
        **{BASELINE: 100.0, P(1, 0.5): 250.0, P(2, 0.0): 190.0, P(2, 0.5): 480.0},
        **{P(1, 0, INT8): 220.0, P(1, 0.5, INT8): 520.0, P(2, 0, INT8): 400.0},
        P(2, 0.5, INT8): 900.0,
    },
    source="t.json",
    latency={
        **{BASELINE: 0.010, P(1, 0.5): 0.005, P(2, 0.0): 0.011, P(2, 0.5): 0.006},
        **{P(1, 0, INT8): 0.004, P(1, 0.5, INT8): 0.002, P(2, 0, INT8): 0.0045},
    },  # (2, 0.5, int8) has no latency
)


def served_decision(objective=Objective.THROUGHPUT):
    observed = Observations(
        accuracy=FP32_ACCURACY, throughput=TIMED_IN_TRIALS, served_accuracy=INT8_ACCURACY
    )
    # (2, 0.5) was trained but not evaluated in int8 (its int8 file refused): not ranked
    points = Grid((1, 2), (0.0, 0.5)).served((Precision.FP32, INT8))
    return (
        Recommender(3, objective)
        .fit("sst2", observed, SERVED)
        .recommend(Budget(BudgetKind.ABSOLUTE, 0.03), points)
    )


def test_an_int8_point_that_wins_the_budget_is_named_in_the_text():
    # threshold 0.90 - 0.03 = 0.87: (1, 0.5, int8) at 0.874 and 520/s beats every fp32 point
    # ((1, 0.5) at 250/s); (2, 0, int8) at 0.866 misses it
    text = format_decision(served_decision(), "r.csv", SERVED)
    assert text.splitlines()[2] == "objective: throughput (examples per second at full batches)"
    table = text[text.index("rank") : text.index("\n\n", text.index("rank"))].splitlines()
    assert table == [
        "rank  (N, s, precision)  family    accuracy  accuracy is  throughput/s  speedup  "
        "batch-1 ms  measured/s",
        "1     (1, 0.5, int8)     cofi      0.8740    measured     520.0         5.20x    "
        "2.00        -",
        "2     (1, 0.5)           cofi      0.8800    measured     250.0         2.50x    "
        "5.00        240.0",
        "3     (1, 0, int8)       baseline  0.8950    measured     220.0         2.20x    "
        "4.00        -",
    ]
    # 4 (N, s) x 2 precisions; below 0.87: (2, 0, int8) and (2, 0.5); (2, 0.5, int8) unknown
    assert text.endswith(
        "8 candidates; excluded below the threshold: 2, accuracy unknown (outside the measured "
        "hull, next to a failed point, or trained without a figure in its precision: its int8 "
        "file refused, or trained by a release that did not evaluate that precision): 1"
    )


def test_an_int8_point_that_wins_the_budget_is_in_the_json():
    document = decision_dict(served_decision(), "r.csv", SERVED)
    assert document["objective"] == "throughput"
    first, second, third = document["recommendations"]
    assert first == {
        "rank": 1,
        "n": 1,
        "sparsity": 0.5,
        "precision": "int8",
        "family": "cofi",
        "accuracy": 0.874,
        "accuracy_source": "measured",
        "throughput": 520.0,
        "throughput_source": "measured",
        "speedup": 5.2,  # over (1, 0) in fp32: 520 / 100
        "measured_throughput": None,  # a trial times its fp32 model only
        "latency_ms": 2.0,
    }
    assert (second["precision"], second["measured_throughput"], second["latency_ms"]) == (
        "fp32",
        240.0,
        5.0,
    )
    assert (third["n"], third["sparsity"], third["precision"], third["speedup"]) == (
        1,
        0.0,
        "int8",
        2.2,
    )


def test_ranked_by_latency_the_text_and_json_say_so():
    decision = served_decision(Objective.LATENCY)
    document = decision_dict(decision, "r.csv", SERVED)
    assert document["objective"] == "latency"
    ranked = [(r["n"], r["sparsity"], r["precision"]) for r in document["recommendations"]]
    # 2 ms, 4 ms, then (1, 0.5) fp32's 5 ms before (2, 0)'s 11 ms
    assert ranked == [(1, 0.5, "int8"), (1, 0.0, "int8"), (1, 0.5, "fp32")]
    assert [r["latency_ms"] for r in document["recommendations"]] == [2.0, 4.0, 5.0]
    text = format_decision(decision, "r.csv", SERVED)
    assert (
        "objective: latency (one request at batch 1; a multiplexed model then runs with N - 1 "
        "empty slots)"
    ) in text


def test_a_decision_without_latency_or_precisions_prints_as_before():
    text = format_decision(decision(), "r", TABLE)
    header = next(line for line in text.splitlines() if line.startswith("rank"))
    assert "batch-1 ms" not in header and "(N, s)  " in header
    document = decision_dict(decision(), "r", TABLE)
    assert {(r["precision"], r["latency_ms"]) for r in document["recommendations"]} == {
        ("fp32", None)
    }
