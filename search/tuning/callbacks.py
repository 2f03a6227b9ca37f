"""Ray Tune callbacks of the search: console progress and the log of retried trials.

Ray pickles the callbacks into the experiment folder (``tuner.pkl``) and unpickles them on
``Tuner.restore``, so they are module-level classes that hold no live object: the console sink
and the run folder are set per process with :func:`attach`, and the progress figures are
recomputed from Ray's trial list at each event (a resumed search counts its earlier trials).
Imported only inside the search: importing it imports Ray.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper

from search.metrics import METRICS, is_better
from search.progress import Progress, TrialEnd
from search.run_folder import FAULTS

_sink: Callable[[Progress], None] | None = None
_run_dir: Path | None = None


def attach(run_dir: Path, sink: Callable[[Progress], None] | None) -> None:
    """Point this process's callbacks at the run folder and the console (before ``fit``)."""
    global _sink, _run_dir
    _sink, _run_dir = sink, run_dir


class ProgressCallback(Callback):
    """Calls the attached sink as trials start and finish, and when the best score improves."""

    def __init__(self, total: int, metric: str, max_epochs: float) -> None:
        self.total, self.metric, self.max_epochs = total, metric, max_epochs
        self._best: float | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune calls this just before it marks the trial RUNNING: count it as Ray runs it
        self._emit(trials, starting=trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if value is None or result.get("diverged") or result.get("errored"):
            return
        if self._best is None or is_better(float(value), self._best, self.metric):
            self._best = float(value)
            self._emit(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials, finishing=trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(trials, finishing=trial)

    def _emit(self, trials: list, finishing: Any = None, starting: Any = None) -> None:
        if _sink is None:
            return
        state = Progress(total=max(self.total, len(trials)), metric=self.metric, best=self._best)
        for t in trials:
            ended = t is finishing or t.status in ("TERMINATED", "ERROR")
            if not ended:
                state.running += t is starting or t.status == "RUNNING"
                continue
            state.finished += 1
            last = t.last_result or {}
            if t.status == "ERROR" or last.get("diverged") or last.get("errored"):
                state.failed += 1
            elif last.get("epoch", last.get("training_iteration", 0)) < self.max_epochs - 1e-9:
                state.stopped_early += 1
        if finishing is not None:
            state.ended = self._ended(finishing)
        _sink(state)

    def _ended(self, trial: Any) -> TrialEnd:
        last = trial.last_result or {}
        epochs = float(last.get("epoch", last.get("training_iteration", 0)) or 0)
        if trial.status == "ERROR" or last.get("errored"):
            status = "failed"
        elif last.get("diverged"):
            status = "diverged"
        else:
            status = "stopped early" if epochs < self.max_epochs - 1e-9 else "completed"
        analysis = (getattr(trial, "metric_analysis", None) or {}).get(self.metric) or {}
        score = analysis.get(METRICS[self.metric], last.get(self.metric))
        return TrialEnd(str(trial.trial_id), status, None if score is None else float(score), epochs)


class StopOnSignal(Stopper):
    """Ends the search when a SIGTERM arrived, also when the handler's own interrupt was lost, or when
    Tune only waits (for a node that can hold a trial) and runs no trial that a Ctrl-C would stop."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        from search.compute import stop_requested

        return stop_requested()


class FaultLog(Callback):
    """Appends a line to ``faults.jsonl`` when Ray retries a trial (a lost worker or node) or gives up."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._log(trial, "retried")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._log(trial, "failed")

    def _log(self, trial: Any, event: str) -> None:
        if _run_dir is None:
            return
        record = {"time": time.time(), "trial_id": trial.trial_id, "event": event,
                  "failures": trial.num_failures,
                  "epochs": (trial.last_result or {}).get("epoch", 0)}
        with open(_run_dir / FAULTS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
