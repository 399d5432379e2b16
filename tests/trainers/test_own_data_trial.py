"""A study of its own data trains as its GLUE preset does: the embedded SST-2 re-dressed as a CSV
with other column names and string labels (neg/pos) gives the (1, 0) model the same dev accuracy
as ``task = "sst2"`` with the same seed, to the last example; the model folder, classify and the
ONNX export name the data's labels. A short run of the tiny study (all-MiniLM-L6-v2)."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from glue_tables import preset_tables

from autoprumux.core.study import load_study
from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import load_text_classifier
from trainers.deploy.model_folder import read_info
from trainers.trial.run import TrialSpec, run_trial

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = ROOT / "autoprumux" / "embedded" / "glue"
# short: a few seconds a training, on a subset drawn with the seed
SHORT = {"finetune_steps": "150", "checkpoint_every": "150"}
SUBSET = "max_train_examples = 2000\nmax_eval_examples = 300\n"


def tiny_study_text(data: str, study: str = 'task = "sst2"\nseed = 0') -> str:
    """The shipped tiny study with ``[study]`` and ``[data]`` replaced and short training."""
    text = (ROOT / "studies" / "sst2-tiny.toml").read_text()
    text = re.sub(r"\[study\]\n(.*\n)*?\n", f"[study]\n{study}\n\n", text, count=1)
    text = re.sub(r"\[data\]\n(.*\n)*?\n", f"[data]\n{data}{SUBSET}\n", text, count=1)
    for key, value in SHORT.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    return text


def redressed_sst2(folder: Path) -> None:
    """train.csv and dev.csv: SST-2's sentences as ``review``, ``sentiment`` neg or pos."""
    preset = preset_tables(EMBEDDED)
    for split, table in (("train", preset.train), ("dev", preset.dev)):
        names = pa.array(["neg", "pos"]).take(table["label"])
        pa_csv.write_csv(
            pa.table({"review": table["text"], "sentiment": names}), folder / f"{split}.csv"
        )


@pytest.mark.slow  # two short trainings: about 30 s on 2 cores
def test_sst2_as_a_csv_of_its_own_trains_to_the_same_accuracy(tmp_path):
    (tmp_path / "preset").mkdir()
    (tmp_path / "own").mkdir()
    preset_file = tmp_path / "preset" / "sst2.toml"
    preset_file.write_text(
        tiny_study_text('source = "glue_dir"\nglue_dir = "package:autoprumux/embedded/glue"\n')
    )
    redressed_sst2(tmp_path / "own")
    own_file = tmp_path / "own" / "reviews.toml"
    own_file.write_text(
        tiny_study_text(
            'train = "train.csv"\ndev = "dev.csv"\ntext = "review"\nlabel = "sentiment"\n',
            study="seed = 0",
        )
    )
    preset, own = load_study(preset_file), load_study(own_file)
    assert (preset.task, own.task) == ("sst2", "reviews")
    results = [
        run_trial(TrialSpec(study=s, n=1, sparsity=0.0, device="cpu")) for s in (preset, own)
    ]
    assert all(r.reason is None for r in results), [r.reason for r in results]
    assert results[0].accuracy == results[1].accuracy  # the same 300 dev sentences, the same model
    assert 0.6 < results[1].accuracy < 1.0  # and it learned something

    folder = Path(results[1].artifact_path)
    info = read_info(folder)
    assert info.labels == ("neg", "pos") and info.task == "reviews"
    assert info.text_columns == ("review",) and info.label_column == "sentiment"
    assert "`neg`, `pos`" in (folder / "README.md").read_text()
    texts = ["a gorgeous, moving film", "a dull and lifeless mess"]
    eager = load_text_classifier(folder, device="cpu").predict(texts)
    assert {p.label for p in eager} <= {"neg", "pos"}
    pytest.importorskip("onnxruntime")
    out = tmp_path / "reviews.onnx"
    export_model(folder, ExportFormat.ONNX, out)
    exported = load_text_classifier(out)
    assert exported.info.labels == ("neg", "pos")  # carried inside the .onnx file
    assert [p.label for p in exported.predict(texts)] == [p.label for p in eager]
