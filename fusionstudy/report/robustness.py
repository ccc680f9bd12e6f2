"""Template context of Parts 3 and 5: ablations, robustness, dominance and modality imbalance.

Numbers and verdicts come from ``analysis.tables`` and ``analysis.verdicts``; this file selects rows and
formats cells (``report.formats``); the prose is in ``report/templates/experiments.md.j2``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fusionstudy.analysis.tables import (
    CLEAN_LEVEL,
    SWEEP_TITLES,
    curve_area,
    dominance,
    eval_frame,
    grad_rms_ratios,
    imbalance_points,
    robustness_curves,
    unimodal_name,
)
from fusionstudy.analysis.trends import X_UNITS, sweep_trends
from fusionstudy.analysis.verdicts import (
    HURTS,
    difference,
    removal_table,
    seeds_of,
    shapley_intervals,
    situation,
    subset_interval,
    value,
)
from fusionstudy.records import StudyResults
from fusionstudy.report.figures import FAMILY_TITLES, figure_imbalance, figure_robustness
from fusionstudy.report.formats import ci_cell, fmt_d, fmt_iv, md_table


def _area_table(curves: pd.DataFrame, models: list[str], s: pd.DataFrame) -> pd.DataFrame:
    """Area under each robustness curve (and minus the clean score); a unimodal model has no
    entry for the other modality's families."""
    mods = dict(zip(s.model, s.modalities))
    rows = []
    for m in models:
        row = {"model": m}
        for fam in [f for f in FAMILY_TITLES if f in set(curves.family)]:
            c = curves[(curves.model == m) & (curves.family == fam)]
            fam_mod = "text" if fam.startswith(("text", "drop:text")) else "tabular"
            if not c.empty and fam_mod in mods.get(m, fam_mod).split("+"):
                clean = c[c.severity == 0].roc_auc.iloc[0]
                row[fam] = f"{curve_area(c):.3f} ({curve_area(c) - clean:+.3f})"
        rows.append(row)
    return pd.DataFrame(rows).fillna("—")


def _missing_mean(ev: pd.DataFrame, model: str, modality: str) -> str:
    v = ev[(ev.model == model) & (ev.perturbation == "missing") & (ev.modality == modality)].roc_auc
    return ci_cell(v) if len(v) else "n/a"


def _removal(res: StudyResults, s: pd.DataFrame, ev: pd.DataFrame, fused: list[str], margin: float) -> tuple[str, list]:
    t = removal_table(res, s, fused, margin)
    uni = {m: unimodal_name(s, m) for m in ("text", "tabular")}
    rows, worse = [], []
    cell = lambda r, k: fmt_d(r[k], False) if isinstance(r.get(k), dict) else "n/a"  # noqa: E731
    for r in t.to_dict("records"):
        row = {"model": r["model"], "clean": cell(r, "test")}
        for removed in ("text", "tabular"):
            row.update({f"no {removed}: interventional": cell(r, f"remove:{removed}"),
                        f"no {removed}: conditional": cell(r, f"remove_conditional:{removed}"),
                        f"no {removed}: retrained": cell(r, f"retrained:{removed}")})
        for removed, other in (("text", "tabular"), ("tabular", "text")):
            d = r.get(f"vs_{other}")
            if isinstance(d, dict):
                row[f"no {removed} ({'conditional' if d['meaning'] == 'remove_conditional' else 'interventional'})"
                    f" − {uni[other]}"] = f"{fmt_d(d)} {d['verdict']}"
                worse += [r["model"]] if d["verdict"] == HURTS else []
        row.update({"text missing (encoding)": _missing_mean(ev, r["model"], "text"),
                    "tabular missing (encoding)": _missing_mean(ev, r["model"], "tabular")})
        rows.append(row)
    return md_table(pd.DataFrame(rows)), list(dict.fromkeys(worse))


def _missing_subset(res: StudyResults, models: list[str]) -> dict | None:
    rows = np.flatnonzero(np.asarray(res.split.get("text_missing_test", [])))
    if len(rows) == 0:
        return None
    y = np.asarray(res.split["y_test"])[rows]
    counts = np.bincount(y, minlength=len(res.split["classes"]))
    table = [{"model": m, "ROC-AUC on rows without text [95%]": fmt_d(subset_interval(res, m, rows), False)}
             for m in models]
    return {"n": len(rows), "counts": ", ".join(f"{c}: {n}" for c, n in zip(res.split["classes"], counts)),
            "minority": int(counts.min()), "table": md_table(pd.DataFrame(table))}


