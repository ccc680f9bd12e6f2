"""Metrics (scikit-learn), F1 at a chosen threshold, confidence intervals over seeds, row-only and
two-level (seeds x rows) bootstrap, stability and modality-reliance measures, and the EMAP
projection of a two-modality model's pairwise logits (how much cross-modal interaction it uses)."""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import sklearn
from scipy import stats
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, log_loss, roc_auc_score


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
    """ROC-AUC, PR-AUC, F1, accuracy, balanced accuracy, minority-class recall, log loss and ECE.

    Parameters
    ----------
    y : (n_samples,) int class indices.
    proba : (n_samples, n_classes) class probabilities (rows sum to 1).

    Binary: F1 of class 1 at threshold 0.5, PR-AUC = average precision of class 1. Multi-class:
    one-vs-rest macro ROC-AUC and PR-AUC, macro F1 of the argmax. ``balanced_accuracy`` is the mean
    recall over the classes present in ``y`` (as sklearn's); ``minority_recall`` the recall of the
    argmax on the class least frequent in ``y`` (ties: the lowest class index). ROC/PR-AUC are NaN when ``y``
    holds a single class; every metric is NaN when ``proba`` has a non-finite value.
    """
    n_classes = proba.shape[1]
    if not np.isfinite(proba).all():  # a diverged model: every metric is undefined
        return {k: float("nan") for k in ("accuracy", "log_loss", "ece", "roc_auc", "pr_auc", "f1",
                                          "balanced_accuracy", "minority_recall")}
    with sklearn.config_context(skip_parameter_validation=True):  # arguments are ours: ~20% faster per call
        return _classification_metrics(y, proba, n_classes)


