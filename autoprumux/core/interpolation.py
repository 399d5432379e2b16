"""Piecewise-linear interpolation along one line of the (N, s) grid, with holes and barriers.

The accuracy surface and the throughput rule are both built from these lines: a row (fixed N,
varying s) or a column (fixed s, varying N) of measured values.

- At a measured coordinate the value is returned exactly.
- Between the nearest measured coordinates below and above, the value is linear in the
  coordinate. Coordinates never measured (holes) are skipped over.
- A *failed* coordinate (a model that did not train) is a barrier: no value is given at it, nor
  between it and its measured neighbours, because a confident number there would be a guess.
- Outside the measured range there is no value (no extrapolation).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from autoprumux.core.grid import GridPoint


@dataclass(frozen=True)
class Line:
    coords: tuple[float, ...]  # sorted measured coordinates
    values: tuple[float, ...]  # value at each coordinate
    failed: tuple[float, ...] = ()  # sorted coordinates where training failed

    @classmethod
    def of(cls, measured: Iterable[tuple[float, float]], failed: Iterable[float] = ()) -> Line:
        pairs = sorted(measured)
        return cls(
            tuple(c for c, _ in pairs), tuple(v for _, v in pairs), tuple(sorted(set(failed)))
        )

    def at(self, x: float) -> float | None:
        """The interpolated value at ``x``, or None where the line cannot vouch for one."""
        i = bisect.bisect_left(self.coords, x)
        if i < len(self.coords) and self.coords[i] == x:
            return self.values[i]
        if i == 0 or i == len(self.coords):
            return None  # outside the measured range
        x0, x1 = self.coords[i - 1], self.coords[i]
        j = bisect.bisect_left(self.failed, x0)
        if j < len(self.failed) and self.failed[j] <= x1:
            return None  # a failed point lies between the measured neighbours
        t = (x - x0) / (x1 - x0)
        return (1.0 - t) * self.values[i - 1] + t * self.values[i]


def across(lines: dict[float, Line], major: float, minor: float) -> float | None:
    """Tensor-product interpolation: each line answers at ``minor``, then linear in ``major``.

    ``lines`` maps a major coordinate (e.g. N) to the line along the minor one (e.g. s). On a
    full grid this is exactly bilinear interpolation inside each cell. If ``major`` is a line
    of its own, only that line answers; otherwise the nearest lines on both sides must both
    answer (a line that cannot is not skipped: the gap may be where models stop training).
    """
    keys = sorted(lines)
    i = bisect.bisect_left(keys, major)
    if i < len(keys) and keys[i] == major:
        return lines[major].at(minor)
    if i == 0 or i == len(keys):
        return None
    lo, hi = keys[i - 1], keys[i]
    below, above = lines[lo].at(minor), lines[hi].at(minor)
    if below is None or above is None:
        return None
    t = (major - lo) / (hi - lo)
    return (1.0 - t) * below + t * above


def grid_lines(
    values: Mapping[GridPoint, float], failed: Iterable[GridPoint], by_n: bool
) -> dict[float, Line]:
    """The grid's rows (``by_n``: one line along s per N) or columns (one line along N per s)."""
    measured_by: dict[float, list[tuple[float, float]]] = {}
    failed_by: dict[float, list[float]] = {}
    for point, value in values.items():
        major, minor = (point.n, point.sparsity) if by_n else (point.sparsity, point.n)
        measured_by.setdefault(major, []).append((minor, value))
    for point in failed:
        major, minor = (point.n, point.sparsity) if by_n else (point.sparsity, point.n)
        failed_by.setdefault(major, []).append(minor)
    majors = measured_by.keys() | failed_by.keys()
    return {m: Line.of(measured_by.get(m, ()), failed_by.get(m, ())) for m in majors}
