"""Each phase a trial runs is recorded (steps, examples, tokens, seconds, FLOP, MFU, peak
memory), printed by ``autoprumux train``, and a trial that runs out of memory fails with a
reason that says where, on what batch, and what to change, while the caller goes on."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from autoprumux.cli.outputs import format_trial
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import load_study
from trainers.model.classifier import Classifier
from trainers.runtime.device import Engine
from trainers.training.retrieval import RetrievalHead
from trainers.trial import run as trial_run
from trainers.trial.run import TrialResult, TrialSpec, run_trial
from trainers.trial.trial_results import PhaseRecord

# the fixture study (tests/trainers/fixtures.py): rows of 8, 16 tokens at most; warm-up 10
# steps per instance, fine-tuning 60, pruning 40, post-pruning fine-tuning 20 steps
ROWS, LONGEST = 8, 16


def guided_study(path):  # type: ignore[no-untyped-def]
    """The fixture study whose N > 1 models also learn the (1, 0) teacher's logits."""
    path.write_text(
        path.read_text().replace("[training]\n", "[training]\ndistill_from_n1 = true\n")
    )
    return load_study(path)


def test_a_trial_records_every_phase_it_ran_in_order(tiny_study_file):
    study = guided_study(tiny_study_file())
    result = run_trial(TrialSpec(study=study, n=2, sparsity=0.5, device="cpu", threads=1))
    assert result.status is TrialStatus.COMPLETE
    records = {r.name: r for r in result.phase_figures}
    # the warm-up, the (1, 0) guide's fine-tuning the N = 2 one distills from, the (2, 0)
    # teacher's fine-tuning, the pruning and the pruned model's fine-tuning
    assert list(records) == ["warmup", "guide finetune", "finetune", "prune", "post-finetune"]
    widths = {"warmup": 2, "guide finetune": 1, "finetune": 2, "prune": 2, "post-finetune": 2}
    steps = {"warmup": 20, "guide finetune": 60, "finetune": 60, "prune": 40, "post-finetune": 20}
    for name, record in records.items():
        assert record.steps == steps[name]
        assert record.examples == steps[name] * ROWS * widths[name]  # rows x N a step
        # batches cut to their longest row: at most 16 tokens, at least the [CLS] and [SEP]
        assert 2 * record.examples < record.tokens <= LONGEST * record.examples
        assert record.seconds > 0
        assert record.examples_per_s == pytest.approx(record.examples / record.seconds)
        assert record.tflop_per_s == pytest.approx(record.flop / record.seconds / 1e12)
        assert record.flop >= 0.0  # 0.0 until the phase counts its FLOP (Phase.flop)
        # a CPU: no known peak, so no MFU; no device memory statistics
        assert record.mfu is None and record.peak_memory_gib is None
        assert record.device_name == result.numerics["device_name"]
    # the guide's fine-tuning is of the (1, 0) model: its batches hold rows of 1
    assert records["guide finetune"].examples == records["finetune"].examples // 2
    # the JSON round trip keeps them; a result written before they were recorded loads
    data = result.to_json()
    assert TrialResult.from_json(data).phase_figures == result.phase_figures
    assert data["phase_figures"][0]["name"] == "warmup"
    del data["phase_figures"], data["teacher"]["phase_figures"]
    assert TrialResult.from_json(data).phase_figures == ()
    # autoprumux train prints one line a phase, without MFU or peak memory on a CPU
    text = format_trial(result)
    warmup = records["warmup"]
    assert f"phase warmup: 20 steps, {warmup.examples_per_s:,.1f} examples/s" in text
    assert text.count("\nphase ") == 5 and "MFU" not in text and "GiB" not in text


def test_a_reused_stage_runs_no_phase_and_a_resumed_one_counts_what_it_ran(tiny_study_file):
    study = load_study(tiny_study_file())

    class Interrupt(Exception):
        pass

    def stop_at_25(progress):  # type: ignore[no-untyped-def]
        if progress.step == 25:
            raise Interrupt

    with pytest.raises(Interrupt):  # checkpointed at step 20 (checkpoint_every 10)
        run_trial(TrialSpec(study=study, n=1, sparsity=0.0), progress=stop_at_25)
    resumed = run_trial(TrialSpec(study=study, n=1, sparsity=0.0))
    (finetune,) = resumed.phase_figures
    assert (finetune.name, finetune.steps, finetune.examples) == ("finetune", 40, 40 * ROWS)
    pruned = run_trial(TrialSpec(study=study, n=1, sparsity=0.5))
    assert pruned.reused == ("teacher",)
    assert [r.name for r in pruned.phase_figures] == ["prune", "post-finetune"]


def test_a_phase_that_runs_out_of_memory_fails_the_trial_naming_its_batch(
    tiny_study_file, monkeypatch
):
    """A real trial whose pruning student (the one model called with masks) runs out of
    memory at its first step: the trial returns FAILED, its reason names the phase, N and the
    batch that failed, and it keeps the figures of the phases it finished."""
    shapes: list[tuple[int, int]] = []
    forward = Classifier.forward

    def student_out_of_memory(self, input_ids, *args, masks=None, **kwargs):  # type: ignore[no-untyped-def]
        if masks is not None:
            shapes.append(tuple(input_ids.shape))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, input_ids, *args, masks=masks, **kwargs)

    monkeypatch.setattr(Classifier, "forward", student_out_of_memory)
    study = load_study(tiny_study_file())
    result = run_trial(TrialSpec(study=study, n=2, sparsity=0.5, device="cpu"))  # no raise
    assert result.status is TrialStatus.FAILED
    ((sequences, length),) = shapes
    assert sequences == ROWS * 2 and length <= LONGEST
    assert result.reason == (
        f"out of memory on cpu in the prune phase at N=2: its batch of 8 rows x N=2 = 16 "
        f"sequences of {length} tokens (the batch that failed); "
        "lower [training] batch_rows (now 8)"
    )
    assert [r.name for r in result.phase_figures] == ["warmup", "finetune"]
    assert "\nphase finetune: 60 steps" in format_trial(result)


