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

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.devices import Compute, confirm_gpu, set_up_worker, use_precision
from search.metrics import WORST, score_all

_worker_device: str | None = None  # this worker's devices in words, once set up
# One Eigen thread per 1-CPU trial: two trials do not fight over cores. (Each network's XLA
# optimisation level is chosen where it is compiled: search/epochs.py.)
SINGLE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)
# Keras imports these when it can, for what a trial never uses (plots, its scikit-learn wrapper,
# DataFrame inputs): 2.3 s of its 3.3 s import in every worker (python -X importtime).
KERAS_OPTIONAL_IMPORTS = ("matplotlib", "sklearn", "pandas")
# A worker that a JAX trial starts in with more private memory than this drops JAX's compiled programs.
JAX_WORKER_MEMORY_MB = 450


@dataclass(frozen=True)
class TrialData:
    """What every trial receives, once, through Ray's object store."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    metric: str
    max_epochs: float
    seed: int
    fixed: dict[str, Any]
    checkpoint_every: int = 0
    compute: Compute = Compute()
    reports_per_epoch: int = 1  # a trial reports (and ASHA decides) this many times per epoch

    @property
    def max_reports(self) -> int:
        return int(math.ceil(self.max_epochs * self.reports_per_epoch - 1e-9))


STATE_FILE = "state.npz"


def train_trial(config: dict[str, Any], data: TrialData) -> None:
    """Ray Tune function trainable: one ``ray.tune.report`` per epoch, one ``training_iteration`` each."""
    device = use_backend(data.compute)

    from search.model import build_network, resolve_config

    try:
        resolved = resolve_config({**data.fixed, **config})
        seed_rngs(data.seed)
        use_precision(data.compute.mixed_precision)
        model = build_network(resolved, data.x_train.shape[1], seed=data.seed)
        start = _restore_state(model)
        batch_size = int(resolved["batch_size"])
        chunks = data.reports_per_epoch if data.compute.backend == "jax" else 1
        x_train, y_train = whole_batches(data.x_train, data.y_train, batch_size * chunks, data.seed)
        weights = class_weights(resolved, y_train)
        if data.compute.backend == "jax":
            _train_jax_trial(model, x_train, y_train, batch_size, weights, start, data, device)
            return
        model.fit(x_train, y_train, batch_size=batch_size, initial_epoch=start, epochs=data.max_reports,
                  class_weight=weights, shuffle=True, verbose=0, callbacks=[_EpochReporter(data, start, device)])
    except Exception as exc:
        if type(exc).__module__.startswith("ray"):
            raise  # Ray's own signals (a stop, a lost session) are Ray's to handle
        _report({**WORST, "loss": -1.0, "errored": 1, "diverged": 0, "error": _first_line(exc),
                 "node_id": _node_id(), "device": device})


def _train_jax_trial(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int, weights: dict[int, float] | None,
                     start: int, data: TrialData, device: str) -> None:
    """The trial's epochs on JAX, each one compiled call per report (search/epochs.py), scored and reported."""
    from search.epochs import TRIAL_EPOCHS_EXPECTED, EpochRunner

    per_epoch = data.reports_per_epoch
    runner = EpochRunner(model, x, y, batch_size, data.seed, weights, x_eval=data.x_val, chunks=per_epoch,
                         epochs_expected=min(TRIAL_EPOCHS_EXPECTED, data.max_epochs))
    for report in range(start, data.max_reports):
        began = time.perf_counter()
        loss = runner.train_chunk(report // per_epoch, report % per_epoch)
        train_seconds = time.perf_counter() - began  # compile and validation included
        if not _score_and_report(data, loss, runner.evaluated, report + 1, start, device, train_seconds,
                                 model, save=runner.to_model):
            return


def _score_and_report(data: TrialData, loss: float, probability: np.ndarray, done: int, start: int, device: str,
                      train_seconds: float, model: Any, save: Callable[[], Any] = lambda: None) -> bool:
    """Score the validation rows after report ``done`` and report it, with the epochs trained so far
    (ASHA's time unit), and a checkpoint every ``checkpoint_every`` epochs (``save`` first brings the
    model's variables up to date).
    Returns whether training goes on: not after a NaN or infinite loss or prediction."""
    import keras

    keep_going = True
    checkpoint = False
    if not np.isfinite(loss) or not np.all(np.isfinite(probability)):
        scores = dict(WORST)
        scores.update(loss=loss if np.isfinite(loss) else -1.0, diverged=1)
        keep_going = False
    else:
        scores = score_all(data.y_val, probability)
        scores.update(loss=loss, diverged=0)
        every = data.checkpoint_every * data.reports_per_epoch
        checkpoint = bool(every) and done % every == 0 and done < data.max_reports
    scores.update(epoch=done / data.reports_per_epoch, restored_from=start, errored=0, node_id=_node_id(),
                  train_seconds=train_seconds, device=device,
                  compute_dtype=model.layers[1].compute_dtype, backend=keras.backend.backend())
    if checkpoint:
        save()
    _report(scores, state_of=model if checkpoint else None, epoch=done)
    return keep_going


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

    from search.model import build_network, resolve_config

    resolved = resolve_config(config)
    seed_rngs(seed)
    use_precision(mixed_precision)
    model = build_network(resolved, x.shape[1], seed=seed)
    batch_size = int(resolved["batch_size"])
    x, y = whole_batches(x, y, batch_size, seed)
    weights = class_weights(resolved, y)
    if keras.backend.backend() == "jax":
        from search.epochs import EpochRunner

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

    model.fit(x, y, batch_size=batch_size, epochs=epochs, class_weight=weights, shuffle=True, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=after_epoch)])
    return model


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


