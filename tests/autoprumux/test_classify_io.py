"""``autoprumux classify``'s inputs: compressed files are read as the file their name gives
without the compression suffix (the shipped ``dev.tsv.xz`` is a GLUE table); its summary
against a gold column, in the model's metric."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest

from autoprumux.cli.classify_io import (
    InputError,
    InputSpec,
    accuracy,
    gold_confusion,
    gold_score,
    read_inputs,
)
from autoprumux.core.metrics import Metric

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DEV = ROOT / "autoprumux" / "embedded" / "glue" / "SST-2" / "dev.tsv.xz"
SST2 = InputSpec(text_columns=("sentence",), label_column="label", labels=("negative", "positive"))


def test_the_shipped_dev_split_is_read_as_a_table():
    inputs = read_inputs(str(SHIPPED_DEV), SST2)
    # GLUE's SST-2 dev split: 872 sentences under a header row, each with its label
    assert len(inputs.texts) == 872 and inputs.gold is not None and len(inputs.gold) == 872
    assert inputs.texts[0] == "one long string of cliches ."
    assert inputs.lines[0] == 2 and inputs.lines[-1] == 873
    assert inputs.gold[0] == 0 and inputs.gold[-1] == 1
    assert inputs.label_column == "label" and inputs.source == str(SHIPPED_DEV)


@pytest.mark.parametrize(("suffix", "compress"), [(".gz", gzip.compress), (".bz2", bz2.compress)])
def test_gzip_and_bzip2_read_as_the_plain_file(tmp_path, suffix, compress):
    table = lzma.decompress(SHIPPED_DEV.read_bytes())
    plain = tmp_path / "dev.tsv"
    plain.write_bytes(table)
    packed = tmp_path / f"dev.tsv{suffix}"
    packed.write_bytes(compress(table))
    expected, got = read_inputs(str(plain), SST2), read_inputs(str(packed), SST2)
    assert (got.texts, got.lines, got.gold) == (expected.texts, expected.lines, expected.gold)


def test_compressed_lines_are_lines_and_a_text_file_is_not_a_table(tmp_path):
    packed = tmp_path / "in.txt.xz"
    packed.write_bytes(lzma.compress(b"good film\n\nawful plot\n"))
    inputs = read_inputs(str(packed), SST2)
    assert inputs.texts == ("good film", "awful plot") and inputs.lines == (1, 3)
    assert inputs.blank_lines == 1 and inputs.gold is None


def test_a_damaged_compressed_file_is_one_line_naming_it(tmp_path):
    damaged = tmp_path / "dev.tsv.xz"
    damaged.write_bytes(SHIPPED_DEV.read_bytes()[:100])  # cut short
    with pytest.raises(InputError, match=r"dev\.tsv\.xz: cannot be decompressed as \.xz"):
        read_inputs(str(damaged), SST2)
    not_gzip = tmp_path / "in.txt.gz"
    not_gzip.write_text("plain text, named .gz\n")
    with pytest.raises(InputError, match=r"in\.txt\.gz: cannot be decompressed as \.gz"):
        read_inputs(str(not_gzip), SST2)


REVIEWS = InputSpec(
    text_columns=("review",), label_column="sentiment", labels=("neg", "neutral", "pos")
)
# gold: neg, neg, neutral, pos, pos, pos; predicted as below
PREDICTED = ["neg", "pos", "neutral", "pos", "pos", "neg"]


def reviews(tmp_path):
    rows = ["review,sentiment", "a,neg", "b,neg", "c,neutral", "d,pos", "e,pos", "f,pos"]
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(rows) + "\n")
    return read_inputs(str(path), REVIEWS)


def test_the_gold_column_is_scored_in_the_models_metric(tmp_path):
    inputs = reviews(tmp_path)
    assert gold_confusion(inputs, PREDICTED, REVIEWS.labels) == [[1, 0, 1], [0, 1, 0], [1, 0, 2]]
    graded = gold_score(inputs, PREDICTED, REVIEWS.labels, Metric.MACRO_F1)
    # F1 per label: 2*1/(2+2), 2*1/(1+1), 2*2/(3+3)
    assert graded.value == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert graded.accuracy == pytest.approx(4 / 6) == accuracy(inputs, PREDICTED, REVIEWS.labels)
    assert graded.describe("sentiment") == (
        "macro-F1 0.7222, accuracy 0.6667 against column 'sentiment'"
    )
    # F1 of pos (id 2): 2 hits, 3 gold, 3 predicted
    f1 = gold_score(inputs, PREDICTED, REVIEWS.labels, Metric.F1, 2, "pos")
    assert f1.value == pytest.approx(2 / 3)
    assert f1.describe("sentiment").startswith("F1 of 'pos' 0.6667, accuracy 0.6667")
    plain = gold_score(inputs, PREDICTED, REVIEWS.labels)
    assert plain.describe("sentiment") == "accuracy 0.6667 against column 'sentiment'"


def test_no_gold_column_no_score(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text("review\na\nb\n")
    inputs = read_inputs(str(path), REVIEWS)
    assert gold_score(inputs, ["neg", "pos"], REVIEWS.labels, Metric.MATTHEWS) is None


def test_classifys_json_names_the_models_metric(tmp_path):
    from types import SimpleNamespace

    from autoprumux.cli.model_commands import _classified_document
    from trainers.deploy.inference import Classified, PredictedLabel
    from trainers.deploy.model_folder import ModelInfo

    inputs = reviews(tmp_path)
    info = ModelInfo(
        task="reviews", labels=REVIEWS.labels, text_columns=("review",),
        label_column="sentiment", max_length=16, n=1, sparsity=0.0, achieved_sparsity=0.0,
        parameters=10, dev_accuracy=0.7, dev_examples=6, throughput=None,
        throughput_device="cpu", study="reviews", study_file="", recipe="r", base_model="m",
        teacher=None, seed=1, metric="macro_f1",
    )  # fmt: skip
    done = Classified(
        predictions=tuple(PredictedLabel(label=p, probabilities={p: 1.0}) for p in PREDICTED),
        seconds=1.0,
        model_seconds=0.5,
        truncated=0,
    )
    graded = gold_score(inputs, PREDICTED, info.labels, Metric.MACRO_F1)
    model = SimpleNamespace(info=info, source="m", precision="fp32")
    document = _classified_document(model, inputs, done, graded)
    assert (document["metric"], document["metric_label"]) == ("macro_f1", "macro-F1")
    assert document["metric_value"] == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert document["accuracy"] == pytest.approx(4 / 6)
    blind = _classified_document(model, inputs, done, None)
    assert blind["metric_value"] is None and blind["accuracy"] is None
