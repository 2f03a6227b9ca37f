"""The search: a local (or given) Ray session, ASHA, a searcher, and ``tune.Tuner``.

This is the only module that builds a ``tune.Tuner``. It turns a :class:`Space` into Ray Tune
domains, sends the encoded data to the trials once (``tune.with_parameters``), reuses worker
processes across trials, and turns Ray's ``ResultGrid`` into a plain trial table.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from search.devices import keep_driver_off_gpus, largest_node, put_back_variables
from search.errors import ClusterError, Interrupted
from search.metrics import METRICS
from search.results import read_faults
from search.space import ChoiceParam, FloatParam, IntParam, Space
from search.trainable import TrialData, train_trial

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from search.spec import RunSpec

log = logging.getLogger(__name__)

EXPERIMENT_DIR = "tune"
# Quiet TensorFlow's C++ start-up chatter in every worker.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONWARNINGS": "ignore"}


def worker_env(backend: str) -> dict[str, str]:
    """The workers' variables: a local Ray's workers inherit them at ``ray.init``; on a cluster they
    are the job's runtime env, and Ray keeps one pool of workers per set, so runs on other backends share none."""
    passed = {k: v for k, v in os.environ.items() if k.startswith("HPSEARCH_XLA")}
    return {**WORKER_ENV, "KERAS_BACKEND": backend, **passed}


STATUSES = ("completed", "stopped early", "diverged", "errored")
TUNE_TEARDOWN_S = 2.0  # Tune's stop of running trials and its last experiment save, after its time budget


@dataclass
class Progress:
    """A snapshot of the search for the console: counts and the best score so far."""

    total: int
    metric: str
    running: int = 0
    finished: int = 0
    stopped_early: int = 0
    failed: int = 0
    best: float | None = None


def to_ray_space(space: Space) -> dict[str, Any]:
    """Ray Tune domains for ``space``. Bounds are inclusive: Ray's ``randint`` excludes ``upper``."""
    from ray import tune

    domains: dict[str, Any] = {}
    for name, p in space.params.items():
        if isinstance(p, IntParam):
            sampler = tune.lograndint if p.log else tune.randint
            domains[name] = sampler(p.low, p.high + 1)
        elif isinstance(p, FloatParam):
            domains[name] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
        elif isinstance(p, ChoiceParam):
            domains[name] = tune.choice(list(p.values))
    return domains


def run_trials(
    spec: RunSpec,
    space: Space,
    data: TrialData,
    run_dir: Path,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    grace_period: float,
    deadline: float,
) -> pd.DataFrame:
    """Run the search until its trials are done or ``deadline`` (clock time) passes, and return the
    trial table (one row per trial, see :func:`trial_table`).

    ASHA's time unit is the epoch, in fractions on big tables (a trial reports
    ``data.reports_per_epoch`` times an epoch), so a rung is an amount of training work.

    Raises:
        Interrupted: the search was stopped (Ctrl-C); its state is in ``run_dir`` for :func:`resume_trials`.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.callbacks import FaultLog, ProgressCallback

    scheduler = ASHAScheduler(
        time_attr="epoch",
        max_t=data.max_epochs,
        grace_period=min(grace_period, data.max_epochs),
        reduction_factor=spec.reduction_factor,
    )
    # Tune stops its trials at its budget, then tears down (stops actors, saves the experiment): leave time for it
    budget = max(1.0, (deadline - time.time()) * 0.95 - TUNE_TEARDOWN_S)
    tuner = tune.Tuner(
        _trainable(spec, data),
        param_space=to_ray_space(space),
        tune_config=tune.TuneConfig(
            metric=data.metric,
            mode=METRICS[data.metric],
            scheduler=scheduler,
            search_alg=_searcher(spec),
            num_samples=spec.samples,
            reuse_actors=True,
            time_budget_s=budget,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_DIR,
            storage_path=str(run_dir),
            verbose=0,
            callbacks=[ProgressCallback(spec.samples, data.metric, data.max_epochs), FaultLog(), *_loggers()],
            # Trials catch their own errors (see trainable.py): what Ray retries is a lost worker.
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    return _fit(tuner, spec, space, data, run_dir, on_progress, budget)


def resume_trials(
    spec: RunSpec,
    space: Space,
    data: TrialData,
    run_dir: Path,
    on_progress: Callable[[Progress], None] | None = None,
) -> pd.DataFrame:
    """Continue an interrupted search from its experiment folder: finished trials stay, the rest go on
    (with the search's time budget as it was recorded: Tune counts the time already spent)."""
    from ray import tune

    tuner = tune.Tuner.restore(
        str(run_dir / EXPERIMENT_DIR),
        trainable=_trainable(spec, data),
        resume_unfinished=True,
        resume_errored=True,  # trials Ray gave up on (lost nodes) continue from their checkpoints
    )
    return _fit(tuner, spec, space, data, run_dir, on_progress, None)


def _loggers() -> list[Any]:
    """Ray Tune's CSV and JSON loggers (``progress.csv`` feeds ``epochs.csv``), but not its TensorBoard
    one: with tensorboardX installed, Tune adds it by default and it writes event files on every result.
    :func:`_fit` turns Tune's automatic loggers off; a restored Tuner brings these two back from its state."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback()]


def can_resume(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a Ray Tune experiment that ``Tuner.restore`` can continue."""
    from ray import tune

    return tune.Tuner.can_restore(str(run_dir / EXPERIMENT_DIR))


def _trainable(spec: RunSpec, data: TrialData) -> Any:
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(train_trial, data=data),
        {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial},
    )


