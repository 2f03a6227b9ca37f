"""Ensemble selection over the CV's candidates, from their out-of-fold predictions.

Greedy forward selection with replacement (Caruana et al., 2004, as AutoGluon's weighted ensemble
does it): start from nothing, and at each of ``STEPS`` steps add the candidate whose addition gives
the best out-of-fold score of the mean; a member's weight is the share of steps that picked it. The
ensemble replaces the CV's winner only where it has two members or more and its out-of-fold score
beats the winner's own. A score is the mean over the CV's folds of each fold's score, as the winner's
CV mean is: pooled over folds, ROC AUC rewards any mean for evening out the folds' calibrations,
which the exported model, one for every row, does not need (pima: chosen on pooled scores, an ensemble of
4 scored 0.8652 on the test part against its winner's 0.8743; bench/README.md).

Both scores are measured on the rows the weights were chosen on, so the ensemble's is optimistic:
on caravan it won out of fold by 0.005 and lost on the test part by 0.011. So an ensemble that wins
is also cross-validated (``held_out_check``): on each part of the rows in turn (the CV's first-repeat
folds; the validation part's stratified fifths under the holdout rule), the weights are chosen on the
other parts and scored on that one, against the best single candidate chosen on the same rows. It is
kept only where it wins there too (``bench/ensemble_choice.py``: of six runs it changed caravan
seed 0's, which the winner alone scored 0.7702 on the test part against the ensemble's 0.7593).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from search.metrics import METRICS, is_better, score_all

STEPS = 25  # AutoGluon's default ensemble size: weights are multiples of 1/25
DEFAULT_MEMBERS = 5
NO_ENSEMBLE = "--no-ensemble"  # the reason of a run that asked for one network (refitted on all rows)
RULE = (f"greedy forward selection with replacement (Caruana et al., 2004) over the CV's candidates, {STEPS} "
        "steps on their out-of-fold predictions; kept only where it beats the CV winner alone out of fold, and "
        "where, chosen on all folds but one, it beats the best single network chosen the same way on the fold "
        "left out")


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
    held_out: tuple[float, float] | None = None  # the cross-validated check: (ensemble, single), mean over parts

    def to_json(self) -> dict[str, object]:
        return {"chosen": self.chosen, "members": [{"trial_id": m.trial_id, "weight": m.weight} for m in self.members],
                "oof_score": self.score, "single_oof_score": self.single_score, "candidates": self.candidates,
                "steps": STEPS, "reason": self.reason, "rule": RULE,
                **({"held_out_score": self.held_out[0], "held_out_single_score": self.held_out[1]}
                   if self.held_out else {})}

    def probability(self, oof: dict[str, np.ndarray]) -> np.ndarray:
        """The members' weighted mean of ``oof`` (trial id -> one probability per row)."""
        return np.sum([m.weight * oof[m.trial_id] for m in self.members], axis=0)


def single(winner: str, score: float, candidates: int, reason: str,
           held_out: tuple[float, float] | None = None) -> EnsembleChoice:
    return EnsembleChoice((Member(winner, 1.0),), False, score, score, candidates, reason, held_out)


def select_ensemble(y: np.ndarray, oof: dict[str, np.ndarray], metric: str, winner: str, max_members: int,
                    folds: np.ndarray | None = None, parts: np.ndarray | None = None) -> EnsembleChoice:
    """The greedy ensemble of ``oof``'s candidates (trial id -> out-of-fold probability per row, CV rank
    order) with at most ``max_members`` distinct members, and whether it beats ``winner`` alone. With
    ``folds`` (each row's fold), a score is the mean of the folds' scores. ``parts`` (each row's part)
    splits the rows for the cross-validated check; by default the folds, or with one fold five
    stratified parts."""
    score = _scorer(y, metric, folds)
    single_score = score(oof[winner])
    if max_members < 2 or len(oof) < 2:
        why = NO_ENSEMBLE if max_members < 2 else "only one candidate has an out-of-fold prediction for every row"
        return single(winner, single_score, len(oof), why)
    members, best_score = _greedy(oof, score, metric, max_members)
    beats = len(members) > 1 and is_better(round(best_score, 4), round(single_score, 4), metric)
    if not beats:
        why = ("no mean of several candidates scores better out of fold than the winner alone"
               if len(members) > 1 or members[0].trial_id == winner else
               f"the selection kept one network ({members[0].trial_id}), not a mean of several")
        return single(winner, single_score, len(oof), why + f" ({metric} {single_score:.4f})")
    held_out = held_out_check(y, oof, metric, max_members, folds, parts)
    if held_out is None:  # too few rows of a class to split them: the out-of-fold decision stands
        return EnsembleChoice(members, True, float(best_score), single_score, len(oof),
                              f"its out-of-fold {metric} {best_score:.4f} beats the winner's {single_score:.4f}")
    mixed, alone = held_out
    if not is_better(round(mixed, 4), round(alone, 4), metric):
        return single(winner, single_score, len(oof),
                      f"its out-of-fold {metric} {best_score:.4f} beats the winner's {single_score:.4f} on the rows "
                      f"that chose its weights, but cross-validated (chosen on all parts of the rows but one, scored "
                      f"on the one left out) it scores {mixed:.4f}, not above {alone:.4f} for the best single "
                      f"network chosen the same way", held_out)
    return EnsembleChoice(members, True, float(best_score), single_score, len(oof),
                          f"its out-of-fold {metric} {best_score:.4f} beats the winner's {single_score:.4f}, and "
                          f"cross-validated (chosen on all parts of the rows but one, scored on the one left out) "
                          f"{mixed:.4f} against {alone:.4f} for the best single network chosen the same way",
                          held_out)


