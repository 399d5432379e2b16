"""The whole search loop with the replay trainer: answers, resume, failures, workers, Ray,
the dashboard, and bad input."""

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import BASELINE, PAPER_GRID, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.recipe import recipe_record, recipe_settings
from autoprumux.core.records import ResultsTable, Training, TrialRecord, TrialStatus
from autoprumux.core.study import load_study
from autoprumux.core.throughput import ThroughputTable
from autoprumux.core.version import __version__
from autoprumux.files.results_io import write_results, write_throughput_table
from autoprumux.loop.driver import SearchConfig, SearchDriver, StopReason, run_local
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.trial_sources import ReplayTrainer
from autoprumux.testing.synthetic import SyntheticFamily, synthetic_results

ROOT = Path(__file__).resolve().parents[2]
FAMILY = SyntheticFamily(accuracy_noise=0.0)  # exactly monotone: answers are known
TABLE = ThroughputTable({p: 1000 * FAMILY.expected_speedup(p) for p in PAPER_GRID})


@pytest.fixture
def grid_file(tmp_path):
    return write_results(synthetic_results(family=FAMILY, seed=1), tmp_path / "grid.csv")


def driver_for(tmp_path, budget=0.03, workers=1, name="s", url=None, **config):
    url = url or f"sqlite:///{tmp_path / 'study.db'}"
    cfg = SearchConfig(
        study_name=name,
        task="sst2",
        grid=PAPER_GRID,
        budget=Budget(BudgetKind.ABSOLUTE, budget),
        storage_url=url,
        workers=workers,
        **config,
    )
    return SearchDriver(cfg, TABLE, OptunaStore(url, name, PAPER_GRID, "sst2"))


def best_by_brute_force(path, budget):
    truth = ReplayTrainer(path=str(path)).table().observations("sst2").accuracy
    threshold = truth[BASELINE] - budget
    return max((p for p, a in truth.items() if a >= threshold - 1e-9), key=TABLE.throughput.get)


@pytest.mark.parametrize("budget", [0.0, 0.02, 0.03, 0.05, 0.08])
def test_the_loop_finds_the_known_best(tmp_path, grid_file, budget):
    outcome = run_local(driver_for(tmp_path, budget), ReplayTrainer(path=str(grid_file)), 1)
    assert outcome.stop_reason is StopReason.ANSWER_KNOWN
    assert outcome.best == best_by_brute_force(grid_file, budget)
    assert outcome.decision.recommendations[0].point == outcome.best
    assert outcome.trainings_total < len(PAPER_GRID) // 2


@pytest.mark.parametrize("budget", [0.01, 0.03, 0.05])
def test_free_teachers_save_trainings_and_change_no_answer(tmp_path, grid_file, budget):
    replay = ReplayTrainer(path=str(grid_file))

    def without_by_products(point, stop=None):
        return Training(replay(point).record)

    plain = run_local(driver_for(tmp_path, budget, name="plain"), without_by_products, 1)
    free = run_local(driver_for(tmp_path, budget, name="free"), replay, 1)
    assert plain.free_total == 0 and free.best == plain.best
    assert free.trainings_total <= plain.trainings_total
    assert free.trainings_total + free.free_total == len(free.records)


