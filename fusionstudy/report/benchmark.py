"""The cross-dataset benchmark page (``docs/benchmark.md``): every bundled dataset and planted scenario,
judged the same way, from their stored results (``results/<study>/``).

Per study: best unimodal, best neural and best classical fusion (pooled over splits), the primary
contrast (``report.primary`` against every unimodal candidate, intersection–union rule, Nadeau–Bengio
interval over splits), dominance (text − tabular unimodal, pooled), removal robustness (the primary
model with each modality unknown: conditional removal, main split), and the before-fusion forecast
against the measured primary gain; then the forecast scored over every situation (postmortem Q6's
table) and one figure: the primary gain per study with its interval, the margin and the forecast.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from fusionstudy.analysis.forecast import situation_forecast
from fusionstudy.analysis.pooled import pooled_models
from fusionstudy.analysis.verdicts import removal_table
from fusionstudy.records import StudyResults, load_study
from fusionstudy.report.experiments import summary_of
from fusionstudy.report.figures import figure_benchmark
from fusionstudy.report.forecast import DESIGN_STUDIES, forecast_facts, forecast_text
from fusionstudy.report.formats import fmt_d, fmt_iv, md_table
from fusionstudy.report.pooled import pooled_estimate, primary_facts

REAL = ("clothing", "clothing_no_rating", "faa_strikes", "lending_club")  # the bundled studies, default first
PLANTED = ("scenario_independent", "scenario_redundant", "scenario_text_only_signal", "scenario_interaction",
           "scenario_dominant_modality")
PLANTED_TRUTH = {"scenario_independent": "helps", "scenario_redundant": "equivalent",
                 "scenario_text_only_signal": "equivalent", "scenario_interaction": "helps",
                 "scenario_dominant_modality": "helps"}  # data/scenarios.py: the Bayes answers


def benchmark_folders(root: Path) -> list[Path]:
    """The stored studies of the benchmark under ``root/results``, real datasets first."""
    return [root / "results" / n for n in REAL + PLANTED if (root / "results" / n / "study.json").is_file()]


def _best(models: pd.DataFrame, mask) -> str:
    top = models[mask]
    return "—" if top.empty else f"`{top.iloc[0].model}` {top.iloc[0]['mean']:.4f}"


def _removal(res: StudyResults, s: pd.DataFrame, model: str, margin: float) -> str:
    t = removal_table(res, s, [model], margin)
    if t.empty:
        return "—"
    row, out = t.iloc[0], []
    for m in ("text", "tabular"):
        v = row.get(f"remove_conditional:{m}")
        if isinstance(v, dict):
            out.append(f"{m} unknown {v['value'] - row['test']['value']:+.4f}")
    return "; ".join(out) or "—"


def _best_gap(res: StudyResults, models: pd.DataFrame, single) -> dict | None:
    """The best fused model (any kind, pooled) minus the best single-modality one, pooled; a
    best-on-test comparison, descriptive only (both picked on the test means)."""
    fused, uni = models[~single], models[single]
    if fused.empty or uni.empty:
        return None
    d = pooled_estimate(res, fused.iloc[0].model, uni.iloc[0].model)
    return {**d, "a": fused.iloc[0].model, "b": uni.iloc[0].model} if d else None


def study_row(res: StudyResults) -> dict:
    """The benchmark facts of one study (raw values; :func:`render_benchmark` formats them)."""
    s = summary_of(res)
    margin = res.config["report"]["margin"]
    models = pooled_models(res)
    single = ~models.modalities.str.contains("+", regex=False)
    prim = primary_facts(res)
    dom = pooled_estimate(res, "text_only", "tabular_only")
    fc = situation_forecast(res, "", margin)
    b = prim["binding_gain"] if prim else None
    mods = dict(zip(models.model, models.modalities))
    adding = {}
    for m in ("text", "tabular"):  # the value of adding modality m: the gain over the strongest candidate without it
        without = [g for g in (prim["gains"] if prim else []) if mods.get(g["vs"]) not in (None, m)]
        adding[m] = min(without, key=lambda g: g["value"]) if without else None
    times = sorted(r.time for r in res.runs + res.resplits if r.kind == "fusion")
    fc_git = sorted({f.git[:7] for f in res.forecasts})
    fc_time = min((f.created for f in res.forecasts), default="")
    return {"study": res.name, "rows": sum(res.split["stats"]["split_sizes"].values()), "classes": len(res.split.get("classes", [])) or 2,
            "splits": prim["k"] if prim else 1, "seeds": len(res.config["study"].get("split_seeds") or res.config["study"]["seeds"]),
            "best_uni": _best(models, single), "best_neural": _best(models, ~single & (models.kind == "fusion")),
            "best_classical": _best(models, ~single & (models.kind == "reference")),
            "verdict": prim["verdict"] if prim else "n/a", "binding": prim["binding"] if prim else None, "gain": b,
            "dominance": dom, "removal": _removal(res, s, res.config["report"].get("primary", "early_concat"), margin),
            "adding": adding, "forecast": fc, "sensitivity": prim["sensitivity"] if prim else None, "best_gap": _best_gap(res, models, single), "margin": margin, "truth": PLANTED_TRUTH.get(res.name),
            "forecast_git": ", ".join(fc_git), "forecast_time": fc_time, "first_fused_time": times[0] if times else ""}


def _knife_edge(r: dict) -> str:
    """The binding bound's sensitivity when another defensible correction would move it across the
    margin (``analysis.pooled.sensitivity``); ``""`` otherwise."""
    sens, m = r["sensitivity"], r["margin"]
    if not sens:
        return ""
    los = [v["lo"] for v in sens["ratios"].values()] + list(sens["loo_lo"] or [])
    if min(los) <= m < max(los):
        return (f" (knife-edge: the lower bound ranges {min(los):+.5f} to {max(los):+.5f} over other corrections and "
                "leaving one split out)")
    return ""


def _gain(g: dict | None, margin: float) -> str:
    return f"{fmt_d({**g, 'margin': margin})} (`{g['vs']}`)" if g else "—"


def _cells(r: dict) -> dict:
    g, f, m = r["gain"], r["forecast"], r["margin"]
    return {"study": f"`{r['study']}`", "rows": f"{r['rows']:,}", "splits × seeds": f"{r['splits']} × {r['seeds']}",
            "best unimodal": r["best_uni"], "best neural fusion": r["best_neural"], "best classical fusion": r["best_classical"],
            "primary: early_concat − every unimodal [95%]": (f"{fmt_d({**g, 'margin': m})} vs `{r['binding']}`: **{r['verdict']}**"
                                                              + _knife_edge(r) if g else r["verdict"]),
            "planted truth": r["truth"] or "—",
            "best fusion − best unimodal (any kind; descriptive)": (f"{fmt_d(r['best_gap'])} (`{r['best_gap']['a']}` − "
                                                                     f"`{r['best_gap']['b']}`)" if r["best_gap"] else "—"),
            "early_concat − best candidate without text [95%]": _gain(r["adding"]["text"], m),
            "early_concat − best candidate without the table [95%]": _gain(r["adding"]["tabular"], m),
            "text − tabular (pooled)": fmt_d(r["dominance"]) if r["dominance"] else "—",
            "modality unknown (conditional removal), Δ ROC-AUC estimate": r["removal"],
            "forecast [95%], P(helps)": (f"{fmt_iv(f['gain'], f['lo'], f['hi'], True, m)} {f['verdict']}, {f['p_helps']:.2f}"
                                         if f else "—")}


def _verdict_sentence(real: list[dict], planted: list[dict], planted_ok: int) -> str:
    said = ", ".join(f"`{r['study']}` {r['verdict']}" for r in real) or "nothing"
    out = f"Studies of real data: {len(real)} (a dataset and a variant of it count twice); the primary contrast says {said}."
    if planted:
        wrong = ", ".join(f"`{r['study']}` {r['verdict']} vs {r['truth']}" for r in planted if r["verdict"] != r["truth"])
        out += f" Planted scenarios: the verdict equals the planted truth in {planted_ok} of {len(planted)}"
        out += f" ({wrong})." if wrong else "."
    return out


VERDICT_COLUMNS = ("study", "rows", "splits × seeds", "primary: early_concat − every unimodal [95%]", "planted truth",
                   "forecast [95%], P(helps)")


def _tables(rows: list[dict]) -> str:
    """The verdicts table, then the details (each row keyed by its study)."""
    cells = pd.DataFrame([_cells(r) for r in rows])
    details = ["study"] + [c for c in cells if c not in VERDICT_COLUMNS]
    return (md_table(cells[list(VERDICT_COLUMNS)]) + "\n\nWhat each study's models reach, pooled over its splits "
            "(estimates with their intervals; the best-on-test rows are descriptive):\n\n" + md_table(cells[details]))


def render_benchmark(folders: list[Path], dest: Path) -> str:
    """Write the benchmark page for the studies in ``folders`` to ``dest`` (figure beside it in
    ``dest.parent/figures/benchmark_gain.png``); returns the text."""
    studies = [load_study(f) for f in folders]
    rows = [study_row(r) for r in studies]
    margin = rows[0]["margin"] if rows else 0.005
    fig = figure_benchmark([r for r in rows if r["gain"]], margin, dest.parent / "figures" / "benchmark_gain.png")
    q6_table, q6 = forecast_facts([(r, summary_of(r)) for r in studies], margin)
    real = [r for r in rows if r["truth"] is None]
    planted = [r for r in rows if r["truth"] is not None]
    planted_ok = sum(r["verdict"] == r["truth"] for r in planted)
    order = "\n".join(f"- `{r['study']}`: forecasts made by commit {r['forecast_git'] or 'n/a'} at {r['forecast_time'] or 'n/a'}; "
                      f"earliest stored fused run trained at {r['first_fused_time'] or 'n/a'}"
                      + (" (a design study: the predictor was chosen after its earlier results had been seen)"
                         if r["study"] in DESIGN_STUDIES else "") for r in rows)
    lines = [
        "# Benchmark: is the second modality worth it, dataset by dataset",
        "",
        "Generated by `fusionstudy benchmark` (`make benchmark`) from `results/<study>/`; do not edit by hand. Every study",
        "is judged the same way: repeated random splits pooled with the Nadeau–Bengio corrected interval, early fusion",
        "against *every* unimodal candidate (neural and classical; intersection–union rule, margin "
        f"{margin}), removal with the modality unknown (conditional), and the before-fusion forecast (docs/forecast.md);",
        "the last section says, per study, whether its forecasts were stored before its earliest stored fused run. Pooled test",
        "ROC-AUC is the mean of per-split seed means.",
        "",
        "## Per study",
        "",
        _tables(rows) if rows else "No benchmark study is stored.",
        "",
        f"![primary gain per study]({os.path.relpath(fig, dest.parent)})" if fig else "",
        "",
        _verdict_sentence(real, planted, planted_ok),
        "",
        "## The before-fusion forecast against what was measured",
        "",
        q6_table,
        "",
    ]
    if q6.get("n"):
        lines += [forecast_text(q6), ""]
    lines += ["## When the forecasts were made", "", order, ""]
    text = "\n".join(lines)
    dest.write_text(text)
    return text
