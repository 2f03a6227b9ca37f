"""Re-scoring the best configurations, and the final fit on all non-test rows.

Two rules (chosen by ``budget.plan_run`` from the table's size and stated in the report):

- ``kfold``: stratified k-fold CV of the non-test rows; each fold fits its own preprocessing on
  its own training rows, so no statistic of a held-out fold reaches its model. The winner is then
  trained on all non-test rows for the epochs CV chose.
- ``holdout`` (big tables): each candidate is trained on the search's training part and scored on
  its validation part, tens of thousands of rows whose score is already precise; the winner's fit,
  at its best epoch, is the final model (no second fit). Its spread is that of five disjoint parts
  of the validation rows.

Fits run as Ray tasks with the trials' resources, in parallel (spread over a cluster's nodes). Each
scores its held-out rows after every epoch and stops when that score has not improved for
``patience`` epochs, or when the stage's deadline would pass during its next epoch. A configuration's
epochs are those at which its mean held-out score peaks. A fold whose loss diverges is recorded as
such and not averaged in; a candidate with a diverged fold cannot win. Only ``fit_rounds`` fold
encodings are alive at once, so memory holds a few copies of the encoded table, not one per fold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from search.budget import holdout_parts
from search.compute import Compute
from search.data import Splits, Table
from search.metrics import METRICS, mean_and_std, ranked_trials, score_all
from search.progress import FitProgress
from search.selection.ensemble import EnsembleChoice, select_ensemble, single
from search.selection.fold_fits import FitWorkers, run_fits
from search.space import Space

EPOCHS_RULE = ("early stopping by CV: each fit stops after {patience} epochs without a better held-out score "
               "(small tables: at max_epochs); the epoch at which the mean held-out score peaked")
TIE_RULE = ("best mean CV metric, a candidate scored on every fold before one the deadline cut short; on a tie "
            "(equal to 4 decimals) the smaller network (depth x width) wins")


@dataclass(frozen=True)
class Candidate:
    trial_id: str
    hyperparameters: dict[str, Any]
    epochs: int


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's CV result: the epochs CV chose, its fold scores at those epochs, their mean and
    spread per metric, and the mean held-out score per epoch (whose peak chose ``epochs``; the report
    draws it). ``skipped_folds`` were not started before the stage's deadline."""

    trial_id: str
    hyperparameters: dict[str, Any]
    epochs: int
    search_best_epoch: int
    diverged_folds: int
    skipped_folds: int
    mean: dict[str, float]
    std: dict[str, float]
    fold_scores: list[dict[str, Any]]
    cv_curve: list[float]

    @property
    def sound(self) -> bool:
        """Whether it can win: scored folds, none diverged."""
        return not self.diverged_folds and bool(self.fold_scores)

    def to_json(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "hyperparameters": self.hyperparameters, "epochs": self.epochs,
                "search_best_epoch": self.search_best_epoch, "diverged_folds": self.diverged_folds,
                "skipped_folds": self.skipped_folds, "mean": self.mean, "std": self.std,
                "fold_scores": self.fold_scores, "cv_curve": self.cv_curve}


