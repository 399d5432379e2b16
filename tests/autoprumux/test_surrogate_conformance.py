"""What every surrogate model promises; a new model plugs in by one entry in MODELS."""

import pytest

from autoprumux.core.grid import GridPoint as P
from autoprumux.core.surface import AccuracySurface
from autoprumux.core.surrogate import Source
from autoprumux.core.throughput import ThroughputModel

MODELS = [AccuracySurface, ThroughputModel]
MEASURED = {
    P(1, 0): 0.9,
    P(1, 0.5): 0.85,
    P(1, 0.9): 0.8,
    P(2, 0): 0.88,
    P(2, 0.5): 0.83,
    P(2, 0.9): 0.75,
}


@pytest.fixture(params=MODELS, ids=lambda cls: cls.__name__)
def model_class(request):
    return request.param


def test_fit_returns_self_and_keeps_hyperparameters_only_in_init(model_class):
    model = model_class()
    assert not [k for k in vars(model) if k.endswith("_")]
    assert model.fit(MEASURED) is model
    assert [k for k in vars(model) if k.endswith("_")]


def test_exact_at_measured_points(model_class):
    model = model_class().fit(MEASURED)
    for point, value in MEASURED.items():
        assert model.predict(point).value == value
        assert model.predict(point).source is Source.MEASURED


def test_never_extrapolates(model_class):
    model = model_class().fit(MEASURED)
    for point in (P(3, 0.5), P(1, 0.95), P(2, 0.95)):
        assert model.predict(point).value is None


def test_failed_points_have_no_value(model_class):
    model = model_class().fit(MEASURED, failed=[P(1, 0.95)])
    assert model.predict(P(1, 0.95)).source is Source.FAILED
    assert model.predict(P(1, 0.95)).value is None


def test_interpolates_between_measured_points_within_their_range(model_class):
    prediction = model_class().fit(MEASURED).predict(P(1, 0.7))
    assert prediction.source is Source.INTERPOLATED
    assert 0.8 <= prediction.value <= 0.85


def test_does_not_mutate_its_input(model_class):
    measured = dict(MEASURED)
    model_class().fit(measured, failed=[P(2, 0.95)])
    assert measured == MEASURED
