"""The Python API runs the search the CLI runs: ``autoprumux.search(...)`` and ``autoprumux
search`` on the same replayed study give the same answer and top-k, and the notebook-style
example (examples/python_api.py) prints it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import autoprumux
from autoprumux.cli.main import main
from autoprumux.core.grid import GridPoint
from autoprumux.loop.driver import StopReason

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "studies" / "sst2-tiny.toml"
REPLAY = ROOT / "studies" / "results" / "sst2-tiny-grid-grouped.json"
THROUGHPUT = ROOT / "studies" / "throughput" / "sst2-tiny-cpu-float32.json"


def study_copy(folder: Path) -> Path:
    """The tiny study in a folder of its own: its report lands there, not in the checkout."""
    path = folder / "studies" / STUDY.name
    path.parent.mkdir(parents=True)
    shutil.copy(STUDY, path)
    return path


def points(recommendations):
    return [GridPoint(r["n"], r["sparsity"]) for r in recommendations]


def test_the_cli_and_the_python_api_give_the_same_answer(tmp_path, capsys):
    cli_study = study_copy(tmp_path / "cli")
    argv = ["search", "--study", str(cli_study), "--budget", "0.03", "--executor", "local"]
    argv += ["--trainer", f"replay:{REPLAY}", "--throughput", str(THROUGHPUT)]
    argv += ["--storage", f"sqlite:///{tmp_path / 'cli.db'}", "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)

    result = autoprumux.search(
        study=study_copy(tmp_path / "api"),
        budget=0.03,
        trainer=f"replay:{REPLAY}",
        throughput=THROUGHPUT,
        storage=f"sqlite:///{tmp_path / 'api.db'}",
    )
    assert result.stop_reason is StopReason.ANSWER_KNOWN
    top = [r.point for r in result.decision.recommendations]
    assert top == points(printed["decision"]["recommendations"]) and len(top) == 3
    assert result.answer.point == result.best == top[0]
    assert result.best == GridPoint(printed["best"]["n"], printed["best"]["sparsity"])
    # the same document, but for where each search stored its study and wrote its report
    differ = {"storage", "report", "decision", "best"}
    assert {k: v for k, v in result.document.items() if k not in differ} == {
        k: v for k, v in printed.items() if k not in differ
    }
    assert result.document["best"]["model"] == printed["best"]["model"]
    assert result.text.startswith("stopped: answer known | trainings: ")
    assert f"answer: {result.answer.message}" in result.text


def test_the_example_script_prints_the_clis_answer(tmp_path, capsys):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python_api.py"), str(tmp_path / "example")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert "complete (1, 0)" in done.stderr  # progress through the logger, on stderr
    argv = ["search", "--study", str(study_copy(tmp_path)), "--budget", "0.03"]
    argv += ["--executor", "local", "--trainer", f"replay:{REPLAY}"]
    argv += ["--throughput", str(THROUGHPUT), "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    argv += ["--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    top = points(printed["decision"]["recommendations"])
    assert lines[-1] == f"answer: {top[0]}"
    assert lines[-2] == f"stopped: answer known; top-3: {', '.join(str(p) for p in top)}"
    # what it printed stays: the report, in the folder it was given
    assert (tmp_path / "example" / "reports" / "sst2-tiny.html").is_file()
