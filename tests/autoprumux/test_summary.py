"""What a search answers names the study's metric: its text, its --json document, the
decision's table and the progress lines (autoprumux/session/summary.py, decision_text.py)."""

from pathlib import Path

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import BASELINE
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.metrics import Metric
from autoprumux.core.recommender import Recommender
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
