"""Re-scoring the best configurations by stratified k-fold CV, and the final fit on all non-test rows.

Each fold fits its own preprocessing on its own training rows, so no statistic of a validation
fold reaches its model. Folds run as Ray tasks with the trials' resources, so on a cluster they
spread across nodes. Early stopping is chosen by CV: every fold trains up to the search's
``max_epochs`` and scores its held-out rows after each epoch; a configuration's epochs are those at
which its mean fold score peaks, and the final fit trains that long on all rows (no rows are held
back from it for a stopping rule). ``hpsearch evaluate`` measures what this choice costs in optimism.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from search.data import Splits, Table
from search.devices import Compute
from search.metrics import METRICS, score_all

EPOCHS_RULE = "early stopping by CV: the epoch at which the mean held-out fold score peaked"
TIE_RULE = "best mean CV metric; on a tie (equal to 4 decimals) the smaller network (depth x width) wins"


@dataclass(frozen=True)
class Candidate:
    trial_id: str
    hyperparameters: dict[str, Any]
    epochs: int


@dataclass(frozen=True)
class CvSummary:
    """Every fold's scores for every candidate, the winner, and its threshold."""

    candidates: list[dict[str, Any]]
    winner: Candidate
    threshold: float
    threshold_rule: str
    folds: int
    repeats: int
    fold_rows: list[list[int]]

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "stratified k-fold on the non-test rows",
            "folds": self.folds,
            "repeats": self.repeats,
            "epochs_rule": EPOCHS_RULE,
            "tie_rule": TIE_RULE,
            "winner": self.winner.trial_id,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "fold_rows": self.fold_rows,
            "candidates": self.candidates,
        }


def pick_candidates(trials: pd.DataFrame, metric: str, top_k: int, searched: list[str],
                    fixed: dict[str, Any]) -> list[Candidate]:
    """The ``top_k`` usable trials by best validation metric."""
    from search.model import resolve_config

    column = f"best_{metric}"
    usable = trials[trials["status"].isin(["completed", "stopped early"]) & trials[column].notna()]
    ranked = usable.sort_values(column, ascending=METRICS[metric] == "min", kind="stable").head(top_k)
    return [
        Candidate(
            str(row["trial_id"]),
            resolve_config({**fixed, **{k: row[k] for k in searched}}),
            max(1, int(row["best_epoch"])),
        )
        for row in ranked.to_dict("records")
    ]


def cross_validate(table: Table, splits: Splits, candidates: list[Candidate], *, metric: str, folds: int,
                   repeats: int, seed: int, compute: Compute, threshold: float | None,
                   max_epochs: int, threshold_rule: str = "auto") -> CvSummary:
    """Score every candidate on the same folds, in parallel Ray tasks; pick the winner and its threshold."""
    import ray
    from sklearn.model_selection import RepeatedStratifiedKFold

    rows = np.sort(np.concatenate([splits.train, splits.val]))
    y = table.y[rows]
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    fold_plan = list(splitter.split(rows, y))
    encoded = [_encode_fold(table, rows[tr], rows[va]) for tr, va in fold_plan]
    remote_fit = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus)(fit_and_predict)
    data_refs = [(ray.put(x_tr), ray.put(x_va)) for x_tr, x_va in encoded]
    futures = {
        (c, f): remote_fit.remote(cand.hyperparameters, data_refs[f][0], y[tr].astype(np.float32),
                                  data_refs[f][1], max_epochs, seed + f, compute)
        for c, cand in enumerate(candidates) for f, (tr, _) in enumerate(fold_plan)
    }
    outputs = dict(zip(futures, ray.get(list(futures.values())), strict=True))

    summaries = []
    for c, cand in enumerate(candidates):
        epochs = _cv_epochs([(y[va], outputs[(c, f)]["probability"]) for f, (_, va) in enumerate(fold_plan)], metric)
        oof_sum, oof_n = np.zeros(len(rows)), np.zeros(len(rows))
        fold_scores = []
        for f, (_, va) in enumerate(fold_plan):
            out = outputs[(c, f)]
            probability = out["probability"][epochs - 1]
            oof_sum[va] += probability
            oof_n[va] += 1
            fold_scores.append({"fold": f % folds, "repeat": f // folds, **score_all(y[va], probability),
                                "started": out["started"], "ended": out["ended"], "node": out["node"]})
        scores = pd.DataFrame(fold_scores)
        summaries.append({
            "trial_id": cand.trial_id,
            "hyperparameters": cand.hyperparameters,
            "epochs": epochs,
            "search_best_epoch": cand.epochs,
            "mean": {m: float(scores[m].mean()) for m in METRICS},
            "std": {m: float(scores[m].std(ddof=1)) if len(scores) > 1 else 0.0 for m in METRICS},
            "fold_scores": fold_scores,
            "oof": {"row": rows.tolist(), "y": y.tolist(), "probability": (oof_sum / oof_n).tolist()},
        })
    best = _winner(summaries, metric)
    oof = summaries[best]["oof"]
    if threshold is None:
        threshold, rule = choose_threshold(np.array(oof["y"]), np.array(oof["probability"]),
                                           metric if threshold_rule == "auto" else threshold_rule)
    else:
        rule = "fixed by --threshold"
    fold_rows = [rows[va].tolist() for _, va in fold_plan]
    winner = Candidate(candidates[best].trial_id, candidates[best].hyperparameters, summaries[best]["epochs"])
    return CvSummary(summaries, winner, float(threshold), rule, folds, repeats, fold_rows)


