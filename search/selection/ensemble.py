"""Ensemble selection over the CV's candidates, from their out-of-fold predictions.

Greedy forward selection with replacement (Caruana et al., 2004, as AutoGluon's weighted ensemble
does it): start from nothing, and at each of ``STEPS`` steps add the candidate whose addition gives
the best out-of-fold score of the mean; a member's weight is the share of steps that picked it. The
ensemble replaces the CV's winner only where it has two members or more and its out-of-fold score
beats the winner's own. A score is the mean over the CV's folds of each fold's score, as the winner's
CV mean is: pooled over folds, ROC AUC rewards any mean for evening out the folds' calibrations,
which the exported model, one for every row, does not need (pima: chosen on pooled scores, an ensemble of
4 scored 0.8652 on the test part against its winner's 0.8743; bench/README.md).

Both scores are measured on the rows the weights were chosen on, so the ensemble's is a little
optimistic; with a handful of candidates and 25 steps the weights have few degrees of freedom, and
``bench/ensemble.py`` measures what it gives on held-out rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from search.metrics import METRICS, is_better, score_all

STEPS = 25  # AutoGluon's default ensemble size: weights are multiples of 1/25
DEFAULT_MEMBERS = 5
RULE = (f"greedy forward selection with replacement (Caruana et al., 2004) over the CV's candidates, {STEPS} "
        "steps on their out-of-fold predictions; kept only where it beats the CV winner alone out of fold")


@dataclass(frozen=True)
class Member:
    """One network of the ensemble: its CV candidate and its weight in the mean (the weights sum to 1)."""

    trial_id: str
    weight: float


@dataclass(frozen=True)
class EnsembleChoice:
    """What the selection found, and whether it replaces the single winner (``chosen``)."""

    members: tuple[Member, ...]  # heaviest first; the winner alone when not chosen
    chosen: bool
    score: float  # the selected mean's out-of-fold score
    single_score: float  # the CV winner's, on the same rows
    candidates: int  # candidates with an out-of-fold prediction for every row
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"chosen": self.chosen, "members": [{"trial_id": m.trial_id, "weight": m.weight} for m in self.members],
                "oof_score": self.score, "single_oof_score": self.single_score, "candidates": self.candidates,
                "steps": STEPS, "reason": self.reason, "rule": RULE}

    def probability(self, oof: dict[str, np.ndarray]) -> np.ndarray:
        """The members' weighted mean of ``oof`` (trial id -> one probability per row)."""
        return np.sum([m.weight * oof[m.trial_id] for m in self.members], axis=0)


def single(winner: str, score: float, candidates: int, reason: str) -> EnsembleChoice:
    return EnsembleChoice((Member(winner, 1.0),), False, score, score, candidates, reason)


def select_ensemble(y: np.ndarray, oof: dict[str, np.ndarray], metric: str, winner: str, max_members: int,
                    folds: np.ndarray | None = None) -> EnsembleChoice:
    """The greedy ensemble of ``oof``'s candidates (trial id -> out-of-fold probability per row, CV rank
    order) with at most ``max_members`` distinct members, and whether it beats ``winner`` alone. With
    ``folds`` (each row's fold), a score is the mean of the folds' scores."""
    score = _scorer(y, metric, folds)
    single_score = score(oof[winner])
    if max_members < 2 or len(oof) < 2:
        why = "--no-ensemble" if max_members < 2 else "only one candidate has an out-of-fold prediction for every row"
        return single(winner, single_score, len(oof), why)
    names = list(oof)
    counts = dict.fromkeys(names, 0)
    total = np.zeros(len(y), dtype=np.float64)
    best_score, best_counts = None, {}
    for step in range(1, STEPS + 1):
        allowed = names if sum(c > 0 for c in counts.values()) < max_members else [n for n in names if counts[n]]
        scored = [(score((total + oof[n]) / step), n) for n in allowed]
        pick_score, pick = scored[0]
        for s, n in scored[1:]:  # ties go to the earlier candidate (the better CV rank)
            if is_better(s, pick_score, metric):
                pick_score, pick = s, n
        counts[pick] += 1
        total += oof[pick]
        if best_score is None or is_better(pick_score, best_score, metric):
            best_score, best_counts = pick_score, dict(counts)
    used = sorted((n for n in names if best_counts.get(n)), key=lambda n: (-best_counts[n], names.index(n)))
    steps = sum(best_counts.values())
    members = tuple(Member(n, best_counts[n] / steps) for n in used)
    beats = len(members) > 1 and is_better(round(best_score, 4), round(single_score, 4), metric)
    if not beats:
        why = ("no mean of several candidates scores better out of fold than the winner alone"
               if len(members) > 1 or members[0].trial_id == winner else
               f"the selection kept one network ({members[0].trial_id}), not a mean of several")
        return single(winner, single_score, len(oof), why + f" ({metric} {single_score:.4f})")
    return EnsembleChoice(members, True, float(best_score), single_score, len(oof),
                          f"its out-of-fold {metric} {best_score:.4f} beats the winner's {single_score:.4f}")


def _scorer(y: np.ndarray, metric: str, folds: np.ndarray | None) -> Callable[[np.ndarray], float]:
    assert metric in METRICS
    if folds is None:
        return lambda probability: score_all(y, probability)[metric]
    parts = [np.flatnonzero(folds == f) for f in np.unique(folds)]
    return lambda probability: float(np.mean([score_all(y[i], probability[i])[metric] for i in parts]))
