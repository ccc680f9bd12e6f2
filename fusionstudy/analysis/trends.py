"""Part 5 trends: how the fusion gain moves as one modality is weakened, with one label per sweep.

A sweep weakens one modality at training time at a few levels (``SWEEP_TITLES``). At each level the
*gain* is the fused model's seed-mean test ROC-AUC minus that of the stronger unimodal model
(picked on validation at that level, as ``verdicts.situation`` does), paired over seeds and test
rows. The trend is the ordinary least-squares slope of that gain on the weakening level ``x``
(:func:`weakening_x`: 0 = clean, larger = weaker). Because the slope is linear in the per-level
gains, ``slope = sum_l w_l * gain_l`` with ``w_l = (x_l - mean x) / sum (x - mean x)^2``, it is one
:func:`verdicts.combine` of AUC terms: its interval is the same two-level bootstrap (seeds drawn with
replacement, then test rows; Bouthillier et al. 2021) as every gain of the study, with the
levels paired on seed and rows. The label reads the interval of the *fitted change over the
sweep*, ``slope * (x_max - x_min)`` (ROC-AUC units, invariant to how ``x`` is scaled), see
:func:`trend_label` and docs/stability.md, "Part 5 trends".

Pure: numbers in, numbers and labels out.
"""
from __future__ import annotations

import math

import numpy as np

from fusionstudy.analysis.tables import CLEAN_LEVEL
from fusionstudy.analysis.verdicts import INCONCLUSIVE, combine, common_seeds, runs_of, term
from fusionstudy.records import StudyResults

GROWS, SHRINKS, FLAT = "grows", "shrinks", "flat"
BEYOND, WITHIN = "beyond the margin", "within the margin"
X_UNITS = {"subsample": "1 − f (share of train rows without it)", "corrupt": "r (corruption rate)",
           "truncate": "log2(max_tokens / k) (halvings of the token budget)"}


def weakening_x(kind: str, level, max_tokens: int) -> float:
    """The weakening level of a sweep point on a scale where 0 is clean and larger is weaker.

    ``subsample`` at fraction ``f``: ``1 - f``; ``corrupt`` at rate ``r``: ``r``; ``truncate`` to
    ``k`` tokens: ``log2(max_tokens / k)`` (halvings of the clean model's token budget,
    ``text.max_tokens``; the clean level ``"full"`` is 0).

    Raises
    ------
    ValueError
        For an unknown ``kind`` or a level outside its range (f, r in [0, 1]; k >= 1).
    """
    if kind == "truncate":
        k = max_tokens if str(level) == CLEAN_LEVEL["truncate"] else int(level)
        if k < 1:
            raise ValueError(f"truncate level must be >= 1 token, got {level}")
        return math.log2(max_tokens / min(k, max_tokens))
    if kind not in ("subsample", "corrupt"):
        raise ValueError(f"unknown sweep kind {kind!r}; use one of {list(CLEAN_LEVEL)}")
    v = float(level)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{kind} level must lie in [0, 1], got {level}")
    return 1.0 - v if kind == "subsample" else v


def trend_label(lo: float, hi: float, margin: float) -> tuple[str, str]:
    """Label of a gain trend from the 95% interval ``[lo, hi]`` of its fitted change over the sweep.

    Direction is tested against 0, size against the study's ``margin``:

    * ``grows`` / ``shrinks`` — the interval lies above / below 0 (the gain changes with the weakening
      level; a two-sided test of zero slope at 5%); the size is ``beyond the margin`` when it also
      lies beyond ``±margin``, ``within the margin`` when it lies inside ``±margin``, else ``""``;
    * ``flat`` — the interval holds 0 and lies within ``±margin`` (no change as large as the margin);
    * ``inconclusive`` — the interval holds 0 and reaches beyond ``±margin`` (or is undefined).

    Returns ``(label, size)``.
    """
    if lo != lo or hi != hi:
        return INCONCLUSIVE, ""
    inside = -margin <= lo and hi <= margin
    if lo > 0 or hi < 0:
        beyond = lo > margin or hi < -margin
        return (GROWS if lo > 0 else SHRINKS), BEYOND if beyond else WITHIN if inside else ""
    return (FLAT, "") if inside else (INCONCLUSIVE, "")


def _val_auc(res: StudyResults, model: str, weaken: str, seeds) -> float:
    return float(np.mean([r.metrics["val"]["roc_auc"] for r in runs_of(res, model, weaken) if r.seed in seeds]))


