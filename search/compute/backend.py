"""Setting up a worker process for trials and fits: Keras' backend, threads sized to the CPU share,
XLA's flags and compile cache, and bounded memory in a reused JAX worker. Runs before any Keras
import in the process (Ray reuses a worker across the trials and fits of a run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from search.compute.devices import Compute, confirm_gpu, set_up_worker

_worker_device: str | None = None  # this worker's devices in words, once set up
# One Eigen thread per 1-CPU trial: two trials do not fight over cores. (Each network's XLA
# optimisation level is chosen where it is compiled: search/network/epoch_scan.py.)
SINGLE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)
# Keras imports these when it can, for what a trial never uses (plots, its scikit-learn wrapper,
# DataFrame inputs): 2.3 s of its 3.3 s import in every worker (python -X importtime).
KERAS_OPTIONAL_IMPORTS = ("matplotlib", "sklearn", "pandas")
# A worker that a JAX trial starts in with more private memory than this drops JAX's compiled programs.
JAX_WORKER_MEMORY_MB = 450


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
