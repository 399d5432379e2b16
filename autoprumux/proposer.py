"""Which (N, s) to train next: a search that uses what is known about this problem.

Facts it relies on (paper section 3.3 and the grids it reports):
- throughput is known before training (a throughput table measures or estimates every point);
  only accuracy is uncertain;
- accuracy falls with N and with s (monotone): if (N, s) misses the threshold, so does every
  point at least as compressed, (N' >= N, s' >= s); if it meets it, so does every point at
  most as compressed. A point that failed to train counts as missing it;
- the answer is the fastest point that meets the threshold, so a point slower than the best
  verified (trained and feasible) point can never be the answer.

The search keeps the *open* points: untrained, not settled by the monotone inferences above,
faster than the best verified point, and not confidently predicted (< 5% chance) to miss the
threshold. It stops when no point is open: the best verified point is then the fastest feasible
one (given monotonicity). While points are open, every row (a fixed N) offers one probe: the
largest open sparsity more likely feasible than not by the prediction (the accuracy surface, or
the paper's additive rule acc(N, s) = acc(N, 0) + acc(1, s) - acc(1, 0)); the smallest open one
if all are predicted to miss; where nothing predicts, the row's (N, 0) (the teacher every
other point of the row is trained from, so paid for anyway; it rules the row out or gives the
additive rule its input), else the middle one (binary search). The probe
with the highest throughput x chance of feasibility is trained first (even odds without a
prediction). With k workers it proposes the k best distinct probes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoprumux.budget import FEASIBILITY_TOLERANCE
from autoprumux.grid import BASELINE, GridPoint
from autoprumux.surface import AccuracySurface


@dataclass(frozen=True)
class SearchState:
    """What the proposer knows. ``threshold`` is None until the baseline is measured (for
    budgets relative to it)."""

    candidates: Mapping[GridPoint, float]  # every point that may be trained -> throughput
    accuracy: Mapping[GridPoint, float]  # trained points (mean over repeats)
    failed: frozenset[GridPoint] = frozenset()  # trained and failed for good
    pending: frozenset[GridPoint] = frozenset()  # being trained now
    threshold: float | None = None

    def feasible(self, accuracy: float) -> bool:
        assert self.threshold is not None
        return accuracy >= self.threshold - FEASIBILITY_TOLERANCE


@dataclass(frozen=True)
class Status:
    """The proposer's view of every candidate."""

    best: GridPoint | None  # fastest verified feasible point
    open: tuple[GridPoint, ...]  # could still beat ``best``; need training to know
    ruled_out: frozenset[GridPoint] = field(default_factory=frozenset)  # infeasible by inference

    @property
    def done(self) -> bool:
        return not self.open


