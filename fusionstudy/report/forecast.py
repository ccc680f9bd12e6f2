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

from fusionstudy.analysis.forecast import resampled_kappa_r, score_forecasts, situation_forecast
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
        held = held_out(res)
        f, m = situation_forecast(res, "", margin), _measured_clean(res, s, margin)
        if f is not None and m is not None:
            rows.append({"study": res.name, "situation": f"{res.name} (clean)", "forecast": f, "measured": m, "held_out": held})
        for name, uni, tag, seeds in _part5_situations(res, s):
            f = situation_forecast(res, tag, margin)
            if f is None:
                continue
            g = situation(res, FUSED, uni, tag, margin, seeds)
            rows.append({"study": res.name, "situation": name, "forecast": f, "held_out": held,
                         "measured": {**g["gain"], "design": f"main split, {len(g['seeds'])} seeds"}})
    return rows


# The studies the forecast was designed on: its predictor (the cross-fitted stack of the unimodal
# models' validation logits, committed in 74a1ac5 on 2026-12-02) was chosen after these studies'
# results had been seen. That is a fact about the predictor, not about one set of records: a study
# retrained later stores its forecasts before its new fused runs, yet stays a design study.
DESIGN_STUDIES = ("clothing", "clothing_no_rating")


def held_out(res: StudyResults) -> bool:
    """Whether ``res`` is held out for the forecast: not one of :data:`DESIGN_STUDIES` (whatever
    its records' times), and every stored forecast made before its first fused run (the forecast
    could not have been shaped by that study's results; from the records' timestamps)."""
    if res.name in DESIGN_STUDIES:
        return False
    fused = [r.time for r in res.runs + res.resplits if r.kind == "fusion"]
    return bool(res.forecasts) and bool(fused) and max(f.created for f in res.forecasts) < min(fused)


def forecast_score(rows: list[dict], margin: float = 0.005, n_boot: int = 2000) -> dict:
    """:func:`analysis.forecast.score_forecasts` over ``rows`` (:func:`forecast_rows`), plus: the
    number of studies, three-label agreement (helps / equivalent / hurts / inconclusive),
    ``point_hits`` (the forecast label against "the measured point estimate exceeds the margin",
    which does not depend on the measurement's power) and study-clustered 95% bootstrap intervals
    of kappa and r (``kappa_iv``, ``r_iv``: studies resampled with replacement, since situations of
    one study share rows and models)."""
    pg = np.array([r["forecast"]["gain"] for r in rows])
    mg = np.array([r["measured"]["value"] for r in rows])
    ph = np.array([r["forecast"]["helps"] for r in rows])
    mh = np.array([r["measured"]["verdict"] == HELPS for r in rows])
    out = score_forecasts(pg, mg, ph, mh)
    study = np.array([r["study"] for r in rows])
    names = sorted(set(study))
    rng, ks, rs = np.random.default_rng(0), [], []
    if len(names) > 2:  # each resample holds every row of each drawn study, as often as it was drawn
        number = {n: i for i, n in enumerate(names)}
        drawn = np.array([np.bincount([number[n] for n in rng.choice(names, len(names))], minlength=len(names))
                          for _ in range(n_boot)])
        ks, rs = resampled_kappa_r(pg, mg, ph, mh, drawn[:, [number[n] for n in study]])
    iv = lambda v: tuple(np.nanpercentile(v, [2.5, 97.5])) if np.isfinite(v).any() else (float("nan"),) * 2  # noqa: E731
    return {**out, "studies": len(names), "labels_equal": int(sum(r["forecast"]["verdict"] == r["measured"]["verdict"] for r in rows)),
            "point_hits": int((ph == (mg > margin)).sum()), "point_constant": max(int((mg > margin).sum()), len(rows) - int((mg > margin).sum())),
            "kappa_iv": iv(np.array(ks, dtype=float)) if len(ks) else (float("nan"),) * 2,
            "r_iv": iv(np.array(rs, dtype=float)) if len(rs) else (float("nan"),) * 2}


def forecast_table(rows: list[dict], margin: float) -> str:
    """Markdown table: forecast gain [interval] label and P(helps) beside the measured gain [interval] label."""
    if not rows:
        return "No situation has both a stored forecast and early fusion."
    out = []
    for r in rows:
        f, m = r["forecast"], r["measured"]
        out.append({"situation": r["situation"] + ("" if r["held_out"] else " †"),
                    "forecast: stack − better unimodal (val)": f"{fmt_iv(f['gain'], f['lo'], f['hi'], True, margin)} {f['verdict']}",
                    "P(helps)": "n/a" if f["p_helps"] != f["p_helps"] else f"{f['p_helps']:.2f}",
                    "measured: early_concat − unimodal (test)": f"{fmt_iv(m['value'], m['lo'], m['hi'], True, margin)} {m['verdict']}",
                    "match": "yes" if f["helps"] == (m["verdict"] == HELPS) else "no"})
    return md_table(pd.DataFrame(out))


