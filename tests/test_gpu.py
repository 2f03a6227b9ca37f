"""GPU trials: a fraction of a GPU per trial, mixed precision, and CPU trials that leave the GPU alone.

Tests marked ``gpu`` need an NVIDIA GPU (``nvidia-smi`` lists one) and a backend built with CUDA;
they skip, saying so, where there is none (CI has none). Mixed precision on CPUs, and the float32
export of a float16-trained network, are checked by tests/test_evaluate.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli


def _gpu_count() -> int:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listed.splitlines())


GPUS = _gpu_count()
needs_gpu = pytest.mark.skipif(GPUS == 0, reason="no NVIDIA GPU here (nvidia-smi lists none); CI has none")


def _needs_backend(backend: str) -> None:
    """The lent GPU machine may hold JAX only (TensorFlow's wheel is too large to carry there)."""
    import importlib.util

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here")


def _small_run_args(data: Path, results: Path, name: str) -> list[str]:
    return ["run", str(data), "--target", "label", "--samples", "2", "--max-epochs", "2", "--top-k", "1",
            "--folds", "2", "--repeats", "1", "--results", str(results), "--name", name, "--cpus", "2"]


@pytest.mark.skipif(GPUS > 0, reason="this machine has a GPU: the refusal is for machines without one")
def test_gpus_per_trial_without_a_gpu_is_refused_on_one_line(tmp_path, mixed_csv):
    proc = run_cli([*_small_run_args(mixed_csv, tmp_path / "results", "nogpu"), "--gpus-per-trial", "0.5"],
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no GPU" in lines[0] and "--gpus-per-trial" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    leftovers = list((tmp_path / "results").iterdir()) if (tmp_path / "results").exists() else []
    assert leftovers == [], leftovers


def _gpu_processes() -> dict[int, int]:
    """pid -> GPU memory in MiB of every process holding a CUDA context, from nvidia-smi."""
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    found = {}
    for line in out.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip().isdigit():
            found[int(pid)] = int(float(used or 0))
    return found


def _card_mb() -> int:
    out = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    return int(float(out.strip().splitlines()[0]))


def _watch_gpu(proc: subprocess.Popen) -> tuple[dict[int, int], list[int]]:
    """Sample nvidia-smi while ``proc`` runs: each pid's peak MiB, and how many held the GPU at once."""
    before = set(_gpu_processes())
    peaks: dict[int, int] = {}
    together: list[int] = []

    def sample() -> None:
        while proc.poll() is None:
            now = {p: m for p, m in _gpu_processes().items() if p not in before}
            together.append(len(now))
            for pid, used in now.items():
                peaks[pid] = max(peaks.get(pid, 0), used)
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    proc.wait(timeout=900)
    thread.join(timeout=10)
    return peaks, together


def _gpu_table(tmp_path: Path, rows: int = 20000) -> Path:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=20, n_informative=10, random_state=3)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).round(5)
    df["label"] = y
    path = tmp_path / "gpu.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.gpu
@pytest.mark.slow
@needs_gpu
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_four_trials_share_one_gpu_each_within_its_share(tmp_path, backend):
    _needs_backend(backend)
    data = _gpu_table(tmp_path)
    args = ["run", str(data), "--target", "label", "--space", "gpu", "--samples", "8", "--max-epochs", "4",
            "--gpus-per-trial", "0.25", "--cpus", "8", "--cpus-per-trial", "1", "--top-k", "1", "--folds", "2",
            "--backend", backend, "--mixed-precision", "--results", str(tmp_path / "results"), "--name", "shared"]
    proc = subprocess.Popen([sys.executable, "-m", "search", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peaks, together = _watch_gpu(proc)
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    trials = pd.read_csv(tmp_path / "results" / "shared" / "trials.csv")
    assert (trials["status"].isin(["completed", "stopped early"])).all(), trials[["status", "error"]]
    assert trials["device"].astype(str).str.startswith("GPU").all(), trials["device"].tolist()
    assert set(trials["compute_dtype"]) == {"float16"}
    assert max(together) >= 2, "no two trials held the GPU at the same time"
    share = 0.25 * _card_mb()
    context = 1024  # MiB a CUDA context itself takes, outside the framework's limit
    assert max(peaks.values()) <= share + context, (peaks, share)


@pytest.mark.gpu
@pytest.mark.slow
@needs_gpu
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_cpu_trials_never_open_the_gpu(tmp_path, backend):
    _needs_backend(backend)
    args = [*_small_run_args(_gpu_table(tmp_path, rows=400), tmp_path / "r", "cpu"), "--backend", backend]
    proc = subprocess.Popen([sys.executable, "-m", "search", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks, _ = _watch_gpu(proc)
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    assert peaks == {}, f"processes of a CPU-only run held the GPU: {peaks}"
    trials = pd.read_csv(tmp_path / "r" / "cpu" / "trials.csv")
    assert set(trials["device"]) == {"CPU"}