@dataclass(frozen=True)
class CvSummary:
    """Every fold's scores for every candidate, the winner, the ensemble chosen over them, and the
    threshold of what is exported (the ensemble where it was chosen, else the winner)."""

    candidates: list[CandidateScore]
    winner: Candidate
    threshold: float
    threshold_rule: str
    folds: int
    repeats: int
    rule: str
    patience: int
    oof: pd.DataFrame  # candidate, fold, row, y, probability: written to oof.parquet, not cv.json
    plan: list[tuple[np.ndarray, np.ndarray]]  # (training rows, held-out rows) of each fold, as table rows
    ensemble: EnsembleChoice
    holdout_weights: dict[str, list[np.ndarray]] | None = None  # holdout: each candidate's fit at its best epoch
    final_preprocessor: Any = None  # the holdout fit's PreprocessStats

    def member_candidates(self) -> list[Candidate]:
        """The exported networks' candidates (the ensemble's members, heaviest first), with their CV epochs."""
        return [Candidate(m.trial_id, self.score_of(m.trial_id).hyperparameters, self.score_of(m.trial_id).epochs)
                for m in self.ensemble.members]

    def score_of(self, trial_id: str) -> CandidateScore:
        return next(c for c in self.candidates if c.trial_id == trial_id)

    def to_json(self) -> dict[str, Any]:
        method = ("the search's validation part (holdout), spread over 5 disjoint parts of it"
                  if self.rule == "holdout" else "stratified k-fold on the non-test rows")
        return {
            "method": method,
            "rule": self.rule,
            "folds": self.folds,
            "repeats": self.repeats,
            "patience": self.patience,
            "epochs_rule": EPOCHS_RULE.format(patience=self.patience),
            "tie_rule": TIE_RULE,
            "winner": self.winner.trial_id,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "candidates": [c.to_json() for c in self.candidates],
            "ensemble": self.ensemble.to_json(),
        }


def pick_candidates(trials: pd.DataFrame, metric: str, count: int, space: Space,
                    keep: int | None = None) -> list[Candidate]:
    """``count`` usable trials for the CV: the best ``keep`` (all ``count`` without it) by best validation
    metric, then, for an ensemble's sake, the best of each network shape (depth, width, embedding) not
    yet among them, then the next best."""
    from search.network import resolve_config

    ranked = ranked_trials(trials, metric).to_dict("records")
    keep = count if keep is None else min(keep, count)
    chosen = ranked[:keep]
    shapes = {_shape(space.config_of(row)) for row in chosen}
    for row in ranked[keep:]:
        if len(chosen) < count and _shape(space.config_of(row)) not in shapes:
            chosen.append(row)
            shapes.add(_shape(space.config_of(row)))
    chosen += [row for row in ranked[keep:] if row not in chosen][: count - len(chosen)]
    return [
        Candidate(
            str(row["trial_id"]),
            resolve_config(space.config_of(row)),
            max(1, int(math.ceil(float(row["best_epoch"])))),
        )
        for row in chosen
    ]


def _shape(config: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(config.get(k)) for k in ("depth", "width", "numeric_embedding"))


def patience_for(max_epochs: float, train_rows: int) -> int:
    """Epochs without a better held-out score after which a CV fit stops: on big tables a sixth of a full
    trial, at least 4. Small tables train every fold to ``max_epochs``: their folds of a few dozen rows
    score so noisily that patience stopped them at a chance early peak (kyphosis' nested-CV ROC AUC
    fell from 0.861 to 0.790 with patience 10 of 60; examples/README.md)."""
    from search.budget import SMALL_TABLE_ROWS

    if train_rows <= SMALL_TABLE_ROWS:
        return int(math.ceil(max_epochs))
    return max(4, int(math.ceil(max_epochs / 6)))


def fold_plan(table: Table, splits: Splits, rule: str, folds: int, repeats: int,
              seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) of each fold, as row numbers of the table."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    if rule == "holdout":
        return [(splits.train, splits.val)]
    rows = np.sort(np.concatenate([splits.train, splits.val]))
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    return [(rows[tr], rows[va]) for tr, va in splitter.split(rows, table.y[rows])]


