"""An (N, s) trial that reuses its (N, 0) teacher reads the teacher's figures from its folder:
the folder keeps those of the trial that built it (the figures the study records for (N, 0)),
is neither timed nor described again, and the by-product record of the teacher carries them.
A teacher folder not described yet (its builder killed first) is timed and described by the
trial that finds it. The tiny random BERT (tests/trainers/fixtures.py)."""

from pathlib import Path

import pytest

from autoprumux.core.study import load_study
from trainers.deploy.model_folder import CARD_FILE, INFO_FILE, read_info
from trainers.trial import model_result
from trainers.trial.run import TrialSpec, run_trial


@pytest.fixture
def timed(monkeypatch):
    """The prunable parameters of each model the trials time, in order."""
    models: list[int] = []
    measure = model_result.measure_one

    def counting(model, *args, **kwargs):
        models.append(model_result.prunable_params(model.arch))
        return measure(model, *args, **kwargs)

    monkeypatch.setattr(model_result, "measure_one", counting)
    return models


# the fewest steps that train and prune the tiny model: the figures are read, not judged
STEPS = dict(finetune_steps=10, pruning_steps=10, lagrangian_warmup_steps=5, post_pruning_steps=5)


def described(folder: Path) -> dict[str, tuple[bytes, int]]:
    """The description's files: their bytes and their times of last change."""
    return {
        name: ((folder / name).read_bytes(), (folder / name).stat().st_mtime_ns)
        for name in (INFO_FILE, CARD_FILE)
    }


@pytest.mark.slow  # four trials of the tiny model: about 11 s on 2 cores
def test_a_pruned_trial_reads_its_teachers_figures_and_leaves_its_folder_alone(
    tiny_study_file, timed
):
    study = load_study(tiny_study_file(**STEPS))
    first = run_trial(TrialSpec(study=study, n=1, sparsity=0.0))
    folder = Path(first.artifact_path)
    assert timed == [first.parameters]  # the (1, 0) trial timed its model
    assert read_info(folder).throughput == first.throughput
    before = described(folder)

    pruned = run_trial(TrialSpec(study=study, n=1, sparsity=0.5))
    assert pruned.reused == ("teacher",)
    assert timed[1:] == [pruned.parameters]  # the pruned model alone
    assert described(folder) == before  # not described again: the builder's figures
    teacher = pruned.training().by_products[0]  # the study's free record of (1, 0)
    assert (teacher.artifact_path, teacher.accuracy) == (first.artifact_path, first.accuracy)
    assert teacher.throughput == first.throughput
    assert pruned.teacher is not None and pruned.teacher.served == first.served
    assert read_info(Path(pruned.artifact_path)).teacher == str(folder)

    # a teacher folder not described yet (its builder killed before it described it) is
    # timed and described by the trial that finds it, and by no trial after it
    for name in (INFO_FILE, CARD_FILE):
        (folder / name).unlink()
    del timed[:]
    other = run_trial(TrialSpec(study=study, n=1, sparsity=0.3))
    assert timed == [first.parameters, other.parameters]
    assert other.teacher is not None
    assert read_info(folder).throughput == other.teacher.throughput
    after = described(folder)
    run_trial(TrialSpec(study=study, n=1, sparsity=0.4))
    assert timed[2:] == [timed[2]] and described(folder) == after
