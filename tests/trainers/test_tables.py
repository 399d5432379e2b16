"""A study's own data (trainers.data.tables): every format read through datasets gives the same
table, labels are named and numbered from the data, missing splits are carved (stratified, the
same every time), and every bad input is one line naming the file, column or row."""

import csv
import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from glue_tables import preset_tables

from autoprumux.core.data_spec import FileFormat, FileSource, data_spec
from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.study import study_from_dict
from trainers.data.tables import _content_id, file_digest, load_tables, read_source
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
            {"r.csv": "review,other,sentiment\na,,pos\n,b,neg\n"},
            {"train": "r.csv", "text_pair": "other"},
            "r.csv: holds no row with text in columns 'review' and 'other'",
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


# -- files as people write them: mixed JSON, quotes in TSV, a byte-order mark, label spellings


def write_jsonl(path: Path, records: list[dict[str, object]], encoding: str = "utf-8") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding=encoding)
    return path


def test_a_json_lines_column_of_mixed_types_is_read_as_text(tmp_path):
    """A label of 0/1 integers and one "1" string is the labels 0 and 1; a text that is a bare
    number is its digits (datasets reads such columns as JSON values)."""
    records: list[dict[str, object]] = [
        {"review": f"review {i}", "sentiment": i % 2} for i in range(6)
    ]
    records[3]["sentiment"] = "1"
    records[4]["review"] = 12345
    records[5]["sentiment"] = 1.0
    write_jsonl(tmp_path / "m.jsonl", records)
    tables = own(tmp_path, {"train": "m.jsonl", "dev": "m.jsonl"})
    assert tables.label_names == ("0", "1")
    assert tables.train["label"].to_pylist() == [0, 1, 0, 1, 0, 1]
    assert tables.train["text"].to_pylist() == [
        "review 0",
        "review 1",
        "review 2",
        "review 3",
        "12345",
        "review 5",
    ]
    assert not any("differ" in note or "one number" in note for note in tables.notes)


def test_mixed_json_values_read_as_a_csv_column_reads_them(tmp_path):
    values = ["a", 7, 2.5, 3.0, True, None, {"k": 1}, [1, 2]]
    write_jsonl(tmp_path / "v.jsonl", [{"v": v} for v in values])
    table = read_source(FileSource(path=tmp_path / "v.jsonl", format=FileFormat.JSON))
    assert table.schema.field("v").type == pa.string()
    assert table["v"].to_pylist() == ["a", "7", "2.5", "3", "true", None, '{"k":1}', "[1,2]"]


def test_a_tsv_file_is_read_unquoted_every_line_a_row(tmp_path):
    """Quotes in a TSV file are text, as GLUE writes it and classify reads it: an unbalanced
    quote on line 12 does not swallow the lines to the next one."""
    rows = [(f"review {i}", "pos" if i % 2 else "neg") for i in range(40)]
    rows[10] = ('"open quote review 10', "neg")
    rows[20] = ('"quoted whole"', "neg")
    rows[30] = ('review 30 closing quote"', "neg")
    text = "review\tsentiment\n" + "".join(f"{t}\t{y}\n" for t, y in rows)
    (tmp_path / "q.tsv").write_text(text, encoding="utf-8")
    tables = own(tmp_path, {"train": "q.tsv", "dev": "q.tsv"})
    assert tables.train.num_rows == 40
    assert tables.train["text"].to_pylist() == [t for t, _ in rows]


def test_a_tsv_file_holding_a_quote_keys_new_tokens_and_models(tmp_path):
    """Such a file was once read with quoting, perhaps as other rows: what was made of it then
    is not reused. One without a quote, and GLUE's, keep their key."""
    (tmp_path / "q.tsv").write_text('review\tsentiment\n"open\tneg\nclosed"\tpos\n')
    (tmp_path / "p.tsv").write_text("review\tsentiment\nplain\tneg\nwords\tpos\n")
    (tmp_path / "q.tsv.gz").write_bytes(gzip.compress((tmp_path / "q.tsv").read_bytes()))

    def key(name: str, glue: bool = False) -> str:
        path = tmp_path / name
        digest = file_digest(str(path), path.stat().st_size, path.stat().st_mtime_ns)
        kind = _content_id(FileSource(path=path, format=FileFormat.TSV, glue=glue))
        assert kind.endswith(f":{digest}")
        return kind.removesuffix(f":{digest}")

    assert [key("q.tsv"), key("q.tsv.gz"), key("p.tsv"), key("q.tsv", glue=True)] == [
        "tsv-unquoted",
        "tsv-unquoted",
        "tsv",
        "tsv",
    ]


