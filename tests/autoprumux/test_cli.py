import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.synthetic import synthetic_results
from autoprumux.files.results_io import write_results

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "studies" / "results" / "synthetic-sst2.csv"


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_committed_synthetic_table_is_what_the_generator_writes(tmp_path):
    fresh = write_results(synthetic_results(), tmp_path / "s.csv")
    assert fresh.read_text() == SYNTHETIC.read_text()


def test_predict_json(capsys):
    code, out, err = run(
        capsys, "predict", "--results", str(SYNTHETIC), "--budget", "0.03", "--json"
    )
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["budget"] == {"kind": "absolute", "value": 0.03}
    assert document["baseline_accuracy"] == 0.93
    assert document["threshold"] == pytest.approx(0.90)
    top = document["recommendations"]
    assert [r["rank"] for r in top] == [1, 2, 3]
    assert all(r["accuracy"] >= 0.9 - 1e-9 for r in top)
    assert [r["throughput"] for r in top] == sorted((r["throughput"] for r in top), reverse=True)
    assert set(top[0]) == {
        "rank",
        "n",
        "sparsity",
        "family",
        "accuracy",
        "accuracy_source",
        "throughput",
        "throughput_source",
        "speedup",
        "measured_throughput",
    }
    # candidates: the throughput table's points (here the results' own 33 complete rows)
    assert document["candidates"] == 33 and "failed" not in document["excluded"]


def test_predict_over_a_study_grid_excludes_failed_points(capsys):
    code, out, _ = run(
        capsys,
        "predict",
        "--results",
        str(SYNTHETIC),
        "--budget",
        "0.1",
        "--grid",
        str(ROOT / "studies" / "sst2.toml"),
        "--json",
    )
    document = json.loads(out)
    assert code == 0 and document["candidates"] == 36
    assert document["excluded"] == {"failed": 3}


def test_predict_json_agrees_with_the_table(capsys):
    """The text table and the JSON document say the same thing."""
    _, out, _ = run(capsys, "predict", "--results", str(SYNTHETIC), "--budget", "0.05", "--json")
    ranked = [f"({r['n']}, {r['sparsity']:g})" for r in json.loads(out)["recommendations"]]
    _, text, _ = run(capsys, "predict", "--results", str(SYNTHETIC), "--budget", "0.05")
    assert "absolute budget 0.05 (accuracy points below (1, 0)): threshold 0.8800" in text
    rows = [
        line.split()[1] + " " + line.split()[2]
        for line in text.splitlines()
        if line[:1].isdigit() and "(" in line
    ]
    assert rows == ranked


def test_predict_with_a_grid_and_a_throughput_table(tmp_path, capsys):
    table = tmp_path / "t.json"
    table.write_text(
        json.dumps(
            {
                "fingerprint": {"device": "H200"},
                "rows": [
                    {"n": 1, "sparsity": 0.0, "throughput": 10.0},
                    {"n": 2, "sparsity": 0.0, "throughput": 19.0},
                    {"n": 2, "sparsity": 0.6, "throughput": 40.0},
                    {"n": 2, "sparsity": 0.7, "throughput": 50.0},
                ],
            }
        )
    )
    code, out, _ = run(
        capsys,
        "predict",
        "--results",
        str(SYNTHETIC),
        "--relative-budget",
        "0.05",
        "--throughput",
        str(table),
        "--grid",
        "1,2:0,0.6,0.65,0.7",
        "--top",
        "2",
        "--json",
    )
    assert code == 0
    document = json.loads(out)
    assert document["throughput_table"] == {"source": str(table), "fingerprint": {"device": "H200"}}
    assert document["candidates"] == 8
    # (2, 0.65) is in no table row: latency midway between 1/40 and 1/50 s
    first = document["recommendations"][0]
    assert (first["n"], first["sparsity"]) == (2, 0.7) and first["speedup"] == 5.0
    second = document["recommendations"][1]
    assert second["throughput"] == pytest.approx(1 / ((1 / 40 + 1 / 50) / 2))
    assert second["throughput_source"] == "interpolated"


def test_infeasible_budget(capsys):
    code, out, _ = run(capsys, "predict", "--results", str(SYNTHETIC), "--min-accuracy", "0.99")
    assert code == 0
    assert (
        "no candidate meets the threshold 0.9900; the most accurate candidate is (1, 0) at 0.9300"
        in out
    )


