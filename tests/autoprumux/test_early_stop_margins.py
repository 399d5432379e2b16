"""The early-stopping margins in the code are the ones the committed learning curves give: the
tiny study's teachers under each recipe it has had (batches of random lengths, then grouped by
length)."""

from pathlib import Path

from autoprumux.core.budget import FEASIBILITY_TOLERANCE
from autoprumux.core.early_stop import CHECK_FRACTIONS, MARGINS
from autoprumux.testing.stop_margins import accuracy_at, calibrate, count_stops, load_curves

RESULTS = Path(__file__).parents[2] / "studies" / "results"
CURVE_FILES = [RESULTS / "sst2-tiny-curves.json", RESULTS / "sst2-tiny-curves-grouped.json"]


def test_the_margins_are_calibrated_on_the_committed_curves():
    curves = [c for path in CURVE_FILES for c in load_curves(path)]
    assert len(curves) >= 4 and all(
        accuracy_at(c, f) is not None for c in curves for f in CHECK_FRACTIONS
    )
    assert calibrate(curves) == dict(MARGINS)


def test_on_the_recorded_curves_no_training_that_met_a_threshold_is_stopped():
    for path in CURVE_FILES:
        curves = load_curves(path)
        # every threshold a curve's own final accuracy could just meet, and the budgets 1-10%
        # below the (1, 0) baseline's of the same recipe
        baseline = next(c for c in curves if c.label.startswith("(1, 0)")).final
        thresholds = [c.final + FEASIBILITY_TOLERANCE for c in curves]
        thresholds += [baseline - b / 100 for b in range(1, 11)]
        counted = count_stops(curves, MARGINS, thresholds)
        assert counted.wrong == 0, path.name
