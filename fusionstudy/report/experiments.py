"""Rendering: analysis tables -> Markdown through Jinja2 templates (``templates/*.j2``).

Python here only selects rows, formats table cells and builds the template context; every
sentence lives in a template, and a sentence that states a fact about the data is rendered only
when the analysis computed that fact. This file holds the environment, the shared cell formats
and Parts 1, 2 and 4; ``report.robustness`` holds Parts 3 and 5.
"""
from __future__ import annotations

import os
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from fusionstudy.analysis.tables import (
    baseline_ratios,
    best_unimodal,
    disagreement,
    fusion_weight_stats,
    part_table,
    plain,
    scaling_slopes,
    summarize,
    unimodal,
)
from fusionstudy.analysis.verdicts import (
    EQUIVALENT,
    HELPS,
    HURTS,
    INCONCLUSIVE,
    difference,
    gains_table,
    with_intervals,
)
from fusionstudy.config import ReportConfig
from fusionstudy.records import StudyResults
from fusionstudy.report.figures import figure_fusion_weights, figure_scaling, figure_val_curves
from fusionstudy.report.formats import bench_cells, fmt_ci, fmt_d, fmt_iv, fmt_num, md_table
from fusionstudy.report.formats import fmt_int as _int
from fusionstudy.report.interaction import interaction_context, remedies_context
from fusionstudy.report.robustness import part3_context, part5_context
from fusionstudy.report.pooled import pooled_context

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> jinja2.Environment:
    """The Jinja2 environment of every report: strict (an unknown name is an error) and with the
    number formats the reports use as filters."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(
        n=lambda v: f"{v:,}", f3=lambda v: f"{v:.3f}", f4=lambda v: f"{v:.4f}", s4=lambda v: f"{v:+.4f}",
        pct=lambda v: f"{100 * v:.1f}", count=_int, names=lambda ms: ", ".join(f"`{m}`" for m in ms) or "none",
        iv=lambda r: fmt_iv(r.test_roc_auc_mean, r.test_roc_auc_lo, r.test_roc_auc_hi),
        diff=lambda d: fmt_d(d), near=near_call)
    return env


NEAR = 0.001  # a decided verdict whose interval bound is closer than this to the margin is flagged


def near_call(d: dict) -> str:
    """`` — a near call: ...`` when the bound that decides ``d``'s verdict (a :mod:`verdicts`
    difference with its ``margin``) lies within :data:`NEAR` of the margin; else ``""``."""
    m, lo, hi, v = d.get("margin"), d["lo"], d["hi"], d["verdict"]
    gaps = {HELPS: [("lower", lo, lo - m)], HURTS: [("upper", hi, -m - hi)],
            EQUIVALENT: [("lower", lo, lo + m), ("upper", hi, m - hi)]}.get(v, []) if m is not None else []
    if not gaps:
        return ""
    which, bound, gap = min(gaps, key=lambda g: g[2])
    return (f" — a near call: the {which} bound, {bound:+.5f}, lies only {gap:.5f} from the margin (±{m}) on the "
            f"side that decides the verdict" if gap < NEAR else "")


def rules(res: StudyResults) -> dict:
    """The ``[report]`` decision rules the study was run with (defaults for records that predate them)."""
    return {**ReportConfig().__dict__, **res.config.get("report", {})}


def _rank_table(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"model": r.model, "kind": r.kind, "seeds": str(r.seeds),
                          "test ROC-AUC [95% interval]": fmt_iv(r.test_roc_auc_mean, r.test_roc_auc_lo, r.test_roc_auc_hi),
                          "seed std": "n/a" if r.seeds < 2 else f"{r.test_roc_auc_std:.4f}",
                          "val ROC-AUC": f"{r.val_roc_auc_mean:.4f}", "test log loss": f"{r.test_log_loss_mean:.4f}",
                          "test ECE": f"{r.test_ece_mean:.4f}"} for r in s.itertuples()])


def _decision_table(s: pd.DataFrame) -> pd.DataFrame:
    f = lambda v: "n/a" if v != v else f"{v:.4f}"  # noqa: E731
    return pd.DataFrame([{"model": r.model, "F1 @ 0.5": f(r.test_f1_mean), "F1 @ val threshold": f(r.test_f1_val_threshold_mean),
                          "balanced accuracy": f(r.test_balanced_accuracy_mean),
                          "minority recall": f(r.test_minority_recall_mean), "accuracy": f(r.test_accuracy_mean),
                          "PR-AUC": f(r.test_pr_auc_mean)} for r in s.itertuples()])


def _cost_table(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"model": r.model, "text encoder": _int(r.params_enc_text),
                          "tabular encoder": _int(r.params_enc_tabular), "fusion": _int(r.params_fusion),
                          "head": _int(r.params_head), "total": _int(r.params_total),
                          "train s (mean)": f"{r.train_seconds_mean:.1f}",
                          "samples/s": "—" if r.samples_per_s_mean != r.samples_per_s_mean else f"{r.samples_per_s_mean:,.0f}"}
                         for r in s.itertuples()])


def _stability_table(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"model": r.model, "test ROC-AUC seed std": f"{r.test_roc_auc_std:.4f}",
                          "range (max-min)": f"{r.test_roc_auc_range:.4f}",
                          "epochs to best (mean, min-max)": f"{r.epochs_to_best_mean:.1f} ({r.epochs_to_best_min}-{r.epochs_to_best_max})",
                          "train-val loss gap at best": f"{r.train_val_gap_mean:.4f}",
                          "val-loss roughness": fmt_num(r.val_loss_roughness_mean), "diverged runs": str(r.diverged)}
                         for r in s[s.kind.isin(["unimodal", "fusion"])].itertuples()])


def modalities_context(res: StudyResults, s: pd.DataFrame, rl: dict) -> dict | None:
    """Unimodal scores, their disagreement and whether one modality clearly dominates (the paired
    interval of strong minus weak lies above ``report.dominance_gap``)."""
    t, b = unimodal(s, "text"), unimodal(s, "tabular")
    if t.empty or b.empty:
        return None
    t, b = t.iloc[0], b.iloc[0]
    strong, weak = (t, b) if best_unimodal(s) == t.model else (b, t)
    gap = difference(res, (strong.model, "test", ""), (weak.model, "test", ""), rl["margin"])
    return {"text": t, "tabular": b, "d": disagreement(res, s), "strong": strong.modalities, "gap": gap,
            "clear": bool(gap["lo"] > rl["dominance_gap"])}


def gains_context(res: StudyResults, s: pd.DataFrame, margin: float) -> dict | None:
    """Every fused model against the best unimodal model and the best classical fusion."""
    g = gains_table(res, s, margin)
    if g.empty:
        return None
    rows = [{"model": r.model, "kind": r.kind,
             f"Δ vs {r.vs_unimodal}": fmt_iv(r.unimodal_diff, r.unimodal_lo, r.unimodal_hi, True, margin),
             "verdict": r.unimodal_verdict or "—",
             **({f"Δ vs {r.vs_classical}": fmt_iv(r.classical_diff, r.classical_lo, r.classical_hi, True, margin),
                 "verdict ": r.classical_verdict or "(itself)"} if r.vs_classical else {})}
            for r in g.itertuples()]
    neural = g[g.kind != "reference"]
    return {"table": md_table(pd.DataFrame(rows)), "unimodal": g.vs_unimodal.iloc[0], "classical": g.vs_classical.iloc[0],
            "neural_help": list(neural[neural.unimodal_verdict == HELPS].model),
            "by_verdict": {v: list(neural[neural.unimodal_verdict == v].model) for v in (HELPS, EQUIVALENT, INCONCLUSIVE, HURTS)},
            "beat_classical": list(neural[neural.classical_verdict == HELPS].model),
            "lose_classical": list(neural[neural.classical_verdict == HURTS].model),
            "vs_classical": {v: list(neural[neural.classical_verdict == v].model) for v in (EQUIVALENT, INCONCLUSIVE)}}


def part4_context(res: StudyResults, s: pd.DataFrame, margin: float, figdir: Path, rel) -> dict | None:
    """Fusion variants vs ``early_concat``: metric, parameters, time, stability, paired gain,
    parameter efficiency, fusion weights and parameter scaling."""
    variants = list(s[(s.part == "part4") & (s.kind == "fusion")].model)
    simple = list(s[(s.part == "part2") & (s.kind == "fusion")].model)
    if not variants or "early_concat" not in simple:
        return None
    best_uni = s[s.model == best_unimodal(s)].iloc[0]
    rows, verdicts = [], {}
    for m in simple + variants:
        r = s[s.model == m].iloc[0]
        d = None if m == "early_concat" else difference(res, (m, "test", ""), ("early_concat", "test", ""), margin)
        verdicts[m] = d["verdict"] if d else ""
        k = r.params_fusion / 1000
        rows.append({"model": m, "test ROC-AUC [95%]": fmt_iv(r.test_roc_auc_mean, r.test_roc_auc_lo, r.test_roc_auc_hi),
                     "Δ vs early_concat [95%]": "(reference)" if d is None else fmt_d(d),
                     "verdict": d["verdict"] if d else "—", "fusion params": _int(r.params_fusion),
                     "total params": _int(r.params_total), "train s": f"{r.train_seconds_mean:.1f}",
                     "seed std": f"{r.test_roc_auc_std:.4f}", "epochs to best": f"{r.epochs_to_best_mean:.1f}",
                     "diverged": str(r.diverged),
                     "gain over best unimodal per 1k fusion params":
                         f"{(r.test_roc_auc_mean - best_uni.test_roc_auc_mean) / k:+.5f}"})
    ctx = {"table": md_table(pd.DataFrame(rows)),
           "top": s[s.model.isin(simple + variants)].sort_values("test_roc_auc_mean", ascending=False).iloc[0],
           "ensemble": (lambda r: fmt_iv(r.test_roc_auc_mean, r.test_roc_auc_lo, r.test_roc_auc_hi))(
               s[s.model == "late_ensemble"].iloc[0]) if (s.model == "late_ensemble").any() else None,
           "by_verdict": {x: [m for m, v in verdicts.items() if v == x] for x in (HELPS, EQUIVALENT, INCONCLUSIVE, HURTS)},
           "weights": None, "scaling": None}
    w = fusion_weight_stats(res.runs)
    if not w.empty:
        ctx["weights"] = md_table(pd.DataFrame([{"model": r.model, "weight": r.weight, "modality": r.modality,
                                                 "mean (± 95% CI over seeds)": fmt_ci(r.mean, r.ci, 3),
                                                 "5% / 50% / 95% of test rows": f"{r.q05:.3f} / {r.q50:.3f} / {r.q95:.3f}"}
                                                for r in w.itertuples()]))
        ctx["weights_fig"] = rel(figure_fusion_weights(res.runs, figdir / "fusion_weights.png"))
    if res.scaling:
        wide, slopes = scaling_slopes(res.scaling)
        t = wide.reset_index().astype({"d": int})
        t = pd.concat([t.astype(str), pd.DataFrame([{"d": "log-log slope", **{f: f"{v:.2f}" for f, v in slopes.items()}}])])
        ctx["scaling"] = md_table(t)
        ctx["scaling_fig"] = rel(figure_scaling(res.scaling, figdir / "param_scaling.png"))
    return ctx


def data_context(res: StudyResults, rl: dict) -> dict:
    """Single-column validation ROC-AUCs with near-proxies flagged, and the data warnings."""
    auc = res.split["stats"].get("column_auc") or {}
    table = md_table(pd.DataFrame([{"column": c, "val ROC-AUC alone": f"{v:.4f}",
                                    "near-proxy?": "yes" if v >= rl["proxy_auc"] else "no"}
                                   for c, v in sorted(auc.items(), key=lambda kv: -kv[1])])) if auc else None
    y = np.asarray(res.split["y_test"])
    return {"columns": table, "proxies": [c for c, v in auc.items() if v >= rl["proxy_auc"]],
            "warnings": res.split["stats"].get("warnings", []),
            "minority": res.split["classes"][int(np.argmin(np.bincount(y, minlength=len(res.split["classes"]))))]}


def _from_root(folder: Path, root: Path = Path(".")) -> str:
    """A results folder as the commands in the report should name it: relative to the repository
    root ``root`` when inside it (commands run from there), else absolute."""
    folder, root = Path(folder).resolve(), Path(root).resolve()
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)


def summary_of(res: StudyResults) -> pd.DataFrame:
    """Per-model summary (not weakened) with the two-level interval of test ROC-AUC (memoised in
    ``res.cache``; a copy is returned)."""
    if "summary" not in res.cache:
        res.cache["summary"] = with_intervals(res, summarize(plain(res.runs)))
    return res.cache["summary"].copy()


def render_experiments(res: StudyResults, figdir: Path, relto: Path, s: pd.DataFrame | None = None,
                       root: Path = Path(".")) -> str:
    """The whole ``experiments.md`` text for one results folder (figures written to ``figdir``,
    linked relative to ``relto``; commands name the folder relative to the repository ``root``)."""
    s = summary_of(res) if s is None else s
    rel = lambda p: os.path.relpath(p, relto)  # noqa: E731
    rl = rules(res)
    curve_models = list(s[s.part.isin(["part1", "part2"]) & (s.kind != "ensemble") & (s.regime == "plain")].model)
    p12 = s[s.part.isin(["reference", "part1", "part2"])]
    ctx = {"folder": _from_root(res.folder, root), "meta": res.meta, "st": res.split["stats"], "rules": rl,
           "n_test": len(res.split["y_test"]), "n_boot": res.config["study"]["bootstrap"],
           "n_classes": len(res.split["classes"]), "split_column": res.config.get("split", {}).get("column", ""), "marginal_k": res.config["study"].get("marginal_k", "K"),
           **data_context(res, rl), "mod": modalities_context(res, s, rl),
           "rank_table": md_table(_rank_table(p12)), "decision_table": md_table(_decision_table(p12)),
           "cost_table": md_table(_cost_table(p12)), "stability_table": md_table(_stability_table(p12)),
           "val_fig": rel(figure_val_curves([r for r in res.runs if r.training.regime == "plain"],
                                            figdir / "val_loss_curves.png", curve_models)),
           "gains": gains_context(res, s, rl["margin"]),
           "p4": part4_context(res, s, rl["margin"], figdir, rel), "p3": part3_context(res, s, rl, figdir, rel),
           "p5": part5_context(res, s, rl, figdir, rel), "remedies": remedies_context(res, rl["margin"]),
           "inter": interaction_context(res, rl["margin"]),
           "bench_table": md_table(bench_cells(part_table(res.meta, res.runs))),
           "bench_ratios": baseline_ratios(res.meta), "pooled": pooled_context(res, figdir, rel)}
    return environment().get_template("experiments.md.j2").render(ctx)
