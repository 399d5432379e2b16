"""Random token batches for engine tests: ids in [1, 200), every third row half padding."""

from __future__ import annotations

import torch

from trainers.data.splits import Encoded


def random_encoded(rows: int, length: int = 12) -> Encoded:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 200, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[::3, length // 2 :] = 0
    labels = torch.randint(0, 2, (rows,), generator=generator)
    return Encoded(ids, mask, torch.zeros_like(ids), labels)
