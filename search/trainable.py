"""One trial: fit a network on the encoded arrays and report the validation metrics every epoch.

This is the only module that talks to Ray Tune from inside a trial; Ray has renamed its
reporting API several times, so a Ray upgrade should touch only :func:`_report` here.

Faults: a trial whose loss becomes NaN or infinite stops at once and reports ``diverged=1``;
a trial whose code raises reports ``errored=1`` with the first line of the error and ends
normally, so that Ray retries (``FailureConfig``) only what the trial's code did not cause: a
lost worker or node. Every ``checkpoint_every`` epochs the weights, the optimizer state and the
epoch go into a Ray checkpoint (a NumPy ``.npz``, loaded without pickle), from which a retried
or resumed trial continues.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
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
    checkpoint_every: int = 0


STATE_FILE = "state.npz"


def train_trial(config: dict[str, Any], data: TrialData) -> None:
    """Ray Tune function trainable: one ``ray.tune.report`` per epoch, one ``training_iteration`` each."""
    _limit_threads(data.cpus)
    import keras

    from search.model import build_network, resolve_config

    try:
        _maybe_fail_for_tests(config)
        resolved = resolve_config({**data.fixed, **config})
        keras.utils.set_random_seed(data.seed)
        model = build_network(resolved, data.x_train.shape[1])
        start = _restore_state(model)
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=int(resolved["batch_size"]),
            initial_epoch=start,
            epochs=data.max_epochs,
            shuffle=True,
            verbose=0,
            callbacks=[_EpochReporter(data, start)],
        )
    except Exception as exc:
        if type(exc).__module__.startswith("ray"):
            raise  # Ray's own signals (a stop, a lost session) are Ray's to handle
        _report({**WORST, "loss": -1.0, "errored": 1, "diverged": 0, "error": _first_line(exc),
                 "node_id": _node_id()})


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


def _report(metrics: dict[str, Any], state_of: Any = None, epoch: int = 0) -> None:
    """Report one epoch's metrics; with ``state_of`` (a model), also a checkpoint of its state after ``epoch``."""
    from ray import tune

    if state_of is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="hpsearch-ckpt-") as folder:
        _save_state(state_of, epoch, Path(folder) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _save_state(model: Any, epoch: int, path: Path) -> None:
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    np.savez(path, epoch=np.int64(epoch), **arrays)


def _restore_state(model: Any) -> int:
    """Load the trial's last checkpoint into ``model``, if Ray gave one; returns the epoch to start at."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder, np.load(Path(folder) / STATE_FILE, allow_pickle=False) as state:
        n_weights = sum(k.startswith("w") for k in state.files)
        model.set_weights([state[f"w{i}"] for i in range(n_weights)])
        model.optimizer.build(model.trainable_variables)
        for i, variable in enumerate(model.optimizer.variables):
            variable.assign(state[f"o{i}"])
        return int(state["epoch"])


class _EpochReporter:
    """A Keras callback (duck-typed, built lazily) that scores the validation part each epoch."""

    def __new__(cls, data: TrialData, start: int) -> Any:
        import keras

        pause = float(os.environ.get("HPSEARCH_TEST_EPOCH_SECONDS", "0"))  # test-only: slow trials down

        class EpochReporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                loss = float((logs or {}).get("loss", np.nan))
                # A direct call avoids tracing a predict function for every new model.
                probability = np.asarray(self.model(data.x_val, training=False)).ravel()
                done = epoch + 1
                save = False
                if not np.isfinite(loss) or not np.all(np.isfinite(probability)):
                    scores = dict(WORST)
                    scores.update(loss=loss if np.isfinite(loss) else -1.0, diverged=1)
                    self.model.stop_training = True
                else:
                    scores = score_all(data.y_val, probability)
                    scores.update(loss=loss, diverged=0)
                    every = data.checkpoint_every
                    save = bool(every) and done % every == 0 and done < data.max_epochs
                scores.update(restored_from=start, errored=0, node_id=_node_id())
                if pause:
                    time.sleep(pause)
                _report(scores, state_of=self.model if save else None, epoch=done)

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


def _first_line(error: BaseException) -> str:
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _maybe_fail_for_tests(config: dict[str, Any]) -> None:
    """Test-only hook: raise in trials whose learning rate exceeds HPSEARCH_TEST_FAIL_ABOVE_LR."""
    limit = os.environ.get("HPSEARCH_TEST_FAIL_ABOVE_LR")
    if limit and float(config.get("learning_rate", 0)) > float(limit):
        raise RuntimeError("injected failure for tests")
