import itertools
import random

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from autoprumux.core.grid import GridPoint as P
from autoprumux.core.surface import AccuracySurface
from autoprumux.core.surrogate import Source

# One cell: corners (N, s) -> accuracy.
CELL = {P(1, 0): 0.9, P(1, 0.5): 0.8, P(3, 0): 0.7, P(3, 0.5): 0.4}


def value(surface, n, s):
    return surface.interpolate(n, s)


def test_hand_computed_values_inside_the_cell():
    surface = AccuracySurface().fit(CELL)
    # centre: the mean of the four corners
    assert value(surface, 2, 0.25) == pytest.approx((0.9 + 0.8 + 0.7 + 0.4) / 4)
    # (1.5, 0.1): row N=1 at s=0.1 is 0.88, row N=3 is 0.64; a quarter of the way: 0.82
    assert value(surface, 1.5, 0.1) == pytest.approx(0.82)


def test_hand_computed_values_on_edges():
    surface = AccuracySurface().fit(CELL)
    assert value(surface, 2, 0) == pytest.approx(0.8)  # bottom edge: (0.9 + 0.7) / 2
    assert value(surface, 3, 0.25) == pytest.approx(0.55)  # right edge: (0.7 + 0.4) / 2
    assert value(surface, 1, 0.4) == pytest.approx(0.82)  # left edge, 4/5 of the way
    assert surface.predict(P(2, 0.5)).source is Source.INTERPOLATED


def test_exact_and_measured_at_nodes():
    surface = AccuracySurface().fit(CELL)
    for point, accuracy in CELL.items():
        prediction = surface.predict(point)
        assert prediction.value == accuracy and prediction.source is Source.MEASURED


def test_matches_the_bilinear_form_fitted_to_each_cell():
    """Inside a cell the surface is sum_{a,b} k_ab N^a s^b through the cell's four corners."""
    rng = random.Random(1)
    ns, ss = (1, 2, 5, 10), (0.0, 0.6, 0.7, 0.8, 0.9, 0.95)
    grid = {P(n, s): rng.uniform(0.6, 0.95) for n in ns for s in ss}
    surface = AccuracySurface().fit(grid)
    for (n0, n1), (s0, s1) in itertools.product(
        zip(ns, ns[1:], strict=False), zip(ss, ss[1:], strict=False)
    ):
        corners = [(n, s) for n in (n0, n1) for s in (s0, s1)]
        design = np.array([[1, n, s, n * s] for n, s in corners])
        k = np.linalg.solve(design, [grid[P(n, s)] for n, s in corners])
        for _ in range(5):
            n, s = rng.uniform(n0, n1), round(rng.uniform(s0, s1), 6)
            assert value(surface, n, s) == pytest.approx(k @ [1, n, s, n * s], abs=1e-9)


def test_matches_scipy_on_a_full_grid():
    rng = np.random.default_rng(0)
    ns, ss = np.array([1, 2, 5, 10]), np.array([0.0, 0.6, 0.65, 0.7, 0.8, 0.95])
    values = rng.uniform(0.5, 0.95, (len(ns), len(ss)))
    surface = AccuracySurface().fit(
        {
            P(int(n), s): values[i, j]
            for (i, n), (j, s) in itertools.product(enumerate(ns), enumerate(ss))
        }
    )
    reference = RegularGridInterpolator((ns, ss), values, method="linear")
    queries = [(rng.uniform(1, 10), round(rng.uniform(0, 0.95), 6)) for _ in range(200)]
    ours = [value(surface, n, s) for n, s in queries]
    np.testing.assert_allclose(ours, reference(queries), atol=1e-12)


def test_outside_the_measured_hull_is_unknown():
    surface = AccuracySurface().fit(CELL)
    for n, s in [(4, 0.25), (2, 0.6), (4, 0.6)]:
        prediction = surface.predict(P(n, s))
        assert prediction.source is Source.UNKNOWN and prediction.value is None


def full_grid():
    # accuracy = 0.9 - 0.01 (N - 1) - 0.1 s: bilinear everywhere, so any rule that
    # interpolates between the right neighbours reproduces it exactly
    return {
        P(n, s): 0.9 - 0.01 * (n - 1) - 0.1 * s
        for n in (1, 2, 5, 10)
        for s in (0.0, 0.6, 0.7, 0.8, 0.9, 0.95)
    }


def test_a_missing_node_is_interpolated_along_its_row():
    grid = full_grid()
    grid[P(5, 0.8)] = 0.5  # a row neighbour that would pull a column interpolation down
    del grid[P(5, 0.7)]
    surface = AccuracySurface().fit(grid)
    prediction = surface.predict(P(5, 0.7))
    # rows first: between (5, 0.6) = 0.80 and (5, 0.8) = 0.5
    assert prediction.value == pytest.approx((0.80 + 0.5) / 2)
    assert prediction.source is Source.INTERPOLATED


def test_a_missing_row_end_falls_back_to_its_column():
    grid = full_grid()
    del grid[P(5, 0.95)]
    surface = AccuracySurface().fit(grid)
    # no row value above s = 0.9 for N = 5; the column s = 0.95 runs from N = 2 to N = 10
    expected = 0.9 - 0.01 * 4 - 0.095
    assert value(surface, 5, 0.95) == pytest.approx(expected)
    # a corner of the hull cannot be recovered either way
    del grid[P(10, 0.95)]
    assert AccuracySurface().fit(grid).predict(P(10, 0.95)).source is Source.UNKNOWN


def test_failed_points_are_barriers():
    grid = full_grid()
    for s in (0.9, 0.95):
        del grid[P(10, s)]
    surface = AccuracySurface().fit(grid, failed=[P(10, 0.9), P(10, 0.95)])
    assert surface.predict(P(10, 0.9)).source is Source.FAILED
    # between a measured and a failed point: no confident number in either direction
    assert surface.predict(P(10, 0.85)).source is Source.UNKNOWN
    assert surface.predict(P(7, 0.9)).source is Source.UNKNOWN
    assert surface.predict(P(7, 0.92)).source is Source.UNKNOWN
    # away from the failure the surface still answers
    assert value(surface, 10, 0.75) == pytest.approx(0.9 - 0.09 - 0.075)
    assert value(surface, 5, 0.92) == pytest.approx(0.9 - 0.04 - 0.092)


def test_a_never_trained_hole_is_not_a_barrier():
    grid = full_grid()
    del grid[P(10, 0.9)]  # never trained (or left out): (10, 0.95) is still measured
    surface = AccuracySurface().fit(grid)
    assert value(surface, 10, 0.9) == pytest.approx(0.9 - 0.09 - 0.09)
