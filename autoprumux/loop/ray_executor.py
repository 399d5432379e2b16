"""Running a search's trainings as Ray Tune trials: the Ray adapter (imported only when a
search runs on Ray).

The driver's proposals enter Tune through a ``Searcher`` (``suggest`` / ``on_trial_complete``),
so Tune schedules one trial per proposal, as many at once as the cluster's nodes fit
(``gpus_per_trial`` and ``cpus_per_trial`` each). The driver, and so the Optuna storage, stay
in this process: Ray workers only train.

On a cluster of several nodes a trial runs wherever Ray places it and reads the study file
and writes its model by path, so the study's folder must be on storage every node mounts at
the same path; :func:`check_nodes_share` refuses a cluster where it is not, before training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray._private.utils as ray_utils
from ray import tune
from ray.tune.search import Searcher
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from autoprumux.core.early_stop import StopRule
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import Training, TrialRecord, TrialStatus
from autoprumux.files.atomic import write_text_atomic
from autoprumux.files.results_io import record_from_row
from autoprumux.loop.driver import SearchDriver, SearchOutcome
from autoprumux.loop.ray_address import (
    ClusterError,
    ClusterLost,
    RayTarget,
    answers,
    check_reachable,
)
from autoprumux.loop.ray_auth import token_available
from autoprumux.loop.trainer_contract import TrainFunction, WorkerPaths
from autoprumux.loop.trial_owner import process_runs


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """What the joined (or started) Ray cluster offers, node by node (alive nodes only); the
    trials that fit on it are ``autoprumux.session.sizing.size_trials``'s."""

    node_cpus: tuple[float, ...]
    node_gpus: tuple[float, ...]

    @property
    def gpus(self) -> float:
        return sum(self.node_gpus)


def _exit_quietly_on_sigterm() -> None:
    """Runs in every worker of the search (Ray's ``worker_process_setup_hook``). Ray stops a
    job's workers with SIGTERM when the search ends, and the handler its worker loop installs
    raises SystemExit wherever the worker is, which prints a traceback (from a weakref callback,
    say) after a run that went well. The trial's results are reported by then: exit at once.
    The worker loop installs its handler after this hook runs, so the hook replaces the
    function it installs it with (Ray < 3, pinned, names it ``set_sigterm_handler``)."""

    def install(ray_handler: object) -> None:  # Ray's handler: replaced by ours
        signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))

    if hasattr(ray_utils, "set_sigterm_handler"):
        ray_utils.set_sigterm_handler = install
    install(None)


def start_ray(target: RayTarget) -> Cluster:
    """Join the cluster ``target`` names (or start a Ray of the search's own: "local", which
    neither RAY_ADDRESS nor a `ray start` of this machine redirects) and say what it offers."""
    check_reachable(target)
    quiet = {"worker_process_setup_hook": _exit_quietly_on_sigterm}
    address = target.address
    try:
        ray.init(address=address or "local", include_dashboard=False, runtime_env=quiet)
    except Exception as err:  # ConnectionError, TimeoutError, RuntimeError from Ray
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = (
            "; a cluster started by `ray start` wants its token: copy it from the head "
            "(`ray get-auth-token` there) to ~/.ray/auth_token or set RAY_AUTH_TOKEN"
            if address and not token_available()
            else "; check that RAY_AUTH_TOKEN (or ~/.ray/auth_token) holds the head's token"
            if address
            else ""
        )
        where = f"{target.given_by} {address}" if address else "a local Ray"
        raise ClusterError(f"{where}: Ray did not start: {why}{hint}") from None
    nodes = _alive_nodes()
    return Cluster(
        node_cpus=tuple(float(n["Resources"].get("CPU", 0.0)) for n in nodes),
        node_gpus=tuple(float(n["Resources"].get("GPU", 0.0)) for n in nodes),
    )


