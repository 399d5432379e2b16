"""The engine's device policy: every tensor of a step on the trial's device, precisions, the loss
read at the logging cadence, threads, out-of-memory, and (marked ``gpu``) the same on CUDA.

Without a GPU the plumbing is shown on the ``meta`` device: a tensor made on the CPU by mistake
is recorded by :class:`CreatedOn`, and one mixed into a meta computation raises."""

from __future__ import annotations

import collections
import dataclasses
import math
import platform
import time

import pytest
import torch
from random_batches import random_encoded
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree

from autoprumux.cli.main import main
from autoprumux.core.errors import FieldError
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import Compile, TrainingSection, WarmupSection, load_study
from trainers.model.checkpoints import load_pretrained
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.runtime.device import (
    Engine,
    Precision,
    cpu_name,
    resolve_device,
    resolve_precision,
)
from trainers.training.loop import Diverged, Phase, run_phase, train_step
from trainers.training.phases import (
    accuracy,
    finetune_phase,
    identity_map,
    pruning_phase,
    warmup_phase,
)
from trainers.training.retrieval import RetrievalHead
from trainers.trial.run import TrialSpec, run_trial

META = torch.device("meta")


class CreatedOn(TorchFunctionMode):
    """Records, per device type, the torch functions that returned a tensor there. 0-dim
    tensors are left out: PyTorch keeps AdamW's step counter as a CPU scalar by design (except
    when fused), and CPU scalars combine with tensors on any device."""

    def __init__(self) -> None:
        super().__init__()
        self.functions: dict[str, set[str]] = collections.defaultdict(set)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for value in _pytree.tree_leaves(out):
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                self.functions[value.device.type].add(getattr(func, "__name__", str(func)))
        return out


def phases_of(arch, data, training) -> list[Phase]:  # type: ignore[no-untyped-def]
    student, teacher = Classifier(arch).to(META), Classifier(arch).to(META)
    l0 = L0Module(arch).to(META)
    return [
        finetune_phase(student, data, 4, 1e-3, 4, 0, training),
        finetune_phase(student, data, 4, 1e-3, 4, 0, training, teacher=teacher),  # distilled
        pruning_phase(
            student, teacher, l0, identity_map(32).to(META), data, training, 4, 2, 0.5, 0
        ),
    ]


@pytest.mark.parametrize("width", [1, 2])
def test_a_training_step_of_every_task_phase_stays_on_the_device(tiny_arch, width):
    arch = dataclasses.replace(tiny_arch, mux_width=width)
    data = random_encoded(48).to(META)  # the trial moves its splits once; batches are drawn there
    training = TrainingSection(batch_rows=4)
    engine = Engine(device=META)
    phases = phases_of(arch, data, training)  # models are built on the CPU, then moved
    with CreatedOn() as created:
        for phase in phases:
            trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
            batch = next(phase.data(0))
            loss = train_step(phase, batch, 0, engine, None, trained)
            assert loss.device == META and batch.input_ids.device == META
            assert all(p.device == META for m in phase.modules.values() for p in m.parameters())
            # the optimizer's state (AdamW moments) was made beside the parameters
            assert all(
                v.device == META or v.dim() == 0
                for state in phase.optimizer.state.values()
                for v in state.values()
            )
    # only the data order is drawn on the CPU (one seeded stream on every device), then moved
    assert created.functions["cpu"] <= {"randperm"}, created.functions["cpu"]
    assert "meta" in created.functions


def test_the_warmup_trains_only_parameters_on_the_models_device(tiny_arch):
    """The retrieval head is made beside the model (its step cannot run on ``meta``: the warm-up
    draws positions with unique(), which has no meta kernel; the GPU test runs it)."""
    student = Classifier(dataclasses.replace(tiny_arch, mux_width=2)).to(META)
    settings = WarmupSection(batch_rows=4, positions=4, negatives=8)
    phase = warmup_phase(student, RetrievalHead(student), random_encoded(48), settings, 0, 4)
    trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
    assert {p.device for p in trained} == {META}
    assert {p.device for m in phase.modules.values() for p in m.parameters()} == {META}


