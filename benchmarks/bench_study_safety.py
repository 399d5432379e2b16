"""A search killed at each step of a trial's life, and searches run side by side on one study.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_study_safety.py
    # the same against another checkout (the "before" column), e.g. a worktree of HEAD:
    git worktree add /tmp/before18 HEAD
    cd /tmp/before18 && HF_HUB_OFFLINE=1 PYTHONPATH=/tmp/before18 \\
        /work/main/.venv/bin/python /work/main/benchmarks/bench_study_safety.py

Every search is the replay demo (docs/search.md#replay) (studies/sst2.toml, budget 0.03, the
replayed table studies/results/synthetic-sst2.csv, --executor local), run as a subprocess of this
script, whose trainings sleep ``--delay`` seconds (this script slows the replay trainer itself, so
that it runs the same on a checkout without ``replay:FILE?delay=``).

Part 1, per step of a trial's life: the study is left as a kill at that step leaves it, then
the same search runs again. A step a kill can be timed at from outside (a trial training, a
trial just recorded) is a real SIGKILL of the search, sent when the storage shows that step;
a step that lasts between two writes (microseconds) is written into the study as the kill
leaves it. Columns: the rerun's exit code and answer (= the uninterrupted run's?), measured
values that differ from the replayed table's, duplicated measurements (COMPLETE trials beyond
one per point), and the exit code of ``report --storage`` on the study afterwards.

Part 2: ``--processes`` searches started at once on one new SQLite file, ``--rounds`` times,
then one search joined by the others once it trains: failed processes, COMPLETE trials, points
measured, duplicates, trials left RUNNING, and processes whose answer is wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import autoprumux

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from replay_search import replay_search_argv  # noqa: E402

ROOT = Path(autoprumux.__file__).resolve().parents[1]  # the checkout measured (PYTHONPATH)
TABLE = ROOT / "studies" / "results" / "synthetic-sst2.csv"
STUDY = ROOT / "studies" / "sst2.toml"
NAME = "sst2"  # the study's name (its file's stem)


def search_args(folder: Path, *extra: str) -> list[str]:
    study_file, trainer = folder / "sst2.toml", f"replay:{TABLE}"
    return replay_search_argv(study_file, url(folder), trainer, "--json", *extra)


def url(folder: Path) -> str:
    return f"sqlite:///{folder / 'study.db'}"


def new_folder(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir()
    shutil.copy(STUDY, folder / "sst2.toml")  # its report goes beside it, not into the repo
    return folder


def launch(folder: Path, delay: float, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--run-search", str(delay), "--"]
    return subprocess.Popen(
        command + search_args(folder, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder,
    )


def run(folder: Path, delay: float = 0.0, *extra: str) -> tuple[int, dict | None, str]:
    process = launch(folder, delay, *extra)
    out, err = process.communicate()
    return process.returncode, _json(out), _last_line(err)


def report_code(folder: Path) -> tuple[int, str]:
    process = subprocess.run(
        [sys.executable, "-m", "autoprumux", "report", "--storage", url(folder)]
        + ["--study-name", NAME, "--out", str(folder / "report.html")],
        capture_output=True,
        text=True,
        cwd=folder,
    )
    return process.returncode, _last_line(process.stderr)


def states(folder: Path) -> list[str]:
    """The trials' states, read straight from the SQLite file (as another process would)."""
    try:
        with sqlite3.connect(f"file:{folder / 'study.db'}?mode=ro", uri=True, timeout=5) as db:
            return [row[0] for row in db.execute("SELECT state FROM trials")]
    except sqlite3.Error:  # not created yet
        return []


def kill_when(folder: Path, delay: float, ready: Callable[[list[str]], bool]) -> None:
    process = launch(folder, delay)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ready(states(folder)):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.communicate()