def _alive_nodes() -> list[dict[str, Any]]:
    """The live nodes of the joined cluster, as Ray describes them (NodeID, Alive, Resources,
    NodeManagerAddress, ...)."""
    # Ray leaves ray.nodes unannotated
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [node for node in nodes if node["Alive"]]


def check_cluster(
    cluster: Cluster, gpus: float, gpus_per_trial: float, cpus_per_trial: float
) -> None:
    """Refuse GPU and CPU counts the cluster cannot give, which Tune would wait for forever
    (Ray is shut down by the caller)."""
    # a trial runs on one node: its cores must fit on the largest one
    most = max(cluster.node_cpus, default=0.0)
    if cpus_per_trial > most:
        raise ClusterError(
            f"--cpus-per-trial {cpus_per_trial:g}: no node of the Ray cluster has that many "
            f"cores (the largest has {most:g})"
        )
    if gpus > cluster.gpus:
        raise ClusterError(f"--gpus {gpus:g}: the Ray cluster offers {cluster.gpus:g} GPU(s)")
    # a trial runs on one node: its GPUs must fit on the largest one
    largest = max(cluster.node_gpus, default=0.0)
    if gpus_per_trial > max(largest, 1.0 if largest else 0.0):
        raise ClusterError(
            f"--gpus-per-trial {gpus_per_trial:g}: no node of the Ray cluster has that many "
            f"GPUs (the largest has {largest:g})"
        )


def _missing_on_this_node(reads: dict[str, int], probes: dict[str, str]) -> list[str]:
    """Runs on every node: the paths it does not see as the driver does (a read file of
    another size, or a written folder without the driver's probe file)."""
    missing = [path for path, size in reads.items() if not _has_size(Path(path), size)]
    for path, token in probes.items():
        probe = Path(path)
        if not (probe.is_file() and probe.read_text() == token):
            missing.append(str(probe.parent))
    return missing


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def check_nodes_share(paths: WorkerPaths, target: RayTarget) -> dict[str, str]:
    """Refuse, before any training, a cluster where a node does not see the trainer's files
    and folders at the driver's paths (trials read the study there and write their models
    where the driver records them). Returns {node id: address} of the nodes checked."""
    token = uuid.uuid4().hex
    reads = {path: Path(path).stat().st_size for path in paths.reads}
    probes = {}
    for folder in paths.writes:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe = Path(folder) / f".autoprumux-node-check-{token}"
        write_text_atomic(probe, token)
        probes[str(probe)] = token
    nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in _alive_nodes()}
    check = ray.remote(num_cpus=0)(_missing_on_this_node)
    try:
        answers = ray.get(
            [
                check.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                ).remote(reads, probes)
                for node in nodes
            ],
            timeout=120,
        )
    finally:
        for written in probes:
            Path(written).unlink(missing_ok=True)
    for (node, host), missing in zip(nodes.items(), answers, strict=True):
        if missing:
            raise ClusterError(
                f"{target.given_by}: node {host} ({node[:8]}) does not see {missing[0]} as this "
                "machine does: the study's folder (its file, artifacts and data) must be on "
                "storage every node mounts at the same path (docs/search.md#clusters)"
            )
    return nodes


@contextlib.contextmanager
def ray_cluster(target: RayTarget) -> Iterator[Cluster]:
    """Ray joined (or started) for a search, and shut down after it whatever happens."""
    terminated = signal.getsignal(signal.SIGTERM)
    cluster = start_ray(target)
    # ray.init sets its own SIGTERM handler (an exit with a C++ stack dump, no cleanup): the
    # process's stays (the CLI's stops the search as a Ctrl-C does)
    if terminated is not None:  # None: a handler not set from Python, Ray's is as good
        signal.signal(signal.SIGTERM, terminated)
    try:
        yield cluster
    finally:
        ray.shutdown()


