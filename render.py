"""Rendering: analysis tables -> Markdown through Jinja2 templates (``templates/*.j2``).

Python here only selects rows, formats table cells and builds the template context; every
sentence lives in a template, and a sentence that states a fact about the data is rendered only
when the analysis computed that fact. Figures are drawn by ``figures.py`` on the way.
"""
from __future__ import annotations

import os
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from analysis import (SWEEP_TITLES, best_unimodal, curve_area, disagreement, dominance, eval_frame,
                      fusion_gains, fusion_weight_stats, grad_ratio, imbalance_points, imbalance_verdict,
                      part_table, robustness_curves, scaling_slopes, summarize, unimodal, unimodal_name, plain)
from figures import (FAMILY_TITLES, figure_fusion_weights, figure_imbalance, figure_robustness, figure_scaling,
                     figure_val_curves)
from metrics import mean_ci
from config import ReportConfig
from records import StudyResults

TEMPLATES = Path(__file__).resolve().parent / "templates"


def fmt_ci(mean: float, ci: float, digits: int = 4) -> str:
    """``0.9712 ± 0.0021``; ``n/a`` for NaN."""
    if mean != mean:
        return "n/a"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def md_table(df: pd.DataFrame) -> str:
    """GitHub Markdown table of ``df`` (values already formatted as strings)."""
    return df.to_markdown(index=False, disable_numparse=True)


def _int(v) -> str:
    return "—" if v != v else f"{int(v):,}"


def ci_cell(values, digits: int = 4) -> str:
    """Mean ± 95% t-interval half-width over seeds of ``values``."""
    return fmt_ci(*mean_ci(list(values)), digits)


def _ci_filter(row) -> str:
    return fmt_ci(row.test_roc_auc_mean, row.test_roc_auc_ci95)


