"""``autoprumux classify`` on the SST-2 dev split autoprumux ships (``dev.tsv.xz``), as the
commands page shows it, with a tiny model trained here."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.study import load_study
from trainers.trial.run import TrialSpec, run_trial

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DEV = ROOT / "autoprumux" / "embedded" / "glue" / "SST-2" / "dev.tsv.xz"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tiny_sources):
    """The tiny study's (1, 0): an SST-2 model folder (its vocabulary is the fixtures' few
    words, so real sentences are mostly [UNK]: what is tested is the reading, not accuracy)."""
    from fixtures import study_text

    root = tmp_path_factory.mktemp("classify")
    (root / "sst2.toml").write_text(study_text(*tiny_sources))
    result = run_trial(TrialSpec(study=load_study(root / "sst2.toml"), n=1, sparsity=0.0))
    return result.artifact_path


def test_classify_reads_the_shipped_dev_tsv_xz(model_folder, tmp_path, capsys):
    assert main(["classify", "--model", model_folder, "--input", str(SHIPPED_DEV), "--json"]) == 0
    packed = json.loads(capsys.readouterr().out)
    plain = tmp_path / "dev.tsv"
    plain.write_bytes(lzma.decompress(SHIPPED_DEV.read_bytes()))
    assert main(["classify", "--model", model_folder, "--input", str(plain), "--json"]) == 0
    unpacked = json.loads(capsys.readouterr().out)
    # the same 872 labelled rows as the decompressed table, so the same answers and accuracy
    assert packed["inputs"] == 872 and packed["label_column"] == "label"
    assert packed["predictions"] == unpacked["predictions"]
    assert packed["accuracy"] == unpacked["accuracy"] is not None
    assert packed["input"] == str(SHIPPED_DEV)
