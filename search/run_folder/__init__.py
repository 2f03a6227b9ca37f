"""A run's folder under ``results/``: its files, written atomically, and read back.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "describe_run": "reading", "epoch_history": "reading", "find_interrupted": "reading", "keep_table": "reading",
    "library_versions": "reading", "list_runs": "reading", "read_epochs": "reading", "read_json": "reading",
    "read_run_spec": "reading", "read_search_trials": "reading", "read_trials": "reading", "reload_data": "reading",
    "BEST_CONFIG": "writing", "CV": "writing", "EPOCHS": "writing", "EXPERIMENT_DIR": "writing",
    "FAULTS": "writing", "OOF": "writing", "SPEC": "writing", "TEST": "writing", "TEST_PREDICTIONS": "writing",
    "TIMING": "writing", "TRIALS": "writing", "abandon_run": "writing", "check_free": "writing",
    "check_own_folder": "writing", "commit_run": "writing", "fetch_run": "writing", "keep_beside": "writing",
    "read_faults": "writing", "start_run": "writing", "upload_run": "writing", "write_csv": "writing",
    "write_json": "writing", "write_parquet": "writing", "write_text": "writing", "write_trial_errors": "writing",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
