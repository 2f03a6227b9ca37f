"""Baselines scored on the same folds as the network: is a neural network worth it here at all?

Plain scikit-learn: the majority class, and a logistic regression with the same kind of
preprocessing (mean imputation with missing indicators, standardisation, one-hot categories).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from search.data import Table
from search.metrics import METRICS, score_all

BASELINES = ("majority class", "logistic regression")


def _model(name: str, table: Table) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if name == "majority class":
        return DummyClassifier(strategy="prior")
    numeric = [f.name for f in table.schema if f.kind == "numeric"]
    categorical = [f.name for f in table.schema if f.kind == "categorical"]
    columns = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True), StandardScaler()), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value=""),
                                      OneHotEncoder(handle_unknown="ignore")), categorical),
    ])
    return make_pipeline(columns, LogisticRegression(max_iter=2000))


def _frame(table: Table, rows: np.ndarray) -> pd.DataFrame:
    frame = table.features.iloc[rows].copy()
    for f in table.schema:
        if f.kind == "categorical":
            frame[f.name] = frame[f.name].astype(object).where(frame[f.name].notna(), "").astype(str)
        else:
            frame[f.name] = pd.to_numeric(frame[f.name], errors="coerce").astype(float)
    return frame


def score_baselines(table: Table, rest: np.ndarray, fold_rows: list[list[int]],
                    test: np.ndarray) -> dict[str, dict[str, Any]]:
    """Each baseline's fold scores (mean, std) on the CV folds, and its score on the test part."""
    out: dict[str, dict[str, Any]] = {}
    for name in BASELINES:
        folds = []
        for val in fold_rows:
            val = np.asarray(val)
            train = np.setdiff1d(rest, val)
            model = _model(name, table).fit(_frame(table, train), table.y[train])
            folds.append(score_all(table.y[val], model.predict_proba(_frame(table, val))[:, 1]))
        scores = pd.DataFrame(folds)
        entry: dict[str, Any] = {
            "mean": {m: float(scores[m].mean()) for m in METRICS},
            "std": {m: float(scores[m].std(ddof=1)) if len(scores) > 1 else 0.0 for m in METRICS},
            "fold_scores": folds,
        }
        if len(test):
            model = _model(name, table).fit(_frame(table, rest), table.y[rest])
            entry["test"] = score_all(table.y[test], model.predict_proba(_frame(table, test))[:, 1])
        out[name] = entry
    return out
