import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import norm
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from fusionstudy import metrics
from fusionstudy.metrics import (
    best_f1_threshold,
    bootstrap_counts,
    classification_metrics,
    curve_roughness,
    expected_calibration_error,
    f1_at_threshold,
    interval,
    mean_ci,
    per_seed_auc,
    per_seed_macro_auc,
    per_seed_metric,
    perceptual_score,
    rms_grad_ratio,
    seed_average,
    seed_draws,
    weighted_auc,
)


def test_weighted_auc_matches_sklearn_on_resampled_rows_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many ties
    assert weighted_auc(y, s, np.ones((1, 300)))[0] == pytest.approx(roc_auc_score(y, s))
    counts = rng.multinomial(300, np.full(300, 1 / 300), size=4)
    want = [roc_auc_score(np.repeat(y, c), np.repeat(s, c)) for c in counts]
    for w in (counts, counts.astype(float), counts.astype(np.int8), np.asfortranarray(counts)):
        assert np.abs(weighted_auc(y, s, w) - want).max() < 1e-12
    real = rng.random((3, 300))  # real-valued weights: the weighted Mann-Whitney U, by brute force
    brute = [sum(r[i] * r[j] * ((s[j] < s[i]) + 0.5 * (s[j] == s[i])) for i in np.flatnonzero(y) for j in np.flatnonzero(1 - y))
             / (r[y == 1].sum() * r[y == 0].sum()) for r in real]
    assert np.abs(weighted_auc(y, s, real) - brute).max() < 1e-12


def _sparse_weighted_auc(y, score, w):
    """The pre-issue-20 weighted_auc (one sparse product per class, per resample group sums): the
    reference the vectorised one must reproduce on the same row counts."""
    _, group = np.unique(score, return_inverse=True)
    n, g = len(score), int(group.max()) + 1
    to_groups = lambda rows: sp.csr_matrix((np.ones(rows.sum()), (np.flatnonzero(rows), group[rows])), shape=(n, g))  # noqa: E731
    pos, neg = np.asarray(w @ to_groups(y == 1)), np.asarray(w @ to_groups(y == 0))
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def test_two_level_interval_of_a_real_sized_test_set_equals_the_previous_code():
    """3,523 test rows (rounded scores: ties), 5 seeds, 2,000 resamples, as the committed study:
    the same counts and seed draws give the same replicates (1e-12) and interval endpoints (1e-12)."""
    rng = np.random.default_rng(7)
    y, scores = _seeded_scores(rng, 3523, [1.0, 1.2, 1.4, 1.6, 1.8])
    scores = np.round(1 / (1 + np.exp(-scores)), 6)
    counts, draws = bootstrap_counts(3523, 2000), seed_draws(5, 2000)
    obs, reps = per_seed_auc(y, scores, counts)
    old = np.array([_sparse_weighted_auc(y, s, counts.astype(float)) for s in scores])
    assert np.abs(reps - old).max() < 1e-12
    assert np.abs(obs - [roc_auc_score(y, s) for s in scores]).max() < 1e-12
    new_iv, old_iv = interval(obs.mean(), seed_average(reps, draws)), interval(obs.mean(), seed_average(old, draws))
    assert np.abs(np.subtract(new_iv, old_iv)).max() < 1e-12
    assert new_iv[0] < obs.mean() < new_iv[1] and 0.03 < new_iv[1] - new_iv[0] < 0.1  # 0.709 to 0.784


def _sklearn_macro_auc(y, p):
    """The pre-issue-20 multi-class path: sklearn on explicitly resampled rows, NaN if a class is missing."""
    k = p.shape[1]
    return float(roc_auc_score(y, p, multi_class="ovr", labels=list(range(k)))) if len(np.unique(y)) == k else np.nan


