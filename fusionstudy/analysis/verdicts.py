"""Intervals that cover every source of noise, and the one decision rule every verdict uses.

A model's test ROC-AUC varies with its training seed and with which rows happen to be in the test
set. Every interval here is a *two-level* bootstrap (seeds drawn with replacement, then test rows
drawn with replacement; ``metrics.seed_draws`` and ``metrics.bootstrap_counts``; Bouthillier et al.
2021), and every difference is *paired*: both sides see the same resampled rows and, when they
share seeds, the same seed draws. A deterministic reference has one "seed", so its interval is the
test-row interval alone. The rule, fixed in ``[report]`` before any result is seen
(``config.ReportConfig``): a difference *helps* when its 95% interval lies above ``+margin``,
*hurts* when it lies below ``-margin``, is *equivalent* when the whole interval lies within
``±margin`` (an equivalence test: no difference as large as the margin), and is *inconclusive*
otherwise (the data cannot tell whether it exceeds the margin).

Pure: numbers in, numbers and verdict labels out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fusionstudy.metrics import bootstrap_counts, interval, per_seed_auc, per_seed_macro_auc, seed_average, seed_draws
from fusionstudy.records import StudyResults

HELPS, HURTS, EQUIVALENT, INCONCLUSIVE = "helps", "hurts", "equivalent", "inconclusive"


def rule(lo: float, hi: float, margin: float) -> str:
    """The decision rule on a 95% interval ``[lo, hi]`` of a difference: ``helps`` if
    ``lo > margin``, ``hurts`` if ``hi < -margin``, ``equivalent`` if ``-margin <= lo`` and
    ``hi <= margin``, else ``inconclusive`` (also when the interval is undefined)."""
    if lo != lo or hi != hi:
        return INCONCLUSIVE
    if lo > margin:
        return HELPS
    if hi < -margin:
        return HURTS
    return EQUIVALENT if -margin <= lo and hi <= margin else INCONCLUSIVE


def runs_of(res: StudyResults, model: str, weaken: str = "") -> list:
    """The runs of ``model`` (weakened as ``weaken``, a ``Training.tag``; ``""`` = not weakened), by seed."""
    return sorted((r for r in res.runs if r.model == model and r.training.tag == weaken), key=lambda r: r.seed)


def seeds_of(res: StudyResults, model: str, weaken: str = "") -> list[int]:
    return [r.seed for r in runs_of(res, model, weaken)]


def _labels(res: StudyResults, split: str) -> np.ndarray:
    return np.asarray(res.split[f"y_{split}"])


def _split_of(key: str) -> str:
    return "val" if key == "val" else "test"


def probas(res: StudyResults, model: str, key: str = "test", weaken: str = "", seeds=None) -> np.ndarray:
    """``(n_seeds, n, n_classes)`` probabilities of ``model`` on ``key`` (``val``, ``test`` or a
    stored perturbation such as ``remove:text``), for ``seeds`` (default: all stored)."""
    n_cls = len(res.split["classes"])
    rs = [r for r in runs_of(res, model, weaken) if seeds is None or r.seed in seeds]
    return np.stack([res.preds[r.run_key].proba(key, n_cls) for r in rs])


def _per_seed(res: StudyResults, name: tuple, p, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Observed ``(k,)`` and replicate ``(k, n_boot)`` ROC-AUC per seed of probabilities ``p``
    ``(k, n, n_classes)`` (or a function returning them, called only when not memoised) on the
    fixed row resamples of ``split`` (memoised under ``name``)."""
    cache = res.cache.setdefault("per_seed", {})
    if name not in cache:
        p = p() if callable(p) else p
        y, counts = _labels(res, split), _counts(res, split)
        if p.shape[2] == 2:
            cache[name] = per_seed_auc(y, p[:, :, 1], counts)
        else:  # multi-class: macro one-vs-rest
            cache[name] = per_seed_macro_auc(y, p, counts)
    return cache[name]


