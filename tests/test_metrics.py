"""The NumPy metrics agree with scikit-learn's on awkward inputs: ties, one class, extremes."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from search.metrics import score_all


@pytest.mark.parametrize("case", ["random", "ties", "all wrong", "no predicted positive", "extremes"])
def test_scores_match_scikit_learn(case):
    rng = np.random.default_rng(3)
    y = (rng.random(97) < 0.3).astype(int)
    p = {
        "random": rng.random(97),
        "ties": np.round(rng.random(97), 1),
        "all wrong": np.where(y == 1, 0.2, 0.8),
        "no predicted positive": rng.random(97) * 0.4,
        "extremes": np.where(rng.random(97) < 0.5, 0.0, 1.0),
    }[case]
    threshold = 0.35
    got = score_all(y, p, threshold)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    predicted = (clipped >= threshold).astype(int)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, clipped), abs=1e-12)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-12)
    assert got["f1"] == pytest.approx(f1_score(y, predicted, zero_division=0.0), abs=1e-12)
    assert got["log_loss"] == pytest.approx(log_loss(y, clipped, labels=[0, 1]), rel=1e-9)


def test_one_class_scores_half_auc():
    assert score_all(np.ones(5, int), np.linspace(0.1, 0.9, 5))["roc_auc"] == 0.5


@pytest.mark.parametrize("values", [[0.3, 0.1, 0.3, 0.9, 0.1, 0.1], [5.0], [], [2.0, 2.0, 2.0], [0.0, 1.0, 0.5]])
def test_average_ranks_match_scipy(values):
    from scipy.stats import rankdata

    from search.metrics import average_ranks

    values = np.asarray(values, dtype=np.float64)
    np.testing.assert_array_equal(average_ranks(values), rankdata(values))
