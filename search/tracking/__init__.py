"""MLflow: the run, its trials and its model in a tracking store, and the model as an MLflow pyfunc.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "check_available": "runs", "fail": "runs", "finish": "runs", "input_example": "runs", "start": "runs",
    "trial_logger": "runs",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
