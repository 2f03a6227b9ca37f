"""What a running search tells the console: plain values, so that the console imports neither Ray
nor Keras to show them (produced by ``callbacks.py`` for trials and ``retrain.py`` for CV fits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Progress:
    """A snapshot of the search for the console: counts and the best score so far."""

    total: int
    metric: str
    running: int = 0
    finished: int = 0
    stopped_early: int = 0
    failed: int = 0
    best: float | None = None


@dataclass(frozen=True)
class StageProgress:
    """A stage of the run ended after ``seconds``, and the next one (``None`` at the end) started."""

    ended: str
    seconds: float
    started: str | None


@dataclass(frozen=True)
class FitProgress:
    """The CV stage for the console: fits done of all, and an estimate of the time left."""

    stage: str
    done: int
    total: int
    seconds_left: float | None
    best: float | None = None
    metric: str = ""
