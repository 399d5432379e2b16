"""Throughput tables from the real harness on tiny models; the architecture rule; bad input."""

import json

import pytest
import torch

from autoprumux.cli.main import main
from autoprumux.core.study import ThroughputSection
from autoprumux.files.results_io import read_throughput_table
from trainers.deploy.timing import MeasureError, fitting_pass
from trainers.model.architecture import Architecture, architecture_for_sparsity, sparsity_of

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
    assert len(table.throughput) == 4


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
        (["--dtype", "float16", "--device", "cpu"], "float16 needs a GPU here"),
    ],
)
def test_bad_measure_options(tiny_study_file, capsys, args, message):
    if torch.cuda.is_available() and "cuda" in args:
        pytest.skip("this machine has CUDA")
    code = main(["measure", "--study", str(tiny_study_file()), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


class Choking(torch.nn.Module):
    """Runs out of memory on batches above 64 sequences."""

    arch = DENSE["tiny"]

    def forward(self, ids, mask):
        if ids.shape[0] > 64:
            raise torch.OutOfMemoryError("fake: out of memory")
        return ids.float().sum()


def test_a_batch_that_does_not_fit_backs_off():
    settings = ThroughputSection(batch_rows=128, examples_per_pass=128)
    run, rows = fitting_pass(Choking(), 2, settings, 8, "cpu")
    assert rows == 32 and run() == 128  # 32 rows x N = 2: 64 sequences, two batches a pass
    with pytest.raises(MeasureError, match="does not fit in memory"):
        fitting_pass(Choking(), 128, settings, 8, "cpu")


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
