"""Scaling: trained epochs per second with 1, 2, 4... concurrent trials, on CPU cores or sharing GPUs.

Run by hand on the machine to measure (the 16-core GPU machine for the issue's figures)::

    python -m bench.scaling --cpu-trials 1,2,4,8,16                       # CPU cores, one per trial
    python -m bench.scaling --gpu-trials 1,2,4,8 --rows 200000 --features 50   # trials sharing one GPU

Every setting runs hpsearch's search step (``tuning.run_trials``: Ray Tune, reused workers, the
data through the object store once) in a fresh local Ray with exactly N trial slots, on one fixed
network (no hyperparameter varies and ASHA stops nothing), so settings differ only in concurrency:
``3 x N`` trials of ``--epochs`` epochs each. Figures per setting: wall time of the search step
(Ray's start excluded, the workers' start-up included), trained epochs per second, efficiency
(epochs/s over N x the one-trial figure), the mean later epoch's fit time, and with GPUs each trial
process's peak GPU memory (nvidia-smi). Writes ``bench/results/scaling-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TRIALS_PER_SLOT = 3
# Variables that change the figures, recorded with them.
TUNING_VARIABLES = ("XLA_FLAGS", "PJRT_NPROC", "NPROC", "KERAS_BACKEND")


def fixed_space(width: int, depth: int, batch_size: int) -> Any:
    from search.space import Space

    return Space.from_dict({
        "version": 1, "name": f"fixed-{depth}x{width}-b{batch_size}",
        "params": {"dropout": {"type": "choice", "values": [0.1]}},
        "fixed": {"depth": depth, "width": width, "batch_size": batch_size, "learning_rate": 1.0e-3},
    }, source="bench.scaling")


def generated_arrays(rows: int, features: int, seed: int) -> dict[str, np.ndarray]:
    """A learnable table of ``rows`` x ``features`` floats, split 80/20 (already standardised)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=features, n_informative=max(2, features // 3),
                               random_state=seed)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    cut = int(rows * 0.8)
    return {"x_train": x[:cut], "y_train": y[:cut].astype(np.float32), "x_val": x[cut:], "y_val": y[cut:]}


def measure(slots: int, on_gpu: bool, arrays: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    """One setting: ``slots`` concurrent trials (each a CPU, or a 1/slots share of one GPU)."""
    from search.cluster import ray_session
    from search.run_folder import epoch_history
    from search.spec import RunSpec
    from search.tuning import TrialData, run_trials

    gpus = round(1.0 / slots, 4) if on_gpu else 0.0
    spec = RunSpec(samples=TRIALS_PER_SLOT * slots, max_epochs=args.epochs, grace_period=args.epochs,
                   cpus=slots, cpus_per_trial=1.0, gpus_per_trial=gpus, seed=args.seed, backend=args.backend,
                   checkpoint_every=0, mixed_precision=args.mixed_precision)
    space = fixed_space(args.width, args.depth, args.batch_size)
    data = TrialData(x_train=arrays["x_train"], y_train=arrays["y_train"], x_val=arrays["x_val"],
                     y_val=arrays["y_val"], metric="roc_auc", max_epochs=args.epochs, seed=args.seed,
                     fixed=dict(space.fixed), checkpoint_every=0,
                     compute=spec.compute())
    with tempfile.TemporaryDirectory(prefix="hpsearch-scaling-") as folder:
        run_dir = Path(folder)
        watcher = GpuWatcher() if on_gpu else None
        with ray_session(spec.session_options()):
            started = time.perf_counter()  # Ray's own start-up is not the trials' concurrency
            trials = run_trials(spec.tuning_options(), space, data, run_dir, grace_period=args.epochs,
                                deadline=float("inf"))
            wall = time.perf_counter() - started
        if watcher:
            watcher.stop()
        history = epoch_history(run_dir, "roc_auc")
    epochs = int(trials["epochs"].sum())
    later = history[history["epoch"] > 1]["train_seconds"] if "train_seconds" in history else []
    row = {"slots": slots, "device": "GPU" if on_gpu else "CPU", "gpus_per_trial": gpus, "trials": len(trials),
           "trials_on_gpu": int(trials["device"].astype(str).str.startswith("GPU").sum()),
           "errored": int((trials["status"] == "errored").sum()), "epochs": epochs, "wall_s": wall,
           "epochs_per_s": epochs / wall, "later_epoch_s": float(np.mean(later)) if len(later) else None,
           "best_roc_auc": float(trials["best_roc_auc"].max())}
    if watcher:
        row["gpu_mib_per_process"] = sorted(watcher.peaks.values())
    return row


class GpuWatcher:
    """Each new GPU process's peak memory (MiB), sampled from nvidia-smi every half second."""

    def __init__(self) -> None:
        self.before = set(_gpu_processes())
        self.peaks: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.5):
            for pid, used in _gpu_processes().items():
                if pid not in self.before:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), used)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def _gpu_processes() -> dict[int, int]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {}
    out = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    found = {}
    for line in out.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip().isdigit():
            found[int(pid)] = int(float(used.strip() or 0))
    return found


