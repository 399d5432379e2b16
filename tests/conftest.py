import os
import sys
from pathlib import Path

import pytest

# helpers shared by tests and benchmarks (tests/ itself would shadow the autoprumux package)
sys.path.insert(0, str(Path(__file__).parent / "support"))
# fixtures of a throwaway PostgreSQL server: postgres_server, postgres_url, storage_url
pytest_plugins = ["postgres_server"]

# No hub is reachable from CI or the developers' machines: never try one.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped, with the reason, where there is no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu); none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def write_csv(tmp_path):
    """Write rows (lists of cells, header first) to a CSV file and return its path."""

    def write(rows, name="results.csv"):
        path = tmp_path / name
        path.write_text("\n".join(",".join(map(str, row)) for row in rows) + "\n")
        return path

    return write