def test_a_trainings_teacher_is_recorded_free_and_settles_its_row(tmp_path):
    import optuna

    driver = driver_for(tmp_path)  # threshold: 0.93 - 0.03 = 0.90

    def train(point, record, *by_products):
        number = driver.store.start(point)
        driver.pending[number] = point
        driver.complete(number, Training(record, by_products))
        return number

    train(
        BASELINE,
        TrialRecord(
            task="sst2", n=1, sparsity=0.0, accuracy=0.93, throughput=1000.0, wall_time_s=60.0
        ),
    )
    # training (5, 0.6) fine-tuned its (5, 0) teacher on the way; that model misses 0.90
    teacher = TrialRecord(
        task="sst2",
        n=5,
        sparsity=0.0,
        accuracy=0.85,
        throughput=3000.0,
        wall_time_s=0.0,
        artifact_path="/t",
    )
    pruned = TrialRecord(
        task="sst2", n=5, sparsity=0.6, accuracy=0.84, throughput=6000.0, wall_time_s=90.0
    )
    number = train(GridPoint(5, 0.6), pruned, teacher)
    # a later training from the same teacher does not record it again
    train(
        GridPoint(5, 0.7),
        TrialRecord(task="sst2", n=5, sparsity=0.7, accuracy=0.83, throughput=7000.0),
        teacher,
    )
    # a by-product of a point being trained now is left to that training
    driver.pending[driver.store.start(GridPoint(2, 0.0))] = GridPoint(2, 0.0)
    two = TrialRecord(task="sst2", n=2, sparsity=0.0, accuracy=0.91, throughput=1900.0)
    train(
        GridPoint(2, 0.6),
        TrialRecord(task="sst2", n=2, sparsity=0.6, accuracy=0.90, throughput=3500.0),
        two,
    )

    free = [r for _, r in driver.store.records() if r.from_trial is not None]
    assert free == [replace(teacher, from_trial=number, wall_time_s=None)]
    status = driver.proposer.status(driver.state())
    assert not [p for p in status.open if p.n >= 5]  # (5, 0) missing settles N >= 5
    assert GridPoint(10, 0.0) in status.ruled_out
    outcome = driver.outcome()
    assert (outcome.trainings_total, outcome.free_total) == (4, 1)
    stored = optuna.load_study(study_name="s", storage=driver.config.storage_url)
    trial = next(t for t in stored.trials if t.user_attrs.get("from_trial") == number)
    assert trial.params == {"n": 5, "sparsity": 0.0} and trial.values == [0.85, 3000.0]
    assert trial.user_attrs["constraint"] == pytest.approx(-0.05)
    assert trial.system_attrs["constraints"] == [pytest.approx(0.05)]


class Killed(BaseException):
    """Stands for the process being killed mid-training (not an Exception: nothing catches it)."""


def test_resume_after_a_crash_repeats_nothing(tmp_path, grid_file, storage_url):
    calls = []

    def dies_on_the_fourth(point, stop=None):
        calls.append(point)
        if len(calls) == 4:
            raise Killed
        return ReplayTrainer(path=str(grid_file))(point)

    with pytest.raises(Killed):
        run_local(driver_for(tmp_path, url=storage_url), dies_on_the_fourth, 1)
    interrupted = calls[-1]
    outcome = run_local(
        driver_for(tmp_path, url=storage_url), ReplayTrainer(path=str(grid_file)), 1
    )
    completed = Counter(r.point for r in outcome.records if r.status is TrialStatus.COMPLETE)
    assert max(completed.values()) == 1  # no completed trial trained again
    assert completed[interrupted] == 1  # the interrupted one was
    assert outcome.best == best_by_brute_force(grid_file, 0.03)
    assert any(r.reason and r.reason.startswith("interrupted") for r in outcome.records)


def test_a_failing_point_is_retried_then_recorded_and_the_search_goes_on(tmp_path, grid_file):
    replay = ReplayTrainer(path=str(grid_file))
    target = best_by_brute_force(grid_file, 0.03)

    def broken(point, stop=None):
        if point == target:
            raise RuntimeError("CUDA error: an illegal memory access")
        return replay(point)

    outcome = run_local(driver_for(tmp_path, max_retries=2), broken, 1)
    failures = [r for r in outcome.records if r.point == target]
    assert len(failures) == 3 and all(r.status is TrialStatus.FAILED for r in failures)
    assert "RuntimeError: CUDA error" in failures[0].reason
    assert outcome.stop_reason is StopReason.ANSWER_KNOWN and outcome.best != target