def _counts(res: StudyResults, split: str) -> np.ndarray:
    """The one fixed set of ``study.bootstrap`` row resamples of ``split`` (memoised)."""
    if ("counts", split) not in res.cache:
        res.cache[("counts", split)] = bootstrap_counts(len(_labels(res, split)), res.config["study"]["bootstrap"], seed=0)
    return res.cache[("counts", split)]


def term(res: StudyResults, model: str, key: str = "test", weaken: str = "", seeds=None):
    """One ``(observed (k,), replicates (k, n_boot), seeds)`` term of a combination."""
    s = tuple(x for x in seeds_of(res, model, weaken) if seeds is None or x in seeds)
    one = [_per_seed(res, (model, key, weaken, x), lambda x=x: probas(res, model, key, weaken, (x,)), _split_of(key))
           for x in s]
    return np.concatenate([o for o, _ in one]), np.concatenate([r for _, r in one]), s


def combine(terms: list[tuple[float, tuple]]) -> dict[str, float]:
    """Seed mean of ``sum_j coef_j * AUC_j`` with its two-level 95% interval.

    ``terms`` are ``(coef, term)`` pairs (see :func:`term`). Terms with several seeds must share
    them (seed ``i`` paired with seed ``i``: one seed draw for all); a one-seed term (a
    deterministic reference) enters every seed alike. Rows are resampled alike for every term.
    """
    ks = {len(t[2]) for _, t in terms if len(t[2]) > 1}
    assert len(ks) <= 1, f"terms with different seed counts: {[t[2] for _, t in terms]}"
    k = ks.pop() if ks else 1
    obs = sum(c * np.broadcast_to(t[0], (k,)) for c, t in terms)
    reps = sum(c * np.broadcast_to(t[1], (k, t[1].shape[1])) for c, t in terms)
    draws = seed_draws(k, reps.shape[1], seed=0)
    value = float(np.mean(obs))
    lo, hi = interval(value, seed_average(np.asarray(reps), draws))
    return {"value": value, "lo": lo, "hi": hi, "seeds": k}


def value(res: StudyResults, model: str, key: str = "test", weaken: str = "") -> dict[str, float]:
    """Seed-mean ROC-AUC of one model on ``key`` with its two-level interval."""
    return combine([(1.0, term(res, model, key, weaken))])


def common_seeds(res: StudyResults, units: list[tuple[str, str]]) -> tuple[int, ...]:
    """Seeds every multi-seed ``(model, weaken)`` unit has; with only one-seed units, the seeds
    they share (or the first unit's: a one-seed reference enters every seed alike)."""
    sets = [set(seeds_of(res, m, w)) for m, w in units]
    multi = [x for x in sets if len(x) > 1]
    common = set.intersection(*(multi or sets))
    return tuple(sorted(common or sets[0]))


def difference(res: StudyResults, a: tuple, b: tuple, margin: float) -> dict:
    """Paired ``a - b`` of two ``(model, key, weaken)`` units on their common seeds, its two-level
    interval and the rule's verdict."""
    seeds = common_seeds(res, [(a[0], a[2]), (b[0], b[2])])
    out = combine([(1.0, term(res, *a, seeds)), (-1.0, term(res, *b, seeds))])
    return {**out, "verdict": rule(out["lo"], out["hi"], margin), "margin": margin}


def with_intervals(res: StudyResults, s: pd.DataFrame) -> pd.DataFrame:
    """The summary with ``test_roc_auc_lo`` / ``test_roc_auc_hi``: the two-level 95% interval of
    each (not weakened) model's seed-mean test ROC-AUC (seeds and test rows; rows only for a
    one-seed reference)."""
    cs = [combine([(1.0, term(res, m))]) for m in s.model]
    return s.assign(test_roc_auc_lo=[c["lo"] for c in cs], test_roc_auc_hi=[c["hi"] for c in cs])


