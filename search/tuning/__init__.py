"""The search: Ray Tune's Tuner with ASHA, the trial that trains one network, and the search's callbacks.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "TrialData": "trainable", "train_trial": "trainable", "DefineByRun": "tuner", "can_resume": "tuner",
    "import_tune": "tuner", "resume_trials": "tuner", "run_trials": "tuner", "to_ray_space": "tuner",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