def _cv_epochs(folds: list[tuple[np.ndarray, np.ndarray]], metric: str) -> int:
    """The epoch (1-based) at which the mean fold score peaks; ties go to the earlier epoch."""
    n_epochs = min(len(p) for _, p in folds)
    curve = np.array([np.mean([score_all(y, p[e])[metric] for y, p in folds]) for e in range(n_epochs)])
    return int(np.argmax(curve) if METRICS[metric] == "max" else np.argmin(curve)) + 1


def choose_threshold(y: np.ndarray, probability: np.ndarray, rule: str) -> tuple[float, str]:
    """The decision threshold on out-of-fold predictions: best ``accuracy`` or ``f1`` for those rules
    (and metrics), else Youden's J (``youden``; the rule for ``roc_auc`` and ``log_loss``)."""
    from sklearn.metrics import roc_curve

    candidates = np.unique(np.clip(probability, 0, 1))
    if rule in ("accuracy", "f1"):
        scores = [score_all(y, probability, t)[rule] for t in candidates]
        return float(candidates[int(np.argmax(scores))]), f"maximises out-of-fold {rule}"
    fpr, tpr, thresholds = roc_curve(y, probability)
    best = int(np.argmax(tpr - fpr))
    return float(min(1.0, thresholds[best])), "maximises Youden's J (TPR - FPR) out of fold"


def fit_and_predict(config: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray,
                    epochs: int, seed: int, compute: Compute) -> dict[str, Any]:
    """Train one network for ``epochs``; its probabilities on ``x_eval`` after each epoch (a Ray task)."""
    import ray

    from search.trainable import fit_network, use_backend

    device = use_backend(compute)
    started = time.time()
    curve = fit_network(config, x_train, y_train, epochs, seed, x_eval=x_eval,
                        mixed_precision=compute.mixed_precision)
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    return {"probability": np.nan_to_num(curve, nan=0.5), "started": started, "ended": time.time(), "node": node,
            "device": device}


def fit_final(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
              compute: Compute) -> Any:
    """The winner trained on all non-test rows in a Ray task with a trial's resources (its GPU share,
    its precision); returned as a float32 network built in the driver, for the export."""
    import ray

    from search.model import build_network

    remote = ray.remote(num_cpus=compute.cpus, num_gpus=compute.gpus)(train_weights)
    weights = ray.get(remote.remote(config, x, y, epochs, seed, compute))
    network = build_network(config, x.shape[1], compiled=False)  # float32, whatever the trials used
    network.set_weights(weights)
    return network


def train_weights(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
                  compute: Compute) -> list[np.ndarray]:
    """Fit one network (a Ray task); its weights as NumPy arrays (float32 under mixed precision too)."""
    from search.trainable import fit_network, use_backend

    use_backend(compute)
    model = fit_network(config, x, y, epochs, seed, mixed_precision=compute.mixed_precision)
    return [np.asarray(w) for w in model.get_weights()]


def _encode_fold(table: Table, train_rows: np.ndarray, eval_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from search.preprocess import build_preprocessor, encode, fit_stats

    train = table.features.iloc[train_rows]
    pre = build_preprocessor(fit_stats(train, table.schema), table.schema)
    return encode(pre, train, table.schema), encode(pre, table.features.iloc[eval_rows], table.schema)


def _winner(summaries: list[dict[str, Any]], metric: str) -> int:
    sign = 1 if METRICS[metric] == "max" else -1

    def key(i: int) -> tuple[float, int]:
        h = summaries[i]["hyperparameters"]
        return (-sign * round(summaries[i]["mean"][metric], 4), int(h["depth"]) * int(h["width"]))

    return min(range(len(summaries)), key=key)
