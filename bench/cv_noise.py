"""How noisy is one held-out score? The measurement behind the CV rule (``search/budget.py``).

Run by hand (needs the ``bench`` extra)::

    .venv/bin/python -m bench.cv_noise

On each real-size table a fixed model (scikit-learn's gradient boosting with its defaults) is fitted
once on half the rows; 200 random parts of ``n`` rows are drawn from the other half, and the
spread (standard deviation) of the model's ROC AUC over those parts, corrected for the finite pool,
is the noise of a held-out score on ``n`` rows. k-fold CV exists to average that noise away on small
tables; where one validation part already scores to within a few thousandths, k folds cost k fits
and add nothing a search can act on. Writes ``bench/results/cv-noise-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.tables import write_table

SIZES = (500, 1000, 2000, 5000, 10_000, 20_000, 40_000)
RESULTS = Path(__file__).resolve().parent / "results"


def spread_by_rows(table: str, folder: Path) -> dict[int, float]:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    options = write_table(table, folder)
    df = pd.read_csv(options["data"]).drop(columns=options.get("drop", []))
    y = (df.pop(options["target"]).astype(str).isin(["yes", "1"])).to_numpy().astype(int)
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]):
            df[column] = df[column].astype("category")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(df))
    fit, held = order[: len(df) // 2], order[len(df) // 2:]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    probability = model.fit(df.iloc[fit], y[fit]).predict_proba(df.iloc[held])[:, 1]
    spreads = {}
    for n in SIZES:
        if n > len(held) // 2:
            continue
        # 200 random parts of n rows; their spread, corrected for drawing from a finite pool (sqrt(1 - n/N))
        scores = [roc_auc_score(y[held][idx], probability[idx])
                  for idx in (rng.choice(len(held), n, replace=False) for _ in range(200))]
        spreads[n] = float(np.std(scores, ddof=1) / np.sqrt(1 - n / len(held)))
    return spreads


def main() -> None:
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for table in ("fertility", "flights"):
            found[table] = spread_by_rows(table, Path(tmp))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    lines = ["# Spread of a held-out ROC AUC against its rows (one fixed model, 200 random parts per size)", "",
             "| rows | " + " | ".join(found) + " |", "|---|" + "---|" * len(found)]
    for n in SIZES:
        lines.append(f"| {n} | " + " | ".join(f"{found[t].get(n, float('nan')):.4f}" for t in found) + " |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"cv-noise-{stamp}.json").write_text(json.dumps(found, indent=2) + "\n")
    (RESULTS / f"cv-noise-{stamp}.md").write_text(text)
    print(text)
    print(f"written: bench/results/cv-noise-{stamp}.json and .md")


if __name__ == "__main__":
    main()
