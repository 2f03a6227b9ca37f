"""The exported model's scores on the held-out test part: the whole model's at the run's threshold, and
each ensemble member's alone, for the report's comparison."""

from __future__ import annotations

from typing import Any

import numpy as np

from search.metrics import score_all


def member_probabilities(networks: Any, each: np.ndarray) -> dict[str, np.ndarray]:
    """Each member's probability alone (trial id -> per row), from ``each`` network's (rows x networks):
    a bagged member's is the mean of its fold models'."""
    columns: dict[str, list[int]] = {}
    for i, network in enumerate(networks):
        columns.setdefault(network.trial_id, []).append(i)
    return {tid: each[:, i].mean(axis=1) for tid, i in columns.items()}


def score_test(y: np.ndarray, probability: np.ndarray, threshold: float,
               networks: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The final model's scores on the held-out test part, at the chosen threshold; with ``networks``
    (an ensemble's, by trial id), each network's alone under ``networks``."""
    if networks:
        return {**score_test(y, probability, threshold),
                "networks": {name: score_test(y, p, threshold) for name, p in networks.items()}}
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "rows": int(len(y)),
        "threshold": threshold,
        **score_all(y, probability, threshold),
        "precision": float(precision_score(y, predicted, zero_division=0.0)),
        "recall": float(recall_score(y, predicted, zero_division=0.0)),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }
