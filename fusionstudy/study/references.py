"""Classical references, fit in the same run on the same split as the neural models.

Every reference is a function ``(prep, seed=0, fitted=None) -> Reference`` in ``REFERENCES``:

* ``ref_tfidf_logreg`` (text) — logistic regression on the text pipeline's TF-IDF matrix;
* ``ref_hist_gbdt`` (tabular) — HistGradientBoosting on the categorical codes and numeric block;
* ``ref_early_logreg`` (early fusion) — logistic regression on [TF-IDF | one-hot codes | numeric];
* ``ref_late_avg`` (late fusion) — mean of the two unimodal references' logits;
* ``ref_stack_gbdt`` (stacking) — HistGradientBoosting on the tabular columns plus an
  out-of-fold text score.

``fitted`` (name -> :class:`Reference`) is the cache one :func:`fit_references` call shares:
the fusions reuse the unimodal references in it and fit those that are missing. Results are plain
(no records, no file I/O); ``study.runner`` turns them into records.

Bit-reproducible for a given seed: every reference fits and predicts with one OpenMP/BLAS thread
whatever its caller allows (:func:`_one_thread`). HistGradientBoosting's results depend on its
OpenMP thread count: on the default split, seed 0, the stacking scored 0.97911 test ROC-AUC with one
thread and 0.97984 with eight (issue 18; the other references agreed to the last bit). One thread is
also the fastest on a shared 2-core machine (OpenMP spin-waits when another process holds a core).
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import softmax
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from fusionstudy.data.prepare import Prepared, SplitData
from fusionstudy.metrics import classification_metrics

C_GRID = (0.5, 2.0, 8.0)  # inverse L2 strength of every logistic regression here, picked on val ROC-AUC
N_FOLDS = 5  # cross-fitting folds of the stacking's text score
MAX_CAT_LEVELS = 255  # HistGradientBoosting handles a categorical column of at most max_bins levels
EPS = 1e-12  # probability floor before a log: a saturated model must not give -inf
EVAL = ("val", "test")


@dataclass(frozen=True)
class Reference:
    """One fitted classical reference.

    Attributes
    ----------
    name : registry name (``ref_tfidf_logreg`` ...).
    modalities : sorted modalities it uses.
    fusion : ``"none"`` (unimodal), ``"early"``, ``"late"`` or ``"stacking"``.
    proba : ``{"val": (n_val, n_classes), "test": (n_test, n_classes)}`` class probabilities
        (float32 from a logistic regression, as scikit-learn returns them; float64 otherwise).
    seconds : fit wall time in seconds, hyper-parameter search and components included.
    params : coefficient count of a linear model; NaN when trees are involved (nodes, not
        parameters).
    estimator : JSON-ready description: chosen hyper-parameters, grids, components.
    """

    name: str
    modalities: list[str]
    fusion: str
    proba: dict[str, np.ndarray]
    seconds: float
    params: float
    estimator: dict


def _require(prep: Prepared, name: str) -> None:
    missing = [m for m in REQUIRES[name] if m not in prep.modalities]
    if missing:
        raise ValueError(f"{name} needs the modalities {list(REQUIRES[name])}; the data has "
                         f"{list(prep.modalities)} (fit_references skips it for such data)")


# threadpoolctl's limits are process-wide: two driver threads fitting at once (one split's references
# while the next split's start, or the forecast beside them) would each restore, on leaving, the
# limit the other still relies on, and a fit would finish on more threads (other float rounding)
_ONE_THREAD = threading.RLock()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread (``threadpool_limits(1)``) for the block, held by one thread of this
    process at a time (others wait), so no other thread's limit can change it mid-fit; re-entrant."""
    with _ONE_THREAD, threadpool_limits(limits=1):
        yield


def _one_thread(fit: Callable[..., Reference]) -> Callable[..., Reference]:
    """Run a reference function under :func:`one_thread`: its result must not depend on the
    caller's thread count (see the module docstring)."""
    @functools.wraps(fit)
    def pinned(*args, **kwargs) -> Reference:
        with one_thread():
            return fit(*args, **kwargs)
    return pinned


def _get(name: str, prep: Prepared, seed: int, fitted: dict[str, Reference]) -> Reference:
    """``fitted[name]``, fitting it first if absent."""
    if name not in fitted:
        fitted[name] = REFERENCES[name](prep, seed, fitted)
    return fitted[name]


