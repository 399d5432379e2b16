"""autoprumux: make BERT-style text classifiers fast with data multiplexing and pruning.

The decision core (grid, records, surface, throughput model, recommender, evaluation) is pure
Python: importing it loads none of torch, ray, optuna, plotly or pandas. Those live in adapter
modules and are imported only when a command needs them.

``autoprumux.search(study="studies/sst2-tiny.toml", budget=0.03)`` runs a search (what
``autoprumux search`` does) and returns its result: the text the CLI prints, its JSON
document, and the decision and answer as objects.

``autoprumux.load_model(folder_or_file).predict(["a fine film"])`` classifies text with a
trained or exported model: it is :func:`trainers.deploy.inference.load_text_classifier`,
re-exported (the engine's loader of a bare checkpoint into a ``Classifier`` is
``trainers.model.checkpoints.load_classifier``).
"""

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import AutoPruMuxError, DataError, FieldError
from autoprumux.core.grid import BASELINE, Family, Grid, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.recommender import Decision, Objective, Recommendation, Recommender
from autoprumux.core.records import Observations, ResultsTable, TrialRecord, TrialStatus
from autoprumux.core.surface import AccuracySurface
from autoprumux.core.surrogate import Prediction, Source
from autoprumux.core.throughput import ThroughputModel, ThroughputTable
from autoprumux.core.version import __version__

if TYPE_CHECKING:
    from autoprumux.session.summary import SearchResult
    from trainers.deploy.inference import load_text_classifier as load_model


def search(
    study: str | os.PathLike[str],
    budget: float | Budget,
    *,
    gpus: float | None = None,
    gpus_per_trial: float = 1.0,
    cpus_per_trial: float | None = None,
    executor: str = "local",
    device: str = "auto",
    address: str | None = None,
    storage: str | None = None,
    trainer: str = "study",
    throughput: str | os.PathLike[str] | None = None,
    max_trials: int | None = None,
    max_gpu_hours: float | None = None,
    timeout: float | None = None,
    max_retries: int = 1,
    top_k: int = 3,
    early_stop: bool = True,
    objective: str = "throughput",
    task: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> "SearchResult":
    """Search ``study`` (a study file) for the fastest (N, s) within ``budget``, as
    ``autoprumux search --study STUDY`` does, and return its
    :class:`~autoprumux.session.summary.SearchResult`: ``text`` (what the CLI prints),
    ``document`` (its --json document), ``decision``, ``answer`` (the top-1's model folder or
    the command that trains it), ``best``, ``stop_reason``, ``report`` and ``records``.

    ``budget`` is accuracy points below (1, 0) that may be lost (0.03: 3 points, like
    --budget), or a :class:`Budget` of any kind. The other arguments are the CLI's options of
    the same names (``trainer``: "study" or "replay:FILE[?delay=SECONDS]"; ``throughput``:
    --throughput; ``timeout``: --timeout, in seconds), except ``executor``, "local" by default
    here (threads of this process; "ray" as the CLI's default). Progress lines go to
    ``progress`` (default: the ``autoprumux`` logger, at INFO); nothing is printed. A bad
    argument raises :class:`FieldError` naming the CLI option (``--gpus``).
    """
    from autoprumux.session.search_request import SearchRequest
    from autoprumux.session.search_session import SearchSession

    _check_types(locals())
    try:  # named by their options, as every other argument is
        chosen = budget if isinstance(budget, Budget) else Budget(BudgetKind.ABSOLUTE, budget)
        ranked_by = Objective.parse(objective)
    except FieldError as err:
        raise err.as_option() from None
    request = SearchRequest(
        task=task,
        study_path=os.fspath(study),
        budget=chosen,
        gpus=gpus,
        gpus_per_trial=gpus_per_trial,
        cpus_per_trial=cpus_per_trial,
        executor=executor,
        address=address,
        storage=storage,
        trainer_spec=trainer,
        throughput_path=None if throughput is None else os.fspath(throughput),
        max_trials=max_trials,
        max_gpu_hours=max_gpu_hours,
        max_retries=max_retries,
        top_k=top_k,
        device=device,
        early_stop=early_stop,
        timeout_s=timeout,
        objective=ranked_by,
    )
    return SearchSession(request, progress).run()


# search()'s arguments -> the CLI option each stands for and the Python types it takes (what
# the CLI's parser would have turned text into); None is taken where the default is None
_NUMBER = (int, float)
_PATH = (str, os.PathLike)
_ARGUMENTS: dict[str, tuple[str, tuple[type, ...], bool]] = {  # (option, types, None allowed)
    "study": ("--study", _PATH, False),
    "gpus": ("--gpus", _NUMBER, True),
    "gpus_per_trial": ("--gpus-per-trial", _NUMBER, False),
    "cpus_per_trial": ("--cpus-per-trial", _NUMBER, True),
    "executor": ("--executor", (str,), False),
    "device": ("--device", (str,), False),
    "address": ("--address", (str,), True),
    "storage": ("--storage", (str,), True),
    "trainer": ("--trainer", (str,), False),
    "throughput": ("--throughput", _PATH, True),
    "max_gpu_hours": ("--max-gpu-hours", _NUMBER, True),
    "timeout": ("--timeout", _NUMBER, True),
    "early_stop": ("--no-early-stop", (bool,), False),
    "objective": ("--objective", (str,), False),
    "task": ("--task", (str,), True),
}
_TYPE_NAMES = {_NUMBER: "a number", _PATH: "a path", (str,): "a string", (bool,): "True or False"}


def _check_types(arguments: dict[str, object]) -> None:
    """A :func:`search` argument of a type its option could not hold, in one line naming the
    option (a number given as text is not read: the CLI's parser does that for the CLI)."""
    for name, (option, types, optional) in _ARGUMENTS.items():
        value = arguments[name]
        if value is None and optional:
            continue
        number = types is _NUMBER and isinstance(value, bool)  # True is an int to Python
        if number or not isinstance(value, types):
            raise FieldError(option, f"{name}={value!r} is not {_TYPE_NAMES[types]}")
    progress = arguments["progress"]
    if progress is not None and not callable(progress):
        raise FieldError("progress", f"{progress!r} is not a function of one line")


def __dir__() -> list[str]:
    """What ``dir(autoprumux)`` and a notebook's completion offer: the lazy ``load_model`` too."""
    return sorted({*globals(), "load_model"})


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
    "Objective",
    "Observations",
    "Precision",
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
    "search",
]
