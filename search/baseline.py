"""Baselines scored on the same folds and test part as the network: is a neural network worth it here?

Plain scikit-learn: the majority class; a logistic regression with the same kind of preprocessing
(mean imputation with missing indicators, standardisation, one-hot categories); and
``HistGradientBoostingClassifier`` with its defaults (native missing values and categories), the
model a user with a big table would otherwise pick. Each one's wall time is recorded beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from search.data import Table
from search.metrics import mean_and_std, score_all

BASELINES = ("majority class", "logistic regression", "gradient boosting")
BOOSTING = "gradient boosting"


def _model(name: str, table: Table) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if name == "majority class":
        return DummyClassifier(strategy="prior")
    if name == BOOSTING:
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    numeric = [f.name for f in table.schema if f.kind == "numeric"]
    categorical = [f.name for f in table.schema if f.kind == "categorical"]
    columns = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True), StandardScaler()), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value=""),
                                      OneHotEncoder(handle_unknown="ignore")), categorical),
    ])
    return make_pipeline(columns, LogisticRegression(max_iter=2000))


def _frame(table: Table, rows: np.ndarray, name: str) -> pd.DataFrame:
    frame = table.features.iloc[rows].copy()
    for f in table.schema:
        if f.kind == "categorical":
            text = frame[f.name].astype(object).where(frame[f.name].notna(), "").astype(str)
            # boosting takes categories natively (pandas' category dtype; one fixed vocabulary for all parts)
            if name == BOOSTING:
                categories = pd.Categorical(text, categories=_vocabulary(table, f.name))
                # its native categories take at most 255 levels: more go in as ordinal codes
                text = categories if len(categories.categories) <= 250 else categories.codes.astype(float)
            frame[f.name] = text
        else:
            frame[f.name] = pd.to_numeric(frame[f.name], errors="coerce").astype(float)
    return frame


def _vocabulary(table: Table, column: str) -> list[str]:
    values = table.features[column]
    return sorted(values.astype(object).where(values.notna(), "").astype(str).unique())


def score_baselines(table: Table, plan: list[tuple[np.ndarray, np.ndarray]], test: np.ndarray,
                    holdout: bool = False) -> dict[str, dict[str, Any]]:
    """Each baseline's fold scores (mean, std) on the network's folds, its score on the test part, and its
    wall time (the fits for the folds, and the one fit on all non-test rows for the test part).

    With ``holdout``, the single fold's held-out rows are scored in the network's disjoint parts.
    """
    import time

    from search.budget import holdout_parts

    rest = np.sort(np.concatenate(plan[0]))
    out: dict[str, dict[str, Any]] = {}
    for name in BASELINES:
        began = time.perf_counter()
        folds = []
        for train, val in plan:
            model = _model(name, table).fit(_frame(table, train, name), table.y[train])
            probability = model.predict_proba(_frame(table, val, name))[:, 1]
            y = table.y[val]
            parts = holdout_parts(y) if holdout else [np.arange(len(val))]
            folds += [score_all(y[idx], probability[idx]) for idx in parts]
        entry: dict[str, Any] = {
            **mean_and_std(folds),
            "fold_scores": folds,
            "cv_seconds": time.perf_counter() - began,
        }
        if len(test):
            began = time.perf_counter()
            model = _model(name, table).fit(_frame(table, rest, name), table.y[rest])
            entry["test"] = score_all(table.y[test], model.predict_proba(_frame(table, test, name))[:, 1])
            entry["test_seconds"] = time.perf_counter() - began
        out[name] = entry
    return out
