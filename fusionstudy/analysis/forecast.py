"""The before-fusion forecast: is a second modality worth fusing, predicted from unimodal models only.

The question an engineer asks *before* building a fused model is how much it will gain over the
better single modality, and whether a study will be able to call that gain "helps". The forecast
answers both from two unimodal models and the validation rows, never from test rows:

1. one classical model per modality is fit on the **train rows only**, its hyper-parameters chosen
   on train rows too (``study.forecast``: TF-IDF logistic regression for text, histogram gradient
   boosting for tabular), so nothing was selected or early-stopped on the rows that score it;
2. on the validation rows, a **cross-fitted stacker** (a logistic regression on the two unimodal
   logits and their product, fit on four fifths of the rows and applied to the fifth, five times;
   the classic stacked generalisation of Wolpert 1992 / Breiman 1996, with the product term as
   the cheapest stand-in for a cross-modal interaction) gives out-of-fold fused probabilities;
3. the **predicted gain** is the stacker's validation ROC-AUC minus the better unimodal model's,
   with a row-bootstrap standard error (one split), or the mean over splits with the
   Nadeau–Bengio interval (repeated splits, as the measured primary contrast);
4. the **predicted verdict** is the study's own rule applied to that interval, and
   ``p_helps`` is the power: the probability that a study measuring a gain with this standard
   error lands its lower bound above the margin if the true gain is the forecast,
   ``Phi((gain - margin) / se - z_{0.975})``.

It predicts the gain of *stacking the unimodal models*, a proxy for the gain of the early fusion
the study then trains; where early fusion behaves unlike a stack (e.g. it overfits a modality seen
on few rows), the forecast says so only by being wrong, which the postmortem's Q6 measures.

Torch-free and pure: stored validation probabilities in, numbers out.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import StratifiedKFold

from fusionstudy.analysis.pooled import nb_interval, train_test_ratio
from fusionstudy.analysis.verdicts import HELPS, rule
from fusionstudy.metrics import bootstrap_counts, per_seed_auc, per_seed_macro_auc
from fusionstudy.records import StudyResults

log = logging.getLogger(__name__)

STACK_FOLDS = 5  # cross-fitting folds of the stacker on the validation rows
STACK_C = 1.0  # inverse L2 strength of the stacker (3 features: the scale hardly matters)
EPS = 1e-6  # probability clip before a logit
LEVEL = 0.95  # the study's interval level (``verdicts.rule`` reads a 95% interval)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def stack_features(probas: list[np.ndarray]) -> np.ndarray:
    """Stacker inputs from the unimodal probabilities.

    Parameters
    ----------
    probas : one ``(n, n_classes)`` array per modality (rows aligned).

    Returns
    -------
    Binary: ``(n, m + 1)``, the m positive-class logits and the product of the first two
    (an interaction term). Multi-class: ``(n, m * n_classes)``, the log-probabilities side by side.
    """
    if probas[0].shape[1] == 2:
        z = [_logit(p[:, 1]) for p in probas]
        return np.column_stack([*z, z[0] * z[1]]) if len(z) > 1 else np.column_stack(z)
    return np.hstack([np.log(np.clip(p, EPS, 1.0)) for p in probas])


def cross_fit_stack(x: np.ndarray, y: np.ndarray, folds: int = STACK_FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities ``(n, n_classes)`` of a logistic-regression stacker on ``x``
    ``(n, d)``: each row is scored by a stacker fit on the other folds (stratified, ``seed``).

    Raises
    ------
    ValueError
        If a class has fewer than ``folds`` rows (the folds cannot all hold it).
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < folds:
        raise ValueError(f"the forecast's stacker needs >= {folds} validation rows of every class; "
                         f"class {classes[counts.argmin()]!r} has {counts.min()}: use a larger split.val")
    out = np.zeros((len(y), len(classes)))
    for fit, score in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        m = LogisticRegression(C=STACK_C, max_iter=2000).fit(x[fit], y[fit])
        out[score] = m.predict_proba(x[score])
    return out


def _aucs(y: np.ndarray, probas: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC ``(observed (k,), replicates (k, n_boot))`` of ``k`` probability arrays ``(k, n, C)``."""
    if probas.shape[2] == 2:
        return per_seed_auc(y, probas[:, :, 1], counts)
    return per_seed_macro_auc(y, probas, counts)


def forecast_gain(y: np.ndarray, probas: dict[str, np.ndarray], n_boot: int = 2000, seed: int = 0) -> dict:
    """The forecast on one split: the cross-fitted stacker's validation ROC-AUC minus the better
    unimodal model's (macro one-vs-rest for multi-class).

    Parameters
    ----------
    y : (n_val,) class indices.  probas : modality -> ``(n_val, n_classes)`` unimodal
    probabilities (two modalities).  n_boot : row resamples of the standard error.

    Returns
    -------
    ``{"gain", "se", "auc": {modality: ..., "stack": ...}, "better", "n"}``; ``se`` is the
    standard deviation of the paired gain over row resamples (the stacker's fit is not redone:
    a resample moves rows, not the stacker).
    """
    mods = sorted(probas)
    p_stack = cross_fit_stack(stack_features([probas[m] for m in mods]), y, seed=seed)
    p_all = np.stack([probas[m] for m in mods] + [p_stack])
    obs, reps = _aucs(y, p_all, bootstrap_counts(len(y), n_boot, seed=seed))
    better = int(np.argmax(obs[:-1]))
    d = reps[-1] - reps[better]
    return {"gain": float(obs[-1] - obs[better]), "se": float(np.nanstd(d, ddof=1)), "n": len(y),
            "auc": {**{m: float(a) for m, a in zip(mods, obs[:-1])}, "stack": float(obs[-1])},
            "better": mods[better]}


