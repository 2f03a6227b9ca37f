"""The training recipe shared by trials, CV fits and the final fit: real Keras, no Ray."""

from __future__ import annotations

import numpy as np

from search.trainable import class_weights, fit_network, whole_batches


def test_whole_batches_pads_with_repeats_of_real_rows():
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25) % 2
    px, py = whole_batches(x, y, 8, seed=0)
    assert len(px) == 32 and len(py) == 32
    np.testing.assert_array_equal(px[:25], x)  # the originals, in order, then 7 distinct repeats
    extra = [int(row[0]) // 2 for row in px[25:]]
    assert len(set(extra)) == 7 and all(py[25 + i] == y[e] for i, e in enumerate(extra))
    assert whole_batches(x, y, 5, seed=0)[0] is x  # already whole
    assert whole_batches(x, y, 64, seed=0)[0] is x  # one batch of all rows


def test_balanced_class_weights_lift_the_rare_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = (rng.random(400) < 0.1).astype(np.float32)  # noise: only the base rate can be learnt
    weights = class_weights({"class_weight": "balanced"}, y)
    assert weights[1] / weights[0] == np.sum(y == 0) / np.sum(y == 1)
    config = {"depth": 1, "width": 8, "batch_size": 32, "learning_rate": 0.01}
    plain = fit_network({**config, "class_weight": "none"}, x, y, 15, seed=0, x_eval=x)[-1]
    balanced = fit_network({**config, "class_weight": "balanced"}, x, y, 15, seed=0, x_eval=x)[-1]
    assert plain.mean() < 0.2 < 0.35 < balanced.mean()  # unweighted: the base rate; balanced: near 0.5
