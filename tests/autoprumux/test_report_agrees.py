"""The report agrees with the search and predict on the same inputs: the budget and objective
a search ran with, its failed count, the candidates ranked, a training stopped early, the
requested floor, nothing feasible, a failed baseline, a recorded table gone."""

import json
import shutil
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.answer import TRAIN_COMMAND_ATTR, TrainCommand
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import DataError
from autoprumux.core.grid import BASELINE, Grid
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.metrics import Metric
from autoprumux.core.recommender import Objective
from autoprumux.core.records import Observations, Training, TrialRecord, TrialStatus
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import write_throughput_table
from autoprumux.loop.driver import (
    SearchConfig,
    SearchDriver,
    budget_from_label,
    budget_label,
    run_local,
)
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.store_contract import INTERRUPTED
from autoprumux.report.data import (
    ReportInput,
    answer,
    cost,
    no_answer,
    recommendations,
)
from autoprumux.report.html import header, render
from autoprumux.report.sources import DEFAULT_BUDGET, from_results, from_storage

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "studies" / "results"
CPU_TABLE = ROOT / "studies" / "throughput" / "sst2-tiny-cpu-float32.json"
GRID = Grid((1, 2), (0.0, 0.5))
ACCURACY = {BASELINE: 0.90, P(1, 0.5): 0.88, P(2, 0.0): 0.875, P(2, 0.5): 0.84}
# by throughput (2, 0) is the fastest that meets 0.87 (budget 0.03), by batch-1 latency (1, 0.5)
SPEED = {BASELINE: 100.0, P(1, 0.5): 250.0, P(2, 0.0): 300.0, P(2, 0.5): 480.0}
LATENCY = {BASELINE: 0.010, P(1, 0.5): 0.004, P(2, 0.0): 0.012, P(2, 0.5): 0.009}
TABLE = ThroughputTable(SPEED, latency=LATENCY)


def trainer(point, stop=None):
    return Training(
        TrialRecord(
            task="sst2",
            n=point.n,
            sparsity=point.sparsity,
            accuracy=ACCURACY[point],
            throughput=SPEED[point],
        )
    )


def driver(url, budget=0.03, objective=Objective.THROUGHPUT):
    config = SearchConfig(
        study_name="s",
        task="sst2",
        grid=GRID,
        budget=Budget(BudgetKind.ABSOLUTE, budget),
        storage_url=url,
        objective=objective,
    )
    return SearchDriver(config, TABLE, OptunaStore(url, "s", GRID, "sst2"))


def labels(url):
    store = OptunaStore(url, "s", GRID, "sst2")
    attrs = store.user_attrs()
    store.close()
    return {key: attrs.get(key) for key in ("budget", "threshold", "objective")}


@pytest.fixture
def searched(tmp_path):
    """A study searched at budget 0.03 by throughput, then by batch-1 latency (the last run's
    objective), ranked by a table file with latencies; every point trained."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_local(driver(url), trainer, 1)
    search = driver(url, objective=Objective.LATENCY)
    table = write_throughput_table(TABLE, tmp_path / "t.json")
    search.store.set_user_attr("throughput_table", str(table))
    outcome = run_local(search, trainer, 1)
    assert {r.point for r in outcome.records} == set(GRID)
    return url


def test_budget_labels_round_trip():
    for budget in (
        Budget(BudgetKind.ABSOLUTE, 0.03),
        Budget(BudgetKind.RELATIVE, 0.0125),
        Budget(BudgetKind.MIN_ACCURACY, 0.8),
        Budget(BudgetKind.ABSOLUTE, 0.0),
    ):
        assert budget_from_label(budget_label(budget)) == budget
    assert budget_label(Budget(BudgetKind.ABSOLUTE, 0.03)) == "absolute 0.03"  # as before
    assert budget_label(Budget(BudgetKind.MIN_ACCURACY, 0.8)) == "min-accuracy 0.8"
    assert budget_from_label("lenient 0.03") is None and budget_from_label("absolute x") is None


def test_the_search_labels_its_study_when_it_starts_not_only_when_a_training_finishes(tmp_path):
    """A rerun with another budget that trains nothing states its budget and threshold."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    driver(url, objective=Objective.LATENCY).close()  # nothing trained: no threshold yet
    assert labels(url) == {"budget": "absolute 0.03", "threshold": None, "objective": "latency"}
    run_local(driver(url), trainer, 1)
    assert labels(url) == {
        "budget": "absolute 0.03",
        "threshold": pytest.approx(0.87),
        "objective": "throughput",
    }
    again = driver(url, budget=0.05)
    assert labels(url)["budget"] == "absolute 0.05"
    assert labels(url)["threshold"] == pytest.approx(0.85)
    assert run_local(again, trainer, 1).trainings_this_run == 0  # it trained nothing


