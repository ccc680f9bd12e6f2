"""Report sections of the evidence pooled over repeated splits (:mod:`fusionstudy.analysis.pooled`):
the primary contrast with its one bold verdict, every other fused model as an estimate, the
models pooled, the split-count trade-off and when the rule was fixed. Tables out, no prose."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fusionstudy.analysis.pooled import (
    fused_vs_unimodal,
    pooled_difference,
    sensitivity,
    k_tradeoff,
    pooled_models,
    split_means,
    train_test_ratio,
    unimodal_candidates,
)
from fusionstudy.records import StudyResults
from fusionstudy.report.figures import figure_primary
from fusionstudy.report.formats import fmt_d, fmt_iv, md_table


def _gain_cells(g: dict, margin: float) -> dict:
    return {"Δ test ROC-AUC [95%, pooled]": fmt_d({**g, "margin": margin}),
            "SD across splits": "n/a" if g["sd"] != g["sd"] else f"{g['sd']:.4f}",
            "splits where Δ > margin": f"{g.get('splits_above_margin', 0)} of {g['k']}"}


def _fused(table: pd.DataFrame) -> list[str]:
    """Fused models trained on every split (neural, ensemble, classical), by pooled mean."""
    splits = table.split.nunique()
    fused = table[table.modalities.str.contains("+", regex=False)]
    counts = fused.groupby("model").split.nunique()
    order = fused.groupby("model").value.mean().sort_values(ascending=False).index
    return [m for m in order if counts[m] == splits]


def primary_facts(res: StudyResults) -> dict | None:
    """The primary contrast of a study: ``report.primary`` against every unimodal candidate, its
    intersection–union verdict, the binding candidate and gain, or ``None`` without the model."""
    rules = res.config.get("report", {})
    margin, model = rules.get("margin", 0.005), rules.get("primary", "early_concat")
    table = split_means(res)
    if model not in set(table.model) or not unimodal_candidates(table):
        return None
    out = fused_vs_unimodal(res, model, margin, table)
    binding = next(({**g, "margin": margin} for g in out["gains"] if g["vs"] == out["binding"]), None)
    sizes = res.split["stats"]["split_sizes"]
    sens = sensitivity(table, model, out["binding"], {
        "n_test/n_train (used)": train_test_ratio(res), "n_test/(n_train + n_val)": sizes["test"] / (sizes["train"] + sizes["val"]),
        "none (naive t)": 0.0}) if binding and binding["k"] > 2 else None
    return {**out, "margin": margin, "k": table.split.nunique(), "binding_gain": binding, "sensitivity": sens,
            "gains": [{**g, "margin": margin} for g in out["gains"]], "candidates": [g["vs"] for g in out["gains"]]}


def pooled_estimate(res: StudyResults, a: str, b: str) -> dict | None:
    """``a - b`` pooled over the splits (value, corrected interval, margin), or ``None`` without
    two splits of both."""
    table = split_means(res)
    if table.split.nunique() < 2 or not {a, b} <= set(table.model):
        return None
    margin = res.config["report"]["margin"]
    d = pooled_difference(table, a, b, train_test_ratio(res), margin)
    return {**d, "margin": margin} if d["k"] >= 2 else None


def pooled_best(res: StudyResults) -> dict | None:
    """The model with the highest pooled mean test ROC-AUC (mean of split means), or ``None``."""
    table = split_means(res)
    if table.split.nunique() < 2:
        return None
    top = pooled_models(res, table).iloc[0]
    return {"model": top.model, "kind": top.kind, "mean": float(top["mean"]), "splits": int(top.splits)}


def pooled_context(res: StudyResults, figdir: Path | None = None, rel=str) -> dict | None:
    """Everything the pooled section of ``experiments.md`` shows, or ``None`` when no model was
    trained on a second split (then the within-split intervals are the only ones)."""
    table = split_means(res)
    k = table.split.nunique() if len(table) else 0
    if k < 2:
        return None
    margin = res.config["report"]["margin"]
    prim = primary_facts(res)
    models = pooled_models(res, table)
    model_rows = [{"model": r.model, "kind": r.kind, "test ROC-AUC, mean of split means": f"{r.mean:.4f}",
                   "SD across splits": f"{r.sd:.4f}", "min–max": f"{r.lo:.4f}–{r.hi:.4f}", "splits": str(r.splits)}
                  for r in models.itertuples()]
    out = {"k": k, "ratio": train_test_ratio(res), "primary": prim, "models": md_table(pd.DataFrame(model_rows)),
           "seeds": res.config["study"]["seeds"], "split_seeds": res.config["study"].get("split_seeds", []),
           "rules": res.meta.get("rules")}
    if prim and figdir is not None:
        out["primary_fig"] = rel(figure_primary(prim["gains"], prim["model"], margin, figdir / "primary_contrast.png"))
    if prim:
        out["primary_table"] = md_table(pd.DataFrame([{"against": g["vs"], **_gain_cells(g, margin)}
                                                      for g in prim["gains"]]))
        b = prim["binding_gain"]
        if b and b["sd"] == b["sd"]:
            out["tradeoff"] = md_table(pd.DataFrame([{"splits K": str(r.splits), "expected half-width": f"±{r.half_width:.4f}"}
                                                     for r in k_tradeoff(b["sd"], out["ratio"]).itertuples()]))
            out["tradeoff_sd"] = b["sd"]
    rows = []
    for m in _fused(table):
        if prim and m == prim["model"]:
            continue
        res_m = fused_vs_unimodal(res, m, margin, table)
        rows.append({"fused model": m, **{f"Δ vs {g['vs']} [95%]": fmt_iv(g["value"], g["lo"], g["hi"], True, margin)
                                          for g in res_m["gains"]}})
    out["secondary"] = md_table(pd.DataFrame(rows)) if rows else None
    return out
