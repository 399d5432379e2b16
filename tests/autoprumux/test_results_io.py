import json

import pytest

from autoprumux.core.errors import DataError, FieldError
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.records import ResultsTable, TrialRecord, TrialStatus
from autoprumux.files.results_io import read_results, write_results

HEADER = ["task", "n", "sparsity", "accuracy", "throughput"]


def sample_table():
    return ResultsTable.from_records(
        [
            TrialRecord(
                task="sst2",
                n=1,
                sparsity=0.0,
                accuracy=0.925,
                throughput=812.5,
                seed=1,
                wall_time_s=3600.0,
                gpu_hours=1.0,
                artifact_path="runs/1-0",
                achieved_sparsity=0.0,
            ),
            TrialRecord(
                task="sst2",
                n=2,
                sparsity=0.6,
                accuracy=0.901,
                throughput=3300.0,
                achieved_sparsity=0.604,
            ),
            TrialRecord(
                task="sst2", n=10, sparsity=0.95, status=TrialStatus.FAILED, reason="loss is NaN"
            ),
            TrialRecord(
                task="sst2", n=5, sparsity=0.7, status=TrialStatus.PRUNED, reason="dominated"
            ),
        ]
    )


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_round_trip(tmp_path, suffix):
    table = sample_table()
    path = write_results(table, tmp_path / f"results{suffix}")
    assert read_results(path).records == table.records


def test_optional_columns_may_be_absent_and_json_may_wrap_rows(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps(
            {"rows": [{"task": "qqp", "n": 2, "sparsity": 0.6, "accuracy": 0.9, "throughput": 10}]}
        )
    )
    (record,) = read_results(path).records
    assert (
        record.status is TrialStatus.COMPLETE and record.seed is None and record.point == P(2, 0.6)
    )


def test_observations_average_seeds_and_keep_failures():
    table = ResultsTable.from_records(
        [
            TrialRecord(task="sst2", n=2, sparsity=0.6, accuracy=0.90, throughput=100.0, seed=1),
            TrialRecord(task="sst2", n=2, sparsity=0.6, accuracy=0.92, throughput=110.0, seed=2),
            TrialRecord(task="sst2", n=2, sparsity=0.7, status=TrialStatus.FAILED),
            TrialRecord(task="sst2", n=2, sparsity=0.8, status=TrialStatus.FAILED, seed=1),
            TrialRecord(
                task="sst2", n=2, sparsity=0.8, accuracy=0.85, throughput=150.0, seed=2
            ),  # one seed trained: not a hole
            TrialRecord(task="sst2", n=2, sparsity=0.9, status=TrialStatus.PRUNED),
            TrialRecord(task="qqp", n=2, sparsity=0.6, accuracy=0.5, throughput=1.0),
        ]
    )
    obs = table.observations("sst2")
    assert obs.accuracy == {P(2, 0.6): pytest.approx(0.91), P(2, 0.8): 0.85}
    assert obs.throughput[P(2, 0.6)] == pytest.approx(105.0)
    assert obs.failed == {P(2, 0.7)}


def test_identical_duplicates_collapse():
    record = TrialRecord(task="sst2", n=2, sparsity=0.6, accuracy=0.9, throughput=100.0)
    assert len(ResultsTable.from_records([record, record])) == 1


