"""The report's data functions on known inputs, the HTML, escaping, and a real browser."""

import re
import shutil
import subprocess

from autoprumux.budget import Budget, BudgetKind
from autoprumux.cli import main
from autoprumux.grid import BASELINE, Family, Grid
from autoprumux.grid import GridPoint as P
from autoprumux.records import Observations, TrialRecord, TrialStatus
from autoprumux.report import (
    ReportInput,
    TradeoffPoint,
    cost,
    pareto_frontier,
    recommendations,
    surface_heatmap,
    tradeoff,
)
from autoprumux.report_html import render
from autoprumux.throughput import ThroughputTable

GRID = Grid((1, 2), (0.0, 0.5))
ACCURACY = {BASELINE: 0.90, P(1, 0.5): 0.88, P(2, 0.0): 0.87, P(2, 0.5): 0.84}
SPEED = {BASELINE: 100.0, P(1, 0.5): 250.0, P(2, 0.0): 190.0, P(2, 0.5): 480.0}


def data(title="demo", accuracy=ACCURACY, budget=0.03, records=()):
    obs = Observations(dict(accuracy), {p: SPEED[p] for p in accuracy})
    table = ThroughputTable(SPEED) if BASELINE in SPEED else None
    return ReportInput(
        title, "sst2", GRID, Budget(BudgetKind.ABSOLUTE, budget), obs, table, records
    )


def test_pareto_frontier():
    points = [
        TradeoffPoint(P(1, 0), 0.90, 1.0, True),
        TradeoffPoint(P(1, 0.5), 0.88, 2.5, True),
        TradeoffPoint(P(2, 0), 0.87, 1.9, True),
        TradeoffPoint(P(2, 0.5), 0.84, 4.8, True),
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


def test_heatmap_and_feasibility_boundary():
    heat = surface_heatmap(data(budget=0.03))  # threshold 0.87
    assert heat.accuracy[0] == (0.90, 0.88) and heat.accuracy[1] == (0.87, 0.84)
    assert dict(heat.boundary) == {1: 0.5, 2: 0.0}


def test_cost_counts():
    records = [
        TrialRecord("sst2", 1, 0.0, 0.9, 100.0, gpu_hours=1.0),
        TrialRecord("sst2", 2, 0.5, status=TrialStatus.FAILED, gpu_hours=3.0),
        TrialRecord("sst2", 2, 0.0, 0.85, 180.0, from_trial=1),  # the failed one's teacher
    ]
    spent = cost(data(records=records))
    assert (spent.trained, spent.free, spent.failed, spent.skipped) == (1, 1, 1, 1)
    assert spent.grid_size == 4
    # the free record has no GPU-hours: it does not lower the mean cost of a training
    assert spent.gpu_hours == 4.0 and spent.exhaustive_gpu_hours == 8.0


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


def test_cli_report(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert (
        main(["report", "--results", "studies/results/synthetic-sst2.csv", "--out", str(out)]) == 0
    )
    assert out.stat().st_size > 1_000_000  # plotly.js is inside
    assert main(["report"]) == 2
    assert "give --results FILE, or --storage URL with --study-name NAME" in capsys.readouterr().err


def test_the_report_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed (.ci/run installs it: apt-get install chromium)"
    page = tmp_path / "report.html"
    page.write_text(render(data()))
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
    console_errors = [
        line for line in done.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line
    ]
    assert console_errors == [] and "Uncaught" not in done.stderr
