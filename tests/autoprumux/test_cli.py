import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.files.results_io import write_results
from autoprumux.testing.synthetic import synthetic_results

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
        "precision",
        "latency_ms",
    }
    # results without precision figures rank fp32 only; the table has no batch-1 latency
    assert {(r["precision"], r["latency_ms"]) for r in top} == {("fp32", None)}
    assert document["objective"] == "throughput"
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
    assert document["throughput_table"] == {
        "source": str(table),
        "fingerprint": {"device": "H200"},
        "rescaled": [],
    }
    assert document["candidates"] == 8
    # (2, 0.65) is in no table row: latency midway between 1/40 and 1/50 s
    first = document["recommendations"][0]
    assert (first["n"], first["sparsity"]) == (2, 0.7) and first["speedup"] == 5.0
    second = document["recommendations"][1]
    assert second["throughput"] == pytest.approx(1 / ((1 / 40 + 1 / 50) / 2))
    assert second["throughput_source"] == "interpolated"


RESULTS_WITH_INT8 = """task,n,sparsity,accuracy,throughput,accuracy_int8
sst2,1,0,0.90,95,0.895
sst2,1,0.5,0.88,240,0.874
sst2,2,0,0.87,180,0.866
sst2,2,0.5,0.84,470,
"""
# each (N, s) timed in fp32 (an empty precision is fp32) and in int8, with batch-1 seconds
TABLE_WITH_INT8 = """n,sparsity,precision,throughput,latency_s
1,0,,100,0.010
1,0.5,fp32,250,0.005
2,0,fp32,190,0.011
2,0.5,fp32,480,0.006
1,0,int8,220,0.004
1,0.5,int8,520,0.002
2,0,int8,400,0.0045
2,0.5,int8,900,
"""


def int8_files(tmp_path, results=RESULTS_WITH_INT8, table=TABLE_WITH_INT8):
    (tmp_path / "r.csv").write_text(results)
    (tmp_path / "t.csv").write_text(table)
    return ["--results", str(tmp_path / "r.csv"), "--throughput", str(tmp_path / "t.csv")]


