"""Validation metrics: their names, directions and how each is computed from probabilities."""

from __future__ import annotations

import numpy as np

METRICS: dict[str, str] = {"roc_auc": "max", "accuracy": "max", "f1": "max", "log_loss": "min"}
DEFAULT_METRIC = "roc_auc"
# What a diverged trial reports, so that schedulers rank it last.
WORST: dict[str, float] = {"roc_auc": 0.0, "accuracy": 0.0, "f1": 0.0, "log_loss": 1e9}


def mode_of(metric: str) -> str:
    return METRICS[metric]


def is_better(a: float, b: float, metric: str) -> bool:
    """Whether score ``a`` beats score ``b`` for ``metric``."""
    return a > b if METRICS[metric] == "max" else a < b


def score_all(y_true: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one set of predictions."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    p = np.clip(np.asarray(probability, dtype=np.float64).ravel(), 1e-7, 1 - 1e-7)
    predicted = (p >= threshold).astype(np.int32)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, p)) if both_classes else 0.5,
        "accuracy": float(accuracy_score(y_true, predicted)),
        "f1": float(f1_score(y_true, predicted, zero_division=0.0)),
        "log_loss": float(log_loss(y_true, p, labels=[0, 1])),
    }