def _best_logreg(x: dict[str, sp.csr_matrix], prep: Prepared) -> LogisticRegression:
    """Fit one L2 logistic regression (lbfgs) per C of ``C_GRID``; keep the best on val ROC-AUC
    (the first on a tie)."""
    tr, va = prep.splits["train"], prep.splits["val"]
    fits = [LogisticRegression(C=c, max_iter=3000).fit(x["train"], tr.y) for c in C_GRID]
    return max(fits, key=lambda m: classification_metrics(va.y, m.predict_proba(x["val"]))["roc_auc"])


def _linear(name: str, modalities: list[str], fusion: str, model: LogisticRegression,
            x: dict[str, sp.csr_matrix], seconds: float) -> Reference:
    return Reference(name, modalities, fusion, {s: model.predict_proba(x[s]) for s in EVAL}, seconds,
                     float(model.coef_.size + model.intercept_.size),
                     {"C": float(model.C), "C_grid": list(C_GRID)})


@_one_thread
def ref_tfidf_logreg(prep: Prepared, seed: int = 0, fitted: dict | None = None) -> Reference:
    """TF-IDF + logistic regression on text: the linear bag-of-n-grams baseline.

    Input is the text pipeline's matrix ``split.text`` ``(n_samples, vocab_size)`` (word 1..n-gram
    TF-IDF, last two columns the missing/unknown ids); C from ``C_GRID`` on val ROC-AUC. ``seed``
    is unused (lbfgs is deterministic). As in Wang & Manning (2012), "Baselines and bigrams".
    """
    _require(prep, "ref_tfidf_logreg")
    x = {s: v.text for s, v in prep.splits.items()}
    t0 = time.perf_counter()
    best = _best_logreg(x, prep)
    return _linear("ref_tfidf_logreg", ["text"], "none", best, x, time.perf_counter() - t0)


def tabular_matrix(split: SplitData) -> np.ndarray:
    """``(n_samples, n_cat + 2 * n_num)`` float64: categorical codes, scaled numerics, missing flags."""
    return np.column_stack([split.cat, split.num]).astype(np.float64)


def categorical_mask(prep: Prepared, n_extra: int = 0) -> list[bool]:
    """HistGradientBoosting's ``categorical_features`` for :func:`tabular_matrix` plus ``n_extra``
    numeric columns: a code column is categorical if it has <= ``MAX_CAT_LEVELS`` codes (more,
    e.g. a product id, stays ordinal)."""
    n_num = prep.splits["train"].num.shape[1]
    return [c <= MAX_CAT_LEVELS for c in prep.tabular.cardinalities_] + [False] * (n_num + n_extra)


def _declared(prep: Prepared) -> list[str]:
    return [c for c, k in zip(prep.tabular.categorical, prep.tabular.cardinalities_) if k <= MAX_CAT_LEVELS]


@_one_thread
def ref_hist_gbdt(prep: Prepared, seed: int = 0, fitted: dict | None = None) -> Reference:
    """Gradient-boosted trees on the tabular modality (scikit-learn's HistGradientBoosting, a
    LightGBM-style histogram GBDT: Ke et al. 2017), default hyper-parameters, ``random_state=seed``.

    Input :func:`tabular_matrix` with :func:`categorical_mask`. Probabilities ``(n, n_classes)``.
    """
    _require(prep, "ref_hist_gbdt")
    tr = prep.splits["train"]
    t0 = time.perf_counter()
    hgb = HistGradientBoostingClassifier(categorical_features=categorical_mask(prep), random_state=seed)
    hgb.fit(tabular_matrix(tr), tr.y)
    secs = time.perf_counter() - t0
    proba = {s: hgb.predict_proba(tabular_matrix(prep.splits[s])) for s in EVAL}
    return Reference("ref_hist_gbdt", ["tabular"], "none", proba, secs, float("nan"),
                     {"categorical": _declared(prep), "random_state": seed})


def early_features(prep: Prepared) -> dict[str, sp.csr_matrix]:
    """Per split, CSR ``(n_samples, vocab_size + n_onehot + 2 * n_num)``: the TF-IDF matrix, a
    one-hot of the categorical codes (``OneHotEncoder`` fit on train; a code unseen in train is
    all zeros) and the scaled numeric block with its missing flags."""
    tr = prep.splits["train"]
    blocks = {s: [v.text] for s, v in prep.splits.items()}
    if tr.cat.shape[1]:
        enc = OneHotEncoder(handle_unknown="ignore", dtype=np.float32).fit(tr.cat)
        for s, v in prep.splits.items():
            blocks[s].append(enc.transform(v.cat))
    for s, v in prep.splits.items():
        blocks[s].append(sp.csr_matrix(v.num))
    return {s: sp.hstack(b, format="csr") for s, b in blocks.items()}


