"""How much work and time a run gets: the search's fidelity and the run's time budget, from the table's size.

A tutorial table of a few hundred rows and a table of a million rows need different searches: on the
big one an epoch is a lot of training, small batches waste the hardware, and a run must not take
hours. :func:`plan_run` turns the row count into ASHA's time unit (fractional epochs on big tables),
the batch sizes, the epochs of a full trial and ASHA's grace period, and splits the run's time budget
between its stages. A value the user gave explicitly always wins; what was chosen is printed in the
run's first lines and written to ``spec.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from search.progress import EXPORT_AND_REPORT, Stage, StageProgress
from search.space import ChoiceParam, Space

HOLDOUT_PARTS = 5  # the holdout rule's spread: scores on this many disjoint parts of the validation rows

# Up to this many training rows a table is "small": its search is today's (whole epochs, the space's
# batch sizes, 60 epochs, grace 4). Above it, the fidelity follows the rows.
SMALL_TABLE_ROWS = 10_000
# A full trial sees about this many rows x epochs at most: its epochs shrink with sqrt(rows) above
# SMALL_TABLE_ROWS (163k training rows: 15 epochs; 640k: 7.5), so that a full trial's work grows with
# sqrt(rows) and not with rows. An epoch of a 3x256 network on 163k rows costs 1.5 s on one core.
FULL_TRIAL_EPOCHS_AT_SMALL = 60
# ASHA's first rung as a share of a full trial (4 of 60 epochs today).
GRACE_SHARE = 4 / 60
# A trial reports (and ASHA decides) at least once per this many training rows.
ROWS_PER_REPORT = 100_000
# During the search, trials score at most this many validation rows (a fixed stratified sample):
# the standard error of a ROC AUC on 20,000 rows is about 0.003, below the gaps ASHA acts on, and
# scoring 40,000 rows after every report would cost a third of the training on big tables.
SEARCH_EVAL_ROWS = 20_000
# CV: above this many validation rows the search's own validation part is scored instead of k folds.
# The spread of one held-out ROC AUC falls as 1/sqrt(rows): 0.025 at 500 rows, 0.006 at 10,000,
# 0.003-0.004 at 20,000 (python -m bench.cv_noise; bench/results/cv-noise-20261201T220758.md), under
# the gaps between configurations a search acts on; k folds would cost k fits for that.
HOLDOUT_ROWS = 20_000

# Without --time-budget, a run gets this much time: a fixed part plus a part per non-test row,
# between a floor and a ceiling (250k rows: about 8.3 minutes). Small tables never reach it.
DEFAULT_BUDGET_S = 300.0
DEFAULT_BUDGET_S_PER_ROW = 1e-3
DEFAULT_BUDGET_MAX_S = 3600.0
# The stages' shares of the budget; each stage's deadline counts from the run's start, so time an
# earlier stage leaves unused passes on to the next.
SHARES_KFOLD = {Stage.SEARCH.budget_share: 0.55, Stage.CV.budget_share: 0.25, Stage.FINAL_FIT.budget_share: 0.12,
                EXPORT_AND_REPORT: 0.08}
# With the holdout rule the winner's holdout fit is the final model: no final fit of its own.
SHARES_HOLDOUT = {Stage.SEARCH.budget_share: 0.60, Stage.CV.budget_share: 0.30, Stage.FINAL_FIT.budget_share: 0.0,
                  EXPORT_AND_REPORT: 0.10}


@dataclass(frozen=True)
class Fidelity:
    """The search's cost model: ASHA's time unit is the epoch, reported ``reports_per_epoch`` times."""

    train_rows: int
    max_epochs: float
    grace_period: float
    reports_per_epoch: int
    eval_rows: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Budget:
    """The run's time in seconds and each stage's share of it."""

    total_s: float
    stages: dict[str, float]
    chosen: bool  # True: the default for the table's size, not --time-budget

    def deadline(self, stage: Stage, started: float) -> float:
        """Clock time by which ``stage`` must end, for a run that started at ``started``."""
        share = 0.0
        for name, part in self.stages.items():
            share += part
            if name == stage.budget_share:
                return started + share * self.total_s
        raise KeyError(stage)

    def describe(self) -> str:
        origin = "default for the table's size; --time-budget sets it" if self.chosen else "--time-budget"
        parts = ", ".join(f"{name} {share * self.total_s:.0f} s" for name, share in self.stages.items() if share)
        return f"budget {self.total_s:.0f} s ({origin}): {parts}"


@dataclass(frozen=True)
class RunPlan:
    """What :func:`plan_run` chose for one run."""

    space: Space
    fidelity: Fidelity
    budget: Budget
    cv_rule: str  # "kfold" or "holdout"
    cv_folds: int

    def to_json(self) -> dict[str, Any]:
        f = self.fidelity
        return {
            "budget_s": self.budget.total_s, "budget_chosen": self.budget.chosen,
            "stages_s": {name: share * self.budget.total_s for name, share in self.budget.stages.items()},
            "max_epochs": f.max_epochs, "grace_period": f.grace_period,
            "reports_per_epoch": f.reports_per_epoch, "search_eval_rows": f.eval_rows,
            "cv_rule": self.cv_rule, "cv_folds": self.cv_folds, "cv_rule_text": cv_rule_text(self),
            "notes": list(f.notes),
        }

    def describe(self) -> list[str]:
        f = self.fidelity
        lines = [self.budget.describe(),
                 f"fidelity: full trial {f.max_epochs:g} epochs, ASHA grace {f.grace_period:g} epochs, "
                 f"{f.reports_per_epoch} report(s) per epoch; CV: {cv_rule_text(self)}"]
        return lines + list(f.notes)


def cv_rule_text(plan: RunPlan) -> str:
    if plan.cv_rule == "holdout":
        return (f"the search's validation part ({plan.cv_folds} fold: over {HOLDOUT_ROWS} validation rows, "
                f"k folds would add little but time)")
    return f"stratified {plan.cv_folds}-fold"


def default_budget_s(rows: int) -> float:
    """The time a run on ``rows`` non-test rows gets when ``--time-budget`` is not given."""
    return min(DEFAULT_BUDGET_MAX_S, DEFAULT_BUDGET_S + DEFAULT_BUDGET_S_PER_ROW * rows)


def plan_run(spec: Any, space: Space, train_rows: int, val_rows: int, builtin_space: bool) -> RunPlan:
    """The fidelity, batch sizes, CV rule and budget of a run (``spec`` is a RunSpec).

    ``builtin_space``: the space is one of hpsearch's own, whose batch sizes may be scaled to the
    table; a user's space file is used as written.
    """
    notes: list[str] = []
    big = train_rows > SMALL_TABLE_ROWS
    scale = math.sqrt(train_rows / SMALL_TABLE_ROWS) if big else 1.0
    space_epochs = float(space.fixed.get("epochs", FULL_TRIAL_EPOCHS_AT_SMALL))
    if spec.max_epochs is not None:
        max_epochs = float(spec.max_epochs)
    else:
        max_epochs = space_epochs if not big else max(2.0, round(space_epochs / scale * 2) / 2)
        if big:
            notes.append(f"{train_rows} training rows: a full trial is {max_epochs:g} epochs "
                         f"(not {space_epochs:g}; --max-epochs sets it)")
    if spec.grace_period is not None:
        grace = min(float(spec.grace_period), max_epochs)
    else:
        grace = max_epochs * GRACE_SHARE if big else min(4.0, max_epochs)
        grace = round(grace * 4) / 4 or 0.25
    reports = max(1, math.ceil(train_rows / ROWS_PER_REPORT)) if spec.backend == "jax" else 1
    if big and builtin_space and "batch_size" in space.params:
        space, note = _scaled_batches(space, scale)
        notes += [note] if note else []
    eval_rows = min(val_rows, SEARCH_EVAL_ROWS)
    if eval_rows < val_rows:
        notes.append(f"trials score a fixed stratified sample of {eval_rows} of the {val_rows} validation rows")
    holdout = spec.folds is None and val_rows > HOLDOUT_ROWS
    cv_rule, folds = ("holdout", 1) if holdout else ("kfold", spec.folds or 5)
    total = spec.time_budget or default_budget_s(train_rows + val_rows)
    budget = Budget(float(total), dict(SHARES_HOLDOUT if holdout else SHARES_KFOLD), spec.time_budget is None)
    fidelity = Fidelity(train_rows, max_epochs, grace, reports, eval_rows, tuple(notes))
    return RunPlan(space, fidelity, budget, cv_rule, folds)


def _scaled_batches(space: Space, scale: float) -> tuple[Space, str]:
    """The space's batch sizes times the power of two nearest ``scale`` (sqrt of rows / 10,000)."""
    param = space.params["batch_size"]
    if not isinstance(param, ChoiceParam):
        return space, ""
    factor = 2 ** round(math.log2(scale))
    if factor <= 1:
        return space, ""
    values = tuple(int(v) * factor for v in param.values)
    params = {**space.params, "batch_size": replace(param, values=values)}
    note = f"batch sizes {list(param.values)} x {factor} for the table's size: {list(values)}"
    first = tuple({**point, "batch_size": int(point["batch_size"]) * factor} if "batch_size" in point else point
                  for point in space.first_trials)
    return replace(space, params=params, first_trials=first), note


