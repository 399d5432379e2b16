"""The trained model as people use it: the self-describing folder, ``classify``, ``export``
and ``autoprumux.load_model`` on models trained by real (tiny) trials."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures import one_line_error
from glue_tables import preset_tables

from autoprumux.cli.main import main
from autoprumux.core.errors import FieldError
from autoprumux.core.study import load_study
from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import load_text_classifier, onnx_providers
from trainers.deploy.model_folder import INFO_FILE, NotAModelError, read_info
from trainers.model.checkpoints import load_classifier
from trainers.trial.run import TrialSpec, run_trial


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sources):
    """The tiny study's (1, 0) and (2, 0.5), and a QNLI (1, 0): results and GLUE folder."""
    from fixtures import study_text

    model, glue = tiny_sources
    root = tmp_path_factory.mktemp("deploy")
    (root / "sst2.toml").write_text(study_text(model, glue))
    (root / "qnli.toml").write_text(study_text(model, glue).replace('"sst2"', '"qnli"'))
    sst2, qnli = load_study(root / "sst2.toml"), load_study(root / "qnli.toml")
    results = {
        (n, s): run_trial(TrialSpec(study=sst2, n=n, sparsity=s, device="cpu"))
        for n, s in ((1, 0.0), (2, 0.5))
    }
    results["qnli"] = run_trial(TrialSpec(study=qnli, n=1, sparsity=0.0, device="cpu"))
    return results, glue, root


def _dev(glue: Path, task: str = "sst2") -> SimpleNamespace:
    """The task's dev split: ``texts`` (a tuple of one or two texts each) and ``labels`` (ids)."""
    table = preset_tables(glue, task).dev
    columns = [c for c in ("text", "text_pair") if c in table.column_names]
    texts = list(zip(*(table[c].to_pylist() for c in columns), strict=True))
    return SimpleNamespace(texts=texts, labels=table["label"].to_pylist())


def test_a_trial_folder_describes_itself(trained):
    results, _, root = trained
    result = results[(2, 0.5)]
    folder = Path(result.artifact_path)
    info = read_info(folder)
    study = load_study(root / "sst2.toml")
    assert (info.task, info.n, info.sparsity) == ("sst2", 2, 0.5)
    assert info.labels == ("negative", "positive")
    assert info.text_columns == ("sentence",) and info.label_column == "label"
    assert info.max_length == 16 and info.dev_examples == 64
    assert info.dev_accuracy == result.accuracy
    assert info.achieved_sparsity == result.achieved_sparsity
    assert info.parameters == result.parameters and info.throughput == result.throughput
    assert info.recipe == study.recipe and info.study_file == str((root / "sst2.toml").resolve())
    assert Path(info.teacher).name.startswith("teacher-n2-")
    assert read_info(Path(results[(1, 0.0)].artifact_path)).teacher is None
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    card = (folder / "README.md").read_text()
    assert "(2, 0.5)" in card and f"{result.accuracy:.4f}" in card
    assert "autoprumux classify --model" in card
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("point", [(1, 0.0), (2, 0.5)])
def test_classifying_the_dev_set_gives_the_recorded_accuracy(trained, point):
    results, glue, _ = trained
    dev = _dev(glue)
    model = load_text_classifier(results[point].artifact_path, device="cpu")
    predicted = model.predict([t[0] for t in dev.texts])
    labels = [model.info.labels.index(p.label) for p in predicted]
    right = sum(a == b for a, b in zip(labels, dev.labels, strict=True))
    assert right / len(dev.labels) == results[point].accuracy


def test_groups_are_consecutive_inputs_and_padding_outputs_are_dropped(trained):
    results, glue, _ = trained
    folder = results[(2, 0.5)].artifact_path
    model = load_text_classifier(folder, device="cpu")
    texts = [t[0] for t in _dev(glue).texts[:3]]
    predicted = model.predict(texts)
    assert len(predicted) == 3
    # the reference: the classifier itself on the rows [a, b] and [c, all-padding]
    reference = load_classifier(folder)
    encoded = model.tokenizer(
        texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt"
    )
    padded = {k: torch.cat([v, torch.zeros_like(v[:1])]) for k, v in encoded.items()}
    with torch.no_grad():
        logits = reference(padded["input_ids"], padded["attention_mask"], padded["token_type_ids"])
    expected = torch.softmax(logits[:3], -1).numpy()
    got = np.array([[p.probabilities[label] for label in model.info.labels] for p in predicted])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [p.label for p in predicted] == [model.info.labels[i] for i in expected.argmax(-1)]


