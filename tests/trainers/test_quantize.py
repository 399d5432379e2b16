"""int8 deployment on the CPU (``export --precision int8``, trainers/deploy/quantize.py) on a
model trained by a real (tiny) trial: a multiplexed and pruned (2, 0.5)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures import one_line_error
from glue_tables import preset_tables

from autoprumux.cli.main import main
from autoprumux.core.study import load_study
from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import BUNDLE_KEY, PredictedLabel, load_text_classifier
from trainers.deploy.model_folder import (
    INFO_FILE,
    ModelInfo,
    PrecisionScore,
    model_card,
    read_info,
)
from trainers.model.checkpoints import load_classifier
from trainers.trial.run import TrialSpec, run_trial

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from trainers.deploy import quantize  # noqa: E402  (needs onnx and onnxruntime)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_sources):
    """A trained (2, 0.5) folder, its fp32 ONNX file, and its int8 export (``Quantized``)."""
    from fixtures import study_text

    model, glue = tiny_sources
    root = tmp_path_factory.mktemp("int8")
    (root / "sst2.toml").write_text(study_text(model, glue))
    study = load_study(root / "sst2.toml")
    result = run_trial(TrialSpec(study=study, n=2, sparsity=0.5, device="cpu"))
    folder = Path(result.artifact_path)
    fp32 = export_model(folder, ExportFormat.ONNX, root / "fp32.onnx").path
    int8 = quantize.export_int8(folder, root / "int8.onnx")
    return SimpleNamespace(result=result, folder=folder, fp32=fp32, int8=int8, glue=glue)


def _dev(glue: Path) -> tuple[list[str], list[int]]:
    table = preset_tables(glue, "sst2").dev
    return table["text"].to_pylist(), table["label"].to_pylist()


def _labels(path: Path | str, texts: list[str]) -> list[str]:
    return [p.label for p in load_text_classifier(path, device="cpu").predict(texts)]


def test_int8_labels_equal_fp32_on_the_samples_and_nearly_on_dev(exported):
    samples = list(quantize.CHECK_SENTENCES)
    assert _labels(exported.int8.path, samples) == _labels(exported.fp32, samples)
    texts, gold = _dev(exported.glue)
    fp32, int8 = _labels(exported.fp32, texts), _labels(exported.int8.path, texts)
    # dynamic int8 kept 98.1-99.0 % of the fp32 labels of the five sst2-tiny models (872 dev
    # sentences each); on these 64, allow 2 flips (97 %), so 2 / 64 of accuracy at most
    assert sum(a != b for a, b in zip(fp32, int8, strict=True)) <= 2
    names = load_text_classifier(exported.fp32, device="cpu").info.labels
    right = [sum(names.index(p) == y for p, y in zip(ls, gold, strict=True)) for ls in (fp32, int8)]
    dev = exported.int8.dev
    # the reported figures are the files' own accuracies on the model's 64 dev examples, and
    # the fp32 file's is the trial's (classifying the dev split in order reproduces it)
    assert (dev.examples, dev.metric_label) == (64, "accuracy")
    assert (dev.fp32, dev.int8) == (right[0] / 64, right[1] / 64)
    assert dev.fp32 == exported.result.accuracy
    assert abs(dev.delta_points) <= 100 * 2 / 64
    made = exported.int8.made
    # dynamic passes where the CPU has VNNI; without it, 8-bit weights saturate ORT's u8s8
    # kernels and 7-bit ones pass (2.73 points lost, 0.39 gained, on a 2-core AMD EPYC)
    assert made.recipe in (quantize.DYNAMIC, quantize.DYNAMIC_7BIT)
    assert [c.recipe for c in made.tried] == [quantize.DYNAMIC, made.recipe][: len(made.tried)]
    passed = made.tried[-1]
    assert passed.samples == len(quantize.CHECK_SENTENCES) == 16
    # the samples this barely trained model decides (top probability 0.2 ahead), if any
    said = load_text_classifier(exported.fp32, device="cpu").predict(samples)
    assert passed.decided == sum(abs(p.probabilities["positive"] - 0.5) >= 0.1 for p in said)
    assert (passed.flipped, passed.calibration) == ((), 512)  # all train rows (under 1,024)
    assert passed.cost <= quantize.MAX_COST


def test_int8_file_carries_the_fp32_metadata_and_its_own(exported):
    fp32 = {e.key: e.value for e in onnx.load(str(exported.fp32)).metadata_props}
    proto = onnx.load(str(exported.int8.path))
    int8 = {e.key: e.value for e in proto.metadata_props}
    assert BUNDLE_KEY in fp32 and {k: int8[k] for k in fp32} == fp32
    assert set(int8) - set(fp32) == {"precision", "fp32_ops", "dev", "int8_recipe"}
    assert int8["precision"] == "int8"
    recipe = exported.int8.made.recipe  # either dynamic one (the CPU decides: above)
    assert json.loads(int8["int8_recipe"]) == {"method": recipe.method.value, "fp32_layers": []}
    assert json.loads(int8["dev"]) == exported.int8.dev.to_json()
    kept = json.loads(int8["fp32_ops"])
    assert kept == list(exported.int8.made.fp32_ops)
    nodes = {n.name: n for n in proto.graph.node}
    # the ones left in fp32: the attention's activation-by-activation MatMuls (2 layers) and
    # the CLS Gather; every MatMul with a weight is int8 (MatMulInteger), none is listed
    assert sum(nodes[name].op_type == "MatMul" for name in kept) == 4
    assert all(nodes[name].op_type in ("MatMul", "Gather") for name in kept)
    weights = {t.name for t in proto.graph.initializer}
    float_matmuls = [n for n in proto.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert not [n.name for n in float_matmuls if set(n.input) & weights]
    assert sum(n.op_type == "MatMulInteger" for n in proto.graph.node) >= 8
    assert load_text_classifier(exported.int8.path, device="cpu").precision == "int8"
    assert load_text_classifier(exported.fp32, device="cpu").precision == "fp32"


def test_int8_file_is_under_four_tenths_of_the_fp32_weights(exported):
    def weight_bytes(path: Path) -> int:
        return sum(len(t.raw_data) for t in onnx.load(str(path)).graph.initializer)

    assert exported.int8.bytes < exported.int8.fp32_bytes == exported.fp32.stat().st_size
    assert weight_bytes(exported.int8.path) <= 0.4 * weight_bytes(exported.fp32)


def test_classify_runs_the_int8_file_like_the_folder(exported, tmp_path, capsys):
    samples = list(quantize.CHECK_SENTENCES)
    lines = tmp_path / "samples.txt"
    lines.write_text("\n".join(samples) + "\n")
    argv = ["classify", "--model", str(exported.int8.path), "--input", str(lines), "--json"]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in document["predictions"]] == _labels(exported.folder, samples)


def test_the_folder_records_each_precision_and_its_card_lists_them(exported):
    info = read_info(exported.folder)
    dev, recipe = exported.int8.dev, str(exported.int8.made.recipe)
    runtime = "onnxruntime-cpu"
    assert info.precisions == {
        "fp32": PrecisionScore(dev=dev.fp32, dev_examples=64, runtime=runtime),
        "int8": PrecisionScore(dev=dev.int8, dev_examples=64, runtime=runtime, recipe=recipe),
    }
    card = (exported.folder / "README.md").read_text()
    assert "| precision | runtime | dev accuracy | vs fp32 |" in card
    assert f"| int8 | {runtime} ({recipe}) | {dev.int8:.4f} on the first 64 dev examples |" in card
    assert f"{dev.delta_points:+.2f} points" in card


def test_precisions_round_trip_and_older_folders_load(exported):
    info = read_info(exported.folder)
    data = json.loads(json.dumps(info.to_json()))
    assert ModelInfo.from_json(data, "x") == info
    del data["precisions"]  # as a folder written before precisions
    older = ModelInfo.from_json(data, "x")
    assert older.precisions == {} and older == dataclasses.replace(info, precisions={})
    assert "## Precisions" not in model_card(older) and "## Precisions" in model_card(info)
    data["precisions"] = {"int8": {"dev": 0.5}}
    with pytest.raises(Exception, match="dev, dev_examples, runtime and, for int8, recipe"):
        ModelInfo.from_json(data, "x")
    # a folder from before recipes: its int8 entry reads with none
    data["precisions"] = {"int8": {"dev": 0.5, "dev_examples": 64, "runtime": "onnxruntime-cpu"}}
    assert ModelInfo.from_json(data, "x").precisions["int8"].recipe == ""


def _said(label: str, probabilities: tuple[float, float]) -> PredictedLabel:
    return PredictedLabel(
        label=label, probabilities=dict(zip(("negative", "positive"), probabilities, strict=True))
    )


def test_a_flip_counts_only_where_fp32_decides(exported):
    """Hand-made predictions: fp32 decides a sample when its top probability leads the next
    by 0.2 or more; int8 may flip the others; the cost is on the calibration examples."""
    info = load_text_classifier(exported.fp32, device="cpu").info
    fp32_said = {
        "good": _said("positive", (0.1, 0.9)),  # margin 0.8: decided
        "meh": _said("positive", (0.45, 0.55)),  # margin 0.1: undecided
        "bad": _said("negative", (0.7, 0.3)),  # margin 0.4: decided
        "ok": _said("positive", (0.41, 0.59)),  # margin 0.18: undecided
    }
    flipped = {name: _said("negative" if p.label == "positive" else "positive", (0.5, 0.5))
               for name, p in fp32_said.items()}  # fmt: skip

    def model(said: dict[str, PredictedLabel]) -> SimpleNamespace:
        return SimpleNamespace(info=info, predict=lambda texts: [said[t] for t in texts])

    # calibration: "good" is positive (label 1), "bad" negative (0): fp32 gets both right
    calibration = quantize.DevSet(texts=("good", "bad"), labels=(1, 0))
    reference = quantize._Reference.of(model(fp32_said), list(fp32_said), calibration)
    assert reference.decided == [True, False, True, False]
    undecided_flips = {**fp32_said, "meh": flipped["meh"], "ok": flipped["ok"]}
    check = reference.check(quantize.DYNAMIC, model(undecided_flips))
    assert (check.flipped, check.decided, check.samples, check.cost) == ((), 2, 4, 0.0)
    assert check.accepted
    decided_flip = {**fp32_said, "bad": flipped["bad"]}
    check = reference.check(quantize.DYNAMIC, model(decided_flip))
    # "bad" flipped: a decided sample, and half the calibration examples now wrong
    assert (check.flipped, check.cost) == (("bad",), 0.5) and not check.accepted
    assert str(check) == (
        "dynamic: 1 of 2 decided sample labels changed (first: 'bad'), -50.00 accuracy points "
        "on 2 calibration examples"
    )


def test_seven_bit_weights_take_over_where_eight_bit_dynamic_is_refused(
    exported, tmp_path, monkeypatch
):
    """8-bit dynamic refused (as where a CPU without VNNI saturates its products): the next
    recipe is the same dynamic quantization with every int8 weight in [-64, 64], as fast a
    file (the same int8 kernels), named as such in the file and the folder."""
    passes = quantize.RecipeCheck.accepted.fget
    monkeypatch.setattr(
        quantize.RecipeCheck,
        "accepted",
        property(lambda c: c.recipe is not quantize.DYNAMIC and passes(c)),
    )
    folder = tmp_path / "model"
    shutil.copytree(exported.folder, folder)
    said: list[str] = []
    done = quantize.export_int8(folder, tmp_path / "seven.onnx", said.append)
    assert [c.recipe for c in done.made.tried] == [quantize.DYNAMIC, quantize.DYNAMIC_7BIT]
    assert said[2].startswith("int8: dynamic, 7-bit weights: ") and said[2].endswith(": kept")
    assert not any("timing" in line for line in said) and done.speed is None

    def int8_weights(path: Path) -> np.ndarray:
        proto = onnx.load(str(path))
        tables = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer]
        return np.concatenate([t.ravel() for t in tables if t.dtype == np.int8])

    quantize.quantize_file(exported.fp32, tmp_path / "eight.onnx")  # the table's dynamic file
    seven, eight = int8_weights(done.path), int8_weights(tmp_path / "eight.onnx")
    assert np.abs(seven.astype(int)).max() == 64  # ORT's reduced range: [-64, 64]
    assert np.abs(eight.astype(int)).max() == 127  # 8 bits: each row's largest weight at 127
    meta = {e.key: e.value for e in onnx.load(str(done.path)).metadata_props}
    assert json.loads(meta["int8_recipe"]) == {"method": "dynamic-7bit", "fp32_layers": []}
    assert read_info(folder).precisions["int8"].recipe == "dynamic, 7-bit weights"
    assert not read_info(folder).precisions["int8"].static_int8  # the table's row holds
    assert _labels(done.path, list(quantize.CHECK_SENTENCES)) == _labels(
        exported.fp32, list(quantize.CHECK_SENTENCES)
    )


@pytest.mark.slow  # static calibration and the ladder: about 8 s on 2 cores
def test_static_qdq_takes_over_where_dynamic_is_refused(exported, tmp_path, monkeypatch, capsys):
    """Dynamic refused (as if it cost too much): the static recipe keeping the worst-quantizing
    weight layer in fp32 is tried next, and its file names the layer, as a module of the model,
    and leaves that layer's MatMul in fp32."""
    passes = quantize.RecipeCheck.accepted.fget
    monkeypatch.setattr(
        quantize.RecipeCheck,
        "accepted",
        property(lambda c: c.recipe.method is quantize.Int8Method.STATIC_QDQ and passes(c)),
    )
    from trainers.deploy import static_int8

    calibrated: list[int] = []  # the examples the static scales read: [groups, N, length]
    quantize_static_file = static_int8.quantize_static_file

    def counting(prepared, out, feeds, *args, **kwargs):  # type: ignore[no-untyped-def]
        calibrated.append(sum(b["input_ids"].shape[0] * b["input_ids"].shape[1] for b in feeds()))
        return quantize_static_file(prepared, out, feeds, *args, **kwargs)

    monkeypatch.setattr(static_int8, "quantize_static_file", counting)
    folder = tmp_path / "model"
    shutil.copytree(exported.folder, folder)
    said: list[str] = []
    done = quantize.export_int8(folder, tmp_path / "made" / "static.onnx", said.append)
    recipe = done.made.recipe
    # checked on the first 1,024 train examples (the fixture has 512), scales from the first 256
    assert [c.calibration for c in done.made.tried] == [512] * 3
    # the ranking's pass and the file's: each from the first 256 (in groups of N = 2)
    assert [examples - quantize.STATIC_EXAMPLES for examples in calibrated] == [0, 0]
    assert [line.split(":")[1].strip() for line in said] == [
        "fp32 file exported; quantizing (calibration",
        "dynamic",
        "dynamic, 7-bit weights",
        "static QDQ, in fp32",
        "scoring both files on 64 dev examples",
        "timing the static file against dynamic int8, side by side",
    ]
    assert all(line.endswith(": refused; trying the next recipe") for line in said[1:3])
    assert said[3].endswith(": kept")
    assert recipe.method is quantize.Int8Method.STATIC_QDQ
    tried = [c.recipe.method.value for c in done.made.tried]
    assert tried == ["dynamic", "dynamic-7bit", "static-qdq"]
    assert len(recipe.fp32_layers) == 1  # the first static recipe passed
    (layer,) = recipe.fp32_layers
    modules = dict(load_classifier(folder, torch.device("cpu")).named_modules())
    # a Linear, or the attention whose query, key and value Linears run as one MatMul
    assert any(isinstance(m, torch.nn.Linear) for m in modules[layer].modules())
    proto = onnx.load(str(done.path))
    meta = {e.key: e.value for e in proto.metadata_props}
    assert json.loads(meta["int8_recipe"]) == {"method": "static-qdq", "fp32_layers": [layer]}
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "MatMulInteger" not in ops
    # exactly one weight MatMul is left in fp32 (the kept layer); the others read int8
    weights = {t.name for t in proto.graph.initializer}
    kept_weight_ops = [
        name for name in done.made.fp32_ops
        if any(n.name == name and n.op_type == "MatMul" and set(n.input) & weights
               for n in proto.graph.node)
    ]  # fmt: skip
    assert len(kept_weight_ops) == 1
    info = read_info(folder)
    assert info.precisions["int8"].recipe == f"static QDQ, in fp32: {layer}"
    assert f"(static QDQ, in fp32: {layer})" in (folder / "README.md").read_text()
    assert abs(done.dev.delta_points) <= 100 * 3 / 64
    # timed against dynamic int8 of the same weights, the ratios recorded with the figure
    assert done.speed is not None and info.precisions["int8"].speed == done.speed
    assert 0 < done.speed.throughput < 10 and 0 < done.speed.latency < 10
    # exported again (the CLI, text then JSON): the same recipe's file is not timed again, and
    # the recorded ratios are printed, in words and in JSON
    argv = ["export", "--model", str(folder), "--format", "onnx", "--precision", "int8"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "text.onnx")]) == 0
    out, err = capsys.readouterr()
    assert "int8: timing" not in err and "int8: scoring both files" in err
    words = (
        f"timed against dynamic int8 of the same weights, side by side: "
        f"{done.speed.throughput:.2f} x its examples/s, {done.speed.latency:.2f} x its batch-1 "
        "latency"
    )
    assert words in out
    assert main([*argv, "--out", str(tmp_path / "json.onnx"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["speed_vs_dynamic"] == {
        "throughput": done.speed.throughput,
        "latency": done.speed.latency,
    }


def test_a_read_only_model_folder_is_exported_all_the_same(exported, tmp_path, monkeypatch):
    """Recording the figures in the folder is a courtesy: where the folder cannot be written
    (a shared, read-only models folder), the int8 file is made and the progress says so."""
    import errno

    import trainers.deploy.model_folder as model_folder

    def read_only(path, text):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(model_folder, "write_text_atomic", read_only)
    said: list[str] = []
    done = quantize.export_int8(exported.folder, tmp_path / "int8.onnx", said.append)
    assert done.path.is_file() and _labels(done.path, ["a fine film"]) == _labels(
        exported.int8.path, ["a fine film"]
    )
    assert said[-1] == (
        "int8: the figures are not recorded in the model folder "
        f"({exported.folder / 'autoprumux.json'}: cannot be written: Read-only file system)"
    )


def _refused(capsys, argv: list[str]) -> tuple[list[str], str]:  # type: ignore[no-untyped-def]
    """``autoprumux argv`` exits 2 after its work: its progress lines on stderr, then the
    error in one line."""
    assert main(argv) == 2
    *progress, error = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("autoprumux: error: ") and all(
        line.startswith("int8: ") for line in progress
    ), (progress, error)
    return progress, error


def test_no_recipe_passing_refuses_the_file(exported, tmp_path, monkeypatch, capsys):
    """Every recipe refused: progress a line per recipe, then one line naming each one's
    figures; no file, no temporary, nor the folders made for it, the model folder as it was."""
    folder = tmp_path / "model"
    shutil.copytree(exported.folder, folder)
    before = (folder / INFO_FILE).read_text()
    monkeypatch.setattr(quantize, "MAX_COST", -1.0)  # int8 would have to gain a point
    argv = ["export", "--model", str(folder), "--format", "onnx", "--precision", "int8"]
    out = tmp_path / "new" / "int8" / "m.onnx"
    progress, message = _refused(capsys, [*argv, "--out", str(out)])
    assert f"error: {out}: no int8 recipe keeps" in message
    assert message.endswith("; nothing written")
    # the export, each recipe's check as it was known, then nothing more (no dev scoring)
    assert progress[0] == "int8: fp32 file exported; quantizing (calibration: 512 train examples)"
    assert progress[1].startswith("int8: dynamic: 0 of ")
    assert progress[2].startswith("int8: dynamic, 7-bit weights: 0 of ")
    assert all(line.endswith(": refused; trying the next recipe") for line in progress[1:])
    assert message.count(" calibration examples") == len(progress) - 1
    assert "accuracy: dynamic: 0 of" in message and "+0.00 accuracy points on 512" in message
    # then static keeping the worst 1, 2, 4 ... weight layers (as many as the model has), each
    # list the one before and the next worst
    kept = [part.split(": ")[0].split(", ") for part in message.split("static QDQ, in fp32: ")[1:]]
    assert [len(layers) for layers in kept] == [1, 2, 4][: len(kept)] and len(kept) >= 2
    assert all(kept[i + 1][: len(kept[i])] == kept[i] for i in range(len(kept) - 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (folder / INFO_FILE).read_text() == before


@pytest.mark.parametrize(
    ("fmt", "precision", "out", "allowed"),
    [
        ("onnx", "int4", "m.onnx", "fp32, int8"),
        ("onnx", "bf16", "m.onnx", "fp32, int8"),
        ("torchscript", "int8", "m.pt", "one of: fp32 (with --format torchscript)"),
        ("transformers", "int8", "m", "one of: fp32 (with --format transformers)"),
    ],
)
def test_a_precision_the_format_cannot_write_is_one_line(
    exported, tmp_path, capsys, fmt, precision, out, allowed
):
    argv = ["export", "--model", str(exported.folder), "--format", fmt, "--precision", precision]
    one_line_error(capsys, [*argv, "--out", str(tmp_path / out)], "--precision", allowed)
    assert not list(tmp_path.iterdir())


def test_int8_without_onnxruntime_says_how_to_install_it(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it had been uninstalled
    argv = ["export", "--model", str(exported.folder), "--format", "onnx", "--precision", "int8"]
    out = ["--out", str(tmp_path / "m.onnx")]
    one_line_error(capsys, [*argv, *out], "onnxruntime", "pip install onnxruntime")
    one_line_error(capsys, [*argv, "--out", str(tmp_path / "m.pt")], "pip install")
    assert not list(tmp_path.iterdir())


def test_a_recipe_onnx_runtime_cannot_make_ends_the_ladder_in_one_line(
    exported, tmp_path, monkeypatch, capsys
):
    """Dynamic refused, then the static ranking raises (as ORT's quantizers may, with types of
    their own): one line naming dynamic's figures and what failed; no file."""
    from trainers.deploy import static_int8

    monkeypatch.setattr(quantize, "MAX_COST", -1.0)

    def broken(*args: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : no kernel\nstack trace")

    monkeypatch.setattr(static_int8, "rank_weight_matmuls", broken)
    argv = ["export", "--model", str(exported.folder), "--format", "onnx", "--precision", "int8"]
    out = ["--out", str(tmp_path / "m.onnx")]
    progress, message = _refused(capsys, [*argv, *out])
    assert len(progress) == 3  # the export, both dynamic recipes' checks
    assert "no int8 recipe keeps" in message and "accuracy: dynamic: 0 of" in message
    assert message.endswith(
        "; the next recipe could not be made (RuntimeError: [ONNXRuntimeError] : 1 : FAIL : no "
        "kernel); nothing written"
    )
    assert not list(tmp_path.iterdir())