@_one_thread
def ref_early_logreg(prep: Prepared, seed: int = 0, fitted: dict | None = None) -> Reference:
    """Early fusion, classical: one logistic regression on :func:`early_features` (both modalities
    side by side), C from ``C_GRID`` on val ROC-AUC (the text reference's grid). ``seed`` is unused.

    Feature-level fusion as surveyed in Baltrušaitis et al. (2019), "Multimodal machine learning:
    a survey and taxonomy".
    """
    _require(prep, "ref_early_logreg")
    t0 = time.perf_counter()
    x = early_features(prep)
    best = _best_logreg(x, prep)
    return _linear("ref_early_logreg", ["tabular", "text"], "early", best, x, time.perf_counter() - t0)


def _log(proba: np.ndarray) -> np.ndarray:
    # in float64: the linear models return float32 probabilities
    return np.log(np.maximum(proba.astype(np.float64), EPS))


def late_average(probas: list[np.ndarray]) -> np.ndarray:
    """Softmax of the mean log-probability, ``(n, n_classes)`` from a list of ``(n, n_classes)``.

    For two classes this is exactly the sigmoid of the mean log-odds (the softmax is shift-
    invariant: log-odds of the result = mean of ``log p1 - log p0``). Probabilities are floored at
    ``EPS``.
    """
    return softmax(np.mean([_log(p) for p in probas], axis=0), axis=1)


@_one_thread
def ref_late_avg(prep: Prepared, seed: int = 0, fitted: dict | None = None) -> Reference:
    """Late fusion, classical: :func:`late_average` of ``ref_tfidf_logreg`` and ``ref_hist_gbdt``
    (taken from ``fitted``, fit if absent). No training of its own; ``seconds`` is the sum of both,
    ``params`` NaN (a tree model is a component). A product-of-experts / logit-averaging ensemble
    (Hinton 2002; Kittler et al. 1998, "On combining classifiers").
    """
    _require(prep, "ref_late_avg")
    fitted = {} if fitted is None else fitted
    parts = [_get(n, prep, seed, fitted) for n in ("ref_tfidf_logreg", "ref_hist_gbdt")]
    proba = {s: late_average([r.proba[s] for r in parts]) for s in EVAL}
    return Reference("ref_late_avg", ["tabular", "text"], "late", proba, sum(r.seconds for r in parts),
                     float("nan"), {"components": [r.name for r in parts], "combine": "mean log-probability"})


def text_score(proba: np.ndarray) -> np.ndarray:
    """Stacking feature from text probabilities ``(n, n_classes)``: ``(n, 1)`` log-odds of class 1
    for two classes, else ``(n, n_classes)`` log-probabilities (floored at ``EPS``)."""
    logp = _log(proba)
    return logp[:, 1:] - logp[:, :1] if proba.shape[1] == 2 else logp


def cross_fit_text_score(x: sp.csr_matrix, y: np.ndarray, C: float, n_classes: int, seed: int = 0,
                         n_folds: int = N_FOLDS) -> np.ndarray:
    """Out-of-fold :func:`text_score` of every training row.

    ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)``: the score of a row in fold k
    comes from a logistic regression (``C``) fit on the other folds only, so no row's score has
    seen its own label. ``x`` is ``(n_samples, n_features)``, ``y`` ``(n_samples,)`` class indices;
    returns ``(n_samples, 1)`` (binary) or ``(n_samples, n_classes)``.
    """
    proba = np.zeros((len(y), n_classes))
    for fit_rows, held in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x, y):
        model = LogisticRegression(C=C, max_iter=3000).fit(x[fit_rows], y[fit_rows])
        proba[np.ix_(held, model.classes_)] = model.predict_proba(x[held])
    return text_score(proba)