def test_a_baseline_that_fails_for_good_stops_the_search_after_its_retries(tmp_path, grid_file):
    """Without the (1, 0) accuracy no budget has a threshold: the search gives the baseline
    1 + max_retries tries, then stops (it retried it without end before); a rerun tries it no
    more, unless its --max-retries allows another try."""
    replay = ReplayTrainer(path=str(grid_file))
    tries = Counter()

    def nan_baseline(point, stop=None):
        tries[point] += 1
        if point == BASELINE:
            return Training(
                TrialRecord(
                    task="sst2",
                    n=1,
                    sparsity=0.0,
                    status=TrialStatus.FAILED,
                    reason="finetune: loss is nan at step 2",
                )
            )
        return replay(point)

    outcome = run_local(driver_for(tmp_path, max_retries=1), nan_baseline, 1)
    assert outcome.stop_reason is StopReason.BASELINE_FAILED
    assert tries == {BASELINE: 2} and outcome.decision is None and outcome.best is None
    rerun = run_local(driver_for(tmp_path, max_retries=1), nan_baseline, 1)
    assert rerun.stop_reason is StopReason.BASELINE_FAILED and rerun.trainings_this_run == 0
    assert tries == {BASELINE: 2}
    once_more = run_local(driver_for(tmp_path, max_retries=2), nan_baseline, 1)
    assert once_more.trainings_this_run == 1 and tries == {BASELINE: 3}


def test_a_cli_search_whose_baseline_fails_says_why_and_exits_1(tmp_path, capsys):
    """A grid without a (1, 0) row: the replayed baseline fails every try."""
    rows = [r for r in synthetic_results(family=FAMILY, seed=1).records if r.point != BASELINE]
    grid = write_results(ResultsTable(rows), tmp_path / "no-baseline.csv")
    speeds = write_throughput_table(TABLE, tmp_path / "speeds.json")
    assert cli_search(tmp_path, grid, "--max-retries", "2", "--throughput", str(speeds)) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "stopped: baseline failed | trainings: 3 this run, 3 in the study (3 failed"
    )
    assert (
        "no recommendation: the (1, 0) baseline failed to train 3 time(s), the last with "
        f"'replay: {grid} has no row for (1, 0)'; every budget is measured from it. A study "
        "setting at fault (a learning rate, the model) needs a new study ([study] name or "
        "--storage); another cause mended, run again with --max-retries 3 to try it once more"
    ) in out


def test_four_workers_lose_no_record(tmp_path, grid_file, storage_url):
    driver = driver_for(tmp_path, budget=0.05, workers=4, url=storage_url)
    outcome = run_local(driver, ReplayTrainer(path=str(grid_file), delay_s=0.05), 4)
    trained = [r for r in outcome.records if r.from_trial is None]
    assert len(trained) == outcome.trainings_this_run == driver.started_this_run
    assert len(outcome.records) == len(trained) + outcome.free_total
    # every training is recorded: measured, or failed as the grid says (untrainable points)
    assert all(
        r.status is TrialStatus.COMPLETE or r.reason == "synthetic: did not train"
        for r in outcome.records
    )
    assert outcome.best == best_by_brute_force(grid_file, 0.05)


def test_caps_stop_the_search(tmp_path, grid_file):
    outcome = run_local(driver_for(tmp_path, max_trials=3), ReplayTrainer(path=str(grid_file)), 1)
    assert outcome.stop_reason is StopReason.MAX_TRIALS and outcome.trainings_total == 3


def test_a_cap_reached_once_the_answer_is_known_says_the_answer_is_known(tmp_path, grid_file):
    """A rerun whose cap equals the trainings the study holds stops nothing: it answers for
    the reason it would answer without the cap (it said "max trials" before, and with a larger
    cap "answer known", for the same study and answer)."""
    replay = ReplayTrainer(path=str(grid_file))
    done = run_local(driver_for(tmp_path), replay, 1)
    assert done.stop_reason is StopReason.ANSWER_KNOWN
    rerun = run_local(driver_for(tmp_path, max_trials=done.trainings_total), replay, 1)
    assert rerun.stop_reason is StopReason.ANSWER_KNOWN and rerun.trainings_this_run == 0
    assert rerun.best == done.best


