"""Devices: what a run's Ray cluster holds, and how a worker takes only its share of a GPU.

Ray reserves a fraction of a GPU for a trial (``--gpus-per-trial 0.25``) but does not stop the
trial's framework from taking the whole card: TensorFlow maps all of a GPU's memory at its first
GPU operation and JAX preallocates 75% of it, so the second trial on the card runs out of memory.
Each worker therefore caps itself before its backend starts: TensorFlow gets a logical GPU with a
memory limit (fraction x the card's memory), JAX ``XLA_PYTHON_CLIENT_MEM_FRACTION``. A worker
with no GPU reserved hides the GPUs from both, so it never initialises CUDA; so does the driver,
which only encodes data and assembles the exported model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Of a trial's GPU fraction, the share its framework may allocate: each process also holds a CUDA
# context (about 0.5 GB on recent cards) outside that limit.
GPU_SHARE_USED = 0.9
MIXED_POLICY = "mixed_float16"
# TensorFlow's C++ start-up chatter off, in the driver, every worker and a submitted job.
QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def quiet_tensorflow() -> None:
    """Keep TensorFlow's and CUDA's C++ start-up lines (``cuInit ... UNKNOWN ERROR (303)``) off the
    console or the notebook cell, unless ``--debug`` asked for them; a variable the user set wins."""
    if os.environ.get("HPSEARCH_DEBUG"):
        return
    for name, value in QUIET_TENSORFLOW.items():
        os.environ.setdefault(name, value)


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: TensorFlow's C++ lines (CUDA probing, absl) ignore
    ``TF_CPP_MIN_LOG_LEVEL``, and a CPU machine with NVIDIA's driver libraries but no card prints
    "failed call to cuInit" the first time TensorFlow lists its devices."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_SILENCED_THREADS: list[threading.Thread] = []


def in_background_silenced(target: Callable[[], None], name: str) -> None:
    """Run ``target`` in a daemon thread with file descriptor 2 at /dev/null (for the whole process, as
    long as it runs): :func:`stderr_restored` waits for it before an error is printed."""
    def run() -> None:
        with native_stderr_silenced():
            target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    _SILENCED_THREADS.append(thread)
    thread.start()


def stderr_restored(timeout: float = 60.0) -> None:
    """Wait until no background thread holds stderr at /dev/null, so that the next line is seen."""
    for thread in _SILENCED_THREADS:
        thread.join(timeout)


@dataclass(frozen=True)
class Compute:
    """Where and how one network trains: Keras backend, CPU and GPU share, precision."""

    backend: str = "jax"
    cpus: float = 1.0
    gpus: float = 0.0
    mixed_precision: bool = False


def usable_fraction(gpus: float) -> float:
    """The share of one card's memory a worker reserving ``gpus`` GPUs may allocate."""
    return round(min(gpus, 1.0) * GPU_SHARE_USED, 4)


def memory_limit_mb(gpus: float, card_mb: int) -> int:
    """TensorFlow's logical-device memory limit for a worker reserving ``gpus`` of a ``card_mb`` card."""
    return int(card_mb * usable_fraction(gpus))


def set_up_worker(compute: Compute) -> str:
    """Give this worker process its devices before Keras' backend starts; returns them in words.

    Runs once per worker process (Ray reuses it for later trials of the same shape).
    """
    gpu_ids = _reserved_gpu_ids() if compute.gpus > 0 else []
    if not gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read by CUDA when TensorFlow or JAX first load it
        if compute.backend == "jax":
            os.environ["JAX_PLATFORMS"] = "cpu"
        return "CPU"
    if compute.backend == "jax":
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(usable_fraction(compute.gpus))
        if os.environ.get("JAX_PLATFORMS") == "cpu":  # inherited from a driver kept off the GPUs
            del os.environ["JAX_PLATFORMS"]
    else:
        _cap_tensorflow(compute.gpus, gpu_ids)
    return "GPU " + ",".join(str(i) for i in gpu_ids)


def confirm_gpu(backend: str, device: str) -> str:
    """``device`` if the backend, now started, sees a GPU; else says that the trial ran on CPUs.

    A GPU reserved through Ray is not a GPU used: TensorFlow without CUDA support (plain
    ``pip install tensorflow`` on some platforms) or a CPU-only jaxlib quietly train on CPUs.
    """
    if not device.startswith("GPU"):
        return device
    if backend == "jax":
        import jax

        seen = sum(d.platform == "gpu" for d in jax.devices())
    else:
        import tensorflow as tf

        seen = len(tf.config.list_logical_devices("GPU"))
    return device if seen else f"CPU ({device} reserved, but {backend} has no GPU support here)"


