"""Baselines scored on the same folds and test part as the network: is a neural network worth it here?

Plain scikit-learn: the majority class; a logistic regression with the same kind of preprocessing
(mean imputation with missing indicators, standardisation, one-hot categories); and
``HistGradientBoostingClassifier`` with its defaults (native missing values and categories), the
model a user with a big table would otherwise pick. Each one's wall time is recorded beside it.
Boosting is also tuned, for the test part only (:func:`tuned_boosting`): tuning it inside every fold
would cost more than the network's CV.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from search.data import Table
from search.metrics import mean_and_std, score_all

BASELINES = ("majority class", "logistic regression", "gradient boosting")
BOOSTING = "gradient boosting"
TUNED_BOOSTING = "gradient boosting, tuned"
# the tuned boosting's random search: candidates, and the share of the non-test rows that picks among them
TUNED_CANDIDATES = 8
TUNED_PICK_SHARE = 0.2


def baseline_model(name: str, table: Table) -> Any:
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


def baseline_inputs(table: Table, rows: np.ndarray, name: str) -> pd.DataFrame:
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
            model = baseline_model(name, table).fit(baseline_inputs(table, train, name), table.y[train])
            probability = model.predict_proba(baseline_inputs(table, val, name))[:, 1]
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
            model = baseline_model(name, table).fit(baseline_inputs(table, rest, name), table.y[rest])
            entry["test"] = score_all(table.y[test], model.predict_proba(baseline_inputs(table, test, name))[:, 1])
            entry["test_seconds"] = time.perf_counter() - began
        out[name] = entry
    return out


def boosting_space() -> dict[str, Any]:
    """What a brief random search of ``HistGradientBoostingClassifier`` varies (iterations: with early stopping)."""
    from scipy.stats import loguniform, randint, uniform

    return {"learning_rate": loguniform(0.01, 0.3), "max_leaf_nodes": randint(8, 128),
            "min_samples_leaf": randint(5, 200), "l2_regularization": loguniform(1e-4, 10.0),
            "max_features": uniform(0.5, 0.5), "max_iter": [100, 300, 1000]}


def tuned_boosting(table: Table, rest: np.ndarray, test: np.ndarray, seed: int = 0,
                   deadline: Callable[[], float] = lambda: math.inf) -> dict[str, Any]:
    """Boosting tuned by a small random search, scored on the test part: each of ``TUNED_CANDIDATES``
    configurations (learning rate, leaves, leaf size, L2, feature share, iterations with early stopping) is
    fitted on 80% of the non-test rows ``rest`` and scored (ROC AUC) on the other 20%; the best is refitted
    on them all. What a user who tunes boosting briefly gets; its wall time, choice and the configurations
    tried are recorded. It runs beside the CV and ends with it: no further configuration is tried once the
    next one and the refit would end past ``deadline()`` (the CV stage's end, which may be set after this
    starts); the first always is."""
    import time

    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import ParameterSampler, train_test_split

    began = time.perf_counter()
    fit_rows, pick_rows = train_test_split(rest, test_size=TUNED_PICK_SHARE, stratify=table.y[rest],
                                           random_state=seed)
    fit_x, pick_x = baseline_inputs(table, fit_rows, BOOSTING), baseline_inputs(table, pick_rows, BOOSTING)
    scored: list[tuple[float, dict[str, Any]]] = []
    longest = 0.0
    for params in ParameterSampler(boosting_space(), TUNED_CANDIDATES, random_state=seed):
        if scored and time.time() + 2 * longest > deadline():  # the next one and the refit (on 1.25x the rows)
            break
        took = time.perf_counter()
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()}
        model = baseline_model(BOOSTING, table).set_params(early_stopping=True, **params).fit(fit_x, table.y[fit_rows])
        scored.append((roc_auc_score(table.y[pick_rows], model.predict_proba(pick_x)[:, 1]), params))
        longest = max(longest, time.perf_counter() - took)
    best = max(scored, key=lambda pair: pair[0])[1]
    model = baseline_model(BOOSTING, table).set_params(early_stopping=True, **best)
    model.fit(baseline_inputs(table, rest, BOOSTING), table.y[rest])
    probability = model.predict_proba(baseline_inputs(table, test, BOOSTING))[:, 1]
    return {"test": score_all(table.y[test], probability), "params": best, "seconds": time.perf_counter() - began,
            "candidates": len(scored)}
