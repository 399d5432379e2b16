"""A real trial in a process of its own, as the local executor runs GPU trials
(:mod:`autoprumux.loop.trial_process`): the study trainer pickled into a spawned child, the
tiny study trained there on the CPU, its record answered back through the pipe."""

from __future__ import annotations

import json
from pathlib import Path

from autoprumux.core.grid import GridPoint
from autoprumux.core.records import TrialStatus
from autoprumux.loop.trial_process import TrialProcesses
from autoprumux.loop.trial_sources import StudyTrainer


def test_a_real_trial_trains_in_a_spawned_process_and_answers_its_record(tiny_study_file):
    trainer = StudyTrainer(
        study_path=str(tiny_study_file()), device="cpu", threads=1, gpu_share=0.5
    )
    training = TrialProcesses().run(trainer, GridPoint(1, 0.5), None)
    record = training.record
    assert record.status is TrialStatus.COMPLETE, record.reason
    assert (record.n, record.sparsity, record.device) == (1, 0.5, "cpu")
    assert record.mfu is None and record.peak_memory_gib is None  # a CPU has neither
    # the (1, 0) teacher it pruned from came back as a by-product, and the model folder the
    # child wrote says what the record says
    assert [(r.n, r.sparsity) for r in training.by_products] == [(1, 0.0)]
    info = json.loads((Path(str(record.artifact_path)) / "autoprumux.json").read_text())
    assert info["dev_accuracy"] == record.accuracy


def test_a_trial_in_a_thread_says_its_lines_to_the_searchs_progress_not_stderr(
    tiny_study_file, capfd
):
    """The Python API's search runs CPU trials in threads: their training lines go to the
    caller's progress (docs: nothing is printed), as the search's own lines do."""
    said: list[str] = []
    trainer = StudyTrainer(
        study_path=str(tiny_study_file()), device="cpu", threads=1, lines=said.append
    )
    assert trainer.on_device("cpu", 1.0).lines == said.append  # placed, it keeps them
    record = trainer(GridPoint(1, 0.0)).record
    assert record.status is TrialStatus.COMPLETE, record.reason
    assert said and all(line.startswith("(1, 0) ") for line in said)
    assert any(" finetune " in line for line in said)
    assert capfd.readouterr().err == ""
