"""Trainings stopped early in the search: the stop rule a trainer gets, a stop as a miss (the
monotone rules), its record in the Optuna study, a looser budget later, and --no-early-stop."""

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from autoprumux.cli.main import main
from autoprumux.core.budget import Budget, BudgetKind
from autoprumux.core.early_stop import MARGINS, StopRule
from autoprumux.core.grid import BASELINE, Grid, GridPoint
from autoprumux.core.recommender import Exclusion, Recommender
from autoprumux.core.records import Training, TrialRecord, TrialStatus
from autoprumux.core.throughput import ThroughputTable
from autoprumux.files.results_io import read_results
from autoprumux.loop.driver import (
    EventKind,
    SearchConfig,
    SearchDriver,
    StopReason,
    run_local,
)
from autoprumux.loop.optuna_store import OptunaStore
from autoprumux.loop.trial_mapping import COST_AND_STOP_FIELDS
from autoprumux.session import search_session

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "studies" / "results" / "synthetic-sst2.csv"
GRID = Grid((1, 2, 4), (0.0, 0.5, 0.8))
# examples per second; faster with N and with s
TABLE = ThroughputTable(
    {
        GridPoint(1, 0.0): 1000.0,
        GridPoint(1, 0.5): 1800.0,
        GridPoint(1, 0.8): 2500.0,
        GridPoint(2, 0.0): 1900.0,
        GridPoint(2, 0.5): 3400.0,
        GridPoint(2, 0.8): 4700.0,
        GridPoint(4, 0.0): 3500.0,
        GridPoint(4, 0.5): 6000.0,
        GridPoint(4, 0.8): 8500.0,
    }
)
# dev accuracy at the end of each training (monotone: lower with N and with s)
TRUTH = {
    GridPoint(1, 0.0): 0.93,
    GridPoint(1, 0.5): 0.925,
    GridPoint(1, 0.8): 0.91,
    GridPoint(2, 0.0): 0.92,
    GridPoint(2, 0.5): 0.915,
    GridPoint(2, 0.8): 0.87,
    GridPoint(4, 0.0): 0.86,
    GridPoint(4, 0.5): 0.85,
    GridPoint(4, 0.8): 0.80,
}
# budget 0.03: threshold 0.93 - 0.03 = 0.90; feasible (1, *), (2, 0), (2, 0.5): best (2, 0.5)
# budget 0.10: threshold 0.83; (2, 0.8) and (4, 0.5) feasible too: best (4, 0.5)
STOP_DROP, STOP_MARGIN = 0.05, 0.04  # a check sees truth - 0.05; bound truth - 0.01


def evidence_of(point: GridPoint) -> dict[str, float | int]:
    return {
        "stop_step": 25,
        "stop_accuracy": TRUTH[point] - STOP_DROP,
        "stop_margin": STOP_MARGIN,
    }


class FakeTrainer:
    """Answers from TRUTH as a real training would: with a stop rule, a model (the (N, 0)
    teacher, then the point's own) whose check is hopeless stops the training; an (N, s)
    training's teacher comes as a by-product."""

    def __init__(self) -> None:
        self.calls: list[tuple[GridPoint, StopRule | None]] = []
        self.stopped: list[int] = []  # indexes into calls of the trainings that stopped

    def __call__(self, point: GridPoint, stop: StopRule | None) -> Training:
        self.calls.append((point, stop))
        teacher = GridPoint(point.n, 0.0)
        costs = {
            "warmup_s": 10.0 if point.n > 1 else 0.0,
            "teacher_s": 20.0,
            "own_s": 5.0 if point.sparsity > 0 else 0.0,
        }
        wall = sum(costs.values())
        for model in dict.fromkeys((teacher, point)):  # the teacher's fine-tuning first
            if stop is None or not stop.hopeless(TRUTH[model] - STOP_DROP, STOP_MARGIN):
                continue
            self.stopped.append(len(self.calls) - 1)
            record = TrialRecord(
                task="sst2",
                n=point.n,
                sparsity=point.sparsity,
                status=TrialStatus.STOPPED,
                reason=f"stopped early: {model}",
                wall_time_s=wall,
                **costs,
                **evidence_of(model),
            )
            by_products = ()
            if model == teacher and point != teacher:  # the teacher stopped: a miss too
                by_products = (
                    TrialRecord(
                        task="sst2",
                        n=teacher.n,
                        sparsity=0.0,
                        status=TrialStatus.STOPPED,
                        reason=f"stopped early: {model}",
                        **evidence_of(model),
                    ),
                )
            elif point != teacher:
                by_products = (complete(teacher),)
            return Training(record, by_products)
        by_products = (complete(teacher),) if point != teacher else ()
        return Training(complete(point, wall_time_s=wall, **costs), by_products)


