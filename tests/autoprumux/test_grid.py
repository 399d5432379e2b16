import pytest

from autoprumux.core.errors import FieldError
from autoprumux.core.grid import (
    BASELINE,
    PAPER_GRID,
    PAPER_SPARSITIES,
    PAPER_TRAIN_GRID,
    Family,
    Grid,
    GridPoint,
    parse_grid_spec,
)


def test_families_follow_the_paper():
    assert GridPoint(1, 0).family is Family.BASELINE
    assert GridPoint(1, 0.6).family is Family.COFI
    assert GridPoint(5, 0).family is Family.DATAMUX
    assert GridPoint(5, 0.6).family is Family.PRUMUX


def test_sparsity_is_rounded_so_equal_values_are_equal_keys():
    assert GridPoint(2, 0.1 + 0.2) == GridPoint(2, 0.3)
    assert hash(GridPoint(2, 0.6000000000001)) == hash(GridPoint(2, 0.6))


@pytest.mark.parametrize(
    ("n", "s", "field"),
    [
        (0, 0.5, "n"),
        (2.5, 0.5, "n"),
        (True, 0.5, "n"),
        (2, 1.0, "sparsity"),
        (2, -0.1, "sparsity"),
        (2, float("nan"), "sparsity"),
    ],
)
def test_invalid_points_name_the_field(n, s, field):
    with pytest.raises(FieldError) as err:
        GridPoint(n, s)
    assert err.value.field == field


def test_paper_grids():
    assert PAPER_SPARSITIES == (0.0, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert len(PAPER_GRID) == 36 and len(PAPER_TRAIN_GRID) == 24
    assert BASELINE in PAPER_TRAIN_GRID and GridPoint(10, 0.65) not in PAPER_TRAIN_GRID
    assert set(PAPER_TRAIN_GRID) < set(PAPER_GRID)


def test_grid_spec_round_trip():
    grid = parse_grid_spec("10,1,2:0.9,0,0.5")
    assert grid.n_values == (1, 2, 10) and grid.sparsities == (0.0, 0.5, 0.9)
    assert parse_grid_spec(grid.spec()) == grid
    assert list(grid)[:2] == [GridPoint(1, 0), GridPoint(1, 0.5)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1,2", "is not 'N,N,...:s,s,...'"),
        ("1,x:0", "integer N"),
        ("1,1:0", "repeats"),
        ("1:0,1.5", "outside [0, 1)"),
        ("0:0", ">= 1"),
    ],
)
def test_bad_grid_specs(spec, message):
    with pytest.raises(FieldError, match="^grid") as err:
        parse_grid_spec(spec)
    assert message in str(err.value)


def test_empty_grid_is_rejected():
    with pytest.raises(FieldError, match="empty"):
        Grid((), (0.0,))
