"""A real multi-node Ray cluster on this machine: `run --address`, and `submit` as a Ray Job.

Two `ray start --block` nodes (a head and a worker, 1 CPU each, own ports) run in their own
process groups; teardown ends those groups only, never `ray stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import fakes, run_cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_args() -> list[str]:
    return ["--num-cpus=1", "--object-store-memory=150000000", "--disable-usage-stats", "--block",
            f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}", f"--min-worker-port={free_port()}"]


@contextmanager
def ray_cluster(extra_env: dict[str, str] | None = None) -> Iterator[dict]:
    """A head and one worker node (1 CPU each), each `ray start --block` in its own process group."""
    # Ray's session sockets must fit in 107 bytes: a short folder, not pytest's deep tmp_path.
    tmp = Path(tempfile.mkdtemp(prefix="hps-", dir="/tmp"))
    port, dashboard = free_port(), free_port()
    # The nodes run with Ray's token authentication (the default of `ray start`); hpsearch's own
    # commands get no RAY_AUTH_MODE and must find the token by themselves.
    # PATH starts with this venv, as for a user who activated it before `ray start`: a job's
    # `python` is the nodes' python.
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", **(extra_env or {}),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = []
    logs = [open(tmp / f"{name}.log", "w") for name in ("head", "worker")]  # noqa: SIM115
    try:
        head_args = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=true",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                     f"--ray-client-server-port={free_port()}", f"--temp-dir={tmp / 'session'}", *node_args()]
        head_args.remove(next(a for a in head_args if a.startswith("--min-worker-port")))
        started.append(subprocess.Popen(head_args, stdout=logs[0], stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True))
        wait_for_nodes(port, 1, started, tmp)
        worker_args = [RAY, "start", f"--address=127.0.0.1:{port}", *node_args()]
        worker_args.remove(next(a for a in worker_args if a.startswith("--min-worker-port")))
        started.append(subprocess.Popen(worker_args, stdout=logs[1], stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True))
        nodes = wait_for_nodes(port, 2, started, tmp)
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dashboard}", "tmp": tmp,
               "head_id": next(n for n, head in nodes if head), "worker_id": next(n for n, head in nodes if not head),
               "worker": started[1]}
    finally:
        for proc in reversed(started):  # each node's process group: the node and what it started
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for handle in logs:
            handle.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster() as nodes:
        yield nodes


def wait_for_nodes(port: int, count: int, started: list[subprocess.Popen], log_dir: Path) -> list[tuple[str, bool]]:
    """Wait until ``count`` nodes are alive; returns (node id, is head) for each."""
    code = ("import json, ray, sys; ray.init(address=sys.argv[1], logging_level=40); "
            "print(json.dumps([[n['NodeID'], 'node:__internal_head__' in n['Resources']] "
            "for n in ray.nodes() if n['Alive']]))")
    deadline = time.time() + 90
    while time.time() < deadline:
        if any(p.poll() is not None for p in started):
            pytest.fail(f"a ray start process exited early: {tail_logs(log_dir)}")
        try:  # a probe that hangs (a node still starting) is retried, not waited on until pytest's timeout
            out = subprocess.run([sys.executable, "-c", code, f"127.0.0.1:{port}"], capture_output=True, text=True,
                                 env={**os.environ, "RAY_AUTH_MODE": "token"}, timeout=45)
        except subprocess.TimeoutExpired:
            continue
        if out.returncode == 0:
            nodes = json.loads(out.stdout.strip().splitlines()[-1])
            if len(nodes) == count:
                return [(node_id, bool(head)) for node_id, head in nodes]
        time.sleep(2)
    pytest.fail(f"the cluster did not reach {count} nodes in 90 s: {tail_logs(log_dir)}")


def tail_logs(log_dir: Path) -> str:
    return " | ".join(f"{p.name}: {p.read_text()[-600:]}" for p in sorted(log_dir.glob("*.log")))


def test_run_with_address_spreads_trials_over_two_nodes(cluster, tmp_path, mixed_csv):
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--address", cluster["address"],
                    "--samples", "4", "--max-epochs", "3", "--grace-period", "3", "--top-k", "1", "--folds", "2",
                    "--results", str(tmp_path / "out"), "--name", "multi", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "out" / "multi" / "trials.csv")
    assert trials["node_id"].nunique() >= 2, trials[["trial_id", "node_id"]]
    report = json.loads((tmp_path / "out" / "multi" / "report.json").read_text())
    assert len(report["summary"]["nodes"]) >= 2


def test_the_kuberay_examples_entrypoint_runs_against_a_ray_cluster_twice(cluster, tmp_path):
    """examples/kuberay-rayjob.yaml's entrypoint as the RayJob's submitter runs it (`--address auto` is
    this cluster's address, /data a folder here, fewer trials): it runs, and a second job's run beside
    the first does not collide with it."""
    import shlex

    import numpy as np
    import yaml

    from tests.conftest import REPO

    manifest = next(d for d in yaml.safe_load_all((REPO / "examples" / "kuberay-rayjob.yaml").read_text())
                    if d["kind"] == "RayJob")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).round(4)
    frame = pd.DataFrame(x).assign(label=np.where(x[:, 0] + x[:, 1] > 0, "M", "R"))
    frame.to_csv(data / "sonar.csv", header=False, index=False)  # as sonar.csv is: no header, the class last
    entrypoint = manifest["spec"]["entrypoint"].replace("/data", str(data)).replace("--address auto",
                                                                                   f"--address {cluster['address']}")
    args = shlex.split(entrypoint)
    assert args[:3] == ["python", "-m", "search"]
    for _ in range(2):
        proc = subprocess.run([sys.executable, *args[1:], "--samples", "2", "--max-epochs", "2", "--folds", "2",
                               "--top-k", "1", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-3000:]
        time.sleep(1.1)  # run names are data and time to the second
    runs = sorted(p.name for p in (data / "results").iterdir())
    assert len(runs) == 2 and all(r.startswith("sonar-") for r in runs), runs
    assert all((data / "results" / r / "model" / "model.keras").is_file() for r in runs)


HYPERMODEL = """import keras


def build_model(hp):
    model = keras.Sequential([keras.layers.Dense(hp.Choice("units", [4, 8]), activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model
"""


def test_submit_follow_and_fetch_a_job(cluster, tmp_path, mixed_csv):
    """A job with a KerasTuner hypermodel: its file travels in the job's working dir to every node."""
    storage = tmp_path / "storage"
    (tmp_path / "tiny_model.py").write_text(HYPERMODEL)
    proc = run_cli(["--debug", "submit", "--address", cluster["dashboard"], "--storage", str(storage),
                    str(mixed_csv), "--target", "label", "--samples", "3", "--max-epochs", "2",
                    "--hypermodel", "tiny_model.py:build_model",
                    "--top-k", "1", "--folds", "2", "--name", "job1", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_id = proc.stdout.split("submitted job ")[1].split(":")[0]
    follow = run_cli(["logs", job_id, "--address", cluster["dashboard"], "--follow"], cwd=tmp_path, timeout=400)
    assert follow.returncode == 0, follow.stderr[-2000:]
    state = run_cli(["status", job_id, "--address", cluster["dashboard"]], cwd=tmp_path)
    assert "SUCCEEDED" in state.stdout, (state.stdout, follow.stdout[-3000:])
    as_json = run_cli(["status", job_id, "--address", cluster["dashboard"], "--json"], cwd=tmp_path)
    assert json.loads(as_json.stdout)["status"] == "SUCCEEDED" and json.loads(as_json.stdout)["job"] == job_id
    fetched = run_cli(["fetch", "job1", "--storage", str(storage), "--results", str(tmp_path / "home")], cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    run_dir = tmp_path / "home" / "job1"
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["data"]["source"] == "data/mixed.csv" and spec["options"]["address"] == "auto"
    assert spec["options"]["hypermodel"] == "hypermodel/tiny_model.py:build_model"
    assert json.loads((run_dir / "best_config.json").read_text())["hyperparameters"]["units"] in (4, 8)
    assert (run_dir / "model" / "model.keras").is_file() and (run_dir / "report.html").is_file()
    assert len(pd.read_csv(run_dir / "trials.csv")) == 3


FAILS_IN_A_JOB = """import os
import keras


def build_model(hp):
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # only in the job's driver, on the cluster
        raise RuntimeError("this model fails on the cluster")
    model = keras.Sequential([keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model
"""


def test_following_a_failed_job_exits_non_zero_as_ray_job_submit_does(cluster, tmp_path, mixed_csv):
    (tmp_path / "fails_in_a_job.py").write_text(FAILS_IN_A_JOB)
    proc = run_cli(["submit", "--storage", str(tmp_path / "storage"), str(mixed_csv), "--target", "label",
                    "--hypermodel", "fails_in_a_job.py:build_model", "--samples", "1", "--name", "doomed"],
                   cwd=tmp_path, env={"RAY_ADDRESS": cluster["dashboard"]})  # Ray's own variable, no --address
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_id = proc.stdout.split("submitted job ")[1].split(":")[0]
    follow = run_cli(["logs", job_id, "--follow"], cwd=tmp_path, timeout=400, env={"RAY_ADDRESS": cluster["dashboard"]})
    state = run_cli(["status", job_id], cwd=tmp_path, env={"RAY_ADDRESS": cluster["dashboard"]})
    assert follow.returncode == 1, (state.stdout, follow.stderr[-2000:])
    assert f"job {job_id} ended FAILED" in follow.stderr and "this model fails on the cluster" in follow.stdout


def test_bad_cluster_addresses_are_one_line_errors(tmp_path, mixed_csv):
    port = free_port()
    proc = run_cli(["status", "raysubmit_x", "--address", f"http://127.0.0.1:{port}"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --address") and "Traceback" not in proc.stderr


def test_a_lost_worker_node_is_retried_from_its_checkpoint(tmp_path, mixed_csv):
    """Kill the worker node mid-search (as a reclaimed spot instance): its trial continues on the head."""
    out = tmp_path / "out"
    with ray_cluster(extra_env=fakes(HPSEARCH_FAKE_EPOCH_SECONDS="0.5")) as nodes:  # the nodes' workers are slow
        proc = subprocess.Popen(
            [sys.executable, "-m", "search", "run", str(mixed_csv), "--target", "label", "--address",
             nodes["address"], "--samples", "3", "--max-epochs", "10", "--grace-period", "10",
             "--checkpoint-every", "2", "--max-failures", "3", "--top-k", "1", "--folds", "2",
             "--results", str(out), "--name", "lost", "--quiet"],
            cwd=tmp_path, env=os.environ.copy(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_for(lambda: _checkpointed_trial_on(out / ".lost.partial", nodes["worker_id"]), proc, 240)
            os.killpg(nodes["worker"].pid, signal.SIGKILL)  # the node and everything it started
            _, stderr = proc.communicate(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    run_dir = out / "lost"
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3 and (trials["status"] == "completed").all(), trials
    lost = trials[trials["retries"] >= 1]
    assert len(lost) >= 1, trials[["trial_id", "node_id", "retries", "restored_from"]]
    assert (lost["restored_from"] >= 2).all() and (lost["node_id"] == nodes["head_id"]).all()
    faults = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines()]
    assert {f["trial_id"] for f in faults if f["event"] == "retried"} == set(lost["trial_id"])
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (epochs.groupby("trial_id")["epoch"].max() == 10).all()


def _checkpointed_trial_on(partial: Path, node_id: str) -> bool:
    """Whether a trial on ``node_id`` has saved a checkpoint and is still running."""
    for progress in partial.glob("tune/*/progress.csv"):
        try:
            rows = pd.read_csv(progress)
        except (pd.errors.EmptyDataError, OSError, ValueError):
            continue
        on_node = "node_id" in rows and (rows["node_id"] == node_id).any()
        if on_node and list(progress.parent.glob("checkpoint_*")) and len(rows) < 9:
            return True
    return False


def test_a_trial_no_node_can_hold_yet_waits_for_the_autoscaler_and_says_so(cluster, tmp_path, mixed_csv):
    """On a cluster a bigger node may join: the search waits, says what for, and stops on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", str(mixed_csv), "--target", "label", "--address", cluster["address"],
         "--cpus-per-trial", "2", "--samples", "2", "--max-epochs", "2", "--results", str(tmp_path / "out"),
         "--name", "waits"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, said = time.time() + 120, ""
        while time.time() < deadline and "waiting for the autoscaler" not in said:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            said += line
        assert "waiting for the autoscaler: no node of the cluster has 2 CPUs (the largest node has 1)" in said, said
        proc.send_signal(signal.SIGTERM)
        try:
            _, rest = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, rest = proc.communicate()
            raise AssertionError(out[-3000:] + "\n-----\n" + rest[-5000:]) from None
        assert proc.returncode == 130, rest[-2000:]
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
