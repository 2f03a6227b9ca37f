"""Ray's own costs, apart from any training: start-up with and without a job runtime env, and
Ray Tune's bookkeeping per trial and per report.

``python -m bench.ray_costs`` runs each measurement in a fresh process (one Ray each) and prints a
Markdown table. Figures: ``bench/results/levers-20261123.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

WORKER_VARIABLES = {"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "jax"}


def start_up(mode: str) -> dict[str, float]:
    """ray.init, then two 1-CPU tasks: workers' variables in a runtime env, or inherited."""
    import ray

    options = {"runtime_env": {"env_vars": WORKER_VARIABLES}} if mode == "runtime_env" else {}
    if mode != "runtime_env":
        os.environ.update(WORKER_VARIABLES)
    began = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", **options)
    started = time.perf_counter()

    @ray.remote(num_cpus=1)
    def backend() -> str | None:
        return os.environ.get("KERAS_BACKEND")

    assert ray.get([backend.remote(), backend.remote()]) == ["jax", "jax"]
    first = time.perf_counter()
    ray.shutdown()
    return {"init_s": started - began, "first_tasks_s": first - started, "shutdown_s": time.perf_counter() - first}


def tune_costs(trials: int, reports: int) -> dict[str, float]:
    """Wall time of a Tune run whose trials only report: 2 at a time, actors reused, ASHA on."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    def trainable(config: dict) -> None:
        for i in range(reports):
            tune.report({"score": config["x"] * i})

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as storage:
        began = time.perf_counter()
        tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"x": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=trials, reuse_actors=True,
                                        scheduler=ASHAScheduler(max_t=reports, grace_period=reports)),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
        wall = time.perf_counter() - began
    ray.shutdown()
    return {"wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_costs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *params = json.loads(args.child)
        out = start_up(*params) if kind == "start_up" else tune_costs(*params)
        print(json.dumps(out))
        return
    runs = [("start_up", "runtime_env"), ("start_up", "inherited"), ("start_up", "runtime_env"),
            ("start_up", "inherited"), ("tune", 10, 1), ("tune", 60, 1), ("tune", 20, 1), ("tune", 20, 81)]
    print("| measurement | figures |\n|---|---|")
    for kind, *params in runs:
        proc = subprocess.run([sys.executable, "-m", "bench.ray_costs", "--child", json.dumps([kind, *params])],
                              capture_output=True, text=True, check=True)
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        name = f"Ray start, workers' variables {params[0]}" if kind == "start_up" else \
            f"Tune, {params[0]} trials x {params[1]} reports"
        print(f"| {name} | " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()) + " |", flush=True)


if __name__ == "__main__":
    main()
