"""Every trained model evaluated on dev in each of its study's serving precisions after its
training (trainers/deploy/precisions.py, wired in trainers/trial/model_result.py), and the
serving device's precisions (trainers/runtime/device.py: serving_device, study_precisions)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from autoprumux.cli.main import main
from autoprumux.cli.outputs import format_trial
from autoprumux.core.errors import FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision, ServingDevice, check_precisions
from autoprumux.core.progress import Progress
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import ThroughputSection, load_study
from trainers.deploy import precisions as served
from trainers.deploy.export import ExportError
from trainers.deploy.model_folder import INFO_FILE, PrecisionScore, read_info
from trainers.model.checkpoints import load_classifier
from trainers.runtime.device import Engine, serving_device, study_precisions
from trainers.trial.run import TrialSpec, run_trial
from trainers.trial.services import TrialServices
from trainers.trial.trial_results import SpanTimer

FP32, BF16, FP16, INT8 = Precision.FP32, Precision.BF16, Precision.FP16, Precision.INT8
# a short recipe: its (1, 0.5) model scores about 61 of 64 dev examples in fp32, 62 in int8
# and bf16 here (figures that differ: the equalities below are not between saturated ones)
SHORT = {
    "finetune_steps": 20,
    "finetune_learning_rate": 1e-2,
    "pruning_steps": 10,
    "lagrangian_warmup_steps": 5,
    "post_pruning_steps": 10,
}


def _study_file(root: Path, sources: tuple[Path, Path], precisions: str = "") -> Path:
    """The tiny study with SHORT's recipe; ``precisions``: its [deploy] precisions (TOML)."""
    from fixtures import study_text

    root.mkdir(parents=True, exist_ok=True)
    path = root / "sst2.toml"
    text = study_text(*sources, **SHORT)
    if precisions:
        text = re.sub(r"(?m)^\[deploy\]\n(precisions = .*\n)?", "", text)
        text += f"\n[deploy]\nprecisions = {precisions}\n"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sources):
    """A (1, 0.5) trial served in fp32 and int8 (its teacher, the (1, 0) model, too)."""
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("served")
    study = load_study(_study_file(root, tiny_sources))
    spec = TrialSpec(study=study, n=1, sparsity=0.5, device="cpu", precisions=(FP32, INT8))
    result = run_trial(spec)
    assert result.status is TrialStatus.COMPLETE, result.reason
    assert result.teacher is not None
    return SimpleNamespace(
        study=study,
        spec=spec,
        result=result,
        folder=Path(result.artifact_path),
        teacher_folder=Path(result.teacher.artifact_path),
    )


def _served_dev(study, n: int = 1) -> served.ServedDev:
    """The trial's dev split as a trial of ``study`` at width ``n`` builds it."""
    from trainers.deploy.quantize import calibration_examples, first_examples
    from trainers.trial.task_data import task_tables

    services = TrialServices(study, n, 0, SpanTimer(), None, Engine())
    examples = len(services.dev)
    return served.ServedDev(
        score=services.accuracy,
        texts=lambda: first_examples(task_tables(study).dev, examples, "dev"),
        calibration=lambda: calibration_examples(task_tables(study).train),
        examples=examples,
        engine=services.engine,
        throughput=study.throughput,
    )


# -- the serving device ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "named", "expected"),
    [
        (ServingDevice(kind="cuda", bf16=True, onnxruntime=True), INT8,
         "'int8' runs on ONNX Runtime's CPU provider, not on a GPU; on this cuda available: "
         "fp32, fp16, bf16"),
        (ServingDevice(kind="cpu", bf16=True, onnxruntime=True), FP16,
         "'fp16' needs a GPU (a CPU has no fast fp16 matmul); on this cpu available: fp32, "
         "bf16, int8"),
        (ServingDevice(kind="cuda", bf16=False, onnxruntime=True), BF16,
         "'bf16' needs a GPU with bf16 (compute capability 8.0 or higher); on this cuda "
         "available: fp32, fp16"),
        (ServingDevice(kind="cpu", bf16=True, onnxruntime=False), INT8,
         "'int8' needs onnxruntime (pip install onnxruntime); on this cpu available: fp32, "
         "bf16"),
    ],
)  # fmt: skip
def test_a_precision_the_device_cannot_serve_is_one_line(device, named, expected):
    with pytest.raises(FieldError) as raised:
        check_precisions((FP32, named), device)
    assert raised.value.field == "deploy.precisions"
    assert raised.value.message == expected
    assert "\n" not in str(raised.value)