def test_the_optuna_study_is_what_the_dashboard_reads(tmp_path, grid_file):
    import optuna

    run_local(driver_for(tmp_path), ReplayTrainer(path=str(grid_file)), 1)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2
    assert study.metric_names == ["accuracy", "throughput"]
    trial = next(t for t in study.trials if t.params == {"n": 1, "sparsity": 0.0})
    assert trial.values[0] == trial.user_attrs["threshold"] + 0.03 == pytest.approx(0.93)
    assert trial.system_attrs["constraints"] == [pytest.approx(-0.03)]
    assert study.user_attrs["grid"] == PAPER_GRID.spec()


def cli_search(tmp_path, grid_file, *extra, study=ROOT / "studies" / "sst2.toml", storage=None):
    return main(
        [
            "search",
            "--study",
            str(study),
            "--budget",
            "0.03",
            "--trainer",
            f"replay:{grid_file}",
            "--storage",
            storage or f"sqlite:///{tmp_path / 'cli.db'}",
            "--executor",
            "local",
            *extra,
        ]
    )


def test_cli_search_json(tmp_path, grid_file, capsys, storage_url):
    assert cli_search(tmp_path, grid_file, "--json", storage=storage_url) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    best = best_by_brute_force(grid_file, 0.03)
    assert (document["best"]["n"], document["best"]["sparsity"]) == (best.n, best.sparsity)
    assert document["best"]["model"] == "not_saved"  # the replayed rows record no folder
    assert document["decision"]["recommendations"][0]["n"] == best.n
    assert len(document["decision"]["recommendations"]) == 3  # --top's default
    assert document["trainings_total"] < 18 and "complete" in err  # live progress on stderr
    assert Path(document["report"]).is_file()  # the HTML report is written at the end
    # a rerun trains nothing
    assert cli_search(tmp_path, grid_file, "--json", "--top", "1", storage=storage_url) == 0
    rerun = json.loads(capsys.readouterr().out)
    assert rerun["trainings_this_run"] == 0 and len(rerun["decision"]["recommendations"]) == 1


