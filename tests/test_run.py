"""``hpsearch run`` end to end: real Ray (local, 2 CPUs), real Keras training, tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from search.tuning import STATUSES
from tests.conftest import require_shared, run_cli

pytestmark = pytest.mark.slow
FAST = ["--cpus", "2", "--grace-period", "1", "--reduction-factor", "3"]


def read_run(run_dir: Path):
    trials = pd.read_csv(run_dir / "trials.csv")
    best = json.loads((run_dir / "best_config.json").read_text())
    spec = json.loads((run_dir / "spec.json").read_text())
    return trials, best, spec


def test_default_table_search_end_to_end(tmp_path):
    proc = run_cli(["run", "--samples", "10", "--max-epochs", "9", "--seed", "1", "--name", "bc",
                    "--results", str(tmp_path / "out"), *FAST], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "bc"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bc"]  # no partial folder left
    trials, best, spec = read_run(run_dir)

    assert len(trials) == 10 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= set(STATUSES)
    for column in ("depth", "width", "dropout", "batch_size", "learning_rate", "epochs", "best_epoch",
                   "best_roc_auc", "last_roc_auc", "node_ip"):
        assert column in trials
    # ASHA stopped some trials before the last epoch, and at a rung (1, 3 or 9 epochs)
    early = trials[trials["status"] == "stopped early"]
    assert len(early) >= 1 and set(early["epochs"]) <= {1, 3}
    assert (trials.loc[trials["status"] == "completed", "epochs"] == 9).all()
    # the sampled values stay inside the default space's inclusive bounds
    assert trials["depth"].between(1, 4).all() and trials["width"].between(8, 512).all()

    usable = trials[trials["status"].isin(["completed", "stopped early"])]
    assert best["value"] == pytest.approx(usable["best_roc_auc"].max())
    winner = trials.set_index("trial_id").loc[best["trial_id"]]
    assert best["hyperparameters"]["depth"] == winner["depth"]
    assert best["best_epoch"] == winner["best_epoch"] and best["metric"] == "roc_auc"
    assert best["value"] > 0.9  # the breast cancer table is easy: a broken pipeline scores ~0.5
    assert len(best["data_sha256"]) == 64 and best["seed"] == 1

    assert spec["data"]["rows"] == 569 and spec["data"]["positive"] == "malignant"
    assert spec["splits"] == {"train": 364, "val": 91, "test": 114}
    assert spec["options"]["samples"] == 10 and spec["space"]["name"] == "mlp-default"
    assert list((run_dir / "tune").glob("experiment_state-*.json"))  # Tuner.restore can find it
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert epochs.groupby("trial_id")["epoch"].max().sum() == trials["epochs"].sum()
    assert "best: roc_auc" in proc.stdout and str(run_dir) in proc.stdout


def test_mixed_csv_with_failing_trials_and_a_seeded_replay(tmp_path, mixed_csv):
    common = ["run", str(mixed_csv), "--target", "label", "--samples", "6", "--max-epochs", "3",
              "--metric", "log_loss", "--seed", "5", "--results", str(tmp_path / "out"), "--quiet", *FAST]
    # trials with a learning rate above 1e-3 raise inside the trial (a test-only hook)
    proc = run_cli([*common, "--name", "first"], cwd=tmp_path, env={"HPSEARCH_TEST_FAIL_ABOVE_LR": "0.001"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == ""  # --quiet
    trials, best, spec = read_run(tmp_path / "out" / "first")
    errored = trials[trials["status"] == "errored"]
    assert len(errored) >= 1 and (errored["learning_rate"] > 0.001).all()
    assert errored["error"].str.contains("injected failure for tests").all()
    fine = trials[trials["status"] != "errored"]
    assert len(fine) >= 1 and fine["best_log_loss"].notna().all()
    assert best["mode"] == "min" and best["value"] == pytest.approx(fine["best_log_loss"].min())
    assert {f["name"]: f["kind"] for f in spec["data"]["features"]} == {
        "alpha": "numeric", "beta": "numeric", "gamma": "numeric", "colour": "categorical"}

    again = run_cli([*common, "--name", "second"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    replay, _, _ = read_run(tmp_path / "out" / "second")
    params = ["depth", "width", "dropout", "batch_size", "learning_rate", "activation"]
    pd.testing.assert_frame_equal(trials[params], replay[params])  # same seed, same configurations


def test_a_search_where_every_trial_fails_exits_2_and_saves_nothing(tmp_path, mixed_csv):
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--samples", "2", "--max-epochs", "2",
                    "--results", str(tmp_path / "out"), "--name", "doomed", *FAST],
                   cwd=tmp_path, env={"HPSEARCH_TEST_FAIL_ABOVE_LR": "0"})
    assert proc.returncode == 2
    assert "error: all 2 trials failed" in proc.stderr and "injected failure for tests" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sonar_from_the_shared_tables(tmp_path):
    sonar = require_shared("sonar.csv")
    proc = run_cli(["run", str(sonar), "--no-header", "--target", "-1", "--samples", "4", "--max-epochs", "4",
                    "--results", str(tmp_path / "out"), "--name", "sonar", *FAST], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials, best, spec = read_run(tmp_path / "out" / "sonar")
    assert spec["data"]["rows"] == 208 and len(spec["data"]["features"]) == 60
    assert spec["data"]["labels"] == {"0": "M", "1": "R"}
    assert len(trials) == 4 and best["value"] > 0.5
