"""After the search: the CV of the best configurations, the threshold, the final fit and the baselines.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "BOOSTING": "baselines", "TUNED_BOOSTING": "baselines", "TUNED_CANDIDATES": "baselines",
    "baseline_inputs": "baselines", "baseline_model": "baselines", "boosting_space": "baselines",
    "score_baselines": "baselines", "Candidate": "cv", "CandidateScore": "cv", "CvSummary": "cv",
    "accuracy_threshold": "cv", "best_cutoff": "cv", "choose_threshold": "cv", "cross_validate": "cv",
    "fold_plan": "cv", "patience_for": "cv", "pick_candidates": "cv", "EnsembleChoice": "ensemble",
    "select_ensemble": "ensemble", "build_export": "final_fit", "fit_final_model": "final_fit",
    "FitWorkers": "fold_fits", "run_fits": "fold_fits", "HeadStart": "head_start",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
