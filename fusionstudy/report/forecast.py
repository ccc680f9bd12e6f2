"""Postmortem Q6 and the benchmark page: the before-fusion forecast (:mod:`fusionstudy.analysis.forecast`)
set against what the study then measured, in every situation of every study.

A situation is one study clean (the forecast pooled over its splits; measured: the primary contrast,
early fusion pooled over the same splits against every unimodal candidate, intersection–union rule)
or one Part 5 point (the main split; measured: early fusion against the stronger unimodal model at
that point, seeds and test rows).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fusionstudy.analysis.forecast import score_forecasts, situation_forecast
from fusionstudy.analysis.pooled import fused_vs_unimodal
from fusionstudy.analysis.tables import CLEAN_LEVEL, imbalance_points, unimodal_name
from fusionstudy.analysis.verdicts import HELPS, situation
from fusionstudy.records import StudyResults
from fusionstudy.report.formats import fmt_iv, md_table

FUSED = "early_concat"  # the model whose gain is forecast


def _part5_situations(res: StudyResults, s: pd.DataFrame) -> list[tuple[str, dict, str, tuple]]:
    """(name, unimodal units, weakening tag, seeds) of every Part 5 point with early fusion."""
    ut, ub = unimodal_name(s, "text"), unimodal_name(s, "tabular")
    if not (ut and ub and FUSED in set(s.model)):
        return []
    pts, out = imbalance_points(res), []
    seeds = tuple(sorted({r.seed for r in res.runs if r.training.regime == "weakened"}))
    if pts.empty:
        return out
    units = {"text": ut, "tabular": ub}
    for (kind, mod, level), g in pts.groupby(["kind", "modality", "level"], sort=False):
        if level == str(CLEAN_LEVEL[kind]) or FUSED not in set(g.model) or \
                not ((g.model_kind == "unimodal") & (g.model_modalities == mod)).any():
            continue
        other = "tabular" if mod == "text" else "text"
        tag = f"{kind}:{mod}:{level}"
        out.append((f"{res.name}: {kind} {mod} = {level}", {mod: (units[mod], tag), other: (units[other], "")}, tag, seeds))
    return out


def _measured_clean(res: StudyResults, s: pd.DataFrame, margin: float) -> dict | None:
    """The primary contrast of ``res``: pooled when it has repeated splits, else the main split's
    early fusion against the stronger unimodal model."""
    if FUSED not in set(s.model):
        return None
    if res.resplits:
        pv = fused_vs_unimodal(res, FUSED, margin)
        b = next((g for g in pv["gains"] if g["vs"] == pv["binding"]), None)
        if b is None:
            return None
        return {"value": b["value"], "lo": b["lo"], "hi": b["hi"], "verdict": pv["verdict"],
                "design": f"{b['k']} splits, vs every unimodal candidate (binding `{pv['binding']}`)"}
    ut, ub = unimodal_name(s, "text"), unimodal_name(s, "tabular")
    if not (ut and ub):
        return None
    m = situation(res, FUSED, {"text": (ut, ""), "tabular": (ub, "")}, "", margin, None)
    return {**m["gain"], "design": f"main split, {len(m['seeds'])} seeds, vs the stronger unimodal model"}


def forecast_rows(studies: list[tuple[StudyResults, pd.DataFrame]], margin: float) -> list[dict]:
    """One dict per situation with a stored forecast and a measurement: ``study``, ``situation``,
    ``forecast`` (:func:`analysis.forecast.pooled_forecast`), ``measured`` (``value/lo/hi/verdict``)."""
    rows = []
    for res, s in studies:
        f, m = situation_forecast(res, "", margin), _measured_clean(res, s, margin)
        if f is not None and m is not None:
            rows.append({"study": res.name, "situation": f"{res.name} (clean)", "forecast": f, "measured": m})
        for name, uni, tag, seeds in _part5_situations(res, s):
            f = situation_forecast(res, tag, margin)
            if f is None:
                continue
            g = situation(res, FUSED, uni, tag, margin, seeds)
            rows.append({"study": res.name, "situation": name, "forecast": f,
                         "measured": {**g["gain"], "design": f"main split, {len(g['seeds'])} seeds"}})
    return rows


def forecast_score(rows: list[dict]) -> dict:
    """:func:`analysis.forecast.score_forecasts` over ``rows`` (:func:`forecast_rows`), plus the
    number of studies they span."""
    out = score_forecasts([r["forecast"]["gain"] for r in rows], [r["measured"]["value"] for r in rows],
                          [r["forecast"]["helps"] for r in rows], [r["measured"]["verdict"] == HELPS for r in rows])
    return {**out, "studies": len({r["study"] for r in rows})}


def forecast_table(rows: list[dict], margin: float) -> str:
    """Markdown table: forecast gain [interval] label and P(helps) beside the measured gain [interval] label."""
    if not rows:
        return "No situation has both a stored forecast and early fusion."
    out = []
    for r in rows:
        f, m = r["forecast"], r["measured"]
        out.append({"situation": r["situation"],
                    "forecast: stack − better unimodal (val)": f"{fmt_iv(f['gain'], f['lo'], f['hi'], True, margin)} {f['verdict']}",
                    "P(helps)": "n/a" if f["p_helps"] != f["p_helps"] else f"{f['p_helps']:.2f}",
                    "measured: early_concat − unimodal (test)": f"{fmt_iv(m['value'], m['lo'], m['hi'], True, margin)} {m['verdict']}",
                    "match": "yes" if f["helps"] == (m["verdict"] == HELPS) else "no"})
    return md_table(pd.DataFrame(out))


def forecast_facts(studies: list[tuple[StudyResults, pd.DataFrame]], margin: float) -> tuple[str, dict]:
    """``(table, score)`` for the postmortem's Q6; the score's ``n`` is 0 when no situation qualifies."""
    rows = forecast_rows(studies, margin)
    score = forecast_score(rows) if rows else {"n": 0}
    if rows:
        score["rows"] = rows
        sq = [(r["forecast"]["p_helps"] - (r["measured"]["verdict"] == HELPS)) ** 2
              for r in rows if r["forecast"]["p_helps"] == r["forecast"]["p_helps"]]
        score["brier"] = float(np.mean(sq)) if sq else float("nan")
    return forecast_table(rows, margin), score