def study_facts(folder: Path) -> dict[str, int]:
    """COMPLETE trials, distinct points among them, duplicates, measured values that differ
    from the table's, and trials left RUNNING or WAITING."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    truth = _table()
    study = optuna.load_study(study_name=NAME, storage=url(folder))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    points = [(int(t.params["n"]), float(t.params["sparsity"])) for t in complete]
    wrong = sum(abs(t.values[0] - truth[p]) > 1e-9 for t, p in zip(complete, points, strict=True))
    open_ = sum(t.state.name in ("RUNNING", "WAITING") for t in study.trials)
    return {
        "complete": len(complete),
        "points": len(set(points)),
        "duplicates": len(points) - len(set(points)),
        "wrong": wrong,
        "open": open_,
    }


def answer(document: dict | None) -> str:
    if not document or not document.get("best"):
        return "-"
    return f"({document['best']['n']}, {document['best']['sparsity']:g})"


# -- part 1: a kill at each step ------------------------------------------------------------


def leave_unlabelled(folder: Path, grid_only: bool) -> None:
    import optuna

    study = optuna.create_study(
        study_name=NAME, storage=url(folder), directions=["maximize", "maximize"]
    )
    if grid_only:
        study.set_user_attr("grid", "1,2,5,10:0,0.6,0.65,0.7,0.75,0.8,0.85,0.9,0.95")


def leave_waiting(folder: Path) -> None:
    """The issue's reproduction: a study with one finished trial, then a WAITING one."""
    import optuna

    run(folder, 0.0, "--max-trials", "1")
    optuna.load_study(study_name=NAME, storage=url(folder)).enqueue_trial(
        {"n": 10, "sparsity": 0.0}
    )


def leave_asked_without_params(folder: Path) -> None:
    import optuna

    run(folder, 0.0, "--max-trials", "1")
    storage = optuna.storages.RDBStorage(url(folder))
    storage.create_new_trial(storage.get_study_id_from_name(NAME))  # RUNNING, no params