def p_helps(gain: float, se: float, margin: float, level: float = LEVEL) -> float:
    """Power: the probability that a measured gain with standard error ``se`` has its ``level``
    interval's lower bound above ``margin`` when the true gain is ``gain``:
    ``Phi((gain - margin) / se - z_{(1 + level) / 2})``; with ``se == 0``, 1 if ``gain > margin`` else 0;
    NaN when ``se`` is NaN."""
    if se == 0:  # no resampling spread (e.g. a modality that separates the classes): the gain is what it is
        return float(gain > margin)
    if not se > 0:
        return float("nan")
    return float(stats.norm.cdf((gain - margin) / se - stats.norm.ppf(0.5 + level / 2)))


def pooled_forecast(per_split: list[dict], ratio: float, margin: float) -> dict:
    """Combine :func:`forecast_gain` results of one situation over its splits.

    One split: ``gain +/- z se`` (row bootstrap). ``K >= 2`` splits: the mean gain with the
    Nadeau–Bengio corrected interval (``ratio`` = n_test / n_train), the measured primary
    contrast's own interval, and ``se`` = its half-width / t quantile.

    Returns ``{"gain", "lo", "hi", "se", "k", "verdict", "p_helps", "helps"}``; ``helps`` is the
    forecast's label, ``verdict == "helps"`` (equivalently ``p_helps > 0.5``).
    """
    g = np.array([r["gain"] for r in per_split], dtype=float)
    k = len(g)
    if k == 0:
        raise ValueError("no forecast to pool: run the study with study.forecast = true")
    if k == 1:
        se = per_split[0]["se"]
        z = stats.norm.ppf(0.5 + LEVEL / 2)
        lo, hi, gain = g[0] - z * se, g[0] + z * se, float(g[0])
    else:
        iv = nb_interval(g, ratio, LEVEL)
        gain, lo, hi = iv["value"], iv["lo"], iv["hi"]
        se = (hi - lo) / 2 / float(stats.t.ppf(0.5 + LEVEL / 2, k - 1))
    verdict = rule(lo, hi, margin)
    return {"gain": gain, "lo": float(lo), "hi": float(hi), "se": float(se), "k": k, "verdict": verdict,
            "p_helps": p_helps(gain, se, margin), "helps": verdict == HELPS}


def _forecasts(records: list, n_boot: int) -> dict[str, list[dict]]:
    """:func:`forecast_gain` of every forecast record, grouped by weakening tag (one per split)."""
    out: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: (r.weaken, r.split)):
        probas = {m: np.asarray(p, dtype=float) for m, p in r.proba.items()}
        try:
            out.setdefault(r.weaken, []).append({"split": r.split, **forecast_gain(np.asarray(r.y), probas, n_boot)})
        except ValueError as err:  # e.g. a class with too few validation rows to cross-fit
            log.warning(f"forecast {r.key} skipped: {err}")
    return out


def forecasts_by_situation(res: StudyResults) -> dict[str, list[dict]]:
    """:func:`_forecasts` of ``res``'s stored forecast records (``""`` = clean), memoised in ``res.cache``."""
    if "forecast" not in res.cache:
        res.cache["forecast"] = _forecasts(res.forecasts, int(res.config.get("study", {}).get("bootstrap", 2000)))
    return res.cache["forecast"]


def situation_forecast(res: StudyResults, weaken: str, margin: float) -> dict | None:
    """The pooled forecast (:func:`pooled_forecast`) of one situation of ``res`` (``weaken`` tag,
    ``""`` = clean, pooled over every split that has one); ``None`` if none was stored."""
    rows = forecasts_by_situation(res).get(weaken)
    return pooled_forecast(rows, train_test_ratio(res), margin) if rows else None