def test_predict_ranks_each_precision_the_table_times_and_the_results_measured(tmp_path, capsys):
    # threshold 0.90 - 0.03 = 0.87: (1, 0.5) in int8 (0.874, 520/s) beats the best fp32 point
    # ((1, 0.5), 250/s); (2, 0, int8) at 0.866 misses the threshold
    files = int8_files(tmp_path)
    code, out, _ = run(capsys, "predict", *files, "--budget", "0.03", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["objective"] == "throughput" and document["candidates"] == 8
    top = [
        (r["n"], r["sparsity"], r["precision"], r["speedup"], r["latency_ms"])
        for r in document["recommendations"]
    ]
    assert top == [
        (1, 0.5, "int8", 5.2, 2.0),
        (1, 0.5, "fp32", 2.5, 5.0),
        (1, 0.0, "int8", 2.2, 4.0),
    ]
    # below: (2, 0, int8) and (2, 0.5); (2, 0.5) was trained without an int8 figure: unknown
    assert document["excluded"] == {"below_threshold": 2, "accuracy_unknown": 1}
    _, text, _ = run(capsys, "predict", *files, "--budget", "0.03")
    assert "1     (1, 0.5, int8)     cofi      0.8740    measured     520.0         5.20x" in text
    # ranked by batch-1 latency: 2 ms, 4 ms, then (1, 0.5) fp32's 5 ms
    code, out, _ = run(
        capsys, "predict", *files, "--budget", "0.03", "--objective", "latency", "--json"
    )
    document = json.loads(out)
    assert code == 0 and document["objective"] == "latency"
    assert [r["latency_ms"] for r in document["recommendations"]] == [2.0, 4.0, 5.0]
    assert [r["precision"] for r in document["recommendations"]] == ["int8", "int8", "fp32"]


def test_predict_ranks_a_static_int8_model_by_its_files_speed_and_says_so(tmp_path, capsys):
    # (1, 0.5)'s int8 file is static QDQ at 0.4 x dynamic int8's examples/s: 520 x 0.4 = 208/s,
    # below (1, 0.5) fp32's 250/s, and 2 ms x 1.5 = 3 ms a request
    header, *rows = RESULTS_WITH_INT8.splitlines()
    static = "\n".join(
        [f"{header},int8_throughput_ratio,int8_latency_ratio", *(f"{row},," for row in rows), ""]
    ).replace("0.88,240,0.874,,\n", "0.88,240,0.874,0.4,1.5\n")
    files = int8_files(tmp_path, results=static)
    code, out, _ = run(capsys, "predict", *files, "--budget", "0.03", "--json")
    document = json.loads(out)
    assert code == 0
    top = [
        (r["n"], r["sparsity"], r["precision"], r["throughput"], r["latency_ms"])
        for r in document["recommendations"]
    ]
    assert top == [
        (1, 0.5, "fp32", 250.0, 5.0),
        (1, 0.0, "int8", 220.0, 4.0),
        (1, 0.5, "int8", pytest.approx(208.0), pytest.approx(3.0)),
    ]
    assert document["throughput_table"]["rescaled"] == [
        {"n": 1, "sparsity": 0.5, "precision": "int8"}
    ]
    _, text, _ = run(capsys, "predict", *files, "--budget", "0.03")
    assert text.rstrip().endswith(
        "; (1, 0.5, int8) scaled to the static int8 file its model is served by, timed against "
        "dynamic int8 side by side"
    )
    _, plain, _ = run(capsys, "predict", *int8_files(tmp_path), "--budget", "0.03")
    assert "throughput/s and speedup" not in plain  # nothing scaled: nothing to say


def test_predict_ranks_fp32_only_for_results_without_precision_figures(tmp_path, capsys):
    fp32_only = "\n".join(line.rsplit(",", 1)[0] for line in RESULTS_WITH_INT8.splitlines())
    files = int8_files(tmp_path, results=fp32_only + "\n")
    code, out, _ = run(capsys, "predict", *files, "--budget", "0.03", "--json")
    document = json.loads(out)
    assert code == 0 and document["candidates"] == 4  # the table's fp32 rows only
    assert [(r["n"], r["sparsity"], r["precision"]) for r in document["recommendations"]] == [
        (1, 0.5, "fp32"),  # 250/s
        (2, 0.0, "fp32"),  # 190/s
        (1, 0.0, "fp32"),  # 100/s
    ]
    # over a --grid too: its points in fp32 alone
    code, out, _ = run(
        capsys, "predict", *files, "--budget", "0.03", "--grid", "1,2:0,0.5", "--json"
    )
    assert code == 0 and json.loads(out)["candidates"] == 4


def test_predict_objective_bad_value_or_no_latency_is_one_line_exit_2(tmp_path, capsys):
    files = int8_files(tmp_path)
    code, _, err = run(capsys, "predict", *files, "--budget", "0.03", "--objective", "fast")
    assert code == 2 and "'fast' is not one of 'throughput', 'latency'" in err
    no_latency = "\n".join(line.rsplit(",", 1)[0] for line in TABLE_WITH_INT8.splitlines())
    files = int8_files(tmp_path, table=no_latency + "\n")
    code, _, err = run(capsys, "predict", *files, "--budget", "0.03", "--objective", "latency")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        "--objective: latency needs a throughput table with a latency_s column (seconds of one "
        f"request at batch 1); {tmp_path / 't.csv'} has none: give --throughput such a table"
    ) in err


def test_infeasible_budget(capsys):
    code, out, _ = run(capsys, "predict", "--results", str(SYNTHETIC), "--min-accuracy", "0.99")
    assert code == 0
    assert (
        "no candidate meets the threshold 0.9900; the most accurate candidate is (1, 0) at 0.9300"
        in out
    )


