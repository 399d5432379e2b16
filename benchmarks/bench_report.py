"""Report generation time and file size for 30 and for 1,000 trials.

    .venv/bin/python benchmarks/bench_report.py

Synthetic results: 30 trials on a 5 x 6 grid, 1,000 trials on a 20 x 50 grid; the time covers
the data functions and the rendering (plotly.js inlined), median of 3.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.grid import Grid, sparsity_range
from autoprumux.files.results_io import write_results
from autoprumux.report.html import write_report
from autoprumux.report.sources import from_results
from autoprumux.testing.synthetic import SyntheticFamily, synthetic_results

GRIDS = {
    30: Grid((1, 2, 3, 4, 5), (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)),
    1000: Grid(tuple(range(1, 21)), (0.0, *sparsity_range(0.51, 0.99, 0.01)[:49])),
}


def main() -> None:
    # no options: a parser all the same, so that --help describes the run instead of starting it
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    family = SyntheticFamily(untrainable_loss=0.2)
    with tempfile.TemporaryDirectory() as folder:
        for trials, grid in GRIDS.items():
            results = write_results(synthetic_results(grid, family), Path(folder) / f"{trials}.csv")
            times = []
            for _ in range(3):
                start = time.perf_counter()
                data = from_results(str(results), None, Budget(BudgetKind.ABSOLUTE, 0.03), None)
                path = write_report(data, Path(folder) / f"{trials}.html")
                times.append(time.perf_counter() - start)
            print(
                f"{len(grid):>5} trials: {statistics.median(times):.2f} s (median of 3), "
                f"{path.stat().st_size / 1e6:.2f} MB"
            )


if __name__ == "__main__":
    main()
