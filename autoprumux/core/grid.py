"""The (N, s) space: points, the four model families, and grids of points.

N is the multiplexing width (N inputs share one forward pass; N = 1 is no multiplexing) and
s the structured-pruning sparsity (fraction of the encoder's prunable parameters removed;
s = 0 is no pruning). (1, 0) is the unmodified model, the baseline of every comparison.

A point also names the precision its model is served in (:mod:`autoprumux.core.precision`),
fp32 unless said: training makes an fp32 (N, s) model (``GridPoint.trained``), and each of
its precisions is a point of its own for the tables and the recommender, (N, s, int8).
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from autoprumux.core.errors import FieldError
from autoprumux.core.precision import Precision

# Sparsities are compared as keys; rounding makes 0.6 read from CSV equal 0.1 * 6.
_SPARSITY_DECIMALS = 6


class Family(enum.Enum):
    """Which compression a point uses; the paper compares these four."""

    BASELINE = "baseline"  # (1, 0): plain fine-tuned model
    COFI = "cofi"  # (1, s > 0): pruning only
    DATAMUX = "datamux"  # (N > 1, 0): multiplexing only
    PRUMUX = "prumux"  # (N > 1, s > 0): both


@dataclass(frozen=True, order=True)
class GridPoint:
    """One (N, s) configuration, served in one precision. Ordered by N, then s, then
    precision."""

    n: int
    sparsity: float
    precision: Precision = Precision.FP32

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise FieldError("n", f"{self.n!r} is not allowed; N is an integer >= 1")
        s = float(self.sparsity)
        if not (0.0 <= s < 1.0) or math.isnan(s):
            raise FieldError("sparsity", f"{self.sparsity!r} is outside [0, 1)")
        object.__setattr__(self, "sparsity", round(s, _SPARSITY_DECIMALS))
        if not isinstance(self.precision, Precision):
            object.__setattr__(self, "precision", Precision.parse(self.precision))

    @property
    def trained(self) -> GridPoint:
        """The (N, s) model this point serves: the point in fp32, what a trial trains."""
        if self.precision is Precision.FP32:
            return self
        return GridPoint(self.n, self.sparsity)

    def served(self, precision: Precision) -> GridPoint:
        """This point's model served in ``precision``."""
        return GridPoint(self.n, self.sparsity, precision)

    @property
    def family(self) -> Family:
        if self.n == 1:
            return Family.BASELINE if self.sparsity == 0 else Family.COFI
        return Family.DATAMUX if self.sparsity == 0 else Family.PRUMUX

    def __str__(self) -> str:
        if self.precision is Precision.FP32:
            return f"({self.n}, {self.sparsity:g})"
        return f"({self.n}, {self.sparsity:g}, {self.precision.value})"


BASELINE = GridPoint(1, 0.0)


@dataclass(frozen=True)
class Grid:
    """The product of N values and sparsities: a study's search space or a training grid."""

    n_values: tuple[int, ...]
    sparsities: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.n_values:
            raise FieldError("n", "is empty; give at least one N >= 1")
        if not self.sparsities:
            raise FieldError("sparsity", "is empty; give at least one sparsity in [0, 1)")
        for n in self.n_values:
            GridPoint(n, 0.0)  # validates N
        for s in self.sparsities:
            GridPoint(1, s)  # validates s
        n_values = tuple(sorted(set(self.n_values)))
        sparsities = tuple(sorted({round(float(s), _SPARSITY_DECIMALS) for s in self.sparsities}))
        if len(n_values) != len(self.n_values):
            raise FieldError("n", f"{list(self.n_values)} repeats a value")
        if len(sparsities) != len(self.sparsities):
            raise FieldError("sparsity", f"{list(self.sparsities)} repeats a value")
        object.__setattr__(self, "n_values", n_values)
        object.__setattr__(self, "sparsities", sparsities)

    def __iter__(self) -> Iterator[GridPoint]:
        return (GridPoint(n, s) for n, s in itertools.product(self.n_values, self.sparsities))

    def __len__(self) -> int:
        return len(self.n_values) * len(self.sparsities)

    def __contains__(self, point: object) -> bool:
        """Whether the grid trains ``point``'s model (any precision it is served in)."""
        return (
            isinstance(point, GridPoint)
            and point.n in self.n_values
            and point.sparsity in self.sparsities
        )

    def points(self) -> tuple[GridPoint, ...]:
        return tuple(self)

    def served(self, precisions: tuple[Precision, ...]) -> tuple[GridPoint, ...]:
        """Every point of the grid in each of ``precisions``: the (N, s, precision) space."""
        return tuple(p.served(q) for p in self for q in precisions)

    @property
    def has_baseline(self) -> bool:
        return BASELINE in self

    def spec(self) -> str:
        """The grid in the ``N,N,...:s,s,...`` form that :func:`parse_grid_spec` reads."""
        return ",".join(map(str, self.n_values)) + ":" + ",".join(f"{s:g}" for s in self.sparsities)


def parse_grid_spec(spec: str, field: str = "grid") -> Grid:
    """Parse ``"1,2,5,10:0,0.6,0.7"`` (N values, a colon, sparsities) into a :class:`Grid`."""
    n_text, sep, s_text = spec.partition(":")
    if not sep:
        raise FieldError(field, f"{spec!r} is not 'N,N,...:s,s,...' (e.g. '1,2,5,10:0,0.6,0.7')")
    try:
        n_values = tuple(int(v) for v in n_text.split(","))
        sparsities = tuple(float(v) for v in s_text.split(","))
    except ValueError:
        raise FieldError(
            field, f"{spec!r} is not 'N,N,...:s,s,...' with integer N and decimal s"
        ) from None
    try:
        return Grid(n_values, sparsities)
    except FieldError as err:
        raise err.within(field) from None


def sparsity_range(start: float, stop: float, step: float) -> tuple[float, ...]:
    """Sparsities ``start, start+step, ..., stop`` (inclusive), rounded so they match as keys."""
    count = round((stop - start) / step)
    return tuple(round(start + i * step, _SPARSITY_DECIMALS) for i in range(count + 1))


# The paper's (N, s) spaces (section 4.4). The search space is N in {1, 2, 5, 10} x
# s in {0, 0.60, 0.65, ..., 0.95}; the accuracy model is fitted on the training grid, which
# holds the baselines (N = 1 row, s = 0 column) and every tenth of sparsity from 0.6 for N > 1.
PAPER_N_VALUES = (1, 2, 5, 10)
PAPER_SPARSITIES = (0.0, *sparsity_range(0.60, 0.95, 0.05))
PAPER_GRID = Grid(PAPER_N_VALUES, PAPER_SPARSITIES)
PAPER_TRAIN_GRID = Grid(PAPER_N_VALUES, (0.0, 0.60, 0.70, 0.80, 0.90, 0.95))
