"""Would a cross-validated choice have kept the ensemble? For each finished run folder given: the
selection's weights picked on all CV folds but one and scored on the one left out, against picking the
best single candidate the same way; beside the run's own choice and its test scores.

``python -m bench.ensemble_choice RUN [RUN ...] [--out bench/results]`` reads each run's ``oof.parquet``,
``cv.json`` and ``test.json`` (nothing is trained) and writes ``results/ensemble-choice-<time>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def fold_mean(y: np.ndarray, probability: np.ndarray, folds: np.ndarray) -> float:
    from search.metrics import score_all

    return float(np.mean([score_all(y[folds == f], probability[folds == f])["roc_auc"] for f in np.unique(folds)]))


def read_oof(run: Path) -> tuple[dict, pd.DataFrame, dict[str, np.ndarray]]:
    """A run's ``cv.json``; its winner's out-of-fold rows (fold, row, y, probability) in the CV's order; and
    each candidate's out-of-fold probabilities on the same rows, for those that predicted them all."""
    cv = json.loads((run / "cv.json").read_text())
    oof = pd.read_parquet(run / "oof.parquet")
    by = {t: f.sort_values(["fold", "row"], kind="stable") for t, f in oof.groupby("candidate", sort=False)}
    keys = by[cv["winner"]][["fold", "row"]].to_numpy()
    complete = {t: f["probability"].to_numpy(float) for t, f in by.items()
                if np.array_equal(f[["fold", "row"]].to_numpy(), keys)}
    return cv, by[cv["winner"]], complete


def write_result(out: Path, stem: str, title: str, runs: list[Path], lines: list[str]) -> Path:
    """``bench/results/<stem>-<time>.md``: the title, the command that made it, and the table."""
    path = out / f"{stem}-{time.strftime('%Y%m%dT%H%M%S')}.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n`python -m bench.{stem.replace('-', '_')} " + " ".join(r.name for r in runs)
                    + "`\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {path}")
    return path


def nested_choice(run: Path) -> list[str]:
    """One table row: the run, its candidates, its own choice, the cross-validated one, the test scores."""
    from search.metrics import score_all
    from search.selection.ensemble import select_ensemble

    cv, ours, complete = read_oof(run)
    test = json.loads((run / "test.json").read_text())
    winner = cv["winner"]
    y, folds = ours["y"].to_numpy().astype(int), ours["fold"].to_numpy()
    full = select_ensemble(y, complete, "roc_auc", winner, 5, folds)
    mixed_scores, single_scores = [], []
    for f in np.unique(folds):
        inner, outer = folds != f, folds == f
        means = {t: fold_mean(y[inner], p[inner], folds[inner]) for t, p in complete.items()}
        best = max(means, key=means.__getitem__)
        choice = select_ensemble(y[inner], {t: p[inner] for t, p in complete.items()}, "roc_auc", best, 5,
                                 folds[inner])
        mixed = np.sum([m.weight * complete[m.trial_id][outer] for m in choice.members], axis=0)
        mixed_scores.append(score_all(y[outer], mixed)["roc_auc"])
        single_scores.append(score_all(y[outer], complete[best][outer])["roc_auc"])
    nested = "ensemble" if np.mean(mixed_scores) > np.mean(single_scores) else "single"
    winner_test = test.get("networks", {}).get(winner, {}).get("roc_auc", test["roc_auc"])
    return [run.name, str(len(complete)), f"{'ensemble' if full.chosen else 'single'} ({full.score:.4f} vs "
            f"{full.single_score:.4f})", f"{nested} ({np.mean(mixed_scores):.4f} vs {np.mean(single_scores):.4f})",
            f"{test['roc_auc']:.4f}", f"{winner_test:.4f}"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ensemble_choice", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    rows = [["run", "complete candidates", "its choice (oof: ensemble vs winner)",
             "cross-validated choice (ensemble vs single)", "test exported", "test winner alone"]]
    rows += [nested_choice(run) for run in args.runs]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    write_result(args.out, "ensemble-choice", "Ensemble chosen out of fold, and cross-validated", args.runs, lines)


if __name__ == "__main__":
    main()
