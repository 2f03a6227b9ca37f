"""The export: one self-contained model that reloads in Keras' safe mode, and the test score."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_score, recall_score

from search.export.model_file import join_model, load_model, save_model
from search.export.test_part import score_test
from tests.conftest import make_mixed_table


def test_the_test_score_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    probability = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    got = score_test(y, probability, 0.55)
    predicted = (probability >= 0.55).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted).ravel()
    assert got["confusion_matrix"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert got["precision"] == pytest.approx(precision_score(y, predicted))
    assert got["recall"] == pytest.approx(recall_score(y, predicted))
    assert got["rows"] == 200 and got["threshold"] == 0.55


def test_the_exported_model_reloads_in_safe_mode_and_predicts_the_same(tmp_path):
    from search.data.encoding import build_preprocessor, fit_and_encode, raw_inputs
    from search.data.table import load_table
    from search.network.mlp import build_network

    path = tmp_path / "mixed.csv"
    make_mixed_table().to_csv(path, index=False)
    table = load_table(str(path), target="label")
    stats, (x,) = fit_and_encode(table.features, table.schema)
    preprocessor = build_preprocessor(stats, table.schema)
    np.testing.assert_allclose(np.asarray(preprocessor(raw_inputs(table.features, table.schema))), x, atol=1e-6)
    network = build_network({"depth": 1, "width": 8}, x.shape[1], compiled=False)
    model = join_model(preprocessor, network)
    check = raw_inputs(table.features.iloc[:32], table.schema)
    save_model(tmp_path, model, {"threshold": 0.4}, check)
    loaded, metadata = load_model(tmp_path)
    assert metadata == {"threshold": 0.4}
    np.testing.assert_allclose(np.asarray(loaded(check)), np.asarray(model(check)), atol=1e-6)
    assert not (tmp_path / ".model.partial").exists()


NUMERIC_RUN = """
import json, sys
import numpy as np, pandas as pd
import search

rng = np.random.default_rng(3)
x = rng.normal(size=(160, 4))
frame = pd.DataFrame(x, columns=list("abcd")).assign(label=(x[:, 0] + x[:, 1] > 0).astype(int))
result = search.run(frame, target="label", quiet=True, samples=2, max_epochs=3, cpus=2, top_k=1, folds=2,
                    results=sys.argv[1], name="numeric")
print(json.dumps({"run_dir": str(result.run_dir), "driver_imported": sorted(
    m for m in ("keras", "tensorflow") if m in sys.modules)}))
"""


def test_a_numeric_tables_model_is_built_on_a_cv_worker_and_loads_on_tensorflow(tmp_path):
    """On one machine without GPUs, a table of numbers has its exported model built and checked on a CV
    worker (Keras on JAX, imported there already): the driver imports neither Keras nor TensorFlow.
    The model it wrote loads on TensorFlow and gives the test part's recorded probabilities."""
    import json
    import subprocess
    import sys

    import keras
    import pandas as pd

    from search.api import load
    from search.data.encoding import raw_inputs
    from search.data.table import load_table

    proc = subprocess.run([sys.executable, "-c", NUMERIC_RUN, str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["driver_imported"] == []
    result = load(seen["run_dir"])
    recorded = pd.read_parquet(result.run_dir / "test_predictions.parquet")
    assert len(recorded) > 0
    table = load_table(str(result.run_dir / json.loads((result.run_dir / "spec.json").read_text())["data"]["kept_as"]),
                       target="label")
    inputs = raw_inputs(table.features.iloc[recorded["row"].to_numpy()], table.schema)
    got = np.asarray(result.model(inputs)).ravel()
    np.testing.assert_allclose(got, recorded["probability"].to_numpy(), atol=1e-5)
    assert keras.backend.backend() == "tensorflow"  # the test's own process: not the JAX that built it
