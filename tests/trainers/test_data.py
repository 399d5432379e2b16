"""GLUE presets read as a study reads them, on real SST-2 and on pair-task fixtures;
tokenization and its cache; subsets; batches."""

import lzma
import random
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from glue_tables import preset_encoded, preset_tables
from transformers import AutoTokenizer

from autoprumux.core.errors import DataError
from autoprumux.core.study import load_study
from trainers.data.splits import GROUPED_BATCHES, Encoded, batches, endless_batches
from trainers.data.tables import _subset
from trainers.data.token_cache import encoded_table

ROOT = Path(__file__).resolve().parents[2]
# Real GLUE SST-2, beside the project (../shared/data/glue); CI lays shared/ out the same way.
GLUE = ROOT.parent / "shared" / "data" / "glue"


def test_real_sst2_splits():
    tables = preset_tables(GLUE)
    train, dev = tables.train, tables.dev
    assert (train.num_rows, sum(train["label"].to_pylist())) == (67_349, 37_569)
    assert (dev.num_rows, sum(dev["label"].to_pylist())) == (872, 444)
    assert train["text"][0].as_py() == "hide new secretions from the parental units"
    assert train["label"][0].as_py() == 0
    assert tables.label_names == ("negative", "positive") and tables.notes == ()


def test_pair_tasks_and_their_label_maps(tiny_sources):
    _, glue = tiny_sources
    mnli = preset_tables(glue, "mnli")  # dev: dev_matched.tsv; labels named in the files
    assert mnli.dev["label"].to_pylist()[:3] == [0, 1, 2] and mnli.is_pair
    assert mnli.label_names == ("entailment", "neutral", "contradiction")  # the hub's order
    qnli = preset_tables(glue, "qnli")
    assert qnli.train["label"].to_pylist()[:2] == [0, 1]
    assert qnli.train["text"][0].as_py() == "what is it ?"
    qqp = preset_tables(glue, "qqp")
    assert qqp.dev["label"].to_pylist()[:2] == [0, 1]
    assert (qqp.dev["text"][0].as_py(), qqp.dev["text_pair"][0].as_py()) == (
        "who is it ?",
        "why is it ?",
    )
    assert qqp.label_names == ("not_duplicate", "duplicate")


def test_pairs_tokenize_as_two_segments(tiny_sources):
    model, glue = tiny_sources
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    _, encoded = preset_encoded(glue, tokenizer, 16, "qqp")
    assert encoded.input_ids.shape == (10, 16)
    ids, types = encoded.input_ids[0].tolist(), encoded.token_type_ids[0].tolist()
    first_sep = ids.index(tokenizer.sep_token_id)
    assert set(types[: first_sep + 1]) == {0} and types[first_sep + 1] == 1


@pytest.mark.parametrize(("task", "split"), [("sst2", "dev"), ("qqp", "dev"), ("mnli", "train")])
def test_encoding_equals_the_tokenizers_own_tensors(tiny_sources, task, split):
    model, glue = tiny_sources
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    table = getattr(preset_tables(glue, task), split)
    encoded = encoded_table(table, tokenizer, 8)  # short: sentences and pairs are truncated
    second = table["text_pair"].to_pylist() if "text_pair" in table.column_names else None
    reference = tokenizer(
        table["text"].to_pylist(),
        second,
        padding="max_length",
        truncation=True,
        max_length=8,
        return_tensors="pt",
        return_token_type_ids=True,
    )
    # kept compact (int32 ids, int8 masks); a batch drawn from it is int64
    assert encoded.input_ids.dtype == torch.int32 and encoded.attention_mask.dtype == torch.int8
    batch = encoded.rows(torch.arange(len(encoded)))
    assert batch.input_ids.dtype == batch.attention_mask.dtype == torch.int64
    assert torch.equal(batch.input_ids, reference["input_ids"])
    assert torch.equal(batch.attention_mask, reference["attention_mask"])
    assert torch.equal(batch.token_type_ids, reference["token_type_ids"])
    assert encoded.attention_mask.sum(dim=1).max() == 8  # truncated rows are there
    assert encoded.labels.tolist() == table["label"].to_pylist()


