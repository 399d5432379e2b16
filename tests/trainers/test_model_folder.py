"""The model folder's description (autoprumux.json) and card name the metric the model was
chosen by, and list its figures per precision; a folder written before metrics reads as
accuracy; described again, a folder keeps the figures recorded since, and two processes
recording into it lose nothing (no torch: seconds)."""

import json
from pathlib import Path

import pytest

from trainers.deploy.model_folder import (
    INFO_FILE,
    ModelInfo,
    NotAModelError,
    PrecisionScore,
    TableSpeed,
    model_card,
    read_info,
)


def info(**fields):
    values = {
        "task": "reviews",
        "labels": ("neg", "neutral", "pos"),
        "text_columns": ("review",),
        "label_column": "sentiment",
        "max_length": 64,
        "n": 2,
        "sparsity": 0.5,
        "achieved_sparsity": 0.49,
        "parameters": 1000,
        "dev_accuracy": 0.8123,
        "dev_examples": 500,
        "throughput": 1234.5,
        "throughput_device": "cpu",
        "study": "reviews",
        "study_file": "studies/reviews.toml",
        "recipe": "abc123",
        "base_model": "tiny",
        "teacher": None,
        "seed": 42,
        **fields,
    }
    return ModelInfo(**values)


def test_the_metric_round_trips_through_autoprumux_json(tmp_path):
    written = info(metric="f1", positive_label="pos")
    (tmp_path / INFO_FILE).write_text(json.dumps(written.to_json()))
    read = read_info(tmp_path)
    assert read == written
    assert (read.metric, read.metric_label, read.positive_id) == ("f1", "F1 of 'pos'", 2)


def test_a_folder_from_before_metrics_is_an_accuracy_folder(tmp_path):
    older = info().to_json()
    del older["metric"], older["positive_label"]
    (tmp_path / INFO_FILE).write_text(json.dumps(older))
    read = read_info(tmp_path)
    assert (read.metric, read.positive_label, read.metric_label) == ("accuracy", "", "accuracy")
    assert read.positive_id == 1  # no positive label: the second


def test_an_unknown_metric_or_a_missing_field_is_refused(tmp_path):
    bad = {**info().to_json(), "metric": "auc"}
    (tmp_path / INFO_FILE).write_text(json.dumps(bad))
    with pytest.raises(NotAModelError, match="metric 'auc' is not one of: accuracy, f1"):
        read_info(tmp_path)
    lacking = info().to_json()
    del lacking["dev_accuracy"]
    (tmp_path / INFO_FILE).write_text(json.dumps(lacking))
    with pytest.raises(NotAModelError, match="lacks dev_accuracy"):
        read_info(tmp_path)


def test_the_card_names_the_metric_of_its_dev_figure():
    card = model_card(info(metric="macro_f1"))
    assert "| dev macro-F1 | 0.8123 on the first 500 dev examples |" in card
    assert "| dev accuracy | 0.8123 on the first 500 dev examples |" in model_card(info())


def test_the_card_lists_each_precisions_dev_figure_and_table_speed(tmp_path):
    """int8 evaluated after training and both precisions timed by the search's table: one row
    each, fp32's dev figure the trial's own, its delta and speed beside it."""
    table = "the throughput table t.json (every point timed in one run, round robin: cpu)"
    written = info(
        precisions={
            "int8": PrecisionScore(
                dev=0.8050, dev_examples=500, runtime="onnxruntime-cpu", recipe="dynamic"
            )
        },
        speeds={
            "fp32": TableSpeed(throughput=1200.0, latency_s=0.004, table=table),
            "int8": TableSpeed(throughput=2045.25, latency_s=None, table=table),
        },
    )
    (tmp_path / INFO_FILE).write_text(json.dumps(written.to_json()))
    assert read_info(tmp_path) == written  # round trip
    card = model_card(written)
    rows = [line for line in card.splitlines() if line.startswith(("| fp32 |", "| int8 |"))]
    assert rows == [
        "| fp32 | torch (its trial) | 0.8123 on the first 500 dev examples |  | 1,200.0 | "
        "4.00 ms |",
        "| int8 | onnxruntime-cpu (dynamic) | 0.8050 on the first 500 dev examples | -0.73 "
        "points | 2,045.2 | not timed |",
    ]
    assert f"examples/s and latency: {table}." in card
    # a folder from before speeds reads with none, and its card has no speed column filled
    older = written.to_json()
    del older["speeds"]
    (tmp_path / INFO_FILE).write_text(json.dumps(older))
    assert read_info(tmp_path).speeds == {}
    bad = {**written.to_json(), "speeds": {"int8": {"throughput": 1.0}}}
    (tmp_path / INFO_FILE).write_text(json.dumps(bad))
    with pytest.raises(NotAModelError, match="holds throughput, latency_s and table"):
        read_info(tmp_path)


