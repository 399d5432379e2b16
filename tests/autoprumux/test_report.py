"""The report's data functions on known inputs, the HTML, escaping, and a real browser."""

import re
import shutil
import subprocess

import pytest

from autoprumux.cli.main import main
from autoprumux.core.answer import ModelState, TrainCommand
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.errors import DataError
from autoprumux.core.grid import BASELINE, Family, Grid
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.metrics import Metric
from autoprumux.core.precision import Precision
from autoprumux.core.recipe import recipe_record
from autoprumux.core.records import Observations, TrialRecord, TrialStatus
from autoprumux.core.study import Study, StudySection
from autoprumux.core.throughput import TIMED_IN_TRIALS, ThroughputTable
from autoprumux.report.data import (
    BudgetRow,
    ReportInput,
    TradeoffPoint,
    answer,
    cost,
    pareto_frontier,
    points_to_score,
    precision_quality,
    recommendations,
    surface_heatmaps,
    tradeoff,
)
from autoprumux.report.html import (
    precision_checks,
    quality_section,
    recommendations_table,
    render,
    surface_figure,
    tradeoff_figure,
)
from autoprumux.report.sources import from_storage, stored_metric, stored_precisions

GRID = Grid((1, 2), (0.0, 0.5))
ACCURACY = {BASELINE: 0.90, P(1, 0.5): 0.88, P(2, 0.0): 0.87, P(2, 0.5): 0.84}
SPEED = {BASELINE: 100.0, P(1, 0.5): 250.0, P(2, 0.0): 190.0, P(2, 0.5): 480.0}


def data(title="demo", accuracy=ACCURACY, budget=0.03, records=(), timed=SPEED, **fields):
    obs = Observations(accuracy=dict(accuracy), throughput={p: timed[p] for p in accuracy})
    table = ThroughputTable(SPEED) if BASELINE in SPEED else None
    return ReportInput(
        title=title,
        task="sst2",
        grid=GRID,
        budget=Budget(BudgetKind.ABSOLUTE, budget),
        observations=obs,
        table=table,
        records=records,
        **fields,
    )


def test_pareto_frontier():
    points = [
        TradeoffPoint(point=P(1, 0), accuracy=0.90, speedup=1.0, measured=True),
        TradeoffPoint(point=P(1, 0.5), accuracy=0.88, speedup=2.5, measured=True),
        TradeoffPoint(point=P(2, 0), accuracy=0.87, speedup=1.9, measured=True),
        TradeoffPoint(point=P(2, 0.5), accuracy=0.84, speedup=4.8, measured=True),
    ]
    assert [p.point for p in pareto_frontier(points)] == [P(1, 0), P(1, 0.5), P(2, 0.5)]


def test_tradeoff_series_by_family():
    series = tradeoff(data())
    assert [p.point for p in series[Family.PRUMUX]] == [P(2, 0.5)]
    assert [p.point for p in series[Family.DATAMUX]] == [P(2, 0.0)]
    (cofi,) = series[Family.COFI]
    assert cofi.speedup == 2.5 and cofi.measured and cofi.accuracy == 0.88


def test_top3_per_budget_with_the_requested_one_flagged():
    rows = recommendations(data(budget=0.03))
    assert len(rows) == 21
    requested = [r for r in rows if r.requested]
    assert len(requested) == 1 and requested[0].budget == 0.03
    assert [item["point"] for item in requested[0].top] == [P(1, 0.5), P(2, 0.0), BASELINE]
    assert requested[0].top[0]["speedup"] == 2.5
    loose = next(r for r in rows if r.budget == 0.1)
    assert loose.top[0]["point"] == P(2, 0.5)


def test_figure1_draws_the_threshold_and_marks_the_recommended_point():
    report = data(budget=0.03)  # threshold 0.90 - 0.03 = 0.87; top-1 (1, 0.5) at 0.88, 2.5x
    top = answer(report)
    assert (top.point, top.accuracy, top.speedup, top.threshold) == (P(1, 0.5), 0.88, 2.5, 0.87)
    figure = tradeoff_figure(report, top).to_plotly_json()
    # accuracy is figure 1's x axis: the threshold is the vertical line x = 0.87
    (line,) = figure["layout"]["shapes"]
    assert line["x0"] == line["x1"] == 0.87 and line["xref"] == "x"
    assert (line["y0"], line["y1"], line["yref"]) == (0, 1, "y domain")  # floor to ceiling
    notes = {a["text"]: (a["x"], a.get("y")) for a in figure["layout"]["annotations"]}
    assert notes["threshold 0.8700"][0] == 0.87
    assert notes["deploy (1, 0.5)"] == (0.88, 2.5)
    (star,) = [t for t in figure["data"] if t["name"] == "recommended (1, 0.5)"]
    assert (list(star["x"]), list(star["y"]), star["marker"]["symbol"]) == ([0.88], [2.5], "star")
    # nothing to recommend (no baseline): no marker, and no threshold to draw
    empty = data(accuracy={p: v for p, v in ACCURACY.items() if p != BASELINE})
    bare = tradeoff_figure(empty, answer(empty)).to_plotly_json()
    assert answer(empty) is None and not bare["layout"].get("shapes")
    assert not [t for t in bare["data"] if t["name"].startswith("recommended")]


