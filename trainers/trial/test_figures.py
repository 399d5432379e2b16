"""The held-out test figure: a search's trained models scored on the study's test split, in the
study's metric, once the search has answered.

The dev figure is what a search chose on, so the chosen model's dev figure flatters it; the test
figure, on examples no decision saw, is what to expect. :func:`score_held_out` is called by the
search session after its driver has returned, for the answer and the trained points of every
budget's top-3, and writes each figure into its model folder (``autoprumux.json`` and the card).
Nothing that decides -- the driver, the proposer, the recommender, early stopping -- imports this
module (``tests/autoprumux/test_test_figures.py`` checks the import graph), and a trial never
reads the test split (:func:`trainers.trial.task_data.test_data` is called from here only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import GridPoint
from autoprumux.core.metrics import score
from autoprumux.core.records import HeldOutScore
from autoprumux.core.study import Study
from trainers.deploy.model_folder import ModelInfo, read_info, record_test_score
from trainers.model.checkpoints import load_classifier
from trainers.runtime.device import Engine
from trainers.training.phases import confusion
from trainers.trial.task_data import positive_label_id, task_tables, task_tokenizer, test_data

log = logging.getLogger(__name__)


def score_held_out(
    study: Study,
    folders: Mapping[GridPoint, Path],
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> dict[GridPoint, HeldOutScore]:
    """Each model folder scored on the study's test split on ``device`` (in the precision its
    trial evaluated dev in, where the device runs it), its figure written into the folder;
    ``progress`` gets one line a model. A study without a test split has no figures."""
    say = progress or log.info
    tokenizer = task_tokenizer(study.model.name_or_path)
    test = test_data(study, tokenizer)  # on the CPU; moved to the device once, below
    if test is None or not folders:
        return {}
    labels = task_tables(study).label_names
    positive = positive_label_id(study, labels)
    metric = study.study.metric
    label = metric.label(study.study.positive_label)
    figures: dict[GridPoint, HeldOutScore] = {}
    for i, (point, folder) in enumerate(sorted(folders.items()), 1):
        info = read_info(folder)
        if info.labels != labels:
            raise DataError(
                str(folder),
                f"labels {', '.join(info.labels)} are not the study's ({', '.join(labels)}); "
                "it was not trained on this study's data",
            )
        engine = _engine(device, info, study)
        test = test.to(engine.device)
        model = load_classifier(folder, engine.device)
        counts = confusion(model, test, study.training.batch_rows, engine, len(labels))
        del model  # one model on the device at a time
        value = score(metric, counts, positive)
        record_test_score(folder, value, len(test))
        figures[point] = HeldOutScore(score=value, examples=len(test), dev=info.dev_accuracy)
        say(
            f"test {i}/{len(folders)} {point}: {label} {value:.4f} on {len(test):,} held-out "
            f"examples (dev {info.dev_accuracy:.4f})"
        )
    return figures


def _engine(device: str, info: ModelInfo, study: Study) -> Engine:
    """As the model's trial evaluated dev: the precision it recorded, else the study's, where
    this device runs it; else the device's best (a CPU: fp32)."""
    for precision in (info.numerics.get("precision"), study.training.precision):
        if precision in ("fp32", "bf16", "fp16"):
            try:
                return Engine.resolve(device, precision)
            except FieldError:  # e.g. fp16 on a CPU, bf16 on a GPU without it
                continue
    return Engine.resolve(device, "auto")
