"""A built stage folder (a teacher, a pruned model) that cannot be read any more — a file
truncated or edited since it was renamed into place whole — is set aside and built again: it
failed every trial that reused it before, for good once their retries were spent."""

import logging
from types import SimpleNamespace

import pytest
import torch

from trainers.model.checkpoints import WEIGHTS_FILE, load_classifier, save_model
from trainers.model.classifier import Classifier
from trainers.trial.artifacts import set_aside_damaged, write_json
from trainers.trial.stages import Stage, cached_stage

CPU = SimpleNamespace(device=torch.device("cpu"))  # the engine: only its device is read


def test_a_damaged_stage_is_set_aside_and_built_again(tmp_path, tiny_arch, caplog):
    folder = tmp_path / "teacher-n1-0123456789"
    builds = []

    def build(partial):
        torch.manual_seed(len(builds))
        save_model(Classifier(tiny_arch), partial)
        write_json(partial / Stage.TEACHER.record_file, {"build": len(builds)})
        builds.append(partial)

    reused: list[str] = []
    _, record = cached_stage(Stage.TEACHER, folder, build, reused, CPU)
    assert (len(builds), reused, record) == (1, [], {"build": 0})
    _, record = cached_stage(Stage.TEACHER, folder, build, reused, CPU)
    assert (len(builds), reused, record) == (1, ["teacher"], {"build": 0})

    weights = folder / WEIGHTS_FILE
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="trainers.trial.artifacts"):
        model, record = cached_stage(Stage.TEACHER, folder, build, reused, CPU)
    assert (len(builds), reused, record) == (2, ["teacher"], {"build": 1})  # built, not reused
    [aside] = tmp_path.glob("teacher-n1-0123456789.damaged-*")
    assert (aside / WEIGHTS_FILE).read_bytes() == whole[: len(whole) // 2]  # kept as it was
    [warning] = caplog.messages
    assert warning.startswith(
        f"{folder}: its architecture.json and model.safetensors cannot be read as a saved model "
        "(SafetensorError: "
    )
    assert warning.endswith(f"): set aside as {aside} and built again")
    again = load_classifier(folder)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])


def test_only_the_folder_that_was_read_is_set_aside(tmp_path, tiny_arch):
    """Two trials read the damaged folder; the first sets it aside and builds it again: the
    second must not set the new one aside (it read the old one, another inode)."""
    folder = save_model(Classifier(tiny_arch), tmp_path / "trial-n1-s0.5")
    stale = folder.stat().st_ino + 1
    assert set_aside_damaged(folder, stale, ValueError("read before")) is None
    assert folder.is_dir() and not list(tmp_path.glob("*.damaged-*"))


def test_a_damaged_model_folder_is_one_line_for_classify(tmp_path, tiny_arch):
    """classify reads a model folder by load_classifier: a truncated weights file was a
    SafetensorError traceback, an edited architecture a JSONDecodeError."""
    from trainers.model.checkpoints import ARCHITECTURE_FILE, CheckpointError

    folder = save_model(Classifier(tiny_arch), tmp_path / "model")
    (folder / ARCHITECTURE_FILE).write_text('{"num_layers": 3,')
    with pytest.raises(CheckpointError) as refusal:
        load_classifier(folder)
    assert str(refusal.value).startswith(
        f"{folder}: its architecture.json and model.safetensors cannot be read as a saved model "
        "(JSONDecodeError: "
    )
