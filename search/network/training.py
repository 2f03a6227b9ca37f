"""Training one network on encoded arrays with Keras, without Ray: the recipe that trials, CV fits
and the final fit share (a trial adds reporting and checkpoints: search/tuning/trainable.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from search.compute import use_precision

EpochHook = Callable[[int, "np.ndarray | None", Callable[[], list[np.ndarray]]], bool]


def fit_network(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
                x_eval: np.ndarray | None = None, mixed_precision: bool = False,
                on_epoch: EpochHook | None = None) -> Any:
    """Train a fresh network for up to ``epochs`` (the CV and final fits); returns the model.

    After every epoch, ``on_epoch(epoch, p, weights)`` gets P(class 1) on ``x_eval`` (None without
    it) and a function that returns the network's weights now; it returns whether to go on (the CV
    stage's patience and deadlines).
    """
    import keras

    from search.network.hypermodel import uses_own_fit
    from search.network.mlp import build_network, resolve_config

    resolved = resolve_config(config)
    seed_rngs(seed)
    use_precision(mixed_precision)
    model = build_network(resolved, x.shape[1], seed=seed)
    batch_size = int(resolved["batch_size"])
    x, y = whole_batches(x, y, batch_size, seed)
    weights = class_weights(resolved, y)
    if keras.backend.backend() == "jax" and not uses_own_fit(resolved):
        from search.network.epoch_scan import EpochRunner

        runner = EpochRunner(model, x, y, batch_size, seed, weights, epochs_expected=epochs, x_eval=x_eval)
        for epoch in range(epochs):
            runner.train_epoch(epoch)
            if on_epoch is not None and not on_epoch(epoch, runner.evaluated,
                                                     lambda: [np.asarray(w) for w in runner.to_model().get_weights()]):
                break
        return runner.to_model()

    def after_epoch(epoch: int, logs: dict[str, Any] | None) -> None:
        probability = None if x_eval is None else np.asarray(model(x_eval, training=False)).ravel()
        weights = lambda: [np.asarray(w) for w in model.get_weights()]  # noqa: E731
        if on_epoch is not None and not on_epoch(epoch, probability, weights):
            model.stop_training = True

    keras_fit(resolved, model, x, y, epochs=epochs, class_weight=weights,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=after_epoch)])
    return model


def keras_fit(config: dict[str, Any], model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int,
              callbacks: list[Any], class_weight: dict[int, float] | None = None, initial_epoch: int = 0,
              validation_data: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """Keras' own loop: ``model.fit`` at the config's batch size, or the hypermodel's ``fit(hp, model, ...)``,
    which may choose its own (KerasTuner's convention). ``validation_data`` is what a hypermodel's fit
    that names it gets (the training rows where none is given: the CV and final fits)."""
    from search.network import hypermodel

    if hypermodel.uses_own_fit(config):
        return hypermodel.fit(config, model, x, y, epochs=epochs, callbacks=callbacks, initial_epoch=initial_epoch,
                              class_weight=class_weight, validation_data=validation_data or (x, y))
    return model.fit(x, y, batch_size=int(config["batch_size"]), epochs=epochs, callbacks=callbacks,
                     class_weight=class_weight, initial_epoch=initial_epoch, shuffle=True, verbose=0)


FoldsHook = Callable[[int, list[np.ndarray]], list[bool]]


def fit_folds(config: dict[str, Any], folds: list[tuple[np.ndarray, np.ndarray, np.ndarray]], epochs: int,
              seeds: list[int], mixed_precision: bool = False,
              on_epoch: FoldsHook | None = None) -> list[list[np.ndarray]]:
    """Train one network per fold, ``(x, y, x_eval)`` each, for up to ``epochs``, together in one compiled
    program (``epochs.FoldsRunner``, JAX only); fold ``f`` starts as :func:`fit_network` with ``seeds[f]``
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
