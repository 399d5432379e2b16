"""autoprumux: make BERT-style text classifiers fast with data multiplexing and pruning.

The decision core (grid, records, surface, throughput model, recommender, evaluation) is pure
Python: importing it loads none of torch, ray, optuna, plotly or pandas. Those live in adapter
modules and are imported only when a command needs them.

``autoprumux.load_model(folder_or_file).predict(["a fine film"])`` classifies text with a
trained or exported model (:mod:`trainers.deploy.inference`).
"""

from typing import TYPE_CHECKING

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import AutoPruMuxError, DataError, FieldError
from autoprumux.core.grid import BASELINE, Family, Grid, GridPoint
from autoprumux.core.recommender import Decision, Recommendation, Recommender
from autoprumux.core.records import Observations, ResultsTable, TrialRecord, TrialStatus
from autoprumux.core.surface import AccuracySurface
from autoprumux.core.surrogate import Prediction, Source
from autoprumux.core.throughput import ThroughputModel, ThroughputTable
from autoprumux.core.version import __version__

if TYPE_CHECKING:
    from trainers.deploy.inference import load_text_classifier as load_model


def __getattr__(name: str) -> object:
    """``load_model`` is imported on first use: it brings torch, which the core does not."""
    if name == "load_model":
        from trainers.deploy.inference import load_text_classifier

        return load_text_classifier
    raise AttributeError(f"module 'autoprumux' has no attribute {name!r}")


__all__ = [
    "BASELINE",
    "AccuracySurface",
    "AutoPruMuxError",
    "Budget",
    "BudgetKind",
    "DataError",
    "Decision",
    "Family",
    "FieldError",
    "Grid",
    "GridPoint",
    "Observations",
    "Prediction",
    "Recommendation",
    "Recommender",
    "ResultsTable",
    "Source",
    "ThroughputModel",
    "ThroughputTable",
    "__version__",
    "TrialRecord",
    "TrialStatus",
    "load_model",
]
