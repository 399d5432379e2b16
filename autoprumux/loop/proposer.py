"""Which (N, s) to train next: a search that uses what is known about this problem.

Facts it relies on (paper section 3.3 and the grids it reports):
- throughput is known before training (a throughput table measures or estimates every point);
  only accuracy is uncertain;
- accuracy falls with N and with s (monotone): if (N, s) misses the threshold, so does every
  point at least as compressed, (N' >= N, s' >= s); if it meets it, so does every point at
  most as compressed. A point that failed to train counts as missing it. Up to the noise of
  one training: a miss by less than ``NEAR_MISS`` (a point, the seed-to-seed spread measured
  on this project's trainings) leaves its neighbours open (the next s of its row, the next N
  of its column), since noise inverts neighbours by that much; it rules out the points beyond;
- the answer is the fastest point that meets the threshold, so a point slower than the best
  verified (trained and feasible) point can never be the answer.

The search keeps the *open* points: untrained, not settled by the monotone inferences above,
faster than the best verified point, and not confidently predicted (< 5% chance) to miss the
threshold; the predictions' spread is calibrated on the recorded full grids so that none of
their predictions would have closed a point that meets the threshold
(:mod:`autoprumux.testing.prediction_spread`). It stops when no point is open: the best
verified point is then the fastest feasible one (given monotonicity). A trained point whose
training stopped early (it could not reach the threshold, :mod:`autoprumux.core.early_stop`)
counts as a miss while its accuracy bound is under the threshold, and as a full miss
(neighbours included): the bound already carries a margin over what the training could still
gain.

Which point to train next (``ProbeRule``):

Every row (a fixed N) offers one probe: the largest open sparsity more likely feasible than not
by the prediction (the accuracy surface, or the paper's additive rule acc(N, s) = acc(N, 0) +
acc(1, s) - acc(1, 0)); the smallest open one if all are predicted to miss; where nothing
predicts, the row's (N, 0) (the teacher every other point of the row is trained from, so paid
for anyway), else the middle one (binary search). Between the rows' probes (``ProbeRule``):

- ``SETTLED_PER_SECOND`` (the default): the probe that settles the most open points per
  predicted second of training (:mod:`autoprumux.loop.costs`: its warm-up and teacher unless
  built, its own phases). With q its chance of feasibility (even odds without a prediction), it
  settles in expectation q x (the open points no faster than it, and those it dominates)
  + (1 - q) x (the open points at least as compressed: a miss rules them out). An unpredicted
  row offers its (N, 0) even when that point is not open (slower than the best verified one):
  untrained, it is the row's cheapest training, and a miss there rules out the row and every
  wider N.
- ``THROUGHPUT_X_CHANCE`` (the rule before costs, kept for comparison): the probe with the
  highest throughput x chance of feasibility, every training counting as one.

With k workers either proposes the k best distinct probes.

Precisions (:mod:`autoprumux.core.precision`): a trained (N, s) model is served in each of the
study's precisions, each a point (N, s, precision) with its own throughput, and all are
measured by one training. Each precision is searched as above on its own points, with the
monotone rules within it (a miss in int8 says nothing of fp32): the accuracy of an untrained
(N, s, precision) is its fp32 prediction plus the precision's delta
(:class:`~autoprumux.core.surface.ServedSurface`), with the spread of both
(``DELTA_SPREAD``); a point is open while any of its precisions is, so the proposer may train
a point because its int8 model could be the answer. A probe of one precision is a training of
its (N, s), and it settles points in every precision: what it settles is summed over them.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoprumux.core.budget import FEASIBILITY_TOLERANCE, NEAR_MISS
from autoprumux.core.grid import BASELINE, GridPoint
from autoprumux.core.precision import Precision
from autoprumux.core.surface import ServedSurface
from autoprumux.loop.costs import CostModel

# below this chance of feasibility a point is not worth training
MIN_CHANCE = 0.05
# logistic spread of a predicted accuracy (fraction): testing.prediction_spread.calibrate_spread
# on studies/results/sst2-tiny-grid*.json, whose largest fall under the truth is 3.9 points
PREDICTION_SPREAD = 0.014
# the logistic spread added for a precision's delta from fp32 where it is predicted, not
# measured: testing.prediction_spread.calibrate_delta_spread on
# studies/results/sst2-tiny-precisions.json, whose largest fall under the truth is 0.69 points
DELTA_SPREAD = 0.003


class ProbeRule(enum.Enum):
    SETTLED_PER_SECOND = "settled-per-second"
    THROUGHPUT_X_CHANCE = "throughput-x-chance"


@dataclass(frozen=True, kw_only=True)
class SearchState:
    """What the proposer knows. ``threshold`` is None until the baseline is measured (for
    budgets relative to it)."""

    candidates: Mapping[GridPoint, float]  # every point that may be trained -> throughput
    accuracy: Mapping[GridPoint, float]  # trained points (mean over repeats), fp32
    failed: frozenset[GridPoint] = frozenset()  # trained and failed for good
    pending: frozenset[GridPoint] = frozenset()  # being trained now
    threshold: float | None = None
    # stopped early: the most each point's accuracy can be (autoprumux.core.early_stop)
    bounds: Mapping[GridPoint, float] = field(default_factory=dict)
    costs: CostModel | None = None  # None: every training costs the same
    # the candidates' models served in the other precisions: (N, s, precision) -> throughput,
    # and the trained ones' figures in them
    served: Mapping[GridPoint, float] = field(default_factory=dict)
    served_accuracy: Mapping[GridPoint, float] = field(default_factory=dict)

    @functools.cached_property
    def precisions(self) -> tuple[Precision, ...]:
        """The precisions searched, fp32 first (read for every probe: computed once)."""
        served = {p.precision for p in self.served}
        return (Precision.FP32, *(p for p in Precision if p in served))

    def throughput(self, point: GridPoint) -> float:
        """The throughput of a candidate in any precision."""
        if point.precision is Precision.FP32:
            return self.candidates[point]
        return self.served[point]

    def is_candidate(self, point: GridPoint) -> bool:
        """Whether ``point`` (any precision) may be the answer."""
        return point in self.candidates or point in self.served

    def measured(self, precision: Precision) -> dict[GridPoint, float]:
        """The trained points' figures in ``precision``, keyed (N, s, precision)."""
        if precision is Precision.FP32:
            return dict(self.accuracy)
        return {p: v for p, v in self.served_accuracy.items() if p.precision is precision}

    def surface(self) -> ServedSurface:
        return ServedSurface().fit(self.accuracy, self.failed, self.served_accuracy)

    def stopped_short(self) -> frozenset[GridPoint]:
        """Points stopped early whose bound is under the threshold: misses."""
        if self.threshold is None:
            return frozenset()
        return frozenset(p for p, b in self.bounds.items() if not self.feasible(b))

    def cost(self, point: GridPoint, building: frozenset[GridPoint] = frozenset()) -> float:
        """Predicted seconds to train ``point`` now (1 without a cost model)."""
        if self.costs is None:
            return 1.0
        return self.costs.predict(point, self.accuracy, self.pending | building, self.bounds)

    def feasible(self, accuracy: float) -> bool:
        assert self.threshold is not None
        return accuracy >= self.threshold - FEASIBILITY_TOLERANCE