@pytest.mark.ray
@pytest.mark.slow  # over 20 s on 2 cores
def test_ray_executor_with_cpu_trials(tmp_path, grid_file, capsys):
    assert (
        cli_search(
            tmp_path,
            grid_file,
            "--json",
            "--executor",
            "ray",
            "--gpus",
            "0",
            "--cpus-per-trial",
            "1",
        )
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    best = best_by_brute_force(grid_file, 0.03)
    assert (document["best"]["n"], document["best"]["sparsity"]) == (best.n, best.sparsity)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "1.5"], "--budget: 1.5 is outside [0, 1)"),
        (["--task", "cola"], "--task: 'cola' is not one of"),
        (["--storage", "notaurl://x"], "--storage 'notaurl://x' cannot be opened"),
        (["--trainer", "replay:/nonexistent.csv"], "replay file '/nonexistent.csv' does not exist"),
        (["--executor", "ray", "--gpus", "64"], "--gpus 64: the Ray cluster offers 0 GPU(s)"),
        # Tune would wait forever for a node that big
        (
            ["--executor", "ray", "--cpus-per-trial", "4096"],
            "--cpus-per-trial 4096: no node of the Ray cluster has that many cores",
        ),
        (["--cpus-per-trial", "4096"], "--cpus-per-trial: 4096: this machine has"),
        (
            ["--executor", "ray", "--address", "127.0.0.1:1"],
            "--address 127.0.0.1:1: nothing answers there",
        ),
        (  # the local executor (cli_search's) would ignore it and train on this machine
            ["--address", "10.0.0.7:6379"],
            "--address: 10.0.0.7:6379 with --executor local: the local executor trains on this "
            "machine without Ray; give --executor ray to join that cluster",
        ),
        # the replayed table's throughputs have no batch-1 latency
        (["--objective", "latency"], "--objective: latency needs the batch-1 latency"),
    ],
)
def test_bad_search_input_exits_2(tmp_path, grid_file, capsys, extra, message):
    code = cli_search(tmp_path, grid_file, *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err.splitlines()[-1]


def test_a_study_name_with_another_grid_leaves_the_storage_untouched(tmp_path, grid_file, capsys):
    assert cli_search(tmp_path, grid_file) == 0
    before = (tmp_path / "cli.db").read_bytes()
    other = tmp_path / "other.toml"
    other.write_text(
        '[study]\ntask = "sst2"\nname = "sst2"\n[grid]\nn = [1, 2]\nsparsity = [0, 0.5]\n'
    )
    code = cli_search(tmp_path, grid_file, study=other)
    assert code == 2 and "holds task 'sst2' and grid '1,2,5,10:" in capsys.readouterr().err
    assert (tmp_path / "cli.db").read_bytes() == before


def test_a_study_whose_data_file_was_edited_in_place_is_not_reused(tmp_path, grid_file, capsys):
    """The recipe holds where the data is; its content is recorded too (the study attribute
    `contents`): relabelled rows at the same path were answered from the old trials before."""
    study = tmp_path / "own.toml"
    study.write_text(
        (ROOT / "studies" / "sst2.toml")
        .read_text()
        .replace('source = "hub"', 'source = "glue_dir"\nglue_dir = "glue"')
    )
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    rows = ["good film\t1", "bad film\t0", "fine acting\t1", "dull plot\t0"]

    def write(split, lines):
        (tmp_path / "glue" / "SST-2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "\n".join(lines) + "\n"
        )

    write("train", rows * 5)
    write("dev", rows)
    assert cli_search(tmp_path, grid_file, study=study) == 0
    assert cli_search(tmp_path, grid_file, study=study) == 0  # the same data: answered again
    capsys.readouterr()
    before = (tmp_path / "cli.db").read_bytes()
    write("dev", [r[:-1] + str(1 - int(r[-1])) for r in rows])  # every label flipped
    assert cli_search(tmp_path, grid_file, study=study) == 2
    refusal = capsys.readouterr().err.splitlines()[-1]
    assert refusal == (
        f"autoprumux: error: study 'own' in sqlite:///{tmp_path / 'cli.db'} was trained on "
        "other content: the study's [data] files changed since its trials trained, so its "
        "results do not apply; restore them, or use another study name ([study] name) or "
        "--storage, or delete it: optuna delete-study --study-name own --storage "
        f"sqlite:///{tmp_path / 'cli.db'}"
    )
    assert (tmp_path / "cli.db").read_bytes() == before
    write("dev", rows)  # restored: answered again
    assert cli_search(tmp_path, grid_file, study=study) == 0


def test_a_local_model_folder_written_again_in_place_is_not_reused(tmp_path, grid_file, capsys):
    """A classifier fine-tuned anew into the same folder: its trials were the old model's."""
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "model.safetensors").write_bytes(b"old weights")
    (model / "optimizer.pt").write_bytes(b"not read by a training")
    study = tmp_path / "local.toml"
    text = (ROOT / "studies" / "sst2.toml").read_text()
    study.write_text(
        text.replace('name_or_path = "bert-base-uncased"', f'name_or_path = "{model}"')
    )
    assert cli_search(tmp_path, grid_file, study=study) == 0
    (model / "optimizer.pt").write_bytes(b"another optimizer state")
    assert cli_search(tmp_path, grid_file, study=study) == 0  # a file no training reads
    capsys.readouterr()
    (model / "model.safetensors").write_bytes(b"new weights")
    assert cli_search(tmp_path, grid_file, study=study) == 2
    refusal = capsys.readouterr().err.splitlines()[-1]
    assert "was trained on other content: its [model] folder changed since its trials" in refusal


