"""The held-out test figure for real: the tiny random BERT on a CSV of its own with a test file.
A search scores its answer and every budget's trained top-3 on test once it has answered, in the
study's metric, as the model folder's own classifier would (checked against predictions counted
here); the figure is in the model folder, its card, the study's storage, the report, the text
and --json. And no decision reads it: a search whose test labels are all flipped trains the same
points in the same order, records the same figures and answers the same as one without a test
split, also when resumed over the figures the first run stored. trainers/trial/test_figures.py
scores a carved test split too."""

import csv
import dataclasses
import json
import random
from pathlib import Path

import pytest
from fixtures import sentence, study_text

from autoprumux.cli.main import main
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import TrialRecord, TrialStatus
from autoprumux.core.study import load_study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import write_throughput_table
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.report.sources import TEST_SCORES_ATTR
from trainers.deploy.inference import load_text_classifier
from trainers.deploy.model_folder import (
    CARD_FILE,
    INFO_FILE,
    ModelInfo,
    read_info,
    record_test_score,
)
from trainers.trial import test_figures
from trainers.trial.run import TrialSpec, run_trial
from trainers.trial.task_data import task_tables

LABELS = ("neg", "pos")
FLIPPED = {"neg": "pos", "pos": "neg"}
# what a run's timing and place decide, not its decisions: left out when two runs are compared
TIMING = ("throughput", "wall_time_s", "gpu_hours", "warmup_s", "teacher_s", "own_s", "node")


def labelled_rows(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Sentences whose label is their sentiment word, one in ten mislabelled: a learnable task
    whose figures are not all 1."""
    rows = []
    for _ in range(count):
        label = rng.randint(0, 1)
        gold = label if rng.random() >= 0.1 else 1 - label
        rows.append((sentence(rng, label), LABELS[gold]))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        writer.writerows(rows)


def own_data_study(
    folder: Path, model: Path, test: str | None, data: str = "", **training: object
) -> Path:
    """studies/reviews.toml: macro-F1 over train.csv and dev.csv, with test.csv as ``test``
    says: "clean", "flipped" (every label the other one) or None (no test split)."""
    rng = random.Random(0)
    studies = folder / "studies"
    studies.mkdir(parents=True)
    train, dev, tests = (labelled_rows(rng, k) for k in (256, 64, 100))
    write_csv(studies / "train.csv", train)
    write_csv(studies / "dev.csv", dev)
    own = 'train = "train.csv"\ndev = "dev.csv"\ntext = "review"\nlabel = "sentiment"\n' + data
    if test is not None:
        flip = FLIPPED if test == "flipped" else {label: label for label in LABELS}
        write_csv(studies / "test.csv", [(text, flip[label]) for text, label in tests])
        own += 'test = "test.csv"\n'
    text = study_text(model, folder, **training).replace('task = "sst2"\n', 'metric = "macro_f1"\n')
    text = text.replace(f'source = "glue_dir"\nglue_dir = "{folder}"\n', own)
    path = studies / "reviews.toml"
    path.write_text(text)
    return path


def macro_f1(gold: list[str], predicted: list[str]) -> float:
    """scikit-learn's f1_score(average="macro") over the labels present, written out."""
    scores = []
    for label in sorted(set(gold) | set(predicted)):
        hits = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * hits / (gold.count(label) + predicted.count(label)))
    return sum(scores) / len(scores)


