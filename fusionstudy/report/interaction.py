"""Report contexts of Part 5's remedies and of the interaction measures (EMAP per fused model,
PID per dataset): numbers from :mod:`analysis.remedies` formatted into tables for the templates."""
from __future__ import annotations

import pandas as pd

from fusionstudy.analysis.remedies import emap_table, pid_table, remedy_table
from fusionstudy.report.formats import fmt_d, fmt_iv, fmt_num, md_table

REMEDY_PAPERS = {"ogm_ge": "OGM-GE (Peng et al., 2022)", "gblend": "G-Blend (Wang et al., 2020)",
                 "mla": "MLA (Zhang et al., 2024)"}


def point_name(tag: str) -> str:
    return "clean" if not tag else tag.replace(":", " ", 1).replace(":", " = ")


def remedies_context(res, margin: float) -> dict | None:
    """The remedies table (one row per remedy and Part 5 point) and per-remedy facts the
    template's sentences are conditional on; ``None`` without remedy runs."""
    t = remedy_table(res, margin)
    if t.empty:
        return None
    rows = [{"point": point_name(r.tag), "remedy": REMEDY_PAPERS.get(r.remedy, r.remedy), "vs": r.plain, "seeds": str(r.seeds),
             "test ROC-AUC remedy / plain": f"{fmt_num(r.auc)} / {fmt_num(r.plain_auc)}",
             "remedy − plain [95%]": fmt_d({"value": r.diff, "lo": r.lo, "hi": r.hi, "margin": margin}),
             "verdict": r.verdict, "weak modality's Shapley share remedy / plain": f"{r.weak}: {r.share:.3f} / {r.plain_share:.3f}",
             "train s remedy / plain": f"{r.secs:.1f} / {r.plain_secs:.1f}"} for r in t.itertuples()]
    helps = sorted({f"{REMEDY_PAPERS.get(r.remedy, r.remedy)} at {point_name(r.tag)}" for r in t.itertuples() if r.verdict == "helps"})
    hurts_clean = sorted(REMEDY_PAPERS.get(r.remedy, r.remedy) for r in t.itertuples() if not r.tag and r.verdict == "hurts")
    points = sorted({point_name(x) for x in t.tag})
    lowered = sorted(f"{REMEDY_PAPERS.get(r.remedy, r.remedy)} at {point_name(r.tag)} ({r.share:.3f} vs {r.plain_share:.3f})"
                     for r in t.itertuples() if r.share < r.plain_share - 0.05)
    return {"table": md_table(pd.DataFrame(rows)), "helps": helps, "hurts_clean": hurts_clean, "points": points,
            "all_equivalent": bool((t.verdict == "equivalent").all()), "lowered": lowered,
            "seeds": sorted({r.seed for r in res.runs if r.training.regime == "remedy"}),
            "models": sorted(set(t.plain)), "raw": t}


def interaction_context(res, margin: float = 0.005) -> dict | None:
    """EMAP per fused model (``None`` entries when no run stored EMAP inputs) and PID of the
    unimodal models' test predictions; ``None`` when neither exists."""
    e, p = emap_table(res), pid_table(res, n_boot=0)  # the report shows the atoms alone (no interval: see the template)
    if e.empty and p.empty:
        return None
    emap = None
    if not e.empty:
        rows = [{"model": r.model, "trained": r.regime, "seeds": str(r.seeds), "ROC-AUC model": fmt_num(r.model_auc),
                 "ROC-AUC EMAP projection": fmt_num(r.projection_auc),
                 "interaction used = model − projection [95%]": fmt_iv(r.gap, r.lo, r.hi, signed=True)}
                for r in e.itertuples()]
        emap = {"table": md_table(pd.DataFrame(rows)), "n": int(e.n.iloc[0]),
                "above": [r.model for r in e.itertuples() if r.lo > 0], "raw": e,
                "within": bool(((e.lo >= -margin) & (e.hi <= margin)).all()), "max_hi": float(e.hi.max())}
    pid = None
    if not p.empty:
        rows = [{"atom": r.atom.replace("_", " "), "bits": fmt_num(r.bits), "share of I(Y; X_text, X_tab)": fmt_num(r.share)}
                for r in p.itertuples()]
        atoms = p[p.atom != "total"].set_index("atom")
        pid = {"table": md_table(pd.DataFrame(rows)), "n": int(p.n.iloc[0]), "bins": int(p.bins.iloc[0]),
               "largest": str(atoms.share.idxmax()).replace("_", " "), "synergy_share": float(atoms.share["synergy"]),
               "raw": p}
    return {"emap": emap, "pid": pid}
