"""The final model, by the final-fit stage's deadline: the winner's network trained on all non-test rows
(or, under the holdout rule, its CV fit at its best epoch); an ensemble's members bagged, each as its
fold models: trained on the CV folds' training rows, each fold with its own preprocessing.

Why bagged members and not each refitted on all rows: on pima, spam7 and Benefits the bagged ensemble's
test ROC AUC was ahead on all three (0.8746 against 0.8678, 0.9243 against 0.9215, 0.6790 against
0.6681; bench/README.md, "Members: refitted or bagged"), as AutoGluon's bagged models are. A fold model
is trained as the CV trained that fold (its rows, its seed, the member's CV epochs), so its held-out
probabilities are the out-of-fold ones the selection chose it on."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from search.compute import Compute, raise_if_stopped
from search.data import Feature, PreprocessStats, Table
from search.selection.ensemble import NO_ENSEMBLE

if TYPE_CHECKING:
    from search.network import EpochEnd

Fold = tuple[np.ndarray, np.ndarray, np.ndarray]  # a fold's (x, y, x_eval)
Trained = tuple[list[np.ndarray], int]  # a network's weights and the epochs it trained


@dataclass(frozen=True)
class TrainedNetwork:
    """One exported network: its CV candidate's id and configuration, its weight in the model's mean
    (1 alone), its trained weights, the epochs they trained, and which of the model's preprocessings
    (``FinalModel.preprocessings``) encodes its input."""

    trial_id: str
    config: dict[str, Any]
    share: float
    weights: list[np.ndarray]
    epochs: int
    preprocessing: int = 0


@dataclass(frozen=True)
class FinalModel:
    """The export's parts: the fitted preprocessings (one the networks share, or one per CV fold for
    bagged members), the networks (the winner, or the ensemble members' networks, heaviest member
    first), and on which rows they trained (in words)."""

    preprocessings: tuple[PreprocessStats, ...]
    networks: tuple[TrainedNetwork, ...]
    trained_on: str

    @property
    def epochs(self) -> int:
        return self.networks[0].epochs


def fit_final_model(cv: Any, table: Table, rows: np.ndarray, seed: int, compute: Compute,
                    deadline: float, workers: Any = None) -> FinalModel:
    """The exported networks' preprocessing and their weights: with the holdout rule each one's CV fit
    at its best epoch; an ensemble's members bagged (:func:`_bagged`), and so the winner alone where
    the ensemble was not kept; with ``--no-ensemble`` (or a winner the deadline cut short) the winner
    fitted on all non-test rows for the epochs CV chose (fewer if the budget runs out). Fits run all at once, on
    ``workers``' actors (the CV's ``FitWorkers``, Keras imported) when it has any, else as Ray tasks."""
    from search.data import fit_and_encode

    members = cv.member_candidates()
    shares = [m.weight for m in cv.ensemble.members]
    if cv.rule == "holdout":
        return FinalModel((cv.final_preprocessor,),
                          tuple(TrainedNetwork(m.trial_id, m.hyperparameters, share, cv.holdout_weights[m.trial_id],
                                               m.epochs) for m, share in zip(members, shares, strict=True)),
                          "the training part (its holdout fit, best epoch kept)")
    if cv.ensemble.chosen or _bags_its_winner(cv):
        return _bagged(cv, table, seed, compute, deadline, workers)
    stats, (x,) = fit_and_encode(table.features.iloc[rows], table.schema)
    y = table.y[rows].astype(np.float32)
    # the winner keeps the run's seed (the single network's fit is today's); other members get their own
    trained = fit_final([(m.hyperparameters, m.epochs) for m in members], x, y, seed, compute, deadline, workers)
    networks = tuple(TrainedNetwork(m.trial_id, m.hyperparameters, share, weights, epochs)
                     for m, share, (weights, epochs) in zip(members, shares, trained, strict=True))
    short = [f"{n.trial_id} at epoch {n.epochs} of {m.epochs}" for n, m in zip(networks, members, strict=True)
             if n.epochs < m.epochs]
    note = "all non-test rows" + (f" (stopped by the budget: {', '.join(short)})" if short else "")
    return FinalModel((stats,), networks, note)


def _bags_its_winner(cv: Any) -> bool:
    """Whether the winner alone is exported as its fold models, as an ensemble's members are: bagged,
    caravan seed 0's winner scored 0.7702 on the test part, refitted on all rows 0.7618 (bench/README.md,
    "... and the winner alone bagged, 2026-12-07"). Not with ``--no-ensemble`` (one small network) or where the deadline
    left the winner without a fold."""
    scored = cv.score_of(cv.winner.trial_id)
    return cv.ensemble.reason != NO_ENSEMBLE and not scored.skipped_folds and not scored.diverged_folds


def _bagged(cv: Any, table: Table, seed: int, compute: Compute, deadline: float, workers: Any) -> FinalModel:
    """The ensemble's members (or the winner alone) as fold models: each member trained on each fold of the
    CV's first repeat (every non-test row held out once), as the CV trained it; a member's share split
    evenly over its folds."""
    from search.data import fit_and_encode

    plan = cv.plan[: cv.folds]
    stats, folds = [], []
    for train_rows, eval_rows in plan:
        fitted, (x, x_eval) = fit_and_encode(table.features.iloc[train_rows], table.schema,
                                             table.features.iloc[eval_rows])
        stats.append(fitted)
        folds.append((x, table.y[train_rows].astype(np.float32), x_eval))
    members = cv.member_candidates()
    shares = [m.weight for m in cv.ensemble.members]
    trained = fit_bagged([(m.hyperparameters, m.epochs) for m in members], folds, seed, compute, deadline, workers)
    networks = tuple(TrainedNetwork(m.trial_id, m.hyperparameters, share / len(plan), weights, epochs, f)
                     for m, share, fits in zip(members, shares, trained, strict=True)
                     for f, (weights, epochs) in enumerate(fits))
    short = sorted({f"{n.trial_id} at epoch {n.epochs} of {m.epochs}" for n, m in
                    zip(networks, [m for m in members for _ in plan], strict=True) if n.epochs < m.epochs})
    note = (f"bagged: {'each member' if len(members) > 1 else 'the winner'}'s {len(plan)} fold models, trained "
            "on the CV folds' training rows"
            + (f" (stopped by the budget: {', '.join(short)})" if short else ""))
    return FinalModel(tuple(stats), networks, note)


def fit_bagged(fits: list[tuple[dict[str, Any], int]], folds: list[Fold], seed: int, compute: Compute,
               deadline: float, workers: Any = None) -> list[list[Trained]]:
    """Each ``(config, epochs)`` trained on every fold ``(x, y, x_eval)``, fold ``f`` with the CV's seed
    ``seed + f``: one Ray task (or ``workers``' actor call) per member for all its folds. Per member, each
    fold's float32 weights and the epochs it trained (fewer when the next would end past ``deadline``)."""
    import itertools

    import ray

    actors = list(getattr(workers, "actors", None) or [])
    remote = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus)(train_fold_weights)
    turn = itertools.cycle(actors)
    folds_ref = ray.put(folds)
    seeds = [seed + f for f in range(len(folds))]
    refs = [next(turn).train_fold_weights.remote(config, folds_ref, epochs, seeds, compute, deadline) if actors
            else remote.remote(config, folds_ref, epochs, seeds, compute, deadline) for config, epochs in fits]
    return _results(refs, force_cancel=not actors)


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

    networks = [(n.config, n.weights, n.share, n.preprocessing) for n in final.networks]
    args = (final.preprocessings, schema, networks, check, test)
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

    def on_epoch(end: EpochEnd) -> bool:
        now = time.time()
        took, last[0] = now - last[0], now
        trained[0] = end.step
        return now + took <= deadline

    model = fit_network(config, x, y, epochs, seed, mixed_precision=compute.mixed_precision, on_epoch=on_epoch)
    return [np.asarray(w) for w in model.get_weights()], trained[0]


