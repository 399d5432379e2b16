"""The throughput table in every precision: fp32 and bf16 in PyTorch, int8 in ONNX Runtime,
all in one round-robin run, with the latency of one request at batch 1 beside each."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from search_requests import search_request

from autoprumux.cli.main import main
from autoprumux.core.grid import GridPoint
from autoprumux.core.harness import Timing
from autoprumux.core.precision import Precision
from autoprumux.core.study import ThroughputSection
from autoprumux.files.results_io import read_throughput_table, write_throughput_table
from trainers.deploy.timing import Measured, MeasureError, check_precisions_here
from trainers.model.architecture import Architecture, architecture_for_sparsity, prunable_params
from trainers.model.classifier import Classifier

SEQ_LEN = 16
ROWS = 2  # rows per batch: a batch is ROWS x N sequences
FP32, BF16, INT8 = Precision.FP32, Precision.BF16, Precision.INT8


def with_precisions(path, *names):
    """The study file at ``path`` with ``[deploy] precisions = names``."""
    listed = ", ".join(f'"{n}"' for n in names)
    text = path.read_text().replace('precisions = ["fp32"]', f"precisions = [{listed}]")
    path.write_text(text)
    return path


@pytest.fixture
def grid_models():
    """(1, 0) and (2, 0.5) of a tiny BERT, random weights, as ``measure`` gets estimates."""
    dense = Architecture.dense(
        num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=200
    )
    torch.manual_seed(0)
    return {
        GridPoint(1, 0.0): Classifier(dense).eval(),
        GridPoint(2, 0.5): Classifier(architecture_for_sparsity(dense.with_mux(2), 0.5)).eval(),
    }


@pytest.fixture
def spied(monkeypatch):
    """Records every round-robin run's keys, every int8 quantization, and the inputs every
    ONNX Runtime session is run on (per model width)."""
    import trainers.deploy.timing as timing

    seen: dict[str, list] = {"runs": [], "quantized": [], "feeds": [], "sessions": []}
    real_round_robin, real_session = timing.time_round_robin, timing.int8_session

    def round_robin(runs, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["runs"].append(list(runs))
        return real_round_robin(runs, *args, **kwargs)

    class Session:  # the real session, its runs recorded
        def __init__(self, session):
            self.session = session
            seen["sessions"].append(session)

        def get_inputs(self):
            return self.session.get_inputs()

        def run(self, names, feeds):
            seen["feeds"].append({k: v.copy() for k, v in feeds.items()})
            return self.session.run(names, feeds)

    import trainers.deploy.quantize as quantize

    real_quantize = quantize.quantize_file

    def quantize_file(fp32, out):  # type: ignore[no-untyped-def]
        seen["quantized"].append(fp32)
        return real_quantize(fp32, out)

    monkeypatch.setattr(timing, "time_round_robin", round_robin)
    monkeypatch.setattr(timing, "int8_session", lambda *a: Session(real_session(*a)))
    monkeypatch.setattr(quantize, "quantize_file", quantize_file)
    return seen


def test_every_model_is_timed_in_each_precision_in_one_run(grid_models, spied):
    import onnxruntime

    from trainers.deploy.timing import measure

    settings = ThroughputSection(
        device="cpu", batch_rows=ROWS, examples_per_pass=8, passes=1, threads=1
    )
    measured = measure(
        grid_models, settings, SEQ_LEN, "estimate", precisions=(FP32, BF16, INT8), latency=True
    )
    points = {p.served(q) for p in grid_models for q in (FP32, BF16, INT8)}
    assert set(measured) == points
    # one round-robin run: a throughput and a latency pass of every (N, s, precision)
    assert len(spied["runs"]) == 1 and len(spied["runs"][0]) == 2 * len(points)
    for point, result in measured.items():
        assert result.point == point and result.source == "estimate"
        assert result.runtime == ("onnxruntime" if point.precision is INT8 else "torch")
        assert result.timing.median > 0 and result.latency_s is not None
        assert result.latency_s > 0 and result.batch_rows == ROWS
        assert result.parameters == prunable_params(grid_models[point.trained].arch)
    # int8: each model quantized once, run by ONNX Runtime's CPU provider, one thread
    assert len(spied["quantized"]) == 2
    for session in spied["sessions"]:
        assert isinstance(session, onnxruntime.InferenceSession)
        assert session.get_providers() == ["CPUExecutionProvider"]
        assert session.get_session_options().intra_op_num_threads == 1
    shapes = {f["input_ids"].shape for f in spied["feeds"]}
    # the fp32 rows' batch shape ([rows, N, L]), and one request at batch 1 ([1, N, L])
    assert shapes == {(ROWS, 1, SEQ_LEN), (ROWS, 2, SEQ_LEN), (1, 1, SEQ_LEN), (1, 2, SEQ_LEN)}
    request = next(f for f in spied["feeds"] if f["input_ids"].shape == (1, 2, SEQ_LEN))
    # one real sequence; the multiplexed model's other slot is empty (all padding)
    assert request["attention_mask"][0, 0].all() and not request["attention_mask"][0, 1].any()
    assert not request["input_ids"][0, 1].any() and request["input_ids"][0, 0, 0] == 101


def test_trained_models_are_timed_in_each_precision_beside_the_estimates(grid_models):
    from trainers.deploy.timing import measure

    settings = ThroughputSection(device="cpu", batch_rows=ROWS, examples_per_pass=8, passes=1)
    point = GridPoint(2, 0.5)
    trained = {(point, "trained"): grid_models[point]}
    measured = measure(
        {GridPoint(1, 0.0): grid_models[GridPoint(1, 0.0)]},
        settings,
        SEQ_LEN,
        "estimate",
        extra=trained,
        precisions=(FP32, INT8),
        latency=True,
    )
    assert set(measured) == {
        GridPoint(1, 0.0),
        GridPoint(1, 0.0, INT8),
        (point, "trained"),
        (point.served(INT8), "trained"),
    }
    beside = measured[point.served(INT8), "trained"]
    assert beside.source == "trained" and beside.runtime == "onnxruntime"
    assert beside.timing.median > 0
    assert beside.latency is None  # latency: the table's estimates only
    assert measured[GridPoint(1, 0.0, INT8)].latency_s > 0


def test_latency_is_the_median_of_the_passes_seconds_per_request():
    # passes of 10, 20 and 40 requests per second: 0.1, 0.05 and 0.025 s a request
    timing = Timing(rates=(10.0, 40.0, 20.0), discarded=1.0)
    result = Measured(
        point=GridPoint(1, 0.0), timing=timing, parameters=1, batch_rows=1, source="estimate"
    )
    assert result.latency_s is None
    assert dataclasses.replace(result, latency=timing).latency_s == 0.05


def test_a_static_int8_file_is_timed_against_dynamic_side_by_side(
    grid_models, tmp_path, monkeypatch
):
    """``recipe_speed``: the two files of one model in one round-robin run, each at the
    table's batch shape and at batch 1; its ratios are the made file's examples/s over
    dynamic's, and its seconds a request over dynamic's."""
    import trainers.deploy.timing as timing
    from trainers.deploy.export import write_onnx
    from trainers.deploy.inference import GroupedClassifier, Groups
    from trainers.deploy.quantize import quantize_file

    model, width = grid_models[GridPoint(2, 0.5)], 2
    example = Groups(*(np.zeros((2, width, SEQ_LEN), dtype=np.int64) for _ in range(3)))
    example.attention_mask[:] = 1
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    write_onnx(GroupedClassifier(model), example, fp32, "")
    quantize_file(fp32, int8)
    runs: list[list] = []
    # passes of made 300 and dynamic 400 examples/s; requests at 100/s and 200/s
    rates = {("made", "throughput"): 300.0, ("dynamic", "throughput"): 400.0}
    rates |= {("made", "latency"): 100.0, ("dynamic", "latency"): 200.0}

    def round_robin(passes, *args, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(list(passes))
        examples = {key: run() for key, run in passes.items()}  # each pass runs, for real
        assert examples[("made", "throughput")] == examples[("dynamic", "throughput")] == 8
        return {key: Timing(rates=(rates[key],) * 3, discarded=1.0) for key in passes}

    monkeypatch.setattr(timing, "time_round_robin", round_robin)
    settings = ThroughputSection(
        device="cpu", batch_rows=ROWS, trial_examples_per_pass=8, passes=3, threads=1
    )
    tokens = timing.Tokens(vocab_size=200, cls_token_id=101)
    speed = timing.recipe_speed(int8, int8, tokens, width, settings, SEQ_LEN)
    assert runs == [[("made", "throughput"), ("made", "latency"), ("dynamic", "throughput"),
                     ("dynamic", "latency")]]  # fmt: skip
    assert speed.throughput == 0.75  # 300 / 400 examples/s
    assert speed.latency == 2.0  # 1/100 s against 1/200 s a request


@pytest.mark.parametrize(
    ("precision", "on_gpu", "message"),
    [
        (Precision.FP16, False, "precision fp16 needs a GPU here"),
        (Precision.INT8, True, "precision int8 is timed on ONNX Runtime's CPU provider"),
    ],
)
def test_the_timing_refuses_what_the_device_cannot_run(precision, on_gpu, message):
    with pytest.raises(MeasureError, match=message):
        check_precisions_here((FP32, precision), on_gpu)


@pytest.mark.slow  # eight rows timed, four ONNX exports: about 9 s on 2 cores
def test_measure_times_every_point_in_each_precision_and_the_table_round_trips(
    tiny_study_file, capsys, tmp_path
):
    import onnxruntime

    study = tiny_study_file(precisions=None)  # no [deploy]: fp32 and int8 on a CPU
    out = tmp_path / "table.json"
    args = ["measure", "--study", str(study), "--device", "cpu", "--passes", "1"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(r["n"], r["sparsity"], r["precision"]): r for r in report["rows"]}
    grid = [(1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5)]
    assert set(rows) == {(n, s, p) for n, s in grid for p in ("fp32", "int8")}
    baseline = rows[1, 0.0, "fp32"]["throughput"]
    for (_, _, precision), row in rows.items():
        assert row["runtime"] == ("onnxruntime" if precision == "int8" else "torch")
        assert row["throughput"] > 0 and row["latency_s"] > 0
        assert row["speedup"] == row["throughput"] / baseline  # against fp32's (1, 0)
    stamp = report["fingerprint"]
    assert stamp["precisions"] == ["fp32", "int8"]
    assert stamp["runtimes"] == {
        "fp32": f"torch {torch.__version__}",
        "int8": f"onnxruntime {onnxruntime.__version__}",
    }
    table = read_throughput_table(out)
    assert table.precisions == (FP32, INT8) and table.fingerprint == stamp
    expected = {GridPoint(n, s, Precision(p)): r["throughput"] for (n, s, p), r in rows.items()}
    latency = {GridPoint(n, s, Precision(p)): r["latency_s"] for (n, s, p), r in rows.items()}
    assert dict(table.throughput) == expected and dict(table.latency) == latency
    again = read_throughput_table(write_throughput_table(table, tmp_path / "again.csv"))
    assert dict(again.throughput) == expected and dict(again.latency) == latency


def test_a_precision_the_device_cannot_serve_is_refused_before_any_timing(
    tiny_study_file, capsys, monkeypatch
):
    import autoprumux.measurement

    def measured(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("measured before the bad precision was refused")

    monkeypatch.setattr(autoprumux.measurement, "estimate_models", measured)
    study = with_precisions(tiny_study_file(), "fp32", "fp16")
    assert main(["measure", "--study", str(study), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deploy.precisions" in err and "'fp16' needs a GPU" in err
    assert "available: fp32, bf16, int8" in err


def test_a_study_of_fp32_only_times_fp32_only(tiny_study_file, capsys, tmp_path):
    study = with_precisions(tiny_study_file(), "fp32")
    out = tmp_path / "table.csv"
    args = ["measure", "--study", str(study), "--device", "cpu", "--passes", "1"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {r["precision"] for r in report["rows"]} == {"fp32"} and len(report["rows"]) == 4
    table = read_throughput_table(out)
    assert table.precisions == (FP32,) and set(table.latency) == set(table.throughput)
    assert np.all(np.array(list(table.latency.values())) > 0)


@pytest.mark.slow  # eight rows timed, four ONNX exports: about 9 s on 2 cores
def test_a_search_whose_table_lacks_a_study_precision_measures_it_first(tiny_study_file, tmp_path):
    from autoprumux.core.study import load_study
    from autoprumux.core.throughput import ThroughputTable
    from autoprumux.measurement import default_table_path
    from autoprumux.session.search_session import SearchSession

    path = tiny_study_file(precisions=None)  # no [deploy]: fp32 and int8 on a CPU
    study = load_study(path)
    table_file = default_table_path(study, study.throughput)
    table_file.parent.mkdir(parents=True)
    write_throughput_table(ThroughputTable({GridPoint(1, 0.0): 100.0}), table_file)  # fp32 only
    request = search_request(path, gpus=0, storage=f"sqlite:///{tmp_path / 's.db'}", device="cpu")
    lines: list[str] = []
    session = SearchSession(request, lines.append, gpu_count=lambda: 0, cores=2)
    plan = session.plan()
    assert plan.precisions == (Precision.FP32, Precision.INT8)
    table, used = session._table(plan)
    assert used == table_file and any("it times no int8 rows" in line for line in lines)
    # its passes said a few times a phase, the last of each whole
    assert "throughput table: prepare 8/8" in lines and "throughput table: measure 3/3" in lines
    assert table.precisions == (Precision.FP32, Precision.INT8) and len(table.points) == 8
    assert read_throughput_table(table_file).throughput == table.throughput  # written there


@pytest.mark.gpu
def test_bf16_and_fp16_are_timed_as_cuda_graphs_beside_fp32(grid_models):
    from trainers.deploy.timing import TIMING_GRAPHS, measure

    settings = ThroughputSection(device="cuda", batch_rows=ROWS, examples_per_pass=8, passes=1)
    precisions = (FP32, BF16, Precision.FP16)
    measured = measure(
        grid_models, settings, SEQ_LEN, "estimate", precisions=precisions, latency=True
    )
    assert set(measured) == {p.served(q) for p in grid_models for q in precisions}
    for result in measured.values():
        assert result.timing_mode == TIMING_GRAPHS and result.runtime == "torch"
        assert result.timing.median > 0 and result.latency_s is not None
        assert result.latency_s > 0
