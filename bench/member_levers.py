"""Two ways to widen the exported ensemble, tried on finished runs before building either: a bagged
logistic regression as one more candidate, and each member's models on a second split into folds.

``python -m bench.member_levers RUN [RUN ...]`` reads each run folder's ``cv.json``, ``oof.parquet`` and
``test_predictions.parquet``. A run folder made by ``bench.ensemble`` whose table was in a temporary
folder (named ``<table>-default-s<seed>``) gets its table written again by ``bench.tables``. Writes
``bench/results/member-levers-<stamp>.md``.

- **A logistic regression member.** The baseline's logistic regression (``search.selection.baselines``)
  is fitted on each of the run's CV folds: its out-of-fold predictions, and the mean of its fold models
  on the test part. The exported model (its out-of-fold mix, from the CV's weights) and the regression
  go through ``select_ensemble`` as two candidates, with the run's cross-validated check; the test ROC
  AUC of what it keeps.
- **A second fold split.** Each exported member is trained again on the 5 folds of the run's own split
  (split A, the CV's ``fold_plan``, which reproduces the export) and of a second one (B, its seed +
  1000), with the CV's epochs and seeds; the test ROC AUC of bag A, bag B and of all 10 fold models.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.ensemble_choice import fold_mean, read_oof, write_result  # noqa: E402
from bench.tables import write_table  # noqa: E402


def reloaded(run: Path, scratch: Path) -> tuple[Any, Any, Any]:
    """The run's spec, table and splits; its table written again where the run's copy is gone."""
    from search.run_folder import read_run_spec, reload_data

    described = json.loads((run / "spec.json").read_text())
    if not Path(described["options"]["data"]).exists():
        described["options"]["data"] = write_table(run.name.split("-default")[0], scratch / "data")["data"]
        run_copy = scratch / run.name
        run_copy.mkdir(parents=True, exist_ok=True)
        (run_copy / "spec.json").write_text(json.dumps(described))
        run = run_copy
    spec, _, described = read_run_spec(run)
    table, splits = reload_data(spec, described)
    return spec, table, splits


def logistic_member(run: Path, table: Any, test: np.ndarray) -> dict[str, Any]:
    from search.metrics import score_all
    from search.selection.baselines import baseline_inputs, baseline_model
    from search.selection.ensemble import select_ensemble

    cv, ours, complete = read_oof(run)
    y, folds, rows = ours["y"].to_numpy().astype(int), ours["fold"].to_numpy(), ours["row"].to_numpy()
    members = cv["ensemble"]["members"] if cv["ensemble"]["chosen"] else [{"trial_id": cv["winner"], "weight": 1.0}]
    exported_oof = np.sum([m["weight"] * complete[m["trial_id"]] for m in members], axis=0)
    linear_oof, linear_test = np.zeros(len(y)), []
    for f in np.unique(folds):
        held = rows[folds == f]
        train = np.setdiff1d(np.unique(rows), held)
        model = baseline_model("logistic regression", table).fit(baseline_inputs(table, train, "lr"), table.y[train])
        linear_oof[folds == f] = model.predict_proba(baseline_inputs(table, held, "lr"))[:, 1]
        linear_test.append(model.predict_proba(baseline_inputs(table, test, "lr"))[:, 1])
    parts = ours.groupby("row")["fold"].transform("min").to_numpy()
    choice = select_ensemble(y, {"exported": exported_oof, "linear": linear_oof}, "roc_auc", "exported", 5, folds,
                             parts)
    weights = {m.trial_id: m.weight for m in choice.members} if choice.chosen else {"exported": 1.0}
    exported_test = pd.read_parquet(run / "test_predictions.parquet").set_index("row").loc[test, "probability"]
    mixed = weights.get("exported", 0.0) * exported_test.to_numpy() + weights.get("linear", 0.0) * np.mean(
        linear_test, axis=0)
    return {"oof_exported": fold_mean(y, exported_oof, folds), "oof_linear": fold_mean(y, linear_oof, folds),
            "linear_weight": weights.get("linear", 0.0),
            "test_exported": score_all(table.y[test], exported_test.to_numpy())["roc_auc"],
            "test_linear": score_all(table.y[test], np.mean(linear_test, axis=0))["roc_auc"],
            "test_kept": score_all(table.y[test], mixed)["roc_auc"]}


def second_split(run: Path, spec: Any, table: Any, splits: Any) -> dict[str, Any]:
    from search.compute import use_backend
    from search.data import fit_and_encode
    from search.metrics import score_all
    from search.network import fit_network
    from search.selection.cv import fold_plan

    use_backend(spec.compute())
    cv = json.loads((run / "cv.json").read_text())
    candidates = {c["trial_id"]: c for c in cv["candidates"]}
    members = cv["ensemble"]["members"] if cv["ensemble"]["chosen"] else [{"trial_id": cv["winner"], "weight": 1.0}]
    test = splits.test
    bags, began = {}, time.time()
    for label, state in (("A", spec.seed), ("B", spec.seed + 1000)):
        bag = np.zeros(len(test))
        for f, (train, _) in enumerate(fold_plan(table, splits, "kfold", cv["folds"], 1, state)):
            _, (x, x_test) = fit_and_encode(table.features.iloc[train], table.schema, table.features.iloc[test])
            for m in members:
                c = candidates[m["trial_id"]]
                model = fit_network(c["hyperparameters"], x, table.y[train].astype(np.float32),
                                    int(c["epochs"]), spec.seed + f)
                bag += m["weight"] / cv["folds"] * np.asarray(model.predict(x_test, batch_size=8192, verbose=0)).ravel()
        bags[label] = bag
    y = table.y[test]
    return {"bag_a": score_all(y, bags["A"])["roc_auc"], "bag_b": score_all(y, bags["B"])["roc_auc"],
            "bag_ab": score_all(y, (bags["A"] + bags["B"]) / 2)["roc_auc"], "seconds": time.time() - began}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.member_levers", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    rows = ["| run | oof exported | oof linear | linear's weight kept | test exported | test linear | "
            "test kept | bag A (5) | bag B (5) | bag A+B (10) |", "|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-levers-") as scratch:
        for run in args.runs:
            spec, table, splits = reloaded(run, Path(scratch))
            linear, bags = logistic_member(run, table, splits.test), second_split(run, spec, table, splits)
            cells = [linear["oof_exported"], linear["oof_linear"], linear["linear_weight"], linear["test_exported"],
                     linear["test_linear"], linear["test_kept"], bags["bag_a"], bags["bag_b"], bags["bag_ab"]]
            rows.append(f"| {run.name} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    write_result(args.out, "member-levers", "A logistic regression member, and a second fold split", args.runs, rows)

if __name__ == "__main__":
    main()
