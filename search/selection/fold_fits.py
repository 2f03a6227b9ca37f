"""The CV stage's fits as Ray tasks: each fold's network trained, and scored on its held-out rows after
every epoch (search/selection/cv.py turns the scores into the winner).

Two ways, the same results (``tests/test_training.py`` checks it):

- **grouped** (small tables, JAX): one task per candidate trains all of its folds together as one
  compiled, vmapped program (``fit.fit_folds``). A fold fit on a few hundred rows is mostly its
  compile (0.2-0.5 s on 2 cores); 15 folds in one program pay it once. Every fold of a small table
  trains to ``max_epochs`` (no patience), so no fold waits on another.
- **one task per (candidate, fold)** otherwise: big tables' folds stop at their own epochs (patience),
  a hypermodel's own ``fit`` and TensorFlow train in Keras' loop, and the holdout rule keeps weights.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from search.compute import Compute, alive_nodes, cpu_slots, raise_if_stopped
from search.metrics import is_better, score_all
from search.progress import FitProgress, Stage

if TYPE_CHECKING:  # not at run time: a CV worker that imports this module needs no pandas (0.4 s)
    from search.data import Table

FOLDS_IN_FLIGHT = 2  # fold encodings alive at once for one-fold tasks (each one copy of the encoded table)
Plan = list[tuple[np.ndarray, np.ndarray]]


class FitWorkers:
    """Ray actors, one per CPU slot, that train a small table's grouped folds on one machine.

    A Ray task's worker imports Keras and JAX on its first fit: 3 s on 2 cores, a third of sonar's
    CV stage. These start before the CV (search/selection/head_start.py: while the search's last trials run), so
    the import is done when the folds come; the first then trains the final model and builds the export.
    Only on a one-node CPU cluster: there the actors take no CPU from Ray's accounting (the search's
    trials still hold it) and stay on the driver's machine.
    """

    def __init__(self, compute: Compute) -> None:
        self.compute, self.actors = compute, []

    def start(self) -> None:
        if self.actors or not self.possible(self.compute):
            return
        import ray

        worker = ray.remote(num_cpus=0, max_restarts=0)(_FoldsWorker)
        self.actors = [worker.remote(self.compute) for _ in range(cpu_slots(self.compute.cpus))]

    @staticmethod
    def possible(compute: Compute) -> bool:
        """Whether this session gets such actors: a one-node cluster without GPUs."""
        return not compute.gpus and alive_nodes() == 1

    @staticmethod
    def can_build(compute: Compute, schema: tuple[Any, ...]) -> bool:
        """Whether such an actor can build and check this table's exported model: Keras on JAX takes no
        string inputs (categorical columns), so those tables' models are built in the driver on TensorFlow."""
        return compute.backend != "jax" or all(f.kind == "numeric" for f in schema)

    def first(self) -> Any:
        """An actor for the final fit, or None."""
        return self.actors[0] if self.actors else None

    def builder(self, schema: tuple[Any, ...]) -> Any:
        """An actor for building the export of a table of ``schema``, or None (then the driver builds it)."""
        return self.first() if self.can_build(self.compute, schema) else None

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


class _FoldsWorker:
    def __init__(self, compute: Compute) -> None:
        from search.compute import use_backend

        use_backend(compute)
        import keras  # noqa: F401 (the import this actor is for)

    def fit(self, *args: Any) -> list[dict[str, Any]]:
        return fit_folds_and_predict(*args)

    def train_weights(self, *args: Any) -> tuple[list[np.ndarray], int]:
        from search.selection.final_fit import train_weights

        return train_weights(*args)

    def train_fold_weights(self, *args: Any) -> list[tuple[list[np.ndarray], int]]:
        from search.selection.final_fit import train_fold_weights

        return train_fold_weights(*args)

    def build_model(self, *args: Any) -> Any:
        from search.compute import use_precision
        from search.export import build_model

        use_precision(False)  # the exported network is float32, whatever the last fit trained in
        return build_model(*args)


