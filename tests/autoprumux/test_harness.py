"""The timing harness on fake models whose cost is known exactly (a fake clock)."""

import pytest

from autoprumux.core.harness import Timing, time_round_robin


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_model(clock, seconds_per_pass, examples, first_extra=0.0, calls=None, name=None):
    """A pass that 'takes' seconds_per_pass on the fake clock; the very first call more."""
    state = {"calls": 0}

    def run():
        clock.now += seconds_per_pass + (first_extra if state["calls"] == 0 else 0.0)
        state["calls"] += 1
        if calls is not None:
            calls.append(name)
        return examples

    return run


def test_rates_are_examples_over_seconds():
    clock = FakeClock()
    timings = time_round_robin(
        {"a": fake_model(clock, 0.02, 64), "b": fake_model(clock, 0.5, 128)},
        passes=4,
        warmup_passes=0,
        clock=clock,
    )
    assert timings["a"].rates == pytest.approx((3200.0,) * 4) and len(timings["a"].rates) == 4
    assert timings["b"].median == pytest.approx(256.0)
    assert timings["a"].cv == pytest.approx(0.0, abs=1e-9)


def test_the_first_timed_pass_is_discarded():
    clock = FakeClock()
    # no warm-up: the slow first call (a cold cache, say) lands in the discarded pass
    timings = time_round_robin(
        {"a": fake_model(clock, 0.01, 10, first_extra=0.09)}, passes=3, warmup_passes=0, clock=clock
    )
    assert timings["a"].discarded == pytest.approx(100.0)
    assert timings["a"].rates == pytest.approx((1000.0, 1000.0, 1000.0))


def test_warmup_is_untimed_and_passes_are_interleaved():
    clock, calls = FakeClock(), []
    runs = {name: fake_model(clock, 0.01, 1, calls=calls, name=name) for name in ("a", "b")}
    synced = []
    time_round_robin(runs, passes=2, warmup_passes=2, clock=clock, sync=lambda: synced.append(1))
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up, then round-robin
    assert len(synced) == 2 * 6  # before and after every timed pass


def test_interval_and_spread():
    timing = Timing((90.0, 100.0, 110.0), discarded=10.0)
    assert (timing.low, timing.median, timing.high) == (90.0, 100.0, 110.0)
    assert timing.cv == pytest.approx(0.1)


def test_progress_counts_passes():
    clock, seen = FakeClock(), []
    time_round_robin(
        {"a": fake_model(clock, 0.01, 1)},
        passes=2,
        warmup_passes=0,
        clock=clock,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