def test_the_token_cache_is_written_once_and_read_back(tiny_sources, tmp_path):
    model, glue = tiny_sources
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    table = preset_tables(glue, "qqp").dev
    made = encoded_table(table, tokenizer, 12, tmp_path, "qqp/dev")
    (cached,) = tmp_path.glob("tokens-*.npz")
    again = encoded_table(table.slice(0, 1), tokenizer, 12, tmp_path, "qqp/dev")  # the cache's
    assert len(again) == len(made) == 10
    assert all(
        torch.equal(getattr(made, name), getattr(again, name))
        for name in ("input_ids", "attention_mask", "token_type_ids", "labels")
    )
    # another length, another tokenizer setting or other data: another file
    encoded_table(table, tokenizer, 16, tmp_path, "qqp/dev")
    encoded_table(table, tokenizer, 12, tmp_path, "qqp/train")
    assert len(list(tmp_path.glob("tokens-*.npz"))) == 3 and cached.is_file()


def test_subsets_are_reproducible():
    table = pa.table({"text": [str(i) for i in range(100)], "label": [i % 2 for i in range(100)]})
    assert _subset(table, 5, "first", 0)["text"].to_pylist() == [str(i) for i in range(5)]
    assert _subset(table, 10, "random", 3).equals(_subset(table, 10, "random", 3))
    assert not _subset(table, 10, "random", 3).equals(_subset(table, 10, "random", 4))
    # the draw of earlier releases: sorted indices of random.Random(seed).sample
    drawn = sorted(random.Random(3).sample(range(100), 10))
    assert _subset(table, 10, "random", 3)["text"].to_pylist() == [str(i) for i in drawn]
    assert _subset(table, 0, "random", 0) is table and _subset(table, 500, "first", 0) is table


def test_batches_and_resumed_order(tiny_sources):
    model, glue = tiny_sources
    _, encoded = preset_encoded(glue, AutoTokenizer.from_pretrained(str(model)), 16)
    sizes = [len(b) for b in batches(encoded, 24, drop_last=False)]
    assert sizes == [24, 24, 16]
    full = endless_batches(encoded, 16, seed=1)
    first_six = [next(full).labels for _ in range(6)]  # 4 batches per epoch: crosses an epoch
    resumed = endless_batches(encoded, 16, seed=1, start_step=4)
    assert all(
        torch.equal(a, b)
        for a, b in zip(first_six[4:], [next(resumed).labels for _ in range(2)], strict=True)
    )