def test_a_candidate_meeting_the_threshold_but_excluded_is_not_blamed_on_it(capsys):
    """(3, 0.55) is predicted above the threshold, but the table times no such point: the
    message said it missed the threshold it meets."""
    code, out, _ = run(
        capsys, "predict", "--results", str(SYNTHETIC), "--budget", "0.03", "--grid", "3:0.55"
    )
    assert code == 0
    assert (
        "no candidate can be ranked: (3, 0.55) meets the threshold 0.9000 at 0.9041, but every "
        "candidate is excluded (below)\n\n1 candidates; excluded throughput unknown (no row of "
        "the throughput table): 1"
    ) in out


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
    assert code == 2 and "has no fp32 (1, 0) row" in err
    code, _, err = run(capsys, "predict", "--results", str(path), "--budget", "0.01")
    assert code == 2 and "has no fp32 (1, 0) row" in err


def test_unknown_command_and_help(capsys):
    code, _, err = run(capsys, "serch")
    assert code == 2 and err.startswith("autoprumux: error: No such command 'serch'")
    code, out, _ = run(capsys, "predict", "--help")
    assert code == 0 and "--relative-budget" in out and "--json" in out


def test_the_bare_command_prints_the_help_and_exits_2(capsys):
    code, help_text, _ = run(capsys, "--help")
    assert code == 0 and "Commands:" in help_text
    code, out, err = run(capsys)
    assert (code, out) == (2, "") and err == help_text  # the whole help, not one folded line


def _required_options() -> list[tuple[str, str]]:
    import click

    from autoprumux.cli.main import cli

    return [
        (name, option.opts[0])
        for name, command in sorted(cli.commands.items())
        for option in command.params
        if isinstance(option, click.Option) and option.required
    ]


def _a_value(option) -> str:  # type: ignore[no-untyped-def]
    """A value the option's type accepts, so that only the missing option is wrong."""
    import click

    if isinstance(option.type, click.Choice):
        return str(option.type.choices[0])
    low = getattr(option.type, "min", None)  # an IntRange's or FloatRange's (e.g. --n >= 2)
    return "1" if low is None else str(low)


@pytest.mark.parametrize(("command", "missing"), _required_options())
def test_a_missing_required_option_is_one_line_naming_it(capsys, monkeypatch, command, missing):
    """Each command's required options, left out one at a time (the others given), are refused
    by name before the command runs. click >= 8.3 takes ``default=None`` for a value given, so
    a required option declared with it would reach the command as None (a traceback)."""
    import click

    from autoprumux.cli.main import cli

    target = cli.commands[command]
    monkeypatch.setattr(target, "callback", lambda **kwargs: pytest.fail(f"{command} ran"))
    argv = [command]
    for option in target.params:
        if isinstance(option, click.Option) and option.required and option.opts[0] != missing:
            argv += [option.opts[0], _a_value(option)]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"autoprumux: error: Missing option '{missing}'.")


def test_the_required_options_are_those_the_commands_cannot_run_without():
    required = set(_required_options())
    assert {("train", "--study"), ("measure", "--study"), ("export", "--out")} <= required
    assert {("init", "--out"), ("classify", "--model"), ("predict", "--results")} <= required


def test_a_multi_line_click_message_is_one_line_with_every_choice(capsys):
    code, _, err = run(capsys, "export", "--model", "m", "--out", "m.onnx")
    assert code == 2 and err == (
        "autoprumux: error: Missing option '--format'. Choose from: onnx, torchscript, "
        "transformers\n"
    )


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_to_a_folder_in_a_files_format_is_one_line(capsys, tmp_path, fmt):
    code, _, err = run(capsys, "export", "--model", "m", "--format", fmt, "--out", str(tmp_path))
    assert (
        code == 2 and err == f"autoprumux: error: --out: {tmp_path} is a folder; give a file name\n"
    )


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


