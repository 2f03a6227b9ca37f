"""The final model: the winner's network trained on all non-test rows (or, under the holdout rule,
its CV fit at its best epoch), by the final-fit stage's deadline."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from search.data import Table
from search.devices import Compute
from search.signals import raise_if_stopped
from search.spec import RunSpec


def fit_final_model(cv: Any, table: Table, rows: np.ndarray, spec: RunSpec,
                    deadline: float, worker: Any = None) -> tuple[Any, Any, int, str]:
    """The winner's preprocessing and network: with the holdout rule its CV fit at its best epoch,
    else a fit on all non-test rows for the epochs CV chose (fewer if the budget runs out), on
    ``worker`` (one of the CV's ``FitWorkers``, its Keras imported) when given."""
    from search.preprocess import build_preprocessor, fit_and_encode

    winner = cv.winner
    if cv.rule == "holdout":
        preprocessor = build_preprocessor(cv.final_preprocessor, table.schema)
        # the encoded width, not the first weight's rows: a periodic embedding's frequencies come first
        network = network_with(winner.hyperparameters, int(preprocessor.output.shape[-1]), cv.final_weights)
        return preprocessor, network, winner.epochs, "the training part (its holdout fit, best epoch kept)"
    stats, (x,) = fit_and_encode(table.features.iloc[rows], table.schema)
    preprocessor = build_preprocessor(stats, table.schema)
    network, trained = fit_final(winner.hyperparameters, x,
                                 table.y[rows].astype(np.float32), winner.epochs, spec.seed, Compute.of(spec),
                                 deadline, worker)
    note = "all non-test rows" + (f" (stopped at epoch {trained} of {winner.epochs}: the budget)"
                                  if trained < winner.epochs else "")
    return preprocessor, network, trained, note


def fit_final(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
              compute: Compute, deadline: float, worker: Any = None) -> tuple[Any, int]:
    """The winner trained on all non-test rows in a Ray task with a trial's resources (its GPU share,
    its precision); returned as a float32 network built in the driver, for the export, with the epochs
    it trained (fewer than ``epochs`` when the next one would have ended past ``deadline``)."""
    import ray

    remote = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus)(train_weights)
    args = (config, x, y, epochs, seed, compute, deadline)
    ref = worker.train_weights.remote(*args) if worker is not None else remote.remote(*args)
    try:
        while True:
            ready, _ = ray.wait([ref], timeout=2.0)
            raise_if_stopped()
            if ready:
                break
    except BaseException:
        ray.cancel(ref, force=worker is None)  # an actor's calls end with it
        raise
    weights, trained = ray.get(ref)
    return network_with(config, x.shape[1], weights), trained


def network_with(config: dict[str, Any], n_features: int, weights: list[np.ndarray]) -> Any:
    """A float32 network of ``config`` holding ``weights`` (whatever precision trained them)."""
    from search.model import build_network

    network = build_network(config, n_features, compiled=False)
    network.set_weights(weights)
    return network


def train_weights(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
                  compute: Compute, deadline: float = math.inf) -> tuple[list[np.ndarray], int]:
    """Fit one network (a Ray task); its weights as NumPy arrays (float32 under mixed precision too)
    and the epochs it trained."""
    from search.fit import fit_network
    from search.worker import use_backend

    use_backend(compute)
    trained, last = [0], [time.time()]

    def on_epoch(epoch: int, _: Any, __: Any) -> bool:
        now = time.time()
        took, last[0] = now - last[0], now
        trained[0] = epoch + 1
        return now + took <= deadline

    model = fit_network(config, x, y, epochs, seed, mixed_precision=compute.mixed_precision, on_epoch=on_epoch)
    return [np.asarray(w) for w in model.get_weights()], trained[0]