def test_the_loss_is_read_at_the_logging_cadence_and_a_nan_names_its_step(tiny_arch):
    model = Classifier(tiny_arch)
    data = random_encoded(48)
    phase = finetune_phase(model, data, 12, 1e-3, 4, 0, TrainingSection(batch_rows=4))
    seen = []
    run_phase(phase, progress=lambda p: seen.append(p.step), engine=Engine(log_every=5))
    assert seen == [5, 10, 12]  # every 5 steps, and the last

    model = Classifier(tiny_arch)
    phase = finetune_phase(model, data, 12, 1e-3, 4, 0, TrainingSection(batch_rows=4))
    loss = phase.loss
    phase.loss = lambda batch, step: loss(batch, step) * (math.nan if step == 6 else 1.0)
    with pytest.raises(Diverged, match="loss is nan at step 7"):  # found at the read after it
        run_phase(phase, engine=Engine(log_every=5))


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16])
def test_mixed_precision_training_learns(tiny_sources, precision):
    """bf16 autocast, and fp16 autocast with its gradient scaler, on the CPU (the GPU runs the
    same code): fine-tuning a tiny BERT still learns the fixture task."""
    from glue_tables import preset_encoded
    from transformers import AutoTokenizer

    model_dir, glue = tiny_sources
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    train, dev = preset_encoded(glue, tokenizer, 16)
    torch.manual_seed(0)
    model, _ = load_pretrained(str(model_dir))
    engine = Engine(precision=precision)
    losses = []
    phase = finetune_phase(model, train, 60, 3e-3, 8, 0, TrainingSection(batch_rows=8))
    run_phase(phase, progress=lambda p: losses.append(p.loss), engine=engine)
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert accuracy(model, dev, engine=engine) > 0.9
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights


def test_device_and_precision_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("auto", torch.device("cpu")) is Precision.FP32
    assert resolve_precision("bf16", torch.device("cpu")) is Precision.BF16
    with pytest.raises(FieldError, match="'gpu' is not one of: auto, cpu, cuda or cuda:INDEX"):
        resolve_device("gpu")
    with pytest.raises(FieldError, match="fp16 is for GPUs"):
        resolve_precision("fp16", torch.device("cpu"))
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(FieldError, match="cuda: no CUDA device is available here"):
            resolve_device("cuda")


def test_auto_precision_is_what_the_gpu_does_best(monkeypatch):
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    for bf16, expected in ((True, Precision.BF16), (False, Precision.FP16)):
        monkeypatch.setattr(
            torch.cuda, "is_bf16_supported", lambda including_emulation=True, bf16=bf16: bf16
        )
        assert resolve_precision("auto", gpu) is expected
    with pytest.raises(FieldError, match="bf16: Tesla V100 has no bfloat16 support"):
        resolve_precision("bf16", gpu)


def test_a_trial_runs_on_its_threads_and_records_its_numerics(tiny_study_file):
    before = torch.get_num_threads()
    study = load_study(tiny_study_file())
    result = run_trial(TrialSpec(study=study, n=1, sparsity=0.0, device="cpu", threads=1))
    assert result.status is TrialStatus.COMPLETE
    assert result.numerics["threads"] == 1 and result.numerics["device"] == "cpu"
    assert result.numerics["precision"] == "fp32"
    assert torch.get_num_threads() == before  # the caller's setting is back


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse2 avx2 {flag}
power management:

processor\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
"""


@pytest.mark.parametrize(
    ("flag", "name"),
    [
        ("avx512_vnni", "AMD EPYC 7B13 64-Core Processor (VNNI)"),
        ("avx_vnni", "AMD EPYC 7B13 64-Core Processor (VNNI)"),
        ("avx512f", "AMD EPYC 7B13 64-Core Processor"),
    ],
)
def test_a_cpu_is_named_by_its_model_and_whether_it_has_vnni(flag, name):
    """A throughput table's and a trial's device_name: the CPU, not platform's "x86_64"
    (int8's speed depends on VNNI, so a table timed on another CPU can be told apart)."""
    assert cpu_name(CPUINFO.format(flag=flag)) == name
    assert cpu_name("") == (platform.processor() or platform.machine())  # no /proc/cpuinfo


def test_out_of_memory_fails_the_trial_with_the_batch_named(tiny_study_file, monkeypatch):
    import trainers.trial.services

    def out_of_memory(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainers.trial.services, "run_phase", out_of_memory)
    result = run_trial(
        TrialSpec(study=load_study(tiny_study_file()), n=2, sparsity=0.0, device="cpu")
    )
    assert result.status is TrialStatus.FAILED
    assert result.reason == (  # the fixture study: [warmup] batch_rows 8, 16 tokens
        "out of memory on cpu in the warmup phase at N=2: its batches of 8 rows x N=2 = 16 "
        "sequences of up to 16 tokens (the longest); lower [warmup] batch_rows (now 8)"
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["train", "--n", "1", "--sparsity", "0", "--device", "gpu"], "--device: 'gpu' is not"),
        (
            ["search", "--budget", "0.03", "--executor", "ray", "--device", "cuda:1"],
            "--device: cuda:1: with --executor ray every trial uses the GPU(s) Ray assigns it",
        ),
        (
            [
                "search",
                "--budget",
                "0.03",
                "--executor",
                "ray",
                "--gpus",
                "2",
                "--gpus-per-trial",
                "2",
            ],
            "--gpus-per-trial: 2 is more than one GPU: a trial trains on one GPU",
        ),
    ],
)
def test_a_device_the_trials_cannot_have_is_one_line_before_any_work(
    tiny_study_file, capsys, command, message
):
    path = tiny_study_file()
    started = time.perf_counter()
    assert main([*command, "--study", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert time.perf_counter() - started < 10  # refused before measuring or training
    assert not (path.parent / "artifacts").exists() and not (path.parent / "throughput").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "warmup", "search"])