def another_learning_rate(tmp_path):
    """The paper study under its own name, with another learning rate: another recipe."""
    edited = tmp_path / "edited" / "sst2.toml"
    edited.parent.mkdir()
    text = (ROOT / "studies" / "sst2.toml").read_text()
    edited.write_text(
        text.replace("finetune_learning_rate = 2e-5", "finetune_learning_rate = 3e-5")
    )
    return edited


def test_a_study_trained_under_another_recipe_is_not_reused(tmp_path, grid_file, capsys):
    assert cli_search(tmp_path, grid_file) == 0
    before = (tmp_path / "cli.db").read_bytes()
    edited = another_learning_rate(tmp_path)
    assert cli_search(tmp_path, grid_file, study=edited) == 2
    refusal = capsys.readouterr().err.splitlines()[-1]
    assert "was trained under another recipe" in refusal
    assert "training.finetune_learning_rate: 2e-05 recorded, 3e-05 now" in refusal
    assert (tmp_path / "cli.db").read_bytes() == before
    # a study recorded without a recipe (an older release) is refused too, not trusted
    with sqlite3.connect(tmp_path / "cli.db") as db:
        db.execute("DELETE FROM study_user_attributes WHERE key = 'recipe'")
    assert cli_search(tmp_path, grid_file) == 2
    assert "did not record their recipe" in capsys.readouterr().err.splitlines()[-1]


def test_a_study_a_newer_release_recorded_says_upgrade_not_delete(tmp_path, grid_file, capsys):
    """A recipe field this release does not know: its results may well apply, so the refusal
    asks for the newer release and never suggests deleting the study."""
    assert cli_search(tmp_path, grid_file) == 0
    with sqlite3.connect(tmp_path / "cli.db") as db:
        (value,) = db.execute(
            "SELECT value_json FROM study_user_attributes WHERE key = 'recipe'"
        ).fetchone()
        recipe = {**json.loads(value), "training.label_smoothing": 0.1}
        db.execute(
            "UPDATE study_user_attributes SET value_json = ? WHERE key = 'recipe'",
            (json.dumps(recipe),),
        )
    before = (tmp_path / "cli.db").read_bytes()
    capsys.readouterr()
    assert cli_search(tmp_path, grid_file) == 2
    refusal = capsys.readouterr().err.splitlines()[-1]
    assert refusal.endswith(
        f"was recorded by a newer autoprumux (its recipe has training.label_smoothing, unknown "
        f"to autoprumux {__version__}): upgrade autoprumux to continue it"
    )
    assert "delete" not in refusal
    assert (tmp_path / "cli.db").read_bytes() == before


def test_a_speed_setting_changes_no_recipe_and_an_old_hash_is_upgraded(tmp_path, grid_file, capsys):
    """compile and checkpoint_every decide no result: a search with them flipped reuses the
    study; a study an older release labelled with its recipe hash is accepted when that hash
    is this file's, and then records the settings."""
    assert cli_search(tmp_path, grid_file) == 0
    faster = tmp_path / "faster" / "sst2.toml"
    faster.parent.mkdir()
    text = (ROOT / "studies" / "sst2.toml").read_text()
    speed = "[training]\ncompile = true\ncheckpoint_every = 50\n"
    faster.write_text(text.replace("[training]  # appendix Table 5 (PruMUX)\n", speed))
    assert cli_search(tmp_path, grid_file, study=faster) == 0, capsys.readouterr().err
    study = load_study(ROOT / "studies" / "sst2.toml")
    (old_hash,) = [h for h in recipe_record(study).legacy_hashes if h == "462e8a9d8d2c"]
    with sqlite3.connect(tmp_path / "cli.db") as db:
        db.execute(
            "UPDATE study_user_attributes SET value_json = ? WHERE key = 'recipe'",
            (json.dumps(old_hash),),
        )
    assert cli_search(tmp_path, grid_file) == 0, capsys.readouterr().err
    with sqlite3.connect(tmp_path / "cli.db") as db:
        (stored,) = db.execute(
            "SELECT value_json FROM study_user_attributes WHERE key = 'recipe'"
        ).fetchone()
    assert json.loads(stored) == recipe_settings(study)