class Proposer:
    """Monotone, surface-guided search for the fastest feasible point (see module docstring)."""

    def __init__(self, uncertainty: float = 0.01, min_chance: float = 0.05) -> None:
        self.uncertainty = uncertainty  # accuracy spread of a surface prediction (fraction)
        self.min_chance = min_chance  # below this chance of feasibility a point is not worth it

    def status(self, state: SearchState) -> Status:
        if state.threshold is None:
            return Status(None, (BASELINE,) if BASELINE in state.candidates else ())
        trained_bad = [p for p, a in state.accuracy.items() if not state.feasible(a)]
        bad = set(trained_bad) | set(state.failed)
        good = [p for p, a in state.accuracy.items() if state.feasible(a)]
        best = max(
            good, key=lambda p: (state.candidates.get(p, 0.0), -p.n, -p.sparsity), default=None
        )
        floor = state.candidates.get(best, 0.0) if best is not None else 0.0
        surface = AccuracySurface().fit(state.accuracy, state.failed)
        ruled_out = set()
        open_points = []
        for point, throughput in state.candidates.items():
            if point in state.accuracy or point in state.failed:
                continue
            if any(b.n <= point.n and b.sparsity <= point.sparsity for b in bad):
                ruled_out.add(point)
                continue
            if any(g.n >= point.n and g.sparsity >= point.sparsity for g in good):
                continue  # certainly feasible, and no faster than the point that certifies it
            if throughput <= floor:
                continue
            if self.feasible_chance(self.predicted(point, surface, state), state) < self.min_chance:
                ruled_out.add(point)  # the surface is confident it misses the threshold
                continue
            open_points.append(point)
        return Status(best, tuple(sorted(open_points)), frozenset(ruled_out))

    def propose(self, state: SearchState, k: int = 1) -> list[GridPoint]:
        """Up to ``k`` distinct points to train now (fewer when fewer are open and not pending)."""
        status = self.status(state)
        available = [p for p in status.open if p not in state.pending]
        if not available or k < 1:
            return []
        if state.threshold is None:
            return available[:1]
        surface = AccuracySurface().fit(state.accuracy, state.failed)
        rows: dict[int, list[GridPoint]] = {}
        for point in status.open:
            rows.setdefault(point.n, []).append(point)
        chosen: list[GridPoint] = []
        taken = set(state.pending)
        while len(chosen) < k:
            probes = [
                p
                for n in sorted(rows)
                if (p := self._probe(sorted(rows[n]), taken, surface, state)) is not None
            ]
            if not probes:
                break
            # the most promising row's probe: throughput x chance of feasibility
            probe = max(probes, key=lambda p: (self._value(p, surface, state), -p.n))
            chosen.append(probe)
            taken.add(probe)
        return chosen

    def _value(self, point: GridPoint, surface: AccuracySurface, state: SearchState) -> float:
        """Throughput times the chance of feasibility: the expected worth of a probe."""
        chance = self.feasible_chance(self.predicted(point, surface, state), state)
        return state.candidates[point] * chance

    def predicted(
        self, point: GridPoint, surface: AccuracySurface, state: SearchState
    ) -> float | None:
        """The surface's accuracy at a point; where it has none, the paper's additive rule
        acc(N, s) = acc(N, 0) + acc(1, s) - acc(1, 0) when those three are measured."""
        value = surface.predict(point).value
        if value is not None:
            return value
        parts = (GridPoint(point.n, 0.0), GridPoint(1, point.sparsity), BASELINE)
        if all(p in state.accuracy for p in parts):
            row, column, base = (state.accuracy[p] for p in parts)
            return row + column - base
        return None

    def _probe(
        self,
        row: list[GridPoint],
        taken: set[GridPoint],
        surface: AccuracySurface,
        state: SearchState,
    ) -> GridPoint | None:
        """A row's next probe among its free open points (sorted by s): the largest one more
        likely feasible than not; if all are predicted infeasible, the smallest (it may rule
        the row out); without predictions, the middle one (a binary search)."""
        free = [p for p in row if p not in taken]
        if not free or len(free) < len(row) and len(row) - len(free) >= 1 and len(free) == 0:
            return None
        chances = [
            self.feasible_chance(self.predicted(p, surface, state), state)
            if self.predicted(p, surface, state) is not None
            else None
            for p in free
        ]
        if all(c is None for c in chances):
            # (N, 0) first: it is the teacher every other point of the row is trained from (paid
            # for anyway), and with it the additive rule predicts the whole row
            return free[0] if free[0].sparsity == 0 else free[len(free) // 2]
        likely = [p for p, c in zip(free, chances, strict=True) if c is not None and c >= 0.5]
        return likely[-1] if likely else free[0]

    def feasible_chance(self, predicted: float | None, state: SearchState) -> float:
        """P(accuracy >= threshold) for a predicted accuracy with ``self.uncertainty`` spread
        (logistic); 0.5 where there is no prediction."""
        if predicted is None or state.threshold is None:
            return 0.5
        return 1.0 / (1.0 + math.exp(-(predicted - state.threshold) / self.uncertainty))