def test_cuda_without_cuda_is_one_line(tiny_study_file, capsys, command):
    path = tiny_study_file()
    extra = {"train": ["--n", "1", "--sparsity", "0"], "warmup": ["--n", "2"]}.get(command, [])
    executor = ["--executor", "local", "--budget", "0.03"] if command == "search" else []
    assert main([command, "--study", str(path), "--device", "cuda", *extra, *executor]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "autoprumux: error: --device: cuda: no CUDA device is available here; use cpu (or auto)"
    )


# -- on a GPU ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_a_trial_trains_on_cuda(tiny_study_file, monkeypatch):
    """Every step of every phase: parameters, batches, masks, teacher and loss on CUDA."""
    import trainers.training.loop

    steps = collections.Counter()
    real_step = trainers.training.loop.train_step

    def checked_step(phase, batch, step, engine, scaler, trained):  # type: ignore[no-untyped-def]
        assert batch.input_ids.is_cuda and all(p.is_cuda for p in trained)
        with CreatedOn() as created:
            loss = real_step(phase, batch, step, engine, scaler, trained)
        assert set(created.functions) == {"cuda"}, created.functions  # teacher, masks included
        steps[phase.name] += 1
        return loss

    monkeypatch.setattr(trainers.training.loop, "train_step", checked_step)
    # eager steps: the mode sees every op (test_compiled_steps.py checks compiled ones)
    study = load_study(tiny_study_file(distill_from_n1=True, compile=False))
    result = run_trial(TrialSpec(study=study, n=2, sparsity=0.5, device="cuda"))
    assert result.status is TrialStatus.COMPLETE, result.reason
    assert set(steps) == {"warmup", "finetune", "prune", "post-finetune"}
    assert result.numerics["device"].startswith("cuda") and result.numerics["precision"] in (
        "bf16",
        "fp16",
    )


@pytest.mark.gpu
def test_bf16_training_learns_on_cuda(tiny_sources):
    from glue_tables import preset_encoded
    from transformers import AutoTokenizer

    model_dir, glue = tiny_sources
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    train, dev = preset_encoded(glue, tokenizer, 16)
    train = train.to("cuda")
    engine = Engine.resolve("cuda", "bf16")
    torch.manual_seed(0)
    model = load_pretrained(str(model_dir))[0].to(engine.device)
    losses = []
    phase = finetune_phase(model, train, 60, 3e-3, 8, 0, TrainingSection(batch_rows=8))
    run_phase(phase, progress=lambda p: losses.append(p.loss), engine=engine)
    assert losses[-1] < 0.5 * losses[0] and accuracy(model, dev, engine=engine) > 0.9


@pytest.mark.gpu
def test_a_gpu_checkpoint_resumes_on_the_cpu(tiny_arch, tmp_path):
    data = random_encoded(48)
    training = TrainingSection(batch_rows=4)

    class Stop(Exception):
        pass

    def stop_at_25(progress):  # type: ignore[no-untyped-def]
        if progress.step == 25:
            raise Stop

    torch.manual_seed(0)
    on_gpu = Classifier(tiny_arch).cuda()
    with pytest.raises(Stop):
        run_phase(
            finetune_phase(on_gpu, data, 40, 1e-3, 4, 0, training),
            tmp_path / "ckpt",
            checkpoint_every=20,
            progress=stop_at_25,
            engine=Engine.resolve("cuda", "bf16"),
        )
    on_cpu = Classifier(tiny_arch)
    seen = []
    run_phase(
        finetune_phase(on_cpu, data, 40, 1e-3, 4, 0, training),
        tmp_path / "ckpt",
        checkpoint_every=20,
        progress=lambda p: seen.append(p.step),
    )
    assert seen[0] == 21 and seen[-1] == 40  # resumed from step 20, on the CPU