def _moddrop(res: StudyResults, s: pd.DataFrame, ev: pd.DataFrame, curves: pd.DataFrame) -> str | None:
    """Each ModDrop-trained model next to the plainly trained model of the same fusion."""
    md = s[(s.regime == "moddrop") & (s.kind == "fusion")]
    plain_of = {r.fusion: r.model for r in s[(s.regime == "plain") & (s.kind == "fusion")].itertuples()}
    rows = []
    for r in md.itertuples():
        for m in (plain_of.get(r.fusion), r.model):
            if m is None:
                continue
            rm = {k: fmt_d(value(res, m, k), False) for k in ("remove:text", "remove:tabular")}
            area = {f: curve_area(curves[(curves.model == m) & (curves.family == f)]) for f in ("drop:text", "drop:tabular")}
            rows.append({"model": m, "clean": fmt_iv(*_clean_iv(s, m)), "text removed": rm["remove:text"],
                         "text missing": _missing_mean(ev, m, "text"), "tabular removed": rm["remove:tabular"],
                         "tabular missing": _missing_mean(ev, m, "tabular"),
                         "area drop:text": f"{area['drop:text']:.4f}", "area drop:tabular": f"{area['drop:tabular']:.4f}"})
    return md_table(pd.DataFrame(rows)) if rows else None


def _clean_iv(s: pd.DataFrame, m: str) -> tuple[float, float, float]:
    r = s[s.model == m].iloc[0]
    return r.test_roc_auc_mean, r.test_roc_auc_lo, r.test_roc_auc_hi


def _dominance(res: StudyResults, dom: pd.DataFrame, fused: list[str], margin: float) -> str | None:
    rows = []
    for m in fused:
        d = dom[dom.model == m]
        phi = shapley_intervals(res, m)
        use = {mod: difference(res, (m, "test", ""), (m, f"remove:{mod}", ""), margin) for mod in ("text", "tabular")}
        collapsed = [mod for mod, u in use.items() if u["hi"] < margin]
        rows.append({"model": m, "Shapley text [95%]": fmt_d(phi["text"], False),
                     "Shapley tabular [95%]": fmt_d(phi["tabular"], False),
                     "text share": f"{phi['text']['value'] / (phi['text']['value'] + phi['tabular']['value']):.3f}",
                     "perceptual text": ci_cell(d.perm_text, 3), "perceptual tabular": ci_cell(d.perm_tabular, 3),
                     "RMS grad ratio text/tab": ci_cell(grad_rms_ratios(res.runs, m), 2),
                     "collapsed (ignores)": ", ".join(collapsed) or "no"})
    return md_table(pd.DataFrame(rows)) if rows else None


def part3_context(res: StudyResults, s: pd.DataFrame, rl: dict, figdir: Path, rel) -> dict | None:
    """Removal vs the other unimodal model, robustness curves, the naturally missing-text rows,
    ModDrop and dominance (Shapley, perceptual score, gradient ratio, collapse)."""
    ev = eval_frame(res.evals, res.runs)
    if ev.empty:
        return None
    ev = ev[(ev.weaken == "") & (ev.subset == "test")]
    dom = dominance(ev)
    fused = [m for m in s[s.kind == "fusion"].model if m in set(dom.model)]
    if not fused:
        return None
    removal, worse = _removal(res, s, ev, fused, rl["margin"])
    curves = robustness_curves(ev)
    uni = [m for m in s[(s.kind == "unimodal") & (s.regime == "plain")].model]
    models_fig = [m for m in uni + fused if m in set(curves.model)]
    fig = figure_robustness(curves, models_fig, figdir / "robustness.png", set(uni))
    return {"removal": removal, "worse": worse, "uni": {m: unimodal_name(s, m) for m in ("text", "tabular")},
            "areas": md_table(_area_table(curves, models_fig, s)), "fig": rel(fig),
            "missing": _missing_subset(res, models_fig), "moddrop": _moddrop(res, s, ev, curves),
            "dominance": _dominance(res, dom, fused, rl["margin"]), "permutations": res.config["study"]["permutations"]}


