"""``autoprumux classify`` on a table whose gold column is partly or wholly empty: the rows
without a label are classified unlabelled, the metric is on the labelled ones and says how many
it counted, a column without any label gives none; a label that is there but unknown is still
refused. And a CSV record over several lines is named by the line it starts on."""

from __future__ import annotations

import json

import pytest

from autoprumux.cli.classify_io import InputError, InputSpec, gold_score, read_inputs
from autoprumux.cli.main import main
from autoprumux.core.metrics import Metric

SST2 = InputSpec(text_columns=("sentence",), label_column="label", labels=("negative", "positive"))


def test_an_empty_or_null_label_is_an_unlabelled_row_out_of_the_metric(tmp_path):
    csv = tmp_path / "in.csv"
    csv.write_text("sentence,label\ngood movie,\ndull,0\nwarm,1\nflat, \nfine,1\n")
    inputs = read_inputs(str(csv), SST2)
    assert inputs.gold == (None, 0, 1, None, 1) and inputs.labelled == 3
    # predicted: right on dull (0) and warm (1), wrong on fine (1): 2 of the 3 labelled
    predicted = ["positive", "negative", "positive", "negative", "negative"]
    graded = gold_score(inputs, predicted, SST2.labels)
    assert graded is not None and graded.accuracy == pytest.approx(2 / 3)
    assert (graded.labelled, graded.inputs) == (3, 5)
    assert graded.describe("label") == (
        "accuracy 0.6667 against column 'label' on its 3 labelled inputs of 5"
    )
    # MCC on [[1, 0], [1, 1]] ([gold][predicted]): TP 1, TN 1, FP 0, FN 1:
    # (1*1 - 0*1) / sqrt((1+0) (1+1) (1+0) (1+1)) = 0.5
    mcc = gold_score(inputs, predicted, SST2.labels, Metric.MATTHEWS)
    assert mcc is not None and mcc.value == pytest.approx(0.5)
    jsonl = tmp_path / "in.jsonl"
    rows = [{"sentence": "good movie", "label": None}, {"sentence": "dull", "label": 0}]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert read_inputs(str(jsonl), SST2).gold == (None, 0)


def test_a_label_column_without_any_label_gives_no_metric(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("sentence,label\ngood movie,\n")
    inputs = read_inputs(str(path), SST2)
    assert inputs.gold == (None,) and inputs.label_column == "label" and inputs.labelled == 0
    assert gold_score(inputs, ["positive"], SST2.labels) is None


def test_a_label_that_is_there_but_unknown_is_still_refused(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("sentence,label\ngood movie,\ndull,maybe\n")
    with pytest.raises(InputError) as raised:
        read_inputs(str(path), SST2)
    assert str(raised.value) == (
        f"{path}: line 3: label 'maybe' in column 'label' is not one of: negative, positive "
        "(or 0..1)"
    )


def test_a_csv_record_over_several_lines_is_named_by_the_line_it_starts_on(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('sentence,label\ndull,0\n"a film\nin two lines",maybe\nwarm,1\n')
    with pytest.raises(InputError) as raised:
        read_inputs(str(path), SST2)
    assert str(raised.value).startswith(f"{path}: line 3: label 'maybe' ")
    path.write_text('sentence,label\n"a film\nin two lines",1\nwarm,1,x\n')
    with pytest.raises(InputError) as raised:
        read_inputs(str(path), SST2)
    assert str(raised.value) == f"{path}: line 4: 3 field(s), the header names 2"
    path.write_text('sentence,label\n"a film\n\nin three lines",1\nwarm,1\n')
    assert read_inputs(str(path), SST2).lines == (2, 5)


class _Positive:
    """A model that says "positive" of everything (classify's CLI around it is what is tested)."""

    def __init__(self) -> None:
        from trainers.deploy.model_folder import ModelInfo

        self.source, self.precision = "stub", "fp32"
        self.info = ModelInfo(
            task="sst2", labels=SST2.labels, text_columns=("sentence",), label_column="label",
            max_length=16, n=1, sparsity=0.0, achieved_sparsity=0.0, parameters=10,
            dev_accuracy=0.7, dev_examples=6, throughput=None, throughput_device="cpu",
            study="sst2", study_file="", recipe="r", base_model="m", teacher=None, seed=1,
        )  # fmt: skip

    def classify(self, texts, batch, progress=None):  # type: ignore[no-untyped-def]
        from trainers.deploy.inference import Classified, PredictedLabel

        positive = PredictedLabel(label="positive", probabilities={"negative": 0, "positive": 1})
        return Classified(
            predictions=(positive,) * len(texts), seconds=1.0, model_seconds=0.5, truncated=0
        )


@pytest.fixture
def stub_model(monkeypatch):
    import trainers.deploy.inference as inference

    monkeypatch.setattr(inference, "load_text_classifier", lambda path, device: _Positive())


def test_classify_scores_the_labelled_rows_and_says_how_many(stub_model, tmp_path, capsys):
    path = tmp_path / "in.csv"
    path.write_text("sentence,label\ngood movie,\ndull,0\nwarm,1\n")
    assert main(["classify", "--model", "m", "--input", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1:] == [
        f"{line}\tpositive\t0.0000\t1.0000" for line in (2, 3, 4)
    ]
    assert captured.err.rstrip().endswith(
        "; accuracy 0.5000 against column 'label' on its 2 labelled inputs of 3"
    )
    assert main(["classify", "--model", "m", "--input", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["accuracy"], document["labelled"], document["inputs"]) == (0.5, 2, 3)


def test_classify_of_an_empty_label_column_gives_no_figure(stub_model, tmp_path, capsys):
    """``printf 'sentence,label\\ngood movie,\\n'`` was refused: label '' is not one of ..."""
    path = tmp_path / "x.csv"
    path.write_text("sentence,label\ngood movie,\n")
    assert main(["classify", "--model", "m", "--input", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1] == "2\tpositive\t0.0000\t1.0000"
    assert captured.err.rstrip().endswith("; no accuracy: column 'label' holds no label")
    assert main(["classify", "--model", "m", "--input", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["accuracy"] is None and document["metric_value"] is None
    assert (document["label_column"], document["labelled"]) == ("label", 0)
    assert document["predictions"] == [
        {"line": 2, "label": "positive", "probabilities": {"negative": 0, "positive": 1}}
    ]