# -- the command line's own options and help -----------------------------------------------


def test_version_prints_the_package_version(capsys):
    from autoprumux.core.version import __version__

    code, out, err = run(capsys, "--version")
    assert code == 0 and err == ""
    assert out == f"autoprumux, version {__version__}\n"
    done = subprocess.run(
        [sys.executable, "-m", "autoprumux", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout == out


def option_help(command_name, option):
    """The help text of one option of one command, as ``--help`` shows it (unwrapped)."""
    import click

    from autoprumux.cli.main import cli

    command = cli.commands[command_name]
    for param in command.get_params(click.Context(command)):
        if isinstance(param, click.Option) and option in param.opts:
            return param.help
    raise AssertionError(f"{command_name} has no {option}")


def test_the_budget_options_say_the_same_everywhere():
    """Declared once: predict, search and report word each budget option alike (report adds
    its default when none is given: the study's last search's with --storage, else 0.03)."""
    for option in ("--budget", "--relative-budget", "--min-accuracy"):
        predict_help = option_help("predict", option)
        assert option_help("search", option) == predict_help
        assert option_help("report", option).startswith(predict_help)
    assert option_help("report", "--budget").endswith(
        "Default when no budget option is given: with --storage, the budget the study's last "
        "search ran with; otherwise 0.03."
    )
    assert "(1, 0) accuracy" in option_help("predict", "--relative-budget")


def test_the_objective_default_of_report_is_the_studys_with_storage():
    """report's --objective defaults to what the search ranked by (with --storage), so its
    help does not show predict's fixed default."""
    from autoprumux.cli.main import cli

    def objective(command_name):
        return next(p for p in cli.commands[command_name].params if p.name == "objective")

    assert not objective("report").show_default
    assert option_help("report", "--objective").endswith(
        "Default: with --storage, the objective the study's last search ran with; otherwise "
        "throughput."
    )
    assert objective("predict").show_default
    assert option_help("predict", "--objective").endswith("as the throughput table measured it.")


def test_predict_top_is_not_per_budget():
    # predict takes one budget: the k is simply how many it prints
    assert option_help("predict", "--top") == "How many recommendations to print."
    assert "per budget" not in option_help("predict", "--top")


@pytest.mark.parametrize(
    ("command", "where"),
    [
        ("train", "Where the trial trains"),
        ("warmup", "Where the warm-up trains"),
        ("classify", "Where the model runs"),
        ("measure", "Where the models are timed"),
        ("search", "Where trials train"),
    ],
)
def test_every_device_option_names_the_choices_and_what_auto_does(command, where):
    text = option_help(command, "--device")
    assert text.startswith(where + ": auto (")
    for spelling in ("cpu", "cuda", "cuda:INDEX"):
        assert spelling in text
    if command != "search":  # a Ray trial's auto is its own GPU, said in its own words
        assert "auto (the current CUDA device when this machine has one, else the CPU)" in text


def test_report_throughput_help_says_what_the_report_reads():
    """The default is the table the search ranked by (with --storage), else the results' own
    throughputs: those timed inside each trial (autoprumux/report/sources.py ``_table``)."""
    text = option_help("report", "--throughput")
    assert "with --storage, the table the search ranked by" in text
    assert text.endswith("otherwise the results' own throughputs, those timed inside each trial.")


# -- evaluate on a table that is not the paper's grid ---------------------------------------


@pytest.fixture
def tiny_table(write_csv):
    """Every point of 1,2,4 x 0,0.5,...,0.9 trained: N = 4 and s = 0.5 are not in the paper's
    grid, N = 5 and 10 and s = 0.95 are missing from this one."""
    rows = [["task", "n", "sparsity", "accuracy", "throughput"]]
    for n in (1, 2, 4):
        for s in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9):
            accuracy = 0.90 - 0.01 * (n - 1) - 0.05 * s * s
            rows.append(["sst2", n, s, round(accuracy, 6), round(100 * n / (1.2 - s), 3)])
    return write_csv(rows, "tiny.csv")


def test_paper_rule_on_the_papers_grid_is_the_papers_training_grid():
    from autoprumux.core.evaluation import paper_rule_train_grid
    from autoprumux.core.grid import PAPER_GRID, PAPER_TRAIN_GRID, Grid

    assert paper_rule_train_grid(PAPER_GRID) == PAPER_TRAIN_GRID
    # non-zero 0.5, 0.6, 0.7, 0.8, 0.9: every other from 0.5, and the largest (0.9 already)
    tiny = Grid((1, 2, 4), (0.0, 0.5, 0.6, 0.7, 0.8, 0.9))
    assert paper_rule_train_grid(tiny).spec() == "1,2,4:0,0.5,0.7,0.9"
    # an even count: the largest is added to every other one
    assert paper_rule_train_grid(Grid((1, 2), (0.0, 0.5, 0.6))).spec() == "1,2:0,0.5,0.6"


def test_evaluate_on_a_small_table_trains_on_its_own_grid(capsys, tiny_table):
    code, out, _ = run(capsys, "evaluate", "--results", str(tiny_table), "--json")
    assert code == 0
    document = json.loads(out)
    # not the paper's points (1,2 x 0,0.6,0.7,0.8,0.9: 10, none with N = 4) but 3 x 4
    assert document["train_grid"] == "1,2,4:0,0.5,0.7,0.9"
    assert document["train_points"] == 12 and document["test_points"] == 18
    # M_A's left-out points: N > 1 and s > 0 among the training points
    assert [(p["n"], p["sparsity"]) for p in document["m_a"]["points"]] == [
        (n, s) for n in (2, 4) for s in (0.5, 0.7, 0.9)
    ]
    # the same as naming that grid
    code, given, _ = run(
        capsys,
        "evaluate",
        "--results",
        str(tiny_table),
        "--train-grid",
        "1,2,4:0,0.5,0.7,0.9",
        "--json",
    )
    assert code == 0 and json.loads(given) == document
    code, text, _ = run(capsys, "evaluate", "--results", str(tiny_table))
    assert text.splitlines()[1] == (
        "training grid 1,2,4:0,0.5,0.7,0.9 (the paper's rule on the results' grid "
        "1,2,4:0,0.5,0.6,0.7,0.8,0.9; --train-grid chooses others)"
    )


def test_evaluate_on_the_papers_grid_says_it_uses_the_papers_training_grid(capsys):
    code, out, _ = run(capsys, "evaluate", "--results", str(SYNTHETIC))
    assert code == 0
    assert out.splitlines()[1] == "training grid 1,2,5,10:0,0.6,0.7,0.8,0.9,0.95 (the paper's)"


def test_evaluate_refuses_training_points_the_results_do_not_hold(capsys, tiny_table):
    code, out, err = run(
        capsys,
        "evaluate",
        "--results",
        str(tiny_table),
        "--train-grid",
        "1,2,5,10:0,0.6,0.7,0.8,0.9,0.95",
    )
    assert code == 2 and out == ""
    assert err == (
        f"autoprumux: error: --train-grid: N 5, 10; s 0.95: in no row of {tiny_table} (its "
        "grid: 1,2,4:0,0.5,0.6,0.7,0.8,0.9); give training points the results hold, or leave "
        "--train-grid out for the paper's rule on them\n"
    )


# -- search: a task without a CPU study ------------------------------------------------------


def test_search_for_a_task_without_a_cpu_study_says_so_in_one_line(capsys, tmp_path, monkeypatch):
    from autoprumux.cli import default_study
    from autoprumux.cli.default_study import cpu_study_tasks
    from autoprumux.session.search_session import SearchSession

    def never(*args, **kwargs):
        raise AssertionError("the search started")

    monkeypatch.chdir(tmp_path)  # no ./studies: the checkout's studies are the defaults
    monkeypatch.setattr(default_study, "cuda_available", lambda: False)
    monkeypatch.setattr(SearchSession, "run", never)
    assert cpu_study_tasks() == ("sst2",)
    for task in ("mnli", "qnli", "qqp"):
        code, out, err = run(capsys, "search", "--task", task, "--budget", "0.03")
        assert code == 2 and out == ""
        assert err == (
            f"autoprumux: error: --task: {task} has no CPU study (studies/{task}-tiny.toml) and "
            "this machine has no GPU; the tasks with a CPU study: sst2. Pass --study FILE, or "
            f"run on a machine with a GPU (studies/{task}.toml)\n"
        )
    # a CPU study of one's own in ./studies is the default, as the search looks it up
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "qnli-tiny.toml").write_text("")
    assert cpu_study_tasks() == ("sst2", "qnli")
    with pytest.raises(AssertionError, match="the search started"):
        main(["search", "--task", "qnli", "--budget", "0.03"])


