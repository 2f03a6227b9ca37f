"""The benchmark: hpsearch against KerasTuner, a plain loop and a hand-written Ray Tune trainable.

Run by hand, on a quiet machine (not part of the tests)::

    .venv/bin/python -m bench                      # 4 tables, all methods (about an hour on 2 cores)
    .venv/bin/python -m bench --tables breast_cancer --methods hpsearch,keras_tuner_hyperband

For each table it encodes the splits once (hpsearch's preprocessing; every method gets the same
arrays), runs KerasTuner Hyperband first to fix the budget, then the others: RandomSearch and the
plain loop get Hyperband's epochs as full-length trials; the ASHA methods get as many samples as
ASHA needs to spend about as many epochs. Each method runs in its own process, whose tree's
memory is sampled. With ``--repeats N`` every method runs N times, once per round; the table shows
each method's median run and lists every round's epochs/s and ratio to Hyperband (a run's speed
varies by 10-30% on this machine). Then each method's best configuration is scored by the same 5-fold CV.

Figures per method: wall time of the search, trained epochs per second, trials per minute,
overhead (the share of the search's slot-seconds not spent in steady-state training: start-up,
compile and tracing, validation, scheduling), peak private RSS (RSS less shared pages) of one
worker process (the process that trains: a Ray worker, or the method's own process) and, for the
Ray methods, of the driver (Tune's loop), best validation ROC AUC, CV ROC AUC and accuracy.
Writes ``bench/results/<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
TABLES = {
    "breast_cancer": {"data": "builtin:breast_cancer"},
    "sonar": {"data": str(SHARED / "sonar.csv"), "header": False, "target": "-1"},
    "pima": {"data": str(SHARED / "pima-indians-diabetes.csv"), "header": False, "target": "-1"},
    "framingham": {"data": str(SHARED / "framingham.csv"), "target": "TenYearCHD"},
}
METHODS = ("keras_tuner_hyperband", "keras_tuner_random", "plain_loop", "hand_written_ray_tune",
           "hpsearch_tensorflow", "hpsearch_jax")
LABELS = {
    "keras_tuner_hyperband": "KerasTuner Hyperband",
    "keras_tuner_random": "KerasTuner RandomSearch",
    "plain_loop": "plain loop of model.fit",
    "hand_written_ray_tune": "hand-written Ray Tune + ASHA",
    "hpsearch_tensorflow": "hpsearch (TensorFlow)",
    "hpsearch_jax": "hpsearch (JAX)",
}


def prepare(table: str, workdir: Path, max_epochs: int, cpus: int, seed: int) -> dict[str, Any]:
    """Encode the table's splits with hpsearch's own preprocessing; write data.npz."""
    from search.data import fit_and_encode
    from search.pipeline import encode_for_trials
    from search.pipeline import prepare as prepare_run
    from search.spec import RunSpec

    options = TABLES[table]
    if not options["data"].startswith("builtin:") and not Path(options["data"]).is_file():
        raise SystemExit(f"{options['data']} not found: the shared datasets must sit in ../shared/datasets.")
    spec = RunSpec(**options, max_epochs=max_epochs, seed=seed)
    space, t, splits = prepare_run(spec)
    data = encode_for_trials(spec, space, t, splits)
    rows = np.sort(np.concatenate([splits.train, splits.val]))
    _, (x_all,) = fit_and_encode(t.features.iloc[rows], t.schema)
    np.savez(workdir / "data.npz", x_train=data.x_train, y_train=data.y_train, x_val=data.x_val,
             y_val=data.y_val, x_all=x_all, y_all=t.y[rows])
    return {"rows": int(t.n_rows), "features": int(data.x_train.shape[1]), "train": len(splits.train),
            "val": len(splits.val), "positive_share": float(np.mean(t.y))}


def run_method(method: str, workdir: Path) -> dict[str, Any]:
    """Run one method in a child process; sample the RSS of its process tree every 0.2 s."""
    import psutil

    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "bench.methods", method, str(workdir)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=open(workdir / f"{method}.log", "w"))
    peaks: dict[int, tuple[str, int]] = {}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    info, name = p.memory_info(), " ".join(p.cmdline()[:1])
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                # Private memory: Ray's workers map the shared object store, whose pages count as RSS.
                private = info.rss - getattr(info, "shared", 0)
                peaks[p.pid] = (name, max(private, peaks.get(p.pid, ("", 0))[1]))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    done.set()
    sampler.join()
    if code != 0:
        tail = (workdir / f"{method}.log").read_text()[-2000:]
        raise RuntimeError(f"{method} failed (exit {code}):\n{tail}")
    outcome = json.loads((workdir / f"{method}.json").read_text())
    outcome["process_seconds"] = time.perf_counter() - started
    # The process that trains: Ray's workers where there are some, else the method's own process
    # (KerasTuner, the plain loop). A Ray method's own process is its driver, reported apart.
    workers = [rss for name, rss in peaks.values() if name.startswith("ray::")]
    driver = peaks.get(child.pid, ("", 0))[1]
    outcome["worker_rss_mb"] = max(workers or [driver]) / 2**20
    outcome["driver_rss_mb"] = driver / 2**20 if workers else None
    outcome["tree_peak_rss_mb"] = sum(rss for _, rss in peaks.values()) / 2**20
    return outcome


def summarise(outcome: dict[str, Any]) -> dict[str, Any]:
    """Throughput and overhead from the per-epoch clock.

    Steady-state training of an epoch is its fit time, except each trial's first epoch, which
    includes tracing/compiling: it is counted at the trial's median later epoch (or the method's
    median, for one-epoch trials). Overhead = 1 - steady training / (search wall x slots).
    """
    clock = outcome["epochs"]
    epochs = len(clock)
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for c in clock:
        by_trial.setdefault(c["trial"], []).append(c)
    later = [c["seconds"] for c in clock if c["epoch"] > 1]
    overall = float(np.median(later)) if later else 0.0
    steady = 0.0
    first_epoch = []
    for records in by_trial.values():
        rest = [r["seconds"] for r in records if r["epoch"] > 1]
        typical = float(np.median(rest)) if rest else overall
        for r in records:
            steady += min(r["seconds"], typical) if r["epoch"] == 1 else r["seconds"]
            if r["epoch"] == 1:
                first_epoch.append(r["seconds"])
    wall = outcome["search_seconds"]
    return {
        "search_seconds": wall,
        "epochs": epochs,
        "epochs_per_second": epochs_per_second(outcome),
        "trials": outcome["trials"],
        "trials_per_minute": outcome["trials"] * 60 / wall,
        "overhead": 1 - steady / (wall * outcome["slots"]),
        "median_first_epoch_seconds": float(np.median(first_epoch)) if first_epoch else None,
        "median_later_epoch_seconds": overall,
        "worker_rss_mb": outcome["worker_rss_mb"],
        "driver_rss_mb": outcome.get("driver_rss_mb"),
        "best_val_roc_auc": outcome["best_val_roc_auc"],
        "best_config": outcome["best_config"],
        "best_epoch": outcome["best_epoch"],
    }


def epochs_per_second(outcome: dict[str, Any]) -> float:
    return len(outcome["epochs"]) / outcome["search_seconds"]


def median_run(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median epochs per second (the lower middle one of an even number): the
    table's figures and the CV come from it; every run's epochs/s is listed beside it."""
    return sorted(outcomes, key=epochs_per_second)[(len(outcomes) - 1) // 2]


def asha_samples(epochs: int, max_epochs: int, grace: int, factor: float) -> int:
    """Samples for which ASHA (hpsearch's rungs) spends about ``epochs`` epochs."""
    rungs, r = [], grace
    while r < max_epochs:
        rungs.append(r)
        r = int(r * factor)
    rungs.append(max_epochs)
    per_sample, previous = 0.0, 0
    for k, rung in enumerate(rungs):
        per_sample += (rung - previous) / factor**k
        previous = rung
    return max(4, round(epochs / per_sample))


def bench_table(table: str, methods: list[str], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"hpsearch-bench-{table}-") as tmp:
        workdir = Path(tmp)
        info = prepare(table, workdir, args.max_epochs, args.cpus, args.seed)
        budget = {"max_epochs": args.max_epochs, "cpus": args.cpus, "seed": args.seed, "backend": "jax",
                  "full_trials": args.full_trials, "samples": args.samples}
        # JAX's compile cache starts empty: what hpsearch gains from it is gained within the run.
        os.environ["HPSEARCH_XLA_CACHE"] = str(workdir / "xla")
        (workdir / "budget.json").write_text(json.dumps(budget))
        runs: dict[str, list[dict[str, Any]]] = {}
        ordered = sorted(methods, key=lambda m: m != "keras_tuner_hyperband")
        for round_ in range(args.repeats):  # each method once per round, so that a slow spell hits all alike
            for method in ordered:
                if round_ == 0 and method != "keras_tuner_hyperband" and "keras_tuner_hyperband" in runs:
                    spent = len(runs["keras_tuner_hyperband"][0]["epochs"])
                    budget["full_trials"] = max(2, round(spent / args.max_epochs))
                    budget["samples"] = asha_samples(spent, args.max_epochs, 4, 3.0)
                    (workdir / "budget.json").write_text(json.dumps(budget))
                print(f"[{table}] {method} (round {round_ + 1} of {args.repeats}) ...", flush=True)
                for leftover in ("xla", "kt", method):  # every run starts cold: no compile cache, no tuner state
                    shutil.rmtree(workdir / leftover, ignore_errors=True)
                outcome = run_method(method, workdir)
                runs.setdefault(method, []).append(outcome)
                print(f"[{table}] {method}: {len(outcome['epochs'])} epochs in "
                      f"{outcome['search_seconds']:.1f} s", flush=True)
        raw = {m: median_run(outcomes) for m, outcomes in runs.items()}
        summary = {m: summarise(o) for m, o in raw.items()}
        for m, outcomes in runs.items():
            summary[m]["rounds_epochs_per_second"] = [epochs_per_second(o) for o in outcomes]
        (workdir / "best_configs.json").write_text(json.dumps(
            {m: {"best_config": s["best_config"], "best_epoch": s["best_epoch"]} for m, s in summary.items()}))
        print(f"[{table}] CV of the best configurations ...", flush=True)
        subprocess.run([sys.executable, "-m", "bench.methods", "cv", str(workdir)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cv = json.loads((workdir / "cv.json").read_text())
        for m, s in summary.items():
            s["cv_roc_auc"] = float(np.mean(cv[m]["roc_auc"]))
            s["cv_roc_auc_std"] = float(np.std(cv[m]["roc_auc"], ddof=1))
            s["cv_accuracy"] = float(np.mean(cv[m]["accuracy"]))
        return {"table": info, "budget": budget, "methods": summary}


def to_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Benchmark {result['stamp']}", "", f"Machine: {result['machine']}. Command: `{result['command']}`.",
             "", "Overhead = 1 - steady-state training / (search wall x trial slots); see bench/run.py.", ""]
    for table, r in result["tables"].items():
        t, b = r["table"], r["budget"]
        lines += [f"## {table} ({t['rows']} rows, {t['features']} encoded features; train {t['train']}, "
                  f"validation {t['val']})", "",
                  f"Max epochs {b['max_epochs']}; RandomSearch/plain loop {b['full_trials']} full trials; "
                  f"ASHA methods {b['samples']} samples; {b['cpus']} CPUs.", "",
                  "| method | search s | epochs | epochs/s | x Hyperband | trials/min | overhead | first epoch s "
                  "| later epoch s | worker RSS MB | driver RSS MB | best val AUC | CV AUC | CV acc |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        ms = r["methods"]
        ref = ms.get("keras_tuner_hyperband", {}).get("epochs_per_second")
        for m, s in ms.items():
            ratio = f"{s['epochs_per_second'] / ref:.1f}x" if ref else "-"
            lines.append(
                f"| {LABELS.get(m, m)} | {s['search_seconds']:.1f} | {s['epochs']} | {s['epochs_per_second']:.2f} | "
                f"{ratio} | {s['trials_per_minute']:.1f} | {s['overhead']:.0%} | "
                f"{s['median_first_epoch_seconds']:.2f} | "
                f"{s['median_later_epoch_seconds']:.3f} | {s['worker_rss_mb']:.0f} | "
                f"{'-' if s.get('driver_rss_mb') is None else round(s['driver_rss_mb'])} | "
                f"{s['best_val_roc_auc']:.4f} | "
                f"{s['cv_roc_auc']:.4f} ± {s['cv_roc_auc_std']:.4f} | {s['cv_accuracy']:.4f} |")
        lines.append("")
        rounds = ms.get("keras_tuner_hyperband", {}).get("rounds_epochs_per_second")
        n = len(next(iter(ms.values())).get("rounds_epochs_per_second", []))
        if n > 1:
            lines += [f"{n} rounds (each method once per round; the table shows each method's median run): "
                      "epochs/s per round" + (", and x Hyperband of the same round:" if rounds else ":"), ""]
            for m, s in ms.items():
                own = s["rounds_epochs_per_second"]
                ratios = "" if m == "keras_tuner_hyperband" or not rounds else " (" + ", ".join(
                    f"{a / b:.1f}x" for a, b in zip(own, rounds, strict=True)) + ")"
                lines.append(f"- {LABELS.get(m, m)}: " + ", ".join(f"{v:.2f}" for v in own) + ratios)
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-epochs", type=int, default=27)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-trials", type=int, default=10, help="Without Hyperband: RandomSearch/loop trials.")
    parser.add_argument("--samples", type=int, default=40, help="Without Hyperband: ASHA samples.")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Rounds: every method runs this many times; the median run is shown, every run listed.")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    result = {"stamp": stamp, "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "tables": {}}
    for table in args.tables.split(","):
        result["tables"][table] = bench_table(table, args.methods.split(","), args)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stamp}.json").write_text(json.dumps(result, indent=1))
        (out / f"{stamp}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
