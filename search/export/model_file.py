"""The exported model: raw columns in, P(positive class) out, in one ``model.keras``.

It joins the fitted preprocessing and the trained network, uses built-in Keras layers and ops
only, and is checked on save: reloaded with ``safe_mode=True``, it must give the same
probabilities. It loads with plain Keras, without this package.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.errors import DataError, ExportError, message_line

if TYPE_CHECKING:
    import keras

    from search.data import Feature, PreprocessStats, Table
    from search.spec import ExportOptions

MODEL_DIR = "model"
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
SAVEDMODEL_DIR = "savedmodel"
INPUTS_FILE = "inputs.py"  # search/data/model_inputs.py, for plain Keras
README_FILE = "README.md"
PREDICT_BATCH = 8192  # rows per compiled call when checking the model on JAX
FOLDER_README = """# The exported model

`model.keras` takes the table's raw columns and returns P({positive}) per row; it loads with plain
Keras (3.x), without hpsearch. `inputs.py` (NumPy and pandas only) turns a pandas DataFrame with the
training table's columns into the model's inputs (one array per feature, date columns as their parts):

```python
import keras
import pandas as pd
from inputs import to_inputs  # this folder on sys.path, or copy inputs.py beside your code

model = keras.saving.load_model("model.keras", safe_mode=True)
df = pd.read_csv("new_rows.csv")
probability = model(to_inputs(df, "metadata.json")).numpy().ravel()
label = probability >= {threshold}  # the run's decision threshold (metadata.json: threshold)
```

`metadata.json` lists the features, the labels (class 1 is `{positive}`), the threshold, the
winner's hyperparameters and its CV and test scores.
"""
INPUT_FORM = (
    "a dict with one array of shape (n, 1) per feature, keyed by its 'input' name: numeric "
    "features as float32 with NaN for a missing value, categorical features as strings with '' "
    "for a missing value; the output, shape (n, 1), is the probability of the positive class"
)


def join_model(preprocessor: keras.Model, network: keras.Model) -> keras.Model:
    """One model from raw columns to probability."""
    import keras

    inputs = preprocessor.input  # the dict of raw-column inputs
    probability = network(preprocessor(inputs))
    return keras.Model(inputs, probability, name="hpsearch_classifier")


def join_ensemble(preprocessors: list[keras.Model], networks: list[tuple[keras.Model, int]],
                  shares: list[float]) -> keras.Model:
    """One model from raw columns to the networks' weighted mean probability: the preprocessing (one
    shared, or one per CV fold for bagged members), each network on its preprocessing's output, and a
    fixed, bias-free Dense over their concatenated probabilities."""
    import keras

    inputs = preprocessors[0].input
    if len(preprocessors) > 1:  # one name per layer: each fold's preprocessing inside a model of its own name
        preprocessors = [keras.Model(pre.input, pre(pre.input), name=f"preprocessing_{f}")
                         for f, pre in enumerate(preprocessors)]
    encoded = [pre(inputs) for pre in preprocessors]
    members = [_named(network, f"member_{i}", int(encoded[f].shape[-1]))(encoded[f])
               for i, (network, f) in enumerate(networks)]
    mean = keras.layers.Dense(1, use_bias=False, trainable=False, name="ensemble_weights")
    probability = mean(keras.layers.Concatenate(name="member_probabilities")(members))
    mean.set_weights([np.asarray(shares, dtype=np.float32).reshape(-1, 1)])
    return keras.Model(inputs, probability, name="hpsearch_ensemble")


def _named(network: keras.Model, name: str, width: int) -> keras.Model:
    """``network`` inside a model of its own ``name``: Keras wants one name per layer, and every network
    built from a config, or by one ``build_model``, has the same."""
    import keras

    encoded = keras.Input(shape=(width,), name="encoded")
    return keras.Model(encoded, network(encoded), name=name)


@dataclass(frozen=True)
class BuiltModel:
    """The exported model as built where Keras runs: its ``.keras`` file, whether it reloaded in safe
    mode to the same probabilities on the check rows (and the largest gap), and P(class 1) on the test
    rows. An ensemble's also has each network's test probabilities (rows x networks), and its cost
    beside its heaviest network's alone: file sizes and milliseconds per 1,000 rows."""

    file: bytes
    reloads_the_same: bool
    reload_gap: float
    test_probability: np.ndarray | None = None
    network_test_probability: np.ndarray | None = None
    cost: dict[str, float] | None = None


