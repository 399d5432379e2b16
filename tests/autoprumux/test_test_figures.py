"""The held-out test figure, without training: no decision can see one (the records hold no test
field; the driver, the proposer, the recommender, early stopping and the trial never reach the
test evaluation or the stored figures), the text, --json and report that show them beside dev,
the stored form, and a replayed search, which has no model folders to score.
tests/trainers/test_test_figures.py runs real searches with a test split."""

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.early_stop import StopEvidence, StopRule
from autoprumux.core.errors import DataError
from autoprumux.core.grid import BASELINE, Grid
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.metrics import Metric
from autoprumux.core.recommender import Decision, Recommendation
from autoprumux.core.records import HeldOutScore, Observations, Training, TrialRecord
from autoprumux.core.study import DataSection, Study, StudySection
from autoprumux.core.throughput import ThroughputTable
from autoprumux.loop.proposer import SearchState
from autoprumux.report.data import ReportInput, points_to_score, recommendations
from autoprumux.report.data import answer as report_answer
from autoprumux.report.html import answer_box, recommendations_table, render
from autoprumux.report.sources import (
    TEST_SCORES_ATTR,
    from_storage,
    held_out_attr,
    stored_test_scores,
)
from autoprumux.session.search_session import has_test_split
from autoprumux.session.summary import HeldOut, held_out_dict, held_out_lines

ROOT = Path(__file__).resolve().parents[2]

# -- no decision can see a test figure --------------------------------------------------------

# what a search decides with: the records and observations, the proposer's state, the stop rule
# and its evidence, the recommender's decision
DECIDING_RECORDS = (
    TrialRecord,
    Training,
    Observations,
    SearchState,
    StopRule,
    StopEvidence,
    Decision,
    Recommendation,
)


@pytest.mark.parametrize("record", DECIDING_RECORDS, ids=lambda r: r.__name__)
def test_what_decides_has_no_test_field(record):
    assert [f.name for f in dataclasses.fields(record) if "test" in f.name] == []


# the modules that decide: the search's driver and local executor and the study it reads, the
# proposer, the recommender, early stopping, and the trainers that answer a training (a trial's
# dev checks), with everything they import
DECIDERS = (
    "autoprumux.loop.driver",
    "autoprumux.loop.optuna_store",  # the study the driver reads (StudyStore.snapshot)
    "autoprumux.loop.proposer",
    "autoprumux.core.recommender",
    "autoprumux.core.early_stop",
    "autoprumux.loop.trial_sources",
    "autoprumux.loop.ray_executor",
    "trainers.trial.run",
)
# names that read a test split or a test figure: the test data, the evaluation, the stored
# figures and a model folder's figure
TEST_NAMES = {
    "test_data",
    "test_figures",
    "score_held_out",
    "TEST_SCORES_ATTR",
    "test_score",
    "record_test_score",
}
# the one module in reach that names one: the model folder, which writes test_score into the
# card (trainers.trial.task_data defines test_data, and reads no test split itself)
DEFINED_IN = {"trainers.deploy.model_folder"}


def project_modules() -> dict[str, Path]:
    found = {}
    for top in ("autoprumux", "trainers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported(tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """The project modules a module imports, anywhere in it (also inside functions)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n in known}


def reach(starts: tuple[str, ...]) -> dict[str, ast.AST]:
    """Every project module the ``starts`` import, transitively, parsed."""
    known = project_modules()
    trees: dict[str, ast.AST] = {}
    todo = list(starts)
    while todo:
        name = todo.pop()
        if name in trees:
            continue
        trees[name] = ast.parse(known[name].read_text())
        todo += imported(trees[name], known) - trees.keys()
    return trees