# how often the search asks the head whether it still answers, in seconds
_PROBE_EVERY_S = 2.0
# how long a head may not answer before the search gives up on it, in seconds: a head restarted
# at once (Ray's GCS fault tolerance) is waited for; never more than a quarter of Ray's own
# reconnect timeout, after which Ray's C++ client ends the process itself (the search's
# cleanup, Ray's shutdown included, takes some 5 s more)
_HEAD_PATIENCE_S = 15.0
_RAY_RECONNECT_TIMEOUT = "RAY_gcs_rpc_server_reconnect_timeout_s"  # Ray's default: 60


class HeadWatch:
    """Whether the Ray the search runs on is still there: its head (the GCS) asked every few
    seconds, lost once it has not answered for ``patience_s``."""

    def __init__(
        self,
        head: str,
        names: str,
        patience_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.head = head  # host:port of the GCS (or of a ray:// address's client server)
        self.names = names  # "the Ray cluster at HOST:PORT (--address)", as messages name it
        self.patience_s = patience_s
        self.clock = clock  # seconds
        self._next_probe = 0.0
        self._silent_since: float | None = None

    def check(self) -> None:
        """Ask the head (at most every 2 s); :class:`ClusterLost` once it has been silent for
        ``patience_s``."""
        now = self.clock()
        if now < self._next_probe:
            return
        self._next_probe = now + _PROBE_EVERY_S
        if answers(self.head):
            self._silent_since = None
            return
        if self._silent_since is None:
            self._silent_since = now
        if now - self._silent_since >= self.patience_s:
            resume = " once it is back" if self.names.startswith("the Ray cluster") else ""
            raise ClusterLost(
                f"{self.names} was lost: its head has not answered for {self.patience_s:g} s; "
                "the trials it was running are closed as interrupted: run the same command "
                f"again{resume} to resume the search"
            )


def _head_watch(target: RayTarget) -> HeadWatch:
    """The watch of the Ray ``ray_cluster`` joined: the address it was joined at (host:port is
    the GCS's), else the GCS of the Ray started here ("auto" too: Ray found it)."""
    address = target.address
    if address is not None and address != "auto":
        head, names = address, f"the Ray cluster at {address} ({target.given_by})"
    else:
        head = str(ray.get_runtime_context().gcs_address)
        names = (
            f"the Ray cluster at {head} (auto)"
            if address == "auto"
            else f"the search's own Ray (its head at {head})"
        )
    return HeadWatch(head, names, patience_s=head_patience_s(os.environ))


def head_patience_s(environ: Mapping[str, str]) -> float:
    """Seconds a head may be silent: 15, or a quarter of Ray's reconnect timeout when that is
    set shorter than 60 s (``RAY_gcs_rpc_server_reconnect_timeout_s``)."""
    try:
        reconnect_s = float(environ.get(_RAY_RECONNECT_TIMEOUT, "60"))
    except ValueError:
        reconnect_s = 60.0  # not a number: Ray's default
    return min(_HEAD_PATIENCE_S, reconnect_s / 4)


def _fit_watching_head(tuner: tune.Tuner, watch: HeadWatch) -> None:
    """``tuner.fit()``, in a thread of its own while this one watches the head. Once the head
    is gone Tune's loop blocks in a call to it (the cluster's resources, every step), and
    after Ray's reconnect timeout (60 s) Ray's C++ client ended the process with one raw line
    and exit code 1 ("Failed to connect to GCS within 60 seconds ... The program will
    terminate"), before any of the search's cleanup; no callback of Tune's runs meanwhile.
    Here :class:`ClusterLost` is raised in this thread first, the blocked one left to end with
    the process (a daemon)."""
    failed: list[BaseException] = []

    def fit() -> None:
        try:
            tuner.fit()
        except BaseException as err:  # raised again in the caller's thread
            failed.append(err)

    tune_thread = threading.Thread(target=fit, name="ray-tune", daemon=True)
    tune_thread.start()
    while tune_thread.is_alive():
        tune_thread.join(_PROBE_EVERY_S)  # a Ctrl-C interrupts it (KeyboardInterrupt here)
        if tune_thread.is_alive():
            watch.check()
    if failed:
        raise failed[0]


def run_ray(
    driver: SearchDriver,
    trainer: TrainFunction,
    workers: int,
    gpus_per_trial: float,
    cpus_per_trial: float,
    target: RayTarget,
) -> SearchOutcome:
    """Run the search's trainings as Tune trials on the Ray cluster ``target`` that
    :func:`ray_cluster` joined (its head watched: named as the user named it); Tune's own
    folder is temporary and removed after."""
    _remove_leftovers(Path(tempfile.gettempdir()))
    storage = tempfile.mkdtemp(prefix=f"{_STORAGE_PREFIX}{os.getpid()}-")
    searcher = ProposerSearcher(driver)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, trainer=trainer),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                # an upper bound Tune needs (the searcher says when the search is over): each
                # point once and its retries
                num_samples=len(driver.config.grid) * (driver.config.max_retries + 1),
                max_concurrent_trials=workers,
            ),
            run_config=tune.RunConfig(
                name=driver.config.study_name, storage_path=storage, verbose=0
            ),
        )
        # anything Tune still prints to stderr (stdout stays for --json)
        with contextlib.redirect_stdout(sys.stderr), _tune_settings():
            _fit_watching_head(tuner, _head_watch(target))
        return driver.outcome()
    finally:
        # its trials still running, if Tune stopped early (or the head was lost, or Ctrl-C),
        # are interrupted; not while Tune's thread tells the driver a result
        with searcher.lock:
            searcher.closed = True
            driver.close()
        shutil.rmtree(storage, ignore_errors=True)


