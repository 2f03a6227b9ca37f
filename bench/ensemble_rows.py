"""Does the kept ensemble's gain hold on the test part, by the table's size? And would a stricter
cross-validated check have told the runs apart?

``python -m bench.ensemble_rows RUN [RUN ...]`` reads each finished run folder's ``cv.json``,
``oof.parquet`` and ``test.json`` (nothing is trained). For each run that kept an ensemble: its non-test
rows, the cross-validated check's gain per left-out fold (against the best single candidate chosen on
the other folds, as ``held_out_check`` does; and against the CV winner itself), and the exported
ensemble's test ROC AUC minus its winner's alone. Then the sum of the test gains of the ensembles each
keep rule would keep. Writes ``bench/results/ensemble-rows-<stamp>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))

import numpy as np  # noqa: E402

from bench.ensemble_choice import fold_mean, read_oof, write_result  # noqa: E402


def fold_gains(run: Path) -> dict[str, float] | None:
    from search.selection.ensemble import held_out_scores

    cv, ours, complete = read_oof(run)
    if not cv["ensemble"]["chosen"]:
        return None
    test = json.loads((run / "test.json").read_text())
    y, folds = ours["y"].to_numpy().astype(int), ours["fold"].to_numpy()
    parts = ours.groupby("row")["fold"].transform("min").to_numpy()
    scores = held_out_scores(y, complete, "roc_auc", 5, folds, parts)
    winner = [fold_mean(y[parts == p], complete[cv["winner"]][parts == p], folds[parts == p]) for p in np.unique(parts)]
    best_gain = np.array([mixed - alone for mixed, alone in scores])
    winner_gain = np.array([mixed - w for (mixed, _), w in zip(scores, winner, strict=True)])
    return {"rows": int(ours["row"].nunique()), "check": best_gain.mean(),
            "check_se": best_gain.std(ddof=1) / np.sqrt(len(best_gain)), "vs_winner": winner_gain.mean(),
            "test_gain": test["roc_auc"] - test["networks"][cv["winner"]]["roc_auc"]}


RULES = {
    "every kept ensemble (the check as it is)": lambda g: True,
    "the check's gain over twice its spread over the folds (t > 2)": lambda g: g["check"] > 2 * g["check_se"],
    "the ensemble beats the CV winner itself on the left-out folds": lambda g: g["vs_winner"] > 0,
    "at least 1,000 non-test rows": lambda g: g["rows"] >= 1000,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ensemble_rows", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    gains = {run.name: g for run in args.runs if (g := fold_gains(run)) is not None}
    lines = ["| run | non-test rows | check's gain (t) | against the winner itself | test gain |",
             "|---|---|---|---|---|"]
    for name, g in sorted(gains.items(), key=lambda item: item[1]["rows"]):
        lines.append(f"| {name} | {g['rows']} | {g['check']:+.4f} ({g['check'] / g['check_se']:.1f}) | "
                     f"{g['vs_winner']:+.4f} | {g['test_gain']:+.4f} |")
    lines += ["", "| keep rule | ensembles kept | sum of their test gains |", "|---|---|---|"]
    for rule, keeps in RULES.items():
        kept = [g["test_gain"] for g in gains.values() if keeps(g)]
        lines.append(f"| {rule} | {len(kept)} of {len(gains)} | {sum(kept):+.4f} |")
    write_result(args.out, "ensemble-rows", "The kept ensembles' test gains by the table's size", args.runs, lines)

if __name__ == "__main__":
    main()
