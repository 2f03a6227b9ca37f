"""What leaves a run: the exported Keras model (raw columns in, P(positive) out) and predicting with it.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "METADATA_FILE": "model_file", "MODEL_DIR": "model_file", "MODEL_FILE": "model_file", "build_model": "model_file",
    "check_inputs": "model_file", "export_model": "model_file", "load_model": "model_file",
    "member_probabilities": "test_part", "probabilities": "model_file", "RunSummary": "model_file",
    "score_test": "test_part", "predict_file": "predict", "predict_frame": "predict",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
