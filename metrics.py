"""Metrics (scikit-learn), confidence intervals over seeds, paired bootstrap, stability measures."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import stats
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, log_loss,
                             roc_auc_score)


def positive_proba(proba: np.ndarray) -> np.ndarray:
    """``(n, 2)`` -> ``(n,)`` probability of class 1; ``(n,)`` is returned as is."""
    return proba[:, 1] if proba.ndim == 2 and proba.shape[1] == 2 else proba


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al., 2017): sum over equal-width confidence bins of
    ``|bin| / n * |accuracy(bin) - confidence(bin)|`` using top-label confidence.

    ``proba`` is ``(n_samples, n_classes)`` or ``(n_samples,)`` positive-class probabilities.
    """
    p = np.column_stack([1 - proba, proba]) if proba.ndim == 1 else proba
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    correct = (pred == y).astype(float)
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, F1, accuracy, log loss and ECE.

    Parameters
    ----------
    y : (n_samples,) int class indices.
    proba : (n_samples, n_classes) class probabilities (rows sum to 1).

    Binary: F1 of class 1 at threshold 0.5, PR-AUC = average precision of class 1. Multi-class:
    one-vs-rest macro ROC-AUC and PR-AUC, macro F1 of the argmax. ROC/PR-AUC are NaN when ``y``
    holds a single class; every metric is NaN when ``proba`` has a non-finite value.
    """
    n_classes = proba.shape[1]
    if not np.isfinite(proba).all():  # a diverged model: every metric is undefined
        return {k: float("nan") for k in ("accuracy", "log_loss", "ece", "roc_auc", "pr_auc", "f1")}
    pred = proba.argmax(axis=1)
    out = {"accuracy": accuracy_score(y, pred),
           "log_loss": log_loss(y, proba, labels=list(range(n_classes))),
           "ece": expected_calibration_error(y, proba)}
    if len(np.unique(y)) < 2:
        out.update(roc_auc=float("nan"), pr_auc=float("nan"))
    elif n_classes == 2:
        out.update(roc_auc=roc_auc_score(y, proba[:, 1]), pr_auc=average_precision_score(y, proba[:, 1]))
    else:
        onehot = np.eye(n_classes)[y]
        out.update(roc_auc=roc_auc_score(y, proba, multi_class="ovr", average="macro",
                                          labels=list(range(n_classes))),
                   pr_auc=average_precision_score(onehot, proba, average="macro"))
    out["f1"] = f1_score(y, pred, average="binary" if n_classes == 2 else "macro", zero_division=0)
    return {k: float(v) for k, v in out.items()}


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval over seeds (0 for one value)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) < 2:
        return float(v.mean()), 0.0
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def weighted_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Binary ROC-AUC of one score vector under many row weightings at once.

    Parameters
    ----------
    y : (n,) 0/1 labels.  score : (n,) scores.  w : (B, n) non-negative row weights; integer
        counts from a bootstrap resample give exactly the AUC of the resampled rows.

    Returns ``(B,)``: ``sum_{pos i, neg j} w_i w_j ([s_j < s_i] + [s_j = s_i] / 2) / (W_pos W_neg)``
    (Mann-Whitney U with ties averaged, as ``sklearn.metrics.roc_auc_score``), in O(B n) via
    one sparse product per class.
    """
    _, group = np.unique(score, return_inverse=True)  # tied scores share a group, groups ascend
    n, g = len(score), int(group.max()) + 1
    yb = np.asarray(y).astype(bool)
    to_groups = lambda rows: sp.csr_matrix((np.ones(rows.sum()), (np.flatnonzero(rows), group[rows])), shape=(n, g))  # noqa: E731
    pos, neg = np.asarray(w @ to_groups(yb)), np.asarray(w @ to_groups(~yb))  # (B, g) weight per group
    below = np.cumsum(neg, axis=1) - neg
    return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def bootstrap_counts(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` float row counts of bootstrap resamples (rows drawn with replacement)."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def seed_mean_auc(y: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over seeds of ROC-AUC: observed, and under each bootstrap resample.

    ``scores`` is ``(n_seeds, n_samples)``; returns ``(observed, (n_boot,))``.
    """
    scores = np.atleast_2d(scores)
    ones = np.ones((1, len(y)))
    obs = float(np.mean([weighted_auc(y, row, ones)[0] for row in scores]))
    return obs, np.mean([weighted_auc(y, row, counts) for row in scores], axis=0)


def paired_bootstrap_auc(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 1000,
                         seed: int = 0, boot_a=None, boot_b=None) -> dict[str, float]:
    """Paired bootstrap of ``AUC(a) - AUC(b)`` over test rows, averaged over paired seeds.

    Parameters
    ----------
    y : (n_samples,) binary labels.
    a, b : (n_seeds, n_samples) positive-class scores of the two models, seed ``i`` paired with
        seed ``i``. Each resample draws rows with replacement (the same rows for every seed and
        both models, fixed by ``seed``) and evaluates all seeds on them.
    boot_a, boot_b : optional precomputed :func:`seed_mean_auc` results for ``a`` / ``b`` with
        ``bootstrap_counts(n_samples, n_boot, seed)`` (lets a report reuse one model's resamples).

    Returns ``{"diff", "lo", "hi", "p_le_0"}``: the observed mean difference, its 95% percentile
    interval and the fraction of resamples with a difference <= 0.
    """
    counts = None if boot_a is not None and boot_b is not None else bootstrap_counts(len(y), n_boot, seed)
    obs_a, ba = boot_a if boot_a is not None else seed_mean_auc(y, a, counts)
    obs_b, bb = boot_b if boot_b is not None else seed_mean_auc(y, b, counts)
    diffs = ba - bb
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": obs_a - obs_b, "lo": float(lo), "hi": float(hi), "p_le_0": float(np.mean(diffs <= 0))}


def curve_roughness(values) -> float:
    """Mean absolute second difference of a per-epoch curve (0 for a straight line; NaN if < 3 points)."""
    v = np.asarray(values, dtype=float)
    return float(np.mean(np.abs(np.diff(v, n=2)))) if len(v) >= 3 else float("nan")