_STORAGE_PREFIX = "autoprumux-ray-"  # Tune's folder: autoprumux-ray-<driver pid>-<random>


def _remove_leftovers(temp: Path) -> None:
    """Tune folders of searches whose process is gone (killed: its ``finally`` never ran)."""
    for folder in temp.glob(f"{_STORAGE_PREFIX}*-*"):
        pid = folder.name.removeprefix(_STORAGE_PREFIX).split("-")[0]
        if pid.isdigit() and not process_runs(int(pid), None):
            shutil.rmtree(folder, ignore_errors=True)


# Tune's settings for the search, environment variables Tune reads when fit() starts
TUNE_SETTINGS = {
    # Ctrl-C raises KeyboardInterrupt out of fit(), as it does out of the local executor: Tune's
    # own SIGINT handler ends fit() normally instead, and the search then reported itself
    # answered (exit 0, a report of what little it had trained)
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # Tune's older output, which verbose=0 silences; the newer one prints at every verbosity a
    # table of "Number of trials" (num_samples, an upper bound: twice the grid), the path of
    # its temporary folder ("View detailed results here", removed after the search) and a
    # TensorBoard command for logs nobody needs: the search's own progress says what runs
    "RAY_AIR_NEW_OUTPUT": "0",
    # no CSV, JSON and TensorBoard result files in Tune's temporary folder: the study holds
    # the results
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


@contextlib.contextmanager
def _tune_settings() -> Iterator[None]:
    """:data:`TUNE_SETTINGS` in the environment while Tune runs; what was there before after."""
    given = {name: os.environ.get(name) for name in TUNE_SETTINGS}
    os.environ.update(TUNE_SETTINGS)
    try:
        yield
    finally:
        for name, value in given.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ProposerSearcher(Searcher):
    """The driver's proposals, one per Tune trial; results go back to the driver. Tune calls it
    from its own thread; ``lock`` keeps those calls from crossing the driver's close, after
    which (``closed``) they tell the driver nothing."""

    def __init__(self, driver: SearchDriver) -> None:
        super().__init__(metric="accuracy", mode="max")
        self.driver = driver
        self.numbers: dict[str, int] = {}
        self.lock = threading.Lock()
        self.closed = False

    # Tune pickles its searcher with the Tuner's state (a file in its folder it reads back
    # only to restore a Tune run: the search resumes from the study instead); a lock does not
    # pickle
    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, lock=threading.Lock())

    # Ray annotates Searcher.suggest as returning Optional[Dict], yet documents (and Tune
    # reads) Searcher.FINISHED, a str, as the end of the suggestions
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        with self.lock:
            return Searcher.FINISHED if self.closed else self._suggest(trial_id)

    def _suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        suggestion = self.driver.suggest(1)
        if suggestion.finished:
            return Searcher.FINISHED
        if not suggestion.start:
            return None  # wait for a running trial (of this search or another) to finish
        number, point = suggestion.start[0]
        self.numbers[trial_id] = number
        stop = self.driver.stop_rule()
        return {
            "n": point.n,
            "sparsity": point.sparsity,
            # the stop rule, as Tune's config holds plain values
            "stop": None if stop is None else json.dumps(dataclasses.asdict(stop)),
        }

    # the search's state is the study (its storage), which a rerun resumes from: nothing for
    # Tune to snapshot (it warned "save not implemented for Searcher" at the first trial)
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        with self.lock:
            if not self.closed:
                self._complete(trial_id, result, error)

    def _complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        number = self.numbers.pop(trial_id)
        point = self.driver.pending[number]
        task = self.driver.config.task
        if error or not result or "status" not in result:
            training = Training.failed(
                task, point, "the Ray trial raised an error (see Ray's logs)"
            )
        else:
            training = _training_from_result(task, point, result)
        self.driver.complete(number, training)