def test_evaluate_json(capsys):
    code, out, _ = run(capsys, "evaluate", "--results", str(SYNTHETIC), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["train_points"] == 22 and document["test_points"] == 33
    assert len(document["budgets"]) == 21
    assert document["m_a"]["within"] + document["m_a"]["unpredictable"] <= 13
    hits = sum(b["topk_hit"] for b in document["budgets"])
    assert document["topk_rate"] == pytest.approx(hits / 21)


def test_evaluate_text(capsys):
    code, out, _ = run(
        capsys, "evaluate", "--results", str(SYNTHETIC), "--train-grid", "1,2,5,10:0,0.6,0.8,0.95"
    )
    assert code == 0 and out.startswith("task sst2 | results ")
    assert "M_A: " in out and "M_T: " in out and "true best in predicted top-1" in out


@pytest.fixture
def csv(write_csv):
    return write_csv(
        [
            ["task", "n", "sparsity", "accuracy", "throughput"],
            ["sst2", 1, 0, 0.9, 100],
            ["sst2", 2, 0, 0.88, 190],
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "1.5"], "--budget: 1.5 is outside [0, 1)"),
        (["--budget", "-0.1"], "--budget: -0.1 is outside [0, 1)"),
        (["--budget", "abc"], "'abc' is not a valid float"),
        ([], "--budget: give exactly one of --budget, --relative-budget, --min-accuracy"),
        (["--budget", "0.1", "--min-accuracy", "0.8"], "give exactly one of"),
        (["--relative-budget", "2"], "--relative-budget: 2.0 is outside [0, 1)"),
        (["--budget", "0.1", "--grid", "1,2"], "--grid: '1,2' is not 'N,N,...:s,s,...'"),
        (["--budget", "0.1", "--top", "0"], "0 is not in the range x>=1"),
        (["--budget", "0.1", "--task", "qqp"], "has no rows for task 'qqp' (it has: sst2)"),
        (
            ["--budget", "0.1", "--throughput", "/nonexistent/t.csv"],
            "/nonexistent/t.csv: cannot be read: no such file",
        ),
        (
            ["--budget", "0.1", "--grid", "/nonexistent/s.toml"],
            "/nonexistent/s.toml: study: cannot be read",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, csv, args, message):
    code, out, err = run(capsys, "predict", "--results", str(csv), *args)
    assert code == 2 and out == ""
    assert err.startswith("autoprumux: error: ") and message in err
    assert err.count("\n") == 1


def test_no_baseline_is_reported(capsys, write_csv):
    path = write_csv([["task", "n", "sparsity", "accuracy", "throughput"], ["sst2", 2, 0, 0.9, 1]])
    code, _, err = run(capsys, "evaluate", "--results", str(path))
    assert code == 2 and "has no (1, 0) row" in err
    code, _, err = run(capsys, "predict", "--results", str(path), "--budget", "0.01")
    assert code == 2 and "has no (1, 0) row" in err


def test_unknown_command_and_help(capsys):
    code, _, err = run(capsys, "serch")
    assert code == 2 and err.startswith("autoprumux: error: No such command 'serch'")
    code, out, _ = run(capsys, "predict", "--help")
    assert code == 0 and "--relative-budget" in out and "--json" in out


def test_every_option_of_every_command_has_help():
    import click

    from autoprumux.cli.main import cli

    missing = [
        f"{name} {option.opts[0]}"
        for name, command in [("autoprumux", cli), *sorted(cli.commands.items())]
        for option in command.get_params(click.Context(command))
        if isinstance(option, click.Option) and not (option.help or "").strip()
    ]
    assert missing == []


def test_console_script_exit_code_without_traceback(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_text("task,n,sparsity,accuracy,throughput\nsst2,1,0,0.9,100\nsst2,2,0.5,nan,3\n")
    done = subprocess.run(
        [sys.executable, "-m", "autoprumux", "predict", "--results", str(bad), "--budget", "0.03"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr
        == f"autoprumux: error: {bad}: row 2: field 'accuracy': 'nan' is not a finite number\n"
    )


def test_parquet_results(tmp_path, capsys):
    path = write_results(synthetic_results(seed=3), tmp_path / "r.parquet")
    code, out, _ = run(capsys, "predict", "--results", str(path), "--budget", "0.02", "--json")
    assert code == 0 and json.loads(out)["recommendations"]