def plan_from_json(recorded: dict[str, Any], space: Space, folds: int | None = None) -> RunPlan:
    """The plan a run recorded in ``spec.json`` (its space already scaled); ``folds`` overrides the CV rule."""
    fidelity = Fidelity(0, float(recorded["max_epochs"]), float(recorded["grace_period"]),
                        int(recorded["reports_per_epoch"]), int(recorded["search_eval_rows"]),
                        tuple(recorded.get("notes", ())))
    total = float(recorded["budget_s"])
    stages = {name: seconds / total for name, seconds in recorded["stages_s"].items()}
    rule, n_folds = recorded["cv_rule"], int(recorded["cv_folds"])
    if folds is not None:
        rule, n_folds = "kfold", folds
        if recorded["cv_rule"] == "holdout":
            stages = dict(SHARES_KFOLD)
    return RunPlan(space, fidelity, Budget(total, stages, bool(recorded["budget_chosen"])), rule, n_folds)


class RunClock:
    """The stage a run is in, the seconds each stage took (``timing.json``) and each stage's deadline.

    ``started`` is the budget's origin: a run's start after Ray is up, or, for a run that goes on
    after its search (``resume``, ``retrain``), now less the search's share, so the later stages get
    their shares from now.
    """

    def __init__(self, budget: Budget, stage: Stage, started: float | None = None,
                 on_stage: Callable[[StageProgress], None] | None = None) -> None:
        import time

        self.budget, self.stage, self.on_stage = budget, stage, on_stage
        self.began = time.time()
        self.started = self.began if started is None else started
        self.seconds: dict[str, float] = {}
        if on_stage is not None:
            on_stage(StageProgress(None, 0.0, stage, self.started + budget.total_s))

    @classmethod
    def after_search(cls, budget: Budget, on_stage: Callable[[StageProgress], None] | None = None) -> RunClock:
        import time

        return cls(budget, Stage.CV, time.time() - budget.stages[Stage.SEARCH.budget_share] * budget.total_s, on_stage)

    def start(self, stage: Stage) -> None:
        """End the current stage (its seconds add up under ``<stage>_s``) and begin ``stage`` (``done``: the end)."""
        import time

        now = time.time()
        key = self.stage.timing_key
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self.began
        if self.on_stage is not None:
            self.on_stage(StageProgress(self.stage, now - self.began, None if stage is Stage.DONE else stage,
                                        self.started + self.budget.total_s))
        self.stage, self.began = stage, now

    def deadline(self, stage: Stage) -> float:
        return self.budget.deadline(stage, self.started)

    def timing(self, **extra: object) -> dict[str, object]:
        """What ``timing.json`` records: each stage's seconds, the budget and the total so far."""
        import time

        return {**self.seconds, "budget_s": self.budget.total_s, "total_s": time.time() - self.started, **extra}


def holdout_parts(y: np.ndarray, parts: int = HOLDOUT_PARTS, seed: int = 0) -> list[np.ndarray]:
    """Disjoint stratified parts of the held-out rows (positions), for a spread of the holdout score."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=parts, shuffle=True, random_state=seed)
    return [idx for _, idx in splitter.split(np.zeros(len(y)), y)]