def run_fits(table: Table, plan: Plan, candidates: list[Any], metric: str, seed: int, compute: Compute,
             max_epochs: int, patience: int, deadline: float, *, keep_weights: bool,
             on_progress: Callable[[FitProgress], None] | None,
             workers: FitWorkers | None = None) -> tuple[dict[tuple[int, int], dict], dict]:
    """Every (candidate, fold) fit's output, and (with ``keep_weights``) the folds' preprocessing.
    Grouped folds go to ``workers``' actors when it has any, else to Ray tasks."""
    import ray

    grouped = (not keep_weights and patience >= max_epochs and compute.backend == "jax"
               and not any(_own_fit(c.hyperparameters) for c in candidates))
    slots = cpu_slots(compute.cpus)
    actors = workers.actors if workers is not None and grouped else []
    tasks = functools.partial(_grouped_tasks, actors=actors) if grouped else _fold_tasks
    outputs: dict[tuple[int, int], dict] = {}
    preprocessors: dict[int, Any] = {}
    pending: dict[Any, list[tuple[int, int]]] = {}
    durations: list[float] = []
    total = len(candidates) * len(plan)
    try:
        for ref, fits, pre in tasks(table, plan, candidates, metric, seed, compute, max_epochs, patience, deadline,
                                    keep_weights, slots):
            if ref is not None:
                pending[ref] = fits
            preprocessors.update(pre)
            # a None after each fold's fits: encode the next fold once fewer than FOLDS_IN_FLIGHT are alive
            while ref is None and len(pending) > (FOLDS_IN_FLIGHT - 1) * len(candidates):
                _collect(pending, outputs, durations)
                _progress(on_progress, outputs, total, durations, deadline, slots, metric)
        while pending:
            _collect(pending, outputs, durations)
            _progress(on_progress, outputs, total, durations, deadline, slots, metric)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=not actors)  # an actor's calls end with it (FitWorkers.close)
        raise
    return outputs, preprocessors


def _fold_tasks(table: Table, plan: Plan, candidates: list[Any], metric: str, seed: int, compute: Compute,
                max_epochs: int, patience: int, deadline: float, keep_weights: bool, slots: int) -> Any:
    """One task per (candidate, fold); a fold is encoded when its turn comes (then a ``None`` ref asks
    the caller to wait for fits to finish first)."""
    import ray

    remote = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus, max_retries=1)(fit_and_predict)
    for f, (train_rows, eval_rows) in enumerate(plan):
        pre, x_tr, x_va = encode_fold(table, train_rows, eval_rows)
        refs = ray.put(x_tr), ray.put(x_va)
        for c, cand in enumerate(candidates):
            ref = remote.remote(cand.hyperparameters, refs[0], table.y[train_rows].astype(np.float32), refs[1],
                                table.y[eval_rows], max_epochs, seed + f, compute, metric, patience, deadline,
                                keep_weights, f > 0 or c > 0)
            yield ref, [(c, f)], ({f: pre} if keep_weights else {})
        yield None, [], {}