def _sweep_rows(res: StudyResults, s: pd.DataFrame, pts: pd.DataFrame, kind: str, mod: str,
                margin: float) -> tuple[list[dict], dict]:
    other = "tabular" if mod == "text" else "text"
    own, oth = unimodal_name(s, mod), unimodal_name(s, other)
    seeds = tuple(sorted({r.seed for r in res.runs if r.training.regime == "weakened"}))
    rows, strong_seen, val_seen = [], [], []
    p = pts[(pts.kind == kind) & (pts.modality == mod)]
    for level in dict.fromkeys(p.level):
        tag = "" if level == str(CLEAN_LEVEL[kind]) else f"{kind}:{mod}:{level}"
        for m in dict.fromkeys(p[(p.level == level) & (p.model_kind != "unimodal")].model):
            if not (own and oth and seeds_of(res, own, tag) and seeds_of(res, oth, "")):
                rows.append({"level": level, "model": m, "verdict": f"n/a: no {own or mod + '_only'} trained at this level"})
                continue
            sit = situation(res, m, {mod: (own, tag), other: (oth, "")}, tag, margin, seeds)
            flags = [f"over-relies on {sit['strong']}"] * sit["over_relies"] + \
                [f"collapses ({sit['weak']} adds < margin)"] * sit["collapses"]
            strong_seen.append(sit["strong"] == mod)
            val_seen.append(sit["val"][mod])
            verdict = {"helps": "adapts"}.get(sit["gain"]["verdict"], sit["gain"]["verdict"])
            rows.append({"level": level, "model": m, "seeds": str(len(sit["seeds"])), "strong (val)": sit["strong"],
                         "fused − strong modality's model [95%]": fmt_d(sit["gain"]),
                         "without strong − weak's model [95%]": fmt_d(sit["rely"]),
                         "weak modality's contribution [95%]": fmt_d(sit["use"]),
                         "verdict": " + ".join([verdict] + flags)})
    stays = bool(strong_seen) and all(strong_seen)
    return rows, {"stays_strong": stays, "val_range": f"{min(val_seen):.4f}–{max(val_seen):.4f}" if val_seen else ""}


def trend_cell(t: dict) -> str:
    """``-0.0182 [-0.0235, -0.0132] shrinks (beyond the margin)``: a trend's fitted change over its
    sweep with its interval and label."""
    size = f" ({t['size']})" if t["size"] else ""
    return f"{fmt_iv(t['change'], t['change_lo'], t['change_hi'], True, t['margin'])} {t['label']}{size}"


def _trends(res: StudyResults, s: pd.DataFrame, pts: pd.DataFrame, margin: float) -> tuple[str | None, list[dict]]:
    """The Part 5 trend table (one row per sweep and fused model) and the trends themselves."""
    trends = sweep_trends(res, pts, {m: unimodal_name(s, m) for m in ("text", "tabular")}, margin)
    rows = [{"sweep": f"{t['modality']}: {SWEEP_TITLES[(t['kind'], t['modality'])]}", "model": t["model"],
             "levels (x)": ", ".join(f"{lv} ({x:.2f})" for lv, x in zip(t["levels"], t["x"])),
             "gain per level": ", ".join(f"{g:+.4f}" for g in t["gains"]),
             "slope per unit of x [95%]": fmt_iv(t["slope"], t["lo"], t["hi"], True),
             "fitted change over the sweep [95%], label": trend_cell(t)} for t in trends]
    return (md_table(pd.DataFrame(rows)) if rows else None), trends


def part5_context(res: StudyResults, s: pd.DataFrame, rl: dict, figdir: Path, rel) -> dict | None:
    """Per sweep and level: each fused model against the unimodal models on the same seeds, with
    adapts / equivalent / inconclusive / hurts, over-reliance and collapse (``verdicts.situation``)."""
    pts = imbalance_points(res)
    if pts.empty:
        return None
    sweeps = []
    for (kind, mod), title in SWEEP_TITLES.items():
        rows, extra = _sweep_rows(res, s, pts, kind, mod, rl["margin"])
        if rows:
            sweeps.append({"modality": mod, "title": title, "table": md_table(pd.DataFrame(rows)), **extra})
    f1 = figure_imbalance(pts, "auc", "test ROC-AUC (seed mean)", figdir / "imbalance_scores.png", refs=True)
    f2 = figure_imbalance(pts, "weak_share", "Shapley share of the weakened modality", figdir / "imbalance_shapley.png", refs=False)
    seeds = sorted({r.seed for r in res.runs if r.training.regime == "weakened"})
    table, trends = _trends(res, s, pts, rl["margin"])
    counts = {lab: sum(t["label"] == lab for t in trends) for lab in dict.fromkeys(t["label"] for t in trends)}
    return {"sweeps": sweeps, "fig_scores": rel(f1), "fig_shares": rel(f2), "seeds": seeds, "trends": table,
            "trend_counts": counts, "n_trends": len(trends), "x_units": {k: X_UNITS[k] for k in dict.fromkeys(t["kind"] for t in trends)}}
