"""The final model: the winner's network trained on all non-test rows (or, under the holdout rule,
its CV fit at its best epoch), by the final-fit stage's deadline."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.compute import Compute, raise_if_stopped
from search.data import Feature, PreprocessStats, Table
from search.spec import RunSpec


@dataclass(frozen=True)
class FinalModel:
    """The winner's parts for the export: its fitted preprocessing, its trained weights, the epochs they
    trained and on which rows (in words)."""

    stats: PreprocessStats
    weights: list[np.ndarray]
    epochs: int
    trained_on: str


def fit_final_model(cv: Any, table: Table, rows: np.ndarray, spec: RunSpec,
                    deadline: float, worker: Any = None) -> FinalModel:
    """The winner's preprocessing and weights: with the holdout rule its CV fit at its best epoch,
    else a fit on all non-test rows for the epochs CV chose (fewer if the budget runs out), on
    ``worker`` (one of the CV's ``FitWorkers``, its Keras imported) when given."""
    from search.data import fit_and_encode

    winner = cv.winner
    if cv.rule == "holdout":
        return FinalModel(cv.final_preprocessor, cv.final_weights, winner.epochs,
                          "the training part (its holdout fit, best epoch kept)")
    stats, (x,) = fit_and_encode(table.features.iloc[rows], table.schema)
    weights, trained = fit_final(winner.hyperparameters, x, table.y[rows].astype(np.float32), winner.epochs,
                                 spec.seed, Compute.of(spec), deadline, worker)
    note = "all non-test rows" + (f" (stopped at epoch {trained} of {winner.epochs}: the budget)"
                                  if trained < winner.epochs else "")
    return FinalModel(stats, weights, trained, note)


def fit_final(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
              compute: Compute, deadline: float, worker: Any = None) -> tuple[list[np.ndarray], int]:
    """The winner trained on all non-test rows in a Ray task with a trial's resources (its GPU share,
    its precision), or on ``worker``: its float32 weights, and the epochs it trained (fewer than
    ``epochs`` when the next one would have ended past ``deadline``)."""
    import ray

    remote = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus)(train_weights)
    args = (config, x, y, epochs, seed, compute, deadline)
    return _result(worker.train_weights.remote(*args) if worker is not None else remote.remote(*args),
                   force_cancel=worker is None)


def build_export(final: FinalModel, schema: tuple[Feature, ...], config: dict[str, Any],
                 check: dict[str, np.ndarray], test: dict[str, np.ndarray] | None, worker: Any = None) -> Any:
    """The exported model built and checked (``export.BuiltModel``): on ``worker`` when given (its Keras
    is imported already, so the driver need not import it: 4-8 CPU-seconds on 2 cores, taken from the
    trials), else here."""
    from search.export import build_model

    args = (final.stats, schema, config, final.weights, check, test)
    if worker is None:
        return build_model(*args)
    return _result(worker.build_model.remote(*args), force_cancel=False)


def _result(ref: Any, force_cancel: bool) -> Any:
    """``ray.get(ref)``, waiting in steps so that Ctrl-C or SIGTERM cancels it (an actor's calls end with it)."""
    import ray

    try:
        while True:
            ready, _ = ray.wait([ref], timeout=2.0)
            raise_if_stopped()
            if ready:
                break
    except BaseException:
        ray.cancel(ref, force=force_cancel)
        raise
    return ray.get(ref)


def train_weights(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
                  compute: Compute, deadline: float = math.inf) -> tuple[list[np.ndarray], int]:
    """Fit one network (a Ray task); its weights as NumPy arrays (float32 under mixed precision too)
    and the epochs it trained."""
    from search.compute import use_backend
    from search.network import fit_network

    use_backend(compute)
    trained, last = [0], [time.time()]

    def on_epoch(epoch: int, _: Any, __: Any) -> bool:
        now = time.time()
        took, last[0] = now - last[0], now
        trained[0] = epoch + 1
        return now + took <= deadline

    model = fit_network(config, x, y, epochs, seed, mixed_precision=compute.mixed_precision, on_epoch=on_epoch)
    return [np.asarray(w) for w in model.get_weights()], trained[0]