def add_efficiency(rows: list[dict[str, Any]]) -> None:
    """Each row's epochs/s over N x the 1-trial figure on the same device, whatever order they ran in."""
    for row in rows:
        base = next((r for r in rows if r["device"] == row["device"] and r["slots"] == 1), None)
        if base:
            row["efficiency"] = row["epochs_per_s"] / (row["slots"] * base["epochs_per_s"])


def to_markdown(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [f"# Scaling: concurrent trials ({report['stamp']})", "",
             f"Machine: {report['machine']}. Table: {a['rows']} rows x {a['features']} features (generated); "
             f"network {a['depth']}x{a['width']}, batch {a['batch_size']}, {a['epochs']} epochs per trial, "
             f"{TRIALS_PER_SLOT} trials per slot, Keras on {a['backend']}"
             f"{' in mixed precision' if a['mixed_precision'] else ''}. Command: `{report['command']}`"
             f"{' with ' + report['environment'] if report.get('environment') else ''}.", "",
             "| device | concurrent trials | trials (on GPU) | epochs | wall s | epochs/s | efficiency | "
             "later epoch s | GPU MiB per process |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        mib = r.get("gpu_mib_per_process")
        lines.append(f"| {r['device']} | {r['slots']} | {r['trials']} ({r['trials_on_gpu']}) | {r['epochs']} | "
                     f"{r['wall_s']:.1f} | {r['epochs_per_s']:.2f} | {r.get('efficiency', float('nan')):.2f} | "
                     f"{r['later_epoch_s'] or float('nan'):.3f} | {', '.join(map(str, mib)) if mib else '-'} |")
    lines += ["", "Efficiency = epochs/s with N concurrent trials / (N x epochs/s with 1), per device."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-trials", default="", help="comma-separated concurrency levels on CPU cores")
    parser.add_argument("--gpu-trials", default="", help="comma-separated numbers of trials sharing one GPU")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    levels = [("CPU", int(n)) for n in args.cpu_trials.split(",") if n] + \
             [("GPU", int(n)) for n in args.gpu_trials.split(",") if n]
    if not levels:
        parser.error("give --cpu-trials and/or --gpu-trials")
    arrays = generated_arrays(args.rows, args.features, args.seed)
    rows = []
    for device, slots in levels:
        rows.append(measure(slots, device == "GPU", arrays, args))
        print(json.dumps(rows[-1]), flush=True)
    add_efficiency(rows)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    report = {"stamp": stamp, "args": vars(args), "rows": rows, "command": "python -m bench.scaling " +
              " ".join(argv if argv is not None else __import__("sys").argv[1:]),
              "machine": f"{platform.node()}, {os.cpu_count()} CPUs",
              "environment": " ".join(f"{k}={os.environ[k]}" for k in TUNING_VARIABLES if k in os.environ)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scaling-{stamp}.json").write_text(json.dumps(report, indent=2))
    (out / f"scaling-{stamp}.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
