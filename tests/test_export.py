"""The export: one self-contained model that reloads in Keras' safe mode, and the test score."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_score, recall_score

from search.export import join_model, load_model, save_model, score_test
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
    from search.data import load_table
    from search.model import build_network
    from search.preprocess import build_preprocessor, fit_and_encode, raw_inputs

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