def test_multiclass_macro_auc_equals_sklearn_on_resampled_rows_and_is_nan_without_a_class():
    rng = np.random.default_rng(8)
    y = rng.choice(5, 450, p=[0.4, 0.3, 0.2, 0.09, 0.01])  # class 4: ~4 rows, missing from some resamples
    probas = rng.dirichlet(np.ones(5), size=(2, 450)) + 0.5 * np.eye(5)[y]
    probas = np.round(probas / probas.sum(axis=2, keepdims=True), 2)  # ties in classes 0-3
    probas[..., 4] = 1 - probas[..., :4].sum(axis=2)  # rows sum to 1, as sklearn requires
    counts = bootstrap_counts(450, 60, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs, reps = per_seed_macro_auc(y, probas, counts)
    old_obs, old_reps = per_seed_metric(y, probas, _sklearn_macro_auc, counts)
    assert np.abs(obs - old_obs).max() < 1e-12 and reps.shape == (2, 60)
    assert np.array_equal(np.isnan(reps), np.isnan(old_reps)) and 0 < np.isnan(reps[0]).sum() < 60
    assert np.nanmax(np.abs(reps - old_reps)) < 1e-12


def test_bootstrap_counts_are_the_multinomial_draws_in_a_small_column_major_type():
    c = bootstrap_counts(500, 40, seed=3)
    want = np.random.default_rng(3).multinomial(500, np.full(500, 1 / 500), size=40)
    assert np.array_equal(c, want) and c.dtype == np.int8 and c.flags.f_contiguous
    assert (c.sum(axis=1, dtype=int) == 500).all() and bootstrap_counts(1, 3).tolist() == [[1], [1], [1]]


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
    assert all(v != v for v in nan.values()) and set(nan) == set(m)


def test_balanced_accuracy_and_minority_recall():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])  # classes 1 and 2 tie as least frequent -> class 1
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    m = classification_metrics(y, np.eye(3)[pred] * 0.8 + 0.2 / 3)
    assert m["accuracy"] == 0.75 and m["minority_recall"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3) == balanced_accuracy_score(y, pred)
    one_class = classification_metrics(np.zeros(3, int), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    assert one_class["balanced_accuracy"] == one_class["minority_recall"] == pytest.approx(2 / 3)


def test_best_f1_threshold_picks_the_best_distinct_score_and_largest_on_ties():
    y = np.array([0, 1, 1, 0, 1, 0])
    p = np.array([0.1, 0.9, 0.6, 0.6, 0.3, 0.2])
    # thresholds 0.9, 0.6 (a tie: both rows), 0.3, 0.2, 0.1 give F1 = 2/4, 4/6, 6/7, 6/8, 6/9
    assert best_f1_threshold(y, p) == 0.3
    brute = max(sorted(set(p), reverse=True), key=lambda t: f1_score(y, p >= t))
    assert best_f1_threshold(y, np.column_stack([1 - p, p])) == brute
    assert best_f1_threshold(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6])) == 0.9  # F1 2/3 at 0.9 and 0.6
    assert f1_at_threshold(y, p, 0.3) == pytest.approx(6 / 7) and f1_at_threshold(y, p, 0.95) == 0.0
    assert np.isnan(best_f1_threshold(np.zeros(3, int), np.array([0.1, 0.5, 0.9])))


def test_f1_threshold_multiclass_falls_back_to_argmax_macro_f1():
    y3 = np.array([0, 1, 2, 2])
    p3 = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    assert np.isnan(best_f1_threshold(y3, p3))
    assert f1_at_threshold(y3, p3, np.nan) == f1_at_threshold(y3, p3, 0.99) == classification_metrics(y3, p3)["f1"]


def test_mean_ci_and_roughness():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1 / np.sqrt(3), rel=1e-3)
    assert mean_ci([5.0]) == (5.0, 0.0)
    assert curve_roughness([1, 2, 3, 4]) == 0 and curve_roughness([1, 3, 1]) == 4


def _seeded_scores(rng, n, mus, noise=1.0):
    """``(len(mus), n)`` scores of seeds that separate the classes by ``mus``, sharing row noise."""
    y = rng.integers(0, 2, n)
    return y, np.asarray(mus)[:, None] * y + rng.normal(size=n) + noise * rng.normal(size=(len(mus), n))


