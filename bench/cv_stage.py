"""The CV stage's two ways side by side: one Ray task per (candidate, fold) against each candidate's
folds trained together in one vmapped program (``search/selection/fold_fits.py``).

Run by hand, on a finished run folder (its table, its candidates, its fold plan)::

    .venv/bin/python -m bench.cv_stage results/NAME [ROUNDS]

Both ways run on the same candidates and folds, in alternating rounds, in one Ray session. The one-fold
tasks are asked for by keeping weights (as the holdout rule does), which costs a copy of the weights at
each better epoch. Writes ``bench/results/cv-stage-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    from search import selection
    from search.cluster import ray_session
    from search.run_folder import read_run_spec, reload_data
    from search.selection import Candidate, fold_plan, patience_for

    folder = Path(sys.argv[1]).resolve()
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    spec, plan, described = read_run_spec(folder)
    table, splits = reload_data(spec, described)
    cv = json.loads((folder / "cv.json").read_text())
    candidates = [Candidate(c["trial_id"], c["hyperparameters"], c["epochs"]) for c in cv["candidates"]]
    folds = fold_plan(table, splits, cv["rule"], cv["folds"], cv["repeats"], spec.seed)
    max_epochs = int(np.ceil(plan.fidelity.max_epochs))
    patience = patience_for(max_epochs, len(splits.train))
    found = []
    with ray_session(spec.session_options()):
        for r in range(rounds):
            row: dict = {"round": r + 1}
            for way, keep in (("one task per fold", True), ("folds together", False)):
                began = time.time()
                out, _ = selection.run_fits(table, folds, candidates, spec.metric, spec.seed, spec.compute(),
                                          max_epochs, patience, time.time() + 1e6, keep_weights=keep, on_progress=None)
                row[way] = round(time.time() - began, 2)
                row[f"{way}: mean last-epoch {spec.metric}"] = [
                    round(float(np.mean([out[(c, f)]["scores"][-1] for f in range(len(folds))])), 4)
                    for c in range(len(candidates))]
            print(json.dumps(row), flush=True)
            found.append(row)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    record = {"run": str(folder), "candidates": [c.hyperparameters for c in candidates], "folds": len(folds),
              "max_epochs": max_epochs, "rounds": found}
    (RESULTS / f"cv-stage-{stamp}.json").write_text(json.dumps(record, indent=2))
    lines = [f"# CV stage: {folder.name}, {len(candidates)} candidates x {len(folds)} folds, {max_epochs} epochs", "",
             "| round | one task per fold (s) | folds together (s) |", "|---|---|---|"]
    lines += [f"| {r['round']} | {r['one task per fold']} | {r['folds together']} |" for r in found]
    (RESULTS / f"cv-stage-{stamp}.md").write_text("\n".join(lines) + "\n")
    print(f"bench/results/cv-stage-{stamp}.md")


if __name__ == "__main__":
    main()
