"""Throughput tables from the real harness on tiny models; the architecture rule; bad input."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from autoprumux.cli.main import main
from autoprumux.core.errors import FieldError
from autoprumux.core.precision import Precision
from autoprumux.core.study import MAX_BATCH_ROWS, ThroughputSection
from autoprumux.files.results_io import read_throughput_table
from trainers.deploy.timing import MeasureError, fitting_pass
from trainers.model.architecture import (
    Architecture,
    architecture_for_sparsity,
    prunable_params,
    sparsity_of,
)

DENSE = {
    "bert-base": Architecture.dense(
        num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072, vocab_size=10
    ),
    "minilm-2": Architecture.dense(
        num_layers=2, hidden_size=384, num_heads=12, intermediate_size=1536, vocab_size=10
    ),
    "tiny": Architecture.dense(
        num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64, vocab_size=10
    ),
}


@pytest.mark.parametrize("name", DENSE)
@pytest.mark.parametrize("sparsity", [0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
def test_architecture_rule_hits_the_target(name, sparsity):
    dense = DENSE[name]
    arch = architecture_for_sparsity(dense, sparsity)
    assert abs(sparsity_of(arch, dense) - sparsity) <= 0.02
    assert len(set(arch.heads)) == 1 and arch.hidden_size == dense.hidden_size


def test_measure_writes_a_table_that_predict_reads(tiny_study_file, capsys, tmp_path):
    study = tiny_study_file()
    out = tmp_path / "table.json"
    code = main(
        [
            "measure",
            "--study",
            str(study),
            "--device",
            "cpu",
            "--passes",
            "2",
            "--out",
            str(out),
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["table"] == str(out)
    assert {(r["n"], r["sparsity"]) for r in report["rows"]} == {(1, 0), (1, 0.5), (2, 0), (2, 0.5)}
    baseline = next(r for r in report["rows"] if (r["n"], r["sparsity"]) == (1, 0))
    assert baseline["speedup"] == 1.0 and all(
        r["low"] <= r["throughput"] <= r["high"] for r in report["rows"]
    )
    table = read_throughput_table(out)
    assert table.fingerprint["device"] == "cpu" and table.fingerprint["seq_len"] == 16
    assert table.fingerprint["torch"] == torch.__version__ and table.fingerprint["batch_rows"] == 8
    assert len(table.throughput) == 4 and table.latency.keys() == table.throughput.keys()


def test_trained_models_are_measured_beside_their_estimates(tiny_study_file, capsys, tmp_path):
    study = tiny_study_file()
    assert main(["measure", "--study", str(study), "--trained", "--passes", "1", "--json"]) == 2
    assert "holds no trained models yet" in capsys.readouterr().err
    assert main(["train", "--study", str(study), "--n", "1", "--sparsity", "0.5", "--json"]) == 0
    capsys.readouterr()
    assert main(["measure", "--study", str(study), "--trained", "--passes", "1", "--json"]) == 0
    rows = {(r["n"], r["sparsity"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert "estimate_error" in rows[(1, 0.5)] and "estimate_error" in rows[(1, 0.0)]
    assert "trained_throughput" not in rows[(2, 0.5)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "no CUDA device is available here"),
        (["--dtype", "bfloat16"], "dtype: 'bfloat16' is not float32: the fp32 rows are timed"),
        (  # a number past what a tensor's shape holds was a traceback
            ["--batch-rows", "99999999999999999999"],
            "'--batch-rows': 99999999999999999999 is not in the range 1<=x<=1048576",
        ),
    ],
)
def test_bad_measure_options(tiny_study_file, capsys, args, message):
    if torch.cuda.is_available() and "cuda" in args:
        pytest.skip("this machine has CUDA")
    code = main(["measure", "--study", str(tiny_study_file()), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_measure_help_offers_float32_alone(capsys):
    """bf16 and fp16 are refused with the hint above ([deploy] precisions); the help lists
    only the dtype that is taken."""
    assert main(["measure", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--dtype float32 " in help_text and "bfloat16" not in help_text


class Choking(torch.nn.Module):
    """Runs out of memory on batches above 64 sequences: a GPU's error, or the CPU allocator's
    (a plain RuntimeError, worded as torch words it)."""

    arch = DENSE["tiny"]

    def __init__(self, error=None):
        super().__init__()
        self.error = error or torch.OutOfMemoryError("fake: out of memory")

    def forward(self, ids, mask):
        if ids.shape[0] > 64:
            raise self.error
        return ids.float().sum()


CPU_ALLOCATOR = RuntimeError(
    "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you "
    "tried to allocate 98304000000 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("fake: out of memory"), CPU_ALLOCATOR])
def test_a_batch_that_does_not_fit_backs_off(error):
    settings = ThroughputSection(batch_rows=128, examples_per_pass=128)
    run, rows = fitting_pass(Choking(error), 2, settings, 8, "cpu")
    assert rows == 32 and run() == 128  # 32 rows x N = 2: 64 sequences, two batches a pass
    with pytest.raises(MeasureError, match="does not fit in memory"):
        fitting_pass(Choking(error), 128, settings, 8, "cpu")


def test_another_runtime_error_is_not_taken_for_memory():
    settings = ThroughputSection(batch_rows=128, examples_per_pass=128)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        fitting_pass(Choking(RuntimeError("shape mismatch")), 2, settings, 8, "cpu")


def test_batch_rows_past_any_memory_are_refused():
    with pytest.raises(FieldError, match=r"batch_rows: 1048577 is not \[1, 1048576\]"):
        ThroughputSection(batch_rows=MAX_BATCH_ROWS + 1)


def test_timing_a_model_leaves_the_callers_random_stream_alone():
    # a trial times its (N, 0) teacher before pruning; the pruning's randomness must not change
    from trainers.deploy.timing import measure_one
    from trainers.model.classifier import Classifier

    arch = Architecture.dense(
        num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=200
    )
    model = Classifier(arch).eval()
    settings = ThroughputSection(batch_rows=2, examples_per_pass=8, trial_examples_per_pass=8)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    assert measure_one(model, settings, 8) > 0
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_timing_a_model_in_another_precision_leaves_the_callers_model_as_it_was(training):
    # a trial times its (N, 0) teacher, then distils from it; a table times a model in fp32 and
    # bf16: the model must stay in the precision (and mode) it trained in
    from autoprumux.core.grid import GridPoint
    from trainers.deploy.timing import as_timed, measure, measure_one
    from trainers.model.classifier import Classifier

    arch = Architecture.dense(
        num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=200
    ).with_mux(2)
    model = Classifier(arch).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = ThroughputSection(batch_rows=2, examples_per_pass=8, trial_examples_per_pass=8)
    assert measure_one(model, settings, 8) > 0
    point = GridPoint(2, 0.0)
    both = measure(
        {point: model}, settings, 8, "trained", precisions=(Precision.FP32, Precision.BF16)
    )
    assert set(both) == {point, point.served(Precision.BF16)}
    assert model.training is training
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, before[key]), key
    timed = as_timed(model, torch.device("cpu"), torch.bfloat16)
    assert timed is not model and not timed.training
    assert torch.equal(timed.mux.keys, model.mux.keys.to(torch.bfloat16))
    # nothing to change: the model itself is timed
    model.eval()
    assert as_timed(model, torch.device("cpu"), torch.float32) is model


def test_float32_is_timed_without_tf32_whatever_the_process_set(monkeypatch):
    # a GPU training turns TF32 on for its process; the trial's timing after it must still be
    # IEEE float32, as a table measured in a fresh process is (the flags exist without CUDA)
    import trainers.deploy.timing as measurement
    from trainers.model.classifier import Classifier

    seen = []
    real = measurement.time_round_robin

    def spied(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return real(*args, **kwargs)

    monkeypatch.setattr(measurement, "time_round_robin", spied)
    arch = Architecture.dense(
        num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=200
    )
    settings = ThroughputSection(batch_rows=2, examples_per_pass=8, trial_examples_per_pass=8)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        assert measurement.measure_one(Classifier(arch).eval(), settings, 8) > 0
        after = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert seen == [(False, False)]
    assert after == (True, True)  # the caller's setting comes back


# --- the training-free estimate of every encoder family ----------------------------------


@pytest.fixture(scope="module")
def family_study(tmp_path_factory):
    """A study of a tiny random-weight checkpoint of a family (ELECTRA's tables 16 wide,
    projected to 32); ``num_layers`` 0 keeps all 2 layers."""
    from family_models import save_with_tokenizer
    from fixtures import make_glue, study_text

    from autoprumux.core.study import load_study

    root = tmp_path_factory.mktemp("family-measure")
    glue = make_glue(root / "glue", train_rows=8, dev_rows=8)

    def study(family, num_layers=0):
        folder = root / family
        if not folder.is_dir():
            embedding = 16 if family == "electra" else 0
            save_with_tokenizer(
                family, folder, hidden=32, heads=4, intermediate=64, embedding_size=embedding
            )
        path = root / f"{family}-{num_layers}.toml"
        layers = f"\nnum_layers = {num_layers}" if num_layers else ""
        text = study_text(folder, glue).replace(
            "max_seq_length = 16", f"max_seq_length = 16{layers}"
        )
        path.write_text(text)
        return load_study(path)

    return study


FAMILY_NAMES = ("bert", "electra", "roberta", "xlm-roberta", "distilbert")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_estimate_is_the_familys_model(family_study, family):
    """The estimate at (1, 0) has as many parameters as transformers' own classifier of the
    checkpoint (embeddings, projection, head: the family's), and the parameters (names and
    shapes) of the model a trial starts from; at (2, 0.5) it is the same family, pruned by the
    rule and multiplexed at the tables' width."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from autoprumux.core.grid import GridPoint
    from autoprumux.measurement import estimate_models
    from trainers.model.checkpoints import load_pretrained

    study = family_study(family)
    models = estimate_models(study, [GridPoint(1, 0.0), GridPoint(2, 0.5)])
    dense, small = models[GridPoint(1, 0.0)], models[GridPoint(2, 0.5)]
    config = AutoConfig.from_pretrained(study.model.name_or_path, num_labels=2)
    reference = AutoModelForSequenceClassification.from_config(config)
    assert sum(p.numel() for p in dense.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    trained, _ = load_pretrained(study.model.name_or_path, num_labels=2)
    assert {k: v.shape for k, v in dense.state_dict().items()} == {
        k: v.shape for k, v in trained.state_dict().items()
    }
    assert dense.arch.family is small.arch.family is trained.arch.family
    assert small.arch.heads == (2, 2) and small.arch.hidden_size == 32
    assert abs(sparsity_of(small.arch, dense.arch) - 0.5) <= 0.02
    embeddings = small.encoder.embeddings
    if family == "electra":  # the tables keep embedding_size; the projection widens them
        assert small.arch.embedding_size == 16 and embeddings.word.weight.shape == (30522, 16)
        assert embeddings.project is not None and embeddings.project.weight.shape == (32, 16)
        assert small.mux.keys.shape == (2, 16)
    else:
        assert embeddings.project is None and small.mux.keys.shape == (2, 32)
    if family == "distilbert":  # no token-type table at all
        assert embeddings.token_type is None
        assert not [k for k in small.state_dict() if "token_type" in k]
    else:
        assert embeddings.token_type is not None
        assert embeddings.token_type.weight.shape[0] == (1 if "roberta" in family else 2)
    if "roberta" in family:  # positions from the pad id 1; <s> (id 0) first
        assert embeddings.padding_idx == 1 and small.arch.cls_token_id == 0
        assert embeddings.position.weight.shape[0] == 128 + 2
    else:
        assert embeddings.padding_idx is None and small.arch.cls_token_id == 101


def test_num_layers_cuts_a_distilbert_estimate(family_study):
    from autoprumux.core.grid import GridPoint
    from autoprumux.measurement import estimate_models

    models = estimate_models(family_study("distilbert", num_layers=1), [GridPoint(1, 0.5)])
    assert models[GridPoint(1, 0.5)].arch.heads == (2,)  # 1 layer of DistilBERT's 2


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_familys_estimates_are_timed(family_study, family):
    from autoprumux.core.grid import GridPoint
    from autoprumux.measurement import estimate_models
    from trainers.deploy.timing import measure

    points = [GridPoint(1, 0.0), GridPoint(1, 0.5), GridPoint(2, 0.0)]
    models = estimate_models(family_study(family), points)
    settings = ThroughputSection(device="cpu", batch_rows=2, examples_per_pass=8, passes=1)
    measured = measure(models, settings, 16, "estimate")
    assert set(measured) == set(points)
    for point in points:
        assert measured[point].timing.median > 0 and measured[point].batch_rows == 2
        assert measured[point].parameters == prunable_params(models[point].arch)
    assert measured[GridPoint(1, 0.5)].parameters < measured[GridPoint(1, 0.0)].parameters


def test_a_cpu_table_is_timed_eager_and_says_so(tiny_study_file, capsys, tmp_path):
    out = tmp_path / "table.json"
    args = ["measure", "--study", str(tiny_study_file()), "--device", "cpu"]
    assert main([*args, "--passes", "1", "--out", str(out)]) == 0
    assert read_throughput_table(out).fingerprint["timing"] == "eager"


@pytest.mark.gpu
def test_a_graphed_forward_replays_the_model_on_new_inputs():
    """The harness's CUDA graph computes what the eager forward computes, for whatever ids
    the batch's buffer holds when it is replayed."""
    from trainers.deploy.timing import graphed
    from trainers.model.classifier import Classifier

    torch.manual_seed(0)
    model = Classifier(DENSE["minilm-2"]).cuda().eval()
    ids = torch.randint(0, 10, (8, 32), device="cuda")
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        replay, logits = graphed(model, ids, mask, torch.cuda.graph_pool_handle())
        ids.copy_(torch.randint(0, 10, (8, 32), device="cuda"))
        mask[:, 20:] = 0
        replay()
        torch.testing.assert_close(logits, model(ids, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
def test_graphed_bf16_tables_time_the_model_not_the_launcher():
    """Eager in bf16, BERT-base's forward at batch 128 was bound by kernel launches: (1, 0.6)
    timed slower than (1, 0). Replayed as CUDA graphs, the pruned model is faster, by at least
    half of its FLOP ratio's gain."""
    from autoprumux.core.grid import GridPoint
    from trainers.deploy.timing import TIMING_GRAPHS, measure
    from trainers.model.classifier import Classifier

    dense = DENSE["bert-base"]
    pruned = architecture_for_sparsity(dense, 0.9)
    models = {GridPoint(1, 0.0): Classifier(dense), GridPoint(1, 0.9): Classifier(pruned)}
    settings = ThroughputSection(device="cuda", batch_rows=128, examples_per_pass=1024, passes=3)
    measured = measure(models, settings, 128, "estimate", precisions=(Precision.BF16,))
    assert {m.timing_mode for m in measured.values()} == {TIMING_GRAPHS}
    dense_bf16, pruned_bf16 = (GridPoint(1, s).served(Precision.BF16) for s in (0.0, 0.9))
    speedup = measured[pruned_bf16].timing.median / measured[dense_bf16].timing.median
    ratio = prunable_params(dense) / prunable_params(pruned)
    assert speedup > 1 + (ratio - 1) / 2, (speedup, ratio)


def test_the_time_to_measure_a_missing_table_is_forecast(monkeypatch):
    """Measured on 2 cores, an own-data study's table (18 points, fp32 and int8) took 296 s
    against this estimate's 294 s (docs/measurements.md); here its arithmetic, by hand."""
    import autoprumux.measurement as measurement
    from autoprumux.core.study import load_study

    # the tiny study's [throughput]: 1,024 examples a pass, 1 warm-up pass, 5 timed passes
    study = load_study(Path(__file__).parents[2] / "studies" / "sst2-tiny.toml")
    points = sorted(study.grid.grid)
    exported = []
    monkeypatch.setattr(measurement, "int8_session", lambda model, n, *args: exported.append(n))
    clock = iter([10.0, 14.0]).__next__  # one int8 export and quantization: 4 s
    models = {p: f"model {p}" for p in points}
    seconds = measurement.measure_seconds(study, models, {p: 1024.0 for p in points}, clock)
    # each of 18 points in 2 precisions, 7 passes (warm-up, discarded, 5 timed) of 1 s and a
    # 0.05 s latency pass; then 18 int8 exports of 4 s each
    assert seconds == pytest.approx(7 * 18 * 2 * 1.05 + 18 * 4)
    assert exported == [4]  # the quickest to export: (4, 0.9)
    fp32_only = dataclasses.replace(
        study, deploy=dataclasses.replace(study.deploy, precisions=(Precision.FP32,))
    )
    assert measurement.measure_seconds(fp32_only, models, {p: 512.0 for p in points}, clock) == (
        pytest.approx(7 * 18 * 2.05)
    )
    assert exported == [4]  # nothing exported for fp32 alone


def test_only_a_throughput_table_is_measured_over():
    """measure --out replaces a throughput table (shipped: the paper grid's), never a results
    table (whose rows also hold a throughput) or another file."""
    from autoprumux.measurement import _throughput_table

    root = Path(__file__).resolve().parents[2] / "studies"
    assert _throughput_table(root / "throughput" / "sst2-cuda-float32.json")
    assert not _throughput_table(root / "results" / "synthetic-sst2.csv")
    assert not _throughput_table(root / "sst2.toml")
