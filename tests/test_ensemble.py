"""The ensemble: greedy selection over the CV's out-of-fold predictions, and a run that exports the
weighted mean of its best networks as one Keras model, which every way of predicting reads alike."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from search.metrics import score_all
from search.selection import select_ensemble
from tests.conftest import run_cli


def _halves(n: int = 400, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``a`` knows the first half of the rows, ``b`` the second, ``noise`` neither."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    first = np.arange(n) < n // 2
    informed = np.clip(0.5 + 0.4 * (2 * y - 1) + rng.normal(0, 0.15, n), 0, 1)
    guess = rng.uniform(0, 1, n)
    return y, {"a": np.where(first, informed, guess), "b": np.where(first, guess, informed),
               "noise": rng.uniform(0, 1, n)}


def test_the_selection_mixes_networks_that_know_different_rows():
    y, oof = _halves()
    choice = select_ensemble(y, oof, "roc_auc", "a", max_members=5)
    assert choice.chosen
    assert {m.trial_id for m in choice.members} >= {"a", "b"}
    assert sum(m.weight for m in choice.members) == pytest.approx(1.0)
    # counts of the steps up to the best one, of at most 25
    assert any(all(abs(m.weight * steps - round(m.weight * steps)) < 1e-9 for m in choice.members)
               for steps in range(1, 26))
    mixed = choice.probability(oof)
    assert choice.score == pytest.approx(score_all(y, mixed)["roc_auc"])
    assert choice.single_score == pytest.approx(score_all(y, oof["a"])["roc_auc"])
    assert choice.score > choice.single_score + 0.05
    # cross-validated too: chosen on four fifths of the rows, the mean still wins on the fifth left out
    assert choice.held_out[0] > choice.held_out[1] + 0.05


def test_a_mean_that_wins_only_on_the_rows_that_chose_its_weights_is_not_kept():
    """One informative network and four of pure noise: on the rows that choose the weights, some noise
    always helps a little by chance; cross-validated, it does not."""
    from search.selection.ensemble import _greedy, _scorer

    kept = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y, folds = rng.integers(0, 2, 300), np.arange(300) % 5
        oof = {"a": 0.5 + 0.1 * (2 * y - 1) + rng.normal(0, 0.25, 300)}
        oof |= {f"noise{k}": rng.uniform(0, 1, 300) for k in range(4)}
        members, in_sample = _greedy(oof, _scorer(y, "roc_auc", folds), "roc_auc", 5)
        choice = select_ensemble(y, oof, "roc_auc", "a", max_members=5, folds=folds)
        assert len(members) > 1 and round(in_sample, 4) > round(choice.single_score, 4)  # the old rule kept it
        mixed, alone = choice.held_out
        assert choice.chosen == (round(mixed, 4) > round(alone, 4))
        if not choice.chosen:
            assert [m.trial_id for m in choice.members] == ["a"] and "cross-validated" in choice.reason
        kept.append(choice.chosen)
    assert sum(kept) <= 3, kept


def test_one_network_is_kept_when_no_mean_beats_it():
    y, oof = _halves()
    same = {"a": oof["a"], "copy": oof["a"].copy(), "reversed": 1 - oof["a"]}
    choice = select_ensemble(y, same, "roc_auc", "a", max_members=5)
    assert not choice.chosen and [m.trial_id for m in choice.members] == ["a"]
    assert choice.score == choice.single_score and "winner alone" in choice.reason


def test_a_class_too_rare_to_split_leaves_the_out_of_fold_decision_standing():
    """One positive row: no two parts can both hold it, so there is no cross-validated check, and an
    ensemble that wins out of fold is kept on that alone (rather than failing the split)."""
    y = np.zeros(40, dtype=int)
    y[3] = 1
    rng = np.random.default_rng(0)
    choice = select_ensemble(y, {n: rng.uniform(size=40) for n in "abc"}, "roc_auc", "a", max_members=5)
    assert choice.chosen and choice.held_out is None and choice.score > choice.single_score
    assert "held_out_score" not in choice.to_json()


def test_fold_by_fold_scores_do_not_reward_evening_out_the_folds():
    """Two folds, each ranked perfectly by both candidates, but ``a`` predicts one fold higher than the
    other: pooled, ``a`` scores 0.75 and the selection moves away from it; fold by fold it is perfect,
    and nothing beats it."""
    y = np.tile([0, 1, 0, 1], 50)
    folds = np.repeat([0, 1], 100)
    a = np.where(folds == 0, 0.6, 0.1) + 0.2 * y
    b = 0.4 + 0.2 * y
    pooled = select_ensemble(y, {"a": a, "b": b}, "roc_auc", "a", max_members=5)
    by_fold = select_ensemble(y, {"a": a, "b": b}, "roc_auc", "a", max_members=5, folds=folds)
    assert pooled.single_score == pytest.approx(0.75) and "kept one network (b)" in pooled.reason
    assert not by_fold.chosen and by_fold.single_score == pytest.approx(1.0)
    assert [m.trial_id for m in by_fold.members] == ["a"]


def test_the_most_members_caps_the_distinct_networks():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    part = np.arange(600) // 100  # six candidates, each informed on its own sixth of the rows
    oof = {f"c{k}": np.where(part == k, 0.5 + 0.4 * (2 * y - 1), rng.uniform(0, 1, 600)) for k in range(6)}
    assert len(select_ensemble(y, oof, "roc_auc", "c0", max_members=2).members) == 2
    assert len(select_ensemble(y, oof, "roc_auc", "c0", max_members=6).members) >= 4


def _table(n: int = 360, seed: int = 3) -> pd.DataFrame:
    """Rows whose class needs two different views (a product, a band of a third column), and a text column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    city = rng.choice(["north", "south", "east"], n)
    logit = 1.5 * x[:, 0] * x[:, 1] + 2.0 * (np.abs(x[:, 2]) < 0.6) - 1.0 + 0.8 * (city == "east")
    y = rng.uniform(size=n) < 1 / (1 + np.exp(-2 * logit))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "city": city,
                         "label": np.where(y, "yes", "no")})