def test_the_answer_box_names_the_model_folder_or_the_train_command(tmp_path):
    folder = tmp_path / "trial-n1-s0.5"
    folder.mkdir()
    trained = [
        TrialRecord(
            task="sst2",
            n=1,
            sparsity=0.5,
            accuracy=0.88,
            throughput=250.0,
            artifact_path=str(folder),
        )
    ]
    page = render(data(records=trained))
    assert answer(data(records=trained)).model.state is ModelState.SAVED
    assert (
        "Deploy <b>(1, 0.5)</b>: 2.50x the throughput of (1, 0) at measured accuracy 0.8800 "
        f"(threshold 0.8700).<br><span class='model'>(1, 0.5) was trained; its model folder: "
        f"<code>{folder}</code>.</span>"
    ) in page
    folder.rmdir()  # deleted since: said so, not printed as the answer
    train = TrainCommand(study_path="/s/a b.toml", study_seed=42)
    page = render(data(records=trained, train=train))
    assert (
        f"(1, 0.5) was trained, but its model folder {folder} is not on this "
        "machine (deleted, or on the "
        "machine that trained it); train it again "
        "with: <code>autoprumux train --study &#x27;/s/a b.toml&#x27; --n 1 --sparsity 0.5</code>"
    ) in page
    assert f"<code>{folder}</code>" not in page


def test_the_recommendations_table_takes_throughput_from_one_named_source():
    # timed inside the trials, (1, 0.5) at 421.7/s over (1, 0) at 121.9/s reads as 3.46x, while
    # the table, timed side by side, says 2.50x: the table shows the table's numbers only
    timed = {**SPEED, BASELINE: 121.9, P(1, 0.5): 421.7}
    page = render(data(timed=timed))
    section = page[page.index("<h2>2. Recommendations") : page.index("<h2>3.")]
    assert "<p>Throughput and speedup: the throughput table throughput table." in section
    assert "<th>throughput (examples/s)</th><th>speedup</th>" in section
    assert "<td>(1, 0.5)</td><td>0.8800 (measured)</td><td>250.0</td><td>2.50x</td>" in section
    assert "421.7" not in section and "121.9" not in section
    assert "measured throughput" not in page
    trials = ThroughputTable(SPEED, {"task": "sst2", "timed": TIMED_IN_TRIALS}, "study s")
    assert trials.describe() == "timed inside each trial, beside whatever else ran (study s)"
    measured = ThroughputTable(SPEED, {"device": "cuda:0", "device_name": "H200", "dtype": "fp32"})
    assert measured.describe() == (
        "the throughput table throughput table (every point timed in one run, round robin: "
        "cuda:0, H200, fp32)"
    )


def test_heatmap_and_feasibility_boundary():
    (heat,) = surface_heatmaps(data(budget=0.03))  # threshold 0.87; fp32 alone
    assert heat.accuracy[0] == (0.90, 0.88) and heat.accuracy[1] == (0.87, 0.84)
    assert dict(heat.boundary) == {1: 0.5, 2: 0.0}


def test_cost_counts():
    records = [
        TrialRecord(
            task="sst2",
            n=1,
            sparsity=0.0,
            accuracy=0.9,
            throughput=100.0,
            wall_time_s=3600.0,
            gpu_hours=1.0,
        ),
        TrialRecord(
            task="sst2",
            n=2,
            sparsity=0.5,
            status=TrialStatus.FAILED,
            wall_time_s=1800.0,
            gpu_hours=3.0,
        ),
        TrialRecord(
            task="sst2", n=2, sparsity=0.0, accuracy=0.85, throughput=180.0, from_trial=1
        ),  # the failed one's teacher
    ]
    spent = cost(data(records=records))
    assert (spent.trained, spent.free, spent.failed, spent.skipped) == (1, 1, 1, 1)
    assert spent.grid_size == 4
    # the free record has no GPU-hours: it does not lower the mean cost of a training
    assert (spent.gpu.spent, spent.gpu.exhaustive) == (4.0, 8.0)
    assert (spent.wall.spent, spent.wall.exhaustive) == (1.5, 3.0)  # wall hours, any device