def environment() -> jinja2.Environment:
    """The Jinja2 environment of every report: strict (an unknown name is an error) and with the
    number formats the reports use as filters."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(
        n=lambda v: f"{v:,}", f3=lambda v: f"{v:.3f}", f4=lambda v: f"{v:.4f}", s4=lambda v: f"{v:+.4f}",
        pct=lambda v: f"{100 * v:.1f}", ci=_ci_filter, names=lambda ms: ", ".join(f"`{m}`" for m in ms) or "none")
    return env


def _metric_table(s: pd.DataFrame) -> pd.DataFrame:
    cols = {"val ROC-AUC": "val_roc_auc", "test ROC-AUC": "test_roc_auc", "test PR-AUC": "test_pr_auc",
            "test F1": "test_f1", "test acc": "test_accuracy", "test log loss": "test_log_loss", "test ECE": "test_ece"}
    return pd.DataFrame([{"model": r.model, "seeds": str(r.seeds),
                          **{k: fmt_ci(getattr(r, f"{c}_mean"), getattr(r, f"{c}_ci95")) for k, c in cols.items()}}
                         for r in s.itertuples()])


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
                          "val-loss roughness": f"{r.val_loss_roughness_mean:.4f}", "diverged runs": str(r.diverged)}
                         for r in s[s.kind.isin(["unimodal", "fusion"])].itertuples()])


def _gain_table(g: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"model": r.model, "minus": r.vs, "ΔROC-AUC (test)": f"{r.gain:+.4f}",
                          "95% paired bootstrap CI": f"[{r.lo:+.4f}, {r.hi:+.4f}]",
                          "verdict": "better" if r.lo > 0 else ("worse" if r.hi < 0 else "tie (CI covers 0)")}
                         for r in g.itertuples()])


def modalities_context(res: StudyResults, s: pd.DataFrame, gap_rule: float) -> dict | None:
    """Unimodal scores, their disagreement and whether one modality clearly dominates."""
    t, b = unimodal(s, "text"), unimodal(s, "tabular")
    if t.empty or b.empty:
        return None
    t, b = t.iloc[0], b.iloc[0]
    strong, weak = (t, b) if best_unimodal(s) == t.model else (b, t)
    gap = strong.test_roc_auc_mean - weak.test_roc_auc_mean
    overlap = strong.test_roc_auc_mean - strong.test_roc_auc_ci95 <= weak.test_roc_auc_mean + weak.test_roc_auc_ci95
    return {"text": t, "tabular": b, "d": disagreement(res, s), "strong": strong.modalities, "gap": gap,
            "clear": bool(gap > gap_rule and not overlap)}


def gains_context(res: StudyResults, s: pd.DataFrame, n_boot: int) -> dict | None:
    """Fusion gain over the best unimodal model with paired bootstrap CIs."""
    g = fusion_gains(res, s, n_boot)
    if g.empty:
        return None
    return {"table": md_table(_gain_table(g)), "best": g.sort_values("gain", ascending=False).iloc[0]}


def part4_context(res: StudyResults, s: pd.DataFrame, n_boot: int, figdir: Path, rel) -> dict | None:
    """Fusion variants vs ``early_concat``: metric, parameters, time, stability, paired gain,
    parameter efficiency, fusion weights and parameter scaling."""
    variants = list(s[s.part == "part4"].model)
    simple = list(s[(s.part == "part2") & (s.kind == "fusion")].model)
    if not variants or "early_concat" not in simple:
        return None
    g = fusion_gains(res, s, n_boot, ref="early_concat", models=variants + [m for m in simple if m != "early_concat"])
    g = g.set_index("model") if not g.empty else pd.DataFrame(columns=["gain", "lo", "hi"])
    best_uni = s[s.model == best_unimodal(s)].iloc[0]
    rows = []
    for m in simple + variants:
        r = s[s.model == m].iloc[0]
        gain = "(reference)" if m == "early_concat" else (
            f"{g.loc[m, 'gain']:+.4f} [{g.loc[m, 'lo']:+.4f}, {g.loc[m, 'hi']:+.4f}]" if m in g.index else "n/a")
        k = r.params_fusion / 1000
        rows.append({"model": m, "test ROC-AUC": fmt_ci(r.test_roc_auc_mean, r.test_roc_auc_ci95),
                     "Δ vs early_concat [95% CI]": gain, "fusion params": _int(r.params_fusion),
                     "total params": _int(r.params_total), "train s": f"{r.train_seconds_mean:.1f}",
                     "seed std": f"{r.test_roc_auc_std:.4f}", "range": f"{r.test_roc_auc_range:.4f}",
                     "epochs to best": f"{r.epochs_to_best_mean:.1f}", "diverged": str(r.diverged),
                     "ROC-AUC per 1k fusion params": f"{r.test_roc_auc_mean / k:.4f}",
                     "gain over best unimodal per 1k fusion params":
                         f"{(r.test_roc_auc_mean - best_uni.test_roc_auc_mean) / k:+.5f}"})
    ctx = {"table": md_table(pd.DataFrame(rows)),
           "top": s[s.model.isin(simple + variants)].sort_values("test_roc_auc_mean", ascending=False).iloc[0],
           "better": [m for m in g.index if g.loc[m, "lo"] > 0], "worse": [m for m in g.index if g.loc[m, "hi"] < 0],
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


def _area_table(curves: pd.DataFrame, models: list[str], s: pd.DataFrame) -> pd.DataFrame:
    """Area under each robustness curve (and minus the clean score); a unimodal model has no
    row for the other modality's families."""
    fams = [f for f in FAMILY_TITLES if f in set(curves.family)]
    mods = dict(zip(s.model, s.modalities))
    rows = []
    for m in models:
        row = {"model": m}
        for fam in fams:
            c = curves[(curves.model == m) & (curves.family == fam)]
            fam_mod = "text" if fam.startswith(("text", "drop:text")) else "tabular"
            if not c.empty and fam_mod in mods.get(m, fam_mod).split("+"):
                clean = c[c.severity == 0].roc_auc.iloc[0]
                row[fam] = f"{curve_area(c):.3f} ({curve_area(c) - clean:+.3f})"
        rows.append(row)
    return pd.DataFrame(rows).fillna("—")


