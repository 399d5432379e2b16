"""How well an untrained point's accuracy in another precision is predicted: leave-one-out over
a recorded grid's deltas (the precision's figure minus fp32's at each trained (N, s)).

    .venv/bin/python benchmarks/bench_precision_deltas.py \
        [--grid studies/results/sst2-tiny-precisions.json] [--precision int8]

Each measured delta is left out in turn and predicted from the others the two ways
:class:`autoprumux.core.surface.ServedSurface` can: interpolated by the accuracy surface's rule
(the search's, falling back to the mean where the rule reaches no figure) and their mean. Prints
how many deltas, their range, and each way's miss: RMS and largest, in accuracy points.
"""

from __future__ import annotations

import argparse
import math
from statistics import fmean

from autoprumux.core.precision import Precision
from autoprumux.core.surface import AccuracySurface
from autoprumux.files.results_io import read_results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", default="studies/results/sst2-tiny-precisions.json")
    parser.add_argument("--precision", default="int8", choices=[p.value for p in Precision])
    args = parser.parse_args()
    results = read_results(args.grid)
    observed = results.observations(results.resolve_task(None))
    precision = Precision(args.precision)
    deltas = {
        point.trained: figure - observed.accuracy[point.trained]
        for point, figure in observed.served_accuracy.items()
        if point.precision is precision and point.trained in observed.accuracy
    }
    interpolated, mean = [], []
    for left in deltas:
        rest = {p: d for p, d in deltas.items() if p != left}
        guess = AccuracySurface().fit(rest).predict(left).value
        average = fmean(rest.values())
        interpolated.append((average if guess is None else guess) - deltas[left])
        mean.append(average - deltas[left])
    print(
        f"{args.grid}: {len(deltas)} {precision} deltas, {100 * min(deltas.values()):+.2f} to "
        f"{100 * max(deltas.values()):+.2f} points; leave-one-out miss, interpolated: "
        f"{_rms(interpolated):.2f} RMS, at most {_worst(interpolated):.2f}; mean: "
        f"{_rms(mean):.2f} RMS, at most {_worst(mean):.2f} (points)"
    )


def _rms(misses: list[float]) -> float:
    return 100 * math.sqrt(fmean(m * m for m in misses))


def _worst(misses: list[float]) -> float:
    return 100 * max(abs(m) for m in misses)


if __name__ == "__main__":
    main()
