"""Running a search's trainings as Ray Tune trials (the only module that touches Ray).

The driver's proposals enter Tune through a ``Searcher`` (``suggest`` / ``on_trial_complete``),
so Tune schedules one trial per proposal, as many at once as the resources allow
(``gpus_per_trial`` and ``cpus_per_trial`` each; ``--gpus`` in all). The driver, and so the
Optuna storage, stay in this process: Ray workers only train.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
from typing import Any

from autoprumux.errors import AutoPruMuxError
from autoprumux.grid import GridPoint
from autoprumux.records import Training, TrialRecord, TrialStatus
from autoprumux.search import FINISHED, SearchDriver, SearchOutcome, Trainer

log = logging.getLogger(__name__)


class ClusterError(AutoPruMuxError):
    """Ray cannot be reached or does not offer what the search asks for."""


def _check_reachable(address: str) -> None:
    """Fail in a second, not after Ray's minutes of retries, when nothing listens there."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except (OSError, ValueError):
        raise ClusterError(
            f"--address {address}: nothing answers there (expected host:port of a "
            "Ray head node, ray://host:port, or auto)"
        ) from None


def start_ray(
    address: str | None, gpus: float, cpus: int | None = None, gpus_per_trial: float = 0.0
) -> None:
    import ray

    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, include_dashboard=False)
        else:
            ray.init(num_cpus=cpus, include_dashboard=False)
    except Exception as err:  # ConnectionError, TimeoutError, RuntimeError from Ray
        raise ClusterError(
            f"--address {address or 'local'}: Ray did not start: "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    offered = ray.cluster_resources().get("GPU", 0.0)
    if gpus > offered:
        ray.shutdown()
        raise ClusterError(f"--gpus {gpus:g}: the Ray cluster offers {offered:g} GPU(s)")
    # a trial runs on one node: its GPUs must fit on the largest one
    largest = max(
        (node["Resources"].get("GPU", 0.0) for node in ray.nodes() if node["Alive"]), default=0.0
    )
    if gpus_per_trial > max(largest, 1.0 if largest else 0.0):
        ray.shutdown()
        raise ClusterError(
            f"--gpus-per-trial {gpus_per_trial:g}: no node of the Ray cluster has that many "
            f"GPUs (the largest has {largest:g})"
        )


def run_ray(
    driver: SearchDriver,
    trainer: Trainer,
    workers: int,
    gpus_per_trial: float,
    cpus_per_trial: float,
    address: str | None = None,
    total_gpus: float = 0.0,
) -> SearchOutcome:
    """Run the search's trainings as Tune trials; starts (or joins) Ray and stops it after."""
    import ray
    from ray import tune
    from ray.tune.search import Searcher

    class ProposerSearcher(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="accuracy", mode="max")
            self.numbers: dict[str, int] = {}

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            suggestion = driver.suggest(1)
            if suggestion == FINISHED:
                return Searcher.FINISHED
            if not suggestion:
                return None  # wait for a running trial (of this search or another) to finish
            number, point = suggestion[0]
            self.numbers[trial_id] = number
            return {"n": point.n, "sparsity": point.sparsity}

        def on_trial_complete(
            self, trial_id: str, result: dict | None = None, error: bool = False
        ) -> None:  # type: ignore[type-arg]
            number = self.numbers.pop(trial_id)
            point = driver.pending[number]
            if error or not result or "status" not in result:
                training = Training.failed(
                    driver.config.task, point, "the Ray trial raised an error (see Ray's logs)"
                )
            else:
                training = _training_from_result(driver.config.task, point, result)
            driver.complete(number, training)

    start_ray(address, total_gpus, gpus_per_trial=gpus_per_trial)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, trainer=trainer),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ProposerSearcher(),
                num_samples=len(driver.config.grid) * (driver.config.max_retries + 1),
                max_concurrent_trials=workers,
            ),
            run_config=tune.RunConfig(
                name=driver.config.study_name,
                storage_path=tempfile.mkdtemp(prefix="autoprumux-ray-"),
                verbose=0,
            ),
        )
        with contextlib.redirect_stdout(sys.stderr):  # Tune's tables; stdout stays for --json
            tuner.fit()
        return driver.outcome()
    finally:
        ray.shutdown()
        driver.close()  # its trials still running, if Tune stopped early, are interrupted


def _trainable(config: dict[str, Any], trainer: Trainer) -> dict[str, Any]:
    """A Tune trial: train one point, return its record as the final result (the by-products'
    records as one JSON text: Tune flattens nested results into metrics)."""
    point = GridPoint(int(config["n"]), float(config["sparsity"]))
    try:
        # Ray forwards the trial's output to the driver, whose stdout is kept for --json: the
        # trial's progress lines and anything a library prints go to stderr
        with contextlib.redirect_stdout(sys.stderr):
            training = trainer(point)
    except Exception as err:  # a failed training is data, not a crashed trial
        return {"status": "failed", "reason": f"{type(err).__name__}: {err}".splitlines()[0][:500]}
    return {
        **_row(training.record),
        "by_products": json.dumps([_row(r) for r in training.by_products]),
    }


def _row(record: TrialRecord) -> dict[str, Any]:
    return {
        k: (v.value if isinstance(v, TrialStatus) else v)
        for k, v in record.to_row().items()
        if v is not None
    }


def _training_from_result(task: str, point: GridPoint, result: dict[str, Any]) -> Training:
    from autoprumux.results_io import record_from_row

    row = {**result, "task": task, "n": point.n, "sparsity": point.sparsity}
    by_products = [
        record_from_row({**r, "task": task}, "Ray trial result", i)
        for i, r in enumerate(json.loads(result.get("by_products", "[]")), start=2)
    ]
    return Training(record_from_row(row, "Ray trial result", 1), tuple(by_products))
