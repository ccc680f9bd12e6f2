import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from metrics import (weighted_auc, classification_metrics, curve_roughness, expected_calibration_error, mean_ci,
                     paired_bootstrap_auc)


def test_weighted_auc_matches_sklearn_on_resampled_rows_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many ties
    assert weighted_auc(y, s, np.ones((1, 300)))[0] == pytest.approx(roc_auc_score(y, s))
    counts = rng.multinomial(300, np.full(300, 1 / 300), size=4)
    got = weighted_auc(y, s, counts)
    want = [roc_auc_score(np.repeat(y, c), np.repeat(s, c)) for c in counts]
    assert np.allclose(got, want)


def test_paired_bootstrap_identical_models_is_zero_and_better_model_is_detected():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    weak = y + rng.normal(0, 1.5, (3, 2000))
    strong = y + rng.normal(0, 0.5, (3, 2000))
    same = paired_bootstrap_auc(y, weak, weak, n_boot=100)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0
    better = paired_bootstrap_auc(y, strong, weak, n_boot=200)
    assert better["lo"] > 0.05 and better["p_le_0"] == 0


def test_ece_perfectly_calibrated_and_overconfident():
    rng = np.random.default_rng(2)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(np.zeros(100, int), np.full(100, 0.99)) == pytest.approx(0.99)


def test_classification_metrics_binary_and_multiclass():
    y = np.array([0, 1, 1, 0])
    m = classification_metrics(y, np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]]))
    assert m["roc_auc"] == 0.75 and m["accuracy"] == 0.75 and m["f1"] == pytest.approx(0.8)
    y3 = np.array([0, 1, 2, 2])
    p3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]])
    m3 = classification_metrics(y3, p3)
    assert m3["roc_auc"] == 1.0 and m3["accuracy"] == 1.0
    nan = classification_metrics(y, np.full((4, 2), np.nan))
    assert all(v != v for v in nan.values())


def test_mean_ci_and_roughness():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1 / np.sqrt(3), rel=1e-3)
    assert mean_ci([5.0]) == (5.0, 0.0)
    assert curve_roughness([1, 2, 3, 4]) == 0 and curve_roughness([1, 3, 1]) == 4
