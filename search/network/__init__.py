"""The network: our MLP and a user's KerasTuner ``build_model`` behind one role, and how they train.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "EpochRunner": "epoch_scan", "TRIAL_EPOCHS_EXPECTED": "epoch_scan", "absolute": "hypermodel",
    "discover_space": "hypermodel", "parse_ref": "hypermodel", "uses_own_fit": "hypermodel", "DEFAULTS": "mlp",
    "STEPS_PER_EXECUTION": "mlp", "build_network": "mlp", "make_optimizer": "mlp", "network_with": "mlp",
    "resolve_config": "mlp", "EpochEnd": "training", "fit_folds": "training", "fit_network": "training",
    "whole_batches": "training",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