def _grouped_tasks(table: Table, plan: Plan, candidates: list[Any], metric: str, seed: int, compute: Compute,
                   max_epochs: int, patience: int, deadline: float, keep_weights: bool, slots: int,
                   actors: list[Any]) -> Any:
    """One task per candidate (or per part of its folds, so that every slot has work) for all its folds,
    on the ``actors`` in turn when there are any."""
    import ray

    remote = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus, max_retries=1)(fit_folds_and_predict)
    turn = itertools.cycle(actors)
    # small tables: every fold's arrays travel with the task (Ray resolves only top-level refs)
    folds = [(*encode_fold(table, tr, va)[1:], tr, va) for tr, va in plan]
    folds = [(x_tr, table.y[tr].astype(np.float32), x_va, table.y[va]) for x_tr, x_va, tr, va in folds]
    # each fold's own preprocessing may give it another width (a missing-value indicator, a category
    # its rows lack): only folds of one width share a program. Each such set in as many parts as there
    # are slots, the costliest candidate's first: a wide network on a few hundred rows is bound by its
    # training, not its compile (sonar: a 4x507 network's 15 folds take 10 s on one core, a 1x105
    # one's 1 s), and its parts must not wait in line.
    widths: dict[int, list[int]] = {}
    for f, fold in enumerate(folds):
        widths.setdefault(fold[0].shape[1], []).append(f)
    parts = max(1, min(len(plan), slots))
    groups = [[int(f) for f in g] for same in widths.values()
              for g in np.array_split(np.asarray(same), min(parts, len(same)))]
    for c, cand in sorted(enumerate(candidates), key=lambda item: -_training_cost(item[1].hyperparameters)):
        for group in groups:
            args = (cand.hyperparameters, [folds[f] for f in group], max_epochs, [seed + f for f in group],
                    compute, metric, deadline, c > 0 or group[0] > 0)
            ref = next(turn).fit.remote(*args) if actors else remote.remote(*args)
            yield ref, [(c, f) for f in group], {}


def _collect(pending: dict[Any, list[tuple[int, int]]], outputs: dict, durations: list[float]) -> None:
    import ray

    ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
    raise_if_stopped()
    for ref in ready:
        fits = pending.pop(ref)
        got = ray.get(ref)
        for fit, out in zip(fits, got if isinstance(got, list) else [got], strict=True):
            outputs[fit] = out
            durations.append((out["ended"] - out["started"]) / len(fits))


def _progress(on_progress: Callable[[FitProgress], None] | None, outputs: dict, total: int, durations: list[float],
              deadline: float, slots: int, metric: str) -> None:
    if on_progress is None:
        return
    left = None
    if durations:
        rounds = math.ceil((total - len(outputs)) / slots)
        left = min(max(0.0, deadline - time.time()), float(np.mean(durations)) * rounds)
    on_progress(FitProgress(Stage.CV, len(outputs), total, left, metric=metric))


def _training_cost(config: dict[str, Any]) -> float:
    """A built-in network's multiply-adds per row (depth x width^2); 0 for a hypermodel's (unknown)."""
    if "depth" not in config or "width" not in config:
        return 0.0
    return float(config["depth"]) * float(config["width"]) ** 2


def _own_fit(config: dict[str, Any]) -> bool:
    from search.network import uses_own_fit

    return uses_own_fit(config)


class FoldScores:
    """One fold fit's held-out probabilities and scores per epoch, its best epoch (and weights), and
    whether it goes on: not after a NaN or infinite prediction, ``patience`` epochs without a better
    score, or when its next epoch would end past ``deadline``."""

    def __init__(self, y_eval: np.ndarray, metric: str, patience: int, deadline: float, keep_weights: bool) -> None:
        self.y_eval, self.metric, self.patience, self.deadline, self.keep_weights = (y_eval, metric, patience,
                                                                                     deadline, keep_weights)
        self.curve: list[np.ndarray] = []
        self.scores: list[float] = []
        self.best, self.at, self.weights, self.stopped, self.diverged = None, 0, None, "max_epochs", False
        self.going = True
        self.started = self.last = time.time()

    def update(self, epoch: int, probability: np.ndarray | None,
               weights: Callable[[], list[np.ndarray]] | None = None) -> bool:
        if not self.going:
            return False
        now = time.time()
        took, self.last = now - self.last, now
        self.going = self._going_on(epoch, probability, weights, now + took)
        return self.going

    def _going_on(self, epoch: int, probability: np.ndarray | None, weights: Any, next_end: float) -> bool:
        if probability is None or not np.all(np.isfinite(probability)):
            self.stopped, self.diverged = "diverged", not self.curve
            return False
        self.curve.append(probability.astype(np.float32))
        self.scores.append(score_all(self.y_eval, probability)[self.metric])
        if self.best is None or is_better(self.scores[-1], self.best, self.metric):
            self.best, self.at = self.scores[-1], epoch
            if self.keep_weights and weights is not None:
                self.weights = weights()
        if epoch - self.at >= self.patience:
            self.stopped = "patience"
            return False
        if next_end > self.deadline:
            self.stopped = "deadline"
            return False
        return True

    def output(self, node: str, device: str, started: float) -> dict[str, Any]:
        empty = np.zeros((0, len(self.y_eval)), np.float32)
        return {"probability": np.stack(self.curve) if self.curve else empty, "scores": self.scores,
                "weights": self.weights, "stopped": self.stopped, "diverged": self.diverged, "skipped": False,
                "started": started, "ended": time.time(), "node": node, "device": device}