def whole_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad the rows with a few random repeats so that every batch is full.

    A last, smaller batch has another shape, and every new shape costs one more trace (TensorFlow)
    or compile (JAX) per model: that was half of a new model's first epoch. At most
    ``batch_size - 1`` rows are repeated, chosen once per fit (``batch_size`` x the parts an epoch is
    trained in, for a trial that reports fractions of an epoch).
    """
    n = len(x)
    missing = (-n) % batch_size if n > batch_size else 0
    if not missing:
        return x, y
    extra = np.random.default_rng(seed).choice(n, size=missing, replace=False)
    return np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])


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


class NewestCheckpointFallback:
    """Ray trainable mixin: resume from the trial's newest checkpoint when the recorded one is gone.

    Ray deletes a trial's older checkpoint (``num_to_keep=1``) as it registers a newer one, and
    saves the experiment state a moment later; a driver killed in between leaves a state that names
    the deleted checkpoint, and ``Tuner.restore`` would fail the trial ("does not exist on storage
    anymore"). The newer checkpoint is on storage and holds its own epoch; with none, the trial
    starts again from its first epoch.
    """

    def restore(self, checkpoint_path: Any) -> None:
        try:
            super().restore(checkpoint_path)
        except ValueError as exc:
            if "does not exist on storage" not in str(exc):
                raise
            newest = _newest_checkpoint_beside(checkpoint_path.checkpoint)
            if newest is not None:
                super().restore(newest)
            else:  # Ray had already counted the missing checkpoint's epochs: count from the start
                self._iteration, self._time_total = 0, 0.0


def _newest_checkpoint_beside(missing: Any) -> Any:
    """The newest ``checkpoint_*`` folder with a state file next to ``missing``, as Ray's training
    result (the epoch from the file: one report per epoch), or None."""
    from pyarrow import fs as pafs
    from ray import tune
    from ray.train._internal.session import _TrainingResult

    parent = missing.path.rstrip("/").rsplit("/", 1)[0]
    found = missing.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    folders = sorted((f.path for f in found if f.type == pafs.FileType.Directory
                      and f.base_name.startswith("checkpoint_")), reverse=True)
    for folder in folders:
        checkpoint = tune.Checkpoint(folder, filesystem=missing.filesystem)
        try:
            with checkpoint.as_directory() as local, np.load(Path(local) / STATE_FILE, allow_pickle=False) as state:
                epoch = int(state["epoch"])
        except (OSError, KeyError, ValueError):  # a checkpoint cut short when the driver was killed
            continue
        return _TrainingResult(checkpoint=checkpoint, metrics={"training_iteration": epoch})
    return None


train_trial.__mixins__ = (NewestCheckpointFallback,)  # read by Ray's wrap_function


class _EpochReporter:
    """A Keras callback (duck-typed, built lazily) that scores and reports each epoch of a TensorFlow fit."""

    def __new__(cls, data: TrialData, start: int, device: str) -> Any:
        import keras

        class EpochReporter(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                self.began = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                train_seconds = time.perf_counter() - self.began  # the fit's own time, compile included
                loss = float((logs or {}).get("loss", np.nan))
                probability = np.asarray(self.model(data.x_val, training=False)).ravel()
                if not _score_and_report(data, loss, probability, epoch + 1, start, device, train_seconds,
                                         self.model):
                    self.model.stop_training = True

        return EpochReporter()


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def use_backend(compute: Compute) -> str:
    """Set up this worker once: its devices, Keras' backend, threads sized to the CPU share, JAX's
    compile cache; returns the worker's devices in words (``CPU``, ``GPU 0``). Called at the start
    of every trial and fit, it also keeps a reused JAX worker's memory bounded.

    Keras reads ``KERAS_BACKEND`` when it is first imported, and CUDA its visible devices when first
    loaded, so this runs before any Keras import in the worker process (which Ray reuses across
    trials and retrain tasks of the same run).
    """
    global _worker_device
    if _worker_device is not None:
        _forget_compiled_models(compute.backend)
        return _worker_device
    import sys

    backend = compute.backend
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise RuntimeError(f"this worker already runs Keras on {keras.backend.backend()}, not {backend}")
    os.environ["KERAS_BACKEND"] = backend
    device = set_up_worker(compute)
    n = max(1, int(round(compute.cpus)))
    if backend == "jax":
        if device == "CPU":
            _add_xla_flags(SINGLE_THREAD_FLAGS if n == 1 else ())
            # XLA's CPU client sizes its thread pool from this (else from every core of the machine:
            # 16 one-CPU trials on 16 cores ran 16 threads each, and each epoch 6x slower than alone)
            os.environ.setdefault("PJRT_NPROC", str(n))
        _use_compile_cache()
    else:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow was initialised already in this process
            pass
    _worker_device = confirm_gpu(backend, device)
    with modules_hidden(KERAS_OPTIONAL_IMPORTS):
        import keras  # noqa: F401  (here, once, without what a worker never uses)
    return _worker_device


@contextmanager
def modules_hidden(names: tuple[str, ...]) -> Iterator[None]:
    """Inside the block, ``import name`` fails for each of ``names`` not imported yet (Python's own
    switch: None in ``sys.modules``); after it they import as usual."""
    import sys

    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _forget_compiled_models(backend: str) -> None:
    """Drop the programs JAX compiled for earlier trials in this (reused) worker once it holds more
    than ``JAX_WORKER_MEMORY_MB``: kept, they grow a worker by about 13 MB per trial; dropped at
    every trial's start, each trial recompiles a dozen small programs (0.3-0.5 s). The disk cache
    keeps them for reuse either way. ``malloc_trim`` hands the freed memory back to the system
    (without it the worker's size stays at its peak)."""
    if backend != "jax" or private_memory_mb() < JAX_WORKER_MEMORY_MB:
        return
    import ctypes
    import gc

    import jax

    gc.collect()
    jax.clear_caches()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def private_memory_mb() -> float:
    """This process's resident memory less its shared pages (Ray maps its object store into every
    worker); infinite where ``/proc`` is missing (not Linux), so that caches are always dropped."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("inf")


def _add_xla_flags(flags: tuple[str, ...]) -> None:
    """Append XLA flags the user did not set (their own ``XLA_FLAGS`` win)."""
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in flags if f.split("=")[0] not in current]
    os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()


def _use_compile_cache() -> None:
    """JAX's persistent compilation cache: a network whose shapes were compiled before (same depth,
    width, batch size...) in any trial, worker or earlier run skips XLA's compile (2-3 s -> 0.4 s).
    ``HPSEARCH_XLA_CACHE`` moves it; ``off`` turns it off."""
    folder = os.environ.get("HPSEARCH_XLA_CACHE", str(Path.home() / ".cache" / "hpsearch" / "xla"))
    if folder == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _first_line(error: BaseException) -> str:
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