def test_an_invalid_grid_in_the_study_file(tmp_path, grid_file, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\ntask = "sst2"\n[grid]\nn = [2]\n')
    code = main(
        ["search", "--study", str(bad), "--budget", "0.03", "--trainer", f"replay:{grid_file}"]
    )
    assert code == 2 and "grid.n: the grid must hold N = 1 and s = 0" in capsys.readouterr().err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study(tmp_path, grid_file, storage_url):
    run_local(
        driver_for(tmp_path, name="dash", url=storage_url), ReplayTrainer(path=str(grid_file)), 1
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoprumux",
            "dashboard",
            "--storage",
            storage_url,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=2
                ) as response:
                    studies = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the dashboard did not answer")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert [s["study_name"] for s in studies["study_summaries"]] == ["dash"]


def test_trial_records_round_trip_through_optuna(tmp_path):
    store = OptunaStore(f"sqlite:///{tmp_path / 'r.db'}", "r", PAPER_GRID, "sst2")
    number = store.start(BASELINE)
    record = TrialRecord(
        task="sst2",
        n=1,
        sparsity=0.0,
        accuracy=0.9,
        throughput=100.0,
        achieved_sparsity=0.0,
        wall_time_s=60.0,
        gpu_hours=0.5,
        seed=3,
        artifact_path="/a",
        node="10.0.0.7/9f79f4ab",
    )
    store.finish(number, record, threshold=0.87)
    assert store.records() == [(number, record)]


def test_the_default_study_is_found_from_any_folder(tmp_path, monkeypatch):
    from autoprumux.cli.default_study import default_study_path
    from autoprumux.core.errors import FieldError

    monkeypatch.chdir(tmp_path)
    assert default_study_path("sst2", gpu=False) == ROOT / "studies" / "sst2-tiny.toml"
    assert default_study_path("sst2", gpu=True) == ROOT / "studies" / "sst2.toml"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "sst2-tiny.toml").write_text("")
    assert default_study_path("sst2", gpu=False) == Path("studies") / "sst2-tiny.toml"
    with pytest.raises(FieldError, match="--study: no study given and neither studies/mnli-tiny"):
        default_study_path("mnli", gpu=False)


def test_the_search_answers_an_int8_point_when_int8_is_the_fastest_within_the_budget(
    tmp_path, grid_file, capsys
):
    # every model keeps its accuracy in int8 and runs 1.5x as fast: the answer is the fp32
    # answer's model, served in int8
    rows = ReplayTrainer(path=str(grid_file)).table().records
    int8_grid = write_results(
        ResultsTable(tuple(replace(r, accuracy_int8=r.accuracy) for r in rows)),
        tmp_path / "int8-grid.csv",
    )
    served = {p.served(Precision.INT8): 1.5 * v for p, v in TABLE.throughput.items()}
    table = write_throughput_table(
        ThroughputTable({**TABLE.throughput, **served}), tmp_path / "table.csv"
    )
    code = cli_search(tmp_path, int8_grid, "--throughput", str(table), "--json")
    document = json.loads(capsys.readouterr().out)
    best = best_by_brute_force(grid_file, 0.03)
    assert code == 0
    assert (document["best"]["n"], document["best"]["sparsity"]) == (best.n, best.sparsity)
    assert document["best"]["precision"] == "int8"
    assert document["decision"]["recommendations"][0]["precision"] == "int8"
    assert document["decision"]["recommendations"][0]["speedup"] == pytest.approx(
        1.5 * FAMILY.expected_speedup(best)
    )