def test_a_training_split_smaller_than_a_batch_is_refused():
    three = Encoded(*(torch.zeros(3, 4, dtype=torch.long) for _ in range(3)), torch.zeros(3))
    with pytest.raises(DataError) as err:
        next(endless_batches(three, 4, seed=0))
    assert str(err.value) == "the training split: its 3 examples cannot fill one batch of 4"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sentence\tlabel\ngood film\t1\nbad\n", "line 3: column 'label' is empty"),
        (
            "sentence\tlabel\ngood film\t1\nbad\t0\t1\n",
            "cannot be read as TSV: Error tokenizing data. C error: Expected 2 fields in line 3, "
            "saw 3 (a ragged row: quote fields that hold the separator)",
        ),
        (
            "sentence\tlabel\ngood film\t7\n",
            "line 2: label '7' is not one of the task's labels: 0, 1",
        ),
        (
            "sentence\tlabel\ngood film\tyes\n",
            "line 2: label 'yes' is not one of the task's labels: 0, 1",
        ),
        ("text\tlabel\ngood film\t1\n", "has no column 'sentence'; its columns: text, label"),
    ],
)
def test_malformed_files(tmp_path, content, message):
    (tmp_path / "SST-2").mkdir()
    path = tmp_path / "SST-2" / "train.tsv"
    path.write_text(content)
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError) as err:
        preset_tables(tmp_path)
    # the engine raises the core's DataError: the file is its source, the message follows
    assert err.value.source == str(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_glue_folder_without_the_task(tmp_path):
    with pytest.raises(
        DataError, match="MNLI/train.tsv: no such file; a GLUE folder holds <TASK>/train.tsv"
    ):
        preset_tables(tmp_path, "mnli")


def test_the_tiny_study_reads_the_sst2_inside_autoprumux():
    study = load_study(ROOT / "studies" / "sst2-tiny.toml")
    shipped = study.resolve(study.data.glue_dir)
    assert shipped == ROOT / "autoprumux" / "embedded" / "glue"
    assert not (shipped / "SST-2" / "train.tsv").exists()  # read from train.tsv.xz
    ours, real = preset_tables(shipped), preset_tables(GLUE)
    assert ours.train.equals(real.train) and ours.dev.equals(real.dev)


def test_a_split_is_read_from_its_tsv_else_its_xz(tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    (tmp_path / "SST-2" / "dev.tsv.xz").write_bytes(lzma.compress(b"sentence\tlabel\nfine\t1\n"))
    assert preset_tables(tmp_path).dev.to_pydict() == {"text": ["fine"], "label": [1]}
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nplain\t0\n")
    assert preset_tables(tmp_path).dev.to_pydict() == {"text": ["plain"], "label": [0]}
    (tmp_path / "SST-2" / "train.tsv").unlink()
    (tmp_path / "SST-2" / "train.tsv.xz").write_bytes(b"not xz")
    with pytest.raises(DataError, match=r"SST-2/train.tsv.xz: cannot be read as TSV: "):
        preset_tables(tmp_path)
    truncated = lzma.compress(b"sentence\tlabel\n" + b"good film\t1\n" * 100)[:-20]
    (tmp_path / "SST-2" / "train.tsv.xz").write_bytes(truncated)
    with pytest.raises(DataError, match=r"SST-2/train.tsv.xz: cannot be read as TSV: "):
        preset_tables(tmp_path)


def _padded(lengths: list[int], width: int, left: bool = False) -> Encoded:
    """Examples of the given token counts (ids 1..), padded to ``width`` on the right (or left)."""
    real = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]  # [E, width]
    mask = real.flip(1) if left else real
    ids = (torch.arange(1, width + 1).repeat(len(lengths), 1) * mask).long()
    return Encoded(ids, mask.long(), torch.zeros_like(ids), torch.arange(len(lengths)))


def test_trimmed_batches_are_the_same_examples_cut_to_their_longest():
    lengths = [3, 7, 2, 5, 9, 1, 4, 6, 8, 2]
    data = _padded(lengths, 12)
    assert data.extents() == lengths
    assert data.to("cpu").extents() == lengths and data.truncated(5).extents() == [
        min(n, 5) for n in lengths
    ]
    full = list(batches(data, 4, torch.Generator().manual_seed(3), drop_last=False))
    cut = list(batches(data, 4, torch.Generator().manual_seed(3), drop_last=False, trim=True))
    assert [len(b) for b in cut] == [4, 4, 2]
    for whole, trimmed in zip(full, cut, strict=True):
        longest = max(lengths[i] for i in whole.labels.tolist())  # labels are the row numbers
        assert trimmed.input_ids.shape == (len(whole), longest)
        assert torch.equal(trimmed.input_ids, whole.input_ids[:, :longest])
        assert torch.equal(trimmed.attention_mask, whole.attention_mask[:, :longest])
        assert not whole.attention_mask[:, longest:].any()  # only padding was cut
    # resuming part-way through an epoch gives the same cut batches
    resumed = endless_batches(data, 4, seed=1, start_step=3, trim=True)
    endless = endless_batches(data, 4, seed=1, trim=True)
    expected = [next(endless) for _ in range(5)][3:]
    for a, b in zip(expected, [next(resumed) for _ in range(2)], strict=True):
        assert torch.equal(a.input_ids, b.input_ids)


def test_grouped_batches_pair_sentences_of_similar_length():
    lengths = [5, 1, 4, 2, 3, 6, 9, 7, 8, 12, 10, 11, 13]  # 6 batches of 2, one example left
    data = _padded(lengths, 14)
    plain = list(batches(data, 2, torch.Generator().manual_seed(3), trim=True))
    grouped = list(batches(data, 2, torch.Generator().manual_seed(3), trim=True, group_rows=1))
    # the epoch's whole batches draw the same 12 examples, now sorted into neighbouring pairs
    kept = sorted(lengths[i] for b in plain for i in b.labels.tolist())
    pairs = [sorted(lengths[i] for i in b.labels.tolist()) for b in grouped]
    assert sorted(pairs) == [kept[i : i + 2] for i in range(0, 12, 2)]
    assert [b.input_ids.shape[1] for b in grouped] == [pair[1] for pair in pairs]
    assert pairs != sorted(pairs) and pairs != sorted(pairs, reverse=True)  # shuffled batches
    # without a generator (evaluation) or without cutting, nothing is regrouped

    def rows(**options) -> list[list[int]]:  # type: ignore[no-untyped-def]
        return [b.labels.tolist() for b in batches(data, 2, **options)]

    assert (
        rows(trim=True, group_rows=1)
        == rows(trim=True)
        == [[0, 1], [2, 3], [4, 5]] + [[6, 7], [8, 9], [10, 11]]
    )
    shuffled = rows(generator=torch.Generator().manual_seed(3))
    assert rows(generator=torch.Generator().manual_seed(3), group_rows=1) == shuffled


def test_grouping_keeps_the_rows_a_multiplexed_model_mixes():
    """Rows of N = 2 are grouped by their longest sentence, each keeping its random pair."""
    lengths = [5, 1, 4, 2, 3, 6, 9, 7, 8, 12, 10, 11, 13, 14, 16, 15]  # 4 batches of 2 rows

    def epoch(group_rows: int) -> list[list[list[int]]]:  # batches of rows of row numbers
        drawn = batches(data, 4, torch.Generator().manual_seed(3), trim=True, group_rows=group_rows)
        return [[b.labels.tolist()[i : i + 2] for i in (0, 2)] for b in drawn]

    data = _padded(lengths, 16)
    plain, grouped = epoch(0), epoch(2)
    assert sorted(row for b in grouped for row in b) == sorted(row for b in plain for row in b)
    longest = sorted(max(lengths[i] for i in row) for b in plain for row in b)
    assert sorted(sorted(max(lengths[i] for i in row) for row in b) for b in grouped) == [
        longest[i : i + 2] for i in range(0, 8, 2)
    ]


def test_grouping_keeps_each_example_in_its_run_of_batches():
    lengths = torch.randint(
        1, 30, (3 * GROUPED_BATCHES,), generator=torch.Generator().manual_seed(0)
    )
    data = _padded(lengths.tolist(), 30)
    plain = [b.labels.item() for b in batches(data, 1, torch.Generator().manual_seed(5), trim=True)]
    grouped = [
        b.labels.item()
        for b in batches(data, 1, torch.Generator().manual_seed(5), trim=True, group_rows=1)
    ]
    assert grouped != plain
    for run in range(3):
        span = slice(run * GROUPED_BATCHES, (run + 1) * GROUPED_BATCHES)
        assert sorted(grouped[span]) == sorted(plain[span])
    # resuming part-way through an epoch gives the same grouped batches
    endless = endless_batches(data, 4, seed=1, trim=True, group_rows=1)
    resumed = endless_batches(data, 4, seed=1, start_step=30, trim=True, group_rows=1)
    expected = [next(endless) for _ in range(33)][30:]
    for a, b in zip(expected, [next(resumed) for _ in range(3)], strict=True):
        assert torch.equal(a.labels, b.labels) and torch.equal(a.input_ids, b.input_ids)


def test_left_padded_examples_are_not_cut():
    data = _padded([3, 2, 5], 8, left=True)
    assert data.extents() == [8, 8, 8]
    (batch,) = batches(data, 3, trim=True)
    assert torch.equal(batch.input_ids, data.input_ids)
