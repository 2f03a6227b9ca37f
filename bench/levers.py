"""Each speed lever on its own: the cost of a sequence of fresh models in one warm worker process.

``python -m bench.levers [--table breast_cancer] [--models 8] [--epochs 10]`` runs, in a child
process per setting, the same sequence of configurations from the default space, each trained as a
trial trains (fit on the padded rows, validation every epoch), and prints per setting: the median
seconds a new model costs before its second epoch (build, trace/compile, first epoch, first
validation) and the median later epoch. Settings switch one lever at a time, from Keras'
defaults to hpsearch's trial recipe. ``--only "NAME;NAME"`` runs some settings only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# name -> (backend, steps_per_execution, TF/XLA threads = 1, whole batches, XLA flags, compile cache,
# host-drawn initial weights, jitted validation pass)
SETTINGS: dict[str, dict[str, Any]] = {
    "tf: Keras defaults": {"backend": "tensorflow", "spe": 1},
    "tf: + 1 thread per trial": {"backend": "tensorflow", "spe": 1, "threads1": True},
    "tf: + steps_per_execution 16": {"backend": "tensorflow", "spe": 16, "threads1": True},
    "tf: + whole batches": {"backend": "tensorflow", "spe": 16, "threads1": True, "whole": True},
    "tf: + metrics in NumPy": {"backend": "tensorflow", "spe": 16, "threads1": True, "whole": True, "numpy": True},
    "jax: Keras defaults": {"backend": "jax", "spe": 1},
    "jax: + 1 thread per trial": {"backend": "jax", "spe": 1, "threads1": True},
    "jax: + whole batches": {"backend": "jax", "spe": 16, "threads1": True, "whole": True},
    "jax: + metrics in NumPy": {"backend": "jax", "spe": 16, "threads1": True, "whole": True, "numpy": True},
    "jax: + XLA optimisation level 0": {"backend": "jax", "spe": 16, "threads1": True, "whole": True, "numpy": True,
                                        "opt0": True},
    "jax: + compile cache, cold": {"backend": "jax", "spe": 16, "threads1": True, "whole": True, "numpy": True,
                                   "cache": "cold"},
    "jax: + compile cache, warm": {"backend": "jax", "spe": 16, "threads1": True, "whole": True, "numpy": True,
                                   "cache": "warm"},
    # From "XLA optimisation level 0" on, cache off, each row adding one lever to the row above.
    "jax: level 0 + older CPU emitters": {"backend": "jax", "spe": 16, "threads1": True, "whole": True, "numpy": True,
                                          "opt0": True, "emitters": True},
    "jax: + host initial weights": {"backend": "jax", "spe": 16, "threads1": True, "whole": True, "numpy": True,
                                    "opt0": True, "emitters": True, "host_init": True},
    "jax: + jitted validation pass": {"backend": "jax", "spe": 16, "threads1": True, "whole": True, "numpy": True,
                                      "opt0": True, "emitters": True, "host_init": True, "jit_val": True},
    # The whole JAX recipe at XLA's default optimisation level: slower compiles, faster epochs.
    "jax: recipe at XLA's default level": {"backend": "jax", "spe": 16, "threads1": True, "whole": True,
                                           "numpy": True, "emitters": True, "host_init": True, "jit_val": True},
    # hpsearch's trials now: an epoch per compiled call, XLA's level chosen per network (search/network/epoch_scan.py).
    "jax: one call per epoch, level per network": {"backend": "jax", "threads1": True, "whole": True,
                                                   "numpy": True, "host_init": True, "fused": True, "spe": 1},
}


def child(setting: dict[str, Any], workdir: Path, models: int, epochs: int) -> None:
    """In a fresh process: set the levers, then train ``models`` configurations as trials do."""
    os.environ["KERAS_BACKEND"] = setting["backend"]
    flags = []
    if setting["backend"] == "jax" and setting.get("threads1"):
        flags.append("--xla_cpu_multi_thread_eigen=false")
    if setting.get("opt0"):
        flags.append("--xla_backend_optimization_level=0")
    if setting.get("emitters"):
        flags.append("--xla_cpu_use_fusion_emitters=false")
    os.environ["XLA_FLAGS"] = " ".join(flags)
    import keras

    if setting["backend"] == "jax" and setting.get("cache"):
        import jax

        jax.config.update("jax_compilation_cache_dir", str(workdir / "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if setting["backend"] == "tensorflow" and setting.get("threads1"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from bench.methods import sample_configs
    from search import network
    from search.metrics import score_all
    from search.network import EpochRunner, whole_batches

    score = score_all if setting.get("numpy") else scikit_learn_scores

    network.STEPS_PER_EXECUTION = setting["spe"]
    with np.load(workdir / "data.npz") as npz:
        x, y, xv, yv = npz["x_train"], npz["y_train"], npz["x_val"], npz["y_val"]
    out = []
    for i, config in enumerate(sample_configs(models, seed=1)):
        config["depth"] = min(config["depth"], 3)
        began = time.perf_counter()
        keras.utils.set_random_seed(i)
        model = network.build_network(config, x.shape[1], seed=i if setting.get("host_init") else None)
        if setting.get("jit_val"):
            predict = jitted_forward_pass(model)
        else:
            predict = lambda v: np.asarray(model(v, training=False)).ravel()  # noqa: B023, E731
        xt, yt = whole_batches(x, y, int(config["batch_size"]), i) if setting.get("whole") else (x, y)
        stamps = []
        if setting.get("fused"):
            runner = EpochRunner(model, xt, yt, int(config["batch_size"]), seed=i, x_eval=xv)
            for epoch in range(epochs):
                runner.train_epoch(epoch)
                score(yv, runner.evaluated)
                stamps.append(time.perf_counter())
            out.append({"new_model": stamps[0] - began, "later_epoch": float(np.median(np.diff(stamps)))})
            continue

        class Clock(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                score(yv, predict(xv))  # noqa: B023 (fit runs inside this iteration)
                stamps.append(time.perf_counter())  # noqa: B023 (fit runs inside this iteration)

        model.fit(xt, yt, batch_size=int(config["batch_size"]), epochs=epochs, verbose=0, callbacks=[Clock()])
        out.append({"new_model": stamps[0] - began, "later_epoch": float(np.median(np.diff(stamps)))})
    (workdir / "levers.json").write_text(json.dumps(out))


def jitted_forward_pass(model: Any) -> Any:
    """P(class 1) from one jitted forward pass (compiled once per network) instead of Keras' direct
    call, which on JAX runs and compiles each layer's ops one by one."""
    import jax

    forward = jax.jit(lambda trainable, fixed, x: model.stateless_call(trainable, fixed, x, training=False)[0])

    def predict(x: np.ndarray) -> np.ndarray:
        values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        return np.asarray(forward(*values, x)).ravel()

    return predict