def forecast_facts(studies: list[tuple[StudyResults, pd.DataFrame]], margin: float) -> tuple[str, dict]:
    """``(table, score)`` for the postmortem's Q6 and the benchmark page: the score over every
    situation, and separately over the *held-out* studies (forecast stored before the study's first
    fused run: ``held``) and the *design* studies (the predictor was chosen on them: ``design``).
    The score's ``n`` is 0 when no situation qualifies."""
    rows = forecast_rows(studies, margin)
    if not rows:
        return forecast_table(rows, margin), {"n": 0}
    score = {**forecast_score(rows, margin), "rows": rows}
    for name, part in (("held", [r for r in rows if r["held_out"]]), ("design", [r for r in rows if not r["held_out"]])):
        score[name] = {**forecast_score(part, margin), "names": sorted({r["study"] for r in part})} if part else {"n": 0}
    sq = [(r["forecast"]["p_helps"] - (r["measured"]["verdict"] == HELPS)) ** 2
          for r in rows if r["forecast"]["p_helps"] == r["forecast"]["p_helps"]]
    score["brier"] = float(np.mean(sq)) if sq else float("nan")
    return forecast_table(rows, margin), score


def _group_sentence(g: dict, label: str) -> str:
    if not g.get("n"):
        return f"No {label} situation is stored."
    kappa = (f"Cohen's kappa {g['kappa']:.2f}" + (f" (study-clustered 95% [{g['kappa_iv'][0]:.2f}, {g['kappa_iv'][1]:.2f}])"
                                                   if g["kappa_iv"][0] == g["kappa_iv"][0] else "")
             if g["kappa"] == g["kappa"] else "Cohen's kappa undefined (one side is constant)")
    r = (f"Pearson r of forecast and measured gain {g['r']:.2f}" + (f" (study-clustered 95% [{g['r_iv'][0]:.2f}, {g['r_iv'][1]:.2f}])"
                                                                       if g["r_iv"][0] == g["r_iv"][0] else "")
         if g["r"] == g["r"] else "the gains' correlation is undefined")
    beats = "beats" if g["hits"] > g["constant"] else "does not beat"
    return (f"**{label.capitalize()}** ({g['n']} situations of {g['studies']} {'study' if g['studies'] == 1 else 'studies'}: "
            f"{', '.join(f'`{n}`' for n in g['names'])}): the forecast's helps-or-not label matched the measured one in "
            f"{g['hits']} ({100 * g['rate']:.0f}%), the constant \"fusion {g['constant_says']}\" in {g['constant']} — it {beats} "
            f"the constant; {kappa}; {r}; all four labels equal in {g['labels_equal']}; mean absolute error {g['mae']:.4f}, "
            f"mean forecast − measured {g['bias']:+.4f}. Against \"the measured point estimate exceeds the margin\" "
            f"(which does not depend on the measurement's power) it matched {g['point_hits']}, the constant {g['point_constant']}.")


def forecast_text(q6: dict) -> str:
    """Q6's and the benchmark page's verdict on the forecast, every clause a computed condition."""
    if not q6.get("n"):
        return ""
    out = [_group_sentence(q6["held"], "held out"), _group_sentence(q6["design"], "design")]
    brier = f" Brier score of P(helps) over all {q6['n']}: {q6['brier']:.3f}." if q6["brier"] == q6["brier"] else ""
    held = q6["held"]
    goal = ("met" if held.get("n") and held["rate"] >= 0.9 and held["hits"] > held["constant"] and held["r"] >= 0.8
            else "not met")
    return ("\n\n".join(f"- {o}" for o in out) + "\n\n" +
            "Held-out studies are those whose forecasts were stored before their earliest stored fused run (the records' "
            "timestamps), other than the design studies: the predictor was chosen on "
            f"{', '.join(f'`{d}`' for d in DESIGN_STUDIES)} after their results existed (marked † in the table; they "
            f"stay design studies when retrained).{brier} The target the project's issue 19 set for the forecast (hit rate ≥ 90% and "
            f"above the constant, r ≥ 0.8), on the held-out situations: {goal}. Situations of one study share rows and models, hence the study-clustered intervals; a "
            "measured label whose lower bound sits near the margin is a low-power call, and a binary hit counts an "
            "\"equivalent\" forecast against a measured \"hurts\" as a match.")