def test_a_study_report_ranks_by_the_budget_and_objective_its_search_recorded(searched):
    data = from_storage(searched, "s", None, None)
    assert (data.budget, data.objective) == (Budget(BudgetKind.ABSOLUTE, 0.03), Objective.LATENCY)
    assert answer(data).point == P(1, 0.5)  # the fastest at batch 1 that meets 0.87
    # given, they rank instead
    given = from_storage(
        searched, "s", Budget(BudgetKind.ABSOLUTE, 0.05), None, Objective.THROUGHPUT
    )
    assert (given.budget.value, given.objective, answer(given).point) == (
        0.05,
        Objective.THROUGHPUT,
        P(2, 0.0),
    )


def test_report_storage_writes_the_searchs_answer_unless_told_otherwise(searched, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", "--storage", searched, "--study-name", "s", "--out", str(out)]) == 0
    page = out.read_text()
    assert "threshold 0.8700 (baseline 0.9000 - 0.03) | ranked by batch-1 latency" in page
    assert "Deploy <b>(1, 0.5)</b>" in page
    command = ["report", "--storage", searched, "--study-name", "s", "--out", str(out)]
    assert main([*command, "--objective", "throughput", "--budget", "0.05"]) == 0
    page = out.read_text()
    assert "threshold 0.8500 (baseline 0.9000 - 0.05)</p>" in page
    assert "Deploy <b>(2, 0)</b>" in page and "ranked by batch-1 latency" not in page


def test_a_study_recorded_before_its_budget_and_objective_reports_at_the_defaults(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    OptunaStore(url, "s", GRID, "sst2").close()
    data = from_storage(url, "s", None, None)
    assert (data.budget, data.objective) == (DEFAULT_BUDGET, Objective.THROUGHPUT)
    assert Budget(BudgetKind.ABSOLUTE, 0.03) == DEFAULT_BUDGET
    store = OptunaStore(url, "s", GRID, "sst2")
    store.set_user_attr("objective", "fastest")
    store.close()
    with pytest.raises(DataError, match="holds an objective 'fastest' autoprumux did not write"):
        from_storage(url, "s", None, None)


def test_report_objective_latency_needs_a_table_with_latencies(tmp_path, capsys):
    out = tmp_path / "r.html"
    results = str(RESULTS / "sst2-tiny-grid-grouped.json")
    command = ["report", "--results", results, "--objective", "latency", "--out", str(out)]
    assert main(command) == 2
    assert capsys.readouterr().err.startswith(
        "autoprumux: error: --objective: latency needs a throughput table with a latency_s column"
    )
    assert main([*command, "--throughput", str(CPU_TABLE)]) == 0
    assert "ranked by batch-1 latency" in out.read_text()


def test_an_interrupted_trial_is_neither_a_failure_nor_a_training_in_the_cost_table(tmp_path):
    """As the search counts it (failed_total 0): the driver's and the report's one rule."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    outcome = run_local(driver(url), trainer, 1)
    assert P(1, 0.5) not in {r.point for r in outcome.records}
    store = OptunaStore(url, "s", GRID, "sst2")
    store.start(P(1, 0.5))
    store.close()  # its process stopped before it finished: closed as interrupted
    data = from_storage(url, "s", None, None)
    assert [r.point for r in data.records if r.reason == INTERRUPTED] == [P(1, 0.5)]
    spent = cost(data)
    assert outcome.failed_total == spent.failed == 0
    assert (spent.trained, spent.skipped) == (3, 1)  # (1, 0.5) never trained
    assert P(1, 0.5) not in data.observations.failed  # nor a failed point of the surface
    failed = TrialRecord(task="sst2", n=1, sparsity=0.5, status=TrialStatus.FAILED, reason="x")
    assert cost(_data(records=[*data.records, failed])).failed == 1


def _data(accuracy=ACCURACY, budget=DEFAULT_BUDGET, **fields):
    observations = fields.pop(
        "observations",
        Observations(accuracy=dict(accuracy), throughput={p: SPEED[p] for p in accuracy}),
    )
    return ReportInput(
        title="t",
        task="sst2",
        grid=GRID,
        budget=budget,
        observations=observations,
        table=fields.pop("table", ThroughputTable(SPEED)),
        **fields,
    )


@pytest.fixture
def stopped(tmp_path):
    """The tiny grid's results with (1, 0.8) stopped early at 0.75 with a margin of 0.05."""
    document = json.loads((RESULTS / "sst2-tiny-grid-grouped.json").read_text())
    for row in document["rows"]:
        if (row["n"], row["sparsity"]) == (1, 0.8):
            row.update(status="stopped", stop_step=600, stop_accuracy=0.75, stop_margin=0.05)
    path = tmp_path / "stopped.json"
    path.write_text(json.dumps(document))
    return str(path)


def predicted(capsys, *args):
    assert main(["predict", *args, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    return (document["recommendations"][0]["n"], document["recommendations"][0]["sparsity"]), (
        document["candidates"]
    )


@pytest.mark.parametrize(
    ("table", "top", "candidates"),
    [(None, P(1, 0.7), 17), (str(CPU_TABLE), P(1, 0.8), 18)],
    ids=["trial-timed", "table"],
)
def test_a_results_report_ranks_what_predict_ranks(stopped, capsys, table, top, candidates):
    """The table's points (a stopped training has no throughput of its own), not the whole
    grid with interpolated throughputs."""
    args = ["--results", stopped, "--budget", "0.05", *(["--throughput", table] if table else [])]
    assert predicted(capsys, *args) == ((top.n, top.sparsity), candidates)
    data = from_results(stopped, None, Budget(BudgetKind.ABSOLUTE, 0.05), table)
    assert len(data.candidates) == candidates and answer(data).point == top


def test_a_point_stopped_early_is_said_to_be_one(stopped):
    data = from_results(stopped, None, Budget(BudgetKind.ABSOLUTE, 0.05), str(CPU_TABLE))
    top = answer(data)
    assert (top.point, top.accuracy_measured, top.bound) == (P(1, 0.8), False, 0.8)
    page = render(data)
    assert (
        "(1, 0.8) was trained but stopped early: its accuracy is at most 0.8000, and the figure "
        "above is predicted; no study file is known here to train it in full with."
    ) in page
    assert "is predicted, not trained" not in page
    assert "<td>(1, 0.8)</td><td>0.7970 (predicted; stopped early, at most 0.8000)</td>" in page


def test_a_floor_asked_for_is_a_highlighted_row_among_the_absolute_budgets():
    floor = Budget(BudgetKind.MIN_ACCURACY, 0.8725)  # between 0.90 - 0.025 and 0.90 - 0.03
    rows = recommendations(_data(budget=floor))
    (requested,) = [r for r in rows if r.requested]
    assert (requested.kind, requested.budget, requested.threshold) == (floor.kind, 0.8725, 0.8725)
    at = rows.index(requested)
    assert (rows[at - 1].budget, rows[at + 1].budget) == (0.025, 0.03)
    assert [item["point"] for item in requested.top] == [P(2, 0.0), P(1, 0.5), BASELINE]
    page = render(_data(budget=floor))
    assert "<tr class='requested'><td>minimum 0.8725</td><td>0.8725</td>" in page


def test_the_report_says_when_no_candidate_meets_the_budget(capsys):
    floor = Budget(BudgetKind.MIN_ACCURACY, 0.95)
    unmet = no_answer(_data(budget=floor))
    assert (unmet.threshold, unmet.closest, unmet.closest_accuracy) == (0.95, BASELINE, 0.90)
    said = (
        "No candidate meets the threshold 0.9500; the most accurate candidate is (1, 0) at 0.9000."
    )
    assert f"<div class='warn'>{said}</div>" in header(_data(budget=floor), None)
    f1 = header(_data(budget=floor, metric=Metric.MACRO_F1), None)
    assert "; the candidate of highest macro-F1 is (1, 0) at 0.9000." in f1
    assert no_answer(_data()) is None  # one meets it: the answer box says it
    # the words predict prints on the same file
    results = str(RESULTS / "sst2-tiny-grid-grouped.json")
    assert main(["predict", "--results", results, "--min-accuracy", "0.95"]) == 0
    assert (
        "no candidate meets the threshold 0.9500; the most accurate candidate is (1, 0) at 0.8463"
        in capsys.readouterr().out
    )


def test_a_failed_baseline_is_said_to_have_failed():
    failure = TrialRecord(
        task="sst2", n=1, sparsity=0.0, status=TrialStatus.FAILED, reason="RuntimeError: oom"
    )
    interrupted = TrialRecord(
        task="sst2", n=1, sparsity=0.0, status=TrialStatus.FAILED, reason=INTERRUPTED
    )
    observations = Observations(accuracy={}, throughput={}, failed=frozenset({BASELINE}))
    data = _data(observations=observations, records=[failure, interrupted, failure], table=None)
    assert data.missing() == [
        "the (1, 0) baseline failed to train 2 time(s), the last with 'RuntimeError: oom': "
        "accuracy budgets and speedups need it",
        "no (1, 0) throughput: speedups need it",
    ]
    assert "absolute accuracy budget 0.03 (no baseline: it failed)" in render(data)
    assert "no trained point yet" not in render(data)


def test_a_recorded_throughput_table_gone_is_named_in_a_note(searched, tmp_path):
    store = OptunaStore(searched, "s", GRID, "sst2")
    store.set_user_attr("throughput_table", str(tmp_path / "gone.json"))
    store.set_user_attr("precisions", ["fp32", "int8"])
    store.close()
    data = from_storage(searched, "s", None, None)
    assert data.notes == (
        f"the throughput table the search ranked by, {tmp_path / 'gone.json'}, is not on "
        "this machine "
        "(deleted, or on the machine that searched last): "
        "throughputs and speedups here are those timed inside each trial, beside whatever else "
        "ran, and int8 not ranked (only that table timed it), so the answer may differ from the "
        "search's; give --throughput FILE (autoprumux measure writes one)",
        "the search ranked by batch-1 latency, which this throughput table has none of: ranked "
        "by throughput",
    )
    assert data.objective is Objective.THROUGHPUT
    assert "<div class='warn'><b>Note:</b><ul><li>the throughput table the search" in render(data)
    assert from_storage(searched, "s", None, str(tmp_path / "t.json")).notes == ()


def test_a_copied_project_reports_its_own_table_and_models(searched, tmp_path):
    """The search recorded <studies>/throughput/… and <studies>/artifacts/<study> of the
    original project; a copy of the project (its database among them) reports by the copy's
    table and folders while the original's still exist, and by the recorded ones where the
    copy has none."""
    original, copy = tmp_path / "a" / "studies", tmp_path / "b" / "studies"
    for root in (original, copy):
        (root / "throughput").mkdir(parents=True)
        (root / "artifacts" / "s").mkdir(parents=True)
    shutil.copy(tmp_path / "s.db", copy / "s.db")
    url = f"sqlite:///{copy / 's.db'}"
    store = OptunaStore(url, "s", GRID, "sst2")
    store.set_user_attr("throughput_table", str(original / "throughput" / "t.json"))
    recorded = TrainCommand(
        study_path="s.toml", study_seed=0, artifacts_folder=str(original / "artifacts" / "s")
    )
    store.set_user_attr(TRAIN_COMMAND_ATTR, recorded.to_dict())
    store.close()
    faster = ThroughputTable({p: 2 * v for p, v in TABLE.throughput.items()})
    for root, table in ((original, TABLE), (copy, faster)):
        write_throughput_table(table, root / "throughput" / "t.json")
    data = from_storage(url, "s", None, None)
    assert data.table is not None and data.table.throughput == faster.throughput
    assert data.train is not None and data.train.artifacts_folder == str(copy / "artifacts" / "s")
    (copy / "throughput" / "t.json").unlink()
    shutil.rmtree(copy / "artifacts")
    data = from_storage(url, "s", None, None)  # the copy has none: the recorded ones
    assert data.table is not None and data.table.throughput == TABLE.throughput
    assert data.train is not None
    assert data.train.artifacts_folder == str(original / "artifacts" / "s")


def test_report_storage_without_a_study_name_names_the_option(searched, capsys):
    assert main(["report", "--storage", searched]) == 2
    assert capsys.readouterr().err == (
        "autoprumux: error: --study-name: is needed with --storage: the study to report "
        "(it holds: s)\n"
    )
    results = str(RESULTS / "sst2-tiny-grid-grouped.json")
    assert main(["report", "--storage", searched, "--results", results]) == 2
    assert "--results: give --results FILE or --storage URL, not both" in capsys.readouterr().err


def test_a_threshold_every_point_meets_is_said_to_be_one_once():
    """The header states the budget as predict does (Budget.describe), its note included."""
    loose = _data(budget=Budget(BudgetKind.ABSOLUTE, 0.95))  # baseline 0.90: threshold -0.05
    lead = header(loose, answer(loose))
    assert (
        "threshold -0.0500 (baseline 0.9000 - 0.95); every point meets it: the budget is as "
        "large as the baseline&#x27;s accuracy</p>"
    ) in lead
    assert lead.count("every point meets it") == 1
    assert "every point meets it" not in header(_data(), answer(_data()))
