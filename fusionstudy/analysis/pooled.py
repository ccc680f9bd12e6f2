"""Comparisons pooled over repeated random splits: the headline evidence of a study.

On one split, a paired difference in test ROC-AUC rests on one draw of train/val/test rows; a
difference near the margin flips its label from split to split even when the difference itself
is stable (Bouthillier et al., MLSys 2021). Here the unit of evidence is the split: per split k
the seed-mean test ROC-AUC of each model, the per-split paired difference ``d_k = A_k - B_k``,
and its pooled mean with the *corrected resampled t* interval of Nadeau & Bengio (2003,
"Inference for the generalization error"):

    mean(d) ± t_{K-1, 0.975} · sqrt((1/K + n_test/n_train) · var(d))

The ``n_test/n_train`` term corrects for the overlap of the K training sets, which makes the
d_k positively correlated; without it the interval is too narrow. The interval covers every
source of noise at once: the seeds (each d_k averages them), the test rows (each split has its
own) and the split. Why this and not a hierarchical bootstrap: with K ~ 10 a bootstrap over
splits under-covers (it cannot see correlation between overlapping training sets), while the
corrected t interval was built for exactly this design; its coverage on planted truths is
tested (``tests/test_pooled.py``). A study with one split (a predefined split) has no pooled
interval: its comparisons fall back to the within-split two-level bootstrap
(:mod:`fusionstudy.analysis.verdicts`), and the reports say so.

The comparator rule (an intersection–union test, Berger 1982): the fused model *helps* only if
its gain over **every** unimodal candidate — neural and classical — clears the margin; it
*hurts* if it is measurably worse than the best of them; it is *equivalent* if its difference
from the strongest candidate (the one with the smallest gain) lies within the margin. No
candidate is picked first, so no pick can decide the label.

Pure: records in, numbers and labels out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from fusionstudy.analysis.verdicts import EQUIVALENT, HELPS, HURTS, INCONCLUSIVE, rule
from fusionstudy.metrics import best_f1_threshold
from fusionstudy.records import StudyResults

POOLED_PARTS = ("part1", "part2", "reference")  # what every split trains


def split_means(res: StudyResults, metric: str = "roc_auc") -> pd.DataFrame:
    """Per (model, split): the mean over seeds of the test ``metric`` of the plainly trained
    models of Parts 1-2, the post-hoc ensembles and the references.

    Returns columns ``model, kind, modalities ("a+b"), split, n_seeds, value``, sorted.
    """
    rows = [{"model": r.model, "kind": r.kind, "modalities": "+".join(r.modalities), "split": r.split,
             "seed": r.seed, "value": r.metrics["test"][metric]}
            for r in [*res.runs, *res.resplits] if r.part in POOLED_PARTS and r.training.regime == "plain"]
    if not rows:
        return pd.DataFrame(columns=["model", "kind", "modalities", "split", "n_seeds", "value"])
    df = pd.DataFrame(rows)
    out = df.groupby(["model", "kind", "modalities", "split"], as_index=False).agg(
        n_seeds=("seed", "nunique"), value=("value", "mean"))
    return out.sort_values(["model", "split"]).reset_index(drop=True)


def train_test_ratio(res: StudyResults) -> float:
    """``n_test / n_train`` of the study's splits (the Nadeau–Bengio correction term)."""
    sizes = res.split["stats"]["split_sizes"]
    return sizes["test"] / sizes["train"]


def nb_interval(d: np.ndarray, ratio: float, level: float = 0.95) -> dict[str, float]:
    """Nadeau–Bengio corrected resampled t interval of the mean of per-split differences.

    Parameters
    ----------
    d : (K,) per-split paired differences.
    ratio : ``n_test / n_train`` of each split.
    level : two-sided coverage.

    Returns
    -------
    ``value`` (mean), ``lo``, ``hi``, ``sd`` (across splits), ``k`` (splits); ``lo``/``hi``
    are NaN when ``K < 2`` (no pooled interval on one split).
    """
    d = np.asarray(d, dtype=float)
    k = len(d)
    mean = float(d.mean()) if k else float("nan")
    if k < 2:
        return {"value": mean, "lo": float("nan"), "hi": float("nan"), "sd": float("nan"), "k": k}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * np.sqrt((1 / k + ratio) * sd ** 2)
    return {"value": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "k": k}


def pooled_difference(table: pd.DataFrame, a: str, b: str, ratio: float, margin: float) -> dict:
    """``a - b`` pooled over the splits where both were trained: :func:`nb_interval` + the rule's
    verdict + the per-split differences (``per_split``) and how many of them alone clear the margin."""
    wide = table.pivot(index="split", columns="model", values="value")
    if a not in wide or b not in wide:
        return {"value": float("nan"), "lo": float("nan"), "hi": float("nan"), "sd": float("nan"), "k": 0,
                "verdict": INCONCLUSIVE, "per_split": []}
    d = (wide[a] - wide[b]).dropna()
    out = nb_interval(d.to_numpy(), ratio)
    return {**out, "verdict": rule(out["lo"], out["hi"], margin), "per_split": d.round(6).tolist(),
            "splits_above_margin": int((d > margin).sum())}


def unimodal_candidates(table: pd.DataFrame) -> list[str]:
    """Every single-modality model trained on every split: the neural unimodal models and the
    single-modality references, sorted by name."""
    one = table[~table.modalities.str.contains("+", regex=False) & table.kind.isin(["unimodal", "reference"])]
    splits = table.split.nunique()
    counts = one.groupby("model").split.nunique()
    return sorted(counts[counts == splits].index)