def test_seed_draws_contract():
    d = seed_draws(4, 50, seed=3)
    assert d.shape == (50, 4) and d.min() == 0 and d.max() == 3
    assert np.array_equal(d, seed_draws(4, 50, seed=3)) and not np.array_equal(d, seed_draws(4, 50, seed=4))
    assert not np.array_equal(seed_draws(5, 50, seed=3)[:, :4], d)  # other seed counts: independent draws
    assert not seed_draws(1, 20).any()
    with pytest.raises(ValueError, match="n_seeds"):
        seed_draws(0, 10)


def test_two_level_replicates_match_brute_force_resampling():
    rng = np.random.default_rng(3)
    y, scores = _seeded_scores(rng, 30, [0.5, 1.0, 2.0])
    scores = np.round(scores, 1)  # ties
    counts, draws = bootstrap_counts(30, 6, seed=1), seed_draws(3, 6, seed=1)
    obs, per_seed = per_seed_auc(y, scores, counts)
    reps = seed_average(per_seed, draws)
    assert obs.mean() == pytest.approx(np.mean([roc_auc_score(y, s) for s in scores]))
    for c, d, r in zip(counts.astype(int), draws, reps):
        idx = np.repeat(np.arange(30), c)
        assert r == pytest.approx(np.mean([roc_auc_score(y[idx], scores[j, idx]) for j in d]))
    slow = per_seed_metric(y, scores, roc_auc_score, counts)
    assert np.allclose(slow[0], obs) and np.allclose(slow[1], per_seed)


def test_two_level_with_one_seed_is_the_row_bootstrap_and_seed_spread_widens_it():
    rng = np.random.default_rng(4)
    y, scores = _seeded_scores(rng, 400, [0.3, 1.0, 2.0, 3.0])
    counts = bootstrap_counts(400, 300)
    obs, per_seed = per_seed_auc(y, scores, counts)
    one = seed_average(per_seed[:1], seed_draws(1, 300))
    assert interval(obs[0], one) == tuple(np.percentile(weighted_auc(y, scores[0], counts), [2.5, 97.5]))
    lo2, hi2 = interval(obs.mean(), seed_average(per_seed, seed_draws(4, 300)))
    lo1, hi1 = interval(obs.mean(), per_seed.mean(axis=0))  # rows only
    assert hi2 - lo2 > 2 * (hi1 - lo1)


def test_interval_percentile_basic_and_nan():
    r = np.r_[np.arange(101.0), np.nan]
    assert interval(0.0, r, level=0.9) == pytest.approx((5.0, 95.0))
    assert interval(60.0, r, level=0.9, method="basic") == pytest.approx((25.0, 115.0))
    assert np.isnan(interval(0.5, np.full(3, np.nan))).all()
    with pytest.raises(ValueError, match="method"):
        interval(0.0, r, method="bca")


def test_two_level_interval_covers_the_true_auc():
    """Seeds separate the classes by mu_s ~ N(mu, tau^2), rows add N(0, 1 + sig^2) noise, so the
    population seed-mean AUC is E[Phi(mu_s / sqrt(2 (1 + sig^2)))] = Phi(mu / sqrt(2 (1 + sig^2) + tau^2))."""
    k, n, n_boot, mu, tau, sig = 10, 150, 150, 1.0, 0.4, 0.5
    true = norm.cdf(mu / np.sqrt(2 * (1 + sig ** 2) + tau ** 2))
    rng = np.random.default_rng(0)
    hits = np.zeros((200, 2), bool)
    for s in range(200):
        y, scores = _seeded_scores(rng, n, mu + tau * rng.normal(size=k), noise=sig)
        obs, reps = per_seed_auc(y, scores, bootstrap_counts(n, n_boot, s))
        for j, r in enumerate((seed_average(reps, seed_draws(k, n_boot, s)), reps.mean(axis=0))):
            lo, hi = interval(obs.mean(), r)
            hits[s, j] = lo <= true <= hi
    two_level, rows_only = hits.mean(axis=0)
    assert 0.90 <= two_level <= 0.99 and rows_only < two_level