def gain_trend(res: StudyResults, fused: str, points: list[tuple[float, str]], uni: dict[str, str],
               weakened: str, margin: float, seeds: tuple[int, ...] | None = None) -> dict | None:
    """Slope of the fused-minus-stronger-unimodal gain over a sweep's weakening levels.

    Parameters
    ----------
    fused : the fused model.  points : ``[(x, tag), ...]`` per level, ``x`` from
        :func:`weakening_x`, ``tag`` the runs' ``Training.tag`` (``""`` = clean, the Parts 1-2 runs).
    uni : ``{modality: unimodal model}``; ``weakened`` names the modality the sweep weakens (its
        model is the one trained on the same weakened data; the other model is clean at every level).
    seeds : restrict to these seeds (e.g. Part 5's); the levels are paired on their common seeds.

    Returns
    -------
    ``None`` with fewer than two distinct levels or no common seed; else a dict: ``slope``,
    ``lo``, ``hi`` (per unit of ``x``, two-level 95% interval), ``change``, ``change_lo``,
    ``change_hi`` (the fitted change over the sweep, ``slope * (x_max - x_min)``), ``label`` and
    ``size`` (:func:`trend_label` of the change's interval), ``x``, ``gains`` (per-level seed-mean
    gains), ``strong`` (the stronger modality per level) and ``seeds``.
    """
    xs = np.array([x for x, _ in points], dtype=float)
    if len(np.unique(xs)) < 2:
        return None
    units = [(fused, t) for _, t in points] + [(uni[weakened], t) for _, t in points] + \
        [(m, "") for mod, m in uni.items() if mod != weakened]
    if any(not runs_of(res, m, t) for m, t in units):
        return None
    shared = common_seeds(res, units)
    seeds = tuple(x for x in shared if seeds is None or x in seeds)
    if not seeds:
        return None
    w = (xs - xs.mean()) / np.sum((xs - xs.mean()) ** 2)
    terms, gains, strong = [], [], []
    for wl, (_, tag) in zip(w, points):
        at = {mod: (m, tag if mod == weakened else "") for mod, m in uni.items()}
        best = max(at, key=lambda mod: _val_auc(res, *at[mod], seeds))
        f_term, s_term = term(res, fused, "test", tag, seeds), term(res, at[best][0], "test", at[best][1], seeds)
        terms += [(wl, f_term), (-wl, s_term)]
        gains.append(float(np.mean(f_term[0]) - np.mean(np.broadcast_to(s_term[0], f_term[0].shape))))
        strong.append(best)
    out = combine(terms)
    span = float(xs.max() - xs.min())
    change = {"change": out["value"] * span, "change_lo": out["lo"] * span, "change_hi": out["hi"] * span}
    return {"slope": out["value"], "lo": out["lo"], "hi": out["hi"], **change,
            **dict(zip(("label", "size"), trend_label(change["change_lo"], change["change_hi"], margin))), "margin": margin,
            "x": xs.tolist(), "gains": gains, "strong": strong, "seeds": seeds}


def sweep_trends(res: StudyResults, pts, uni: dict[str, str], margin: float) -> list[dict]:
    """:func:`gain_trend` of every fused model in every sweep of ``pts`` (``tables.imbalance_points``:
    one row per sweep, level and model, the clean level included), on Part 5's seeds.

    ``uni`` is ``{modality: plainly trained unimodal model}``. Returns one dict per (sweep, fused
    model) with ``kind``, ``modality``, ``model``, ``levels`` and the trend's fields; sweeps whose
    weakened modality has no unimodal model at some level are left out (no gain to regress).
    """
    if pts is None or len(pts) == 0 or not all(uni.get(m) for m in ("text", "tabular")):
        return []
    max_tokens = int(res.config.get("text", {}).get("max_tokens", 160))
    seeds = tuple(sorted({r.seed for r in res.runs if r.training.regime == "weakened"}))
    out = []
    for (kind, mod), p in pts.groupby(["kind", "modality"], sort=False):
        levels = list(dict.fromkeys(p.level))
        points = [(weakening_x(kind, lv, max_tokens), "" if lv == str(CLEAN_LEVEL[kind]) else f"{kind}:{mod}:{lv}")
                  for lv in levels]
        for m in dict.fromkeys(p[p.model_kind != "unimodal"].model):
            t = gain_trend(res, m, points, uni, mod, margin, seeds)
            if t is not None:
                out.append({"kind": kind, "modality": mod, "model": m, "levels": levels, **t})
    return out