def _precision_table(card: str) -> list[str]:
    """The lines of the card's Precisions table: its header, its rule and its rows."""
    section = card.split("## Precisions", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def _cells(line: str) -> int:
    return len(line.strip().removeprefix("|").removesuffix("|").split("|"))


@pytest.mark.parametrize(
    "speeds",
    [
        {},  # evaluated, never timed: both speed cells empty
        {"int8": TableSpeed(throughput=2045.25, latency_s=None, table="t.json")},  # fp32 not
    ],
    ids=["no-speeds", "int8-timed-only"],
)
def test_every_row_of_the_precisions_table_has_as_many_cells_as_its_header(speeds):
    """A precision the throughput table has no speed for still gets its two speed cells,
    empty: every row has the header's 6 cells."""
    int8 = PrecisionScore(dev=0.8050, dev_examples=500, runtime="onnxruntime-cpu", recipe="dynamic")
    header, rule, *rows = _precision_table(
        model_card(info(precisions={"int8": int8}, speeds=speeds))
    )
    assert _cells(header) == _cells(rule) == 6
    assert len(rows) == 2 and [_cells(row) for row in rows] == [6, 6]


def test_a_static_int8_model_is_recorded_at_its_own_speed_or_said_to_be_timed_as_dynamic(
    tmp_path,
):
    """The table times int8 by dynamic quantization. Where a model's int8 fell back to static
    QDQ and that file was timed against dynamic (RecipeSpeed), the search's table scales its
    row, and the folder records the scaled figures; a static file never timed (an older
    release's) keeps dynamic's, and its card and the search's answer say so."""
    from autoprumux.core.grid import GridPoint
    from autoprumux.core.precision import Precision
    from autoprumux.core.records import RecipeSpeed
    from autoprumux.core.throughput import ThroughputTable
    from autoprumux.session.search_session import record_table_speeds

    static = "static QDQ, in fp32: encoder.layers.0.ffn.down"
    untimed, timed = tmp_path / "untimed", tmp_path / "timed"
    speed = RecipeSpeed(throughput=0.75, latency=1.5)  # static: 3/4 the examples/s
    for folder, ratio in ((untimed, None), (timed, speed)):
        folder.mkdir()
        (folder / INFO_FILE).write_text(json.dumps(info(
            precisions={"int8": PrecisionScore(
                dev=0.81, dev_examples=500, runtime="onnxruntime-cpu", recipe=static,
                speed=ratio)},
        ).to_json()))  # fmt: skip
    rows = {GridPoint(1, 0.0): 100.0, GridPoint(2, 0.5): 300.0}
    rows |= {p.served(Precision.INT8): 2 * v for p, v in rows.items()}
    latency = {GridPoint(2, 0.5, Precision.INT8): 0.002}
    table = ThroughputTable(rows, source="t.json", latency=latency)
    said: list[str] = []
    record_table_speeds({GridPoint(2, 0.5): untimed}, table, said.append)
    recorded = read_info(untimed)
    assert {k: v.throughput for k, v in recorded.speeds.items()} == {"fp32": 300.0, "int8": 600.0}
    assert recorded.speeds["int8"].latency_s == 0.002 and recorded.speeds["fp32"].latency_s is None
    card = (untimed / "README.md").read_text()
    assert "| 600.0 (timed as dynamic int8) | 2.00 ms (timed as dynamic int8) |" in card
    (note,) = said
    assert note.startswith(f"note: (2, 0.5) in int8 was made by {static}")
    assert "its speed against dynamic int8 was not measured" in note
    # the timed one: the search scales its row (600 x 0.75 examples/s, 2 ms x 1.5), no note
    scaled = table.with_recipe_speeds({GridPoint(2, 0.5, Precision.INT8): speed})
    said.clear()
    record_table_speeds({GridPoint(2, 0.5): timed}, scaled, said.append)
    recorded = read_info(timed)
    assert recorded.precisions["int8"].speed == speed
    assert recorded.speeds["int8"].throughput == 450.0
    assert recorded.speeds["int8"].latency_s == pytest.approx(0.003)
    assert said == []
    card = (timed / "README.md").read_text()
    assert "| 450.0 | 3.00 ms |" in card and "timed as dynamic" not in card
    assert "(2, 0.5, int8) scaled to the static int8 file its model is served by" in card


class SavedTokenizer:
    """What describe asks of a tokenizer: that it saves its files into a folder."""

    def save_pretrained(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "vocab.txt").write_text("[PAD]\n[CLS]\n")


def test_describing_a_folder_again_keeps_the_figures_added_since(tmp_path):
    # a reused artifact is re-described by every rerun of its trial: its weights are the same,
    # so the figures per precision, the table's speeds and the test figure recorded since stay
    from trainers.deploy.model_folder import (
        describe,
        record_precisions,
        record_speeds,
        record_test_score,
    )

    describe(tmp_path, info(), SavedTokenizer())
    int8 = PrecisionScore(dev=0.80, dev_examples=500, runtime="onnxruntime-cpu", recipe="dynamic")
    record_precisions(tmp_path, {"int8": int8})
    speed = TableSpeed(throughput=900.0, latency_s=0.002, table="t.json")
    record_speeds(tmp_path, {"fp32": speed})
    record_test_score(tmp_path, 0.79, 1821)
    rerun = info(throughput=1300.0)  # the rerun's own timing of the same weights
    describe(tmp_path, rerun, SavedTokenizer())
    described = read_info(tmp_path)
    assert described.throughput == 1300.0
    assert described.precisions == {"int8": int8} and described.speeds == {"fp32": speed}
    assert (described.test_score, described.test_examples) == (0.79, 1821)
    assert (tmp_path / "vocab.txt").read_text() == "[PAD]\n[CLS]\n"
    # what the new description holds wins over what was recorded
    again = PrecisionScore(dev=0.81, dev_examples=872, runtime="onnxruntime-cpu", recipe="dynamic")
    describe(tmp_path, info(precisions={"int8": again}), SavedTokenizer())
    assert read_info(tmp_path).precisions == {"int8": again}


RECORDER = """
import sys, time
from pathlib import Path
from trainers.deploy.model_folder import PrecisionScore, record_precisions, record_test_score
folder, name, count, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))  # both recorders begin at the same instant
for i in range(count):
    score = PrecisionScore(dev=i / 100, dev_examples=100, runtime=name)
    record_precisions(folder, {f"{name}{i}": score})
    record_test_score(folder, i / 100, 10)
"""


def test_two_processes_recording_into_one_folder_lose_nothing(tmp_path):
    # a search records speeds and test figures while an export records a precision: each is a
    # read, change and rewrite of autoprumux.json; unlocked, one process's rewrite from an
    # older read drops what the other recorded meanwhile
    import subprocess
    import sys
    import time

    (tmp_path / INFO_FILE).write_text(json.dumps(info().to_json()))
    start, count = time.time() + 2.0, 40
    recorders = [
        subprocess.Popen(
            [sys.executable, "-c", RECORDER, str(tmp_path), name, str(count), str(start)]
        )
        for name in ("a", "b")
    ]
    assert [r.wait(timeout=120) for r in recorders] == [0, 0]
    recorded = read_info(tmp_path)
    assert set(recorded.precisions) == {f"{n}{i}" for n in "ab" for i in range(count)}
    assert recorded.test_score == (count - 1) / 100 and recorded.test_examples == 10
    assert "| b39 | b |" in (tmp_path / "README.md").read_text()


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    import errno

    import trainers.deploy.model_folder as model_folder
    from autoprumux.core.errors import DataError

    (tmp_path / INFO_FILE).write_text(json.dumps(info().to_json()))

    def read_only(path, text):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(model_folder, "write_text_atomic", read_only)
    with pytest.raises(DataError) as raised:
        model_folder.record_test_score(tmp_path, 0.8, 100)
    assert str(raised.value) == (
        f"{tmp_path / INFO_FILE}: cannot be written: Read-only file system"
    )
    assert read_info(tmp_path) == info()  # nothing half-written
