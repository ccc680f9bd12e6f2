"""Metrics (scikit-learn), confidence intervals over seeds, paired bootstrap, stability measures."""
from __future__ import annotations

import numpy as np
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


def _auc_rows(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Binary ROC-AUC of every row of ``scores (B, n)`` against labels ``y (B, n)`` (Mann-Whitney U,
    ties averaged; equals ``sklearn.metrics.roc_auc_score`` per row)."""
    ranks = stats.rankdata(scores, axis=1)
    pos = y.sum(axis=1)
    neg = y.shape[1] - pos
    return ((ranks * y).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)


def paired_bootstrap_auc(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, float]:
    """Paired bootstrap of ``AUC(a) - AUC(b)`` over test rows, averaged over paired seeds.

    Parameters
    ----------
    y : (n_samples,) binary labels.
    a, b : (n_seeds, n_samples) positive-class scores of the two models, seed ``i`` paired with
        seed ``i``. Each resample draws rows with replacement and evaluates all seeds on them.

    Returns ``{"diff", "lo", "hi", "p_le_0"}``: the observed mean difference, its 95% percentile
    interval and the fraction of resamples with a difference <= 0.
    """
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    rng = np.random.default_rng(seed)
    obs = float(np.mean(_auc_rows(np.tile(y, (len(a), 1)), a) - _auc_rows(np.tile(y, (len(b), 1)), b)))
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        yy = np.tile(y[idx], (len(a), 1))
        diffs[i] = np.mean(_auc_rows(yy, a[:, idx])) - np.mean(_auc_rows(np.tile(y[idx], (len(b), 1)), b[:, idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": obs, "lo": float(lo), "hi": float(hi), "p_le_0": float(np.mean(diffs <= 0))}


def curve_roughness(values) -> float:
    """Mean absolute second difference of a per-epoch curve (0 for a straight line; NaN if < 3 points)."""
    v = np.asarray(values, dtype=float)
    return float(np.mean(np.abs(np.diff(v, n=2)))) if len(v) >= 3 else float("nan")