def search(study: Path, capsys, *extra: str) -> dict:
    argv = ["search", "--study", str(study), "--budget", "0.03", "--executor", "local"]
    assert main([*argv, "--device", "cpu", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def stored(study_path: Path) -> tuple[list[tuple[int, TrialRecord]], dict]:
    """The study's records by trial number, and its attributes."""
    study = load_study(study_path)
    store = OptunaStore(study.storage_url, study.name, study.grid.grid, study.task)
    try:
        return store.records(), store.user_attrs()
    finally:
        store.close()


def decided(records: list[tuple[int, TrialRecord]]) -> list[tuple]:
    """What a search decided and measured, in trial order: every field but its timings, and
    the model folder by name (its cache key), not by the project it is in."""
    out = []
    for number, record in records:
        row = {k: v for k, v in record.to_row().items() if k not in TIMING}
        row["artifact_path"] = Path(row["artifact_path"]).name if row["artifact_path"] else None
        out.append((number, row))
    return out


@pytest.mark.slow  # four short searches of the tiny study: about 15 s on 2 cores
def test_no_decision_reads_the_test_split_and_the_answer_is_scored_on_it(
    tiny_sources, tmp_path, capsys
):
    model, _ = tiny_sources
    flipped = own_data_study(tmp_path / "flipped", model, "flipped")
    plain = own_data_study(tmp_path / "plain", model, None)
    # one throughput table for both (a measured one would differ in its timings), under which
    # the search trains (1, 0), stops (2, 0) early and trains (1, 0.5)
    speed = {(1, 0.0): 100.0, (1, 0.5): 150.0, (2, 0.0): 180.0, (2, 0.5): 400.0}
    table = write_throughput_table(
        ThroughputTable({GridPoint(*p): v for p, v in speed.items()}), tmp_path / "table.json"
    )
    # a first run capped at one training, then a resumed one over what the first stored
    first = search(flipped, capsys, "--max-trials", "1", "--throughput", str(table))
    assert first["test"]["points"] and stored(flipped)[1][TEST_SCORES_ATTR]
    flipped_end = search(flipped, capsys, "--throughput", str(table))
    plain_first = search(plain, capsys, "--max-trials", "1", "--throughput", str(table))
    plain_end = search(plain, capsys, "--throughput", str(table))

    # no decision read the garbage: the same trainings in the same order, the same figures,
    # the same model folders (cache keys), the same answers and top-k, at both steps
    (flipped_records, attrs), (plain_records, plain_attrs) = stored(flipped), stored(plain)
    statuses = [r.status for _, r in flipped_records]
    assert statuses == [TrialStatus.COMPLETE, TrialStatus.STOPPED, TrialStatus.COMPLETE]
    assert decided(flipped_records) == decided(plain_records)
    for held, without in ((first, plain_first), (flipped_end, plain_end)):
        assert held["best"]["n"] == without["best"]["n"]
        assert held["best"]["sparsity"] == without["best"]["sparsity"]
        ranked = [
            {k: r[k] for k in ("n", "sparsity", "accuracy")}
            for r in held["decision"]["recommendations"]
        ]
        assert ranked == [
            {k: r[k] for k in ("n", "sparsity", "accuracy")}
            for r in without["decision"]["recommendations"]
        ]
        assert without["test"] is None
    assert TEST_SCORES_ATTR not in plain_attrs
    assert attrs["labels"] == plain_attrs["labels"] == ["neg", "pos"]  # the study's labels

    # the answer and the scored top-3s: each figure is macro-F1 of the folder's own predictions
    # on test.csv (every label flipped: far under dev), in the folder, its card and the storage
    test = flipped_end["test"]
    assert test["metric"] == "macro_f1" and test["metric_label"] == "macro-F1"
    answer = next(p for p in test["points"] if p["answer"])
    assert (answer["n"], answer["sparsity"]) == (
        flipped_end["best"]["n"],
        flipped_end["best"]["sparsity"],
    )
    with (flipped.parent / "test.csv").open() as f:
        rows = list(csv.DictReader(f))
    texts, gold = [r["review"] for r in rows], [r["sentiment"] for r in rows]
    records = dict(flipped_records)
    for point in test["points"]:
        grid_point = GridPoint(point["n"], point["sparsity"])
        (folder,) = {
            r.artifact_path for r in records.values() if r.point == grid_point and r.artifact_path
        }
        info = read_info(Path(folder))
        assert point["examples"] == info.test_examples == 100
        assert point["test"] == info.test_score
        assert point["dev"] == info.dev_accuracy
        if grid_point.n == 1:  # one example a forward pass: the classifier's exact predictions
            predicted = [p.label for p in load_text_classifier(folder, "cpu").predict(texts)]
            assert point["test"] == pytest.approx(macro_f1(gold, predicted), abs=1e-12)
        card = (Path(folder) / CARD_FILE).read_text()
        row = f"| test macro-F1 | {info.test_score:.4f} on 100 held-out test examples"
        assert f"{row} (what to expect) |" in card
        expected = {"score": point["test"], "examples": 100, "dev": point["dev"]}
        assert attrs[TEST_SCORES_ATTR][str(grid_point)] == expected
        # the search's table at its (N, s), in the folder and on its card (fp32 only here)
        (speed_of,) = info.speeds.values()
        assert list(info.speeds) == ["fp32"] and str(table) in speed_of.table
        assert speed_of.throughput == speed[grid_point.n, grid_point.sparsity]
        assert f"| {speed_of.throughput:,.1f} | not timed |" in card
    assert answer["test"] < answer["dev"] - 0.5  # the flipped labels, measured as they are
    # the report, beside dev
    html = (flipped.parents[1] / "reports" / "reviews.html").read_text()
    assert "<th>dev macro-F1</th><th>test macro-F1</th>" in html
    assert f"test {answer['test']:.4f} on 100 held-out examples (what to expect)" in html


def test_the_figure_is_written_into_the_folder_and_its_card(tmp_path):
    info = ModelInfo(
        task="reviews",
        labels=LABELS,
        text_columns=("review",),
        label_column="sentiment",
        max_length=16,
        n=1,
        sparsity=0.0,
        achieved_sparsity=0.0,
        parameters=100,
        dev_accuracy=0.8312,
        dev_examples=500,
        metric="macro_f1",
        throughput=None,
        throughput_device="cpu",
        study="reviews",
        study_file="",
        recipe="r",
        base_model="m",
        teacher=None,
        seed=0,
    )
    older = {k: v for k, v in info.to_json().items() if k not in ("test_score", "test_examples")}
    (tmp_path / INFO_FILE).write_text(json.dumps(older))  # described before test figures
    assert read_info(tmp_path) == info and info.test_score is None
    written = record_test_score(tmp_path, 0.819, 1000)
    assert written == dataclasses.replace(info, test_score=0.819, test_examples=1000)
    assert read_info(tmp_path) == written
    card = (tmp_path / CARD_FILE).read_text()
    assert (
        "| dev macro-F1 | 0.8312 on the first 500 dev examples (what the choice was made on) |\n"
        "| test macro-F1 | 0.8190 on 1,000 held-out test examples (what to expect) |\n"
    ) in card
    assert "## Figures (recorded by its trial; test by its search, once it had answered)" in card


def test_a_carved_test_split_is_scored_as_the_classifier_predicts_it(tiny_sources, tmp_path):
    model, _ = tiny_sources
    path = own_data_study(tmp_path, model, None, data="test_fraction = 0.2\n")
    study = load_study(path)
    result = run_trial(TrialSpec(study=study, n=1, sparsity=0.0, device="cpu"))
    assert result.reason is None
    folder = Path(result.artifact_path)
    figures = test_figures.score_held_out(study, {GridPoint(1, 0.0): folder}, "cpu", lambda _: None)
    carved = task_tables(study).test
    assert carved is not None and carved.num_rows == 51  # round(0.2 x 256 rows)
    texts, ids = carved["text"].to_pylist(), carved["label"].to_pylist()
    predicted = [p.label for p in load_text_classifier(folder, "cpu").predict(texts)]
    expected = macro_f1([LABELS[i] for i in ids], predicted)
    figure = figures[GridPoint(1, 0.0)]
    assert figure.score == pytest.approx(expected, abs=1e-12) and figure.examples == 51
    assert len(set(predicted)) == 2  # it learned: a classifier of one label would check little
    assert figure.dev == result.accuracy
    assert read_info(folder).test_score == figure.score