def names_read(tree: ast.AST) -> set[str]:
    """The test names a module reads: as a name, an attribute, an imported name or a string."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.alias):
            used.add(node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used.add(node.value)
    return used & TEST_NAMES


def test_no_decider_reaches_the_test_evaluation_or_the_stored_figures():
    trees = reach(DECIDERS)
    assert "trainers.trial.run" in trees and "autoprumux.core.recommender" in trees
    # the evaluation, and the session and report that hold the figures, are out of reach
    assert "trainers.trial.test_figures" not in trees
    assert not [m for m in trees if m.startswith(("autoprumux.session", "autoprumux.report"))]
    readers = {m: names_read(t) for m, t in trees.items() if m not in DEFINED_IN}
    assert {m: names for m, names in readers.items() if names} == {}


def test_the_name_check_sees_a_reader():
    # the check above is not blind: the session, which scores the test split, is caught
    tree = ast.parse((ROOT / "autoprumux/session/search_session.py").read_text())
    assert {"score_held_out", "TEST_SCORES_ATTR"} <= names_read(tree)


# -- which studies hold out a test split -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "held_out"),
    [
        ({}, False),  # a GLUE preset
        ({"test_fraction": 0.2}, True),  # carved from train
        ({"train": "t.csv", "text": "x", "label": "y"}, False),
        ({"train": "t.csv", "test": "test.csv", "text": "x", "label": "y"}, True),
    ],
)
def test_a_study_holds_out_a_test_split_given_or_carved(tmp_path, data, held_out):
    task = "" if "train" in data else "sst2"  # a study of its own data names no preset
    study = Study(study=StudySection(task=task), data=DataSection(**data), path=tmp_path / "s")
    assert has_test_split(study) is held_out


# -- shown beside dev ----------------------------------------------------------------------------

HELD = HeldOut(
    scores={
        BASELINE: HeldOutScore(score=0.84, examples=1000, dev=0.85),
        P(2, 0.5): HeldOutScore(score=0.81897, examples=1000, dev=0.83124),
    },
    answer=P(2, 0.5),
    notes=("(4, 0.7) is predicted, not trained: there is no model to score",),
)


def test_the_text_puts_test_beside_dev():
    assert held_out_lines(HELD, "macro-F1") == [
        "held-out test (dev: what the choice was made on; test: what to expect):",
        "answer (2, 0.5): dev macro-F1 0.8312, test 0.8190 on 1,000 held-out examples",
        "top-3 (1, 0): dev macro-F1 0.8500, test 0.8400 on 1,000 held-out examples",
        "not tested: (4, 0.7) is predicted, not trained: there is no model to score",
    ]


def test_the_json_names_the_metric_and_each_points_dev_and_test():
    document = held_out_dict(HELD, Metric.F1, "pos")
    assert document == {
        "metric": "f1",
        "metric_label": "F1 of 'pos'",
        "points": [
            {
                "n": 2,
                "sparsity": 0.5,
                "precision": "fp32",
                "answer": True,
                "dev": 0.83124,
                "test": 0.81897,
                "examples": 1000,
            },
            {
                "n": 1,
                "sparsity": 0.0,
                "precision": "fp32",
                "answer": False,
                "dev": 0.85,
                "test": 0.84,
                "examples": 1000,
            },
        ],
        "notes": ["(4, 0.7) is predicted, not trained: there is no model to score"],
    }
    json.dumps(document)  # plain values only


GRID = Grid((1, 2), (0.0, 0.5))
ACCURACY = {BASELINE: 0.90, P(1, 0.5): 0.88, P(2, 0.0): 0.87, P(2, 0.5): 0.84}
SPEED = {BASELINE: 100.0, P(1, 0.5): 250.0, P(2, 0.0): 190.0, P(2, 0.5): 480.0}


def report_data(**fields):
    return ReportInput(
        title="reviews",
        task="reviews",
        grid=GRID,
        budget=Budget(BudgetKind.ABSOLUTE, 0.03),
        observations=Observations(accuracy=dict(ACCURACY), throughput=dict(SPEED)),
        table=ThroughputTable(SPEED),
        metric=Metric.MACRO_F1,
        **fields,
    )


def test_the_points_to_score_are_the_answer_and_every_budgets_trained_top_k():
    # top-1 per budget 0 .. 10%: (1, 0) up to 1.5 points, (1, 0.5) (0.88, 250/s) from 2 to 5.5,
    # (2, 0.5) (0.84, 480/s) from 6; (2, 0) is never a top-1
    assert points_to_score(report_data(), None, top_k=1) == [BASELINE, P(1, 0.5), P(2, 0.5)]
    assert points_to_score(report_data(), P(2, 0.0), top_k=1) == sorted(ACCURACY)
    every = {i["point"] for row in recommendations(report_data()) for i in row.top}
    assert points_to_score(report_data(), None) == sorted(every)


def test_a_predicted_point_of_a_top_k_is_not_tested():
    # (1, 0.5) untrained, between (1, 0) and (1, 0.6): predicted 0.8667, a top-3 from 3.5 points
    grid = Grid((1, 2), (0.0, 0.5, 0.6))
    accuracy = {BASELINE: 0.90, P(2, 0.0): 0.87, P(2, 0.5): 0.84, P(1, 0.6): 0.86}
    speed = {**SPEED, P(1, 0.6): 300.0, P(2, 0.6): 560.0}
    data = dataclasses.replace(
        report_data(),
        grid=grid,
        observations=Observations(accuracy=accuracy, throughput={p: speed[p] for p in accuracy}),
        table=ThroughputTable(speed),
    )
    tops = {(i["point"], i["accuracy_measured"]) for r in recommendations(data) for i in r.top}
    assert (P(1, 0.5), False) in tops
    assert points_to_score(data, None) == [BASELINE, P(1, 0.6), P(2, 0.0), P(2, 0.5)]


def test_the_report_shows_test_beside_dev_where_figures_exist():
    scores = {P(1, 0.5): HeldOutScore(score=0.8612, examples=1000, dev=0.88)}
    data = report_data(test_scores=scores)
    table = recommendations_table(data, recommendations(data))
    assert "<th>dev macro-F1</th><th>test macro-F1</th>" in table
    assert "dev macro-F1: what the choice was made on; test macro-F1: what to expect" in table
    # the requested budget's top-3: (1, 0.5) tested, (2, 0) and (1, 0) not
    assert "<td>(1, 0.5)</td><td>0.8800 (measured)</td><td>0.8612</td>" in table
    assert "<td>(2, 0)</td><td>0.8700 (measured)</td><td>-</td>" in table
    top = report_answer(data)
    assert top is not None and top.point == P(1, 0.5)
    box = answer_box(top, data.metric_label, scores[top.point])
    assert (
        "at dev macro-F1 0.8800 (threshold 0.8700; what the choice was made on), test 0.8612 "
        "on 1,000 held-out examples (what to expect)."
    ) in box
    assert "test 0.8612 on 1,000 held-out examples" in render(data)


def test_without_test_figures_the_report_shows_dev_alone():
    data = report_data()
    table = recommendations_table(data, recommendations(data))
    assert "test" not in table and "<th>macro-F1</th>" in table
    top = report_answer(data)
    assert top is not None
    assert "at measured macro-F1 0.8800 (threshold 0.8700)." in answer_box(top, "macro-F1")


# -- stored in the study ---------------------------------------------------------------------


def test_the_stored_form_round_trips_and_is_checked():
    scores = {
        P(2, 0.5): HeldOutScore(score=0.81, examples=1000, dev=0.83),
        BASELINE: HeldOutScore(score=0.84, examples=1000, dev=0.86),
    }
    stored = held_out_attr(scores)
    assert stored == {
        "(1, 0)": {"score": 0.84, "examples": 1000, "dev": 0.86},
        "(2, 0.5)": {"score": 0.81, "examples": 1000, "dev": 0.83},
    }
    assert stored_test_scores({TEST_SCORES_ATTR: json.loads(json.dumps(stored))}, "s") == scores
    assert stored_test_scores({}, "s") == {}  # a study without a test split, or an older one
    with pytest.raises(DataError, match="^study 's': holds a test figure 'best' autoprumux"):
        stored_test_scores({TEST_SCORES_ATTR: {"best": {"score": 1.0}}}, "study 's'")


def test_autoprumux_report_reads_the_stored_figures(tmp_path):
    from autoprumux.loop.optuna_store import OptunaStore

    url = f"sqlite:///{tmp_path / 's.db'}"
    store = OptunaStore(url, "s", GRID, "sst2")
    stored = {"(1, 0.5)": {"score": 0.8612, "examples": 1000, "dev": 0.88}}
    store.set_user_attr(TEST_SCORES_ATTR, stored)
    store.close()
    report = from_storage(url, "s", Budget(BudgetKind.ABSOLUTE, 0.03), None)
    assert report.test_scores == {P(1, 0.5): HeldOutScore(score=0.8612, examples=1000, dev=0.88)}


# -- a replayed search -------------------------------------------------------------------------

STUDY = ROOT / "studies" / "sst2-tiny.toml"
REPLAY = ROOT / "studies" / "results" / "sst2-tiny-grid-grouped.json"
THROUGHPUT = ROOT / "studies" / "throughput" / "sst2-tiny-cpu-float32.json"


def replay_search(folder: Path, capsys, extra_data: str = "") -> dict:
    study = folder / "studies" / STUDY.name
    study.parent.mkdir(parents=True)
    shutil.copy(STUDY, study)
    if extra_data:
        study.write_text(study.read_text().replace("[data]\n", f"[data]\n{extra_data}\n"))
    argv = ["search", "--study", str(study), "--budget", "0.03", "--executor", "local"]
    argv += ["--trainer", f"replay:{REPLAY}", "--throughput", str(THROUGHPUT), "--json"]
    argv += ["--storage", f"sqlite:///{folder / 's.db'}"]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_replayed_search_has_no_model_folders_to_score(tmp_path, capsys):
    plain = replay_search(tmp_path / "plain", capsys)
    assert plain["test"] is None  # no test split: nothing said
    held = replay_search(tmp_path / "held", capsys, "test_fraction = 0.1")
    assert held["test"] == {
        "metric": "accuracy",
        "metric_label": "accuracy",
        "points": [],
        "notes": ["a replayed search (--trainer replay:FILE) has no model folders to score"],
    }
    # the same search otherwise: the answer and the top-k
    assert held["best"]["model"] == plain["best"]["model"] == "not_saved"
    assert (held["best"]["n"], held["best"]["sparsity"]) == (
        plain["best"]["n"],
        plain["best"]["sparsity"],
    )
    assert held["decision"]["recommendations"] == plain["decision"]["recommendations"]