@pytest.mark.gpu
def test_measurement_synchronises_before_it_reads_the_clock(tiny_arch, tmp_path, monkeypatch):
    import trainers.deploy.timing as measurement  # the engine's timing (autoprumux.measurement's)
    from autoprumux.core.grid import GridPoint
    from autoprumux.core.study import ThroughputSection

    idle: list[bool] = []
    real = measurement.time_round_robin

    def spied(runs, passes, warmup_passes, sync, progress=None):  # type: ignore[no-untyped-def]
        def clock() -> float:
            idle.append(torch.cuda.current_stream().query())  # no kernel still running
            return time.perf_counter()

        return real(runs, passes, warmup_passes, sync, clock=clock, progress=progress)

    monkeypatch.setattr(measurement, "time_round_robin", spied)
    settings = ThroughputSection(device="cuda", batch_rows=64, examples_per_pass=512, passes=2)
    measurement.measure({GridPoint(1, 0.0): Classifier(tiny_arch)}, settings, 64, "estimate")
    assert idle and all(idle)


@pytest.mark.slow  # two trials, one compiled: about 14 s on 2 cores
def test_compile_is_opt_in_and_compiles_the_trials_steps(tiny_study_file, monkeypatch):
    """``[training] compile = true``: the trial's training steps and evaluations are compiled
    (here with dynamo's aot_eager backend: the same graph capture, without inductor's minutes
    of C++ compilation on 2 cores), no model is compiled in place (``nn.Module.compile`` is
    never called: state dicts keep their keys), and the trial trains as without it."""
    import trainers.runtime.device as device

    monkeypatch.setattr(device, "COMPILE_BACKEND", "aot_eager")
    in_place = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: in_place.append(self))
    before = device.compiled_graphs()
    plain = run_trial(
        TrialSpec(study=load_study(tiny_study_file()), n=1, sparsity=0.0, device="cpu")
    )
    assert device.compiled_graphs() == before  # off unless the study asks
    study = load_study(tiny_study_file(compile=True))
    assert study.training.compile is Compile.TRUE
    result = run_trial(TrialSpec(study=study, n=1, sparsity=0.5, device="cpu"))
    assert result.status is TrialStatus.COMPLETE and result.numerics["compile"] is True
    # the (1, 0) teacher comes from the cache; pruning and the pruned model's fine-tuning
    # compile their steps and their checks' evaluations
    assert "teacher" in result.reused and device.compiled_graphs() > before
    assert in_place == []
    assert result.accuracy > 0.9 and plain.accuracy > 0.9


def test_train_says_where_the_model_was_trained(tiny_study_file, capsys):
    path = tiny_study_file()
    args = ["train", "--study", str(path), "--n", "1", "--sparsity", "0"]
    assert main([*args, "--device", "cpu", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "trained on cpu (" in out and "| fp32 | 1 threads | torch " + torch.__version__ in out


def test_trials_side_by_side_keep_their_thread_count_until_the_last_ends():
    """The local executor runs trials in threads of one process: the first trial to end must
    not hand the second the caller's thread count mid-training."""
    from trainers.runtime.device import thread_count

    before = torch.get_num_threads()
    first, second = thread_count(1), thread_count(1)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert torch.get_num_threads() == 1  # the second trial is still running
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("width", [1, 2])
def test_classifying_stays_on_the_model_device(tiny_arch, width):
    import contextlib

    import numpy as np

    from trainers.deploy.inference import GroupedClassifier, Groups, TorchBackend

    arch = dataclasses.replace(tiny_arch, mux_width=width)
    model = GroupedClassifier(Classifier(arch)).to(META).eval()
    backend = TorchBackend(model, META, contextlib.nullcontext)
    ids = np.random.default_rng(0).integers(1, 200, (3, width, 12))
    groups = Groups(ids, np.ones_like(ids), np.zeros_like(ids))  # numpy, on the host
    with CreatedOn() as created:
        logits = backend.device_logits(groups)
    assert logits.device == META and logits.shape == (3, width, 2)
    assert created.functions["cpu"] <= {"from_numpy"}, created.functions["cpu"]
