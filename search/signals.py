"""SIGTERM is a Ctrl-C: what ``kill``, ``hpsearch stop``, a Ray job's stop and Kubernetes send must
stop a run the way a user's Ctrl-C does, keeping its partial folder for ``hpsearch resume``.

Python ends a process on SIGTERM without unwinding it, and Ray's driver (its C++ core worker)
prints stack dumps on it. :func:`install` makes SIGTERM call whatever handles SIGINT at that
moment: Ray Tune's own handler during the search (which stops the trials and saves the
experiment), Python's ``KeyboardInterrupt`` elsewhere. It is installed again after ``ray.init``,
which puts Ray's handler in place.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_stopped = threading.Event()


def install() -> None:
    """Route SIGTERM to the current SIGINT handler (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _as_ctrl_c)


def stop_requested() -> bool:
    """Whether a SIGTERM arrived in this process."""
    return _stopped.is_set()


def _as_ctrl_c(signum: int, frame: Any) -> None:
    _stopped.set()
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextmanager
def sigint_handler_kept() -> Iterator[None]:
    """Put back the SIGINT handler after the block: Ray Tune's ``fit`` installs its own and leaves it
    after it returns, where a Ctrl-C (or SIGTERM) would only set an event no one waits on any more."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
