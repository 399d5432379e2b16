"""The README's main job, ``autoprumux search --task sst2 --budget 0.03``, end to end: the
default study picked without a GPU, real training, Ray Tune with CPU trials, a real SQLite
Optuna study, the top-3 table and the HTML report. The study is a tiny random BERT on fixture
SST-2 (a few seconds a trial) placed where the bare command looks for it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import load_study
from autoprumux.files.results_io import read_throughput_table
from autoprumux.loop.optuna_store import OptunaStore

BARE = ["search", "--task", "sst2", "--budget", "0.03"]


def autoprumux(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "autoprumux.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.ray
@pytest.mark.slow  # over 20 s on 2 cores
def test_the_bare_search_command_on_the_default_study(tiny_study_file, tmp_path):
    written = tiny_study_file()
    project = tmp_path / "project"
    (project / "studies").mkdir(parents=True)
    study_path = project / "studies" / "sst2-tiny.toml"  # where the bare command looks
    study_path.write_text(written.read_text())

    done = autoprumux(project, *BARE)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "study: studies/sst2-tiny.toml (no GPU here: the embedded default)" in done.stderr
    assert "trial(s) at a time (ray)" in done.stderr  # Ray Tune ran the trials
    assert "complete" in done.stderr  # live progress: trials, and steps inside each trial
    assert "(1, 0) finetune 60/60" in done.stderr

    # The study in the SQLite storage: what was trained, each a complete trial of the grid.
    study = load_study(study_path)
    store = OptunaStore(study.storage_url, study.name, study.grid.grid, "sst2")
    records = [r for _, r in store.records() if r.status is TrialStatus.COMPLETE]
    points = {GridPoint(r.n, r.sparsity) for r in records}
    assert BASELINE in points and points <= set(study.grid.grid)
    assert len(records) == len(points)  # nothing trained twice
    assert all(0.0 <= r.accuracy <= 1.0 for r in records)

    # The recommendation: the fastest trained point within 3 points of (1, 0), by the table the
    # search measured, is the top-1 row of the printed table.
    table = read_throughput_table(project / "studies" / "throughput" / "sst2-tiny-cpu-float32.json")
    accuracy = {GridPoint(r.n, r.sparsity): r.accuracy for r in records}
    threshold = accuracy[BASELINE] - 0.03
    best = max(
        (p for p, a in accuracy.items() if a >= threshold - 1e-9),
        key=lambda p: (table.throughput[p], accuracy[p]),
    )
    rank_one = next(line for line in out.splitlines() if line.lstrip().startswith("1 "))
    assert str(best) in rank_one and "measured" in rank_one
    # trainings: the complete ones and those stopped early (in Ray workers, with the search's
    # threshold), each stopped one because its accuracy bound is under the threshold
    every = [r for _, r in store.records()]
    stopped = [r for r in every if r.status is TrialStatus.STOPPED and r.from_trial is None]
    assert all(r.accuracy_bound < threshold and r.stop_step for r in stopped)
    trained = [r for r in records if r.from_trial is None] + stopped
    assert f"trainings: {len(trained)} this run" in out
    assert f"{len(stopped)} stopped early" in out
    # a point recorded free is the (N, 0) teacher of a training of that N: the same model
    numbers = dict(store.records())
    for free in (r for r in records if r.from_trial is not None):
        origin = numbers[free.from_trial]
        assert free.sparsity == 0.0 and origin.n == free.n and origin.sparsity > 0
        assert free.wall_time_s is None and free.gpu_hours is None

    # The report: written where the output says, naming the study and the recommended point.
    report = project / "reports" / "sst2-tiny.html"
    assert f"report: {report}" in out
    html = report.read_text()
    assert "sst2-tiny" in html and f"Deploy <b>{best}</b>" in html

    # A rerun trains nothing and answers the same.
    again = autoprumux(project, *BARE, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    document = json.loads(again.stdout)
    assert document["trainings_this_run"] == 0
    assert (document["best"]["n"], document["best"]["sparsity"]) == (best.n, best.sparsity)
    # the answer is a model people can use: its folder classifies the dev set as recorded
    assert document["best"]["model"] == "saved"
    from trainers.deploy.model_folder import read_info

    info = read_info(Path(document["best"]["model_dir"]))
    assert (info.n, info.sparsity) == (best.n, best.sparsity)
