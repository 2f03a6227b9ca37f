"""Which decision threshold holds up out of sample? The measurement behind ``--metric accuracy``'s rule
(``search/retrain.choose_threshold``).

Run by hand::

    .venv/bin/python -m bench.threshold_rules                 # runs hpsearch on the four tutorial tables
    .venv/bin/python -m bench.threshold_rules --runs results/A results/B   # or scores finished runs

Each run's winner has one out-of-fold prediction per non-test row (the mean over the CV's repeats).
200 times, those rows are split in random halves: each rule picks its threshold on one half and is
scored (accuracy) on the other. A rule that fits the rows' noise scores worse on the half it did not
see. Writes ``bench/results/thresholds-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.end_to_end import RESULTS, ROOT, SHARED, TABLES
from search.selection import accuracy_threshold, best_cutoff, choose_threshold

SPLITS = 200
SEEDS = (0, 1)
RUN = ["--metric", "accuracy", "--samples", "20", "--max-epochs", "27", "--quiet"]


RULES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "best cut-off (before)": lambda y, p: best_cutoff(y, p, "accuracy")[0],
    "0.5": lambda y, p: 0.5,
    "0.5 unless beaten by 1 SE": lambda y, p: accuracy_threshold(y, p, errors=1.0),
    "0.5 unless beaten by 2 SE (now)": lambda y, p: choose_threshold(y, p, "accuracy")[0],
}


def winner_oof(run: Path) -> tuple[np.ndarray, np.ndarray, str]:
    import pandas as pd

    cv = json.loads((run / "cv.json").read_text())
    oof = pd.read_parquet(run / "oof.parquet")
    rows = oof[oof["candidate"] == cv["winner"]].groupby("row").agg(y=("y", "first"), p=("probability", "mean"))
    weight = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])["hyperparameters"].get("class_weight")
    return rows["y"].to_numpy(), rows["p"].to_numpy(), str(weight)


def score_rules(run: Path) -> dict[str, float | str | int]:
    y, p, weight = winner_oof(run)
    rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {name: [] for name in RULES}
    for _ in range(SPLITS):
        order = rng.permutation(len(y))
        pick, check = order[: len(y) // 2], order[len(y) // 2:]
        for name, rule in RULES.items():
            scores[name].append(float(np.mean((p[check] >= rule(y[pick], p[pick])) == y[check])))
    means = {name: float(np.mean(s)) for name, s in scores.items()}
    return {"run": run.name, "rows": len(y), "class_weight": weight, **means}


def make_runs(folder: Path) -> list[Path]:
    runs = []
    for table, options in TABLES.items():
        for seed in SEEDS:
            name = f"{table}-seed{seed}"
            subprocess.run([str(ROOT / ".venv" / "bin" / "hpsearch"), "run", str(SHARED / options["data"]),
                            *options["args"], *RUN, "--seed", str(seed), "--results", str(folder), "--name", name],
                           check=True)
            runs.append(folder / name)
    return runs


def to_markdown(rows: list[dict]) -> str:
    lines = ["| run | rows | class weight | " + " | ".join(RULES) + " |", "|---|---|---|" + "---|" * len(RULES)]
    for r in rows:
        best = max(r[n] for n in RULES)
        cells = [f"**{r[n]:.4f}**" if r[n] == best else f"{r[n]:.4f}" for n in RULES]
        lines.append(f"| {r['run']} | {r['rows']} | {r['class_weight']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, help="finished run folders (default: new runs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or make_runs(Path(tmp))
        rows = [score_rules(run) for run in runs]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"thresholds-{stamp}.json").write_text(json.dumps(rows, indent=2))
    text = (f"# Decision thresholds for accuracy, held-out halves of the out-of-fold rows ({stamp})\n\n"
            f"Mean accuracy on the half a rule did not see, over {SPLITS} random splits.\n\n" + to_markdown(rows))
    (RESULTS / f"thresholds-{stamp}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