def test_task_resolution():
    table = ResultsTable.from_records(
        [
            TrialRecord(task="sst2", n=1, sparsity=0, accuracy=0.9, throughput=1.0),
            TrialRecord(task="qqp", n=1, sparsity=0, accuracy=0.9, throughput=1.0),
        ],
        "r.csv",
    )
    assert table.resolve_task("qqp") == "qqp"
    with pytest.raises(
        DataError, match="r.csv: holds 2 tasks \\(qqp, sst2\\); choose one with --task"
    ):
        table.resolve_task(None)
    with pytest.raises(DataError, match="no rows for task 'mnli'"):
        table.resolve_task("mnli")


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [["task", "n", "sparsity", "accuracy"], ["sst2", 1, 0, 0.9]],
            "is missing column(s) throughput; required: task, n, sparsity, accuracy, throughput",
        ),
        ([HEADER, ["sst2", 1, 0, "high", 10]], "row 1: field 'accuracy': 'high' is not a number"),
        (
            [HEADER, ["sst2", 1, 0, 0.9, 10], ["sst2", 2, 0, "NaN", 10]],
            "row 2: field 'accuracy': 'NaN' is not a finite number",
        ),
        (
            [HEADER, ["sst2", 1, 0, 1.2, 10]],
            "row 1: field 'accuracy': 1.2 is outside [-1, 1] (the study's metric: a fraction "
            "in [0, 1], or Matthews' coefficient)",
        ),
        (
            [HEADER, ["sst2", 1, 0, -1.5, 10]],
            "row 1: field 'accuracy': -1.5 is outside [-1, 1] (the study's metric: a fraction "
            "in [0, 1], or Matthews' coefficient)",
        ),
        (
            [HEADER, ["sst2", 1, 0, 0.9, 0]],
            "row 1: field 'throughput': 0.0 is not positive (examples per second)",
        ),
        (
            [HEADER, ["sst2", 1, 0, 0.9, -3]],
            "row 1: field 'throughput': -3.0 is not positive (examples per second)",
        ),
        (
            [HEADER, ["sst2", 0, 0, 0.9, 10]],
            "row 1: field 'n': 0 is not allowed; N is an integer >= 1",
        ),
        ([HEADER, ["sst2", 1.5, 0, 0.9, 10]], "row 1: field 'n': '1.5' is not an integer"),
        ([HEADER, ["sst2", 1, 1.0, 0.9, 10]], "row 1: field 'sparsity': 1.0 is outside [0, 1)"),
        ([HEADER, ["sst2", 1, -0.1, 0.9, 10]], "row 1: field 'sparsity': -0.1 is outside [0, 1)"),
        (
            [HEADER, ["sst2", 1, 0, "", 10]],
            "row 1: field 'accuracy': is missing; a complete trial needs it",
        ),
        ([HEADER, ["", 1, 0, 0.9, 10]], "row 1: field 'task': is empty; name the task (e.g. sst2)"),
        (
            [HEADER, ["sst2", 1, 0, 0.9, 10], ["sst2", 1, 0, 0.8, 10]],
            "row 2: field 'accuracy': conflicts with row 1: same task 'sst2', point (1, 0) but "
            "accuracy 0.8 vs 0.9; keep one row or give each a distinct seed",
        ),
        (
            [HEADER + ["status"], ["sst2", 1, 0, 0.9, 10, "done"]],
            "row 1: field 'status': 'done' is not one of: complete, failed, pruned, stopped",
        ),
    ],
)
def test_bad_rows_name_file_row_and_field(write_csv, rows, expected):
    path = write_csv(rows)
    with pytest.raises(DataError) as err:
        read_results(path)
    assert str(err.value) == f"{path}: {expected}"


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="cannot be read: no such file"):
        read_results(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="unknown extension '.xlsx'"):
        read_results(tmp_path / "r.xlsx")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="cannot be read as json"):
        read_results(bad)
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="cannot be read"):
        read_results(tmp_path / "dir.csv")
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        read_results(garbage)


def test_records_hold_the_studys_metric_down_to_matthews_minus_one():
    """A Matthews study's records go below 0; nothing goes outside [-1, 1], and a stopped
    record's evidence is checked alike."""
    low = TrialRecord(task="t", n=1, sparsity=0.0, accuracy=-0.25, throughput=10.0)
    assert low.accuracy == -0.25
    with pytest.raises(FieldError, match=r"stop_accuracy: 1.3 is outside \[-1, 1\]"):
        TrialRecord(
            task="t",
            n=2,
            sparsity=0.5,
            status=TrialStatus.STOPPED,
            stop_step=10,
            stop_accuracy=1.3,
            stop_margin=0.05,
        )