def held_out_check(y: np.ndarray, oof: dict[str, np.ndarray], metric: str, max_members: int,
                   folds: np.ndarray | None, parts: np.ndarray | None) -> tuple[float, float] | None:
    """The ensemble and the best single candidate, each chosen on all parts but one and scored on that
    one: their mean scores over the parts (None where a class has too few rows to split). Both are
    chosen, so both pay for the noise of choosing."""
    scores = held_out_scores(y, oof, metric, max_members, folds, parts)
    if scores is None:
        return None
    return float(np.mean([mixed for mixed, _ in scores])), float(np.mean([alone for _, alone in scores]))


def held_out_scores(y: np.ndarray, oof: dict[str, np.ndarray], metric: str, max_members: int,
                    folds: np.ndarray | None, parts: np.ndarray | None) -> list[tuple[float, float]] | None:
    """:func:`held_out_check` part by part, in the order of the parts' numbers: (ensemble, best single)."""
    if parts is None and folds is not None:
        parts = folds
    if parts is None or len(np.unique(parts)) < 2:  # one fold (the holdout rule's validation part)
        parts = _stratified_parts(y)
    if len(np.unique(parts)) < 2:
        return None
    scores = []
    for part in np.unique(parts):
        inner, outer = parts != part, parts == part
        inner_score = _scorer(y[inner], metric, None if folds is None else folds[inner])
        outer_score = _scorer(y[outer], metric, None if folds is None else folds[outer])
        chosen = {n: p[inner] for n, p in oof.items()}
        members, _ = _greedy(chosen, inner_score, metric, max_members)
        best = _best_single(chosen, inner_score, metric)
        scores.append((outer_score(np.sum([m.weight * oof[m.trial_id][outer] for m in members], axis=0)),
                       outer_score(oof[best][outer])))
    return scores


def _greedy(oof: dict[str, np.ndarray], score: Callable[[np.ndarray], float], metric: str,
            max_members: int) -> tuple[tuple[Member, ...], float]:
    """Greedy forward selection with replacement: the members (heaviest first) at the best of ``STEPS``
    steps, and that step's score."""
    names = list(oof)
    counts = dict.fromkeys(names, 0)
    total = np.zeros(len(next(iter(oof.values()))), dtype=np.float64)
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
    return tuple(Member(n, best_counts[n] / steps) for n in used), float(best_score)


def _best_single(oof: dict[str, np.ndarray], score: Callable[[np.ndarray], float], metric: str) -> str:
    best, best_score = None, None
    for n, p in oof.items():  # ties go to the earlier candidate
        s = score(p)
        if best_score is None or is_better(s, best_score, metric):
            best, best_score = n, s
    return best


def _stratified_parts(y: np.ndarray) -> np.ndarray:
    from search.budget import HOLDOUT_PARTS, holdout_parts

    parts = np.zeros(len(y), dtype=np.int64)
    rarest = int(min(np.sum(y == 0), np.sum(y == 1)))
    if rarest >= 2:
        for k, idx in enumerate(holdout_parts(y, min(HOLDOUT_PARTS, rarest))):
            parts[idx] = k
    return parts


def _scorer(y: np.ndarray, metric: str, folds: np.ndarray | None) -> Callable[[np.ndarray], float]:
    assert metric in METRICS
    if folds is None:
        return lambda probability: score_all(y, probability)[metric]
    parts = [np.flatnonzero(folds == f) for f in np.unique(folds)]
    return lambda probability: float(np.mean([score_all(y[i], probability[i])[metric] for i in parts]))