def complete(point: GridPoint, **extra) -> TrialRecord:
    return TrialRecord(
        task="sst2",
        n=point.n,
        sparsity=point.sparsity,
        accuracy=TRUTH[point],
        throughput=TABLE.throughput[point],
        **extra,
    )


def driver_for(tmp_path, budget=0.03, name="s", events=None, max_trials=20, **config):
    """A search of GRID; the cap stops a search that would train points again and again."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    budget = Budget(BudgetKind.ABSOLUTE, budget)
    cfg = SearchConfig(
        study_name=name,
        task="sst2",
        grid=GRID,
        budget=budget,
        storage_url=url,
        workers=1,
        max_trials=max_trials,
        **config,
    )
    on_event = events.append if events is not None else None
    return SearchDriver(cfg, TABLE, OptunaStore(url, name, GRID, "sst2"), on_event=on_event)


def at_least_as_compressed(q: GridPoint, p: GridPoint) -> bool:
    return q.n >= p.n and q.sparsity >= p.sparsity


def test_trainers_get_the_stop_rule_once_the_baseline_is_measured(tmp_path):
    trainer = FakeTrainer()
    driver = driver_for(tmp_path)
    assert driver.stop_rule() is None  # no baseline yet: no threshold to stop by
    outcome = run_local(driver, trainer, 1)
    assert trainer.calls[0] == (BASELINE, None)
    assert len(trainer.calls) > 1
    for _, stop in trainer.calls[1:]:
        assert isinstance(stop, StopRule)
        assert stop.threshold == pytest.approx(0.90)
        assert stop.margins == tuple(sorted(MARGINS.items()))
    assert outcome.stop_reason is StopReason.ANSWER_KNOWN and outcome.best == GridPoint(2, 0.5)
    assert outcome.decision.recommendations[0].point == GridPoint(2, 0.5)


def test_the_threshold_suggest_found_is_not_read_again_for_its_trainings(tmp_path, monkeypatch):
    driver = driver_for(tmp_path)
    train(driver, complete(BASELINE, wall_time_s=30.0))
    assert driver.suggest(1).start
    monkeypatch.setattr(driver, "_read", lambda: pytest.fail("the study was read again"))
    assert driver.stop_rule() == StopRule(threshold=pytest.approx(0.90))
    driver.close()


def test_a_stopped_point_and_every_more_compressed_one_are_never_trained(tmp_path):
    trainer, events = FakeTrainer(), []
    outcome = run_local(driver_for(tmp_path, events=events), trainer, 1)
    assert outcome.stop_reason is StopReason.ANSWER_KNOWN
    assert trainer.stopped, "some doomed point (N = 4 at least) must have been tried"
    for index in trainer.stopped:
        stopped = trainer.calls[index][0]
        later = [p for p, _ in trainer.calls[index + 1 :]]
        assert not [q for q in later if at_least_as_compressed(q, stopped)]
    # a stopped training is a miss in the events, in the records and in the decision
    stopped_points = {trainer.calls[i][0] for i in trainer.stopped}
    assert {e.point for e in events if e.kind is EventKind.MISSED} == stopped_points
    records = {r.point: r for r in outcome.records if r.status is TrialStatus.STOPPED}
    assert stopped_points <= records.keys()
    for point in stopped_points:
        assert records[point].stop_step == 25 and records[point].stop_margin == STOP_MARGIN
    recommended = {r.point for r in outcome.decision.recommendations}
    assert not recommended & records.keys()
    assert all(TRUTH[p] >= 0.90 for p in recommended)
    # nothing infeasible was trained to its end: a hopeless training always stopped
    assert all(TRUTH[r.point] >= 0.90 for r in outcome.records if r.accuracy is not None)


def test_without_early_stop_the_trainer_never_gets_a_rule(tmp_path):
    trainer = FakeTrainer()
    outcome = run_local(driver_for(tmp_path, early_stop=False), trainer, 1)
    assert len(trainer.calls) > 1 and all(stop is None for _, stop in trainer.calls)
    assert not trainer.stopped
    assert not [r for r in outcome.records if r.status is TrialStatus.STOPPED]
    assert outcome.stop_reason is StopReason.ANSWER_KNOWN and outcome.best == GridPoint(2, 0.5)
    assert driver_for(tmp_path, early_stop=False, name="other").stop_rule() is None


def train(driver, record, *by_products):
    """One training recorded as run_local would: started, then completed."""
    number = driver.store.start(record.point)
    driver.pending[number] = record.point
    driver.complete(number, Training(record, by_products))
    return number


def stopped_record(point, evidence_from=None, **extra):
    return TrialRecord(
        task="sst2",
        n=point.n,
        sparsity=point.sparsity,
        status=TrialStatus.STOPPED,
        reason="stopped early",
        **evidence_of(evidence_from or point),
        **extra,
    )


def test_a_stopped_teacher_rules_its_row_out_and_is_recorded_free(tmp_path):
    import optuna

    events = []
    driver = driver_for(tmp_path, events=events)
    train(driver, complete(BASELINE, wall_time_s=30.0))
    assert driver.stop_rule() == StopRule(threshold=pytest.approx(0.90))
    # training (4, 0.5) stopped in its (4, 0) teacher's fine-tuning: both are misses
    own = stopped_record(
        GridPoint(4, 0.5),
        evidence_from=GridPoint(4, 0.0),
        wall_time_s=40.0,
        warmup_s=10.0,
        teacher_s=30.0,
        own_s=0.0,
    )
    number = train(driver, own, stopped_record(GridPoint(4, 0.0)))
    assert [(e.kind, e.point) for e in events[-2:]] == [
        (EventKind.MISSED, GridPoint(4, 0.5)),
        (EventKind.FREE, GridPoint(4, 0.0)),
    ]
    state = driver.state()
    # bounds: 0.86 - 0.05 + 0.04 = 0.85 < 0.90
    assert state.bounds == {
        GridPoint(4, 0.0): pytest.approx(0.85),
        GridPoint(4, 0.5): pytest.approx(0.85),
    }
    assert state.stopped_short() == {GridPoint(4, 0.0), GridPoint(4, 0.5)}
    status = driver.proposer.status(state)
    assert not [p for p in status.open if p.n == 4]
    assert GridPoint(4, 0.8) in status.ruled_out
    proposed = driver.proposer.propose(state, 9)
    assert proposed and not [p for p in proposed if p.n == 4]
    # the study holds both as PRUNED trials with their evidence; the teacher is free
    stored = optuna.load_study(study_name="s", storage=driver.config.storage_url)
    pruned = {
        (t.params["n"], t.params["sparsity"]): t
        for t in stored.trials
        if t.state == optuna.trial.TrialState.PRUNED
    }
    assert pruned.keys() == {(4, 0.0), (4, 0.5)}
    assert pruned[(4, 0.0)].user_attrs["from_trial"] == number
    assert pruned[(4, 0.5)].user_attrs["stop_accuracy"] == pytest.approx(0.81)
    assert pruned[(4, 0.5)].user_attrs["teacher_s"] == 30.0
    outcome = driver.outcome()
    assert (outcome.trainings_total, outcome.free_total) == (2, 1)


def test_a_stopped_record_round_trips_through_the_store(tmp_path):
    driver = driver_for(tmp_path)
    train(driver, complete(BASELINE))
    own = stopped_record(
        GridPoint(2, 0.8), wall_time_s=35.0, warmup_s=10.0, teacher_s=20.0, own_s=5.0
    )
    train(driver, own)
    driver.close()
    again = OptunaStore(driver.config.storage_url, "s", GRID, "sst2")
    try:
        records = [r for _, r in again.records() if r.status is TrialStatus.STOPPED]
    finally:
        again.close()
    # complete() adds the GPU-hours: 35 s x 0 GPUs per trial
    assert records == [replace(own, gpu_hours=0.0)]
    (read,) = records
    assert {name: getattr(read, name) for name in COST_AND_STOP_FIELDS} == {
        "warmup_s": 10.0,
        "teacher_s": 20.0,
        "own_s": 5.0,
        "stop_step": 25,
        "stop_accuracy": pytest.approx(0.82),
        "stop_margin": 0.04,
    }
    assert read.accuracy_bound == pytest.approx(0.86)


def test_a_point_stopped_short_is_never_recommended(tmp_path):
    driver = driver_for(tmp_path)
    for point, accuracy in [
        (BASELINE, 0.93),
        (GridPoint(1, 0.8), 0.92),
        (GridPoint(4, 0.0), 0.91),
        (GridPoint(4, 0.8), 0.905),
    ]:
        train(driver, replace(complete(point), accuracy=accuracy))
    train(driver, stopped_record(GridPoint(4, 0.5)))  # bound 0.84 < 0.90
    decision = driver.outcome().decision
    recommended = [r.point for r in decision.recommendations]
    assert GridPoint(4, 0.5) not in recommended
    (candidate,) = [c for c in decision.candidates if c.point == GridPoint(4, 0.5)]
    assert candidate.exclusion is Exclusion.STOPPED_SHORT
    # without the stop the surface would rank it second, between its measured neighbours
    observed, _, _ = driver.observations()
    assert observed.bounds == {GridPoint(4, 0.5): pytest.approx(0.84)}
    unbounded = replace(observed, bounds={})
    plain = Recommender(3).fit("sst2", unbounded, TABLE).recommend(driver.config.budget)
    assert [r.point for r in plain.recommendations][:2] == [GridPoint(4, 0.8), GridPoint(4, 0.5)]
    # the report of the study says the same, at this budget and at every budget of its table
    # whose threshold is above the bound
    driver.close()
    from autoprumux.report.data import recommendations
    from autoprumux.report.sources import from_storage

    data = replace(
        from_storage(driver.config.storage_url, "s", driver.config.budget, None), table=TABLE
    )
    rows = {round(row.budget, 3): [t["point"] for t in row.top] for row in recommendations(data)}
    assert rows[0.03] == recommended
    assert GridPoint(4, 0.5) not in rows[0.08]  # threshold 0.85 > 0.84
    assert GridPoint(4, 0.5) in rows[0.1]  # threshold 0.83: the bound says nothing


def test_a_looser_budget_later_may_train_a_stopped_point_again(tmp_path):
    first = FakeTrainer()
    run_local(driver_for(tmp_path, budget=0.03), first, 1)
    stopped_first = {first.calls[i][0] for i in first.stopped}
    assert stopped_first & {GridPoint(4, 0.0), GridPoint(4, 0.5)}
    # budget 0.10: threshold 0.83, over which the N = 4 bounds (0.85, 0.84) are
    driver = driver_for(tmp_path, budget=0.10)
    state = driver.state()
    assert state.threshold == pytest.approx(0.83)
    assert not state.stopped_short() & {GridPoint(4, 0.0), GridPoint(4, 0.5)}
    status = driver.proposer.status(state)
    assert GridPoint(4, 0.5) not in status.ruled_out
    assert driver.stop_rule().threshold == pytest.approx(0.83)
    second = FakeTrainer()
    outcome = run_local(driver, second, 1)
    trained = [p for p, _ in second.calls]
    assert GridPoint(4, 0.5) in trained
    assert all(stop.threshold == pytest.approx(0.83) for _, stop in second.calls)
    assert outcome.stop_reason is StopReason.ANSWER_KNOWN and outcome.best == GridPoint(4, 0.5)
    assert outcome.decision.recommendations[0].point == GridPoint(4, 0.5)


def best_of_the_replayed_table(budget):
    """The fastest complete row of the replayed table within ``budget`` of its (1, 0)."""
    rows = [r for r in read_results(SYNTHETIC).for_task("sst2") if r.accuracy is not None]
    baseline = next(r.accuracy for r in rows if r.point == BASELINE)
    feasible = [r for r in rows if r.accuracy >= baseline - budget - 1e-9]
    return max(feasible, key=lambda r: r.throughput).point


def cli_args(storage, *extra):
    return [
        "search",
        "--study",
        str(ROOT / "studies" / "sst2.toml"),
        "--budget",
        "0.03",
        "--trainer",
        f"replay:{SYNTHETIC}",
        "--storage",
        storage,
        "--executor",
        "local",
        "--json",
        *extra,
    ]


@pytest.mark.parametrize(("flag", "early_stop"), [((), True), (("--no-early-stop",), False)])
def test_cli_early_stop_flag_reaches_the_request(tmp_path, monkeypatch, flag, early_stop):
    requests = []

    def capture(session, plan=None):
        requests.append(session.request)
        # what the CLI reads of a result: what it prints, and why it stopped (its exit code)
        return SimpleNamespace(text="", document={}, stop_reason=StopReason.ANSWER_KNOWN)

    monkeypatch.setattr(search_session.SearchSession, "run", capture)
    assert main(cli_args(f"sqlite:///{tmp_path / 'cli.db'}", *flag)) == 0
    (request,) = requests
    assert request.early_stop is early_stop


def test_cli_search_without_early_stop_runs_a_replay(tmp_path, monkeypatch, capsys):
    seen = []
    real_run_local = search_session.run_local

    def spy(driver, trainer, workers):
        def spied(point, stop):
            seen.append((driver.config.early_stop, stop))
            return trainer(point, stop)

        return real_run_local(driver, spied, workers)

    monkeypatch.setattr(search_session, "run_local", spy)
    assert main(cli_args(f"sqlite:///{tmp_path / 'off.db'}", "--no-early-stop")) == 0
    document = json.loads(capsys.readouterr().out)
    best = GridPoint(document["best"]["n"], document["best"]["sparsity"])
    assert best == best_of_the_replayed_table(0.03)
    assert document["trainings_this_run"] == len(seen) > 1
    assert all(flag is False and stop is None for flag, stop in seen)
    # the same search with early stopping: the rule comes after the baseline
    seen.clear()
    assert main(cli_args(f"sqlite:///{tmp_path / 'on.db'}")) == 0
    again = json.loads(capsys.readouterr().out)
    assert GridPoint(again["best"]["n"], again["best"]["sparsity"]) == best
    assert seen[0] == (True, None)
    assert all(flag and stop.threshold == pytest.approx(0.90) for flag, stop in seen[1:])