def test_every_search_option_reaches_the_request(capsys, monkeypatch):
    """The options are the SearchRequest's fields of the same names: each value given arrives
    there as parsed (no search runs here)."""
    from autoprumux.cli import search_commands
    from autoprumux.core.budget import Budget, BudgetKind
    from autoprumux.core.errors import FieldError
    from autoprumux.session.search_request import SearchRequest

    asked = []

    def record(request, echo):
        asked.append(request)
        raise FieldError("--test", "stopped before the search")

    monkeypatch.setattr(search_commands, "run_search_command", record)
    code, _, err = run(
        capsys,
        "search",
        "--study",
        "s.toml",
        "--task",
        "qnli",
        "--relative-budget",
        "0.02",
        "--gpus",
        "2",
        "--gpus-per-trial",
        "0.5",
        "--cpus-per-trial",
        "3",
        "--executor",
        "local",
        "--device",
        "cuda:1",
        "--address",
        "head:6379",
        "--storage",
        "sqlite:///x.db",
        "--trainer",
        "replay:r.csv",
        "--throughput",
        "t.json",
        "--max-trials",
        "7",
        "--max-gpu-hours",
        "1.5",
        "--timeout",
        "90",
        "--max-retries",
        "0",
        "--top",
        "5",
        "--no-early-stop",
    )
    assert code == 2 and err == "autoprumux: error: --test: stopped before the search\n"
    (request,) = asked
    assert request == SearchRequest(
        task="qnli",
        study_path="s.toml",
        budget=Budget(BudgetKind.RELATIVE, 0.02),
        gpus=2.0,
        gpus_per_trial=0.5,
        cpus_per_trial=3.0,
        executor="local",
        device="cuda:1",
        address="head:6379",
        storage="sqlite:///x.db",
        trainer_spec="replay:r.csv",
        throughput_path="t.json",
        max_trials=7,
        max_gpu_hours=1.5,
        timeout_s=90.0,
        max_retries=0,
        top_k=5,
        early_stop=False,
    )
    code, _, err = run(capsys, "search", "--budget", "0.03", "--timeout", "0")
    assert code == 2 and "--timeout" in err and "0.0 is not in the range x>0" in err


def test_a_search_that_could_not_go_on_exits_1_and_bad_input_2(capsys, monkeypatch):
    """Both are one line; a lost Ray cluster is not the user's input (its work is kept)."""
    from autoprumux.cli import main as cli_main
    from autoprumux.loop.ray_address import ClusterError, ClusterLost

    for error, code in ((ClusterLost("the Ray cluster … was lost"), 1), (ClusterError("x"), 2)):

        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(cli_main.cli, "main", fail)
        assert main(["search"]) == code
        assert capsys.readouterr().err == f"autoprumux: error: {error}\n"