def test_per_seed_metric_resamples_rows_explicitly():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 200)
    probas = rng.dirichlet(np.ones(3), size=(2, 200))
    counts = bootstrap_counts(200, 20, seed=1)
    obs, reps = per_seed_metric(y, probas, expected_calibration_error, counts)
    assert obs[1] == pytest.approx(expected_calibration_error(y, probas[1])) and reps.shape == (2, 20)
    idx = np.repeat(np.arange(200), counts.astype(int)[7])
    assert reps[0, 7] == pytest.approx(expected_calibration_error(y[idx], probas[0][idx]))


def test_perceptual_score_normalised_by_the_clean_score():
    # accuracy 0.80 clean, 0.60 and 0.64 with the modality permuted: (0.80 - 0.62) / 0.80 = 0.225
    assert perceptual_score(0.80, [0.60, 0.64]) == pytest.approx(0.225)
    assert perceptual_score(0.7, [0.7]) == 0.0 and np.isnan(perceptual_score(0.0, [0.1]))
    with pytest.raises(ValueError, match="permuted"):
        perceptual_score(0.8, [])


def test_rms_grad_ratio_corrects_for_encoder_size():
    # same per-parameter gradient 0.01: L2 norms 0.01 * sqrt(n) differ 10x, the RMS ratio is 1
    assert rms_grad_ratio(0.01 * np.sqrt(10_000), 0.01 * np.sqrt(100), 10_000, 100) == pytest.approx(1.0)
    assert rms_grad_ratio(3.0, 1.0, 400, 100) == pytest.approx(1.5)
    assert np.allclose(rms_grad_ratio([2.0, 4.0], [1.0, 1.0], 4, 4), [2.0, 4.0])
    assert rms_grad_ratio(1.0, 0.0, 4, 4) == np.inf and np.isnan(rms_grad_ratio(0.0, 0.0, 4, 4))
    with pytest.raises(ValueError, match="positive"):
        rms_grad_ratio(1.0, 1.0, 0, 4)


def test_weighted_auc_is_nan_without_warning_for_a_one_class_weighting():
    y, score = np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.4, 0.3])
    w = np.array([[1, 1, 1, 1], [1, 0, 1, 0]], dtype=float)  # the second row weighs negatives only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auc = metrics.weighted_auc(y, score, w)
        one_class = per_seed_auc(np.zeros(4, int), score, w.astype(np.int8))
    assert auc[0] == 0.75 and np.isnan(auc[1]) and np.isnan(one_class[0]).all() and np.isnan(one_class[1]).all()


def test_emap_projection_keeps_an_additive_model_and_removes_a_pure_interaction():
    rng = np.random.default_rng(0)
    n = 40
    g, h = rng.normal(size=(n, 1, 3)), rng.normal(size=(1, n, 3))
    additive = g + h
    np.testing.assert_allclose(metrics.emap_projection(additive), additive[np.arange(n), np.arange(n)], atol=1e-12)
    u, v = rng.normal(size=n), rng.normal(size=n)
    u, v = u - u.mean(), v - v.mean()
    product = (u[:, None] * v[None, :])[:, :, None] + additive  # u_i v_j averages to 0 over either index
    np.testing.assert_allclose(metrics.emap_projection(product), additive[np.arange(n), np.arange(n)], atol=1e-12)


def test_emap_projection_with_counts_is_the_projection_of_the_resampled_rows():
    rng = np.random.default_rng(1)
    n = 25
    f = rng.normal(size=(n, n, 2))
    counts = bootstrap_counts(n, 3, seed=2)
    got = metrics.emap_projection(f, counts)
    for b, c in enumerate(counts):
        rows = np.repeat(np.arange(n), c.astype(int))  # the resample, rows repeated
        want = metrics.emap_projection(f[np.ix_(rows, rows)])
        first = np.searchsorted(rows, np.arange(n))  # a row's projection is the same at each copy
        kept = c > 0
        np.testing.assert_allclose(got[b][kept], want[first[kept]], atol=1e-12)


