"""The user's table: reading the file, dates as features, the splits, the encoding and the model's inputs.

The face: the names other packages use, each with its module, which is imported when the name is first
asked for (``search._lazy_face``)."""

from search import _lazy_face

_FACE = {
    "PreprocessStats": "encoding", "build_preprocessor": "encoding", "fit_and_encode": "encoding",
    "raw_inputs": "encoding", "expand": "model_inputs", "input_name": "model_inputs", "read_frame": "reading",
    "BUILTIN_PREFIX": "table", "DEFAULT_DATA": "table", "Feature": "table", "Splits": "table", "Table": "table",
    "list_names": "table", "load_table": "table", "only_rows": "table", "split_rows": "table",
}
__all__ = sorted(_FACE)
__getattr__ = _lazy_face(__name__, _FACE)
