"""What every surrogate model of (N, s) shares: predictions that say where they come from.

A surrogate is fitted on measured values (and the points that failed to train) and predicts
any point: exactly the measurement where there is one, no value where the point failed, and
otherwise whatever its interpolation rule can vouch for. Estimator-style: hyperparameters in
``__init__``, ``fit`` returns self, learned state ends in ``_``.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Self

from autoprumux.core.grid import GridPoint
from autoprumux.core.precision import Precision


class Source(enum.Enum):
    """Where a predicted value comes from."""

    MEASURED = "measured"  # the point was trained and measured: the value is the measurement
    INTERPOLATED = "interpolated"  # interpolated between measured points
    FAILED = "failed"  # the point was trained and failed: no value
    UNKNOWN = "unknown"  # outside the measured hull, or next to a failed point: no value


@dataclass(frozen=True)
class Prediction:
    value: float | None  # None unless source is MEASURED or INTERPOLATED
    source: Source

    @property
    def known(self) -> bool:
        return self.value is not None

    def require(self) -> float:
        """The value of a prediction known to have one (a feasible candidate's)."""
        if self.value is None:
            raise ValueError(f"a {self.source.value} prediction has no value")
        return self.value


class GridModel(abc.ABC):
    """Base of the surrogates: measured and failed points are handled here."""

    def fit(self, values: Mapping[GridPoint, float], failed: Iterable[GridPoint] = ()) -> Self:
        self.measured_ = dict(values)
        self.failed_ = frozenset(failed) - self.measured_.keys()
        self._fit_rule()
        return self

    def predict(self, point: GridPoint) -> Prediction:
        if point in self.measured_:
            return Prediction(self.measured_[point], Source.MEASURED)
        if point in self.failed_:
            return Prediction(None, Source.FAILED)
        value = self.interpolate(point.n, point.sparsity)
        if value is None:
            return Prediction(None, Source.UNKNOWN)
        return Prediction(value, Source.INTERPOLATED)

    @abc.abstractmethod
    def _fit_rule(self) -> None:
        """Build the interpolation state from ``measured_`` and ``failed_``."""

    @abc.abstractmethod
    def interpolate(self, n: float, sparsity: float) -> float | None:
        """The model's rule at (n, s); None where it cannot vouch for a value."""


class ByPrecision:
    """One surrogate per precision, each fitted on its own precision's points as plain (N, s):
    no rule crosses precisions. A point that failed to train fails in every precision."""

    def __init__(self, model: Callable[[], GridModel]) -> None:
        self.model = model

    def fit(self, values: Mapping[GridPoint, float], failed: Iterable[GridPoint] = ()) -> Self:
        failed = frozenset(p.trained for p in failed)
        by_precision: dict[Precision, dict[GridPoint, float]] = {}
        for point, value in values.items():
            by_precision.setdefault(point.precision, {})[point.trained] = value
        self.models_ = {
            precision: self.model().fit(measured, failed)
            for precision, measured in by_precision.items()
        }
        return self

    def predict(self, point: GridPoint) -> Prediction:
        model = self.models_.get(point.precision)
        if model is None:
            return Prediction(None, Source.UNKNOWN)
        return model.predict(point.trained)