def test_emap_scores_gap_is_zero_for_an_additive_model_and_large_for_xor():
    rng = np.random.default_rng(3)
    n = 400
    c, s = rng.integers(0, 2, n), rng.integers(0, 2, n)
    y = c ^ s
    log_odds = 3.0 * (c[:, None] ^ s[None, :]) - 1.5  # (n, n): f(c_i, s_j)
    xor = metrics.emap_scores(y, np.stack([np.zeros_like(log_odds), log_odds], axis=-1), n_boot=100)
    assert xor["model"] == 1.0 and abs(xor["projection"] - 0.5) < 0.1 and xor["gap_lo"] > 0.35, xor
    additive = rng.normal(size=(n, 1, 2)) + rng.normal(size=(1, n, 2))
    flat = metrics.emap_scores(y, additive, n_boot=100)
    assert flat["gap"] == pytest.approx(0, abs=1e-12) and abs(flat["gap_lo"]) < 1e-12 and abs(flat["gap_hi"]) < 1e-12
    three = metrics.emap_scores(rng.integers(0, 3, n), rng.normal(size=(n, 1, 3)) + rng.normal(size=(1, n, 3)), 20)
    assert three["gap"] == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="n, n, n_classes"):
        metrics.emap_scores(y, additive[:, :-1], n_boot=10)


def test_sums_before_equals_the_full_prefix_sums_at_the_asked_points():
    rng = np.random.default_rng(4)
    for dtype in (np.int8, np.float64):
        a = rng.integers(0, 5, size=(37, 6)).astype(dtype)
        at = np.r_[rng.integers(0, 38, 20), 0, 37, 37]
        table, index = metrics._sums_before(a, at, np.int32 if dtype == np.int8 else np.float64)
        full = metrics._prefix_sums(a, np.int32 if dtype == np.int8 else np.float64)  # the slow reference
        assert np.array_equal(table[index], full[at]) and len(table) == len(np.unique(at))
    assert metrics._sums_before(np.zeros((0, 3), np.int8), np.array([0, 0]), np.int32)[0].tolist() == [[0, 0, 0]]


def test_auc_columns_equal_the_all_prefix_reference_exactly():
    def reference(yb, score, wt):  # the former formulation: every prefix of the sorted negatives
        neg, pos = np.flatnonzero(~yb), np.flatnonzero(yb)
        neg = neg[np.argsort(score[neg], kind="stable")]
        below = np.vstack([np.zeros((1, wt.shape[1])), np.cumsum(wt[neg], axis=0, dtype=float)])
        lo, hi = np.searchsorted(score[neg], score[pos], "left"), np.searchsorted(score[neg], score[pos], "right")
        u = (wt[pos] * (below[lo] + below[hi]) / 2).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return u / (wt[pos].sum(axis=0) * below[-1])
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(2, 80))
        yb, score = rng.random(n) < 0.3, np.round(rng.random(n), int(rng.integers(1, 4)))  # many ties
        wt = rng.integers(0, 3, size=(n, 7)).astype(np.int8)
        got, want = metrics._auc_columns(yb, score, wt), reference(yb, score, wt)
        assert np.array_equal(np.isnan(got), np.isnan(want)) and np.nanmax(np.abs(got - want), initial=0) < 1e-12


def test_bootstrap_counts_are_memoised_read_only_and_unchanged():
    a, b = bootstrap_counts(300, 20, seed=7), bootstrap_counts(300, 20, seed=7)
    assert a is b and not a.flags.writeable
    assert np.array_equal(a, np.random.default_rng(7).multinomial(300, np.full(300, 1 / 300), size=20))
    assert not np.array_equal(a, bootstrap_counts(300, 20, seed=8))