def test_a_static_int8_model_is_searched_and_answered_at_its_own_files_speed(
    tmp_path, grid_file, capsys
):
    # as above, but the fp32 answer's int8 file is static QDQ at half dynamic's examples/s:
    # 0.75 x its fp32 speed. The search ranks it so, and answers the fastest of the rest
    rows = ReplayTrainer(path=str(grid_file)).table().records
    best = best_by_brute_force(grid_file, 0.03)
    static = {"int8_throughput_ratio": 0.5, "int8_latency_ratio": 2.0}
    int8_grid = write_results(
        ResultsTable(tuple(
            replace(r, accuracy_int8=r.accuracy, **(static if r.point == best else {}))
            for r in rows
        )),
        tmp_path / "int8-grid.csv",
    )  # fmt: skip
    served = {p.served(Precision.INT8): 1.5 * v for p, v in TABLE.throughput.items()}
    table = write_throughput_table(
        ThroughputTable({**TABLE.throughput, **served}), tmp_path / "table.csv"
    )
    truth = ReplayTrainer(path=str(grid_file)).table().observations("sst2").accuracy
    feasible = [p for p, a in truth.items() if a >= truth[BASELINE] - 0.03 - 1e-9]
    speeds = {p: TABLE.throughput[p] for p in feasible}
    speeds |= {
        p.served(Precision.INT8): (0.75 if p == best else 1.5) * v for p, v in speeds.items()
    }
    expected = max(speeds, key=speeds.__getitem__)
    assert expected != best.served(Precision.INT8)
    code = cli_search(tmp_path, int8_grid, "--throughput", str(table), "--json")
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    answer = document["best"]
    assert (answer["n"], answer["sparsity"], answer["precision"]) == (
        expected.n, expected.sparsity, expected.precision.value
    )  # fmt: skip
    assert document["decision"]["recommendations"][0]["throughput"] == pytest.approx(
        speeds[expected]
    )
    assert document["decision"]["throughput_table"]["rescaled"] == [
        {"n": best.n, "sparsity": best.sparsity, "precision": "int8"}
    ]


def test_a_read_only_storage_is_one_line_not_a_traceback(tmp_path, grid_file, capsys):
    """A study on a read-only mount or file: the search's first write (its labels) failed with
    Optuna's 'e.g. exceeding max length' traceback."""
    assert cli_search(tmp_path, grid_file) == 0
    capsys.readouterr()
    with sqlite3.connect(tmp_path / "cli.db") as db:  # as an older release recorded it
        db.execute("DELETE FROM study_user_attributes WHERE key = 'contents'")
    read_only = f"sqlite:///file:{tmp_path / 'cli.db'}?mode=ro&uri=true"
    # the same search again: it would answer from the study, once its contents are recorded
    assert cli_search(tmp_path, grid_file, storage=read_only) == 2
    err = capsys.readouterr().err
    assert err == (
        "autoprumux: error: the study's storage cannot be written: (sqlite3.OperationalError) "
        "attempt to write a readonly database; a search records its trials in it, so give a "
        "--storage it can write\n"
    )


def test_the_dry_run_refuses_a_stored_study_as_the_search_would(tmp_path, grid_file, capsys):
    """It said `… exists: a search resumes its study` of a study the search then refused."""
    assert cli_search(tmp_path, grid_file) == 0
    before = (tmp_path / "cli.db").read_bytes()
    capsys.readouterr()
    assert cli_search(tmp_path, grid_file, "--dry-run") == 0
    assert f"{tmp_path / 'cli.db'} holds the study: a search resumes it" in capsys.readouterr().out
    edited = another_learning_rate(tmp_path)
    assert cli_search(tmp_path, grid_file, study=edited) == 2
    refusal = capsys.readouterr().err.splitlines()[-1]
    assert cli_search(tmp_path, grid_file, "--dry-run", study=edited) == 2
    assert capsys.readouterr().err.splitlines()[-1] == refusal
    regrid = tmp_path / "regrid.toml"
    regrid.write_text(
        '[study]\ntask = "sst2"\nname = "sst2"\n[grid]\nn = [1, 2]\nsparsity = [0, 0.5]\n'
    )
    assert cli_search(tmp_path, grid_file, "--dry-run", study=regrid) == 2
    assert "holds task 'sst2' and grid '1,2,5,10:" in capsys.readouterr().err
    assert (tmp_path / "cli.db").read_bytes() == before