def _reserved_gpu_ids() -> list[str]:
    import ray

    return [str(i) for i in ray.get_gpu_ids()] if ray.is_initialized() else []


def _cap_tensorflow(gpus: float, gpu_ids: list[str]) -> None:
    """A memory limit on each GPU TensorFlow sees; memory growth where the card's size is unknown."""
    import tensorflow as tf

    for device, gpu_id in zip(tf.config.list_physical_devices("GPU"), gpu_ids, strict=False):
        card_mb = card_memory_mb(gpu_id)
        try:
            if card_mb:
                tf.config.set_logical_device_configuration(
                    device, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_limit_mb(gpus, card_mb))])
            else:
                tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:  # TensorFlow already started its GPUs in this process
            pass


def card_memory_mb(gpu_id: str) -> int | None:
    """Total memory of one GPU (an index or a UUID, as Ray gives it), from nvidia-smi; None if unknown."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        done = subprocess.run([smi, "-i", gpu_id, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=20, check=True)
        return int(float(done.stdout.strip().splitlines()[0]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def use_precision(mixed: bool) -> None:
    """Keras' global dtype policy in this process: float16 compute with float32 weights, or float32."""
    import keras

    keras.config.set_dtype_policy(MIXED_POLICY if mixed else "float32")


def keep_driver_off_gpus() -> dict[str, str | None]:
    """The driver encodes data and assembles the exported model: it must not take a GPU's memory.

    Called once Ray has started: Ray counts the GPUs from ``CUDA_VISIBLE_DEVICES`` and its workers
    inherit the environment the driver had then, so neither sees this change. Returns the driver's
    earlier ``CUDA_VISIBLE_DEVICES``, which the session puts back (:func:`put_back_variables`) when
    it ends (a later ``ray.init`` in this process counts GPUs from it). TensorFlow is not imported
    for this (4 s, 200 MB): one imported later reads the variable; one imported already is told directly.
    """
    before = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    hide_gpus_in_process()
    return before


def hide_gpus_in_process() -> None:
    """Keep this process's JAX and TensorFlow off the GPUs without changing the environment (which
    Ray, not yet started, reads to count them): the driver building a hypermodel before Ray starts."""
    if "jax" in sys.modules:
        import jax

        try:
            jax.config.update("jax_platforms", "cpu")
        except RuntimeError:  # JAX's backends were already started in this process
            pass
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            with native_stderr_silenced():  # listing the devices is TensorFlow's first CUDA probe
                tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow already started its GPUs in this process
            pass


def put_back_variables(before: dict[str, str | None]) -> None:
    """Give environment variables their earlier values again (None: unset)."""
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def cluster_devices() -> dict[str, Any]:
    """CPUs and GPUs of the connected Ray cluster, and the GPU models Ray recognised."""
    import ray

    resources = ray.cluster_resources()
    kinds = sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))
    return {"cpus": float(resources.get("CPU", 0)), "gpus": float(resources.get("GPU", 0)), "gpu_types": kinds}


def cpu_slots(cpus_each: float) -> int:
    """How many fits of ``cpus_each`` CPUs the connected cluster runs at once (at least one)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_each, 1e-9)))


def alive_nodes() -> int:
    """How many nodes of the connected cluster are alive."""
    import ray

    return len([n for n in ray.nodes() if n.get("Alive")])


def largest_node(resource: str) -> float:
    """The most of ``resource`` (``CPU``, ``GPU``) any one live node has: a trial must fit on one node."""
    import ray

    return max((float(n["Resources"].get(resource, 0)) for n in ray.nodes() if n.get("Alive")), default=0.0)


def trials_on_gpu(trials: Any) -> int:
    """How many trials trained on a GPU, from the ``device`` each one reported (a trials table)."""
    return int(trials["device"].astype(str).str.startswith("GPU").sum()) if "device" in trials else 0


def describe(devices: dict[str, Any]) -> str:
    """``4 CPUs, 1 GPU (H100)`` for the console and the report."""
    cpus, gpus = devices["cpus"], devices["gpus"]
    text = f"{cpus:g} CPU{'s' if cpus != 1 else ''}, {gpus:g} GPU{'s' if gpus != 1 else ''}"
    return text + (f" ({', '.join(devices['gpu_types'])})" if devices.get("gpu_types") else "")
