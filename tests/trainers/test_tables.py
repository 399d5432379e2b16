"""A study's own data (trainers.data.tables): every format read through datasets gives the same
table, labels are named and numbered from the data, missing splits are carved (stratified, the
same every time), and every bad input is one line naming the file, column or row."""

import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from glue_tables import preset_tables

from autoprumux.core.data_spec import data_spec
from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.study import study_from_dict
from trainers.data.tables import load_tables
from trainers.trial.task_data import positive_label_id

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = ROOT / "autoprumux" / "embedded" / "glue"


def own(tmp_path: Path, data: dict[str, object], **study: object) -> object:
    """The tables of a study of its own data (``[data]`` as given), written in ``tmp_path``."""
    document = {"study": study, "data": {"text": "review", "label": "sentiment", **data}}
    return load_tables(data_spec(study_from_dict(document, tmp_path / "own.toml")))


def write_csv(path: Path, rows: list[tuple[str, ...]], header: str = "review,sentiment") -> Path:
    lines = [header, *(",".join(json.dumps(v) if "," in v else v for v in r) for r in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


REVIEWS = [
    (f"review {i} {'good' if i % 3 else 'bad'}", "pos" if i % 3 else "neg") for i in range(60)
]


def test_sst2_redressed_as_a_csv_of_string_labels_is_the_same_data(tmp_path):
    """The embedded SST-2 with other column names and neg/pos labels: the same texts, the same
    label ids (neg < pos sorted, as negative = 0), names from the data."""
    preset = preset_tables(EMBEDDED)
    for split, table in (("train", preset.train), ("dev", preset.dev)):
        names = ["neg", "pos"]
        pq.write_table(  # written through Arrow: quotes and commas in sentences survive
            pa.table(
                {
                    "review": table["text"],
                    "sentiment": [names[y] for y in table["label"].to_pylist()],
                }
            ),
            tmp_path / f"{split}.parquet",
        )
        pa_csv.write_csv(pq.read_table(tmp_path / f"{split}.parquet"), tmp_path / f"{split}.csv")
    for kind in ("csv", "parquet"):
        tables = own(tmp_path, {"train": f"train.{kind}", "dev": f"dev.{kind}"})
        assert tables.label_names == ("neg", "pos")
        assert tables.train.equals(preset.train) and tables.dev.equals(preset.dev)


def test_every_format_reads_the_same_table(tmp_path):
    rows = REVIEWS[:20]
    write_csv(tmp_path / "r.csv", rows)
    (tmp_path / "r.tsv").write_text(
        "review\tsentiment\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8"
    )
    records = "".join(json.dumps({"review": t, "sentiment": y}) + "\n" for t, y in rows)
    (tmp_path / "r.jsonl").write_text(records, encoding="utf-8")
    (tmp_path / "r.jsonl.gz").write_bytes(gzip.compress(records.encode()))
    pq.write_table(
        pa.table({"review": [t for t, _ in rows], "sentiment": [y for _, y in rows]}),
        tmp_path / "r.parquet",
    )
    write_csv(tmp_path / "dev.csv", REVIEWS[20:30])
    tables = [
        own(tmp_path, {"train": f"r.{ext}", "dev": "dev.csv"})
        for ext in ("csv", "tsv", "jsonl", "jsonl.gz", "parquet")
    ]
    assert all(t.train.equals(tables[0].train) for t in tables)
    assert tables[0].train["text"].to_pylist() == [t for t, _ in rows]
    assert tables[0].train["label"].to_pylist() == [int(y == "pos") for _, y in rows]


def test_texts_that_look_like_numbers_or_nothing_stay_text(tmp_path):
    write_csv(tmp_path / "t.csv", [("NA", "a"), ("null", "b"), ("12", "a"), ("3.0", "b")])
    tables = own(tmp_path, {"train": "t.csv", "dev": "t.csv"})
    assert tables.train["text"].to_pylist() == ["NA", "null", "12", "3.0"]


def test_labels_from_the_data_or_in_the_order_given(tmp_path):
    rows = [(f"t{i}", str(label)) for i, label in enumerate([10, 2, 10, 2, 1, 1])]
    write_csv(tmp_path / "n.csv", rows)
    numeric = own(tmp_path, {"train": "n.csv", "dev": "n.csv"})
    assert numeric.label_names == ("1", "2", "10")  # as numbers, not as text ("10" < "2")
    assert numeric.train["label"].to_pylist() == [2, 1, 2, 1, 0, 0]
    ordered = own(tmp_path, {"train": "n.csv", "dev": "n.csv", "labels": ["10", "2", "1"]})
    assert ordered.train["label"].to_pylist() == [0, 1, 0, 1, 2, 2]
    with pytest.raises(DataError, match=r"n.csv: line 2: label '10' is not one of the task's"):
        own(tmp_path, {"train": "n.csv", "dev": "n.csv", "labels": ["1", "2"]})


def test_a_carved_dev_split_is_stratified_capped_and_always_the_same(tmp_path):
    write_csv(tmp_path / "r.csv", REVIEWS)  # 40 pos, 20 neg
    first = own(tmp_path, {"train": "r.csv", "dev_fraction": 0.15})
    again = own(tmp_path, {"train": "r.csv", "dev_fraction": 0.15})
    assert first.dev.equals(again.dev) and first.train.equals(again.train)
    assert (first.dev.num_rows, first.train.num_rows) == (9, 51)
    assert sorted(first.dev["label"].to_pylist()) == [0, 0, 0, 1, 1, 1, 1, 1, 1]  # 1 : 2
    every = first.dev["text"].to_pylist() + first.train["text"].to_pylist()
    assert sorted(every) == sorted(t for t, _ in REVIEWS)  # a partition of train
    other_seed = own(tmp_path, {"train": "r.csv", "dev_fraction": 0.15}, seed=1)
    assert not other_seed.dev.equals(first.dev)
    capped = own(tmp_path, {"train": "r.csv", "dev_fraction": 0.4, "dev_max_rows": 5})
    assert capped.dev.num_rows == 5


def test_a_carved_test_split_is_held_out_of_train_and_dev(tmp_path):
    write_csv(tmp_path / "r.csv", REVIEWS)
    tables = own(tmp_path, {"train": "r.csv", "test_fraction": 0.2, "dev_fraction": 0.1})
    parts = [set(t["text"].to_pylist()) for t in (tables.train, tables.dev, tables.test)]
    assert [len(p) for p in parts] == [43, 5, 12]
    assert not (parts[0] & parts[2] or parts[1] & parts[2] or parts[0] & parts[1])


def test_a_pair_task(tmp_path):
    (tmp_path / "p.csv").write_text("q1,q2,dup\nwho,why,yes\nhow,how,no\n")
    tables = own(
        tmp_path,
        {"train": "p.csv", "dev": "p.csv", "text": "q1", "text_pair": "q2", "label": "dup"},
    )
    assert tables.is_pair and tables.dev["text_pair"].to_pylist() == ["why", "how"]
    assert tables.label_names == ("no", "yes")


def test_empty_texts_are_skipped_and_counted(tmp_path, caplog):
    write_csv(tmp_path / "r.csv", [("good", "pos"), ("  ", "neg"), ("", "pos"), ("bad", "neg")])
    with caplog.at_level(logging.WARNING):
        tables = own(tmp_path, {"train": "r.csv", "dev": "r.csv"})
    assert tables.train["text"].to_pylist() == ["good", "bad"]
    assert f"{tmp_path / 'r.csv'}: skipped 2 row(s) whose text is empty" in tables.notes
    assert "skipped 2 row(s)" in caplog.text


@pytest.mark.parametrize(
    ("files", "data", "message"),
    [
        ({}, {"train": "none.csv"}, "none.csv: no such file"),
        (
            {"r.csv": "text,y\na,b\n"},
            {"train": "r.csv"},
            "r.csv: has no column 'review'; its columns: text, y",
        ),
        (
            {"r.csv": "review,sentiment\na,pos\nb,pos\n"},
            {"train": "r.csv"},
            "r.csv: column 'sentiment' holds one distinct label ('pos'); a classifier needs at "
            "least two",
        ),
        (
            {"r.csv": "review,sentiment\na,pos\nb,neg\n", "d.csv": "review,sentiment\nc,meh\n"},
            {"train": "r.csv", "dev": "d.csv"},
            "d.csv: line 2: label 'meh' is not one of the training split's labels: neg, pos",
        ),
        (
            {"r.csv": "review,other,sentiment\na,x,pos\nb,,neg\n"},
            {"train": "r.csv", "text_pair": "other"},
            "r.csv: line 3: column 'other' is empty; a pair task needs both texts ('review' and "
            "'other') in every row",
        ),
        (
            {"r.csv": "review,sentiment\na,pos\nb,neg,extra\n"},
            {"train": "r.csv"},
            "r.csv: cannot be read as CSV: Error tokenizing data. C error: Expected 2 fields in "
            "line 3, saw 3 (a ragged row: quote fields that hold the separator)",
        ),
        (
            {"r.csv": b"review,sentiment\na,pos\nb\xff,neg\n"},
            {"train": "r.csv"},
            "r.csv: line 3 holds bytes that are not UTF-8; save the file as UTF-8",
        ),
        (
            {"r.csv": "review,sentiment\na,pos\nb,neg\nc,pos\n"},
            {"train": "r.csv", "dev_fraction": 0.1},
            "[data] dev_fraction: 0.1 of 3 training rows carves 0 rows: the dev split would be "
            "empty; give a dev split",
        ),
        (
            {"r.jsonl": '{"review": "a", "sentiment": ["pos", "neg"]}\n'},
            {"train": "r.jsonl"},
            "r.jsonl: column 'sentiment' holds lists of labels; multi-label classification is "
            "not supported (one label per row)",
        ),
        (
            {"r.csv": "review,sentiment\n ,pos\n,neg\n"},
            {"train": "r.csv"},
            "r.csv: holds no row with text in column 'review'",
        ),
        (
            {"r.csv": "review,sentiment\na,pos\nb,\n"},
            {"train": "r.csv"},
            "r.csv: line 3: column 'sentiment' is empty",
        ),
        ({"r.xml": "<a/>"}, {"train": "r.xml"}, "r.xml: has no known extension"),
        # files without rows: datasets' own words for these name its internals ("Instruction
        # 'train' corresponds to no data!", "StopIteration", "BatchSize must be greater than 0")
        (
            {"r.csv": "review,sentiment\n\n"},
            {"train": "r.csv"},
            "r.csv: holds no rows (only its header)",
        ),
        (
            {"r.tsv": "review\tsentiment\n"},
            {"train": "r.tsv"},
            "r.tsv: holds no rows (only its header)",
        ),
        ({"r.jsonl": ""}, {"train": "r.jsonl"}, "r.jsonl: holds no rows"),
        ({"r.jsonl": "\n \n"}, {"train": "r.jsonl"}, "r.jsonl: holds no rows"),
        (
            {"r.csv": "review,sentiment\na,pos\nb,neg\n", "d.csv": "review,sentiment\n"},
            {"train": "r.csv", "dev": "d.csv"},
            "d.csv: holds no rows (only its header)",
        ),
    ],
)
def test_bad_data_is_one_line_naming_the_file_column_or_row(tmp_path, files, data, message):
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(DataError) as err:
        own(tmp_path, data)
    text = str(err.value)
    assert "\n" not in text
    assert text.endswith(message) or message in text, text


def test_a_parquet_file_or_a_compressed_csv_without_rows_is_one_line(tmp_path):
    empty = pa.table({"review": pa.array([], pa.string()), "sentiment": pa.array([], pa.string())})
    pq.write_table(empty, tmp_path / "r.parquet")
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress(b"review,sentiment\n"))
    for name, message in (
        ("r.parquet", "holds no rows"),
        ("r.csv.gz", "holds no rows (only its header)"),
    ):
        with pytest.raises(DataError) as err:
            own(tmp_path, {"train": name})
        assert str(err.value) == f"{tmp_path / name}: {message}"


def test_a_class_of_one_example_falls_back_to_an_unstratified_split(tmp_path):
    write_csv(tmp_path / "r.csv", [*REVIEWS[:30], ("lonely", "meh")])
    tables = own(tmp_path, {"train": "r.csv", "dev_fraction": 0.2})
    assert tables.dev.num_rows == 6
    assert any("not stratified" in note for note in tables.notes)


def test_overlap_and_imbalance_are_warnings_with_counts(tmp_path):
    rows = [(f"r{i}", "pos") for i in range(40)] + [("n1", "neg"), ("n2", "neg"), ("n3", "neg")]
    write_csv(tmp_path / "r.csv", rows)
    write_csv(tmp_path / "t.csv", [("r1", "pos"), ("r2", "pos"), ("new", "neg")])
    tables = own(tmp_path, {"train": "r.csv", "dev": "r.csv", "test": "t.csv"})
    assert "the training labels are heavily imbalanced (neg: 3, pos: 40)" in tables.notes
    assert (
        "2 of the test split's 3 rows also appear in train: the test figure is optimistic"
        in tables.notes
    )


def test_f1_needs_a_binary_task_or_a_positive_label(tmp_path):
    def study(**fields):
        return study_from_dict({"study": {"task": "sst2", **fields}})

    assert positive_label_id(study(metric="f1"), ("neg", "pos")) == 1
    assert positive_label_id(study(metric="f1", positive_label="neg"), ("neg", "pos")) == 0
    with pytest.raises(FieldError, match='"f1" is binary, and the task has 3 labels'):
        positive_label_id(study(metric="f1"), ("a", "b", "c"))
    with pytest.raises(FieldError, match="'x' is not one of the task's labels: a, b, c"):
        positive_label_id(study(metric="f1", positive_label="x"), ("a", "b", "c"))
    with pytest.raises(FieldError, match='positive_label: is only read with metric = "f1"'):
        study(positive_label="pos")


def test_a_dataset_by_name_is_loaded_with_load_dataset(tmp_path):
    """``[data] dataset`` goes to ``datasets.load_dataset`` as it is: a hub id, or (here, with
    no hub reachable) a local folder of data files, whose splits it names by file."""
    folder = tmp_path / "reviews-dataset"
    folder.mkdir()
    write_csv(folder / "train.csv", REVIEWS[:40])
    write_csv(folder / "test.csv", REVIEWS[40:])
    data = {"dataset": str(folder), "train_split": "train", "test_split": "test"}
    tables = own(tmp_path, data)
    assert (tables.train.num_rows, tables.dev.num_rows, tables.test.num_rows) == (36, 4, 20)
    assert tables.label_names == ("neg", "pos")
    with pytest.raises(DataError, match=r"reviews-dataset split 'validation': cannot be loaded"):
        own(tmp_path, {**data, "dev_split": "validation"})
