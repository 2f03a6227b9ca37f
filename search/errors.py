"""The one exception tree of hpsearch.

    HpsearchError            anything the user can fix; the CLI prints it on one line, exit 2
    ├── SpecError            a run option that is out of range or inconsistent
    ├── SpaceError           a search-space file that is missing or malformed
    ├── DataError            a data file, target or column that cannot be used
    ├── ClusterError         a Ray cluster or job that cannot be reached or used
    ├── SearchError          a search that ran but produced nothing usable, or a later stage that failed
    ├── ExportError          an exported model that fails its own reload check
    └── Interrupted          a search stopped by the user (Ctrl-C); exit 130, resumable

Failures of single trials are not exceptions of this tree: they are recorded in
``trials.csv`` (status ``errored`` or ``diverged``) and the search goes on.
"""

from __future__ import annotations


class HpsearchError(Exception):
    """Base of every error meant for the user: the message says what is wrong and the fix."""


class SpecError(HpsearchError):
    """A run option is out of range or inconsistent with another."""


class SpaceError(HpsearchError):
    """A search-space file is missing or malformed."""


class DataError(HpsearchError):
    """A data file, its target or one of its columns cannot be used."""


class ClusterError(HpsearchError):
    """A Ray cluster or Ray job cannot be reached or used."""


class SearchError(HpsearchError):
    """The search ran but yielded no usable trial."""


class ExportError(HpsearchError):
    """The exported model failed its own check (it reloads, in safe mode, and predicts the same)."""


class Interrupted(HpsearchError):
    """The search was stopped (Ctrl-C) and its state kept in ``partial`` for ``hpsearch resume``."""

    def __init__(self, message: str, partial: object) -> None:
        super().__init__(message)
        self.partial = partial


def message_line(error: BaseException) -> str:
    """The first line of an error's message that says something, else its type's name: what a one-line
    error quotes of a library's exception."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[0] if lines else type(error).__name__


def first_line(error: BaseException) -> str:
    """``Type: first line of the message`` (300 characters at most): a trial's own error as trials.csv keeps it.
    A Ray task's error is that of the task's own exception (Ray's wrapper's first line names the process)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and type(error).__name__.startswith("RayTaskError"):
        error = cause
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def original_error(error: BaseException | None) -> str:
    """The ``Type: message`` line that Ray's wrapper of a trial's error ends with ("" for none)."""
    if error is None:
        return ""
    lines = [ln for ln in str(error).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]