@dataclass(frozen=True, kw_only=True)
class Status:
    """The proposer's view of every candidate."""

    best: GridPoint | None  # fastest verified feasible point, in any precision
    # could still beat ``best``; need training to know (of any precision: (N, s, precision))
    open: tuple[GridPoint, ...]
    ruled_out: frozenset[GridPoint] = field(default_factory=frozenset)  # infeasible by inference

    @property
    def done(self) -> bool:
        return not self.open

    @property
    def open_trainings(self) -> tuple[GridPoint, ...]:
        """The (N, s) trainings of the open points."""
        return tuple(sorted({p.trained for p in self.open}))


class Proposer:
    """Monotone, surface-guided search for the fastest feasible point (see module docstring)."""

    def __init__(
        self,
        uncertainty: float = PREDICTION_SPREAD,
        min_chance: float = MIN_CHANCE,
        rule: ProbeRule = ProbeRule.SETTLED_PER_SECOND,
        near_miss: float = NEAR_MISS,
    ) -> None:
        self.uncertainty = uncertainty  # accuracy spread of a prediction (fraction)
        self.min_chance = min_chance
        self.rule = rule
        self.near_miss = near_miss  # a miss by less leaves its neighbours open (fraction)

    def status(self, state: SearchState, surface: ServedSurface | None = None) -> Status:
        """Every candidate's standing, in every precision; ``surface``: the accuracy surface
        already fitted on ``state`` (fitted here when not given)."""
        if state.threshold is None:  # the baseline first, unless it failed for good
            trainable = BASELINE in state.candidates and BASELINE not in state.failed
            return Status(best=None, open=(BASELINE,) if trainable else ())
        verdicts = _Verdicts.every(state, self.near_miss)
        best = max(
            (good for v in verdicts.values() for good in v.good),
            key=lambda p: (state.throughput(p), -p.n, -p.sparsity, p.precision is Precision.FP32),
            default=None,
        )
        floor = state.throughput(best) if best is not None else 0.0
        surface = surface or state.surface()
        ruled_out = set()
        open_points = []
        for point, throughput in (*state.candidates.items(), *state.served.items()):
            verdict = verdicts[point.precision]
            trained = point.trained in state.accuracy or point.trained in state.failed
            if trained or verdict.missed(point):
                continue
            if verdict.rules_out(point):
                ruled_out.add(point)
                continue
            if throughput <= floor:
                continue
            # certified feasible by a more compressed point, yet faster than it: the table is
            # not monotone there (noise, int8), and this point is the answer; it stays open
            # to be trained, not answered untrained
            certain = verdict.certifies(point)
            if not certain and self.chance(point, surface, state) < self.min_chance:
                ruled_out.add(point)  # the surface is confident it misses the threshold
                continue
            open_points.append(point)
        return Status(best=best, open=tuple(sorted(open_points)), ruled_out=frozenset(ruled_out))

    def propose(self, state: SearchState, k: int = 1) -> list[GridPoint]:
        """Up to ``k`` distinct (N, s) to train now (fewer when fewer are open and not
        pending)."""
        surface = state.surface()  # once, for both steps
        status = self.status(state, surface)
        available = [p for p in status.open_trainings if p not in state.pending]
        if not available or k < 1:
            return []
        if state.threshold is None:
            return available[:1]
        # once: every probe's row teacher is checked against them
        verdicts = _Verdicts.every(state, self.near_miss)
        rows: dict[tuple[int, Precision], list[GridPoint]] = {}
        for point in status.open:  # a row: one N in one precision
            rows.setdefault((point.n, point.precision), []).append(point)
        by_cost = self.rule is ProbeRule.SETTLED_PER_SECOND
        chosen: list[GridPoint] = []
        taken = set(state.pending)  # trainings: (N, s)
        while len(chosen) < k:
            probes = [
                p
                for n, precision in sorted(rows)
                if (
                    p := self._probe(
                        sorted(rows[n, precision]), taken, surface, state, verdicts, by_cost
                    )
                )
                is not None
            ]
            if not probes:
                break
            if by_cost:  # the probe that settles the most open points per predicted second
                to_settle = [p for p in status.open if p.trained not in taken]
                building = frozenset(chosen)
                # a probe that costs nothing is an (N, 0) another training builds now: it
                # comes free with that training, so it is not trained on its own
                probes = [p for p in probes if state.cost(p.trained, building) > 0]
                if not probes:
                    break
                probe = max(
                    probes,
                    key=lambda p: (
                        self._settled(p, to_settle, surface, state)
                        / state.cost(p.trained, building),
                        -p.n,
                        p.precision is Precision.FP32,
                    ),
                )
            else:  # the most promising row's probe: throughput x chance of feasibility
                probe = max(
                    probes,
                    key=lambda p: (
                        self._value(p, surface, state),
                        -p.n,
                        p.precision is Precision.FP32,
                    ),
                )
            chosen.append(probe.trained)
            taken.add(probe.trained)
        return chosen

    def _settled(
        self,
        probe: GridPoint,
        to_settle: list[GridPoint],
        surface: ServedSurface,
        state: SearchState,
    ) -> float:
        """Open points that training ``probe``'s (N, s) settles, in expectation over its
        outcome, summed over the precisions it is served in: in each, if it meets the
        threshold, those no faster than it and those it dominates; if it misses, those at
        least as compressed (even odds where nothing predicts it)."""
        settled = 0.0
        for precision in state.precisions:
            served = probe.served(precision)
            if not state.is_candidate(served):
                continue
            speed = state.throughput(served)
            mine = [p for p in to_settle if p.precision is precision]
            if_met = sum(
                1
                for p in mine
                if state.throughput(p) <= speed or (p.n <= probe.n and p.sparsity <= probe.sparsity)
            )
            if_missed = sum(1 for p in mine if p.n >= probe.n and p.sparsity >= probe.sparsity)
            chance = self.chance(served, surface, state)
            settled += chance * if_met + (1 - chance) * if_missed
        return settled

    def _value(self, point: GridPoint, surface: ServedSurface, state: SearchState) -> float:
        """Throughput times the chance of feasibility: the expected worth of a probe."""
        return state.throughput(point) * self.chance(point, surface, state)

    def predicted(
        self, point: GridPoint, surface: ServedSurface, state: SearchState
    ) -> float | None:
        """The surface's accuracy at a point (any precision); where it has none, the paper's
        additive rule acc(N, s) = acc(N, 0) + acc(1, s) - acc(1, 0) when those three are
        measured (in fp32; plus the precision's delta in another)."""
        value = surface.predict(point).value
        if value is not None:
            return value
        trained = point.trained
        parts = (GridPoint(trained.n, 0.0), GridPoint(1, trained.sparsity), BASELINE)
        if not all(p in state.accuracy for p in parts):
            return None
        row, column, base = (state.accuracy[p] for p in parts)
        if point.precision is Precision.FP32:
            return row + column - base
        delta = surface.delta(point)
        return None if delta is None else row + column - base + delta

    def chance(self, point: GridPoint, surface: ServedSurface, state: SearchState) -> float:
        """The chance that ``point`` (any precision) meets the threshold, by its prediction;
        a precision's delta adds its own spread where it is predicted."""
        spread = self.uncertainty
        if point.precision is not Precision.FP32 and point not in state.served_accuracy:
            spread += DELTA_SPREAD
        return self.feasible_chance(self.predicted(point, surface, state), state, spread)

    def _probe(
        self,
        row: list[GridPoint],
        taken: set[GridPoint],
        surface: ServedSurface,
        state: SearchState,
        verdicts: dict[Precision, _Verdicts],
        any_teacher: bool = False,
    ) -> GridPoint | None:
        """A row's next probe among its free open points (sorted by s; one N in one
        precision): the largest one more likely feasible than not; if all are predicted
        infeasible, the smallest (it may rule the row out); without predictions, the row's
        (N, 0) if open (with ``any_teacher``, open or not: see :meth:`_row_teacher`), else
        the middle one (a binary search)."""
        free = [p for p in row if p.trained not in taken]
        if not free:
            return None
        if any_teacher and (
            teacher := self._row_teacher(row, taken, surface, state, verdicts[row[0].precision])
        ):
            return teacher
        chances = [
            None if self.predicted(p, surface, state) is None else self.chance(p, surface, state)
            for p in free
        ]
        if all(c is None for c in chances):
            # (N, 0) first: it is the teacher every other point of the row is trained from (paid
            # for anyway), and with it the additive rule predicts the whole row
            return free[0] if free[0].sparsity == 0 else free[len(free) // 2]
        likely = [p for p, c in zip(free, chances, strict=True) if c is not None and c >= 0.5]
        return likely[-1] if likely else free[0]

    def _row_teacher(
        self,
        row: list[GridPoint],
        taken: set[GridPoint],
        surface: ServedSurface,
        state: SearchState,
        verdicts: _Verdicts,
    ) -> GridPoint | None:
        """The (N, 0) of a row whose open points nothing predicts, even when it is not open
        itself (slower than the best verified point): untrained and unsettled, it is the row's
        cheapest training, and a miss there rules out the row and every wider N."""
        teacher = GridPoint(row[0].n, 0.0, row[0].precision)
        if (
            teacher.trained in taken
            or not state.is_candidate(teacher)
            or not self._unsettled(teacher, state, verdicts)
            or any(
                self.predicted(p, surface, state) is not None for p in row if p.trained not in taken
            )
        ):
            return None
        return teacher

    def _unsettled(self, point: GridPoint, state: SearchState, verdicts: _Verdicts) -> bool:
        """Untrained, and neither ruled out nor certified feasible by a trained point (the
        ``verdicts`` of ``state`` in the point's precision)."""
        if point.trained in state.accuracy or verdicts.missed(point):
            return False
        return not verdicts.rules_out(point) and not verdicts.certifies(point)

    def feasible_chance(
        self, predicted: float | None, state: SearchState, spread: float | None = None
    ) -> float:
        """P(accuracy >= threshold) for a predicted accuracy with a logistic ``spread``
        (``self.uncertainty`` unless given); 0.5 where there is no prediction."""
        if predicted is None or state.threshold is None:
            return 0.5
        spread = self.uncertainty if spread is None else spread
        return 1.0 / (1.0 + math.exp(-(predicted - state.threshold) / spread))


@dataclass(frozen=True)
class _Verdicts:
    """What the trained points say about the threshold."""

    bad: frozenset[GridPoint]  # the misses that rule out every point at least as compressed
    # misses by less than the near miss: they rule out the more compressed points but their
    # neighbours (next s in the row, next N in the column), which noise may lift above them
    near: frozenset[GridPoint]
    good: tuple[GridPoint, ...]  # trained and feasible
    ns: tuple[int, ...]  # the grid's axes, sorted
    sparsities: tuple[float, ...]

    @classmethod
    def every(cls, state: SearchState, near_miss: float) -> dict[Precision, _Verdicts]:
        """The verdicts in each precision of ``state``."""
        return {p: cls.of(state, near_miss, p) for p in state.precisions}

    @classmethod
    def of(
        cls, state: SearchState, near_miss: float, precision: Precision = Precision.FP32
    ) -> _Verdicts:
        """The verdicts of ``state``'s trained points in ``precision`` (it has a threshold),
        on (N, s, precision) points. A training that failed or stopped short fails in every
        precision."""
        # stopped early, and not trained in full since (under a looser threshold): a bound
        # already carries a margin over what the training could still gain, so a full miss
        stopped = {p.served(precision) for p in state.stopped_short() if p not in state.accuracy}
        accuracy = state.measured(precision)
        under = {p for p, a in accuracy.items() if not state.feasible(a)}
        near = {p for p in under if state.feasible(accuracy[p] + near_miss)}
        failed = {p.served(precision) for p in state.failed}
        return cls(
            bad=frozenset(stopped | (under - near) | failed),
            near=frozenset(near),
            good=tuple(p for p, a in accuracy.items() if state.feasible(a)),
            ns=tuple(sorted({p.n for p in state.candidates})),
            sparsities=tuple(sorted({p.sparsity for p in state.candidates})),
        )

    def missed(self, point: GridPoint) -> bool:
        """Whether ``point`` is known to miss the threshold: trained under it, failed or
        stopped short."""
        return point in self.bad or point in self.near

    def rules_out(self, point: GridPoint) -> bool:
        """Whether a miss shows that ``point`` misses too (monotone, up to a near miss)."""
        return any(_dominates(b, point) for b in self.bad) or any(
            _dominates(b, point) and not self._neighbours(b, point) for b in self.near
        )

    def certifies(self, point: GridPoint) -> bool:
        """Whether a trained feasible point shows that ``point`` is feasible too."""
        return any(_dominates(point, g) for g in self.good)

    def _neighbours(self, a: GridPoint, b: GridPoint) -> bool:
        """b is one step more compressed than a: the next s of its row or the next N."""
        return (a.n == b.n and _next_on(self.sparsities, a.sparsity, b.sparsity)) or (
            a.sparsity == b.sparsity and _next_on(self.ns, a.n, b.n)
        )


def _next_on(axis: tuple[float, ...], x: float, y: float) -> bool:
    """y follows x on ``axis``."""
    return x in axis and y in axis and axis.index(y) == axis.index(x) + 1


def _dominates(a: GridPoint, b: GridPoint) -> bool:
    """b is at least as compressed as a (N and s no smaller)."""
    return a.n <= b.n and a.sparsity <= b.sparsity