def shapley_intervals(res: StudyResults, model: str, weaken: str = "") -> dict[str, dict]:
    """Two-player Shapley values of ROC-AUC with removal = marginalisation (v(∅) = 0.5, the score
    of a constant), each with its two-level interval: ``phi_text = ((v_text - 0.5) + (v_full -
    v_tab)) / 2`` where ``v_text`` is the score with tabular removed, and vice versa."""
    full, no_tab, no_text = (term(res, model, k, weaken) for k in ("test", "remove:tabular", "remove:text"))
    const = (np.full(1, 0.5), np.full((1, full[1].shape[1]), 0.5), ())  # the constant score's ROC-AUC
    return {"text": combine([(0.5, no_tab), (-0.5, const), (0.5, full), (-0.5, no_text)]),
            "tabular": combine([(0.5, no_text), (-0.5, const), (0.5, full), (-0.5, no_tab)])}


def pick_on_val(s: pd.DataFrame) -> str | None:
    """The model of summary rows ``s`` with the highest mean *validation* ROC-AUC (never test)."""
    return None if s.empty else str(s.sort_values("val_roc_auc_mean", ascending=False).model.iloc[0])


def baselines(s: pd.DataFrame) -> dict[str, str | None]:
    """The strongest simple baselines, each picked on validation: ``unimodal`` among every plainly
    trained single-modality model *and* single-modality reference; ``classical`` among the
    classical fusions (references over several modalities)."""
    one = ~s.modalities.str.contains(r"\+", regex=True)
    uni = s[one & ((s.kind == "reference") | ((s.kind == "unimodal") & (s.regime == "plain")))]
    return {"unimodal": pick_on_val(uni), "classical": pick_on_val(s[(s.kind == "reference") & ~one])}


