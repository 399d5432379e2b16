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


# -- JSON Lines and Parquet: the columns of a CSV table ---------------------------------------

SST2_ROWS = [
    {"sentence": "a fine film", "label": 1, "id": 7},
    {"sentence": "dull", "label": "negative", "id": 8},
    {"sentence": "warm and bright", "label": 1.0, "id": 9},  # pandas' float labels
]


def test_json_lines_read_as_a_table_naming_their_lines(tmp_path):
    import json

    path = tmp_path / "in.jsonl"
    lines = [json.dumps(row) for row in SST2_ROWS]
    path.write_text(f"{lines[0]}\n\n{lines[1]}\n{lines[2]}\n")  # a blank line, as in a text file
    inputs = read_inputs(str(path), SST2)
    assert inputs.texts == ("a fine film", "dull", "warm and bright")
    assert inputs.lines == (1, 3, 4) and inputs.blank_lines == 1
    assert inputs.gold == (1, 0, 1) and inputs.label_column == "label"
    # --column as for a CSV table; a .json file of one array of objects is read the same
    array = tmp_path / "in.json"
    array.write_text(json.dumps(SST2_ROWS, indent=1))
    by_id = read_inputs(str(array), SST2, columns="id")
    assert by_id.texts == ("7", "8", "9") and by_id.lines == (1, 2, 3) and by_id.gold == (1, 0, 1)


def test_parquet_reads_as_a_table_numbering_its_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "sentence": ["a fine film", None, "dull"],
            "label": pa.array([1.0, 0.0, 0.0]),
            "sentence2": ["x", "y", "z"],
        }
    )
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    inputs = read_inputs(str(path), SST2)
    # a null text is no input (skipped and counted, as a blank line); rows numbered from 1
    assert inputs.texts == ("a fine film", "dull") and inputs.lines == (1, 3)
    assert inputs.gold == (1, 0) and inputs.blank_lines == 1
    pairs = InputSpec(text_columns=("q", "s"), label_column="label", labels=SST2.labels)
    with pytest.raises(InputError) as raised:  # row 2 has one text of the two
        read_inputs(str(path), pairs, columns="sentence2,sentence")
    assert str(raised.value) == (
        f"{path}: row 2: column 'sentence' is empty; a pair needs both texts"
    )
    # compressed as any input: the Parquet file its name gives
    packed = tmp_path / "in.parquet.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert read_inputs(str(packed), SST2).texts == inputs.texts


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": "b",\n',
         "bad.jsonl: line 2 is not JSON (Expecting property name enclosed in double quotes)"),
        ("list.jsonl", '{"sentence": "a", "label": 1}\n["b", 0]\n',
         "list.jsonl: line 2 is not a JSON object"),
        ("labels.jsonl", '{"sentence": "a", "label": ["positive"]}\n',
         "labels.jsonl: line 1: column 'label' holds a list; a cell holds one text or label"),
        ("other.jsonl", '{"text": "a", "label": 1}\n',
         "other.jsonl: no column 'sentence' (columns: text, label); name the text column "
         "with --column"),
        ("array.json", '[{"sentence": "a"}, 3]',
         "array.json: row 2 is not a JSON object"),
        ("broken.json", '[{"sentence": "a"},\n {"sentence" "b"}]',
         "broken.json: line 2 is not JSON (Expecting ':' delimiter)"),
        ("junk.parquet", "not parquet",
         "junk.parquet: cannot be read as Parquet"),
    ],
)  # fmt: skip
def test_bad_json_or_parquet_is_one_line_naming_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as raised:
        read_inputs(str(path), SST2)
    # one line, however the parser words it (pyarrow's own errors span lines)
    assert str(raised.value).startswith(f"{tmp_path}/{message}"), str(raised.value)
    assert "\n" not in str(raised.value)


def test_column_on_plain_lines_names_the_tables_it_reads(tmp_path):
    from autoprumux.core.errors import FieldError

    path = tmp_path / "in.txt"
    path.write_text("a fine film\n")
    with pytest.raises(FieldError) as raised:
        read_inputs(str(path), SST2, columns="sentence")
    assert str(raised.value) == (
        f"--column: {path} is not a table (.tsv, .csv, .jsonl, .json, .ndjson, .parquet, .pq); "
        "--column needs one"
    )


# -- CSV rows: as strict as init's reading, blank texts as blank lines -------------------------


def test_a_row_with_more_values_than_the_header_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("sentence,label\na fine film,1,\ndull,0,x\n")  # a trailing comma is read
    with pytest.raises(InputError) as raised:
        read_inputs(str(path), SST2)
    assert str(raised.value) == f"{path}: line 3: 3 field(s), the header names 2"
    path.write_text("sentence,label\na fine film,1,\ndull,0\n")
    assert read_inputs(str(path), SST2).texts == ("a fine film", "dull")


def test_a_repeated_header_column_is_refused_naming_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.csv"
    path.write_text("sentence,label,sentence\na fine film,1,dull\n")
    with pytest.raises(InputError) as raised:
        read_inputs(str(path), SST2)
    assert str(raised.value) == (
        f"{path}: line 1: column 'sentence' appears more than once; each column needs its own name"
    )
    parquet = tmp_path / "in.pq"
    pq.write_table(pa.table([["a"], [1], ["b"]], names=["sentence", "label", "sentence"]), parquet)
    with pytest.raises(InputError) as raised:
        read_inputs(str(parquet), SST2)
    assert str(raised.value) == (
        f"{parquet}: column 'sentence' appears more than once; each column needs its own name"
    )


def test_rows_without_text_are_skipped_and_counted_as_blank_lines(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('sentence,label\na fine film,1\n"   ",0\n\n,\ndull,0\n')
    inputs = read_inputs(str(path), SST2)
    assert inputs.texts == ("a fine film", "dull") and inputs.lines == (2, 6)
    assert inputs.gold == (1, 0) and inputs.blank_lines == 3  # out of the accuracy
    assert accuracy(inputs, ["positive", "positive"], SST2.labels) == 0.5


def test_a_pair_with_one_text_empty_is_refused_naming_its_column(tmp_path):
    pairs = InputSpec(
        text_columns=("question", "sentence"), label_column="label", labels=("yes", "no")
    )
    path = tmp_path / "in.tsv"
    path.write_text("question\tsentence\tlabel\nwhat ?\tit is\tyes\n\t \tno\nwho ?\t\tno\n")
    with pytest.raises(InputError) as raised:
        read_inputs(str(path), pairs)
    assert str(raised.value) == (
        f"{path}: line 4: column 'sentence' is empty; a pair needs both texts"
    )
    lines = tmp_path / "in.txt"
    lines.write_text("what ?\tit is\n\t\n \twho is it ?\n")
    with pytest.raises(InputError) as raised:
        read_inputs(str(lines), pairs)
    assert str(raised.value) == f"{lines}: line 3: the first text is empty; a pair needs both texts"
