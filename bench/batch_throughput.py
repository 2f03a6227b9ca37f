"""Training throughput against batch size on a big table: the measurement behind the scaled batch sizes.

Run by hand (one core, as a 1-CPU trial runs)::

    .venv/bin/python -m bench.batch_throughput

For networks from the default space, one JAX epoch (one compiled ``lax.scan`` over Keras'
``train_step``, as the trials run it) on a 128,000 x 12 table at each batch size: the first epoch
(compile included), a later one, rows per second and GFLOP/s (6 x weights per row). Small batches
leave a core far under its matmul peak on a big table and make an epoch thousands of steps, which
is why ``search/budget.py`` multiplies the built-in batch sizes by about ``sqrt(rows / 10,000)``.
Writes ``bench/results/batch-throughput-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROWS, FEATURES = 128_000, 12
NETWORKS = ((2, 64), (3, 256), (4, 290))
BATCHES = (16, 32, 128, 512, 2048)
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    os.environ.update(KERAS_BACKEND="jax", PJRT_NPROC="1", XLA_FLAGS="--xla_cpu_multi_thread_eigen=false",
                      JAX_PLATFORMS="cpu")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import numpy as np

    from search.network import EpochRunner, build_network

    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=ROWS) > 0).astype(np.float32)
    found = []
    for depth, width in NETWORKS:
        for batch in BATCHES:
            model = build_network({"depth": depth, "width": width, "batch_size": batch}, FEATURES, seed=0)
            rows = ROWS - ROWS % batch
            runner = EpochRunner(model, x[:rows], y[:rows], batch, 0)
            began = time.perf_counter()
            runner.train_epoch(0)
            first = time.perf_counter() - began
            began = time.perf_counter()
            runner.train_epoch(1)
            later = time.perf_counter() - began
            gflops = 6 * model.count_params() * rows / later / 1e9
            found.append({"depth": depth, "width": width, "batch_size": batch, "first_epoch_s": first,
                          "later_epoch_s": later, "rows_per_s": rows / later, "gflops": gflops})
            print(f"{depth}x{width} batch {batch}: first {first:.2f} s, later {later:.2f} s, {gflops:.1f} GFLOP/s",
                  flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    lines = [f"# One JAX epoch on {ROWS} x {FEATURES} rows, one core", "",
             "| network | batch | first epoch (s) | later epoch (s) | rows/s | GFLOP/s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['depth']}x{r['width']} | {r['batch_size']} | {r['first_epoch_s']:.2f} | {r['later_epoch_s']:.2f} "
              f"| {r['rows_per_s']:.0f} | {r['gflops']:.1f} |" for r in found]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"batch-throughput-{stamp}.json").write_text(json.dumps(found, indent=2) + "\n")
    (RESULTS / f"batch-throughput-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: bench/results/batch-throughput-{stamp}.json and .md")


if __name__ == "__main__":
    main()
