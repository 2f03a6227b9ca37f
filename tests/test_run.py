"""``hpsearch run`` end to end: real Ray (local, 2 CPUs), real Keras training, tiny data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.space import load_space
from search.tuning.tuner import STATUSES
from tests.conftest import fakes, require_shared, run_cli

pytestmark = pytest.mark.slow
FAST = ["--cpus", "2", "--grace-period", "1", "--reduction-factor", "3", "--top-k", "2", "--folds", "3"]


def read_run(run_dir: Path):
    trials = pd.read_csv(run_dir / "trials.csv")
    best = json.loads((run_dir / "best_config.json").read_text())
    spec = json.loads((run_dir / "spec.json").read_text())
    return trials, best, spec


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory):
    """One small search on the builtin table, shared by the tests that read its outputs."""
    tmp_path = tmp_path_factory.mktemp("builtin")
    proc = run_cli(["run", "--samples", "10", "--max-epochs", "9", "--seed", "1", "--name", "bc",
                    "--searcher", "optuna", "--results", str(tmp_path / "out"), *FAST], cwd=tmp_path,
                   env={"HPSEARCH_XLA_CACHE": str(tmp_path / "xla")})
    return tmp_path, proc


def test_default_table_search_end_to_end(builtin_run):
    tmp_path, proc = builtin_run
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
    # the default space's known-good configs ran, as written (Optuna's enqueued trials; its trial ids are
    # random, so not their order): a sampled config would not hit 3 x 256 at exactly these values
    for point in load_space("default").first_trials:
        same = pd.Series(True, index=trials.index)
        for key, value in point.items():
            same &= (trials[key] - value).abs() < 1e-9 if isinstance(value, float) else trials[key] == value
        assert same.sum() == 1, point
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
    assert spec["options"]["searcher"] == "optuna"  # TPE through Ray's OptunaSearch; random is the default
    assert list((run_dir / "tune").glob("experiment_state-*.json"))  # Tuner.restore can find it
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert epochs.groupby("trial_id")["epoch"].max().sum() == trials["epochs"].sum()
    assert "best: roc_auc" in proc.stdout and str(run_dir) in proc.stdout
    # progress on stderr, off a terminal: a line per finished trial, with its short id, score and epochs
    # (Ray's ids are ``<experiment>_<00012>`` from its own generator, a bare ``1e84898f`` under a searcher)
    ended = re.findall(r"^trial (\w+) (?:completed|stopped early): roc_auc \d\.\d{4} after [\d.]+ epochs",
                       proc.stderr, flags=re.M)
    assert sorted(ended) == sorted(t.split("_", 1)[-1] for t in trials["trial_id"])
    for stage in ("search: done in", "CV: done in", "final fit: done in", "export: done in", "report: done in"):
        assert stage in proc.stderr and stage not in proc.stdout, stage  # each stage's end and its duration
    # The devices Ray had (--cpus 2), and where each trial trained: no GPU was asked for
    assert spec["devices"]["cpus"] == 2 and set(trials["device"]) == {"CPU"}
    assert set(trials["backend"]) == {"jax"}  # the Keras each trial's worker really ran: JAX by default
    assert any((tmp_path / "xla").iterdir())  # and its persistent compile cache (HPSEARCH_XLA_CACHE) filled
    assert f"devices: 2 CPUs, {spec['devices']['gpus']:g} GPUs; 0 of {len(trials)} trials" in proc.stdout
    check_retrain_outputs(run_dir, trials, spec)


def check_retrain_outputs(run_dir: Path, trials: pd.DataFrame, spec: dict) -> None:
    """cv.json, test.json and model/ of a finished run (top-k 2, 3 folds)."""
    import numpy as np

    cv = json.loads((run_dir / "cv.json").read_text())
    assert cv["folds"] == 3 and cv["repeats"] == 1 and len(cv["candidates"]) == 2
    usable = trials[trials["status"].isin(["completed", "stopped early"])]
    # the two best validation scores, best first; on equal scores the fewer epochs first (metrics.ranked_trials)
    top2 = usable.sort_values(["best_roc_auc", "best_epoch"], ascending=[False, True], kind="stable")[
        "trial_id"].head(2).tolist()
    assert [c["trial_id"] for c in cv["candidates"]] == top2
    # folds: disjoint, covering the non-test rows once, stratified (out-of-fold predictions in oof.parquet)
    oof = pd.read_parquet(run_dir / "oof.parquet")
    first = oof[oof["candidate"] == cv["candidates"][0]["trial_id"]]
    folds = [set(rows) for _, rows in first.groupby("fold")["row"]]
    n_rest = spec["splits"]["train"] + spec["splits"]["val"]
    assert sum(map(len, folds)) == n_rest and len(set().union(*folds)) == n_rest and len(folds) == 3
    positives = first.groupby("fold")["y"].sum()
    assert positives.max() - positives.min() <= 1
    assert len(oof) == 2 * n_rest and oof["probability"].between(0, 1).all()
    for cand in cv["candidates"]:
        scores = [f["roc_auc"] for f in cand["fold_scores"]]
        assert len(scores) == 3 and cand["mean"]["roc_auc"] == pytest.approx(np.mean(scores))
    # at least two folds trained at the same time (Ray tasks on 2 CPUs)
    spans = sorted((f["started"], f["ended"]) for c in cv["candidates"] for f in c["fold_scores"])
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    means = {c["trial_id"]: c["mean"]["roc_auc"] for c in cv["candidates"]}
    assert means[cv["winner"]] == pytest.approx(max(means.values()), abs=1e-4)
    assert 0 < cv["threshold"] < 1

    test = json.loads((run_dir / "test.json").read_text())
    cm = test["confusion_matrix"]
    assert test["rows"] == spec["splits"]["test"] == sum(cm.values())
    assert test["accuracy"] == pytest.approx((cm["tp"] + cm["tn"]) / test["rows"])
    metadata = json.loads((run_dir / "model" / "metadata.json").read_text())
    assert metadata["threshold"] == cv["threshold"] and metadata["trial_id"] == cv["winner"]
    # early stopping chosen by CV: the final fit trains as long as the winner's mean fold score peaked
    winner = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
    assert metadata["epochs"] == winner["epochs"] and 1 <= winner["epochs"] <= spec["max_epochs"]
    assert metadata["labels"] == spec["data"]["labels"] and metadata["test"]["roc_auc"] == test["roc_auc"]
    assert {"python", "tensorflow", "keras", "ray", "hpsearch"} <= set(metadata["versions"])


def test_mixed_csv_with_failing_trials_and_a_seeded_replay(tmp_path, mixed_csv):
    common = ["run", str(mixed_csv), "--target", "label", "--samples", "6", "--max-epochs", "3",
              "--metric", "log_loss", "--seed", "5", "--results", str(tmp_path / "out"), "--quiet", *FAST]
    # trials with a learning rate above 1e-3 raise inside the trial (the tests' own fake: tests/fakes)
    proc = run_cli([*common, "--name", "first"], cwd=tmp_path, env=fakes(HPSEARCH_FAKE_FAIL_ABOVE_LR="0.001"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == ""  # --quiet
    trials, best, spec = read_run(tmp_path / "out" / "first")
    errored = trials[trials["status"] == "errored"]
    assert len(errored) >= 1 and (errored["learning_rate"] > 0.001).all()
    assert errored["error"].str.contains("injected failure for tests").all()
    # each failed trial's whole traceback: in the trial table and in the run folder's trial_errors.txt
    assert errored["traceback"].str.contains("Traceback (most recent call last)", regex=False).all()
    kept = (tmp_path / "out" / "first" / "trial_errors.txt").read_text()
    assert all(f"trial {t}:" in kept for t in errored["trial_id"]) and "sitecustomize.py" in kept
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

    check_predict_round_trip(tmp_path, tmp_path / "out" / "first", mixed_csv)


def check_predict_round_trip(tmp_path: Path, run_dir: Path, csv: Path) -> None:
    """`hpsearch predict` on raw rows (text categories, gaps) equals plain Keras in a fresh process."""
    import subprocess
    import sys

    rows = pd.read_csv(csv).head(25)
    rows.insert(0, "row_id", range(100, 125))
    rows["unused"] = 1
    new = tmp_path / "new.csv"
    rows.drop(columns=["label"]).to_csv(new, index=False)
    proc = run_cli(["predict", str(run_dir), str(new), "--id", "row_id", "--out", str(tmp_path / "p.csv")],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ignored columns that the model does not use: unused" in proc.stderr
    preds = pd.read_csv(tmp_path / "p.csv")
    assert list(preds.columns) == ["row_id", "probability", "label"] and len(preds) == 25
    assert set(preds["label"]) <= {"no", "yes"} and preds["probability"].between(0, 1).all()
    metadata = json.loads((run_dir / "model" / "metadata.json").read_text())
    expected = np.where(preds["probability"] >= metadata["threshold"], "yes", "no")
    assert (preds["label"] == expected).all()

    plain = (
        "import json, sys, keras, numpy as np, pandas as pd\n"
        f"m = keras.saving.load_model({str(run_dir / 'model' / 'model.keras')!r}, safe_mode=True)\n"
        f"meta = json.load(open({str(run_dir / 'model' / 'metadata.json')!r}))\n"
        f"df = pd.read_csv({str(new)!r})\n"
        "x = {}\n"
        "for f in meta['features']:\n"
        "    c = df[f['name']]\n"
        "    x[f['input']] = (c.to_numpy('float32') if f['kind'] == 'numeric'\n"
        "                     else c.fillna('').astype(str).to_numpy()).reshape(-1, 1)\n"
        "assert 'search' not in sys.modules\n"
        "print(json.dumps(np.asarray(m(x)).ravel().tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", plain], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(fresh, preds["probability"].to_numpy(), atol=1e-6)
    # On the JAX backend it loads too; with a text column it runs only on TensorFlow (see README)
    load_only = plain.split("df = ")[0] + "assert keras.backend.backend() == 'jax' and m.count_params() > 0\n"
    out = subprocess.run([sys.executable, "-c", load_only], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert out.returncode == 0, out.stderr[-2000:]

    retrained = run_cli(["retrain", str(run_dir), "--folds", "2", "--top-k", "1", "--threshold-rule", "accuracy",
                         "--quiet"], cwd=tmp_path)
    assert retrained.returncode == 0, retrained.stderr[-2000:]
    cv = json.loads((run_dir / "cv.json").read_text())
    assert cv["folds"] == 2 and len(cv["candidates"]) == 1
    # The threshold now follows out-of-fold accuracy: 0.5, unless the best cut-off beats it by two standard errors.
    from sklearn.metrics import accuracy_score

    oof = pd.read_parquet(run_dir / "oof.parquet").groupby("row")  # one prediction per row: the repeats' mean
    y_oof, p_oof = oof["y"].first().to_numpy(), oof["probability"].mean().to_numpy()
    best = max(accuracy_score(y_oof, p_oof >= t) for t in np.unique(p_oof))
    assert "accuracy" in cv["threshold_rule"]
    if best - accuracy_score(y_oof, p_oof >= 0.5) <= 2 * np.sqrt(best * (1 - best) / len(y_oof)):
        assert cv["threshold"] == 0.5
    else:
        assert accuracy_score(y_oof, p_oof >= cv["threshold"]) == best
    assert json.loads((run_dir / "model" / "metadata.json").read_text())["threshold"] == cv["threshold"]


def test_a_search_where_every_trial_fails_exits_2_and_keeps_only_the_tracebacks(tmp_path, mixed_csv):
    args = ["run", str(mixed_csv), "--target", "label", "--samples", "2", "--max-epochs", "2",
            "--results", str(tmp_path / "out"), *FAST]
    proc = run_cli([*args, "--name", "doomed"], cwd=tmp_path, env=fakes(HPSEARCH_FAKE_FAIL_ABOVE_LR="0"))
    assert proc.returncode == 2
    assert "error: all 2 trials failed" in proc.stderr and "injected failure for tests" in proc.stderr
    assert "The most common error (2 of 2 trials)" in proc.stderr and "learning_rate" not in proc.stderr
    assert "Traceback" not in proc.stderr
    kept = tmp_path / "out" / "doomed.trial_errors.txt"
    assert f"Each failed trial's traceback is in {kept}." in proc.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == [kept.name]  # nothing else of the run
    assert kept.read_text().count("Traceback (most recent call last)") == 2

    debug = run_cli(["--debug", *args, "--name", "debugged"], cwd=tmp_path, env=fakes(HPSEARCH_FAKE_FAIL_ABOVE_LR="0"))
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr and "injected failure for tests" in debug.stderr


def test_an_error_as_the_search_starts_is_printed_not_lost(tmp_path, mixed_csv):
    """The driver imports Keras in the background with stderr silenced while the search starts: an error
    in those seconds is still printed (it was lost: exit 1 and nothing said)."""
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--samples", "2", "--max-epochs", "2",
                    "--results", str(tmp_path / "out"), "--name", "early", *FAST],
                   cwd=tmp_path, env=fakes(HPSEARCH_FAKE_SEARCH_SETUP_ERROR="searcher set-up failed for tests"))
    assert proc.returncode == 1
    assert "error: unexpected ValueError: searcher set-up failed for tests" in proc.stderr, proc.stderr[-2000:]
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


RAY_SESSION_CHECK = """
import json, os, ray
from search.spec import RunSpec
from search.cluster.session import ray_session