@pytest.mark.parametrize("name", ["b.csv", "b.tsv", "b.jsonl"])
def test_a_byte_order_mark_is_left_out(tmp_path, name):
    """What a spreadsheet's "CSV UTF-8" writes: the first column is named without the mark."""
    rows = REVIEWS[:20]
    path = tmp_path / name
    if name.endswith(".jsonl"):
        write_jsonl(path, [{"review": t, "sentiment": y} for t, y in rows], "utf-8-sig")
    else:
        with path.open("w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle, delimiter="\t" if name.endswith(".tsv") else ",")
            writer.writerows([("review", "sentiment"), *rows])
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    tables = own(tmp_path, {"train": name, "dev": name})
    assert tables.train["text"].to_pylist() == [t for t, _ in rows]
    assert tables.label_names == ("neg", "pos")


def test_labels_spelled_two_ways_are_separate_classes_with_a_warning(tmp_path):
    rows = [(f"r{i}", ["neg", "Neg ", "pos", "pos"][i % 4]) for i in range(40)]
    write_csv(tmp_path / "c.csv", rows)
    tables = own(tmp_path, {"train": "c.csv", "dev": "c.csv"})
    assert tables.label_names == ("Neg ", "neg", "pos")
    assert (
        "labels 'Neg ' and 'neg' differ only in case or spaces: they are 2 separate classes; "
        "write them alike in the file if they are one" in tables.notes
    )
    numbers = [(f"r{i}", ["0", "1", "1.0", "0"][i % 4]) for i in range(40)]
    write_csv(tmp_path / "n.csv", numbers)
    tables = own(tmp_path, {"train": "n.csv", "dev": "n.csv"})
    assert tables.label_names == ("0", "1", "1.0")
    assert (
        "labels '1' and '1.0' are one number written differently: they are 2 separate classes; "
        "write them alike in the file if they are one" in tables.notes
    )
    spellings = [c for letter in "abcdefg" for c in (letter, letter.upper())]  # 7 groups
    write_csv(tmp_path / "g.csv", [(f"r{i}", spellings[i % 14]) for i in range(56)])
    alike = [n for n in own(tmp_path, {"train": "g.csv", "dev": "g.csv"}).notes if "label" in n]
    assert alike[0].startswith("labels 'A' and 'a' differ only in case or spaces")
    assert len(alike) == 6 and alike[4].startswith("labels 'E' and 'e' differ")
    assert alike[5] == (
        "2 more group(s) of labels differ only in case, spaces or a number's spelling"
    )


def test_a_label_column_of_nearly_one_value_a_row_is_refused(tmp_path):
    """More than 50 distinct values and more than half the rows: a text, not a label; 300
    classes of 3 rows each, or 60 classes of 2, are still labels."""
    write_csv(tmp_path / "t.csv", [(f"review {i}", f"label {i % 61}") for i in range(120)])
    with pytest.raises(DataError) as err:
        own(tmp_path, {"train": "t.csv", "dev": "t.csv"})
    assert str(err.value) == (
        f"{tmp_path / 't.csv'}: column 'sentiment' holds 61 distinct values in 120 rows: a text "
        "or an id, not a label (a label column holds at most 50 distinct values or at most half "
        "as many as its rows); name the label column ([data] label, init's --label)"
    )
    write_csv(tmp_path / "s.csv", [(f"review {i}", f"label {i % 60}") for i in range(120)])
    assert len(own(tmp_path, {"train": "s.csv", "dev": "s.csv"}).label_names) == 60
    write_csv(tmp_path / "m.csv", [(f"review {i}", f"c{i % 300}") for i in range(900)])
    many = own(tmp_path, {"train": "m.csv"})
    assert len(many.label_names) == 300 and many.train.num_rows + many.dev.num_rows == 900


def test_a_dev_split_sharing_rows_with_train_is_warned(tmp_path):
    write_csv(tmp_path / "r.csv", REVIEWS)
    write_csv(tmp_path / "d.csv", [REVIEWS[0], REVIEWS[1], ("a new one", "pos")])
    same = own(tmp_path, {"train": "r.csv", "dev": "r.csv"})
    assert (
        "60 of the dev split's 60 rows also appear in train: every dev figure the search "
        "chooses on is optimistic" in same.notes
    )
    some = own(tmp_path, {"train": "r.csv", "dev": "d.csv"})
    assert any(note.startswith("2 of the dev split's 3 rows") for note in some.notes)
    carved = own(tmp_path, {"train": "r.csv"})
    assert not any("dev split's" in note for note in carved.notes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"review": "a", "sentiment": "pos"}\n{"review": "b", "sentiment": "neg"\n'
            '{"review": "c", "sentiment": "pos"}\n',
            "cannot be read as JSON: line 2: Expecting ',' delimiter (column 35)",
        ),
        (
            '{"review": "a", "sentiment": "pos"}\n\n[1, 2]\n',
            "cannot be read as JSON: line 3: list is not a JSON object",
        ),
    ],
)
def test_a_broken_json_line_is_named(tmp_path, content, message):
    (tmp_path / "r.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        own(tmp_path, {"train": "r.jsonl"})
    assert str(err.value) == f"{tmp_path / 'r.jsonl'}: {message}"


@pytest.mark.parametrize(
    ("name", "header", "message"),
    [
        (
            "s.csv",
            "review;sentiment",
            "its header 'review;sentiment' is one column holding ';': the file looks "
            "semicolon-separated, and CSV is comma-separated (save it comma-separated)",
        ),
        (
            "p.csv",
            "review|sentiment",
            "its header 'review|sentiment' is one column holding '|': the file looks "
            "pipe-separated, and CSV is comma-separated (save it comma-separated)",
        ),
        (
            "t.csv",
            "review\tsentiment",
            "its header 'review\\tsentiment' is one column holding '\\t': the file looks "
            'tab-separated, and CSV is comma-separated (name it .tsv or set [data] format = "tsv")',
        ),
        (
            "c.tsv",
            "review,sentiment",
            "its header 'review,sentiment' is one column holding ',': the file looks "
            'comma-separated, and TSV is tab-separated (name it .csv or set [data] format = "csv")',
        ),
    ],
)
def test_a_file_of_another_separator_is_named_as_such(tmp_path, name, header, message):
    sep = header[len("review")]
    (tmp_path / name).write_text(f"{header}\ngood film{sep}pos\nbad film{sep}neg\n")
    with pytest.raises(DataError) as err:
        own(tmp_path, {"train": name})
    assert str(err.value) == f"{tmp_path / name}: {message}"


# -- what the sweep of init on users' files found ----------------------------------------------


def test_a_refusal_names_the_line_a_multi_line_row_starts_on(tmp_path):
    """Quoted fields holding line breaks: rows 1 and 2 take three lines each, a blank line
    is no row; the empty label of the fifth row starts on line 11 (its header is line 1), and
    a dev file's unknown label on line 4, as an editor shows them."""
    (tmp_path / "r.csv").write_text(
        'review,sentiment\n"one\nand\nmore",pos\n"two\nlines\nhere",neg\n\nthree,pos\n'
        'four,neg\n"five\nagain",\nsix,pos\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as err:
        own(tmp_path, {"train": "r.csv", "dev": "r.csv"})
    assert str(err.value) == f"{tmp_path / 'r.csv'}: line 11: column 'sentiment' is empty"
    (tmp_path / "t.csv").write_text("review,sentiment\na,pos\nb,neg\nc,pos\nd,neg\n")
    (tmp_path / "d.csv").write_text('review,sentiment\n"a\nb",pos\nc,meh\n')
    with pytest.raises(DataError) as err:
        own(tmp_path, {"train": "t.csv", "dev": "d.csv"})
    assert str(err.value) == (
        f"{tmp_path / 'd.csv'}: line 4: label 'meh' is not one of the training split's labels: "
        "neg, pos"
    )


def test_a_carved_dev_split_of_a_file_with_repeats_is_warned_as_a_dev_file_is(tmp_path):
    """30 distinct texts written three times: the carved dev split (9 rows) takes copies of
    texts train holds, said as a dev file that shares rows is, with the cause and the fix."""
    rows = [
        (f"review {i} {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(30)
    ]
    write_csv(tmp_path / "r.csv", rows * 3)
    tables = own(tmp_path, {"train": "r.csv"})
    dev = tables.dev["text"].to_pylist()
    shared = sum(text in set(tables.train["text"].to_pylist()) for text in dev)
    assert tables.dev.num_rows == 9 and shared > 0
    assert (
        f"{shared} of the dev split's 9 rows also appear in train: every dev figure the search "
        "chooses on is optimistic (the training file holds these texts more than once, and the "
        "carved dev split took a copy: remove the repeats, or give a dev file)"
    ) in tables.notes
    distinct = [(f"review {i}", "pos" if i % 2 else "neg") for i in range(60)]
    write_csv(tmp_path / "u.csv", distinct)
    assert not any("also appear" in n for n in own(tmp_path, {"train": "u.csv"}).notes)


def test_a_text_under_two_labels_in_train_is_warned(tmp_path):
    rows = [("same words", "pos"), ("same words", "neg"), ("other", "pos"), ("other", "pos")]
    write_csv(tmp_path / "r.csv", rows + [(f"r{i}", "neg") for i in range(10)])
    tables = own(tmp_path, {"train": "r.csv", "dev": "r.csv"})
    assert (
        "1 text(s) of the training split appear under different labels ('same words': neg, "
        "pos): no model gets them all right"
    ) in tables.notes


def test_a_dev_split_too_small_to_decide_and_unstratified_is_said_in_the_tools_words(tmp_path):
    """10 rows of 2 labels: a carved dev split of 1 row cannot hold one of each label (the
    datasets library's words name its test_size), and one example decides every dev figure."""
    write_csv(tmp_path / "r.csv", REVIEWS[:10])
    tables = own(tmp_path, {"train": "r.csv"})
    assert tables.dev.num_rows == 1
    assert (
        "the carved dev split is not stratified: its 1 row(s) cannot hold one of each of the 2 "
        "labels"
    ) in tables.notes
    assert (
        "the dev split holds 1 row(s): every figure the search chooses on is measured on it, "
        "one example 100 points of accuracy; give a larger dev split (a dev file, or more "
        "training rows to carve it from)"
    ) in tables.notes
    write_csv(tmp_path / "big.csv", REVIEWS)  # 6 dev rows of 60: fewer than 10, still warned
    notes = own(tmp_path, {"train": "big.csv"}).notes
    assert any(
        n.startswith("the dev split holds 6 row(s): ") and "one example 17 points" in n
        for n in notes
    )
    assert not any(
        "dev split holds" in n for n in own(tmp_path, {"train": "big.csv", "dev": "big.csv"}).notes
    )


def test_a_pair_row_missing_either_text_is_skipped_and_counted(tmp_path):
    """A pair task's row without its first or its second text teaches nothing: both skipped
    alike, and counted in one note."""
    (tmp_path / "p.csv").write_text(
        "q1,q2,dup\nwho,why,yes\n,how,no\nhow, ,yes\nwhat,when,no\n", encoding="utf-8"
    )
    tables = own(
        tmp_path,
        {"train": "p.csv", "dev": "p.csv", "text": "q1", "text_pair": "q2", "label": "dup"},
    )
    assert tables.train["text"].to_pylist() == ["who", "what"]
    note = (
        f"{tmp_path / 'p.csv'}: skipped 2 row(s) whose first or second text ('q1', 'q2') is empty"
    )
    assert note in tables.notes


@pytest.mark.parametrize(
    ("header", "cells", "columns"),
    [
        (",review,sentiment", "{i},{text},{label}", ["Unnamed: 0", "review", "sentiment"]),
        (
            "review,sentiment,,",
            "{text},{label},,",
            ["review", "sentiment", "Unnamed: 2", "Unnamed: 3"],
        ),
    ],
)
def test_columns_without_a_name_are_read_under_the_parsers_name(tmp_path, header, cells, columns):
    """pandas' index column (its header cell empty), a spreadsheet's empty trailing columns:
    read, named as pandas names them, and left alone by a study that names its columns."""
    lines = [header] + [cells.format(i=i, text=t, label=y) for i, (t, y) in enumerate(REVIEWS)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = FileSource(path=tmp_path / "r.csv", format=FileFormat.CSV)
    assert read_source(source).column_names == columns
    tables = own(tmp_path, {"train": "r.csv", "dev": "r.csv"})
    assert tables.train["text"].to_pylist() == [t for t, _ in REVIEWS]
