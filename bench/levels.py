"""What XLA's optimisation level 0 saves and costs per network on CPUs: the figures behind
``search.network.epoch_scan.quick_compile_pays``.

``python -m bench.levels [--rows 364,2713] [--out bench/results]`` compiles and runs, in this
process on one CPU thread, one epoch program (``search.network.epoch_scan.EpochRunner``) per network of a grid
(batch size x width x depth x activation), once at level 0 and once at XLA's default level, and
prints per network: compile seconds (trace included) and a later epoch's seconds at each level.
It ends with the least-squares fit of the extra seconds per epoch at level 0 on rows x weights,
rows x units (the element-wise work) and steps, and the median compile saving.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
os.environ["PJRT_NPROC"] = "1"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

GRID = {"batch_size": [8, 32, 128], "width": [16, 64, 256], "depth": [1, 3], "activation": ["relu", "gelu"]}


def measure(rows: int, features: int, config: dict[str, Any], quick: bool) -> dict[str, float]:
    """Seconds to the end of a new network's first epoch, and for a second epoch, at one level."""
    import search.network.epoch_scan as epochs
    from search.network import build_network, whole_batches

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=rows) > 0).astype(np.float32)
    x, y = whole_batches(x, y, config["batch_size"], 0)
    epochs.quick_compile_pays = lambda *_: quick  # type: ignore[assignment]  (this process only)
    began = time.perf_counter()
    model = build_network({**config, "dropout": 0.2}, features, seed=0)
    runner = epochs.EpochRunner(model, x, y, config["batch_size"], seed=0)
    runner.train_epoch(0)
    first = time.perf_counter() - began
    began = time.perf_counter()
    runner.train_epoch(1)
    runner.train_epoch(2)
    later = (time.perf_counter() - began) / 2
    units = config["width"] * config["depth"]
    weights = model.count_params()
    return {"first_s": first, "later_s": later, "row_weights": len(x) * weights, "row_units": len(x) * units,
            "steps": len(x) // config["batch_size"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.levels", description=__doc__)
    parser.add_argument("--rows", default="364,2713", help="table sizes, comma-separated")
    parser.add_argument("--features", type=int, default=22)
    parser.add_argument("--out", type=Path, default=None, help="folder for levels-<stamp>.json")
    args = parser.parse_args(argv)
    results = []
    measure(100, args.features, {"batch_size": 8, "width": 8, "depth": 1, "activation": "relu"}, True)  # warm-up
    for rows in map(int, args.rows.split(",")):
        for values in itertools.product(*GRID.values()):
            config = dict(zip(GRID, values, strict=True))
            quick, default = (measure(rows, args.features, config, q) for q in (True, False))
            row = {"rows": rows, **config, "quick": quick, "default": default}
            results.append(row)
            print(f"{rows} rows {config}: compile+first {quick['first_s']:.2f} vs {default['first_s']:.2f} s, "
                  f"epoch {quick['later_s']:.4f} vs {default['later_s']:.4f} s", flush=True)
    extra = np.array([r["quick"]["later_s"] - r["default"]["later_s"] for r in results])
    design = np.array([[r["quick"]["row_weights"], r["quick"]["row_units"], r["quick"]["steps"]] for r in results])
    coef, *_ = np.linalg.lstsq(design, extra, rcond=None)
    # the compile saving: the first epoch's excess over a later one, at each level
    saved = float(np.median([(r["default"]["first_s"] - r["default"]["later_s"])
                             - (r["quick"]["first_s"] - r["quick"]["later_s"]) for r in results]))
    summary = {"extra_s_per_row_weight": coef[0], "extra_s_per_row_unit": coef[1], "extra_s_per_step": coef[2],
               "median_compile_saving_s": saved}
    print(json.dumps(summary))
    if args.out:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        (args.out / f"levels-{stamp}.json").write_text(json.dumps({"summary": summary, "networks": results},
                                                                 indent=1))


if __name__ == "__main__":
    main()