os.environ["KERAS_BACKEND"] = "tensorflow"
with ray_session(RunSpec(cpus=2, backend="jax").session_options()):
    @ray.remote(num_cpus=1)
    def seen():
        return os.environ.get("KERAS_BACKEND"), os.environ.get("TF_CPP_MIN_LOG_LEVEL"), os.getpid()

    workers = ray.get([seen.remote(), seen.remote()])
    inside = os.environ.get("KERAS_BACKEND"), os.environ.get("TF_CPP_MIN_LOG_LEVEL")
print(json.dumps({"workers": workers, "inside": inside, "after": os.environ.get("KERAS_BACKEND")}))
"""


def test_a_local_ray_hands_the_workers_their_variables_and_leaves_the_driver_as_it_was(tmp_path):
    """The workers' variables go in through the environment Ray starts with (so that Ray's prestarted
    workers can serve the first trials); the driver's own environment is put back at once."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", RAY_SESSION_CHECK], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [w[:2] for w in seen["workers"]] == [["jax", "3"], ["jax", "3"]]
    assert seen["inside"] == ["tensorflow", None] and seen["after"] == "tensorflow"


RUN_THAT_FAILS_AS_RAY_STARTS = '''
import sys, ray, search
try:
    search.run(samples=1, cpus=1, results=sys.argv[1], name="early", quiet=True)
except Exception as exc:
    print("RAISED", type(exc).__name__, exc)
print("RAY_RUNNING", ray.is_initialized())
'''


def test_a_failure_while_ray_starts_stops_that_ray_and_keeps_nothing(tmp_path):
    """A notebook's next run must not find this run's Ray (with its --cpus) still up."""
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", RUN_THAT_FAILS_AS_RAY_STARTS, str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **fakes(HPSEARCH_FAKE_ENCODE_ERROR="encoding failed for tests")})
    assert "RAISED ValueError encoding failed for tests" in proc.stdout, proc.stderr[-2000:]
    assert "RAY_RUNNING False" in proc.stdout
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