def gains_table(res: StudyResults, s: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Every fused model — neural fusions, ensembles and classical fusions — against the best
    unimodal model and the best classical fusion (both picked on validation): paired difference
    in test ROC-AUC, its two-level interval and the rule's verdict."""
    base = baselines(s)
    fused = s[s.modalities.str.contains(r"\+", regex=True) & (s.regime != "weakened")]
    rows = []
    for m in fused.model:
        row = {"model": m, "kind": fused[fused.model == m].kind.iloc[0]}
        for name, ref in base.items():
            d = difference(res, (m, "test", ""), (ref, "test", ""), margin) if ref and ref != m else None
            row.update({f"vs_{name}": ref, f"{name}_diff": d["value"] if d else np.nan,
                        f"{name}_lo": d["lo"] if d else np.nan, f"{name}_hi": d["hi"] if d else np.nan,
                        f"{name}_verdict": d["verdict"] if d else ""})
        rows.append(row)
    return pd.DataFrame(rows)


REMOVALS = ("remove", "remove_conditional")  # interventional, conditional (stored predictions' keys)


def removal_table(res: StudyResults, s: pd.DataFrame, fused: list[str], margin: float) -> pd.DataFrame:
    """Per fused model, the three meanings of "without modality m", each with its two-level
    interval: *interventional* (``remove:m``, m from random train rows), *conditional*
    (``remove_conditional:m``, m from the train rows that resemble the kept modality: m unknown)
    and *retrained* (the unimodal model of the other modality, same split). ``vs_<other>`` is the
    conditional removal minus the retrained model (paired over test rows; the unimodal model's
    seeds pair with the fused model's), with the rule's verdict: *hurts* = with m unknown, the
    fused model is worse off than a model built without m. Models whose records predate the
    conditional removal compare the interventional one (``vs_<other>["meaning"]``)."""
    rows = []
    uni = {m: s[(s.kind == "unimodal") & (s.regime == "plain") & (s.modalities == m)].model for m in ("text", "tabular")}
    for f in fused:
        keys = [f"{r}:{m}" for r in REMOVALS for m in ("text", "tabular")]
        stored = set(res.preds[runs_of(res, f)[0].run_key].perturbed) if runs_of(res, f) else set()
        row = {"model": f, "test": value(res, f), **{k: value(res, f, k) for k in keys if k in stored}}
        for removed, other in (("text", "tabular"), ("tabular", "text")):
            meaning = "remove_conditional" if f"remove_conditional:{removed}" in stored else "remove"
            if len(uni[other]):
                row[f"retrained:{removed}"] = value(res, uni[other].iloc[0])
                row[f"vs_{other}"] = {**difference(res, (f, f"{meaning}:{removed}", ""), (uni[other].iloc[0], "test", ""),
                                                   margin), "other": uni[other].iloc[0], "meaning": meaning}
        rows.append(row)
    return pd.DataFrame(rows)


def _val_auc(res: StudyResults, model: str, weaken: str, seeds) -> float:
    return float(np.mean([r.metrics["val"]["roc_auc"] for r in runs_of(res, model, weaken) if r.seed in seeds]))


def situation(res: StudyResults, fused: str, uni: dict[str, tuple[str, str]], weaken: str, margin: float,
              seeds: tuple[int, ...] | None = None) -> dict:
    """One measured situation: fused model ``fused`` (weakened as ``weaken``) against the unimodal
    models ``uni = {modality: (model, weaken)}`` on their common seeds.

    Returns the stronger and weaker modality (picked on validation), the fused model's paired
    gain over the stronger unimodal model (*helps* = it adapts), *over-relies* (with the strong
    modality unknown — conditional removal — the fused model is measurably below the weak
    modality's own model: rule *hurts*) and *collapses* (removing the weak modality costs measurably less than the margin:
    the interval of clean minus weak-removed lies below ``margin``), each with its interval.
    """
    common = common_seeds(res, [(fused, weaken)] + list(uni.values()))
    seeds = tuple(x for x in common if seeds is None or x in seeds)
    val = {m: _val_auc(res, *u, seeds) for m, u in uni.items()}
    strong = max(val, key=val.get)
    weak = min(val, key=val.get)
    gain = difference_on(res, (fused, "test", weaken), (*uni[strong][:1], "test", uni[strong][1]), seeds, margin)
    # over-reliance: with the strong modality *unknown* (conditional removal, when stored) the fused
    # model is measurably below the weak modality's own model; interventional removal would also
    # fire when the modalities are merely correlated (redundant), where nothing over-relies
    runs = runs_of(res, fused, weaken)
    cond = bool(runs) and f"remove_conditional:{strong}" in res.preds[runs[0].run_key].perturbed
    rely = difference_on(res, (fused, f"{'remove_conditional' if cond else 'remove'}:{strong}", weaken),
                         (uni[weak][0], "test", uni[weak][1]), seeds, margin)
    use = difference_on(res, (fused, "test", weaken), (fused, f"remove:{weak}", weaken), seeds, margin)
    return {"seeds": seeds, "strong": strong, "weak": weak, "val": val, "gain": gain, "rely": rely, "use": use,
            "adapts": gain["verdict"] == HELPS, "over_relies": rely["verdict"] == HURTS,
            "collapses": use["hi"] < margin}


def difference_on(res: StudyResults, a: tuple, b: tuple, seeds, margin: float) -> dict:
    """:func:`difference` on the given seeds."""
    out = combine([(1.0, term(res, *a, seeds)), (-1.0, term(res, *b, seeds))])
    return {**out, "verdict": rule(out["lo"], out["hi"], margin), "margin": margin}


def subset_interval(res: StudyResults, model: str, rows: np.ndarray) -> dict[str, float]:
    """Seed-mean test ROC-AUC of ``model`` on the test rows ``rows`` alone, with its two-level
    interval (the subset's own row resamples)."""
    s = tuple(seeds_of(res, model))
    p = probas(res, model, "test", "", s)[:, rows]
    y = _labels(res, "test")[rows]
    name = ("subset", model, tuple(rows[:3]), len(rows))
    cache = res.cache.setdefault("per_seed", {})
    if name not in cache:
        counts = bootstrap_counts(len(y), res.config["study"]["bootstrap"], seed=0)  # the subset's own rows
        cache[name] = per_seed_auc(y, p[:, :, 1], counts) if p.shape[2] == 2 and len(np.unique(y)) == 2 else \
            (np.full(len(s), np.nan), np.full((len(s), len(counts)), np.nan))  # undefined: one class or multi-class
    obs, reps = cache[name]
    return combine([(1.0, (obs, reps, s))])