def _trainable(config: dict[str, Any], trainer: TrainFunction) -> dict[str, Any]:
    """A Tune trial: train one point, return its record as the final result (the by-products'
    records as one JSON text: Tune flattens nested results into metrics)."""
    point = GridPoint(int(config["n"]), float(config["sparsity"]))
    stop_fields = json.loads(config["stop"]) if config.get("stop") else None
    stop = (
        StopRule(
            threshold=stop_fields["threshold"],
            margins=tuple((f, m) for f, m in stop_fields["margins"]),
        )
        if stop_fields
        else None
    )
    # where it ran: the node's address and the start of its Ray node id (one host can run
    # several nodes)
    # Ray leaves get_node_ip_address unannotated
    address: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    node = f"{address}/{ray.get_runtime_context().get_node_id()[:8]}"
    try:
        # Ray forwards the trial's output to the driver, whose stdout is kept for --json: the
        # trial's progress lines and anything a library prints go to stderr
        with contextlib.redirect_stdout(sys.stderr):
            training = trainer(point, stop)
    except Exception as err:  # a failed training is data, not a crashed trial
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:500]
        return {"status": "failed", "reason": reason, "node": node, **NO_ACCURACY}
    return {
        **NO_ACCURACY,
        **_row(training.record),
        "node": node,
        "by_products": json.dumps([{**_row(r), "node": node} for r in training.by_products]),
    }


# Tune checks that every result holds the searcher's metric: a failed or stopped training has
# no accuracy, so it reports None (which Tune's own metric tracking skips)
NO_ACCURACY: dict[str, Any] = {"accuracy": None}


def _row(record: TrialRecord) -> dict[str, Any]:
    return {
        k: (v.value if isinstance(v, TrialStatus) else v)
        for k, v in record.to_row().items()
        if v is not None
    }


def _training_from_result(task: str, point: GridPoint, result: dict[str, Any]) -> Training:
    row = {**result, "task": task, "n": point.n, "sparsity": point.sparsity}
    by_products = [
        record_from_row({**r, "task": task}, "Ray trial result", i)
        for i, r in enumerate(json.loads(result.get("by_products", "[]")), start=2)
    ]
    return Training(record_from_row(row, "Ray trial result", 1), tuple(by_products))