def test_running_out_of_memory_in_the_warmup_names_the_warmups_batch_rows(
    tiny_study_file, monkeypatch
):
    def out_of_memory(self, features, candidates=None):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(RetrievalHead, "forward", out_of_memory)
    path = tiny_study_file()
    # the warm-up's rows (the fine-tuning's stay 8)
    path.write_text(
        path.read_text().replace("batch_rows = 8\nmax_length", "batch_rows = 4\nmax_length")
    )
    study = load_study(path)
    assert study.warmup.batch_rows == 4
    result = run_trial(TrialSpec(study=study, n=2, sparsity=0.0, device="cpu"))
    assert result.status is TrialStatus.FAILED and result.phase_figures == ()
    assert result.reason is not None
    assert result.reason.startswith(
        "out of memory on cpu in the warmup phase at N=2: its batch of 4 rows x N=2 = 8 "
        "sequences of "
    )
    assert result.reason.endswith("(the batch that failed); lower [warmup] batch_rows (now 4)")


def test_the_memory_of_a_capped_gpu_is_in_the_reason(monkeypatch):
    """The GPU part of the reason, from torch's memory statistics (patched: no GPU here)."""
    gib = 2**30
    properties = dataclasses.make_dataclass("Properties", [("total_memory", int)])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: properties(80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: int(18.5 * gib))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: int(19.96 * gib))
    engine = Engine(device=torch.device("cuda", 0))
    assert trial_run._gpu_memory(engine, 0.25) == (
        "; 18.5 GiB in use, 20.0 GiB at the peak, of the GPU's 80.0 GiB, capped at 0.25 of it "
        "(20.0 GiB) by --gpus-per-trial 0.25"
    )
    assert trial_run._gpu_memory(engine, 1.0) == (
        "; 18.5 GiB in use, 20.0 GiB at the peak, of the GPU's 80.0 GiB"
    )


def test_a_phase_record_line_shows_what_is_known():
    from autoprumux.cli.outputs import phase_line

    record = PhaseRecord(
        name="prune",
        steps=300,
        examples=9600,
        tokens=1_228_800,
        seconds=10.0,
        examples_per_s=960.0,
        flop=9600 * 67.045e9,
        tflop_per_s=64.36,
        mfu=0.06504,
        peak_memory_gib=12.25,
        device_name="NVIDIA H100 80GB HBM3",
    )
    assert phase_line(record) == (
        "phase prune: 300 steps, 960.0 examples/s, 64.4 TFLOP/s, MFU 6.5%, peak 12.2 GiB"
    )
    unknown = dataclasses.replace(record, flop=0.0, mfu=None, peak_memory_gib=None)
    assert phase_line(unknown) == "phase prune: 300 steps, 960.0 examples/s"


def test_the_search_record_keeps_the_device_the_mfu_and_the_peak_memory():
    """The record a search stores (Optuna user attributes, results tables) sums the trial's
    phases: MFU weighted by their seconds (10 s at 10 % and 30 s at 30 %: 25 %), the largest
    peak, and the device from its numerics; they read back from the study as written."""
    from autoprumux.core.grid import Grid
    from autoprumux.loop.trial_mapping import finished_trial, record_of

    def phase(name: str, seconds: float, mfu: float | None, peak: float | None) -> PhaseRecord:
        return PhaseRecord(
            name=name,
            steps=10,
            examples=320,
            tokens=320 * 16,
            seconds=seconds,
            examples_per_s=320 / seconds,
            flop=1.0,
            tflop_per_s=1.0,
            mfu=mfu,
            peak_memory_gib=peak,
            device_name="NVIDIA H100 80GB HBM3",
        )

    result = TrialResult(
        task="sst2",
        n=1,
        sparsity=0.5,
        status=TrialStatus.COMPLETE,
        accuracy=0.8,
        throughput=100.0,
        wall_time_s=45.0,
        numerics={"device": "cuda:1"},
        phase_figures=(phase("prune", 10.0, 0.1, 3.5), phase("post-finetune", 30.0, 0.3, 2.0)),
    )
    record = result.to_record()
    assert record.device == "cuda:1" and record.peak_memory_gib == 3.5
    assert record.mfu == pytest.approx(0.25)
    grid = Grid((1,), (0.0, 0.5))
    stored = record_of(finished_trial(record, None, grid), record.point, "sst2")
    assert (stored.device, stored.mfu, stored.peak_memory_gib) == ("cuda:1", 0.25, 3.5)
    cpu = dataclasses.replace(
        result, numerics={"device": "cpu"}, phase_figures=(phase("finetune", 5.0, None, None),)
    ).to_record()
    assert (cpu.device, cpu.mfu, cpu.peak_memory_gib) == ("cpu", None, None)
