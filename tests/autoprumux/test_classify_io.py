"""``autoprumux classify``'s inputs: compressed files are read as the file their name gives
without the compression suffix (the shipped ``dev.tsv.xz`` is a GLUE table)."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import pytest

from autoprumux.cli.classify_io import InputError, InputSpec, read_inputs

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
