"""One trial: fit a network on the encoded arrays and report the validation metrics every epoch.

This is the only module that talks to Ray Tune from inside a trial; Ray has renamed its
reporting API several times, so a Ray upgrade should touch only :func:`_report` here.
A trial whose loss becomes NaN or infinite stops at once and reports ``diverged=1``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.metrics import WORST, score_all

_threads_limited = False


@dataclass(frozen=True)
class TrialData:
    """What every trial receives, once, through Ray's object store."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    metric: str
    max_epochs: int
    seed: int
    cpus: float
    fixed: dict[str, Any]


def train_trial(config: dict[str, Any], data: TrialData) -> None:
    """Ray Tune function trainable: one ``ray.tune.report`` per epoch, one ``training_iteration`` each."""
    _limit_threads(data.cpus)
    import keras

    from search.model import build_network, resolve_config

    _maybe_fail_for_tests(config)
    resolved = resolve_config({**data.fixed, **config})
    keras.utils.set_random_seed(data.seed)
    model = build_network(resolved, data.x_train.shape[1])
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=int(resolved["batch_size"]),
        epochs=data.max_epochs,
        shuffle=True,
        verbose=0,
        callbacks=[_EpochReporter(data)],
    )


def fit_network(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
                cpus: float = 1.0) -> Any:
    """Train a fresh network for a fixed number of epochs (the retrain and final fits)."""
    _limit_threads(cpus)
    import keras

    from search.model import build_network, resolve_config

    resolved = resolve_config(config)
    keras.utils.set_random_seed(seed)
    model = build_network(resolved, x.shape[1])
    model.fit(x, y, batch_size=int(resolved["batch_size"]), epochs=epochs, shuffle=True, verbose=0)
    return model


def _report(metrics: dict[str, Any]) -> None:
    from ray import tune

    tune.report(metrics)


class _EpochReporter:
    """A Keras callback (duck-typed, built lazily) that scores the validation part each epoch."""

    def __new__(cls, data: TrialData) -> Any:
        import keras

        class EpochReporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                loss = float((logs or {}).get("loss", np.nan))
                # A direct call avoids tracing a predict function for every new model.
                probability = np.asarray(self.model(data.x_val, training=False)).ravel()
                if not np.isfinite(loss) or not np.all(np.isfinite(probability)):
                    scores = dict(WORST)
                    scores.update(loss=loss if np.isfinite(loss) else -1.0, diverged=1)
                    self.model.stop_training = True
                else:
                    scores = score_all(data.y_val, probability)
                    scores.update(loss=loss, diverged=0)
                scores["node_id"] = _node_id()
                _report(scores)

        return EpochReporter()


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _limit_threads(cpus: float) -> None:
    """Size TensorFlow's pools to the trial's CPU share, once per (reused) worker process."""
    global _threads_limited
    if _threads_limited:
        return
    _threads_limited = True
    n = max(1, int(round(cpus)))
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # TensorFlow was initialised already in this process
        pass


def _maybe_fail_for_tests(config: dict[str, Any]) -> None:
    """Test-only hook: raise in trials whose learning rate exceeds HPSEARCH_TEST_FAIL_ABOVE_LR."""
    limit = os.environ.get("HPSEARCH_TEST_FAIL_ABOVE_LR")
    if limit and float(config.get("learning_rate", 0)) > float(limit):
        raise RuntimeError("injected failure for tests")
