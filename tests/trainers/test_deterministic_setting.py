"""``[training] deterministic``: the switches each setting sets on CUDA (torch exposes them
without CUDA, so a CPU test reads them after :func:`configure`), the op a strict engine refuses
named in one line, the setting recorded, and (marked ``gpu``) strict training on CUDA repeating
bit for bit."""

from __future__ import annotations

import os

import pytest
import torch
from random_batches import random_encoded

from autoprumux.core.errors import FieldError
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import TrainingSection, load_study
from trainers.model.classifier import Classifier
from trainers.runtime.device import (
    Engine,
    configure,
    current_switches,
    deterministic_switches,
    nondeterministic_op,
    numerics,
    refused_reason,
)
from trainers.training.loop import run_phase
from trainers.training.phases import finetune_phase
from trainers.trial.run import TrialSpec, run_trial


@pytest.fixture
def restored_switches(monkeypatch):
    """torch's process-wide switches and the cuBLAS setting as they were before the test."""
    before = current_switches()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # monkeypatch restores it
    yield
    torch.use_deterministic_algorithms(before["deterministic_algorithms"])
    torch.backends.cudnn.deterministic = before["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
    torch.backends.cuda.enable_flash_sdp(before["flash_sdp"])
    torch.backends.cuda.enable_mem_efficient_sdp(before["mem_efficient_sdp"])
    torch.backends.cuda.enable_cudnn_sdp(before["cudnn_sdp"])
    torch.backends.cuda.enable_math_sdp(before["math_sdp"])
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def test_strict_runs_only_deterministic_kernels_and_off_the_fastest():
    assert deterministic_switches("strict") == {
        "deterministic_algorithms": True,
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
        "flash_sdp": False,
        "mem_efficient_sdp": False,
        "cudnn_sdp": False,
        "math_sdp": True,  # the one attention backend whose backward is deterministic
    }
    assert deterministic_switches("off") == {
        "deterministic_algorithms": False,
        "cudnn_deterministic": False,
        "cudnn_benchmark": True,
        "flash_sdp": True,
        "mem_efficient_sdp": True,
        "cudnn_sdp": True,
        "math_sdp": True,
    }


@pytest.mark.usefixtures("restored_switches")
def test_configure_sets_a_cuda_engines_switches(monkeypatch):
    set_to = []
    monkeypatch.setattr(torch.cuda, "set_device", set_to.append)  # no CUDA needed past here
    cuda = torch.device("cuda", 0)
    configure(Engine(device=cuda, deterministic="strict"))
    assert current_switches() == deterministic_switches("strict")
    assert not torch.is_deterministic_algorithms_warn_only_enabled()  # strict means it
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # before cuBLAS's first call
    assert torch.backends.cuda.matmul.allow_tf32 and set_to == [cuda]
    configure(Engine(device=cuda, deterministic="off"))
    assert current_switches() == deterministic_switches("off")


@pytest.mark.usefixtures("restored_switches")
def test_a_users_deterministic_cublas_workspace_is_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the smaller deterministic one
    configure(Engine(device=torch.device("cuda", 0), deterministic="strict"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:2:16:8")  # torch's default: not
    configure(Engine(device=torch.device("cuda", 0), deterministic="strict"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_a_cpu_engine_leaves_the_switches_alone():
    before = current_switches()
    configure(Engine(deterministic="strict"))  # a CPU's kernels are deterministic either way
    assert current_switches() == before


@pytest.mark.usefixtures("restored_switches")
def test_a_refused_op_is_named_in_one_line():
    torch.use_deterministic_algorithms(True)
    with pytest.raises(RuntimeError) as refused:  # refused on a CPU too: torch's own error
        torch.nn.MaxUnpool1d(2)(torch.ones(1, 1, 2), torch.zeros(1, 1, 2, dtype=torch.long))
    assert nondeterministic_op(refused.value) == "max_unpooling2d_forward_out"
    assert refused_reason(refused.value) == (
        '[training] deterministic = "strict": max_unpooling2d_forward_out has no deterministic '
        'form on CUDA; use "off" (two runs then differ in the last bits)'
    )
    # torch.compile wraps it in its own error, after its own first line
    wrapped = RuntimeError(f"backend='inductor' raised:\n{refused.value}")
    assert nondeterministic_op(wrapped) == "max_unpooling2d_forward_out"
    assert nondeterministic_op(RuntimeError("CUDA error: an illegal memory access")) is None
    assert refused_reason(ValueError("max_unpooling2d_forward_out")) is None


def test_the_setting_is_checked_and_recorded():
    with pytest.raises(FieldError, match=r"deterministic: 'on' is not one of: 'off', 'strict'"):
        TrainingSection(deterministic="on")
    with pytest.raises(FieldError, match="training.deterministic: 'on' is not one of: off, strict"):
        Engine.resolve("cpu", deterministic="on")
    assert TrainingSection().deterministic == "off"
    engine = Engine.resolve("cpu", deterministic="strict")
    record = numerics(engine)
    assert record["deterministic"] == "strict" and "nondeterministic" not in record
    assert numerics(Engine())["deterministic"] == "off"


def test_the_off_cuda_record_names_its_nondeterministic_kernel(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    cuda = torch.device("cuda", 0)
    off = numerics(Engine(device=cuda, deterministic="off"))
    assert off["nondeterministic"] == ["scaled_dot_product_attention backward"]
    strict = numerics(Engine(device=cuda, deterministic="strict"))
    assert strict["deterministic"] == "strict" and "nondeterministic" not in strict


# -- on a GPU ---------------------------------------------------------------------------------


def _strict_steps(tiny_arch) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """The parameters after 20 strict bf16 steps from seed 0 (attention backward included)."""
    engine = Engine.resolve("cuda", "bf16", deterministic="strict")
    torch.manual_seed(0)
    model = Classifier(tiny_arch).to(engine.device)
    data = random_encoded(48).to(engine.device)
    run_phase(finetune_phase(model, data, 20, 1e-3, 4, 0, TrainingSection()), engine=engine)
    return [p.detach().cpu() for p in model.parameters()]


@pytest.mark.gpu
@pytest.mark.usefixtures("restored_switches")
def test_strict_training_on_cuda_repeats_bit_for_bit(tiny_arch):
    first, second = _strict_steps(tiny_arch), _strict_steps(tiny_arch)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.gpu
@pytest.mark.usefixtures("restored_switches")
def test_a_strict_trial_on_cuda_completes_or_names_the_op(tiny_study_file):
    study = load_study(tiny_study_file(deterministic="strict"))
    result = run_trial(TrialSpec(study=study, n=2, sparsity=0.5, device="cuda"))
    if result.status is TrialStatus.FAILED:  # an op of the step has no deterministic form
        assert result.reason.startswith('[training] deterministic = "strict": '), result.reason
    else:
        assert result.status is TrialStatus.COMPLETE, result.reason
        assert result.numerics["deterministic"] == "strict"
        assert "nondeterministic" not in result.numerics


def test_a_strict_refusal_fails_the_trial_naming_the_op(tiny_study_file, monkeypatch):
    """A strict engine that meets an op without a deterministic form (torch's real refusal,
    raised on the CPU by MaxUnpool1d) fails the trial with a one-line reason naming it."""
    import trainers.trial.services

    def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        torch.use_deterministic_algorithms(True)
        try:
            torch.nn.MaxUnpool1d(2)(torch.ones(1, 1, 2), torch.zeros(1, 1, 2, dtype=torch.long))
        finally:
            torch.use_deterministic_algorithms(False)

    monkeypatch.setattr(trainers.trial.services, "run_phase", refused)
    study = load_study(tiny_study_file(deterministic="strict"))
    result = run_trial(TrialSpec(study=study, n=1, sparsity=0.0, device="cpu"))
    assert result.status is TrialStatus.FAILED and result.numerics["deterministic"] == "strict"
    assert result.reason is not None and "\n" not in result.reason
    assert result.reason.startswith(
        '[training] deterministic = "strict": max_unpooling2d_forward_out'
    )