def train_fold_weights(config: dict[str, Any], folds: list[Fold], epochs: int, seeds: list[int], compute: Compute,
                       deadline: float = math.inf) -> list[Trained]:
    """Fit one network per fold ``(x, y, x_eval)`` (a Ray task): on JAX the folds of one encoded width
    together in one compiled program (``network.fit_folds``, as the CV's grouped folds), else one by one.
    Each fold's weights (float32) and the epochs it trained."""
    from search.compute import use_backend
    from search.network import fit_folds, uses_own_fit

    use_backend(compute)
    if compute.backend != "jax" or uses_own_fit(config):
        return [train_weights(config, x, y, epochs, s, compute, deadline) for (x, y, _), s in zip(folds, seeds,
                                                                                                    strict=True)]
    out: list[Trained] = [([], 0)] * len(folds)
    widths: dict[int, list[int]] = {}
    for f, (x, _, _) in enumerate(folds):
        widths.setdefault(x.shape[1], []).append(f)
    for group in widths.values():
        trained, last = [0], [time.time()]

        def on_epoch(epoch: int, _: Any, group: list[int] = group, trained: list[int] = trained,
                     last: list[float] = last) -> list[bool]:
            now = time.time()
            took, last[0] = now - last[0], now
            trained[0] = epoch + 1
            return [now + took <= deadline] * len(group)

        weights = fit_folds(config, [folds[f] for f in group], epochs, [seeds[f] for f in group],
                            mixed_precision=compute.mixed_precision, on_epoch=on_epoch)
        for f, w in zip(group, weights, strict=True):
            out[f] = ([np.asarray(v, np.float32) for v in w], trained[0])
    return out
