"""What ``autoprumux init`` learns from data (trainers.data.inspect): the columns it infers and
why, the labels' balance, the token lengths (sampled with the seed) and the max_seq_length that
holds 99% of the rows whole."""

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
from fixtures import make_tiny_model

from autoprumux.core.data_spec import FileSource, file_format
from autoprumux.core.errors import DataError
from trainers.data.inspect import (
    TokenLengths,
    infer_columns,
    label_balance,
    propose_max_seq_length,
    token_lengths,
)
from trainers.data.tables import read_source


def read_csv(path: Path, lines: list[str]) -> pa.Table:
    """``lines`` (header first) written as a CSV file and read as ``init`` reads it."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return read_source(FileSource(path=path, format=file_format(path)))


def reviews(tmp_path: Path) -> pa.Table:
    """An id, a review and its sentiment (pos where the review says good)."""
    rows = [
        f"{i},review {i} was {'good' if i % 3 else 'bad'} and long,{'pos' if i % 3 else 'neg'}"
        for i in range(60)
    ]
    return read_csv(tmp_path / "reviews.csv", ["id,review,sentiment", *rows])


def test_a_review_file_gives_its_text_and_its_label_and_says_why(tmp_path):
    columns = infer_columns(reviews(tmp_path), "reviews.csv")
    assert (columns.text, columns.text_pair, columns.label) == ("review", "", "sentiment")
    label, text = columns.reasons
    assert label == "label: 'sentiment' (2 distinct values, named like a label)"
    # "review 7 was good and long": the mean of the 60 reviews' lengths, by hand
    mean = sum(len(f"review {i} was {'good' if i % 3 else 'bad'} and long") for i in range(60)) / 60
    assert text == f"text: 'review' (the longest text column, {mean:,.0f} characters on average)"


def test_an_unnamed_label_is_the_column_of_fewest_values_and_the_others_are_named(tmp_path):
    """Neither 'stars' nor 'shop' is named like a label: the one with fewer values wins, and
    the other is offered; the id (one value a row) and the text are never labels."""
    lines = ["id,body,shop,stars"] + [
        f"{i},a rather long body of text number {i},shop{i % 4},{i % 3 + 1}" for i in range(40)
    ]
    columns = infer_columns(read_csv(tmp_path / "s.csv", lines), "s.csv")
    assert (columns.text, columns.label) == ("body", "stars")
    assert columns.reasons[0] == (
        "label: 'stars' (3 distinct values, the fewest values of the columns that could be); "
        "also possible: shop (give --label to choose)"
    )


def test_a_named_label_wins_over_a_column_of_fewer_values(tmp_path):
    lines = ["flag,text,category"] + [f"{i % 2},some words here {i},c{i % 5}" for i in range(50)]
    columns = infer_columns(read_csv(tmp_path / "c.csv", lines), "c.csv")
    assert columns.label == "category"
    assert "also possible: flag" in columns.reasons[0]


def test_numbers_are_not_text(tmp_path):
    """A column of long numbers (an id, a timestamp) is longer than a short text, but is not
    one."""
    lines = ["stamp,note,label"] + [f"{1700000000000 + i},ok {i},{i % 2}" for i in range(20)]
    assert infer_columns(read_csv(tmp_path / "n.csv", lines), "n.csv").text == "note"


def test_a_json_lines_file_of_mixed_values_is_inspected_as_text(tmp_path):
    """0/1 labels with one "1", a review that is a bare number: read as text (they were JSON
    values, which no Arrow kernel counts), so 2 labels and the review as the text."""
    records: list[dict[str, object]] = [
        {"review": f"review number {i}", "label": i % 2} for i in range(30)
    ]
    records[3]["label"] = "1"
    records[4]["review"] = 12345
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    columns = infer_columns(read_source(FileSource(path=path, format=file_format(path))), "m")
    assert (columns.text, columns.label) == ("review", "label")
    assert columns.reasons[0] == "label: 'label' (2 distinct values, named like a label)"


def test_columns_of_no_countable_values_are_neither_text_nor_label(tmp_path):
    """A JSON key that is null on every line (Arrow's null type), a dictionary (a categorical
    Parquet column) and a map: no traceback, and only the dictionary is a label."""
    table = pa.table(
        {
            "note": pa.nulls(20),
            "review": [f"review number {i}" for i in range(20)],
            "grade": pa.array(["a", "b"] * 10).dictionary_encode(),
            "meta": pa.array([{"k": 1}] * 20, pa.map_(pa.string(), pa.int64())),
        }
    )
    columns = infer_columns(table, "t")
    assert (columns.text, columns.label) == ("review", "grade")
    assert columns.reasons[0] == (
        "label: 'grade' (2 distinct values, the fewest values of the columns that could be)"
    )


def test_two_columns_named_as_a_pair_make_a_pair_task_unless_a_text_is_given(tmp_path):
    lines = ["id,question1,question2,is_duplicate"] + [
        f"{i},what is thing {i} ?,why is thing {i} ?,{i % 2}" for i in range(30)
    ]
    table = read_csv(tmp_path / "q.csv", lines)
    columns = infer_columns(table, "q.csv")
    assert (columns.text, columns.text_pair, columns.label) == (
        "question1",
        "question2",
        "is_duplicate",
    )
    assert columns.reasons[1].startswith("text, text_pair: 'question1', 'question2' (a pair task")
    single = infer_columns(table, "q.csv", text="question2")
    assert (single.text, single.text_pair) == ("question2", "")


def test_a_given_second_text_makes_a_pair_with_the_longest_other_text(tmp_path):
    lines = ["claim,evidence,verdict"] + [
        f"claim {i},a much longer piece of evidence {i},{'yes' if i % 2 else 'no'}"
        for i in range(20)
    ]
    columns = infer_columns(read_csv(tmp_path / "p.csv", lines), "p.csv", text_pair="claim")
    assert (columns.text, columns.text_pair, columns.label) == ("evidence", "claim", "verdict")
    assert columns.reasons[-1] == "text_pair: 'claim' (given: a pair task)"


def test_no_plausible_label_is_one_line_asking_for_it(tmp_path):
    lines = ["id,text"] + [f"{i},text number {i}" for i in range(100)]
    with pytest.raises(DataError) as err:
        infer_columns(read_csv(tmp_path / "x.csv", lines), "x.csv")
    assert str(err.value) == (
        "x.csv: no column looks like a label (2 to 50 distinct values, and at least 5 times as "
        "many rows as values); name it with --label (its columns: id, text)"
    )


def test_a_column_given_that_is_not_there_lists_the_columns(tmp_path):
    with pytest.raises(
        DataError,
        match=r"^r.csv: has no column 'body' \(--text\); its columns: "
        r"id, review, sentiment$",
    ):
        infer_columns(reviews(tmp_path), "r.csv", text="body")
    with pytest.raises(DataError, match="given as both a text and the label"):
        infer_columns(reviews(tmp_path), "r.csv", text="review", label="review")


def test_label_balance_counts_each_id():
    counts = label_balance(pa.chunked_array([[0, 2, 2, 1], [2, 0]]), ["a", "b", "c"])
    assert [(c.name, c.count) for c in counts] == [("a", 2), ("b", 1), ("c", 3)]
    assert [c.share for c in counts] == [2 / 6, 1 / 6, 3 / 6]


# -- token lengths ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from trainers.model.checkpoints import load_tokenizer

    return load_tokenizer(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


def texts(short: int, long: int) -> pa.Table:
    return pa.table({"text": ["the film was very good"] * short + ["bad " * 300] * long})


def test_the_proposed_length_holds_99_percent_of_the_rows(tokenizer):
    """99 rows of 5 words and 1 of 300: the smallest length holding the 99 is the answer, and
    the one long row is the 1% truncated."""
    short = len(tokenizer("the film was very good")["input_ids"])  # 5 words + [CLS], [SEP]
    assert short == 7
    lengths = token_lengths(texts(99, 1), tokenizer)
    assert lengths.lengths == (7,) * 99 + (302,) and not lengths.sampled
    assert propose_max_seq_length(lengths, max_positions=512) == 32
    assert lengths.share_longer_than(32) == pytest.approx(0.01)
    # 3 long rows in 100: 97% fit in 32 tokens, and every row only in 512 ...
    three = token_lengths(texts(97, 3), tokenizer)
    assert propose_max_seq_length(three, max_positions=512) == 512
    # ... but a model of 64 positions takes at most 64 (3% truncated there)
    assert propose_max_seq_length(three, max_positions=64) == 64
    assert three.share_longer_than(64) == pytest.approx(0.03)


def test_pairs_count_both_texts_and_their_separators(tokenizer):
    table = pa.table({"text": ["what is it ?"], "text_pair": ["the film was good"]})
    # [CLS] 4 tokens [SEP] 4 tokens [SEP]
    assert token_lengths(table, tokenizer).lengths == (11,)


def test_large_data_are_sampled_with_the_seed(tokenizer):
    rng = random.Random(1)
    table = pa.table({"text": [" ".join(["good"] * rng.randint(1, 40)) for _ in range(500)]})
    first = token_lengths(table, tokenizer, sample_rows=100, seed=3)
    assert first.sampled and (len(first.lengths), first.rows) == (100, 500)
    assert token_lengths(table, tokenizer, sample_rows=100, seed=3) == first
    # the sample is the seeded draw of rows, every one tokenized whole
    rows = sorted(random.Random(3).sample(range(500), 100))
    expected = sorted(len(table["text"][k].as_py().split()) + 2 for k in rows)
    assert list(first.lengths) == expected


def test_quantiles_and_truncated_shares_by_hand():
    lengths = TokenLengths(tuple(range(1, 101)), 100)  # 1, 2, ..., 100 tokens
    assert (lengths.quantile(0.5), lengths.quantile(0.95), lengths.quantile(0.99)) == (50, 95, 99)
    assert lengths.share_longer_than(32) == 0.68
    assert propose_max_seq_length(lengths, 512) == 128  # 64 holds 64%, 128 all
    assert propose_max_seq_length(lengths, 100, choices=(32, 64, 128)) == 64  # 128 > positions


# -- what the sweep of init on users' files found ----------------------------------------------


def test_a_label_column_of_lists_is_refused_as_multi_label_without_label_given(tmp_path):
    """JSON Lines of one label in a list each: the loader's refusal, not "no column looks like
    a label" (a nested column has no countable values)."""
    path = tmp_path / "m.jsonl"
    lines = [json.dumps({"text": f"review number {i}", "label": [i % 2]}) for i in range(30)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        infer_columns(read_source(FileSource(path=path, format=file_format(path))), "m.jsonl")
    assert str(err.value) == (
        "m.jsonl: column 'label' holds lists of labels; multi-label classification is not "
        "supported (one label per row)"
    )


def test_a_header_that_looks_like_data_is_warned(tmp_path):
    """A file without a header line: its first row is read as the names; the label column is
    then named after one of its values, and the text column after a sentence."""
    rows = [f"review {i} was {'good' if i % 2 else 'bad'} and long,{i % 2}" for i in range(40)]
    table = read_csv(tmp_path / "h.csv", ["a gorgeous and moving film about a family,1", *rows])
    columns = infer_columns(table, "h.csv", header_row=True)
    assert columns.label == "1"
    assert columns.notes == (
        "the first line was read as the header, and looks like data (the label column's name "
        "'1' is one of its values): if the file has no header line, its first row was taken "
        "for the column names and is not trained on; add a header line naming the columns",
    )
    long_name = "the text of the review as the customer wrote it on the site"
    columns = infer_columns(
        read_csv(tmp_path / "s.csv", [f"{long_name},label", *rows]), "s.csv", header_row=True
    )
    assert columns.notes[0].startswith(
        "the first line was read as the header, and looks like data (the text column's name is a "
        "sentence ('the text of the review as the custome...'))"
    )
    # a header line of names says nothing; nor does a JSON or Parquet file's keys
    assert infer_columns(reviews(tmp_path), "r.csv", header_row=True).notes == ()
    assert infer_columns(table, "h.csv").notes == ()


def test_unnamed_columns_are_never_inferred_but_may_be_given(tmp_path):
    """pandas' index column (numbers, one a row) and a spreadsheet's two empty trailing
    columns: left out of the inference, named in a note by position, and read when given."""
    rows = [f"{i},review {i} is here,{'pos' if i % 2 else 'neg'},," for i in range(40)]
    table = read_csv(tmp_path / "u.csv", [",review,sentiment,,", *rows])
    assert table.column_names == ["Unnamed: 0", "review", "sentiment", "Unnamed: 3", "Unnamed: 4"]
    columns = infer_columns(table, "u.csv")
    assert (columns.text, columns.label) == ("review", "sentiment")
    assert columns.notes == (
        "column(s) 1, 4, 5 ignored: the header names none (an index column, a spreadsheet's "
        "empty columns); to read one, give its name as read ('Unnamed: 0') with --text or "
        "--label",
    )
    given = infer_columns(table, "u.csv", text="Unnamed: 0")
    assert given.text == "Unnamed: 0"
    assert "1 ignored" not in " ".join(given.notes) and "4, 5 ignored" in given.notes[0]


def read_tsv(path: Path, rows: list[list[str]]) -> pa.Table:
    """``rows`` (header first) written as a TSV file and read as ``init`` reads it."""
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return read_source(FileSource(path=path, format=file_format(path)))


def test_a_second_text_left_out_is_a_note_naming_text_pair(tmp_path):
    """A sentence-pair file whose columns are not named as a pair: the longer text is trained on
    alone, and a note names the other text and the option that makes the pair."""
    lefts = [f"the cat number {i} sat on the long mat" for i in range(30)]  # 31-32 characters
    rights = [f"a dog {i} slept" for i in range(30)]  # 13-14 characters
    relations = ["entails", "contradicts", "neutral"]
    rows = [[lefts[i], rights[i], relations[i % 3]] for i in range(30)]
    table = read_tsv(tmp_path / "lr.tsv", [["left", "right", "relation"], *rows])
    columns = infer_columns(table, "lr.tsv")
    assert (columns.text, columns.text_pair, columns.label) == ("left", "", "relation")
    mean = sum(len(r) for r in rights) / 30  # (10 * 13 + 20 * 14) / 30 = 13.67
    assert f"{mean:,.0f}" == "14"
    assert columns.notes == (
        "column 'right' also holds text (14 characters on average) and is left out; for a "
        "sentence-pair task give --text-pair right",
    )
    # a name that needs quoting in a shell is quoted
    spaced = infer_columns(
        read_tsv(tmp_path / "s.tsv", [["left", "right side", "relation"], *rows]), "s.tsv"
    )
    assert spaced.notes[0].endswith("give --text-pair 'right side'")
    # the texts given (one or both): the user chose, nothing to say
    assert infer_columns(table, "lr.tsv", text="left").notes == ()
    assert infer_columns(table, "lr.tsv", text_pair="right").notes == ()


def test_ids_numbers_and_categories_left_out_are_no_note(tmp_path):
    """Beside the text and the label: a number, an id of letters and digits, a short code of
    four values and a two-word name (one a row): none is a free text."""
    rows = ["num,key,shop,author,review,label"] + [
        f"{i},q-{i:05d},shop {i % 4},Ann Lee{i},a rather long review of thing {i},{i % 2}"
        for i in range(40)
    ]
    columns = infer_columns(read_csv(tmp_path / "t.csv", rows), "t.csv")
    assert (columns.text, columns.label) == ("review", "label")
    assert columns.notes == ()


def test_why_a_column_was_chosen_whatever_its_name_holds(tmp_path):
    """The comment written beside a column: the reason's parenthesis, not a parenthesis of the
    column's name ('Sentiment (0/1)'), nor the others offered."""
    lines = ["flag,text,Sentiment (0/1)"] + [
        f"{i % 3},some words here {i},{i % 2}" for i in range(50)
    ]
    columns = infer_columns(read_csv(tmp_path / "o.csv", lines), "o.csv")
    assert columns.reasons[0] == (
        "label: 'Sentiment (0/1)' (2 distinct values, the fewest values of the columns that "
        "could be); also possible: flag (give --label to choose)"
    )
    assert (
        columns.why_of("label")
        == "2 distinct values, the fewest values of the columns that could be"
    )
    assert columns.why_of("text").startswith("the longest text column, ")
    pair = infer_columns(
        read_csv(
            tmp_path / "q.csv",
            ["question1,question2,label"] + [f"a (b) {i},c {i},{i % 2}" for i in range(20)],
        ),
        "q.csv",
    )
    assert pair.why_of("text") == (
        "a pair task: two text columns named as a pair; give --text to train on one text"
    )


def test_unknown_tokens_are_counted_without_the_special_ones(tokenizer):
    """The tiny vocabulary knows "the film was good"; "xyzzy" and "ü" are [UNK] each: 2 of 6
    tokens (the rows' [CLS] and [SEP] not counted), for a pair 2 of 8."""
    lengths = token_lengths(pa.table({"text": ["the film xyzzy", "was good ü"]}), tokenizer)
    assert (lengths.tokens, lengths.unknown, lengths.unknown_share) == (6, 2, 2 / 6)
    pairs = pa.table({"text": ["the film xyzzy"], "text_pair": ["was good ü very good"]})
    assert (token_lengths(pairs, tokenizer).tokens, token_lengths(pairs, tokenizer).unknown) == (
        8,
        2,
    )