def _fit(tuner: Any, spec: RunSpec, space: Space, data: TrialData, run_dir: Path,
         on_progress: Callable[[Progress], None] | None, budget: float | None) -> pd.DataFrame:
    from search import callbacks, signals

    callbacks.attach(run_dir, on_progress)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # see _loggers; read when fit starts Tune's loop
    started = time.time()
    try:
        with signals.sigint_handler_kept():  # Tune leaves its own in place, and a Ctrl-C after the search did nothing
            grid = tuner.fit()
    finally:
        callbacks.attach(run_dir, None)
    finished = _interrupted_at(run_dir, spec, time.time() - started, budget)
    if finished is not None:
        raise Interrupted(f"the search was stopped with {finished} of {spec.samples} trials finished.", run_dir)
    table = trial_table(grid, data, space, read_faults(run_dir))
    _prune_checkpoints(grid, table, data.metric, spec.top_k)
    return table


def _interrupted_at(run_dir: Path, spec: RunSpec, elapsed: float, budget: float | None) -> int | None:
    """The number of trials finished, if the search was stopped early; None when it ran to its end
    or to its time budget (``budget``; None for a resumed search, whose budget Tune kept).

    Ray Tune returns from ``fit`` normally on Ctrl-C: unfinished or missing trials tell it apart.
    """
    from ray.tune import ExperimentAnalysis

    from search.signals import stop_requested

    trials = ExperimentAnalysis(str(run_dir / EXPERIMENT_DIR)).trials
    if stop_requested():
        return sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    unfinished = any(t.status not in ("TERMINATED", "ERROR") for t in trials)
    out_of_time = budget is None or elapsed >= budget * 0.95
    if unfinished or (len(trials) < spec.samples and not out_of_time):
        return sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    return None


def _prune_checkpoints(grid: ResultGrid, table: pd.DataFrame, metric: str, keep: int) -> None:
    """Keep disk bounded: only the top-``keep`` trials keep their last checkpoint."""
    column = f"best_{metric}"
    usable = table[table["status"].isin(["completed", "stopped early"])].dropna(subset=[column])
    kept = set(usable.sort_values(column, ascending=METRICS[metric] == "min", kind="stable")
               ["trial_id"].head(keep))
    for result in grid:
        trial_id = (result.metrics or {}).get("trial_id")
        if trial_id in kept or not result.path:
            continue
        for folder in Path(result.path).glob("checkpoint_*"):
            shutil.rmtree(folder, ignore_errors=True)