def leave_running_with(folder: Path, trained: int, with_teacher: bool) -> None:
    """After ``trained`` trainings, the next one's trial RUNNING with its result's attributes
    written (a kill before its state); with its (N, 0) teacher recorded already, or not."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    run(folder, 0.0, "--max-trials", str(trained))
    point = next_point(trained)
    storage = optuna.storages.RDBStorage(url(folder))
    study_id = storage.get_study_id_from_name(NAME)
    grid = optuna.load_study(study_name=NAME, storage=storage).user_attrs["grid"]
    n_values, sparsities = ([float(v) for v in part.split(",")] for part in grid.split(":"))
    distributions = {
        "n": CategoricalDistribution([int(v) for v in n_values]),
        "sparsity": CategoricalDistribution(sparsities),
    }
    truth = _table()
    number = len(storage.get_all_trials(study_id))
    if with_teacher:
        teacher = (point[0], 0.0)
        storage.create_new_trial(
            study_id,
            create_trial(
                values=[truth[teacher], 1000.0],
                params={"n": teacher[0], "sparsity": teacher[1]},
                distributions=distributions,
                user_attrs={"from_trial": number + 1, "accuracy": truth[teacher]},
            ),
        )
    storage.create_new_trial(
        study_id,
        create_trial(
            state=TrialState.RUNNING,
            params={"n": point[0], "sparsity": point[1]},
            distributions=distributions,
            user_attrs={"accuracy": truth[point], "status": "complete"},
        ),
    )


NEXT_POINTS: list[tuple[int, float]] = []  # the uninterrupted run's trainings, in order


def next_point(trained: int) -> tuple[int, float]:
    return NEXT_POINTS[trained]


STEPS: list[tuple[str, Callable[[Path, float], None]]] = [
    ("study created, not labelled", lambda f, d: leave_unlabelled(f, grid_only=False)),
    ("labelled with the grid only", lambda f, d: leave_unlabelled(f, grid_only=True)),
    ("trial enqueued, not asked (WAITING)", lambda f, d: leave_waiting(f)),
    ("trial asked, params not set", lambda f, d: leave_asked_without_params(f)),
    (
        "trial training (SIGKILL)",
        lambda f, d: kill_when(f, d, lambda s: s.count("COMPLETE") >= 3 and "RUNNING" in s),
    ),
    (
        "result written, state not (teacher not)",
        lambda f, d: leave_running_with(f, 2, with_teacher=False),
    ),
    (
        "result written, state not (teacher was)",
        lambda f, d: leave_running_with(f, 2, with_teacher=True),
    ),
    (
        "trial just recorded (SIGKILL)",
        lambda f, d: kill_when(f, d, lambda s: s.count("COMPLETE") >= 4),
    ),
]


def part_1(parent: Path, delay: float) -> None:
    reference = new_folder(parent, "reference")
    code, document, _ = run(reference)
    assert code == 0 and document, "the uninterrupted search failed"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=NAME, storage=url(reference))
    NEXT_POINTS.extend(
        (int(t.params["n"]), float(t.params["sparsity"]))
        for t in study.trials
        if t.state.name == "COMPLETE" and "from_trial" not in t.user_attrs
    )
    expected = answer(document)
    print(f"uninterrupted: answer {expected}, {study_facts(reference)}")
    print()
    print(
        "| step | rerun exit | answer | = uninterrupted | measured values wrong | duplicates "
        "| report --storage exit |"
    )
    print("|---|---|---|---|---|---|---|")
    for index, (step, leave) in enumerate(STEPS):
        folder = new_folder(parent, f"step{index}")
        leave(folder, delay)
        code, document, error = run(folder)
        facts = study_facts(folder) if (folder / "study.db").exists() else {}
        rcode, rerror = report_code(folder)
        shown = answer(document) if code == 0 else f"- ({error[:110]})"
        print(
            f"| {step} | {code} | {shown} | {'yes' if answer(document) == expected else 'NO'} "
            f"| {facts.get('wrong', '-')} | {facts.get('duplicates', '-')} "
            f"| {rcode}{'' if rcode == 0 else ' (' + rerror[:110] + ')'} |"
        )


# -- part 2: searches side by side ----------------------------------------------------------


def side_by_side(folder: Path, processes: int, delay: float, stagger: bool) -> dict[str, object]:
    first = launch(folder, delay)
    if stagger:  # the others join a study whose first search trains
        deadline = time.monotonic() + 60
        while "RUNNING" not in states(folder) and time.monotonic() < deadline:
            time.sleep(0.01)
    searches = [first, *(launch(folder, delay) for _ in range(processes - 1))]
    outputs = [search.communicate() for search in searches]
    results = [(s.returncode, out, err) for s, (out, err) in zip(searches, outputs, strict=True)]
    return {
        "failures": [_last_line(err) for code, _, err in results if code != 0],
        "answers": {answer(_json(out)) for code, out, _ in results if code == 0},
        **(study_facts(folder) if (folder / "study.db").exists() else {}),
    }


def part_2(parent: Path, processes: int, rounds: int, delay: float) -> None:
    print()
    print(
        "| run | processes | failed | COMPLETE trials | points | duplicates | left open "
        "| answers | first failure |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    reference = answer(run(new_folder(parent, "alone"))[1])
    runs = [(f"at once, new file #{i + 1}", False) for i in range(rounds)]
    runs.append(("1 training, then the rest join", True))
    for index, (label, stagger) in enumerate(runs):
        folder = new_folder(parent, f"together{index}")
        facts = side_by_side(folder, processes, delay, stagger)
        failures = facts["failures"]
        answers = ", ".join(sorted(facts["answers"])) or "-"
        marker = "" if facts["answers"] <= {reference} else " (WRONG)"
        print(
            f"| {label} | {processes} | {len(failures)} | {facts.get('complete', '-')} "
            f"| {facts.get('points', '-')} | {facts.get('duplicates', '-')} "
            f"| {facts.get('open', '-')} | {answers}{marker} "
            f"| {'; '.join(sorted({f[:110] for f in failures})) or '-'} |"
        )


# -- helpers --------------------------------------------------------------------------------


def _table() -> dict[tuple[int, float], float]:
    import csv

    with TABLE.open() as handle:
        return {
            (int(row["n"]), float(row["sparsity"])): float(row["accuracy"])
            for row in csv.DictReader(handle)
            if row["status"] == "complete"
        }


def _json(text: str) -> dict | None:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _last_line(text: str) -> str:
    """The last line of a process's stderr (its error, or a traceback's exception), with
    this run's temporary folder shortened to $TMP."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1].strip() if lines else ""
    return line.replace(f"sqlite:///{TMP}", "sqlite:///$TMP").replace(TMP, "$TMP") if TMP else line


TMP = ""  # this run's temporary folder


def run_search(delay: float, argv: list[str]) -> int:
    """One search (this script's subprocess): the CLI, its replay trainings slowed."""
    import autoprumux.session.search_session as session
    from autoprumux.cli.main import main

    plain = session.make_trainer

    def slowed(*args, **kwargs):  # type: ignore[no-untyped-def]
        return dataclasses.replace(plain(*args, **kwargs), delay_s=delay)

    session.make_trainer = slowed
    return main(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per training")
    parser.add_argument("--part", choices=["1", "2", "all"], default="all")
    parser.add_argument("--run-search", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("argv", nargs="*")
    args = parser.parse_args()
    if args.run_search is not None:
        sys.exit(run_search(args.run_search, args.argv))
    print(f"autoprumux from {ROOT}")
    with tempfile.TemporaryDirectory(prefix="bench-study-safety-") as parent:
        global TMP
        TMP = parent
        if args.part in ("1", "all"):
            part_1(Path(parent), args.delay)
        if args.part in ("2", "all"):
            part_2(Path(parent), args.processes, args.rounds, args.delay)


if __name__ == "__main__":
    main()
