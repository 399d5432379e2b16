import json

import pytest

from autoprumux.core.errors import DataError
from autoprumux.core.grid import GridPoint as P
from autoprumux.core.surrogate import Source
from autoprumux.core.throughput import ThroughputModel, ThroughputTable
from autoprumux.files.results_io import read_throughput_table, write_throughput_table


def test_latency_is_interpolated_linearly_in_sparsity():
    model = ThroughputModel().fit({P(2, 0.6): 1000.0, P(2, 0.8): 2000.0})
    # seconds per example: 1.0 ms and 0.5 ms; midway 0.75 ms -> 1333.3 examples/s
    prediction = model.predict(P(2, 0.7))
    assert prediction.value == pytest.approx(1000 / 0.75)
    assert prediction.source is Source.INTERPOLATED
    assert model.predict(P(2, 0.75)).value == pytest.approx(1000 / 0.625)


def test_no_rule_across_n_or_beyond_the_measured_sparsities():
    model = ThroughputModel().fit({P(2, 0.6): 1000.0, P(2, 0.8): 2000.0, P(4, 0.6): 3000.0})
    for point in (P(3, 0.6), P(2, 0.9), P(2, 0.5), P(4, 0.7)):
        assert model.predict(point).source is Source.UNKNOWN


def test_speedup_needs_the_baseline():
    with pytest.raises(DataError, match=r"no fp32 \(1, 0\) row; speedups"):
        ThroughputTable({P(2, 0): 10.0})
    assert ThroughputTable({P(1, 0): 10.0, P(2, 0): 19.0}).baseline == 10.0


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_table_round_trip(tmp_path, suffix):
    table = ThroughputTable(
        {P(1, 0): 812.5, P(2, 0): 1590.0, P(1, 0.95): 8123.25},
        {"device": "cpu", "dtype": "float32", "batch": 128, "seq_len": 128},
    )
    path = write_throughput_table(table, tmp_path / f"table{suffix}")
    back = read_throughput_table(path)
    assert back.throughput == table.throughput
    if suffix == ".json":  # only JSON keeps the fingerprint
        assert back.fingerprint == table.fingerprint
        assert json.loads(path.read_text())["fingerprint"]["device"] == "cpu"


def test_a_results_file_with_several_tasks_needs_a_task(write_csv):
    path = write_csv(
        [
            ["task", "n", "sparsity", "throughput"],
            ["qqp", 1, 0, 100],
            ["qqp", 2, 0, 190],
            ["sst2", 1, 0, 110],
        ]
    )
    with pytest.raises(DataError, match="choose one with --throughput-task"):
        read_throughput_table(path)
    assert read_throughput_table(path, "qqp").throughput == {P(1, 0): 100.0, P(2, 0): 190.0}
    with pytest.raises(DataError, match="no rows for task 'mnli'"):
        read_throughput_table(path, "mnli")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["n", "sparsity"], [1, 0]], "missing column(s) throughput"),
        (
            [["n", "sparsity", "throughput"], [1, 0, -5]],
            "row 1: field 'throughput': -5.0 is not positive",
        ),
        (
            [["n", "sparsity", "throughput"], [1, 0, 5], [1, 0, 6]],
            "row 2: field 'throughput': conflicts",
        ),
        (
            [["n", "sparsity", "throughput"], [1, 0, "fast"]],
            "row 1: field 'throughput': 'fast' is not a number",
        ),
    ],
)
def test_malformed_tables(write_csv, rows, message):
    with pytest.raises(DataError) as err:
        read_throughput_table(write_csv(rows))
    assert message in str(err.value)