@_one_thread
def ref_stack_gbdt(prep: Prepared, seed: int = 0, fitted: dict | None = None) -> Reference:
    """Stacking: HistGradientBoosting on :func:`tabular_matrix` plus a text score (Wolpert 1992,
    "Stacked generalization"; text + tabular stacking as in AutoGluon's multimodal benchmark,
    Shi et al. 2021, "Benchmarking multimodal AutoML for tabular data with text fields").

    Train rows get :func:`cross_fit_text_score` (``N_FOLDS`` folds, the C that ``ref_tfidf_logreg``
    chose); val/test rows the score of ``ref_tfidf_logreg`` itself (the same model fit on all of
    train). ``seconds`` includes that reference's own fit; ``params`` is NaN.
    """
    _require(prep, "ref_stack_gbdt")
    fitted = {} if fitted is None else fitted
    text = _get("ref_tfidf_logreg", prep, seed, fitted)
    tr, C = prep.splits["train"], text.estimator["C"]
    t0 = time.perf_counter()
    oof = cross_fit_text_score(tr.text, tr.y, C, len(prep.classes), seed)
    hgb = HistGradientBoostingClassifier(categorical_features=categorical_mask(prep, oof.shape[1]),
                                         random_state=seed)
    hgb.fit(np.column_stack([tabular_matrix(tr), oof]), tr.y)
    secs = time.perf_counter() - t0 + text.seconds
    proba = {s: hgb.predict_proba(np.column_stack([tabular_matrix(prep.splits[s]), text_score(text.proba[s])]))
             for s in EVAL}
    return Reference("ref_stack_gbdt", ["tabular", "text"], "stacking", proba, secs, float("nan"),
                     {"text_C": C, "folds": N_FOLDS, "text_score": "out-of-fold log-odds / log-probabilities",
                      "categorical": _declared(prep), "random_state": seed})


REFERENCES: dict[str, Callable[..., Reference]] = {
    "ref_tfidf_logreg": ref_tfidf_logreg, "ref_hist_gbdt": ref_hist_gbdt, "ref_early_logreg": ref_early_logreg,
    "ref_late_avg": ref_late_avg, "ref_stack_gbdt": ref_stack_gbdt}
REQUIRES: dict[str, tuple[str, ...]] = {
    "ref_tfidf_logreg": ("text",), "ref_hist_gbdt": ("tabular",), "ref_early_logreg": ("tabular", "text"),
    "ref_late_avg": ("tabular", "text"), "ref_stack_gbdt": ("tabular", "text")}


# References whose fit depends on a random seed (gradient boosting's early-stopping split, the
# stacking's folds): fit once per study seed, like the neural models, so their intervals carry seed
# variation too. The logistic regressions (lbfgs) are deterministic: one fit.
SEEDED = ("ref_hist_gbdt", "ref_late_avg", "ref_stack_gbdt")


def fit_references(prep: Prepared, names: list[str] | None = None, seed: int = 0,
                   fitted: dict[str, Reference] | None = None) -> list[Reference]:
    """Fit the references ``names`` (default: all) that the data's modalities allow.

    Text-only data gets ``ref_tfidf_logreg`` alone, tabular-only data ``ref_hist_gbdt`` alone;
    a name whose modalities are absent is skipped. Components are fit once and shared (late
    averaging reuses both unimodal references, stacking the text one), also when not requested.
    ``fitted`` (updated in place) holds references already fit on ``prep``: pass those not in
    :data:`SEEDED` from an earlier seed to reuse them (their fit does not depend on the seed).

    Returns
    -------
    list of :class:`Reference` in registry order.

    Raises
    ------
    ValueError
        If a name is not in ``REFERENCES``.
    """
    unknown = [n for n in names or [] if n not in REFERENCES]
    if unknown:
        raise ValueError(f"unknown reference(s) {unknown}; use some of {list(REFERENCES)}")
    wanted = [n for n in REFERENCES if (names is None or n in names)
              and set(REQUIRES[n]) <= set(prep.modalities)]
    fitted = {} if fitted is None else fitted
    return [_get(n, prep, seed, fitted) for n in wanted]


def single_column_auc(prep: Prepared) -> dict[str, float]:
    """Validation ROC-AUC of each tabular column alone (binary labels), to flag near-proxies of
    the label: a categorical column scores by its train positive rate per level (unknown levels
    get the overall rate), a numeric column by its value, oriented on train. Multi-class: ``{}``.
    """
    tr, va = prep.splits["train"], prep.splits["val"]
    if len(prep.classes) != 2 or len(np.unique(va.y)) < 2:
        return {}
    out = {}
    for j, col in enumerate(prep.tabular.categorical):
        codes = np.unique(tr.cat[:, j])
        rate = {c: tr.y[tr.cat[:, j] == c].mean() for c in codes}
        score = np.array([rate.get(c, tr.y.mean()) for c in va.cat[:, j]])
        out[col] = float(roc_auc_score(va.y, score))
    for j, col in enumerate(prep.tabular.numeric):
        sign = 1.0 if roc_auc_score(tr.y, tr.num[:, j]) >= 0.5 else -1.0
        out[col] = float(roc_auc_score(va.y, sign * va.num[:, j]))
    return out
