"""Training one network on encoded arrays with Keras, without Ray: the one loop that trials, CV fits
and the final fit share. Each caller adds its own hook (a trial reports and checkpoints,
search/tuning/trainable.py; a CV fit scores and stops early, search/selection/fold_fits.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.compute import use_precision


@dataclass(frozen=True)
class EpochEnd:
    """What a fit's hook sees after each step: an epoch, or a part of one where the fit has ``chunks``."""

    step: int  # steps done, counted from the fit's first (a restored fit counts on from its checkpoint)
    first_step: int  # the step this fit began at: 0, or the restored checkpoint's
    loss: float  # the step's mean training loss; -1 where a user's own training loop logs none
    probability: np.ndarray | None  # P(class 1) on ``x_eval`` after the step (None without it)
    seconds: float  # the step's own time, compile and evaluation included
    model: Any  # the network; on JAX its variables lag the compiled state until :meth:`synced`
    _sync: Callable[[], Any]  # brings them up to date: a host copy, so only where a hook asks

    def synced(self) -> Any:
        """The network with its variables brought up to date (for a checkpoint or its weights)."""
        return self._sync()

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(w) for w in self.synced().get_weights()]


EpochHook = Callable[[EpochEnd], bool]


def fit_network(config: dict[str, Any], x: np.ndarray, y: np.ndarray, steps: int, seed: int, *,
                x_eval: np.ndarray | None = None, mixed_precision: bool = False, on_epoch: EpochHook | None = None,
                chunks: int = 1, restore: Callable[[Any], int] | None = None, expected_epochs: float | None = None,
                validation_data: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """Train a fresh network for up to ``steps`` steps of an epoch each (of 1/``chunks`` of one, on JAX);
    returns the model, its variables up to date.

    After every step ``on_epoch(EpochEnd)`` returns whether to go on (a trial's divergence, the CV's
    patience and deadlines). ``restore(model)`` loads a checkpoint into the new network and returns the
    step to go on from. On JAX our MLP trains in compiled epoch programs (search/network/epoch_scan.py,
    ``expected_epochs`` sizes their compile); on TensorFlow, or with a hypermodel's own ``fit``, in Keras'
    loop. ``validation_data`` is what a hypermodel's fit that names it gets (the training rows without it).
    """
    import keras

    from search.network.hypermodel import uses_own_fit
    from search.network.mlp import build_network, resolve_config

    resolved = resolve_config(config)
    seed_rngs(seed)
    use_precision(mixed_precision)
    model = build_network(resolved, x.shape[1], seed=seed)
    start = restore(model) if restore is not None else 0
    batch_size = int(resolved["batch_size"])
    compiled = keras.backend.backend() == "jax" and not uses_own_fit(resolved)
    chunks = chunks if compiled else 1
    x, y = whole_batches(x, y, batch_size * chunks, seed)
    weights = class_weights(resolved, y)
    hook = on_epoch or (lambda end: True)
    if not compiled:
        return _keras_fit(resolved, model, x, y, steps, start, weights, x_eval, hook, validation_data or (x, y))
    from search.network.epoch_scan import EpochRunner

    runner = EpochRunner(model, x, y, batch_size, seed, weights, x_eval=x_eval, chunks=chunks,
                         epochs_expected=expected_epochs if expected_epochs is not None else steps / chunks)
    for step in range(start, steps):
        began = time.perf_counter()
        loss = runner.train_chunk(step // chunks, step % chunks)
        if not hook(EpochEnd(step + 1, start, loss, runner.evaluated, time.perf_counter() - began, model,
                             runner.to_model)):
            break
    return runner.to_model()


def _keras_fit(config: dict[str, Any], model: Any, x: np.ndarray, y: np.ndarray, steps: int, start: int,
               weights: dict[int, float] | None, x_eval: np.ndarray | None, hook: EpochHook,
               validation_data: tuple[np.ndarray, np.ndarray]) -> Any:
    """Keras' own loop: ``model.fit`` at the config's batch size, or the hypermodel's ``fit(hp, model, ...)``,
    which may choose its own (KerasTuner's convention); the hook runs from a Keras callback."""
    import keras

    from search.network import hypermodel

    class EpochHookCallback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            seconds = time.perf_counter() - self.began
            # the fit's own model: a hypermodel's own training loop may not set the callbacks' model
            probability = None if x_eval is None else np.asarray(model(x_eval, training=False)).ravel()
            loss = float((logs or {}).get("loss", -1.0))
            if not hook(EpochEnd(epoch + 1, start, loss, probability, seconds, model, lambda: model)):
                model.stop_training = True

    callbacks = [EpochHookCallback()]
    if hypermodel.uses_own_fit(config):
        hypermodel.fit(config, model, x, y, epochs=steps, callbacks=callbacks, initial_epoch=start,
                       class_weight=weights, validation_data=validation_data)
    else:
        model.fit(x, y, batch_size=int(config["batch_size"]), epochs=steps, callbacks=callbacks,
                  class_weight=weights, initial_epoch=start, shuffle=True, verbose=0)
    return model


FoldsHook = Callable[[int, list[np.ndarray]], list[bool]]


def fit_folds(config: dict[str, Any], folds: list[tuple[np.ndarray, np.ndarray, np.ndarray]], epochs: int,
              seeds: list[int], mixed_precision: bool = False,
              on_epoch: FoldsHook | None = None) -> list[list[np.ndarray]]:
    """Train one network per fold, ``(x, y, x_eval)`` each, for up to ``epochs``, together in one compiled
    program (``epoch_scan.FoldsRunner``, JAX only); fold ``f`` starts as :func:`fit_network` with ``seeds[f]``
    would. After every epoch, ``on_epoch(epoch, probabilities)`` gets each fold's P(class 1) on its
    ``x_eval`` and returns which folds still need training; training ends when none does. Returns each
    fold's weights at the end (a bagged ensemble member keeps them).
    """
    from search.network.epoch_scan import FoldsRunner
    from search.network.mlp import build_network, resolve_config

    resolved = resolve_config(config)
    use_precision(mixed_precision)
    batch_size = int(resolved["batch_size"])
    rows = max(len(x) + (-len(x)) % batch_size if len(x) > batch_size else len(x) for x, _, _ in folds)
    models, xs, ys, weights = [], [], [], []
    for (x, y, _), seed in zip(folds, seeds, strict=True):
        seed_rngs(seed)
        models.append(build_network(resolved, x.shape[1], seed=seed))
        x, y = whole_batches(x, y, batch_size, seed, rows=rows)
        xs.append(x)
        ys.append(y)
        weights.append(class_weights(resolved, y))
    runner = FoldsRunner(models, xs, ys, batch_size, seeds, weights, [x_eval for _, _, x_eval in folds], epochs)
    for epoch in range(epochs):
        runner.train_epoch(epoch)
        if on_epoch is not None and not any(on_epoch(epoch, runner.evaluated)):
            break
    return runner.fold_weights()


def seed_rngs(seed: int) -> None:
    """Seed what a fit draws from: Python's and NumPy's generators (Keras shuffles with NumPy on
    JAX) and, on TensorFlow, its own. The network seeds its weights and dropout itself (model.py).

    ``keras.utils.set_random_seed`` would import TensorFlow into every JAX worker to seed it:
    4 s and 200 MB per worker for nothing.
    """
    import random

    import keras

    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)


def class_weights(config: dict[str, Any], y: np.ndarray) -> dict[int, float] | None:
    """Keras' ``class_weight`` for ``balanced``: each class weighs n / (2 x its count), as in scikit-learn."""
    if config.get("class_weight") != "balanced":
        return None
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2)
    return {c: float(len(y) / (2 * counts[c])) for c in (0, 1) if counts[c]}


def whole_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                  rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad the rows with a few random repeats so that every batch is full (to ``rows`` rows, a whole
    number of batches at least as many as ``x`` has, where given: the CV's folds share one shape).

    A last, smaller batch has another shape, and every new shape costs one more trace (TensorFlow)
    or compile (JAX) per model: that was half of a new model's first epoch. At most
    ``batch_size - 1`` rows are repeated, chosen once per fit (``batch_size`` x the parts an epoch is
    trained in, for a trial that reports fractions of an epoch).
    """
    n = len(x)
    missing = (rows - n) if rows is not None else (-n) % batch_size if n > batch_size else 0
    if not missing:
        return x, y
    extra = np.random.default_rng(seed).choice(n, size=missing, replace=False)
    return np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])