@pytest.mark.slow
def test_a_run_exports_an_ensemble_that_every_way_of_predicting_reads_alike(tmp_path):
    """Trials run to their last epoch (grace period = max epochs), so the candidates, and the ensemble
    over them, are the same on every run of the test."""
    mlflow = pytest.importorskip("mlflow", reason="the MLflow extra is not installed (pip install -e '.[mlflow]')")
    data = tmp_path / "two views [v1].csv"
    _table().to_csv(data, index=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(["run", str(data), "--target", "label", "--samples", "8", "--max-epochs", "12", "--ensemble",
                    "--grace-period", "12", "--repeats", "1", "--cpus", "2", "--name", "mixed", "--results", "out",
                    "--mlflow", "--mlflow-uri", store], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "mixed"
    metadata = json.loads((run_dir / "model" / "metadata.json").read_text())
    ensemble = metadata["ensemble"]
    assert ensemble["chosen"], ensemble["reason"]
    networks = ensemble["networks"]
    assert 2 <= len(networks) <= 5 and sum(n["weight"] for n in networks) == pytest.approx(1.0)
    assert "model: ensemble of" in proc.stdout

    # the threshold is the ensemble's own: Youden's J on its weighted out-of-fold mean
    from search.selection import choose_threshold

    oof = pd.read_parquet(run_dir / "oof.parquet")
    per_row = {tid: f.groupby("row")["probability"].mean() for tid, f in oof.groupby("candidate")}
    mixed = sum(n["weight"] * per_row[n["trial_id"]] for n in networks)
    y = oof.groupby("row")["y"].first().loc[mixed.index].to_numpy()
    assert metadata["threshold"] == pytest.approx(choose_threshold(y, mixed.to_numpy(), "roc_auc")[0])
    # the selection's score: the mean over the folds of the weighted mean's fold scores
    fold_mixed = sum(n["weight"] * oof.query("candidate == @n['trial_id']").set_index(["fold", "row"])["probability"]
                     for n in networks)
    labels = oof.drop_duplicates(["fold", "row"]).set_index(["fold", "row"])["y"].loc[fold_mixed.index]
    per_fold = [score_all(labels.loc[f].to_numpy(), fold_mixed.loc[f].to_numpy())["roc_auc"]
                for f in fold_mixed.index.get_level_values(0).unique()]
    assert ensemble["oof_score"] == pytest.approx(np.mean(per_fold))
    # ... and it was kept because it also wins cross-validated, weights chosen on the other folds
    assert ensemble["held_out_score"] > ensemble["held_out_single_score"]

    # one Keras model, loaded in safe mode with plain Keras: its mean is the members' weighted mean
    frame = pd.read_csv(data).drop(columns=["label"])
    script = f"""
import sys, json, keras, numpy as np, pandas as pd
sys.path.insert(0, {str(run_dir / 'model')!r})
from inputs import to_inputs
model = keras.saving.load_model({str(run_dir / 'model' / 'model.keras')!r}, safe_mode=True)
inputs = to_inputs(pd.read_csv({str(data)!r}), {str(run_dir / 'model' / 'metadata.json')!r})
members = keras.Model(model.input, model.get_layer("member_probabilities").output)(inputs)
print(json.dumps({{"p": np.asarray(model(inputs)).ravel().tolist(), "members": np.asarray(members).tolist(),
                  "weights": model.get_layer("ensemble_weights").get_weights()[0].ravel().tolist()}}))
"""
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                           env={**__import__("os").environ, "KERAS_BACKEND": "tensorflow"})
    assert plain.returncode == 0, plain.stderr[-2000:]
    got = json.loads(plain.stdout.strip().splitlines()[-1])
    # each member is bagged: one network per CV fold, each holding an equal part of the member's weight
    fold_models = [n["fold_models"] for n in networks]
    assert set(fold_models) == {5} and len(got["weights"]) == sum(fold_models)
    assert got["weights"] == pytest.approx([n["weight"] / k for n, k in zip(networks, fold_models, strict=True) for _ in range(k)],
                                           abs=1e-7)
    # ... and each fold model is the very network the CV trained on that fold: it predicts its held-out rows
    # as the CV did
    members, column = np.asarray(got["members"]), 0
    for n, k in zip(networks, fold_models, strict=True):
        for fold in range(k):
            held_out = oof.query("candidate == @n['trial_id'] and fold == @fold")
            assert members[held_out["row"].to_numpy(), column] == pytest.approx(held_out["probability"].to_numpy(),
                                                                                abs=1e-5), (n["trial_id"], fold)
            column += 1
    assert got["p"] == pytest.approx((np.asarray(got["members"]) @ np.asarray(got["weights"])).tolist(), abs=1e-6)

    # hpsearch predict, the Python API and the MLflow pyfunc give the same probabilities
    predicted = run_cli(["predict", str(run_dir), str(data)], cwd=tmp_path, timeout=180)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    by_cli = pd.read_csv(io.StringIO(predicted.stdout))["probability"].to_numpy()
    import search

    result = search.load(run_dir)
    by_api = result.predict(frame)["probability"].to_numpy()
    assert result.ensemble["trial_id"].tolist() == [n["trial_id"] for n in networks]
    assert result.ensemble["weight"].sum() == pytest.approx(1.0) and "cv_roc_auc" in result.ensemble
    assert result.ensemble["fold_models"].tolist() == fold_models
    client = mlflow.MlflowClient(tracking_uri=store)
    parent = next(r for r in client.search_runs([client.get_experiment_by_name("hpsearch").experiment_id])
                  if r.info.run_name == "mixed")
    mlflow.set_tracking_uri(store)
    by_pyfunc = mlflow.pyfunc.load_model(f"runs:/{parent.info.run_id}/model").predict(frame)["probability"]
    assert by_api == pytest.approx(got["p"], abs=1e-6)
    assert by_pyfunc.to_numpy() == pytest.approx(by_api, abs=1e-6)
    assert by_cli == pytest.approx(by_api, abs=2e-6)  # the CLI writes 6 decimals

    # the test part: the ensemble's probabilities, and each network's score beside it
    test = json.loads((run_dir / "test.json").read_text())
    tested = pd.read_parquet(run_dir / "test_predictions.parquet")
    assert tested["probability"].to_numpy() == pytest.approx(by_api[tested["row"].to_numpy()], abs=1e-6)
    assert set(test["networks"]) == {n["trial_id"] for n in networks}
    assert test["trained_on"].startswith("bagged")

    report = (run_dir / "report.md").read_text()
    section = report.split("## Ensemble", 1)[1].split("\n## ", 1)[0]
    assert all(n["trial_id"] in section for n in networks) and "kB" in section and "ms" in section
    assert "cross-validated (weights chosen on all parts of the rows but one" in section

    # --no-ensemble: the winner alone, re-scored among --top-k candidates, and its own threshold
    again = run_cli(["retrain", str(run_dir), "--no-ensemble"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    single = json.loads((run_dir / "model" / "metadata.json").read_text())
    cv = json.loads((run_dir / "cv.json").read_text())
    assert not single["ensemble"]["chosen"] and single["ensemble"]["reason"] == "--no-ensemble"
    assert len(cv["candidates"]) == 3 and single["trial_id"] == cv["winner"]
    winner = pd.read_parquet(run_dir / "oof.parquet").query("candidate == @cv['winner']")
    alone = winner.groupby("row").agg(y=("y", "first"), p=("probability", "mean"))
    assert single["threshold"] == pytest.approx(choose_threshold(alone["y"].to_numpy(), alone["p"].to_numpy(),
                                                                 "roc_auc")[0])
    assert "One network is exported" in (run_dir / "report.md").read_text()
    assert "member_probabilities" not in json.dumps(
        json.loads(__import__("zipfile").ZipFile(run_dir / "model" / "model.keras").read("config.json")))


SKIPPED_CHECK = """
import json, sys
from search.cluster.session import ray_session
from search.compute.devices import Compute
from search.data.table import load_table, split_rows
from search.selection.cv import Candidate, cross_validate
from search.spec import RunSpec

spec = RunSpec(data=sys.argv[1], target="label", cpus=2, folds=3, repeats=1)
table = load_table(spec.data, spec.target)
splits = split_rows(table.y, spec.test_size, spec.val_size, spec.seed)
candidates = [Candidate(name, {"depth": 1, "width": width, "batch_size": 16}, 2) for name, width in
              (("a", 8), ("b", 16), ("c", 4))]
with ray_session(spec.session_options()):
    cv = cross_validate(table, splits, candidates, metric="roc_auc", rule="kfold", folds=3, repeats=1, seed=0,
                        compute=spec.compute(), threshold=None, max_epochs=2, deadline=0.0, ensemble_members=5)
print(json.dumps({"chosen": cv.ensemble.chosen, "reason": cv.ensemble.reason, "threshold": cv.threshold,
                  "folds": [len(c.fold_scores) for c in cv.candidates], "winner": cv.winner.trial_id}))
"""


@pytest.mark.slow
def test_a_cv_cut_short_by_its_deadline_exports_the_winner_alone(tmp_path, mixed_csv):
    """Past the CV's deadline only the first candidate's first task trains (its first fold, or the first
    part of its folds where a task holds several): the others have no fold, and the winner lacks the other
    folds' rows, so no ensemble is chosen over rows it did not predict."""
    proc = subprocess.run([sys.executable, "-c", SKIPPED_CHECK, str(mixed_csv)], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 1 <= got["folds"][0] < 3 and got["folds"][1:] == [0, 0] and got["winner"] == "a"
    assert not got["chosen"] and "lacks an out-of-fold prediction" in got["reason"]
    assert 0.0 <= got["threshold"] <= 1.0


@pytest.mark.slow
def test_a_winner_kept_alone_is_exported_as_its_fold_models(tmp_path):
    """On a table under 1,000 non-test rows no ensemble is selected unless asked for (``--ensemble``), and
    the winner alone is bagged as an ensemble's members are: one network per CV fold, each the very fit
    the CV scored, weights equal."""
    data = tmp_path / "alone [v1].csv"
    _table().to_csv(data, index=False)
    proc = run_cli(["run", str(data), "--target", "label", "--samples", "3", "--max-epochs", "4", "--grace-period", "4",
                    "--repeats", "1", "--cpus", "2", "--name", "alone", "--results", "out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "alone"
    metadata = json.loads((run_dir / "model" / "metadata.json").read_text())
    cv = json.loads((run_dir / "cv.json").read_text())
    ensemble = metadata["ensemble"]
    assert not ensemble["chosen"] and ensemble["reason"].startswith("the table has 288 non-test rows")
    assert cv["ensemble"]["candidates"] >= 2  # candidates there were: the table's size decided
    assert [n["trial_id"] for n in ensemble["networks"]] == [cv["winner"]]
    assert ensemble["networks"][0]["fold_models"] == cv["folds"] > 1
    assert metadata["trained_on"].startswith("bagged: the winner's") and "fold models" in metadata["model"]
    script = f"""
import sys, json, keras, numpy as np, pandas as pd
sys.path.insert(0, {str(run_dir / 'model')!r})
from inputs import to_inputs
model = keras.saving.load_model({str(run_dir / 'model' / 'model.keras')!r}, safe_mode=True)
inputs = to_inputs(pd.read_csv({str(data)!r}), {str(run_dir / 'model' / 'metadata.json')!r})
members = keras.Model(model.input, model.get_layer("member_probabilities").output)(inputs)
print(json.dumps({{"members": np.asarray(members).tolist(),
                  "weights": model.get_layer("ensemble_weights").get_weights()[0].ravel().tolist()}}))
"""
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                           env={**__import__("os").environ, "KERAS_BACKEND": "tensorflow"})
    assert plain.returncode == 0, plain.stderr[-2000:]
    got = json.loads(plain.stdout.strip().splitlines()[-1])
    assert got["weights"] == pytest.approx([1 / cv["folds"]] * cv["folds"], abs=1e-7)
    oof = pd.read_parquet(run_dir / "oof.parquet").query("candidate == @cv['winner']")
    members = np.asarray(got["members"])
    for fold in range(cv["folds"]):
        held_out = oof.query("fold == @fold")
        assert members[held_out["row"].to_numpy(), fold] == pytest.approx(held_out["probability"].to_numpy(), abs=1e-5)
    assert cv["winner"] in json.loads((run_dir / "test.json").read_text())["networks"]
    assert "It is bagged: the mean of its" in (run_dir / "report.md").read_text()
    assert f"model: the winner alone, bagged as its {cv['folds']} fold models" in proc.stdout