@dataclass(frozen=True)
class RunSummary:
    """What a finished run tells its caller (console, MLflow, nested CV): the CV winner and its mean and
    spread, the threshold, the test scores (None without a test part), the CV rule, the ensemble as
    ``metadata.json`` holds it, and the report's verdict against gradient boosting."""

    winner: str
    cv_mean: dict[str, float]
    cv_std: dict[str, float]
    threshold: float
    test: dict[str, Any] | None
    cv_rule: str
    ensemble: dict[str, Any]
    against_boosting: str = ""


def build_model(preprocessings: tuple[PreprocessStats, ...], schema: tuple[Feature, ...],
                networks: list[tuple[dict[str, Any], list[np.ndarray], float, int]], check: dict[str, np.ndarray],
                test: dict[str, np.ndarray] | None = None) -> BuiltModel:
    """The fitted preprocessings and the trained networks, ``(config, weights, share, preprocessing)``
    each, joined, saved and checked: in the driver, or in a CV worker that has Keras already
    (search/selection/final_fit.py: build_export), so that the driver need not import it."""
    from dataclasses import replace

    import keras

    from search.data import build_preprocessor
    from search.network import network_with

    preprocessors = [build_preprocessor(stats, schema) for stats in preprocessings]
    # the encoded width, not the first weight's rows: a periodic embedding's frequencies come first
    built = [(network_with(config, int(preprocessors[f].output.shape[-1]), weights), f)
             for config, weights, _, f in networks]
    if len(built) == 1:
        return checked(join_model(preprocessors[0], built[0][0]), check, test)
    model = join_ensemble(preprocessors, built, [share for _, _, share, _ in networks])
    result = checked(model, check, test)
    each = keras.Model(model.input, model.get_layer("member_probabilities").output)
    alone = join_model(preprocessors[built[0][1]], built[0][0])
    return replace(result, network_test_probability=None if test is None else _predicted(each, test),
                   cost=_cost(model, alone, result.file, check))


