"""Periodic embeddings and smooth clipping of the numbers, and the search's first trials (known-good configs)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import yaml

from search.errors import SpaceError
from search.space import Space, load_space
from tests.conftest import periodic_space, run_cli
from tests.test_run import FAST, check_predict_round_trip, read_run


def test_periodic_numbers_learn_a_cycle_that_raw_numbers_miss():
    """y follows sin(4 x0): a small ReLU net on raw numbers bends too little; the embedded one follows it."""
    import keras
    from sklearn.metrics import roc_auc_score

    from search.network.mlp import build_network

    rng = np.random.default_rng(0)
    n = 2000
    numbers = rng.uniform(-2, 2, size=(n, 3))
    x = np.concatenate([numbers, rng.random((n, 2)) < 0.5], axis=1).astype("float32")  # two 0/1 columns after
    y = (np.sin(4 * x[:, 0]) + 0.3 * rng.normal(size=n) > 0).astype("float32")
    scores = {}
    for embedding in ("none", "periodic"):
        config = {"depth": 2, "width": 32, "learning_rate": 3e-3, "numeric_embedding": embedding,
                  "numeric_columns": 3, "embedding_scale": 0.3}
        model = build_network(config, 5, seed=1)
        keras.utils.set_random_seed(1)  # the batches' shuffle too: unseeded, raw numbers reached 0.951 once
        model.fit(x[:1500], y[:1500], epochs=30, batch_size=64, verbose=0)
        scores[embedding] = roc_auc_score(y[1500:], np.asarray(model.predict(x[1500:], verbose=0)).ravel())
    assert scores["periodic"] > 0.94 and scores["periodic"] > scores["none"] + 0.03, scores


def test_smooth_clipping_squeezes_outliers_and_trains():
    """numeric_clip: smooth maps each encoded value v to v / sqrt(1 + (v / 3)^2) before the first layer; a
    network whose one informative number has outliers of 40 standard deviations still learns it."""
    import keras
    from sklearn.metrics import roc_auc_score

    from search.network.mlp import build_network

    rng = np.random.default_rng(3)
    n = 1200
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype("float32")
    x[rng.random(n) < 0.03, 0] *= 40  # outliers on the side the label already says
    model = build_network({"depth": 1, "width": 16, "learning_rate": 3e-3, "numeric_clip": "smooth"}, 3, seed=2)
    history = model.fit(x[:900], y[:900], epochs=15, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert roc_auc_score(y[900:], np.asarray(model.predict(x[900:], verbose=0)).ravel()) > 0.85
    seen = np.asarray(keras.Model(model.input, model.get_layer("dense_0").input)(x[:50]))
    np.testing.assert_allclose(seen, x[:50] / np.sqrt(1 + (x[:50] / 3) ** 2), rtol=1e-5)
    assert np.abs(seen).max() < 3


def test_first_trials_must_lie_in_the_space():
    doc = load_space("default").to_dict()
    assert doc["first_trials"], "the default space starts from known-good configs"
    for point, message in [({"depth": 9}, "outside the param's values"), ({"optimizer": "adam"}, "not a searched"),
                           ({"numeric_embedding": "linear"}, "expected one of none, periodic")]:
        with pytest.raises(SpaceError, match=message) as caught:
            Space.from_dict({**doc, "first_trials": [point]}, source="s.yaml")
        assert str(caught.value).startswith("s.yaml: first_trials[0]") and "\n" not in str(caught.value)


@pytest.mark.slow
def test_a_clipped_periodic_network_runs_first_exports_and_predicts_the_same_in_a_fresh_process(tmp_path, mixed_csv):
    space = periodic_space(tmp_path, depth=1, numeric_clip="smooth")
    first = {"width": 24, "dropout": 0.05, "batch_size": 16, "learning_rate": 2e-3, "embedding_scale": 0.2}
    doc = yaml.safe_load(space.read_text())
    space.write_text(yaml.safe_dump({**doc, "first_trials": [first]}))
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--space", str(space),
                    "--samples", "3", "--max-epochs", "3", "--seed", "2", "--results", str(tmp_path / "out"),
                    "--name", "periodic", "--quiet", *FAST], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "periodic"
    trials, best, spec = read_run(run_dir)
    first_trial = trials.sort_values("trial_id").iloc[0]
    assert {k: first_trial[k] for k in first} == pytest.approx(first)  # the known-good config ran as given
    assert spec["space"]["fixed"]["numeric_columns"] == 3  # alpha, beta, gamma; the colour's one-hot after
    with zipfile.ZipFile(run_dir / "model" / "model.keras") as archive:
        config = archive.read("config.json")
    assert b'"frequencies"' in config and b'"Sqrt"' in config  # the exported network clips and embeds its numbers
    check_predict_round_trip(tmp_path, run_dir, mixed_csv)