def score_forecasts(pred_gain, meas_gain, pred_helps, meas_helps) -> dict:
    """How well forecasts predicted measurements over ``n`` situations.

    Returns ``hits`` (labels equal, helps or not), ``rate``, ``kappa`` (Cohen's; NaN when
    either side is constant), ``r`` (Pearson correlation of the gains; NaN for fewer than 3),
    ``mae`` (mean absolute gain error), ``bias`` (mean forecast − measured), and the constant
    predictor's hits (``constant``, saying ``constant_says``, the more frequent measured label).
    """
    pg, mg = np.asarray(pred_gain, dtype=float), np.asarray(meas_gain, dtype=float)
    ph, mh = np.asarray(pred_helps, dtype=bool), np.asarray(meas_helps, dtype=bool)
    n = len(pg)
    kappa = float(cohen_kappa_score(mh, ph)) if len(set(ph) | set(mh)) > 1 and len(set(ph)) > 1 and len(set(mh)) > 1 \
        else float("nan")
    ok = ~np.isnan(pg) & ~np.isnan(mg)
    r = float(np.corrcoef(pg[ok], mg[ok])[0, 1]) if ok.sum() >= 3 and pg[ok].std() > 0 and mg[ok].std() > 0 else float("nan")
    helps = int(mh.sum())
    return {"n": n, "hits": int((ph == mh).sum()), "rate": float((ph == mh).mean()) if n else float("nan"),
            "kappa": kappa, "r": r, "mae": float(np.abs(pg - mg)[ok].mean()) if ok.any() else float("nan"),
            "bias": float((pg - mg)[ok].mean()) if ok.any() else float("nan"),
            "pred_help": int(ph.sum()), "meas_help": helps, "constant": max(helps, n - helps),
            "constant_says": "helps" if helps > n - helps else "does not help"}


def resampled_kappa_r(pred_gain, meas_gain, pred_helps, meas_helps, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``kappa`` and ``r`` of :func:`score_forecasts` on many resamples of the situations at once.

    Parameters
    ----------
    pred_gain, meas_gain : (n,) forecast and measured gains.  pred_helps, meas_helps : (n,) labels.
    weights : (B, n) non-negative integer row counts; resample ``b`` holds row ``i`` ``weights[b, i]``
        times (e.g. a cluster bootstrap's rows).

    Returns ``(kappa (B,), r (B,))``: Cohen's kappa of the two labels (Cohen 1960; the arithmetic of
    ``sklearn.metrics.cohen_kappa_score`` on the 2 x 2 confusion matrix of weighted counts, so equal
    to it on the repeated rows) and the Pearson correlation of the gains over the rows whose gains
    are both finite (as ``np.corrcoef``, within rounding); NaN where :func:`score_forecasts` gives
    NaN (a constant label; fewer than 3 finite rows or a constant gain).
    """
    w = np.asarray(weights)
    ph, mh = np.asarray(pred_helps, dtype=bool), np.asarray(meas_helps, dtype=bool)
    cell = lambda a, b: w[:, (mh == a) & (ph == b)].sum(axis=1)  # (B,) count of a 2 x 2 cell
    c00, c01, c10, c11 = cell(False, False), cell(False, True), cell(True, False), cell(True, True)
    pred1, meas1 = c01 + c11, c10 + c11  # column (pred) and row (measured) totals of label True
    pred0, meas0 = c00 + c10, c00 + c01
    total = pred0 + pred1
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = pred0 * meas1 / total + pred1 * meas0 / total  # the off-diagonal of outer(pred, meas) / n
        kappa = np.where((pred0 > 0) & (pred1 > 0) & (meas0 > 0) & (meas1 > 0), 1 - (c01 + c10) / expected, np.nan)
    pg, mg = np.asarray(pred_gain, dtype=float), np.asarray(meas_gain, dtype=float)
    ok = ~np.isnan(pg) & ~np.isnan(mg)
    wo, x, y = w[:, ok].astype(float), pg[ok], mg[ok]
    n = wo.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx, dy = x - (wo @ x / n)[:, None], y - (wo @ y / n)[:, None]  # (B, n_ok) deviations from each resample's mean
        sxx, syy, sxy = (wo * dx * dx).sum(axis=1), (wo * dy * dy).sum(axis=1), (wo * dx * dy).sum(axis=1)
        r = np.clip(sxy / np.sqrt(sxx * syy), -1, 1)
    spread = lambda v: np.where(wo > 0, v, -np.inf).max(axis=1) > np.where(wo > 0, v, np.inf).min(axis=1)
    return kappa, np.where((n >= 3) & spread(x) & spread(y), r, np.nan)


def forecast_frame(records: list, ratio: float, margin: float, n_boot: int = 2000) -> pd.DataFrame:
    """One row per situation of stored forecast records (:class:`~fusionstudy.records.ForecastRecord`):
    ``situation`` (``clean`` or ``kind:modality:level``), ``splits``, ``auc_<modality>`` and
    ``auc_stack`` (means over splits), ``better``, ``gain``, ``lo``, ``hi``, ``verdict``, ``p_helps``."""
    rows = []
    def order(tag: str):  # clean first, then kind, modality and level as numbers
        kind, _, rest = tag.partition(":")
        mod, _, level = rest.partition(":")
        return (bool(tag), kind, mod, float(level) if level else 0.0)
    for tag, per_split in sorted(_forecasts(records, n_boot).items(), key=lambda kv: order(kv[0])):
        f = pooled_forecast(per_split, ratio, margin)
        aucs = pd.DataFrame([r["auc"] for r in per_split]).mean()
        rows.append({"situation": tag or "clean", "splits": f["k"], **{f"auc_{k}": float(v) for k, v in aucs.items()},
                     "better": per_split[0]["better"], **{k: f[k] for k in ("gain", "lo", "hi", "verdict", "p_helps")}})
    return pd.DataFrame(rows)
