"""The search: ASHA, a searcher, and ``tune.Tuner`` (the Ray session is search/cluster/session.py).

This is the only module that builds a ``tune.Tuner``. It turns a :class:`Space` into Ray Tune
domains, sends the encoded data to the trials once (``tune.with_parameters``), reuses worker
processes across trials, and turns Ray's ``ResultGrid`` into a plain trial table.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from search.errors import Interrupted, original_error
from search.metrics import METRICS, ranked_trials
from search.progress import Progress
from search.run_folder import EXPERIMENT_DIR, read_faults
from search.space import ChoiceParam, FloatParam, IntParam, Space
from search.tuning.trainable import TrialData, train_trial

if TYPE_CHECKING:
    from ray.tune import ResultGrid

    from search.spec import TuningOptions

log = logging.getLogger(__name__)

STATUSES = ("completed", "stopped early", "diverged", "errored")
TUNE_TEARDOWN_S = 2.0  # Tune's stop of running trials and its last experiment save, after its time budget


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
    options: TuningOptions,
    space: Space,
    data: TrialData,
    run_dir: Path,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    grace_period: float,
    deadline: float,
    callbacks: tuple[Any, ...] = (),
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

    from search.tuning.callbacks import FaultLog, ProgressCallback, StopOnSignal

    scheduler = ASHAScheduler(
        time_attr="epoch",
        max_t=data.max_epochs,
        grace_period=min(grace_period, data.max_epochs),
        reduction_factor=options.reduction_factor,
    )
    # Tune stops its trials at its budget, then tears down (stops actors, saves the experiment): leave time for it
    budget = max(1.0, (deadline - time.time()) * 0.95 - TUNE_TEARDOWN_S)
    conditional = options.searcher == "optuna" and bool(space.conditions)
    tuner = tune.Tuner(
        _trainable(options, data),
        param_space={} if conditional else to_ray_space(space),  # else the searcher's define-by-run space
        tune_config=tune.TuneConfig(
            metric=data.metric,
            mode=METRICS[data.metric],
            scheduler=scheduler,
            search_alg=_searcher(options, space, data.metric),
            num_samples=options.samples,
            reuse_actors=True,
            time_budget_s=budget if math.isfinite(budget) else None,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT_DIR,
            storage_path=str(run_dir),
            verbose=0,
            callbacks=[ProgressCallback(options.samples, data.metric, data.max_epochs), FaultLog(), *_loggers(),
                       *callbacks],
            # Trials catch their own errors (see trainable.py): what Ray retries is a lost worker.
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            stop=StopOnSignal(),
        ),
    )
    return _fit(tuner, options, space, data, run_dir, on_progress, budget)


def resume_trials(
    options: TuningOptions,
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
        trainable=_trainable(options, data),
        resume_unfinished=True,
        resume_errored=True,  # trials Ray gave up on (lost nodes) continue from their checkpoints
    )
    return _fit(tuner, options, space, data, run_dir, on_progress, None)


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


def _trainable(options: TuningOptions, data: TrialData) -> Any:
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(train_trial, data=data),
        {"cpu": options.compute.cpus, "gpu": options.compute.gpus},
    )


def _fit(tuner: Any, options: TuningOptions, space: Space, data: TrialData, run_dir: Path,
         on_progress: Callable[[Progress], None] | None, budget: float | None) -> pd.DataFrame:
    from search.compute import sigint_handler_kept
    from search.tuning import callbacks

    callbacks.attach(run_dir, on_progress)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # see _loggers; read when fit starts Tune's loop
    started = time.time()
    try:
        with sigint_handler_kept(), _without_unused_mlflow(logs_to_mlflow=options.logs_to_mlflow):
            grid = tuner.fit()  # Tune leaves its own SIGINT handler in place, and a Ctrl-C after the search did nothing
    finally:
        callbacks.attach(run_dir, None)
    finished = _interrupted_at(run_dir, options, time.time() - started, budget)
    if finished is not None:
        raise Interrupted(f"the search was stopped with {finished} of {options.samples} trials finished.", run_dir)
    table = trial_table(grid, data, space, read_faults(run_dir))
    _prune_checkpoints(grid, table, data.metric, options.keep_checkpoints)
    return table


def import_tune() -> None:
    """Import Ray Tune's modules and the search's callbacks ahead of the search, as Ray starts."""
    import ray.tune.schedulers  # noqa: F401

    import search.tuning.callbacks  # noqa: F401


@contextmanager
def _without_unused_mlflow(logs_to_mlflow: bool) -> Iterator[None]:
    """Keep MLflow unimported while Tune runs, unless this search logs its trials to it (``--mlflow``).

    Tune's usage tagging imports ``ray.air.integrations.mlflow`` to count its callbacks by class
    name, and that imports MLflow where it is installed: 0.8 s alone, 2 s of a sonar run's start on
    2 cores. Ray's module is dropped afterwards, so that a later import of it finds MLflow.
    """
    import sys

    from search.compute import modules_hidden

    if logs_to_mlflow or "mlflow" in sys.modules or "ray.air.integrations.mlflow" in sys.modules:
        yield
        return
    try:
        with modules_hidden(("mlflow",)):
            yield
    finally:
        sys.modules.pop("ray.air.integrations.mlflow", None)


def _interrupted_at(run_dir: Path, options: TuningOptions, elapsed: float, budget: float | None) -> int | None:
    """The number of trials finished, if the search was stopped early; None when it ran to its end
    or to its time budget (``budget``; None for a resumed search, whose budget Tune kept).

    Ray Tune returns from ``fit`` normally on Ctrl-C: unfinished or missing trials tell it apart.
    """
    from ray.tune import ExperimentAnalysis

    from search.compute import stop_requested

    trials = ExperimentAnalysis(str(run_dir / EXPERIMENT_DIR)).trials
    if stop_requested():
        return sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    unfinished = any(t.status not in ("TERMINATED", "ERROR") for t in trials)
    out_of_time = budget is None or elapsed >= budget * 0.95
    if unfinished or (len(trials) < options.samples and not out_of_time):
        return sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    return None


def _prune_checkpoints(grid: ResultGrid, table: pd.DataFrame, metric: str, keep: int) -> None:
    """Keep disk bounded: only the top-``keep`` trials keep their last checkpoint."""
    kept = set(ranked_trials(table, metric)["trial_id"].head(keep))
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
        used = space.values_of(result.config or {})  # a param out of its conditional scope is left empty
        row.update({name: used.get(name) for name in space.params})
        epochs = float(metrics.get("epoch") or metrics.get("training_iteration") or 0)
        best = best_epoch = last = np.nan
        if history is not None and data.metric in history and len(history):
            history = history.drop_duplicates("training_iteration", keep="last")
            values = history[data.metric].to_numpy(dtype=float)
            pick = np.nanargmax(values) if METRICS[data.metric] == "max" else np.nanargmin(values)
            best, last = float(values[pick]), float(values[-1])
            best_epoch = float(history["epoch" if "epoch" in history else "training_iteration"].iloc[pick])
        error = original_error(result.error)
        trace = ""
        if result.error is not None or metrics.get("errored"):
            status = "errored"
            error = error or str(metrics.get("error", ""))
            trace = str(metrics.get("traceback") or result.error or "")
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
            traceback=trace,
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("trial_id", kind="stable").reset_index(drop=True)


def _searcher(options: TuningOptions, space: Space, metric: str) -> Any:
    """Random search or Optuna's TPE, starting from the space's first trials (known-good configs)."""
    first = [complete_point(point, space) for point in space.first_trials] or None
    if options.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        if space.conditions:  # define-by-run: a conditional param is asked for only where it is used
            return OptunaSearch(space=DefineByRun(space), metric=metric, mode=METRICS[metric], seed=options.seed,
                                points_to_evaluate=first)
        return OptunaSearch(seed=options.seed, points_to_evaluate=first)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=options.seed, points_to_evaluate=first)


def complete_point(point: dict[str, Any], space: Space) -> dict[str, Any]:
    """A first trial with every param of ``space`` (Optuna refuses a partial one): a param it leaves out
    takes the network's default where that lies in the param's range, else the range's middle."""
    from search.network import DEFAULTS

    full = dict(point)
    for name, p in space.params.items():
        if name in full:
            continue
        default = DEFAULTS.get(name)
        if isinstance(p, ChoiceParam):
            full[name] = default if default in p.values else p.values[0]
        elif default is not None and p.low <= default <= p.high:
            full[name] = default
        else:
            middle = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
            full[name] = int(round(middle)) if isinstance(p, IntParam) else middle
    return full


class DefineByRun:
    """Optuna's define-by-run form of a conditional space: params in their order (parents first), each
    suggested only when its conditions hold for the values suggested before it. A class, not a closure:
    Tune pickles its searcher into the experiment's state."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        chosen: dict[str, Any] = {}
        for name, p in self.space.params.items():
            if not self.space.in_use(name, chosen):
                continue
            if isinstance(p, IntParam):
                chosen[name] = trial.suggest_int(name, p.low, p.high, log=p.log)
            elif isinstance(p, FloatParam):
                chosen[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
            else:
                chosen[name] = trial.suggest_categorical(name, list(p.values))