def test_each_device_serves_its_defaults_fp32_first():
    cpu = ServingDevice(kind="cpu", bf16=True, onnxruntime=True)
    assert check_precisions((), cpu) == (FP32, INT8)
    assert check_precisions((INT8, BF16, FP32), cpu) == (FP32, BF16, INT8)
    assert check_precisions((), ServingDevice(kind="cpu", bf16=True)) == (FP32,)
    assert check_precisions((), ServingDevice(kind="cuda", bf16=True)) == (FP32, BF16, FP16)
    assert check_precisions((), ServingDevice(kind="cuda", bf16=False)) == (FP32, FP16)


def test_the_serving_device_is_the_throughput_devices(monkeypatch):
    import importlib.util

    cpu = ThroughputSection(device="cpu")
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    assert serving_device(cpu) == ServingDevice(kind="cpu", bf16=True, onnxruntime=has_ort)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxruntime" else real(name)
    )
    assert serving_device(cpu) == ServingDevice(kind="cpu", bf16=True, onnxruntime=False)
    if not torch.cuda.is_available():
        with pytest.raises(FieldError, match="throughput.device: cuda: no CUDA device"):
            serving_device(ThroughputSection(device="cuda"))


def test_a_study_asking_what_the_device_cannot_serve_is_refused_before_any_work(
    tmp_path, tiny_sources, capsys
):
    path = _study_file(tmp_path / "studies", tiny_sources, '["fp32", "fp16"]')
    # served from a CPU (on a GPU machine, auto would serve fp16)
    path.write_text(path.read_text().replace("[throughput]\n", '[throughput]\ndevice = "cpu"\n'))
    study = load_study(path)
    with pytest.raises(FieldError, match="deploy.precisions: 'fp16' needs a GPU"):
        study_precisions(study)
    with pytest.raises(FieldError, match="available: fp32, bf16"):
        run_trial(TrialSpec(study=study, n=1, sparsity=0.0, device="cpu"))
    assert main(["train", "--study", str(path), "--n", "1", "--sparsity", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'fp16' needs a GPU" in err, err
    assert not study.artifacts_folder.exists()  # nothing trained, nothing written


# -- a trained model in each precision -----------------------------------------------------------


def test_int8_is_near_fp32_and_what_export_then_classify_scores(trained, tmp_path):
    from trainers.deploy import quantize

    result = trained.result
    for model in (result, result.teacher):
        assert set(model.served) == {"int8"}
        # 64 dev examples: dynamic int8 flips at most a few of the fp32 model's labels
        assert abs(model.served["int8"] - model.accuracy) <= 3 / 64
    copy = tmp_path / "model"
    shutil.copytree(trained.folder, copy)
    exported = quantize.export_int8(copy, tmp_path / "int8.onnx")
    assert exported.dev.int8 == result.served["int8"]
    assert exported.dev.fp32 == result.accuracy  # the ONNX fp32 file scores as the trial


def test_the_figures_land_in_the_records_and_the_folders(trained):
    result = trained.result
    record, teacher = result.training().record, result.training().by_products[0]
    assert (record.accuracy_int8, record.accuracy_bf16, record.accuracy_fp16) == (
        result.served["int8"],
        None,
        None,
    )
    assert record.served_accuracy == {GridPoint(1, 0.5, INT8): result.served["int8"]}
    assert teacher.point == GridPoint(1, 0.0)
    assert teacher.accuracy_int8 == result.teacher.served["int8"]
    for folder, model in ((trained.folder, result), (trained.teacher_folder, result.teacher)):
        info = read_info(folder)
        assert info.precisions["int8"] == PrecisionScore(
            dev=model.served["int8"], dev_examples=64, runtime="onnxruntime-cpu", recipe="dynamic"
        )
        assert "fp32" not in info.precisions  # fp32's figure is the trial's own: dev_accuracy
        card = (folder / "README.md").read_text()
        delta = 100 * (model.served["int8"] - model.accuracy)
        assert (
            f"| int8 | onnxruntime-cpu (dynamic) | {model.served['int8']:.4f} on the first 64"
            in card
        )
        assert f"| {delta:+.2f} points |" in card
    # each evaluation is timed: the pruned model's in the point's own seconds, the teacher's
    # in the teacher's
    seconds = result.phase_seconds
    assert seconds["precisions"] > 0 and seconds["teacher precisions"] > 0
    _, teacher_s, _ = result.cost_parts()
    expected = seconds["finetune"] + seconds["teacher evaluate"] + seconds["teacher precisions"]
    assert teacher_s == pytest.approx(expected)
    assert json.loads(json.dumps(result.to_json()))["served"] == result.served
    assert type(result).from_json(result.to_json()) == result
    # autoprumux train prints the int8 figure beside fp32's
    line = f"dev accuracy {result.accuracy:.4f} (int8 {result.served['int8']:.4f}) |"
    assert line in format_trial(result)


def test_fp32_by_the_served_path_is_the_trials_figure_and_bf16_is_near_it(trained):
    dev = _served_dev(trained.study)
    model = load_classifier(trained.folder, torch.device("cpu"))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert served.torch_figure(model, torch.float32, dev) == trained.result.accuracy
    bf16 = served.torch_figure(model, torch.bfloat16, dev)
    assert abs(bf16 - trained.result.accuracy) <= 3 / 64
    # the trial's model is left as it was: fp32, same weights
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    seen: list[Progress] = []
    figures = served.evaluate_precisions(trained.folder, model, (FP32, BF16), dev, seen.append)
    assert figures == {BF16: PrecisionScore(dev=bf16, dev_examples=64, runtime="torch-cpu")}
    assert seen == [Progress(phase="precisions", step=1, total=1)]
    assert read_info(trained.folder).precisions["bf16"] == figures[BF16]


def test_a_reused_folder_evaluates_only_the_precisions_it_lacks(trained, monkeypatch):
    calls: list[tuple[str, Precision]] = []
    evaluate = served._evaluate

    def counted(folder, model, precision, *args):  # type: ignore[no-untyped-def]
        calls.append((Path(folder).name.split("-")[0], precision))
        return evaluate(folder, model, precision, *args)

    monkeypatch.setattr(served, "_evaluate", counted)
    spec = dataclasses.replace(trained.spec, precisions=(FP32, FP16, INT8))
    again = run_trial(spec)  # fp16 is the CPU's only here: the spec names it, as a search may
    assert set(again.reused) == {"teacher", "trial"}
    assert calls == [("teacher", FP16), ("trial", FP16)]
    assert again.served["int8"] == trained.result.served["int8"]
    assert again.teacher.served["int8"] == trained.result.teacher.served["int8"]
    assert abs(again.served["fp16"] - again.accuracy) <= 3 / 64
    calls.clear()
    third = run_trial(spec)
    assert calls == []
    assert third.served == again.served and third.teacher.served == again.teacher.served
    assert third.to_record().accuracy_fp16 == again.served["fp16"]


def test_int8_refused_leaves_no_figure_and_the_trial_goes_on(trained, tmp_path, caplog):
    folder = tmp_path / "model"
    shutil.copytree(trained.folder, folder)
    info = json.loads((folder / INFO_FILE).read_text())
    info["precisions"] = {}
    (folder / INFO_FILE).write_text(json.dumps(info))
    model = load_classifier(folder, torch.device("cpu"))
    dev = _served_dev(trained.study)

    def refuse(*args: object, **kwargs: object) -> None:
        raise ExportError("no int8 recipe keeps the fp32 model's labels and accuracy")

    monkeypatch = pytest.MonkeyPatch()
    seen: list[Progress] = []
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING):
        patch.setattr(served, "make_int8", refuse)
        assert served.evaluate_precisions(folder, model, (FP32, INT8), dev, seen.append) == {}
    # int8's three steps (export, recipes, classification), the refused ones counted too
    assert [(p.step, p.total) for p in seen] == [(1, 3), (2, 3), (3, 3)]
    assert read_info(folder).precisions == {}  # nothing recorded: a rerun tries again
    assert "no int8 figure: ExportError: no int8 recipe keeps the fp32 model's" in caplog.text

    def missing(name: str) -> None:
        raise FieldError("--precision", f"int8 needs {name} (pip install {name})")

    caplog.clear()
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING):
        patch.setattr(served, "import_export_library", missing)
        assert served.evaluate_precisions(folder, model, (FP32, INT8), dev) == {}
    assert "no int8 figure: FieldError: --precision: int8 needs onnx" in caplog.text