def _predicted(model: keras.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """``model``'s output for ``inputs``: on JAX one compiled ``predict``, batches of ``PREDICT_BATCH``
    rows (an eager call compiles op by op: seconds); elsewhere direct calls on such batches, since
    TensorFlow's ``predict`` data adapters take no NumPy strings (the text columns)."""
    import keras

    rows = len(next(iter(inputs.values())))
    if keras.backend.backend() == "jax":
        return np.asarray(model.predict(inputs, batch_size=max(1, min(rows, PREDICT_BATCH)), verbose=0))
    parts = [np.asarray(model({k: v[start:start + PREDICT_BATCH] for k, v in inputs.items()}))
             for start in range(0, rows, PREDICT_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def _cost(ensemble: keras.Model, alone: keras.Model, file: bytes, check: dict[str, np.ndarray]) -> dict[str, float]:
    """The ensemble's file size and its predict time per 1,000 rows beside its heaviest network's alone
    (the best of 5 calls each, after one that compiles)."""
    import tempfile
    import time

    rows = len(next(iter(check.values())))
    thousand = {k: np.resize(v, (1000, *v.shape[1:])) for k, v in check.items()} if rows else check

    def millis(model: keras.Model) -> float:
        _predicted(model, thousand)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            _predicted(model, thousand)
            times.append(time.perf_counter() - started)
        return 1000 * min(times)

    with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as folder, tensorflow_left_unimported():
        alone.save(Path(folder) / MODEL_FILE)
        alone_bytes = (Path(folder) / MODEL_FILE).stat().st_size
    return {"bytes": len(file), "single_bytes": alone_bytes, "ms_per_1000_rows": millis(ensemble),
            "single_ms_per_1000_rows": millis(alone)}


def checked(model: keras.Model, check: dict[str, np.ndarray], test: dict[str, np.ndarray] | None = None) -> BuiltModel:
    """``model`` saved, reloaded with ``safe_mode=True`` and compared with itself on ``check``."""
    import tempfile

    import keras

    with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as folder, tensorflow_left_unimported():
        path = Path(folder) / MODEL_FILE
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        rows = len(next(iter(check.values())))
        # the check rows and the test rows in one call: on JAX each call of new shapes is a compile
        both = check if test is None else {k: np.concatenate([v, test[k]]) for k, v in check.items()}
        predicted = probabilities(model, both)
        expected, got = predicted[:rows], probabilities(reloaded, check)
        return BuiltModel(path.read_bytes(), bool(np.allclose(expected, got, atol=1e-6)),
                          float(np.abs(expected - got).max()) if rows else 0.0,
                          None if test is None else predicted[rows:])


@contextmanager
def tensorflow_left_unimported() -> Iterator[None]:
    """Keras' saving asks whether TensorFlow is installed, importing it (2.4 s on JAX, 2 cores), only to
    test objects against TensorFlow's types; where it is not imported, no object is one. In the block,
    Keras' lazy TensorFlow module answers "not available" without the import. Where Keras' internals
    differ (another release), the block does nothing and saving imports TensorFlow as before."""
    import sys

    from keras.src.utils import module_utils

    lazy = getattr(module_utils, "tensorflow", None)
    if "tensorflow" in sys.modules or getattr(lazy, "_available", True) is not None:
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = None


def check_backend_takes_strings(has_strings: bool) -> None:
    """A model with categorical inputs takes strings, which only Keras on TensorFlow can feed it. The
    backend is fixed at Keras' first import: hpsearch asks for TensorFlow (search/__init__.py), but a
    process whose Keras was imported before, or with ``KERAS_BACKEND`` set, may run on another."""
    import keras

    backend = keras.backend.backend()
    if has_strings and backend != "tensorflow":
        raise ExportError(f"this model takes text columns, which Keras on {backend} cannot take, and this "
                          f"process's Keras runs on {backend}. Set KERAS_BACKEND=tensorflow before Keras is "
                          "first imported (in a notebook: restart the kernel, then import search first).")


def probabilities(model: keras.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """P(class 1) per row of the model's inputs: the one way hpsearch predicts with an exported model
    (the export's check, ``hpsearch predict``, the Python API, the MLflow pyfunc, ``evaluate``)."""

    check_backend_takes_strings(any(v.dtype.kind in "OSU" for v in inputs.values()))
    return _predicted(model, inputs).ravel()


def save_model(run_dir: Path, model: keras.Model, metadata: dict[str, Any], check: dict[str, np.ndarray],
               savedmodel: bool = False) -> Path:
    """Write ``model/`` (model.keras, metadata.json) and verify the reload; returns the folder."""
    return write_model(run_dir, checked(model, check), metadata, savedmodel)


def write_model(run_dir: Path, built: BuiltModel, metadata: dict[str, Any], savedmodel: bool = False) -> Path:
    """Write ``model/`` from a checked model: model.keras, metadata.json, inputs.py and a README (and
    with ``savedmodel`` a TensorFlow SavedModel); returns the folder. Nothing is written if it did not
    reload to the same probabilities."""
    from search.run_folder import write_json

    if not built.reloads_the_same:
        raise ExportError(f"the exported model, reloaded in safe mode, predicts up to {built.reload_gap:.2e} away "
                          f"from the trained one, so it was not written. Run `hpsearch retrain {run_dir}`.")
    target = run_dir / MODEL_DIR
    staging = run_dir / f".{MODEL_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    (staging / MODEL_FILE).write_bytes(built.file)
    if savedmodel:
        import keras

        model = keras.saving.load_model(staging / MODEL_FILE, safe_mode=True, compile=False)
        model.export(str(staging / SAVEDMODEL_DIR), format="tf_saved_model", verbose=False)
        metadata = {**metadata, "savedmodel": f"{SAVEDMODEL_DIR}/ (signature 'serve')"}
    write_json(staging / METADATA_FILE, metadata)
    shutil.copyfile(Path(__file__).parents[1] / "data" / "model_inputs.py", staging / INPUTS_FILE)
    labels = metadata.get("labels") or {}
    (staging / README_FILE).write_text(FOLDER_README.format(positive=labels.get("1", "class 1"),
                                                            threshold=f"{metadata.get('threshold', 0.5):.4g}"))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def load_model(run_dir: Path) -> tuple[keras.Model, dict[str, Any]]:
    """The exported model and its metadata, loaded in safe mode."""
    import json
    import zipfile

    import keras

    folder = run_dir / MODEL_DIR
    if not (folder / MODEL_FILE).is_file() or not (folder / METADATA_FILE).is_file():
        raise DataError(f"{run_dir} has no exported model ({MODEL_DIR}/{MODEL_FILE}). Give a finished run folder.")
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
        model = keras.saving.load_model(folder / MODEL_FILE, safe_mode=True, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        first = message_line(exc)
        raise DataError(f"{folder} is damaged ({first}). Re-run `hpsearch retrain {run_dir}`.") from None
    check_backend_takes_strings(any(f.get("kind") == "categorical" for f in metadata.get("features", [])))
    return model, metadata


def check_inputs(table: Table) -> dict[str, np.ndarray]:
    """The rows the exported model is checked on after its reload: the table's first 256."""
    from search.data import raw_inputs

    return raw_inputs(table.features.iloc[: min(256, table.n_rows)], table.schema)


def export_model(run_dir: Path, options: ExportOptions, table: Table, cv: Any, built: BuiltModel,
                 final: Any, test: dict[str, Any] | None) -> RunSummary:
    """Save the model with its metadata; returns the run's summary. (``cv`` is the selection's
    ``CvSummary`` and ``final`` its ``FinalModel``: the export comes after the selection in the flow, so
    it does not import them, not even for types.)"""
    from search.data import input_name
    from search.run_folder import library_versions

    winner_cv = cv.score_of(cv.winner.trial_id)
    # the whole-number values a column is also one-hot over (the first of a bagged model's folds that has any)
    levels = {name: stats.levels for prep in reversed(final.preprocessings) for name, stats in prep.numeric.items()
              if stats.levels}
    ensemble = {**cv.ensemble.to_json(), "cost": built.cost, "networks": [
        {"trial_id": tid, "weight": sum(n.share for n in nets), "hyperparameters": nets[0].config,
         "epochs": max(n.epochs for n in nets), "fold_models": len(nets) if len(final.preprocessings) > 1 else 0,
         "cv_mean": cv.score_of(tid).mean} for tid, nets in networks_by_member(final.networks).items()]}
    metadata = {
        "input_form": INPUT_FORM,
        "features": [{"name": f.name, "input": input_name(f.name), "kind": f.kind,
                      **({"levels": list(levels[f.name])} if f.name in levels else {})} for f in table.schema],
        "dates": table.dates or {},  # raw date column -> the parts (features) derived from it
        "target": table.target,
        "labels": {"0": table.labels[0], "1": table.labels[1]},
        "header": options.header,
        "threshold": cv.threshold,
        "threshold_rule": cv.threshold_rule,
        "model": (f"the weighted mean of {len(final.networks)} networks (ensemble)" if cv.ensemble.chosen
                  else f"one network, the CV's winner, as the mean of its {len(final.networks)} fold models"
                  if len(final.networks) > 1 else "one network, the CV's winner"),
        "hyperparameters": cv.winner.hyperparameters,
        "epochs": next((n.epochs for n in final.networks if n.trial_id == cv.winner.trial_id), cv.winner.epochs),
        "trained_on": final.trained_on,
        "trial_id": cv.winner.trial_id,
        "ensemble": ensemble,
        "metric": options.metric,
        "cv": {"rule": cv.rule, "folds": cv.folds, "repeats": cv.repeats, "mean": winner_cv.mean,
               "std": winner_cv.std},
        "test": test,
        "seed": options.seed,
        "data": table.source,
        "data_sha256": table.sha256,
        "versions": library_versions(),
    }
    write_model(run_dir, built, metadata, savedmodel=options.savedmodel)
    return RunSummary(cv.winner.trial_id, winner_cv.mean, winner_cv.std, cv.threshold, test, cv.rule, ensemble)


def networks_by_member(networks: Any) -> dict[str, list[Any]]:
    """The exported networks grouped by their CV candidate (a bagged member has one per fold), in order."""
    members: dict[str, list[Any]] = {}
    for network in networks:
        members.setdefault(network.trial_id, []).append(network)
    return members
