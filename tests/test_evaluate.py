"""`hpsearch evaluate`: nested CV of the whole procedure, checked from its own outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_nested_cv_scores_each_outer_fold_with_a_run_that_never_saw_it(tmp_path, mixed_csv):
    """Also the TensorFlow backend (JAX is the default) and mixed precision end to end: trials, CV fits
    and the final fit in float16, then the final weights in a float32 network for the export."""
    out = tmp_path / "out"
    proc = run_cli(["evaluate", str(mixed_csv), "--target", "label", "--outer-folds", "2", "--samples", "2",
                    "--max-epochs", "3", "--grace-period", "3", "--top-k", "1", "--folds", "2", "--cpus", "2",
                    "--backend", "tensorflow", "--mixed-precision", "--results", str(out), "--name", "nested"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "outer fold 2/2" in proc.stdout
    folder = out / "nested"
    summary = json.loads((folder / "evaluation.json").read_text())
    table = pd.read_csv(mixed_csv)
    y = (table["label"] == "yes").to_numpy().astype(int)

    held_out = [np.array(f["rows"]) for f in summary["folds"]]
    assert sorted(np.concatenate(held_out).tolist()) == list(range(len(table)))  # disjoint, covering
    for k, rows in enumerate(held_out, start=1):
        run = folder / f"outer-{k}"
        spec = json.loads((run / "spec.json").read_text())
        assert spec["data"]["rows"] == len(table) - len(rows)  # the outer run saw only the other fold
        cv = json.loads((run / "cv.json").read_text())
        assert cv["repeats"] == 3  # a tiny table gets repeated CV without asking
        trials = pd.read_csv(run / "trials.csv")  # what each trial's own network computed in
        assert set(trials["compute_dtype"]) == {"float16"} and set(trials["device"]) == {"CPU"}
        assert set(trials["backend"]) == {"tensorflow"}

    # Score each held-out fold again, from the exported model alone, in a fresh Keras.
    import keras

    for k, (fold, rows) in enumerate(zip(summary["folds"], held_out, strict=True), start=1):
        model = keras.saving.load_model(folder / f"outer-{k}" / "model" / "model.keras", safe_mode=True)
        networks = _networks(model)  # one, or a bagged winner's fold models
        assert networks and {layer.compute_dtype for n in networks for layer in n.layers} == {"float32"}
        meta = json.loads((folder / f"outer-{k}" / "model" / "metadata.json").read_text())
        part = table.iloc[rows]
        x = {f["input"]: (part[f["name"]].to_numpy("float32") if f["kind"] == "numeric"
                          else part[f["name"]].fillna("").astype(str).to_numpy()).reshape(-1, 1)
             for f in meta["features"]}
        p = np.asarray(model(x)).ravel()
        from sklearn.metrics import accuracy_score, roc_auc_score

        assert fold["scores"]["roc_auc"] == pytest.approx(roc_auc_score(y[rows], p), abs=1e-6)
        assert fold["scores"]["accuracy"] == pytest.approx(accuracy_score(y[rows], p >= meta["threshold"]))
    # retrain of an outer run re-scores that run's rows only, never the fold held out from it
    outer = folder / "outer-1"
    before = pd.read_parquet(outer / "oof.parquet")["row"].nunique()
    retrained = run_cli(["retrain", str(outer)], cwd=tmp_path)
    assert retrained.returncode == 0, retrained.stderr[-2000:]
    after = pd.read_parquet(outer / "oof.parquet")["row"]
    assert after.nunique() == before == len(table) - len(held_out[0]) and after.max() < before
    aucs = [f["scores"]["roc_auc"] for f in summary["folds"]]
    assert summary["mean"]["roc_auc"] == pytest.approx(np.mean(aucs))
    assert "logistic regression" in summary["baselines"]
    assert "| hpsearch |" in (folder / "evaluation.md").read_text()


@pytest.mark.parametrize("outer, message", [
    ("5", "error: --outer-folds 5: class 1 has only 8 rows, too few to put some in every fold."),
    ("1", "error: --outer-folds: must be between 2 and 20, got 1."),
])
def test_evaluate_refuses_folds_it_cannot_fill(tmp_path, mixed_csv, outer, message):
    table = pd.read_csv(mixed_csv)
    rare = pd.concat([table[table["label"] == "no"], table[table["label"] == "yes"].head(8)])
    rare.to_csv(tmp_path / "rare.csv", index=False)
    proc = run_cli(["evaluate", str(tmp_path / "rare.csv"), "--target", "label", "--outer-folds", outer,
                    "--results", str(tmp_path / "out")], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _networks(model):
    """Every network inside an exported model, however deep (an ensemble wraps each in ``member_i``)."""
    found = []
    for layer in model.layers:
        if layer.name == "network":
            found.append(layer)
        elif hasattr(layer, "layers"):
            found += _networks(layer)
    return found
