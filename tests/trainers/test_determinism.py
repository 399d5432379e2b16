"""Same seed, same result, wherever a trial runs: in this process or in a Ray worker.

A trial's float sums depend on the number of CPU threads its kernels split them over (on
2-layer MiniLM, 20 fine-tuning steps on 1 and on 2 threads gave different weights). So the
thread count is part of the trial's spec (the search passes its CPUs per trial to every
executor), and every phase seeds its own random stream, whatever ran before it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from autoprumux.core.grid import GridPoint
from autoprumux.loop.trial_sources import StudyTrainer


def weights_digest(artifact: str) -> str:
    return hashlib.sha256((Path(artifact) / "model.safetensors").read_bytes()).hexdigest()


def study_copy(tiny_sources, folder: Path) -> str:  # type: ignore[no-untyped-def]
    """The tiny study in a folder of its own: no artifact is shared with another copy."""
    from fixtures import study_text

    path = folder / "studies" / "tiny.toml"
    path.parent.mkdir(parents=True)
    path.write_text(study_text(*tiny_sources))
    return str(path)


@pytest.mark.ray
@pytest.mark.slow  # over 20 s on 2 cores
def test_a_trial_gives_the_same_result_in_process_and_in_a_ray_worker(tiny_sources, tmp_path):
    import ray

    from autoprumux.loop.ray_executor import _trainable

    point = GridPoint(2, 0.5)  # warm-up, fine-tuning, pruning, post-pruning fine-tuning
    here = StudyTrainer(study_path=study_copy(tiny_sources, tmp_path / "here"), threads=1)
    there = StudyTrainer(study_path=study_copy(tiny_sources, tmp_path / "ray"), threads=1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # this process's own setting must not matter
    try:
        local = here(point)
    finally:
        torch.set_num_threads(before)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        config = {"n": point.n, "sparsity": point.sparsity}
        remote = ray.get(ray.remote(num_cpus=1)(_trainable).remote(config, there))
    finally:
        ray.shutdown()
    assert remote["status"] == "complete", remote
    assert remote["accuracy"] == local.record.accuracy
    # not only the accuracy: the trained weights are the same bits
    assert weights_digest(remote["artifact_path"]) == weights_digest(local.record.artifact_path)
    (teacher,) = local.by_products
    assert weights_digest(teacher.artifact_path) == weights_digest(
        teacher.artifact_path.replace(str(tmp_path / "here"), str(tmp_path / "ray"))
    )
