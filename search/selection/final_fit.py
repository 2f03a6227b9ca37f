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
class TrainedNetwork:
    """One exported network: its CV candidate's id and configuration, its weight in the ensemble's mean
    (1 alone), its trained weights and the epochs they trained."""

    trial_id: str
    config: dict[str, Any]
    share: float
    weights: list[np.ndarray]
    epochs: int


@dataclass(frozen=True)
class FinalModel:
    """The export's parts: the fitted preprocessing the networks share, the networks (the winner, or the
    ensemble's members, heaviest first), and on which rows they trained (in words)."""

    stats: PreprocessStats
    networks: tuple[TrainedNetwork, ...]
    trained_on: str

    @property
    def epochs(self) -> int:
        return self.networks[0].epochs


def fit_final_model(cv: Any, table: Table, rows: np.ndarray, spec: RunSpec,
                    deadline: float, workers: Any = None) -> FinalModel:
    """The exported networks' shared preprocessing and their weights: with the holdout rule each one's
    CV fit at its best epoch, else fits on all non-test rows for the epochs CV chose (fewer if the
    budget runs out), all at once, on ``workers``' actors (the CV's ``FitWorkers``, Keras imported)
    when it has any, else as Ray tasks."""
    from search.data import fit_and_encode

    members = cv.member_candidates()
    shares = [m.weight for m in cv.ensemble.members]
    if cv.rule == "holdout":
        return FinalModel(cv.final_preprocessor,
                          tuple(TrainedNetwork(m.trial_id, m.hyperparameters, share, cv.holdout_weights[m.trial_id],
                                               m.epochs) for m, share in zip(members, shares, strict=True)),
                          "the training part (its holdout fit, best epoch kept)")
    stats, (x,) = fit_and_encode(table.features.iloc[rows], table.schema)
    y = table.y[rows].astype(np.float32)
    # the winner keeps the run's seed (the single network's fit is today's); other members get their own
    trained = fit_final([(m.hyperparameters, m.epochs) for m in members], x, y, spec.seed, Compute.of(spec),
                        deadline, workers)
    networks = tuple(TrainedNetwork(m.trial_id, m.hyperparameters, share, weights, epochs)
                     for m, share, (weights, epochs) in zip(members, shares, trained, strict=True))
    short = [f"{n.trial_id} at epoch {n.epochs} of {m.epochs}" for n, m in zip(networks, members, strict=True)
             if n.epochs < m.epochs]
    note = "all non-test rows" + (f" (stopped by the budget: {', '.join(short)})" if short else "")
    return FinalModel(stats, networks, note)


def fit_final(fits: list[tuple[dict[str, Any], int]], x: np.ndarray, y: np.ndarray, seed: int,
              compute: Compute, deadline: float, workers: Any = None) -> list[tuple[list[np.ndarray], int]]:
    """Each ``(config, epochs)`` trained on all non-test rows in a Ray task with a trial's resources
    (its GPU share, its precision), or on ``workers``' actors in turn: float32 weights, and the epochs
    trained (fewer when the next one would have ended past ``deadline``)."""
    import itertools

    import ray

    actors = list(getattr(workers, "actors", None) or [])
    remote = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus)(train_weights)
    turn = itertools.cycle(actors)
    x_ref = ray.put(x) if len(fits) > 1 else x
    refs = [next(turn).train_weights.remote(config, x_ref, y, epochs, seed + i, compute, deadline) if actors
            else remote.remote(config, x_ref, y, epochs, seed + i, compute, deadline)
            for i, (config, epochs) in enumerate(fits)]
    return _results(refs, force_cancel=not actors)


def build_export(final: FinalModel, schema: tuple[Feature, ...], check: dict[str, np.ndarray],
                 test: dict[str, np.ndarray] | None, worker: Any = None) -> Any:
    """The exported model built and checked (``export.BuiltModel``): on ``worker`` when given (its Keras
    is imported already, so the driver need not import it: 4-8 CPU-seconds on 2 cores, taken from the
    trials), else here."""
    from search.export import build_model

    networks = [(n.config, n.weights, n.share) for n in final.networks]
    args = (final.stats, schema, networks, check, test)
    if worker is None:
        return build_model(*args)
    return _result(worker.build_model.remote(*args), force_cancel=False)


def _result(ref: Any, force_cancel: bool) -> Any:
    return _results([ref], force_cancel)[0]


def _results(refs: list[Any], force_cancel: bool) -> list[Any]:
    """``ray.get(refs)``, waiting in steps so that Ctrl-C or SIGTERM cancels them (an actor's calls end with it)."""
    import ray

    try:
        waiting = list(refs)
        while waiting:
            _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=2.0)
            raise_if_stopped()
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=force_cancel)
        raise
    return ray.get(refs)


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