def test_html_has_every_section_and_figure():
    page = render(data())
    for heading in (
        "1. Throughput vs accuracy",
        "2. Recommendations",
        "3. Accuracy surface",
        "4. How far to trust",
        "5. Cost",
        "6. Provenance",
    ):
        assert heading in page
    assert 'id="tradeoff"' in page and 'id="surface"' in page
    assert "Deploy <b>(1, 0.5)</b>: 2.50x" in page
    # nothing is fetched from the network: no external script, and no link outside scripts
    # (the inlined plotly.js carries map attribution URLs as strings)
    assert not re.search(r"<script[^>]*\bsrc=", page)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.DOTALL)
    assert not re.search(r"""(src|href)=["']https?://""", markup)


def test_user_strings_are_escaped():
    page = render(data(title="<script>alert(1)</script>"))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_empty_study_or_one_without_baseline_says_what_is_missing():
    empty = render(data(accuracy={}))
    assert "no trained point yet: the study is empty" in empty
    no_base = render(data(accuracy={p: v for p, v in ACCURACY.items() if p != BASELINE}))
    assert "no (1, 0) baseline" in no_base


def test_a_macro_f1_report_names_its_metric_wherever_it_shows_one():
    """Titles, the budget line, the answer box, the table's headers and the figures' axes
    name the study's metric; no word of the page outside its figures says accuracy."""
    report = data(metric=Metric.MACRO_F1)
    page = render(report)
    for text in (
        "<h2>1. Throughput vs macro-F1</h2>",
        "<h2>2. Recommendations per macro-F1 budget</h2>",
        "<h2>3. Macro-F1 surface</h2>",
        "metric <b>macro-F1</b> | absolute budget 0.03 (macro-F1 points below (1, 0)): "
        "threshold 0.8700 (baseline 0.9000 - 0.03)",
        "Deploy <b>(1, 0.5)</b>: 2.50x the throughput of (1, 0) at measured macro-F1 0.8800",
        "<th>macro-F1 budget</th><th>threshold</th><th>rank</th><th>(N, s)</th><th>macro-F1</th>",
        "Macro-F1: measured where the point was trained, else predicted by the macro-F1 surface",
    ):
        assert text in page
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.DOTALL)
    assert "accuracy" not in markup.lower()
    figure = tradeoff_figure(report, answer(report)).to_plotly_json()
    assert figure["layout"]["xaxis"]["title"]["text"] == "macro-F1"
    heat = surface_figure(report).to_plotly_json()
    assert heat["data"][0]["colorbar"]["title"]["text"] == "macro-F1"
    # the default: accuracy, named as before
    assert "metric <b>accuracy</b> | absolute budget 0.03 (accuracy points below" in render(data())


def test_the_quality_section_names_the_metric():
    from autoprumux.report.html import _Figures

    # (2, 0.5) inside a 3 x 3 grid: predicted leave-one-out from its neighbours
    values = {P(n, s): 0.9 - 0.02 * n - 0.1 * s for n in (1, 2, 4) for s in (0.0, 0.5, 0.8)}
    speed = {p: 100.0 * p.n / (1 - p.sparsity) for p in values}
    report = ReportInput(
        title="q",
        task="sst2",
        grid=Grid((1, 2, 4), (0.0, 0.5, 0.8)),
        budget=Budget(BudgetKind.ABSOLUTE, 0.03),
        observations=Observations(accuracy=values, throughput=speed),
        table=ThroughputTable(speed),
        metric=Metric.MATTHEWS,
    )
    section = quality_section(report, _Figures())
    assert "M_A (within 1.5 points of MCC): 100% of 3" in section
    assert '"measured MCC"' in section and '"predicted MCC (leave-one-out)"' in section


def test_an_f1_reports_label_is_escaped():
    page = render(data(metric=Metric.F1, positive_label="<pos>"))
    assert "Throughput vs F1 of &#x27;&lt;pos&gt;&#x27;" in page and "<pos>" not in page


