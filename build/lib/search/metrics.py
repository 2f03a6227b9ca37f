"""Validation metrics: their names, directions and how each is computed from probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

METRICS: dict[str, str] = {"roc_auc": "max", "accuracy": "max", "f1": "max", "log_loss": "min"}
DEFAULT_METRIC = "roc_auc"
# What a diverged trial reports, so that schedulers rank it last.
WORST: dict[str, float] = {"roc_auc": 0.0, "accuracy": 0.0, "f1": 0.0, "log_loss": 1e9}


USABLE_STATUSES = ("completed", "stopped early")


def ranked_trials(trials: Any, metric: str, usable_only: bool = True) -> Any:
    """The trials with a best validation score, best first; a tie goes to the fewer epochs.

    ``usable_only`` keeps the trials that finished or were stopped by ASHA (not errored, diverged or
    still running): those a winner or a CV candidate may come from. The report's top-trials table of an
    interrupted run shows the others too.
    """
    column = f"best_{metric}"
    if column not in trials:
        return trials.iloc[0:0]
    scored = trials[trials[column].notna()]
    if usable_only:
        scored = scored[scored["status"].isin(USABLE_STATUSES)]
    keys, ascending = [column], [METRICS[metric] == "min"]
    if "best_epoch" in scored:
        keys.append("best_epoch")
        ascending.append(True)
    return scored.sort_values(keys, ascending=ascending, kind="stable")


def mean_and_std(fold_scores: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each metric's mean and sample standard deviation over folds (0 for one fold, NaN mean for none)."""
    import pandas as pd

    scores = pd.DataFrame(fold_scores, columns=list(METRICS))
    return {"mean": {m: float(scores[m].mean()) if len(scores) else float("nan") for m in METRICS},
            "std": {m: float(scores[m].std(ddof=1)) if len(scores) > 1 else 0.0 for m in METRICS}}


def is_better(a: float, b: float, metric: str) -> bool:
    """Whether score ``a`` beats score ``b`` for ``metric``."""
    return a > b if METRICS[metric] == "max" else a < b


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank (SciPy's ``rankdata``, whose import, all of
    ``scipy.stats``, costs a worker 1.4 s on 2 cores: every trial's and CV worker's first score)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]])  # where each run of equal values starts
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(first) - 1]
    return ranks


def score_all(y_true: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one set of predictions.

    The same values as scikit-learn's ``roc_auc_score``, ``accuracy_score``, ``f1_score`` and
    ``log_loss`` (a test checks it), in plain NumPy: trials score every epoch, and the four
    scikit-learn calls cost 8 ms, more than a JAX epoch of a small table.
    """
    y = np.asarray(y_true).ravel().astype(np.int64)
    p = np.clip(np.asarray(probability, dtype=np.float64).ravel(), 1e-7, 1 - 1e-7)
    positives = y == 1
    n1 = int(positives.sum())
    n0 = len(y) - n1
    # ROC AUC as the Mann-Whitney U statistic; average ranks count ties as one half.
    roc_auc = (average_ranks(p)[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0) if n1 and n0 else 0.5
    predicted = p >= threshold
    tp = int(np.sum(predicted & positives))
    wrong = int(np.sum(predicted != positives))
    return {
        "roc_auc": float(roc_auc),
        "accuracy": float(1 - wrong / len(y)) if len(y) else 0.0,
        "f1": float(2 * tp / (2 * tp + wrong)) if tp else 0.0,
        "log_loss": float(-np.mean(np.where(positives, np.log(p), np.log1p(-p)))),
    }