def scikit_learn_scores(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """The four validation metrics the way hpsearch first computed them, with scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return {"roc_auc": roc_auc_score(y, p), "accuracy": accuracy_score(y, p >= 0.5),
            "f1": f1_score(y, p >= 0.5, zero_division=0.0), "log_loss": log_loss(y, p, labels=[0, 1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.levers")
    parser.add_argument("--table", default="breast_cancer")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--only", help="Settings to run, separated by semicolons (default: all).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        setting, workdir = json.loads(args.child)
        child(setting, Path(workdir), args.models, args.epochs)
        return
    from bench.run import prepare

    rows = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-levers-") as tmp:
        workdir = Path(tmp)
        prepare(args.table, workdir, 10, 1, 0)
        chosen = args.only.split(";") if args.only else list(SETTINGS)
        for name, setting in ((n, SETTINGS[n]) for n in chosen):
            if setting.get("cache") == "cold":
                (workdir / "xla").mkdir(exist_ok=True)
            command = [sys.executable, "-m", "bench.levers", "--models", str(args.models), "--epochs",
                       str(args.epochs), "--child", json.dumps([setting, str(workdir)])]
            # One core, as a trial with --cpus-per-trial 1 gets.
            subprocess.run(["taskset", "-c", "0", *command], cwd=ROOT, check=True, stderr=subprocess.DEVNULL,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PJRT_NPROC": "1"})
            out = json.loads((workdir / "levers.json").read_text())
            row = {"setting": name, "new_model_s": float(np.median([o["new_model"] for o in out])),
                   "later_epoch_s": float(np.median([o["later_epoch"] for o in out]))}
            rows.append(row)
            print(f"| {name} | {row['new_model_s']:.2f} | {row['later_epoch_s']:.4f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
