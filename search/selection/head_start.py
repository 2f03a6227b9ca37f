"""A head start for the CV stage, in the search's last seconds.

Once every sampled trial has started, each trial that ends leaves a core idle until the search ends.
What the CV stage needs and the search's result does not decide starts there: the CV's Ray workers
(each imports Keras and JAX, 3 s on 2 cores) and the baselines scored on the CV's folds (scikit-learn:
2 s on sonar). A search ended by its time budget has no such tail; then both start with the CV.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from search.compute import alive_nodes, cpu_slots
from search.data import Splits, Table
from search.progress import Progress
from search.selection.fold_fits import FitWorkers
from search.spec import CvOptions


class HeadStart:
    """The CV stage's fold plan, its workers and its baselines, started by :meth:`begin` (at most once)."""

    def __init__(self, table: Table, splits: Splits, rule: str, folds: int, options: CvOptions) -> None:
        from search.selection.cv import fold_plan

        self.options, self.table, self.splits, self.rule = options, table, splits, rule
        self.repeats = options.repeats_for(len(splits.train) + len(splits.val))
        self.folds = fold_plan(table, splits, rule, folds, self.repeats, options.seed)
        self.rest = np.sort(np.concatenate([splits.train, splits.val]))  # the rows that are not the test part
        self.workers = FitWorkers(options.compute)
        self._pool: ThreadPoolExecutor | None = None
        self._scoring: Future | None = None
        self._tuning: Future | None = None
        self._ends_at = math.inf

    def watching(self, on_progress: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """``on_progress`` for the search, which also begins the head start once a core is free for good."""
        slots = cpu_slots(self.options.compute.cpus)

        def watch(state: Any) -> None:
            if isinstance(state, Progress) and state.finished + state.running >= state.total and state.running < slots:
                self.begin()
            if on_progress is not None:
                on_progress(state)

        return watch

    def begin(self, ends_by: float | None = None) -> None:
        """Start the workers and the baselines (once); ``ends_by``: the CV stage's end (a ``time.time()``),
        which the tuned boosting keeps to, known once the search ended."""
        from search.selection.baselines import score_baselines, tuned_boosting

        if ends_by is not None:
            self._ends_at = ends_by
        if self._pool is not None:
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hpsearch-baselines")
        self.workers.start()
        threads = self.baseline_threads()
        self._scoring = self._pool.submit(with_threads, threads, score_baselines, self.table, self.folds,
                                          self.splits.test, holdout=self.rule == "holdout")
        if len(self.splits.test):
            self._tuning = self._pool.submit(with_threads, threads, tuned_boosting, self.table, self.rest,
                                             self.splits.test, self.options.seed, lambda: self._ends_at)

    def baseline_threads(self) -> int | None:
        """Threads for the baselines' boosting (OpenMP): this machine's cores less the CV's fits that run
        on it at once (a one-node cluster), so that the two do not fight over cores. On sonar's 2 cores,
        one thread: 1.7 CPU-s for the baselines against 3.0-3.2 with two. None (no limit) on a cluster."""
        import os

        if alive_nodes() != 1:
            return None
        fits_at_once = min(cpu_slots(self.options.compute.cpus), len(self.folds) * self.options.candidates)
        return max(1, (os.cpu_count() or 1) - fits_at_once)

    def baselines(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The baselines on the CV's folds, and boosting tuned on the test part (None without one)."""
        self.begin()
        assert self._scoring is not None
        return self._scoring.result(), self._tuning.result() if self._tuning else None

    def __enter__(self) -> HeadStart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the workers, and the baselines if they still run (after a failure). Safe to call twice."""
        self.workers.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def with_threads(threads: int | None, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``work(*args, **kwargs)`` with at most ``threads`` OpenMP and BLAS threads in this thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return work(*args, **kwargs)