def _classification_metrics(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    pred = proba.argmax(axis=1)
    out = {"accuracy": accuracy_score(y, pred),
           "log_loss": log_loss(y, proba, labels=list(range(n_classes))),
           "ece": expected_calibration_error(y, proba)}
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        out.update(roc_auc=float("nan"), pr_auc=float("nan"))
    elif n_classes == 2:
        out.update(roc_auc=roc_auc_score(y, proba[:, 1]), pr_auc=average_precision_score(y, proba[:, 1]))
    else:
        onehot = np.eye(n_classes)[y]
        out.update(roc_auc=roc_auc_score(y, proba, multi_class="ovr", average="macro",
                                          labels=list(range(n_classes))),
                   pr_auc=average_precision_score(onehot, proba, average="macro"))
    out["f1"] = f1_score(y, pred, average="binary" if n_classes == 2 else "macro", zero_division=0)
    # sklearn's balanced_accuracy_score, written out: it warns on single-label or unseen-class splits
    out["balanced_accuracy"] = np.mean([np.mean(pred[y == c] == c) for c in classes])
    minority = classes[np.argmin(counts)]  # argmin takes the first, i.e. lowest, class on ties
    out["minority_recall"] = np.mean(pred[y == minority] == minority)
    return {k: float(v) for k, v in out.items()}


def best_f1_threshold(y_val: np.ndarray, p_val: np.ndarray) -> float:
    """Decision threshold maximising F1 of class 1 on validation rows (binary only).

    Parameters
    ----------
    y_val : (n_samples,) 0/1 labels.
    p_val : (n_samples,) or (n_samples, 2) positive-class probabilities. ``(n_samples, n_classes)``
        with ``n_classes > 2`` is multi-class, where no single threshold applies.

    Returns
    -------
    float
        The candidate ``t`` among the distinct values of ``p_val`` whose rule ``p >= t`` has the
        highest F1; ties go to the largest such ``t`` (fewest predicted positives). NaN for
        multi-class input, when ``y_val`` has no positive row (F1 is 0 at every threshold) or
        ``p_val`` has a non-finite value. Apply it to test rows with :func:`f1_at_threshold`.
    """
    p, y = positive_proba(np.asarray(p_val)), np.asarray(y_val).astype(bool)
    if p.ndim != 1 or not y.any() or not np.isfinite(p).all():
        return float("nan")
    order = np.argsort(-p, kind="stable")
    ps, tp = p[order], np.cumsum(y[order])
    last = np.r_[ps[1:] != ps[:-1], True]  # last row of each tie group: "p >= t" takes the whole group
    f1 = 2 * tp[last] / (np.flatnonzero(last) + 1 + y.sum())  # 2 TP / (predicted pos + actual pos)
    return float(ps[last][np.argmax(f1)])  # argmax: first maximum = largest threshold


def f1_at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """F1 of class 1 when predicting class 1 for ``p >= threshold`` (binary).

    Parameters
    ----------
    y : (n_samples,) int class indices.
    p : (n_samples,) or (n_samples, 2) positive-class probabilities, or (n_samples, n_classes > 2).
    threshold : e.g. from :func:`best_f1_threshold` on validation rows.

    Returns
    -------
    float
        Binary: F1 of class 1 (0 when nothing is predicted positive), NaN for a NaN ``threshold``.
        Multi-class: the threshold does not apply and is ignored; macro F1 of the argmax, the
        ``f1`` of :func:`classification_metrics`. NaN when ``p`` has a non-finite value.
    """
    p = positive_proba(np.asarray(p))
    if not np.isfinite(p).all() or (p.ndim == 1 and np.isnan(threshold)):
        return float("nan")
    if p.ndim == 2:
        return float(f1_score(y, p.argmax(axis=1), average="macro", zero_division=0))
    return float(f1_score(y, (p >= threshold).astype(int), zero_division=0))


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


def _prefix_sums(a: np.ndarray, dtype) -> np.ndarray:
    """``(n + 1, B)`` sums of the first ``k`` rows of ``a`` ``(n, B)``, ``k = 0..n``, in ``dtype``.

    A loop over rows of whole-row additions: ``np.cumsum(axis=0)`` walks each column with a
    stride and is ~10x slower on the ``(n_samples, n_boot)`` layout used here.
    """
    out = np.zeros((len(a) + 1, a.shape[1]), dtype)
    for i in range(len(a)):
        np.add(out[i], a[i], out=out[i + 1])
    return out


def _sums_before(a: np.ndarray, at: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Sums of the first ``k`` rows of ``a`` ``(n, B)`` for each ``k`` of ``at`` (ints in ``0..n``), in ``dtype``:
    ``(table (u, B), index (len(at),))`` with ``table[index[i]]`` the sum of ``a[:at[i]]``.

    One running ``(B,)`` total (it stays in cache) gains each block of rows between consecutive
    distinct ``at``, and is copied out at each: O(n B) reads and only O(u B) writes, where
    :func:`_prefix_sums` writes all ``n + 1`` prefixes.
    """
    cuts, index = np.unique(at, return_inverse=True)  # (u,) sorted distinct prefix lengths
    table = np.zeros((len(cuts), a.shape[1]), dtype)
    total = np.zeros(a.shape[1], dtype)
    for j in range(1, len(cuts)) if len(cuts) else ():
        total += a[cuts[j - 1]:cuts[j]].sum(axis=0, dtype=dtype)
        table[j] = total
    if len(cuts) and cuts[0] > 0:  # the smallest cut is not 0: its block starts at row 0
        first = a[:cuts[0]].sum(axis=0, dtype=dtype)
        table += first
    return table, index.ravel()


def _exact_sum_type(bound: float, integer: bool):
    """The narrowest accumulator that sums integers up to ``bound`` exactly (float64 for real weights)."""
    return (np.int32 if bound < 2 ** 31 else np.int64) if integer else np.float64


def _auc_columns(yb: np.ndarray, score: np.ndarray, wt: np.ndarray) -> np.ndarray:
    """``(B,)`` weighted Mann-Whitney ROC-AUC of ``score`` ``(n,)`` for 0/1 ``yb`` ``(n,)`` under
    each column of ``wt`` ``(n, B)``: one sort of the negatives, their weights summed below each
    positive's score (:func:`_sums_before`), and for each positive the negative weight strictly
    below its score plus half of that tied with it. Integer weights are summed in integers
    (exact). NaN where a column has no positive or no negative weight."""
    integer = np.issubdtype(wt.dtype, np.integer) or wt.dtype == bool
    most = np.iinfo(wt.dtype).max if np.issubdtype(wt.dtype, np.integer) else 1
    neg, pos = np.flatnonzero(~yb), np.flatnonzero(yb)
    neg = neg[np.argsort(score[neg], kind="stable")]
    lo = np.searchsorted(score[neg], score[pos], side="left")
    hi = np.searchsorted(score[neg], score[pos], side="right")
    tie = np.flatnonzero(hi != lo)  # positives tied with a negative: few, handled apart
    table, at = _sums_before(wt[neg], np.r_[lo, hi[tie], len(neg)], _exact_sum_type(float(most) * len(yb), integer))
    below_lo, below_hi, w_neg = table[at[:len(lo)]], table[at[len(lo):-1]], table[at[-1]].astype(float)
    wp = wt[pos]
    w_pos = wp.sum(axis=0, dtype=table.dtype).astype(float)
    acc = _exact_sum_type(2 * float((w_pos * w_neg).max(initial=0)), integer)
    dot = lambda a, b: np.einsum("ib,ib->b", a, b, dtype=acc, casting="unsafe")  # noqa: E731 (values fit acc)
    u2 = 2 * dot(wp, below_lo) + dot(wp[tie], below_hi - below_lo[tie])  # 2 U: ties count 1/2
    with np.errstate(invalid="ignore", divide="ignore"):  # one-class weightings: NaN, as documented
        return 0.5 * u2 / (w_pos * w_neg)


def weighted_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Binary ROC-AUC of one score vector under many row weightings at once.

    Parameters
    ----------
    y : (n,) 0/1 labels.  score : (n,) scores.  w : (B, n) non-negative row weights; integer
        counts from a bootstrap resample give exactly the AUC of the resampled rows.

    Returns ``(B,)``: ``sum_{pos i, neg j} w_i w_j ([s_j < s_i] + [s_j = s_i] / 2) / (W_pos W_neg)``
    (Mann-Whitney U with ties averaged, as ``sklearn.metrics.roc_auc_score``), in O(B n) after
    one O(n log n) sort; exact (integer sums) for integer weights. NaN for a weighting without
    positive or without negative weight (a resample of a small split that drew one class), silently.
    """
    wt = np.ascontiguousarray(np.asarray(w).T)  # (n, B): free for bootstrap_counts' column-major counts
    return _auc_columns(np.asarray(y).astype(bool), np.asarray(score), wt)


def bootstrap_counts(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` row counts of bootstrap resamples (rows drawn with replacement).

    Integers in the smallest signed type that holds them (int8 in practice: cast before
    arithmetic that could overflow it), stored column-major so that each row's counts over the
    resamples are contiguous, which is what :func:`weighted_auc` gathers. The draws are those of
    ``default_rng(seed).multinomial``. Memoised (the last few ``(n, n_boot, seed)``: drawing costs
    ~0.2 s per 1,000 x 5,000 and a report asks for the same resamples many times), so the array
    is read-only: copy it to modify it.
    """
    return _bootstrap_counts(int(n), int(n_boot), int(seed))


@functools.lru_cache(maxsize=8)
def _bootstrap_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    c = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    out = c.astype(np.min_scalar_type(-int(c.max(initial=0)) - 1), order="F")  # -max-1: a signed type
    out.setflags(write=False)
    return out


def per_seed_auc(y: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC of every seed, observed and under each row resample (the inner bootstrap level).

    Parameters
    ----------
    y : (n_samples,) 0/1 labels.  scores : (n_seeds, n_samples) or (n_samples,) positive-class
        scores.  counts : (n_boot, n_samples) row counts from :func:`bootstrap_counts`.

    Returns ``(observed (n_seeds,), replicates (n_seeds, n_boot))``; compute it once per model and
    combine seeds with :func:`seed_draws` / :func:`seed_average` (the two-level bootstrap of
    Saravanan et al. 2020, as used for benchmarks by Bouthillier et al. 2021: replicate ``b``
    redraws the seeds and the test rows; its interval covers a fresh test set of the same size and
    fresh training seeds, not another split or data set). Cost O(n_seeds n_boot n_samples), all
    resamples at once (:func:`weighted_auc`).
    """
    yb, wt = np.asarray(y).astype(bool), np.ascontiguousarray(np.asarray(counts).T)
    ones = np.ones((len(yb), 1), np.int8)
    scores = np.atleast_2d(scores)
    return (np.array([_auc_columns(yb, s, ones)[0] for s in scores]),
            np.array([_auc_columns(yb, s, wt) for s in scores]))


def per_seed_macro_auc(y: np.ndarray, probas: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`per_seed_auc` for multi-class macro one-vs-rest ROC-AUC (``roc_auc_score(...,
    multi_class="ovr", average="macro")``): the unweighted mean over classes ``c`` of the AUC of
    ``probas[..., c]`` for ``y == c``, all resamples at once.

    Parameters
    ----------
    y : (n_samples,) int class indices.  probas : (n_seeds, n_samples, n_classes) probabilities.
    counts : (n_boot, n_samples) row counts from :func:`bootstrap_counts`.

    Returns ``(observed (n_seeds,), replicates (n_seeds, n_boot))``; NaN, silently, for a
    resample (or ``y``) that lacks a class. Cost O(n_seeds n_classes n_boot n_samples).
    """
    y, wt = np.asarray(y), np.ascontiguousarray(np.asarray(counts).T)
    ones = np.ones((len(y), 1), np.int8)
    macro = lambda p, w: np.mean([_auc_columns(y == c, p[:, c], w) for c in range(p.shape[1])], axis=0)  # noqa: E731
    return (np.array([macro(p, ones)[0] for p in probas]), np.array([macro(p, wt) for p in probas]))


def per_seed_metric(y: np.ndarray, probas: np.ndarray, metric_fn: Callable[[np.ndarray, np.ndarray], float],
                    counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`per_seed_auc` for any metric (e.g. multi-class macro ROC-AUC, ECE): slower, it
    recomputes ``metric_fn(y[idx], proba[idx])`` on explicitly resampled rows.

    Parameters
    ----------
    y : (n_samples,) labels.  probas : (n_seeds, n_samples, ...) predictions.
    metric_fn : returns NaN, not an error, on a degenerate resample (a class missing).
    counts : (n_boot, n_samples) from :func:`bootstrap_counts`.

    Returns ``(observed (n_seeds,), replicates (n_seeds, n_boot))``.
    """
    y, rows = np.asarray(y), np.arange(len(y))
    idx = [np.repeat(rows, c) for c in np.asarray(counts).astype(int)]
    obs = np.array([metric_fn(y, p) for p in probas], dtype=float)
    return obs, np.array([[metric_fn(y[i], p[i]) for i in idx] for p in probas], dtype=float)


def seed_draws(n_seeds: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_seeds)`` int indices of training seeds drawn with replacement (outer level).

    The stream depends on ``(seed, n_seeds)`` only and not on :func:`bootstrap_counts`'s: models
    with the same number of seeds get the same draws (seed ``i`` stays paired with seed ``i``),
    models with different numbers get independent draws, and ``n_seeds == 1`` (a deterministic
    reference) gives all zeros, i.e. a test-row-only interval.

    Raises
    ------
    ValueError
        If ``n_seeds < 1``.
    """
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    return np.random.default_rng([seed, n_seeds, 1]).integers(0, n_seeds, size=(n_boot, n_seeds))


def seed_average(replicates: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``(n_boot,)`` mean over the drawn seeds: ``out[b] = mean_j replicates[draws[b, j], b]``.

    ``replicates`` is ``(n_seeds, n_boot)`` per-seed values under row resample ``b`` (from
    :func:`per_seed_auc`); ``draws`` is ``(n_boot, n_draws)`` from :func:`seed_draws`.

    Raises
    ------
    ValueError
        If the numbers of resamples differ or a draw indexes a missing seed.
    """
    if draws.shape[0] != replicates.shape[1] or draws.max() >= replicates.shape[0]:
        raise ValueError(f"draws {draws.shape} (max {draws.max()}) do not fit replicates "
                         f"{replicates.shape} = (n_seeds, n_boot); use seed_draws(n_seeds, n_boot)")
    return np.take_along_axis(replicates.T, draws, axis=1).mean(axis=1)


def interval(observed: float, replicates: np.ndarray, level: float = 0.95,
             method: str = "percentile") -> tuple[float, float]:
    """Bootstrap interval ``(lo, hi)`` at ``level`` from ``(n_boot,)`` replicates.

    ``"percentile"``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the replicates
    (``observed`` unused). ``"basic"``: those quantiles reflected around ``observed``
    (``2 observed - q_hi, 2 observed - q_lo``). NaN replicates (resamples where the metric is
    undefined) are dropped; ``(NaN, NaN)`` when none is left.

    Raises
    ------
    ValueError
        For an unknown ``method`` or ``level`` outside (0, 1).
    """
    if method not in ("percentile", "basic") or not 0 < level < 1:
        raise ValueError(f"need method 'percentile' or 'basic' and 0 < level < 1, got {method!r}, {level}")
    r = np.asarray(replicates, dtype=float)
    r = r[~np.isnan(r)]
    if len(r) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(r, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi)) if method == "percentile" else (2 * observed - float(hi), 2 * observed - float(lo))


def curve_roughness(values) -> float:
    """Mean absolute second difference of a per-epoch curve (0 for a straight line; NaN if < 3 points)."""
    v = np.asarray(values, dtype=float)
    return float(np.mean(np.abs(np.diff(v, n=2)))) if len(v) >= 3 else float("nan")


def perceptual_score(clean: float, permuted: list[float]) -> float:
    """Perceptual score of one modality, normalised by the model's own score (Gat et al., 2021,
    "Perceptual Score: What Data Modalities Does Your Model Perceive?", NeurIPS).

    ``P = (clean - mean(permuted)) / clean``: the fraction of the model's score lost when that
    modality's features are permuted across test rows, the expectation over permutations estimated
    by the mean over repeats. The paper uses accuracy; any higher-is-better score with 0 as its
    floor reads the same way (for ROC-AUC, chance is 0.5, not 0). 0: the modality is ignored.

    Parameters
    ----------
    clean : the model's score on the intact test set.
    permuted : its scores with the modality permuted, one per permutation (>= 1).

    Returns NaN when ``clean`` is 0 or any input is NaN.

    Raises
    ------
    ValueError
        If ``permuted`` is empty.
    """
    if len(permuted) == 0:
        raise ValueError("permuted is empty; pass the score of at least one permutation")
    return float((clean - np.mean(permuted)) / clean) if clean != 0 else float("nan")


def rms_grad_ratio(norm_a: float | np.ndarray, norm_b: float | np.ndarray, n_params_a: int,
                   n_params_b: int) -> float | np.ndarray:
    """Ratio of root-mean-square per-parameter gradients of two encoders, ``a`` over ``b``.

    ``(norm_a / sqrt(n_params_a)) / (norm_b / sqrt(n_params_b))`` from each encoder's gradient L2
    norm. OGM-GE (Peng et al., 2022, "Balanced Multimodal Learning via On-the-fly Gradient
    Modulation") motivates comparing per-encoder gradients to detect a dominant modality; raw L2
    norms grow with the square root of the parameter count and so favour the larger encoder.

    Parameters
    ----------
    norm_a, norm_b : float or arrays (e.g. per-epoch curves) of gradient L2 norms.
    n_params_a, n_params_b : number of trainable parameters of each encoder.

    Returns a float for scalar norms (an array for arrays): inf when only ``norm_b`` is 0, NaN
    when both are.

    Raises
    ------
    ValueError
        If a parameter count is not positive.
    """
    if n_params_a <= 0 or n_params_b <= 0:
        raise ValueError(f"parameter counts must be positive, got {n_params_a} and {n_params_b}")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.asarray(norm_a, dtype=float) / np.asarray(norm_b, dtype=float) * np.sqrt(n_params_b / n_params_a)
    return float(r) if r.ndim == 0 else r


def emap_projection(logits: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """EMAP: the best additive approximation of a two-modality model's logits (Hessel & Lee, 2020,
    "Does my multimodal model learn cross-modal interactions? It's harder to tell than you might
    think!", EMNLP).

    With ``F[i, j] = f(m1_i, m2_j)`` the logits of row i's first modality paired with row j's
    second, ``f_hat(i) = mean_j F[i, j] + mean_k F[k, i] - mean_{k, j} F[k, j]``: the projection of
    ``f`` onto functions ``g(m1) + h(m2)`` under the product of the rows' two marginals. Linear, so
    it projects each class's logits (and the binary log-odds) alike.

    Parameters
    ----------
    logits : (n, n, n_classes) ``F`` (``training.interaction.pairwise_logits``).
    weights : optional (n_boot, n) row weights (bootstrap counts): each row's pairings count with
        its weight, so a resample of rows gives the projection computed on that resample.

    Returns (n, n_classes), or (n_boot, n, n_classes) with ``weights``.
    """
    w = np.ones((1, logits.shape[0])) if weights is None else np.asarray(weights, dtype=float)
    total = w.sum(axis=1)[:, None, None]  # (B, 1, 1)
    rows = np.einsum("ijc,bj->bic", logits, w, optimize=True) / total  # mean over j of F[i, j]
    cols = np.einsum("kic,bk->bic", logits, w, optimize=True) / total  # mean over k of F[k, i]
    grand = np.einsum("bic,bi->bc", rows, w)[:, None, :] / total
    out = rows + cols - grand
    return out[0] if weights is None else out


def _logit_auc(y: np.ndarray, logits: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(B,)`` ROC-AUC of ``(n, n_classes)`` logits under each row-count row of ``counts`` ``(B, n)``:
    binary on the log-odds (:func:`weighted_auc`), multi-class macro one-vs-rest on the softmax."""
    if logits.shape[1] == 2:
        return weighted_auc(y, logits[:, 1] - logits[:, 0], counts)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = list(range(logits.shape[1]))
    out = []
    for c in counts:
        ok = len(np.unique(y[c > 0])) == len(labels)
        out.append(roc_auc_score(y, p, sample_weight=c, multi_class="ovr", labels=labels) if ok else np.nan)
    return np.array(out)


def emap_scores(y: np.ndarray, logits: np.ndarray, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> dict[str, float]:
    """ROC-AUC of a model and of its EMAP projection (:func:`emap_projection`) on the same rows,
    and the gap: the cross-modal interaction the model uses, in ROC-AUC (Hessel & Lee, 2020).

    Parameters
    ----------
    y : (n,) int class indices of the subsample's rows.
    logits : (n, n, n_classes) pairwise logits; the diagonal is the model's own.
    n_boot, seed, level : the percentile interval of the gap over ``n_boot`` resamples of the rows
        (:func:`bootstrap_counts`); each resample recomputes the projection on its rows.

    Returns ``{"n", "model", "projection", "gap", "gap_lo", "gap_hi"}``; ``gap = model - projection``
    (about 0: an additive model would score the same). Cost O(n_boot n^2 n_classes).

    Raises
    ------
    ValueError
        If ``logits`` is not ``(n, n, n_classes)`` with ``n = len(y)`` and ``n_classes >= 2``.
    """
    n = len(y)
    if logits.ndim != 3 or logits.shape[:2] != (n, n) or logits.shape[2] < 2:
        raise ValueError(f"logits must be (n, n, n_classes >= 2) with n = len(y) = {n}, got {logits.shape}")
    y, own, ones = np.asarray(y), logits[np.arange(n), np.arange(n)], np.ones((1, n))
    model, proj = _logit_auc(y, own, ones)[0], _logit_auc(y, emap_projection(logits), ones)[0]
    counts = bootstrap_counts(n, n_boot, seed)
    projected = emap_projection(logits, counts)
    reps = _logit_auc(y, own, counts) - np.array([_logit_auc(y, projected[b], counts[b:b + 1])[0]
                                                  for b in range(n_boot)])
    lo, hi = interval(model - proj, reps, level)
    return {"n": n, "model": float(model), "projection": float(proj), "gap": float(model - proj),
            "gap_lo": lo, "gap_hi": hi}
