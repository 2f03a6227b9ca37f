"""The ``hpsearch`` command: its commands, the options every command shares, and what the console shows.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "spec_from": "app", "main": "commands", "progress_display": "console",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