def test_a_static_int8_file_is_timed_against_dynamic_and_its_ratios_reach_the_search(
    trained, tmp_path, monkeypatch
):
    """Dynamic int8 refused (as if it cost too much): the trial's int8 file is static QDQ,
    timed against dynamic int8 of the same weights; the ratios go into the folder, the trial's
    record, the study's trial (Optuna) and a results file, and a reuse reads them back."""
    from autoprumux.core.grid import Grid
    from autoprumux.core.records import ResultsTable
    from autoprumux.files.results_io import read_results, write_results
    from autoprumux.loop.trial_mapping import finished_trial, record_of
    from trainers.deploy import quantize

    info_file = trained.folder / INFO_FILE
    kept = info_file.read_text()
    recorded = json.loads(kept)
    del recorded["precisions"]["int8"]
    passes = quantize.RecipeCheck.accepted.fget
    monkeypatch.setattr(
        quantize.RecipeCheck,
        "accepted",
        property(lambda c: c.recipe.method is quantize.Int8Method.STATIC_QDQ and passes(c)),
    )
    try:
        info_file.write_text(json.dumps(recorded))
        again = run_trial(trained.spec)  # the trial reused; its int8 evaluated again
        entry = read_info(trained.folder).precisions["int8"]
    finally:
        info_file.write_text(kept)
    assert entry.static_int8 and entry.speed is not None
    assert 0 < entry.speed.throughput < 10 and 0 < entry.speed.latency < 10
    record = again.to_record()
    assert record.recipe_speed == {GridPoint(1, 0.5, INT8): entry.speed}
    assert type(again).from_json(json.loads(json.dumps(again.to_json()))) == again
    assert (
        f"int8 by a static recipe: {entry.speed.throughput:.2f} x dynamic int8's examples/s, "
        f"{entry.speed.latency:.2f} x its batch-1 latency (timed side by side)"
    ) in format_trial(again)
    assert "int8 by a static recipe" not in format_trial(trained.result)
    stored = record_of(finished_trial(record, None, Grid((1,), (0.0, 0.5))), record.point, "sst2")
    assert stored.recipe_speed == record.recipe_speed
    path = write_results(ResultsTable((record,)), tmp_path / "results.csv")
    assert read_results(path).records[0].recipe_speed == record.recipe_speed
    # recorded with its speed, the figure is read, not evaluated again; without (an older
    # release's folder), evaluated again
    assert served._matches(entry, INT8, 64)
    untimed = dataclasses.replace(entry, speed=None)
    assert not served._matches(untimed, INT8, 64)
    assert served._matches(dataclasses.replace(untimed, recipe="dynamic"), INT8, 64)


@pytest.mark.gpu
def test_bf16_and_fp16_are_evaluated_on_the_gpu(trained):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    study = trained.study
    services = TrialServices(study, 1, 0, SpanTimer(), None, Engine.resolve("cuda", "fp32"))
    model = load_classifier(trained.folder, services.engine.device)
    dev = served.ServedDev(
        score=services.accuracy,
        texts=lambda: None,
        calibration=lambda: None,
        examples=64,
        engine=services.engine,
        throughput=study.throughput,
    )
    fp32 = served.torch_figure(model, torch.float32, dev)
    for dtype in (torch.bfloat16, torch.float16):
        assert abs(served.torch_figure(model, dtype, dev) - fp32) <= 3 / 64
    assert served.runtime_name(BF16, services.engine) == "torch-cuda"
