"""What a running search tells the console: plain values, so that the console imports neither Ray
nor Keras to show them (produced by ``tuning/callbacks.py`` for trials and ``selection/fold_fits.py``
for CV fits), and the names of a run's stages."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Stage(str, Enum):
    """A run's stages in order, each spelled once: the clock, the budget's deadlines, ``timing.json``'s
    keys and the console take their names from here."""

    SEARCH = "search"
    CV = "CV"
    BASELINES = "baselines"
    FINAL_FIT = "final fit"
    EXPORT = "export"
    REPORT = "report"
    DONE = "done"

    def __str__(self) -> str:
        return self.value

    @property
    def budget_share(self) -> str:
        """The share of the time budget the stage draws on: ``spec.json``'s ``plan.stages_s`` keys."""
        return EXPORT_AND_REPORT if self in (Stage.EXPORT, Stage.REPORT) else self.value.lower()

    @property
    def timing_key(self) -> str:
        """The stage's seconds in ``timing.json``: ``cv_s``, ``final_fit_s``."""
        return self.value.lower().replace(" ", "_") + "_s"


EXPORT_AND_REPORT = "export and report"  # one share of the budget for the two last stages


@dataclass(frozen=True)
class TrialEnd:
    """A trial that just ended: its id, how (``completed``, ``stopped early``, ``diverged``, ``failed``),
    its best score and the epochs it trained."""

    trial_id: str
    status: str
    score: float | None
    epochs: float


@dataclass
class Progress:
    """A snapshot of the search for the console: counts, the best score so far, and the trial that just
    ended (``None`` when a trial started or the best score changed)."""

    total: int
    metric: str
    running: int = 0
    finished: int = 0
    stopped_early: int = 0
    failed: int = 0
    best: float | None = None
    ended: TrialEnd | None = None


@dataclass(frozen=True)
class StageProgress:
    """A stage of the run ended after ``seconds`` (``None``: the run's clock just started), and the next
    one (``None`` at the end) started; ``budget_ends``: when the run's time budget ends (epoch seconds)."""

    ended: Stage | str | None
    seconds: float
    started: Stage | str | None
    budget_ends: float | None = None


@dataclass(frozen=True)
class FitProgress:
    """The CV stage for the console: fits done of all, and an estimate of the time left."""

    stage: Stage | str
    done: int
    total: int
    seconds_left: float | None
    best: float | None = None
    metric: str = ""