def cross_validate(table: Table, splits: Splits, candidates: list[Candidate], *, metric: str, rule: str,
                   folds: int, repeats: int, seed: int, compute: Compute, threshold: float | None,
                   max_epochs: int, deadline: float, threshold_rule: str = "auto",
                   on_progress: Callable[[FitProgress], None] | None = None,
                   workers: FitWorkers | None = None, ensemble_members: int = 1,
                   ensemble_min_rows: int = 0) -> CvSummary:
    """Score every candidate on the same folds, in parallel Ray tasks (or ``workers``' actors); pick the
    winner, the ensemble of at most ``ensemble_members`` of them (1: none; nor on fewer than
    ``ensemble_min_rows`` rows), and the threshold.

    Raises KeyboardInterrupt (after cancelling the running fits) when stopped.
    """
    plan = fold_plan(table, splits, rule, folds, repeats, seed)
    patience = patience_for(max_epochs, len(splits.train))
    outputs, preprocessors = run_fits(table, plan, candidates, metric, seed, compute, max_epochs, patience,
                                       deadline, keep_weights=rule == "holdout", on_progress=on_progress,
                                       workers=workers)
    summaries, oof_frames = [], []
    for c, cand in enumerate(candidates):
        summary, oof = _summarise(cand, [outputs[(c, f)] for f in range(len(plan))], plan, table.y, metric, rule,
                                  folds)
        summaries.append(summary)
        oof_frames.append(oof.assign(candidate=cand.trial_id))
    best = _winner(summaries, metric)
    oof = pd.concat(oof_frames, ignore_index=True)
    ensemble, per_row = _ensemble(oof, summaries, candidates[best].trial_id, metric, ensemble_members,
                                  ensemble_min_rows)
    if threshold is None:
        threshold, rule_text = choose_threshold(per_row["y"].to_numpy(), per_row["probability"].to_numpy(),
                                                metric if threshold_rule == "auto" else threshold_rule)
    else:
        rule_text = "fixed by --threshold"
    winner = Candidate(candidates[best].trial_id, candidates[best].hyperparameters, summaries[best].epochs)
    weights = ({cand.trial_id: outputs[(c, 0)]["weights"] for c, cand in enumerate(candidates)}
               if rule == "holdout" else None)
    return CvSummary(summaries, winner, float(threshold), rule_text, len(plan) // repeats if rule == "kfold" else 1,
                     repeats if rule == "kfold" else 1, rule, patience, oof, plan, ensemble, weights,
                     preprocessors.get(0) if rule == "holdout" else None)


def _ensemble(oof: pd.DataFrame, summaries: list[CandidateScore], winner: str, metric: str,
              max_members: int, min_rows: int = 0) -> tuple[EnsembleChoice, pd.DataFrame]:
    """The ensemble over the candidates that predicted every fold's rows without a diverged fold, scored
    fold by fold (none on fewer than ``min_rows`` rows); and the exported model's out-of-fold prediction
    per row (the mean over the CV's repeats, as the final model predicts once), for its threshold."""
    by_fold = {tid: frame.sort_values(["fold", "row"], kind="stable")
               for tid, frame in oof.groupby("candidate", sort=False)}
    ours = by_fold[winner]
    keys = ours[["fold", "row"]].to_numpy()
    complete = {s.trial_id: by_fold[s.trial_id]["probability"].to_numpy(dtype=np.float64) for s in summaries
                if s.trial_id in by_fold and not s.diverged_folds and not s.skipped_folds
                and np.array_equal(by_fold[s.trial_id][["fold", "row"]].to_numpy(), keys)}
    # (a candidate without folds adds an empty frame, which leaves the columns of the whole as objects)
    y, folds = ours["y"].to_numpy().astype(np.int64), ours["fold"].to_numpy().astype(np.int64)
    rows = ours["row"].nunique()
    if winner not in complete:  # its own rows only (a skipped fold): no ensemble over other rows
        choice = single(winner, _fold_mean(y, ours["probability"].to_numpy(), folds, metric), 1,
                        "the CV winner lacks an out-of-fold prediction for some rows")
    elif rows < min_rows and max_members > 1:
        choice = single(winner, _fold_mean(y, complete[winner], folds, metric), len(complete),
                        f"the table has {rows:,} non-test rows, and an ensemble is selected from {min_rows:,} (on "
                        f"smaller tables its out-of-fold gain did not hold on held-out rows); --ensemble selects one "
                        f"anyway")
    else:  # the cross-validated check holds out each row's first-repeat fold, in every repeat at once
        parts = ours.groupby("row")["fold"].transform("min").to_numpy().astype(np.int64)
        choice = select_ensemble(y, complete, metric, winner, max_members, folds, parts)
    probability = choice.probability(complete) if choice.chosen else ours["probability"].to_numpy(dtype=np.float64)
    per_row = pd.DataFrame({"row": ours["row"].to_numpy(), "y": y, "probability": probability})
    return choice, per_row.groupby("row", sort=True).agg(y=("y", "first"), probability=("probability", "mean"))