def part3_context(res: StudyResults, s: pd.DataFrame, figdir: Path, rel) -> dict | None:
    """Removal vs the other unimodal model, robustness curves, the naturally missing-text rows,
    ModDrop and dominance (removal drop, Shapley, permutation, gradient ratio)."""
    ev = eval_frame(res.evals, res.runs)
    if ev.empty:
        return None
    ev = ev[ev.weaken == ""]
    dom = dominance(ev)
    fused = [m for m in s[s.kind == "fusion"].model if m in set(dom.model)]
    if not fused:
        return None
    uni = {m: unimodal(s, m).test_roc_auc_mean.iloc[0] if not unimodal(s, m).empty else np.nan for m in ("text", "tabular")}
    name = {m: unimodal_name(s, m) or f"{m}_only" for m in ("text", "tabular")}
    rows = []
    for m in fused:
        d = dom[dom.model == m]
        rows.append({"model": m, "clean": ci_cell(d.clean), "text removed": ci_cell(d.no_text),
                     f"− {name['tabular']}": f"{d.no_text.mean() - uni['tabular']:+.4f}",
                     "tabular removed": ci_cell(d.no_tabular),
                     f"− {name['text']}": f"{d.no_tabular.mean() - uni['text']:+.4f}"})
    worse = [m for m, r in zip(fused, rows) if float(r[f"− {name['tabular']}"]) < 0 or float(r[f"− {name['text']}"]) < 0]
    curves = robustness_curves(ev)
    models_fig = [m for m in list(unimodal(s).model) + fused if m in set(curves.model)]
    fig = figure_robustness(curves, models_fig, figdir / "robustness.png", set(unimodal(s).model))
    return {"removal": md_table(pd.DataFrame(rows)), "worse": worse,
            "areas": md_table(_area_table(curves, models_fig, s)), "fig": rel(fig),
            "missing": _missing_text_table(ev, models_fig), "moddrop": _moddrop_table(s, dom, curves),
            "dominance": _dominance_table(res, dom, fused)}


def _missing_text_table(ev: pd.DataFrame, models: list[str]) -> str | None:
    sub = ev[ev.subset == "text_missing"]
    if sub.empty:
        return None
    return md_table(pd.DataFrame([{"model": m, "rows": str(int(sub[sub.model == m].n.iloc[0])),
                                   "ROC-AUC on rows without text": ci_cell(sub[sub.model == m].roc_auc),
                                   "accuracy": ci_cell(sub[sub.model == m].accuracy)}
                                  for m in models if m in set(sub.model)]))


def _moddrop_table(s: pd.DataFrame, dom: pd.DataFrame, curves: pd.DataFrame) -> str | None:
    """Each ModDrop-trained model next to the plainly trained model of the same fusion."""
    md = s[(s.regime == "moddrop") & (s.kind == "fusion")]
    pairs = [(p.model.iloc[0], r.model) for r in md.itertuples()
             for p in [s[(s.regime == "plain") & (s.kind == "fusion") & (s.fusion == r.fusion) & (s.part != "part5")]]
             if not p.empty]
    if not pairs:
        return None
    rows = []
    for plain_model, md_model in pairs:
        for m in (plain_model, md_model):
            d = dom[dom.model == m]
            area = {fam: curve_area(curves[(curves.model == m) & (curves.family == fam)]) for fam in ("drop:text", "drop:tabular")}
            rows.append({"model": m, "clean": ci_cell(d.clean), "text removed": ci_cell(d.no_text),
                         "tabular removed": ci_cell(d.no_tabular), "area drop:text": f"{area['drop:text']:.4f}",
                         "area drop:tabular": f"{area['drop:tabular']:.4f}"})
    return md_table(pd.DataFrame(rows))


def _dominance_table(res: StudyResults, dom: pd.DataFrame, fused: list[str]) -> str | None:
    rows = []
    for m in fused:
        d = dom[dom.model == m]
        std = float(d.clean.std(ddof=1)) if len(d) > 1 else 0.0
        drop_text, drop_tab = float((d.clean - d.no_text).mean()), float((d.clean - d.no_tabular).mean())
        collapsed = [mod for mod, dr in (("text", drop_text), ("tabular", drop_tab)) if abs(dr) < std]
        rows.append({"model": m, "drop if text removed": ci_cell(d.clean - d.no_text),
                     "drop if tabular removed": ci_cell(d.clean - d.no_tabular),
                     "Shapley text": ci_cell(d.phi_text), "Shapley tabular": ci_cell(d.phi_tabular),
                     "text share": ci_cell(d.share_text, 3),
                     "permutation text": ci_cell(d.perm_text), "permutation tabular": ci_cell(d.perm_tabular),
                     "grad-norm ratio text/tab": f"{grad_ratio(res.runs, m):.2f}",
                     "collapsed (ignores)": ", ".join(collapsed) or "no"})
    return md_table(pd.DataFrame(rows)) if rows else None