def test_a_search_reports_metric_comes_from_its_recorded_recipe(tmp_path):
    assert stored_metric({}, "s") == (Metric.ACCURACY, "")  # recorded before metrics
    recipe = {"study.metric": "f1", "study.positive_label": "pos"}
    assert stored_metric({"recipe": recipe}, "s") == (Metric.F1, "pos")
    with pytest.raises(DataError, match="s: records metric 'auc', not one of: accuracy, f1"):
        stored_metric({"recipe": {"study.metric": "auc"}}, "s")
    from autoprumux.loop.optuna_store import OptunaStore

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = Study(study=StudySection(task="sst2", metric=Metric.MACRO_F1))
    OptunaStore(url, "s", GRID, "sst2", recipe_record(study)).close()
    report = from_storage(url, "s", Budget(BudgetKind.ABSOLUTE, 0.03), None)
    assert (report.metric, report.metric_label) == (Metric.MACRO_F1, "macro-F1")


def test_cli_report(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert (
        main(["report", "--results", "studies/results/synthetic-sst2.csv", "--out", str(out)]) == 0
    )
    assert out.stat().st_size > 1_000_000  # plotly.js is inside
    assert main(["report"]) == 2
    assert "give --results FILE, or --storage URL with --study-name NAME" in capsys.readouterr().err


@pytest.mark.parametrize("served", [False, True], ids=["fp32", "fp32-and-int8"])
def test_the_report_renders_in_headless_chromium(tmp_path, served):
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed (.ci/run installs it: apt-get install chromium)"
    page = tmp_path / "report.html"
    page.write_text(render(served_data() if served else data()))
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.count('class="main-svg"') >= 4  # plotly drew the figures
    # the surface's buttons, one per precision, drawn where more than fp32 is ranked
    assert done.stdout.count('class="updatemenu-button"') == (2 if served else 0)
    console_errors = [
        line for line in done.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line
    ]
    assert console_errors == [] and "Uncaught" not in done.stderr


# --- precision as a third axis: (1, 0.5) served in int8 wins budget 0.03 ----------------------
INT8 = Precision.INT8
SERVED_GRID = Grid((1, 2), (0.0, 0.5, 0.8))  # (1, 0.8): untrained, and in no table row
SERVED_TABLE = ThroughputTable(
    {
        **{BASELINE: 100.0, P(1, 0.5): 250.0, P(2, 0.0): 190.0, P(2, 0.5): 480.0},
        **{P(2, 0.8): 700.0, P(1, 0, INT8): 220.0, P(1, 0.5, INT8): 520.0},
        **{P(2, 0, INT8): 400.0, P(2, 0.5, INT8): 900.0, P(2, 0.8, INT8): 1300.0},
    },
    source="t.json",
    latency={BASELINE: 0.010, P(1, 0.5): 0.005, P(1, 0, INT8): 0.004, P(1, 0.5, INT8): 0.002},
)


def served_data(**fields):
    fp32 = {**ACCURACY, P(2, 0.8): 0.80}
    int8 = {P(1, 0, INT8): 0.895, P(1, 0.5, INT8): 0.874, P(2, 0, INT8): 0.866}
    return ReportInput(
        title="served",
        task="sst2",
        grid=SERVED_GRID,
        budget=Budget(BudgetKind.ABSOLUTE, 0.03),
        observations=Observations(
            accuracy=fp32,
            throughput={p: SPEED.get(p, 700.0) for p in fp32},
            # (2, 0.5) trained, its int8 file refused: no int8 figure, never ranked in int8
            served_accuracy={**int8, P(2, 0.8, INT8): 0.79},
        ),
        table=SERVED_TABLE,
        **fields,
    )


def test_the_top3_per_budget_ranks_n_s_and_precision():
    report = served_data()
    assert report.served == (Precision.FP32, INT8)
    (requested,) = [r for r in recommendations(report) if r.requested]
    # threshold 0.87: (1, 0.5, int8) at 0.874 and 520/s beats every fp32 point
    assert [(i["point"], i["speedup"], i["latency_s"]) for i in requested.top] == [
        (P(1, 0.5, INT8), 5.2, 0.002),
        (P(1, 0.5), 2.5, 0.005),
        (P(1, 0, INT8), 2.2, 0.004),
    ]
    assert requested.top[0]["accuracy"] == 0.874 and requested.top[0]["accuracy_measured"]
    top = answer(report)
    assert (top.point, top.speedup, top.latency_s) == (P(1, 0.5, INT8), 5.2, 0.002)
    # the study's precisions narrow the ones found: fp32 alone, (1, 0.5) is the answer again
    assert answer(served_data(precisions=(Precision.FP32,))).point == P(1, 0.5)
    # a held-out test scores the trained fp32 models of the top-k
    assert P(1, 0.5) in points_to_score(report, top.point)
    assert not [p for p in points_to_score(report, top.point) if p.precision is INT8]


def test_the_html_shows_each_points_precision_and_batch1_latency():
    page = render(served_data())
    assert (
        "Deploy <b>(1, 0.5, int8)</b>: 5.20x the throughput of (1, 0) in fp32 at measured "
        "accuracy 0.8740 (threshold 0.8700); one request at batch 1 takes 2.00 ms.<br>"
    ) in page
    assert "| absolute budget 0.03 (accuracy points below (1, 0)): threshold 0.8700 " in page
    assert "(baseline 0.9000 - 0.03) | precisions fp32, int8</p>" in page
    section = page[page.index("<h2>2. Recommendations") : page.index("<h2>3.")]
    assert (
        "<th>rank</th><th>(N, s)</th><th>precision</th><th>accuracy</th>"
        "<th>throughput (examples/s)</th><th>speedup</th><th>batch-1 latency (ms)</th></tr>"
    ) in section
    assert (
        "<tr class='requested'><td>0.03</td><td>0.8700</td><td>1</td><td>(1, 0.5)</td>"
        "<td>int8</td><td>0.8740 (measured)</td><td>520.0</td><td>5.20x</td><td>2.00</td></tr>"
    ) in section
    assert (
        "<td>2</td><td>(1, 0.5)</td><td>fp32</td><td>0.8800 (measured)</td><td>250.0</td>"
        "<td>2.50x</td><td>5.00</td>"
    ) in section
    # budget 0.1 (threshold 0.80): (2, 0.8, int8) at 0.79 misses it, (2, 0.5, int8) has no
    # figure: (2, 0.8) in fp32 at 0.80 is 7.00x; untimed at batch 1: "-"
    assert "<td>0.1</td><td>0.8000</td><td>1</td><td>(2, 0.8)</td><td>fp32</td>" in section
    assert "<td>700.0</td><td>7.00x</td><td>-</td>" in section
    # nothing fits: the message spans the 7 columns after the threshold (5 with fp32 alone)
    empty = [BudgetRow(budget=0.5, requested=False, threshold=0.99, top=())]
    assert "<td colspan='7'>nothing meets" in recommendations_table(served_data(), empty)
    assert "<td colspan='5'>nothing meets" in recommendations_table(data(), empty)
    # fp32 alone, without latency: the table as before precisions were an axis
    plain = render(data())
    assert "<th>precision</th>" not in plain and "batch-1 latency" not in plain
    assert "| precisions" not in plain and "in fp32" not in plain


def test_figure1_draws_each_precision_as_its_own_series():
    report = served_data()
    series = tradeoff(report)
    prumux = {p.point: p for p in series[Family.PRUMUX]}
    # (2, 0.5) has no int8 figure: not drawn in int8
    assert set(prumux) == {P(2, 0.5), P(2, 0.8), P(2, 0.8, INT8)}
    assert prumux[P(2, 0.8, INT8)].measured and prumux[P(2, 0.8, INT8)].accuracy == 0.79
    # (1, 0.8) has no throughput row: not drawn
    assert {p.point for p in series[Family.COFI]} == {P(1, 0.5), P(1, 0.5, INT8)}
    figure = tradeoff_figure(report, answer(report)).to_plotly_json()
    traces = {t["name"]: t for t in figure["data"]}
    cofi = traces["CoFi (N = 1), int8, measured"]
    assert (list(cofi["x"]), list(cofi["y"]), cofi["marker"]["symbol"]) == (
        [0.874],
        [5.2],
        "diamond",
    )
    assert traces["CoFi (N = 1), measured"]["marker"]["symbol"] == "circle"
    assert traces["PruMUX (N > 1, s > 0), int8, measured"]["marker"]["symbol"] == "diamond"
    # a frontier per family and precision, of two points or more: fp32's dotted; PruMUX in
    # int8 has one point here, so no line
    fp32_front = traces["PruMUX (N > 1, s > 0) frontier"]
    assert list(fp32_front["y"]) == [4.8, 7.0] and fp32_front["line"]["dash"] == "dot"
    assert "PruMUX (N > 1, s > 0), int8 frontier" not in traces
    assert "recommended (1, 0.5, int8)" in traces


def test_the_surface_has_a_view_per_precision_switched_by_buttons():
    report = served_data()
    fp32, int8 = surface_heatmaps(report)
    assert (fp32.precision, int8.precision) == (Precision.FP32, INT8)
    # int8: measured where evaluated; (2, 0.5)'s int8 file was refused, (1, 0.8) has no fp32
    # prediction to add a change to
    assert int8.accuracy == ((0.895, 0.874, None), (0.866, None, 0.79))
    assert int8.trained == (P(1, 0), P(1, 0.5), P(2, 0), P(2, 0.8))
    # threshold 0.87: (2, 0) is feasible in fp32 (0.87), not in int8 (0.866)
    assert dict(fp32.boundary) == {1: 0.5, 2: 0.0} and dict(int8.boundary) == {1: 0.5, 2: None}
    figure = surface_figure(report).to_plotly_json()
    heatmaps = [t for t in figure["data"] if t["type"] == "heatmap"]
    assert [(h["zmin"], h["zmax"]) for h in heatmaps] == [(0.79, 0.9)] * 2  # one scale
    names = [t["name"] for t in figure["data"]]
    shown = [t["name"] for t in figure["data"] if t["visible"]]
    assert shown == ["accuracy", "trained", "largest feasible s (requested budget)"]
    (menu,) = figure["layout"]["updatemenus"]
    buttons = {b["label"]: b["args"][0]["visible"] for b in menu["buttons"]}
    assert [n for n, v in zip(names, buttons["int8"], strict=True) if v] == [
        "accuracy (int8)",
        "trained (int8)",
        "largest feasible s (requested budget) (int8)",
    ]
    assert [n for n, v in zip(names, buttons["fp32"], strict=True) if v] == shown
    # fp32 alone: one view, no buttons
    assert "updatemenus" not in surface_figure(data()).to_plotly_json()["layout"]


def test_int8_changes_from_fp32_are_checked_leave_one_out():
    # the changes: (1, 0) -0.005, (1, 0.5) -0.006, (2, 0) -0.004, (2, 0.8) -0.010; none lies
    # between two others of its N, so each is predicted by the mean of the other three:
    # errors 0.00167, 0.00033, 0.003, 0.005
    (check,) = precision_quality(served_data())
    assert (check.precision, check.checked, check.within) == (INT8, 4, 4)
    assert check.largest_error == pytest.approx(0.005)
    (strict,) = precision_quality(served_data(), tolerance=0.002)
    assert strict.within == 2  # 0.00167 and 0.00033
    text = precision_checks(served_data())
    assert "int8: each trained model&#x27;s change from fp32" in text
    assert "within 1.5 accuracy points for 4 of 4 (largest error 0.50 points)" in text
    assert precision_checks(data()) == ""  # fp32 alone


def test_a_results_files_report_finds_its_int8_figures_and_rows(tmp_path):
    from autoprumux.report.sources import from_results

    results = tmp_path / "r.csv"
    results.write_text(
        "task,n,sparsity,accuracy,throughput,accuracy_int8\n"
        "sst2,1,0,0.90,95,0.895\nsst2,1,0.5,0.88,240,0.874\n"
    )
    table = tmp_path / "t.csv"
    table.write_text(
        "n,sparsity,precision,throughput,latency_s\n"
        "1,0,fp32,100,0.010\n1,0.5,fp32,250,0.005\n1,0,int8,220,0.004\n1,0.5,int8,520,0.002\n"
    )
    report = from_results(str(results), None, Budget(BudgetKind.ABSOLUTE, 0.03), str(table))
    assert report.served == (Precision.FP32, INT8) and report.timed_latency
    assert answer(report).point == P(1, 0.5, INT8)
    # without --throughput the results' own (fp32) throughputs: fp32 alone
    own = from_results(str(results), None, Budget(BudgetKind.ABSOLUTE, 0.03), None)
    assert own.served == (Precision.FP32,) and not own.timed_latency
    assert answer(own).point == P(1, 0.5)


def test_a_search_reports_precisions_come_from_its_recorded_attribute():
    assert stored_precisions({}, "s") == ()  # recorded before precisions: the report finds them
    assert stored_precisions({"precisions": ["fp32", "int8"]}, "s") == (Precision.FP32, INT8)
    with pytest.raises(DataError, match=r"s: holds precisions \['fp32', 'int4'\] autoprumux"):
        stored_precisions({"precisions": ["fp32", "int4"]}, "s")
