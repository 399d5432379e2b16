"""A ``SearchRequest`` as ``autoprumux search --study PATH --budget 0.03`` builds it, with the
fields a test changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.session.search_request import SearchRequest


def search_request(study_path: str | Path | None, **changes: Any) -> SearchRequest:
    fields: dict[str, Any] = dict(
        task=None,
        study_path=None if study_path is None else str(study_path),
        budget=Budget(BudgetKind.ABSOLUTE, 0.03),
        gpus=None,
        gpus_per_trial=1.0,
        cpus_per_trial=None,
        executor="local",
        address=None,
        storage=None,
        trainer_spec="study",
        throughput_path=None,
        max_trials=None,
        max_gpu_hours=None,
        max_retries=1,
        top_k=3,
    )
    return SearchRequest(**{**fields, **changes})