def part5_context(res: StudyResults, s: pd.DataFrame, tolerance: float, figdir: Path, rel) -> dict | None:
    """Per sweep and level: the fused models against the unimodal ones trained on the same data,
    the weak modality's Shapley share and removal drop, and a verdict."""
    pts = imbalance_points(res)
    if pts.empty:
        return None
    sweeps = []
    for (kind, mod), title in SWEEP_TITLES.items():
        p = pts[(pts.kind == kind) & (pts.modality == mod)]
        if p.empty:
            continue
        other = "tabular" if mod == "text" else "text"
        own, oth = unimodal_name(s, mod) or f"{mod}_only", unimodal_name(s, other) or f"{other}_only"
        other_uni = p[(p.model == oth) & (p.level == p.level.iloc[0])].auc.mean()  # the clean model
        rows = []
        for level in dict.fromkeys(p.level):
            at = p[p.level == level].set_index("model")
            uni = {mod: at.auc.get(own, np.nan), other: other_uni}
            for m, r in at[at.model_kind != "unimodal"].iterrows():
                drops = {mod: r.drop_weak, other: r.drop_strong}
                rows.append({"level": level, "model": m, own: f"{uni[mod]:.4f}",
                             f"{oth} (clean)": f"{other_uni:.4f}", "fused ROC-AUC": f"{r.auc:.4f} (std {r.auc_std:.4f})",
                             f"{mod} Shapley share": f"{r.weak_share:.3f} ± {r.weak_share_ci:.3f}",
                             f"drop if {mod} removed": f"{r.drop_weak:+.4f}", f"drop if {other} removed": f"{r.drop_strong:+.4f}",
                             "verdict": imbalance_verdict(r.auc, r.auc_std, drops, uni, tolerance)})
        sweeps.append({"modality": mod, "title": title, "table": md_table(pd.DataFrame(rows))})
    f1 = figure_imbalance(pts, "auc", "test ROC-AUC (seed mean)", figdir / "imbalance_scores.png", refs=True)
    f2 = figure_imbalance(pts, "weak_share", "Shapley share of the weakened modality", figdir / "imbalance_shapley.png", refs=False)
    seeds = sorted({r.seed for r in res.runs if r.training.regime == "weakened"})
    return {"sweeps": sweeps, "fig_scores": rel(f1), "fig_shares": rel(f2), "seeds": seeds}


def rules(res: StudyResults) -> dict:
    """The ``[report]`` decision rules the study was run with (defaults for records that predate them)."""
    return {**ReportConfig().__dict__, **res.config.get("report", {})}


def render_experiments(res: StudyResults, figdir: Path, relto: Path) -> str:
    """The whole ``experiments.md`` text for one results folder (figures written to ``figdir``,
    linked relative to ``relto``)."""
    s = summarize(plain(res.runs))
    rel = lambda p: os.path.relpath(p, relto)  # noqa: E731
    rl, n_boot = rules(res), res.config["study"]["bootstrap"]
    curve_models = list(s[s.part.isin(["part1", "part2"]) & (s.kind != "ensemble")].model)
    p12 = s[s.part.isin(["reference", "part1", "part2"])]
    ctx = {"folder": rel(res.folder), "meta": res.meta, "st": res.split["stats"], "rules": rl,
           "n_test": len(res.split["y_test"]), "n_boot": n_boot,
           "mod": modalities_context(res, s, rl["dominance_gap"]),
           "metric_table": md_table(_metric_table(p12)), "cost_table": md_table(_cost_table(p12)),
           "stability_table": md_table(_stability_table(p12)),
           "val_fig": rel(figure_val_curves(res.runs, figdir / "val_loss_curves.png", curve_models)),
           "gains": gains_context(res, s, n_boot),
           "p4": part4_context(res, s, n_boot, figdir, rel), "p3": part3_context(res, s, figdir, rel),
           "p5": part5_context(res, s, rl["collapse_tolerance"], figdir, rel),
           "bench_table": md_table(part_table(res.meta, res.runs))}
    return environment().get_template("experiments.md.j2").render(ctx)