def _fold_mean(y: np.ndarray, probability: np.ndarray, folds: np.ndarray, metric: str) -> float:
    return float(np.mean([score_all(y[folds == f], probability[folds == f])[metric] for f in np.unique(folds)]))


def _summarise(cand: Candidate, outs: list[dict[str, Any]], plan: list[tuple[np.ndarray, np.ndarray]],
               y_all: np.ndarray, metric: str, rule: str, folds: int) -> tuple[CandidateScore, pd.DataFrame]:
    """One candidate's CV result: its epochs, fold scores at those epochs, mean and spread."""
    usable = [(f, out) for f, out in enumerate(outs) if not out["diverged"] and not out["skipped"]]
    if not usable and any(out["skipped"] for out in outs):  # the budget left it no fit: it cannot win
        return (CandidateScore(cand.trial_id, cand.hyperparameters, 1, cand.epochs, 0, len(outs),
                               **mean_and_std([]), fold_scores=[], cv_curve=[]),
                pd.DataFrame(columns=["fold", "row", "y", "probability"]))
    diverged = sum(out["diverged"] for out in outs)
    skipped = sum(out["skipped"] for out in outs)
    epochs = _cv_epochs([out["scores"] for _, out in usable], metric) if usable else 1
    fold_scores, frames = [], []
    for f, out in usable:
        _, eval_rows = plan[f]
        probability = out["probability"][min(epochs, len(out["probability"])) - 1]
        y = y_all[eval_rows]
        frames.append(pd.DataFrame({"fold": f, "row": eval_rows, "y": y, "probability": probability}))
        info = {"started": out["started"], "ended": out["ended"], "node": out["node"],
                "epochs_trained": len(out["probability"]), "stopped": out["stopped"]}
        if rule == "holdout":
            fold_scores += [{"fold": part, "repeat": 0, **score_all(y[idx], probability[idx]), **info}
                            for part, idx in enumerate(holdout_parts(y))]
        else:
            fold_scores.append({"fold": f % folds, "repeat": f // folds, **score_all(y, probability), **info})
    curve = [round(float(v), 6) for v in _mean_curve([out["scores"] for _, out in usable])] if usable else []
    summary = CandidateScore(cand.trial_id, cand.hyperparameters, epochs, cand.epochs, diverged, skipped,
                             **mean_and_std(fold_scores), fold_scores=fold_scores, cv_curve=curve)
    oof = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["fold", "row", "y", "probability"])
    return summary, oof


def _mean_curve(curves: list[list[float]]) -> np.ndarray:
    """The mean fold score per epoch; a fold that stopped early (patience, deadline) counts with its last
    score for the epochs it did not train."""
    longest = max(len(c) for c in curves)
    return np.array([list(c) + [c[-1]] * (longest - len(c)) for c in curves], dtype=float).mean(axis=0)


def _cv_epochs(curves: list[list[float]], metric: str) -> int:
    """The epoch (1-based) at which the mean fold score peaks; ties go to the earlier epoch."""
    mean = _mean_curve(curves)
    return int(np.argmax(mean) if METRICS[metric] == "max" else np.argmin(mean)) + 1


def choose_threshold(y: np.ndarray, probability: np.ndarray, rule: str) -> tuple[float, str]:
    """The decision threshold on out-of-fold predictions: for ``accuracy``, 0.5 unless a threshold beats
    it by more than two standard errors; for ``f1``, the best; else Youden's J (``youden``; the rule for
    ``roc_auc`` and ``log_loss``).

    The best of a few hundred out-of-fold rows' cut-offs is partly their noise: chosen on half the rows
    of the four tutorial tables, it scored 0.3-3.1 points worse on the other half than 0.5 did, and
    no better on framingham, where 0.5 is far off (bench/README.md, "The decision threshold").
    """
    from sklearn.metrics import roc_curve

    if rule in ("accuracy", "f1"):
        if rule == "f1":
            return best_cutoff(y, probability, rule)[0], "maximises out-of-fold f1"
        threshold = accuracy_threshold(y, probability)
        if threshold == 0.5:
            return 0.5, "0.5: no out-of-fold threshold beats its accuracy by two standard errors"
        return threshold, "maximises out-of-fold accuracy (more than two standard errors above 0.5's)"
    fpr, tpr, thresholds = roc_curve(y, probability)
    best = int(np.argmax(tpr - fpr))
    return float(min(1.0, thresholds[best])), "maximises Youden's J (TPR - FPR) out of fold"


def accuracy_threshold(y: np.ndarray, probability: np.ndarray, errors: float = 2.0) -> float:
    """0.5, unless the best cut-off's accuracy on these rows beats 0.5's by more than ``errors``
    standard errors; then that cut-off."""
    threshold, best = best_cutoff(y, probability, "accuracy")
    at_half = float(np.mean((np.asarray(probability) >= 0.5) == np.asarray(y)))
    return 0.5 if best - at_half <= errors * np.sqrt(best * (1 - best) / len(y)) else threshold


def best_cutoff(y: np.ndarray, probability: np.ndarray, rule: str) -> tuple[float, float]:
    """The probability that, as a threshold, gives the best ``accuracy`` or ``f1`` on these rows, and that
    score: every distinct probability tried, counted at once on the sorted rows."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 0, 1)
    y = np.asarray(y).astype(np.int64)
    order = np.argsort(p, kind="stable")
    p_sorted, positives_from = p[order], np.concatenate([np.cumsum(y[order][::-1])[::-1], [0]])
    candidates = np.unique(p_sorted)
    first = np.searchsorted(p_sorted, candidates, side="left")  # rows at or above each threshold start here
    tp = positives_from[first]
    predicted = len(p) - first
    fp, fn = predicted - tp, y.sum() - tp
    if rule == "accuracy":
        scores = (len(p) - fp - fn) / len(p)
    else:
        scores = np.where(tp > 0, 2 * tp / np.maximum(1, 2 * tp + fp + fn), 0.0)
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])


def _winner(summaries: list[CandidateScore], metric: str) -> int:
    """The best mean CV metric among candidates without a diverged fold; the smaller network on a tie.

    A candidate that the stage's deadline left with skipped folds ranks below every fully scored one: its
    mean over fewer folds is the noisier, and the likelier to be the top by luck (caravan: a 2-fold mean of
    0.759 outranked four 5-fold ones, and, lacking rows, it also barred the ensemble; bench/README.md)."""
    from search.errors import SearchError

    sign = 1 if METRICS[metric] == "max" else -1
    sound = [i for i, s in enumerate(summaries) if s.sound]
    if not sound:
        raise SearchError(f"every CV candidate diverged on at least one fold ({len(summaries)} candidates). "
                          f"Lower the space's learning_rate bounds, or check the data for extreme values.")

    def key(i: int) -> tuple[float, int]:
        h = summaries[i].hyperparameters
        return (summaries[i].skipped_folds > 0, -sign * round(summaries[i].mean[metric], 4),
                int(h.get("depth", 1)) * int(h.get("width", 1)))

    return min(sound, key=key)