def comparator_verdict(gains: list[dict], margin: float) -> dict:
    """The intersection–union rule over the gains of one fused model against every candidate:
    *helps* iff every lower bound exceeds ``margin``; else judged on the strongest candidate
    (smallest gain): *hurts* if its upper bound is below ``-margin``, *equivalent* if its whole
    interval lies within ``±margin``, else *inconclusive*."""
    if not gains or any(g["k"] < 2 for g in gains):
        return {"verdict": INCONCLUSIVE, "binding": None}
    binding = min(gains, key=lambda g: g["value"])
    if all(g["lo"] > margin for g in gains):
        return {"verdict": HELPS, "binding": binding["vs"]}
    label = rule(binding["lo"], binding["hi"], margin)
    return {"verdict": label if label in (HURTS, EQUIVALENT) else INCONCLUSIVE, "binding": binding["vs"]}


def fused_vs_unimodal(res: StudyResults, model: str, margin: float, table: pd.DataFrame | None = None) -> dict:
    """``model``'s pooled gain over every unimodal candidate and its intersection–union verdict:
    ``{"model", "gains": [{vs, value, lo, hi, sd, k, verdict, per_split, ...}], "verdict", "binding"}``."""
    table = split_means(res) if table is None else table
    ratio = train_test_ratio(res)
    gains = [{"vs": c, **pooled_difference(table, model, c, ratio, margin)} for c in unimodal_candidates(table)]
    return {"model": model, "gains": gains, **comparator_verdict(gains, margin)}


def pooled_models(res: StudyResults, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model: its test ROC-AUC pooled over splits (mean of the per-split seed means) with the
    across-split SD, min and max, and the number of splits."""
    table = split_means(res) if table is None else table
    return table.groupby(["model", "kind", "modalities"], as_index=False).agg(
        mean=("value", "mean"), sd=("value", "std"), lo=("value", "min"), hi=("value", "max"),
        splits=("split", "nunique")).sort_values("mean", ascending=False).reset_index(drop=True)


def sensitivity(table: pd.DataFrame, a: str, b: str, ratios: dict[str, float]) -> dict:
    """How the pooled interval of ``a - b`` moves under other defensible choices: the lower and
    upper bound under each correction ``ratio`` (name -> n_test/n_train-like value; 0 = the naive t
    interval) and the range of lower bounds when one split at a time is left out."""
    wide = table.pivot(index="split", columns="model", values="value")
    d = (wide[a] - wide[b]).dropna().to_numpy()
    out = {name: nb_interval(d, r) for name, r in ratios.items()}
    loo = [nb_interval(np.delete(d, i), next(iter(ratios.values())))["lo"] for i in range(len(d))] if len(d) > 2 else []
    return {"ratios": out, "loo_lo": (min(loo), max(loo)) if loo else None,
            "all_positive": bool(len(d) and (d > 0).all()), "k": len(d)}


def k_tradeoff(sd: float, ratio: float, ks=(2, 3, 5, 10, 20, 40)) -> pd.DataFrame:
    """Expected half-width of the corrected interval for K splits, given the across-split SD of a
    paired difference: ``t_{K-1} · sd · sqrt(1/K + ratio)``. The ``ratio`` floor is why more
    splits stop paying off: past K ~ 10 the half-width shrinks slowly."""
    return pd.DataFrame([{"splits": k, "half_width": float(stats.t.ppf(0.975, k - 1) * sd * np.sqrt(1 / k + ratio))}
                         for k in ks])


def decisions_at_val_threshold(res: StudyResults, model: str) -> dict[str, float]:
    """Seed means of test F1, balanced accuracy and minority-class recall of ``model`` (binary,
    main split) at the threshold that maximises F1 on its own validation predictions — the
    decision a user would deploy; 0.5 is arbitrary for a model whose scores are not calibrated
    to the costs. ``<metric>_min`` / ``<metric>_max``: the range over seeds (each seed picks its own
    threshold, which can move far for a small change in the scores). NaN for multi-class labels or
    a model without stored predictions."""
    keys = ("f1", "balanced_accuracy", "minority_recall")
    if len(res.split["classes"]) != 2:
        return {f"{k}{e}": float("nan") for k in keys for e in ("", "_min", "_max")}
    y_val, y_test = np.asarray(res.split["y_val"]), np.asarray(res.split["y_test"])
    minority = int(np.argmin(np.bincount(y_test, minlength=2)))
    out = []
    for r in res.runs:
        if r.model != model or r.training.regime != "plain" or r.run_key not in res.preds:
            continue
        p = res.preds[r.run_key]
        pred = (p.proba("test", 2)[:, 1] >= best_f1_threshold(y_val, p.proba("val", 2)[:, 1])).astype(int)
        tp = np.sum((pred == 1) & (y_test == 1))
        out.append({"f1": 2 * tp / max(1, np.sum(pred == 1) + np.sum(y_test == 1)),
                    "balanced_accuracy": np.mean([np.mean(pred[y_test == c] == c) for c in (0, 1)]),
                    "minority_recall": np.mean(pred[y_test == minority] == minority)})
    nan = float("nan")
    return {f"{k}{e}": float(f([o[k] for o in out])) if out else nan
            for k in keys for e, f in (("", np.mean), ("_min", np.min), ("_max", np.max))}
