"""Faults: a stopped or killed search resumes, diverging trials are recorded, damaged folders are clear errors.

Real Ray and Keras throughout. The lost-node case is in test_cluster.py (it needs two nodes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import descendants, fakes, run_cli, wait_for

pytestmark = pytest.mark.slow
SLOW_EPOCHS = fakes(HPSEARCH_FAKE_EPOCH_SECONDS="0.3")  # trials long enough to stop mid-way


def start_driver(args: list[str], cwd: Path) -> subprocess.Popen:
    """``hpsearch`` in its own process group, as a terminal's foreground job."""
    return subprocess.Popen([sys.executable, "-m", "search", *args], cwd=cwd, env={**os.environ, **SLOW_EPOCHS},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def trial_progress(partial: Path) -> dict[str, pd.DataFrame]:
    found = {}
    for progress in partial.glob("tune/*/progress.csv"):
        try:
            found[progress.parent.name] = pd.read_csv(progress)
        except (pd.errors.EmptyDataError, OSError, ValueError):
            continue
    return found


def a_trial_mid_way(partial: Path, max_epochs: int) -> bool:
    """A trial has saved a checkpoint and is not finished: stopping now must cost it nothing."""
    return any(len(rows) < max_epochs and list((partial / "tune" / name).glob("checkpoint_*"))
               for name, rows in trial_progress(partial).items())


def move_newest_checkpoint_on(partial: Path, max_epochs: int) -> tuple[str, int]:
    """Rename an unfinished trial's newest complete checkpoint to the next index, and delete its older
    ones as Ray does on registering a newer one (a driver killed just after a worker wrote a checkpoint
    can leave two); returns the trial's id and the epoch the renamed checkpoint holds."""
    import shutil

    for name, rows in sorted(trial_progress(partial).items()):
        complete = sorted(p.parent for p in (partial / "tune" / name).glob("checkpoint_*/state.npz"))
        if len(rows) >= max_epochs or not complete:
            continue
        newest = complete[-1]
        with np.load(newest / "state.npz") as state:
            epoch = int(state["epoch"])
        for older in complete[:-1]:
            shutil.rmtree(older)
        newest.rename(newest.with_name(f"checkpoint_{int(newest.name.split('_')[1]) + 1:06d}"))
        return "_".join(name.split("_")[2:4]), epoch
    raise AssertionError(f"no unfinished trial with a checkpoint in {partial}")


def test_a_stopped_then_killed_search_resumes_to_completion(tmp_path):
    out, max_epochs = tmp_path / "out", 8
    partial = out / ".cut.partial"
    run = ["run", "--samples", "6", "--max-epochs", str(max_epochs), "--grace-period", str(max_epochs),
           "--checkpoint-every", "2", "--cpus", "2", "--top-k", "1", "--folds", "2",
           "--results", str(out), "--name", "cut"]

    # 1. Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
    proc = start_driver(run, tmp_path)
    try:
        wait_for(lambda: a_trial_mid_way(partial, max_epochs), proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-2000:]
    assert "resume with: hpsearch resume out/cut\n" in stderr and "Traceback" not in stderr
    assert partial.is_dir() and not (out / "cut").exists()
    finished_before = {name: rows for name, rows in trial_progress(partial).items() if len(rows) == max_epochs}

    # 2. The resumed search is killed (SIGKILL: no chance to save anything) while a trial is mid-way.
    resumed_rows = sum(map(len, trial_progress(partial).values()))
    proc = start_driver(["resume", str(out / "cut")], tmp_path)
    started = []
    try:
        wait_for(lambda: sum(map(len, trial_progress(partial).values())) >= resumed_rows + 3
                 and a_trial_mid_way(partial, max_epochs), proc)
        started = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        for pid in [proc.pid, *started]:  # Ray's workers have their own process groups: end them by id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not (out / "cut").exists()

    # The interrupted run still has a report, marked partial.
    report = run_cli(["report", str(partial), "--quiet"], cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    content = json.loads((partial / "report.json").read_text())
    assert content["partial"] is True and "best_config.json" in content["missing"]
    assert content["summary"]["trials_by_status"].get("interrupted", 0) >= 1
    page = (partial / "report.html").read_text()
    assert "Partial run" in page and "<img data-figure='curves'" in page

    # Ray deletes a trial's older checkpoint as it registers a newer one and saves its experiment
    # state a moment later: a driver killed in between leaves a state that names a deleted checkpoint.
    # Make that certain for one unfinished trial: its recorded checkpoint moves to the next index.
    moved_trial, moved_epoch = move_newest_checkpoint_on(partial, max_epochs)

    # 3. Resumed again, to the end: retrain, export and report as in a normal run.
    proc = run_cli(["resume", str(out / "cut")], cwd=tmp_path, env=SLOW_EPOCHS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "cut"
    assert not partial.exists() and (run_dir / "model" / "model.keras").is_file()
    assert (run_dir / "report.html").is_file() and "best: roc_auc" in proc.stdout
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert (trials["status"] == "completed").all() and (trials["epochs"] == max_epochs).all(), \
        trials[["trial_id", "status", "epochs", "restored_from", "error"]].to_string()
    assert (trials["restored_from"] >= 2).any()  # at least one trial went on from its checkpoint
    # The trial whose recorded checkpoint was gone went on from the newer one, not from scratch.
    assert trials.set_index("trial_id").loc[moved_trial, "restored_from"] == moved_epoch
    after = trial_progress(run_dir)
    for name, rows in finished_before.items():  # trials finished before Ctrl-C did not run again
        pd.testing.assert_frame_equal(after[name], rows)
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (epochs.groupby("trial_id")["epoch"].max() == max_epochs).all()
    assert json.loads((run_dir / "timing.json").read_text())["resumed"] is True

    again = run_cli(["resume", str(run_dir)], cwd=tmp_path)
    assert again.returncode == 2 and "is a finished run; there is nothing to resume" in again.stderr


def test_sigterm_in_the_cv_stage_stops_within_seconds_and_resume_skips_the_search(tmp_path, mixed_csv):
    """``kill PID`` (as a job's stop or Kubernetes sends it) during the CV stage: one line, no stack
    dumps, the finished search kept; ``resume`` goes on from the CV stage without searching again."""
    out = tmp_path / "out"
    partial = out / ".term.partial"
    run = ["run", str(mixed_csv), "--target", "label", "--samples", "4", "--max-epochs", "6", "--cpus", "2",
           "--top-k", "3", "--folds", "10", "--repeats", "2", "--results", str(out), "--name", "term"]
    proc = start_driver(run, tmp_path)
    try:
        wait_for(lambda: (partial / "trials.csv").is_file(), proc)
        time.sleep(2)  # inside the CV stage's 60 fits
        signalled = time.time()
        proc.send_signal(signal.SIGTERM)  # the driver alone, as `kill PID` does
        _, stderr = proc.communicate(timeout=60)
        took = time.time() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-2000:]
    assert "stopped by SIGTERM during the CV stage" in stderr and "resume with: hpsearch resume out/term" in stderr
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr and "*** " not in stderr, stderr[-2000:]
    assert took < 20, took
    assert partial.is_dir() and not (out / "cv.json").exists()
    trials_before = (partial / "trials.csv").read_text()
    tune_before = sorted(p.name for p in (partial / "tune").iterdir())

    proc = run_cli(["resume", str(out / "term")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "term"
    assert (run_dir / "model" / "model.keras").is_file() and (run_dir / "cv.json").is_file()
    assert (run_dir / "trials.csv").read_text() == trials_before  # the search did not run again
    assert sorted(p.name for p in (run_dir / "tune").iterdir()) == tune_before
    assert json.loads((run_dir / "timing.json").read_text())["resumed"] is True


# Plain SGD at a learning rate of 10 on a 4x64 network reaches NaN within an epoch or two.
DIVERGING_SPACE = """\
version: 1
name: diverging
params:
  learning_rate: {type: choice, values: [0.05, 10.0]}
  dropout:       {type: float, low: 0.0, high: 0.2}
fixed:
  depth: 4
  width: 64
  optimizer: sgd
  batch_size: 16
  epochs: 6
"""


def test_diverging_trials_are_recorded_and_the_search_goes_on(tmp_path, mixed_csv):
    space = tmp_path / "diverging.yaml"
    space.write_text(DIVERGING_SPACE)
    # TensorFlow: Keras computes its cross-entropy from the sigmoid's logits there, so SGD at a
    # learning rate of 10 overflows to NaN; on JAX it clips the probabilities, and the same trial
    # saturates at a finite loss of about 8 (docs/search.md, "The search").
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--space", str(space), "--samples", "6",
                    "--backend", "tensorflow",
                    "--seed", "3", "--cpus", "2", "--grace-period", "6", "--top-k", "1", "--folds", "2",
                    "--results", str(tmp_path / "out"), "--name", "div", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "out" / "div" / "trials.csv")
    diverged = trials[trials["status"] == "diverged"]
    assert len(diverged) >= 1 and (diverged["learning_rate"] > 1).all(), trials
    assert (diverged["epochs"] < 6).all()  # stopped at once, not trained to the end
    assert diverged["best_roc_auc"].isna().all()
    fine = trials[trials["learning_rate"] < 1]
    assert len(fine) >= 1 and (fine["status"] == "completed").all()
    best = json.loads((tmp_path / "out" / "div" / "best_config.json").read_text())
    assert best["trial_id"] in set(fine["trial_id"])


@pytest.mark.parametrize("command", ["report", "retrain", "resume", "predict"])
def test_damaged_or_foreign_folders_are_one_line_errors(tmp_path, command):
    damaged = tmp_path / (".damaged.partial" if command == "resume" else "damaged")
    damaged.mkdir()
    (damaged / "spec.json").write_text('{"name": "damaged", "options": {')  # cut short
    (damaged / "best_config.json").write_text('{"trial_id": "a1b2')
    (damaged / "trials.csv").write_text("trial_id,status\n")
    (damaged / "model").mkdir()
    (damaged / "model" / "model.keras").write_bytes(b"PK\x03\x04 not a zip")
    (damaged / "model" / "metadata.json").write_text("{}")
    extra = [str(tmp_path / "rows.csv")] if command == "predict" else []
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    proc = run_cli([command, str(damaged), *extra], cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(damaged) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_truncated_best_config_is_a_clear_error_in_report(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    spec = {"name": "run", "options": {"metric": "roc_auc"}, "data": {}, "splits": {"test": 0}}
    (folder / "spec.json").write_text(json.dumps(spec))
    (folder / "best_config.json").write_text('{"trial_id": "a1b2c3", "hyperpar')
    proc = run_cli(["report", str(folder)], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {folder / 'best_config.json'} is damaged") and "Traceback" not in proc.stderr