def _skipped(rows: int, started: float, node: str) -> dict[str, Any]:
    return {"probability": np.zeros((0, rows), np.float32), "scores": [], "weights": None,
            "stopped": "skipped: the stage's time ran out before it started", "diverged": False, "skipped": True,
            "started": started, "ended": started, "node": node, "device": ""}


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def fit_and_predict(config: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray,
                    y_eval: np.ndarray, max_epochs: int, seed: int, compute: Compute, metric: str, patience: int,
                    deadline: float, keep_weights: bool = False, skippable: bool = False) -> dict[str, Any]:
    """Train one network (a Ray task), scoring ``x_eval`` after every epoch (see :class:`FoldScores`).
    A ``skippable`` fit (any but the best candidate's first fold) that starts past ``deadline`` trains nothing.

    Returns the probabilities after each epoch (epochs x rows, float32), the scores, why it stopped,
    and with ``keep_weights`` the network's weights at its best epoch.
    """
    from search.compute import use_backend
    from search.network import fit_network

    started, node = time.time(), _node()
    if skippable and started >= deadline:  # queued behind other fits until the stage's time ran out
        return _skipped(len(y_eval), started, node)
    device = use_backend(compute)
    scores = FoldScores(y_eval, metric, patience, deadline, keep_weights)
    fit_network(config, x_train, y_train, max_epochs, seed, x_eval=x_eval, mixed_precision=compute.mixed_precision,
                on_epoch=lambda end: scores.update(end.step - 1, end.probability, end.weights))
    return scores.output(node, device, started)


def fit_folds_and_predict(config: dict[str, Any], folds: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                          max_epochs: int, seeds: list[int], compute: Compute, metric: str, deadline: float,
                          skippable: bool = False) -> list[dict[str, Any]]:
    """Train one network per fold ``(x_train, y_train, x_eval, y_eval)`` together (a Ray task, ``network.fit_folds``),
    each scored as :func:`fit_and_predict` scores its one; their outputs, in order."""
    from search.compute import use_backend
    from search.network import fit_folds

    started, node = time.time(), _node()
    if skippable and started >= deadline:
        return [_skipped(len(y_eval), started, node) for *_, y_eval in folds]
    device = use_backend(compute)
    tracked = [FoldScores(y_eval, metric, max_epochs, deadline, False) for *_, y_eval in folds]
    fit_folds(config, [(x, y, x_eval) for x, y, x_eval, _ in folds], max_epochs, seeds,
              mixed_precision=compute.mixed_precision,
              on_epoch=lambda epoch, probabilities: [t.update(epoch, p) for t, p in zip(tracked, probabilities,
                                                                                        strict=True)])
    return [t.output(node, device, started) for t in tracked]


def encode_fold(table: Table, train_rows: np.ndarray, eval_rows: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """The preprocessing's statistics from ``train_rows`` alone, and both parts encoded with them."""
    from search.data import fit_and_encode

    pre, (x_train, x_eval) = fit_and_encode(table.features.iloc[train_rows], table.schema,
                                            table.features.iloc[eval_rows])
    return pre, x_train, x_eval