def trial_table(grid: ResultGrid, data: TrialData, space: Space,
                faults: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per trial: id, hyperparameters, epochs, best/last metric, best epoch, status, node, retries."""
    retries: dict[str, int] = {}
    for record in faults or []:
        if record.get("event") == "retried":
            retries[record["trial_id"]] = retries.get(record["trial_id"], 0) + 1
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        row: dict[str, Any] = {"trial_id": metrics.get("trial_id") or Path(result.path).name}
        row.update({name: _plain((result.config or {}).get(name)) for name in space.params})
        epochs = float(metrics.get("epoch") or metrics.get("training_iteration") or 0)
        best = best_epoch = last = np.nan
        if history is not None and data.metric in history and len(history):
            history = history.drop_duplicates("training_iteration", keep="last")
            values = history[data.metric].to_numpy(dtype=float)
            pick = np.nanargmax(values) if METRICS[data.metric] == "max" else np.nanargmin(values)
            best, last = float(values[pick]), float(values[-1])
            best_epoch = float(history["epoch" if "epoch" in history else "training_iteration"].iloc[pick])
        error = _first_line(result.error)
        if result.error is not None or metrics.get("errored"):
            status = "errored"
            error = error or str(metrics.get("error", ""))
            best = best_epoch = last = np.nan
        elif metrics.get("diverged"):
            status = "diverged"
            best = best_epoch = last = np.nan
        elif epochs >= data.max_epochs - 1e-9:
            status = "completed"
        else:
            status = "stopped early"
        row.update(
            epochs=epochs,
            best_epoch=best_epoch,
            **{f"best_{data.metric}": best, f"last_{data.metric}": last},
            status=status,
            node_ip=metrics.get("node_ip", ""),
            node_id=metrics.get("node_id", ""),
            device=metrics.get("device", ""),
            compute_dtype=metrics.get("compute_dtype", ""),
            backend=metrics.get("backend", ""),
            retries=retries.get(row["trial_id"], 0),
            restored_from=int(metrics.get("restored_from") or 0),
            error=error,
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("trial_id", kind="stable").reset_index(drop=True)


def epoch_history(run_dir: Path, metric: str) -> pd.DataFrame:
    """Every trial's per-epoch scores, read back from Ray's experiment folder."""
    frames = []
    for progress in sorted((run_dir / EXPERIMENT_DIR).glob("*/progress.csv")):
        try:
            df = pd.read_csv(progress)
        except (pd.errors.EmptyDataError, OSError):
            continue
        if "epoch" not in df and "training_iteration" in df:  # written before epochs were reported in fractions
            df = df.rename(columns={"training_iteration": "epoch"})
        keep = [c for c in ("trial_id", "epoch", *METRICS, "loss", "train_seconds") if c in df]
        frames.append(df[keep])
    if not frames:
        return pd.DataFrame(columns=["trial_id", "epoch", metric])
    # A trial continued from a checkpoint repeats the epochs after it: the later rows count.
    history = pd.concat(frames, ignore_index=True)
    return history.drop_duplicates(["trial_id", "epoch"], keep="last").reset_index(drop=True)


@contextmanager
def ray_session(spec: RunSpec) -> Iterator[None]:
    """A Ray session for the search and the retrain; stopped on exit if this process started it."""
    import ray

    from search import signals

    started_here = _start_ray(spec)
    signals.install()  # again: ray.init put Ray's own SIGTERM handler in place
    devices_before = keep_driver_off_gpus()
    try:
        _check_trials_fit(spec)
        yield
    finally:
        if started_here:
            ray.shutdown()
        put_back_variables(devices_before)


def _check_trials_fit(spec: RunSpec) -> None:
    """Refuse a CPU or GPU reservation no node can meet: Ray would queue the trial forever. On a
    cluster (``--address``) a node may yet come (an autoscaler): only a missing GPU is said then."""
    cpus = largest_node("CPU")
    if not spec.address and spec.cpus_per_trial > cpus:
        raise ClusterError(
            f"--cpus-per-trial {spec.cpus_per_trial:g}: this machine's Ray has {cpus:g} CPUs, and a trial runs on one "
            f"node. Ask for at most {cpus:g}, or run on a cluster with --address."
        )
    if spec.gpus_per_trial <= 0:
        return
    most = largest_node("GPU")
    if most == 0 and not spec.address:
        raise ClusterError(
            f"--gpus-per-trial {spec.gpus_per_trial:g}: Ray found no GPU on this machine. Leave the option out "
            f"to train on CPUs, or run on a machine with an NVIDIA GPU and the GPU extra (pip install -e '.[gpu]')."
        )
    if most and spec.gpus_per_trial > most:
        raise ClusterError(
            f"--gpus-per-trial {spec.gpus_per_trial:g}: no node has more than {most:g} GPUs, and a trial runs on "
            f"one node. Ask for at most {most:g} (fractions such as 0.25 put several trials on one GPU)."
        )


def _start_ray(spec: RunSpec) -> bool:
    """Start a private local Ray (no dashboard, token authentication on), unless one is connected.

    Ray 2.60 resolves a loopback node address to the machine's routable one and its gRPC
    servers listen on every interface; its token authentication (on by default) is what keeps
    other hosts out. See README, "Security".
    """
    import ray

    if ray.is_initialized():
        return False
    if spec.address:
        # An existing cluster: its nodes need hpsearch installed (cluster.yaml does it) or, under
        # `hpsearch submit`, get it from the job's working_dir.
        from search.cluster import use_cluster_token

        use_cluster_token()
        # Inside a Ray Job the job's runtime env (set by `hpsearch submit`) already holds our
        # variables, and Ray refuses to merge a second one into it.
        in_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
        try:
            ray.init(address=spec.address, log_to_driver=log.isEnabledFor(logging.DEBUG),
                     logging_level=logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR,
                     runtime_env=None if in_job else {"env_vars": worker_env(spec.backend)})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ClusterError(
                f"--address {spec.address}: cannot connect to a Ray cluster ({first[:200]}). "
                f"Check the address and that the cluster is up (`ray status`)."
            ) from None
        return True
    # The workers' variables go in through the environment the raylet inherits, not a runtime env:
    # Ray starts workers for a job with a runtime env anew, while these use the ones Ray prestarted
    # (the first trials start 1.0-1.5 s sooner). Put back at once: the driver is not a worker.
    variables = worker_env(spec.backend)
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        ray.init(
            address="local",
            num_cpus=spec.cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=log.isEnabledFor(logging.DEBUG),
            # Ray's token authentication stays on (its default); its notice about it is not shown.
            logging_level=logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR,
        )
    finally:
        put_back_variables(before)
    return True


def _searcher(spec: RunSpec) -> Any:
    if spec.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=spec.seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=spec.seed)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _first_line(error: BaseException | None) -> str:
    if error is None:
        return ""
    text = str(error).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # Ray wraps the trial's exception; its last line is the original "Type: message".
    return (lines[-1] if lines else type(error).__name__)[:300]
