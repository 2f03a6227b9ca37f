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


def sigterm_as_ctrl_c() -> None:
    """Route SIGTERM to the current SIGINT handler (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _as_ctrl_c)


def stop_requested() -> bool:
    """Whether a SIGTERM arrived in this process."""
    return _stopped.is_set()


def raise_if_stopped() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGTERM arrived: the loops that wait on Ray call it, because the
    one raised by the handler can be lost (Python ignores an exception raised while a garbage-collector
    callback runs, such as JAX's; seen as "Exception ignored in: _xla_gc_callback")."""
    if _stopped.is_set():
        raise KeyboardInterrupt


def _as_ctrl_c(signum: int, frame: Any) -> None:
    _stopped.set()
    handler = signal.getsignal(signal.SIGINT)
    raises = handler is signal.default_int_handler or not callable(handler)
    if raises and _in_gc_callback(frame):
        # Python would print the interrupt as "Exception ignored" and carry on: send it again shortly
        threading.Timer(0.05, signal.raise_signal, (signal.SIGTERM,)).start()
        return
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _in_gc_callback(frame: Any) -> bool:
    """Whether the signal came while a garbage-collector callback (JAX registers one) was running."""
    import gc

    codes = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


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