def test_the_python_api_is_one_call(trained):
    import autoprumux

    results, _, _ = trained
    predicted = autoprumux.load_model(results[(1, 0.0)].artifact_path).predict(
        ["good film", "awful plot"]
    )
    assert len(predicted) == 2
    for p in predicted:
        assert set(p.probabilities) == {"negative", "positive"}
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert p.label == max(p.probabilities, key=p.probabilities.get)


def test_onnx_export_round_trip(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    results, glue, _ = trained
    folder = results[(2, 0.5)].artifact_path
    out = tmp_path / "model.onnx"
    done = export_model(folder, ExportFormat.ONNX, out)
    assert done.max_abs_diff <= 1e-4 and done.checked_groups == (1, 3)
    import onnx

    proto = onnx.load(str(out))
    assert proto.opset_import[0].version >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a dynamic G
    texts = [t[0] for t in _dev(glue).texts]
    eager = load_text_classifier(folder, device="cpu").classify(texts)
    exported = load_text_classifier(out).classify(texts)
    assert [p.label for p in exported.predictions] == [p.label for p in eager.predictions]
    for a, b in zip(exported.predictions, eager.predictions, strict=True):
        assert a.probabilities["positive"] == pytest.approx(b.probabilities["positive"], abs=1e-5)
    assert not list(tmp_path.glob(".*.tmp*"))


def test_torchscript_export_classifies_alone(trained, tmp_path):
    results, glue, _ = trained
    folder = results[(1, 0.0)].artifact_path
    out = tmp_path / "model.pt"
    assert export_model(folder, ExportFormat.TORCHSCRIPT, out).max_abs_diff <= 1e-4
    texts = [t[0] for t in _dev(glue).texts]
    exported = load_text_classifier(out, device="cpu")
    assert exported.info == read_info(Path(folder))
    right = sum(
        exported.info.labels.index(p.label) == y
        for p, y in zip(exported.predict(texts), _dev(glue).labels, strict=True)
    )
    assert right / len(texts) == results[(1, 0.0)].accuracy


def test_classify_command_on_the_dev_table(trained, capsys):
    results, glue, _ = trained
    folder = results[(2, 0.5)].artifact_path
    dev_tsv = glue / "SST-2" / "dev.tsv"
    assert main(["classify", "--model", folder, "--input", str(dev_tsv), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["inputs"] == 64 and document["accuracy"] == results[(2, 0.5)].accuracy
    assert [p["line"] for p in document["predictions"]] == list(range(2, 66))
    assert document["label_column"] == "label" and document["truncated"] == 0
    assert main(["classify", "--model", folder, "--input", str(dev_tsv)]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert rows[0] == "line\tlabel\tnegative\tpositive" and len(rows) == 65
    assert f"accuracy {results[(2, 0.5)].accuracy:.4f}" in captured.err
    assert "inputs/s" in captured.err


def test_classify_pairs_reads_both_columns(trained, capsys):
    results, glue, _ = trained
    folder = results["qnli"].artifact_path
    dev_tsv = glue / "QNLI" / "dev.tsv"
    assert main(["classify", "--model", folder, "--input", str(dev_tsv), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["accuracy"] == results["qnli"].accuracy
    assert set(document["predictions"][0]["probabilities"]) == {"entailment", "not_entailment"}


def test_long_inputs_are_truncated_and_counted(trained, tmp_path, capsys):
    results, _, _ = trained
    lines = ["good film", "the film was " + "very " * 30 + "good", "bad", "dull " * 20]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    folder = results[(1, 0.0)].artifact_path
    assert main(["classify", "--model", folder, "--input", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["truncated"] == 2 and document["inputs"] == 4


def test_bad_inputs_are_one_line_naming_file_and_line(trained, tmp_path, capsys):
    results, _, _ = trained
    folder = results[(1, 0.0)].artifact_path
    pair_folder = results["qnli"].artifact_path
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"good film\nna\xefve\n")
    table = tmp_path / "table.tsv"
    table.write_text("text\tlabel\ngood\t1\n")
    bad_label = tmp_path / "labels.tsv"
    bad_label.write_text("sentence\tlabel\ngood\t1\nbad\tmaybe\n")
    one = tmp_path / "one.txt"
    one.write_text("what is it ?\tit is a film\nno tab here\n")
    classify = ["classify", "--model"]
    one_line_error(capsys, [*classify, folder, "--input", str(empty)], "empty.txt", "no inputs")
    one_line_error(capsys, [*classify, folder, "--input", str(latin)], "latin.txt", "line 2")
    one_line_error(
        capsys, [*classify, folder, "--input", str(table)], "table.tsv", "line 1", "'sentence'"
    )
    one_line_error(
        capsys, [*classify, folder, "--input", str(bad_label)], "labels.tsv", "line 3", "maybe"
    )
    one_line_error(capsys, [*classify, pair_folder, "--input", str(one)], "one.txt", "line 2")
    one_line_error(capsys, [*classify, folder, "--input", str(one), "--column", "x"], "--column")
    one_line_error(capsys, [*classify, str(tmp_path), "--input", str(one)], "not an autoprumux")
    one_line_error(
        capsys, [*classify, folder, "--input", str(tmp_path / "nope.txt")], "--input", "nope.txt"
    )


def test_foreign_or_damaged_files_are_refused(trained, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    foreign = tmp_path / "foreign.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(foreign))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    sentences = tmp_path / "in.txt"
    sentences.write_text("good\n")
    for path, expected in ((foreign, "did not export"), (junk, "not a readable ONNX")):
        one_line_error(
            capsys,
            ["classify", "--model", str(path), "--input", str(sentences)],
            str(path),
            expected,
        )


def test_export_errors_are_one_line(trained, tmp_path, capsys, monkeypatch):
    results, _, _ = trained
    folder = results[(1, 0.0)].artifact_path
    export = ["export", "--model", folder, "--format"]
    one_line_error(capsys, [*export, "onnx", "--out", str(tmp_path / "m.pt")], "--out", ".onnx")
    (tmp_path / "afile").write_text("")
    under_a_file = tmp_path / "afile" / "m.pt"
    err = one_line_error(capsys, [*export, "torchscript", "--out", str(under_a_file)])
    assert err == (
        f"autoprumux: error: --out: {under_a_file} cannot be written: {tmp_path / 'afile'} is "
        "not a folder"
    )
    err = one_line_error(capsys, [*export, "onnx", "--out", str(tmp_path)])
    assert err == f"autoprumux: error: --out: {tmp_path} is a folder; give a file name"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it had been uninstalled
    one_line_error(
        capsys,
        [*export, "onnx", "--out", str(tmp_path / "m.onnx")],
        "pip install onnxruntime",
    )
    assert not (tmp_path / "m.onnx").exists()


def test_export_makes_the_missing_folders_of_out(trained, tmp_path, capsys):
    """As init, report and measure do: ``--out new/sub/m.pt`` makes ``new/sub``."""
    results, _, _ = trained
    out = tmp_path / "new" / "sub" / "m.pt"
    argv = ["export", "--model", results[(1, 0.0)].artifact_path, "--format", "torchscript"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.pt"]


def test_export_refuses_a_model_without_ffns_as_transformers(trained, tmp_path, capsys):
    """A (1, s) model whose every FFN was pruned away has uniform widths (0), but a removed
    block passes its input through, which no transformers layer does: one line, exit 2, and
    neither the checkpoint nor the folder made for it is left."""
    import dataclasses
    import shutil

    from trainers.model.checkpoints import save_model
    from trainers.model.classifier import Classifier

    results, _, _ = trained
    folder = tmp_path / "no-ffn"
    shutil.copytree(results[(1, 0.0)].artifact_path, folder)
    arch = load_classifier(folder).arch
    save_model(Classifier(dataclasses.replace(arch, intermediate=(0,) * arch.num_layers)), folder)
    out = tmp_path / "ex" / "tf"
    argv = ["export", "--model", str(folder), "--format", "transformers", "--out", str(out)]
    assert one_line_error(capsys, argv) == (
        "autoprumux: error: a pruned model (FFN width 0 in layers 0, 1: the block removed) has "
        "no transformers counterpart; only an N = 1, s = 0 model is saved in transformers' format"
    )
    assert not (tmp_path / "ex").exists()


def test_classify_reads_json_lines_and_parquet_as_the_tsv(trained, tmp_path, capsys):
    """The dev split as JSON Lines (labels as names) and as Parquet (ids): the same inputs,
    labels and accuracy as its .tsv, each prediction keyed by its line (JSON Lines) or row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    results, glue, _ = trained
    folder = results[(2, 0.5)].artifact_path
    rows = [line.split("\t") for line in (glue / "SST-2" / "dev.tsv").read_text().splitlines()]
    names = ("negative", "positive")
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"sentence": s, "label": names[int(y)]}) + "\n" for s, y in rows[1:])
    )
    parquet = tmp_path / "dev.parquet"
    pq.write_table(
        pa.table({"label": [int(y) for _, y in rows[1:]], "sentence": [s for s, _ in rows[1:]]}),
        parquet,
    )
    documents = {}
    for path in (glue / "SST-2" / "dev.tsv", jsonl, parquet):
        assert main(["classify", "--model", folder, "--input", str(path), "--json"]) == 0
        documents[path.suffix] = json.loads(capsys.readouterr().out)
    tsv = documents[".tsv"]
    for document in (documents[".jsonl"], documents[".parquet"]):
        assert document["inputs"] == 64 and document["label_column"] == "label"
        assert document["accuracy"] == tsv["accuracy"] == results[(2, 0.5)].accuracy
        assert [p["label"] for p in document["predictions"]] == [
            p["label"] for p in tsv["predictions"]
        ]
        assert [p["line"] for p in document["predictions"]] == list(range(1, 65))


def test_classify_skips_rows_without_text_and_leaves_them_out_of_the_accuracy(
    trained, tmp_path, capsys
):
    results, _, _ = trained
    path = tmp_path / "in.csv"
    path.write_text('sentence,label\ngood film,1\n"  ",0\nbad plot,0\n')
    assert main(["classify", "--model", results[(1, 0.0)].artifact_path, "--input", str(path)]) == 0
    captured = capsys.readouterr()
    rows = [row.split("\t") for row in captured.out.splitlines()]
    assert [row[0] for row in rows] == ["line", "2", "4"]  # line 3 has no text: no row
    right = (rows[1][1] == "positive") + (rows[2][1] == "negative")
    assert captured.err.rstrip().endswith(
        f"; 1 blank line(s) or row(s) without text skipped; accuracy {right / 2:.4f} against "
        "column 'label'"
    )


def test_classify_reads_stdin_in_a_real_process(trained):
    results, _, _ = trained
    folder = results[(1, 0.0)].artifact_path
    done = subprocess.run(
        [sys.executable, "-m", "autoprumux", "classify", "--model", folder, "--json"],
        input=b"good film\n\nawful plot\n",
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    assert [p["line"] for p in document["predictions"]] == [1, 3]
    assert document["blank_lines"] == 1


def test_older_folders_without_info_are_explained(trained, tmp_path, capsys):
    results, _, _ = trained
    old = tmp_path / "old"
    old.mkdir()
    for name in ("architecture.json", "model.safetensors"):
        (old / name).write_bytes((Path(results[(1, 0.0)].artifact_path) / name).read_bytes())
    one_line_error(capsys, ["classify", "--model", str(old)], INFO_FILE, "rerun")


@pytest.mark.gpu
def test_classify_on_cuda_matches_cpu(trained):
    results, glue, _ = trained
    folder = results[(2, 0.5)].artifact_path
    texts = [t[0] for t in _dev(glue).texts]
    on_gpu = load_text_classifier(folder, device="cuda")
    assert next(on_gpu.backend.model.parameters()).device.type == "cuda"
    cpu = load_text_classifier(folder, device="cpu").predict(texts)
    gpu = on_gpu.predict(texts)  # bf16 autocast: labels may flip only where p is near 0.5
    agree = sum(a.label == b.label for a, b in zip(cpu, gpu, strict=True)) / len(texts)
    assert agree >= 0.95


CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"
GPU_BUILD = [CUDA_EP, CPU_EP]  # what onnxruntime-gpu offers; the CPU build lacks CUDA_EP
CPU_BUILD = ["AzureExecutionProvider", CPU_EP]
ON_CUDA_0 = [(CUDA_EP, {"device_id": "0"}), CPU_EP]  # the CPU runs what CUDA lacks


@pytest.mark.parametrize(
    ("device", "cuda_devices", "available", "providers"),
    [
        ("auto", 1, GPU_BUILD, ON_CUDA_0),  # ran on the CPU before: only "cuda..." asked CUDA
        ("auto", 0, GPU_BUILD, [CPU_EP]),  # a CPU machine: auto stays on the CPU
        ("auto", 2, CPU_BUILD, [CPU_EP]),  # an onnxruntime without CUDA: the CPU (logged)
        ("cpu", 1, GPU_BUILD, [CPU_EP]),
        ("cuda", 1, GPU_BUILD, ON_CUDA_0),
        ("cuda:1", 2, GPU_BUILD, [(CUDA_EP, {"device_id": "1"}), CPU_EP]),
    ],
)
def test_onnx_runtime_providers_follow_the_device(device, cuda_devices, available, providers):
    assert onnx_providers(device, cuda_devices, available) == providers


@pytest.mark.parametrize(
    ("device", "cuda_devices", "available", "message"),
    [
        ("cuda", 0, GPU_BUILD, "cuda: no CUDA device is available here; use cpu (or auto)"),
        ("cuda:2", 2, GPU_BUILD, "cuda:2: this machine has 2 CUDA device(s), cuda:0.."),
        (
            "cuda",
            1,
            CPU_BUILD,
            "cuda: this onnxruntime has no CUDAExecutionProvider (it has: "
            "AzureExecutionProvider, CPUExecutionProvider); install onnxruntime-gpu, or use cpu",
        ),
        ("gpu", 1, GPU_BUILD, "'gpu' is not one of: auto, cpu, cuda or cuda:INDEX"),
    ],
)
def test_onnx_runtime_refuses_a_device_it_cannot_run_on(device, cuda_devices, available, message):
    with pytest.raises(FieldError) as err:
        onnx_providers(device, cuda_devices, available)
    assert (err.value.field, err.value.message) == ("--device", message)


def test_an_onnx_file_under_auto_asks_onnx_runtime_for_cuda(tmp_path, monkeypatch, caplog):
    """On a machine with CUDA (faked: this one may have none) and onnxruntime-gpu (faked), the
    session is asked for CUDA first; where CUDA does not start, the fall-back is logged."""
    asked = []

    class Session:
        def __init__(self, path, options, providers):
            asked.append(providers)

        def get_providers(self):
            return [CPU_EP]  # as where ONNX Runtime's CUDA libraries do not load

        def get_modelmeta(self):
            return types.SimpleNamespace(custom_metadata_map={})

    class Options:
        log_severity_level = 0

    fake = types.SimpleNamespace(
        SessionOptions=Options, InferenceSession=Session, get_available_providers=lambda: GPU_BUILD
    )
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    monkeypatch.setattr("trainers.deploy.inference.cuda_device_count", lambda: 1)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    with caplog.at_level(logging.WARNING), pytest.raises(NotAModelError, match="did not export"):
        load_text_classifier(model)  # device="auto"
    assert asked == [ON_CUDA_0]
    assert f"{model}: runs on the CPU: ONNX Runtime could not start CUDA here" in caplog.messages


@pytest.mark.gpu
def test_an_exported_onnx_model_runs_on_cuda_under_auto(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if CUDA_EP not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (onnxruntime-gpu)")
    results, glue, _ = trained
    out = export_model(results[(1, 0.0)].artifact_path, ExportFormat.ONNX, tmp_path / "m.onnx")
    exported = load_text_classifier(out.path)
    assert exported.backend.session.get_providers()[0] == CUDA_EP
    texts = [t[0] for t in _dev(glue).texts]
    cpu = load_text_classifier(out.path, device="cpu").predict(texts)
    agree = sum(a.label == b.label for a, b in zip(cpu, exported.predict(texts), strict=True))
    assert agree >= 0.95 * len(texts)
