"""The postmortem: six questions answered from the stored results of every study.

Numbers and verdicts come from ``analysis.tables`` and ``analysis.verdicts``; the prose is in
``templates/postmortem.md.j2`` and every data-dependent sentence there is conditional on a
computed value here.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2

from fusionstudy.analysis.pooled import decisions_at_val_threshold, fused_vs_unimodal, split_means
from fusionstudy.analysis.remedies import emap_table, pid_table, remedy_table, share_difference
from fusionstudy.analysis.tables import (
    eval_frame,
    imbalance_points,
    scaling_slopes,
    unimodal,
    unimodal_name,
)
from fusionstudy.analysis.trends import sweep_trends
from fusionstudy.analysis.verdicts import (
    EQUIVALENT,
    HELPS,
    HURTS,
    INCONCLUSIVE,
    baselines,
    difference,
    gains_table,
    subset_interval,
    value,
)
from fusionstudy.records import StudyResults, load_study
from fusionstudy.registry import LATE_FUSIONS
from fusionstudy.report.experiments import environment, rules, summary_of
from fusionstudy.report.figures import figure_forest
from fusionstudy.report.forecast import forecast_facts, forecast_text
from fusionstudy.report.formats import ci_cell, fmt_d, fmt_int, fmt_iv, fmt_num, md_table
from fusionstudy.report.interaction import REMEDY_PAPERS, point_name
from fusionstudy.report.pooled import pooled_best, pooled_estimate, primary_facts
from fusionstudy.report.robustness import trend_cell


def _study_facts(res: StudyResults, s: pd.DataFrame, margin: float) -> dict:
    """Headline and Q1 facts of one study: best model, early fusion vs the best unimodal model,
    the best classical fusion vs early fusion, who helps."""
    ds = res.config["dataset"]
    about = f"text: {', '.join(ds['text']) or 'none'}; tabular: {', '.join(ds['categorical'] + ds['numeric']) or 'none'}"
    base, g = baselines(s), gains_table(res, s, margin)
    out = {"name": res.name, "about": about, "best": s.sort_values("test_roc_auc_mean", ascending=False).iloc[0],
           "fusion": None, "runner_up": None, "classical": None, "gains": g, "neural": {}, "classical_by": {},
           "beat_classical": [], "classical_wins": False, "best_fused": None, "pooled": primary_facts(res)}
    if "early_concat" in set(s.model) and base["unimodal"]:
        out["fusion"] = {"vs": base["unimodal"], "d": difference(res, ("early_concat", "test", ""),
                                                                  (base["unimodal"], "test", ""), margin)}
        one = s[~s.modalities.str.contains(r"\+", regex=True) & (s.regime == "plain")].sort_values(
            "val_roc_auc_mean", ascending=False)
        if len(one) > 1:  # how much the verdict depends on which unimodal model won on validation
            r1, r2 = one.iloc[0], one.iloc[1]
            out["runner_up"] = {"name": r2.model, "val_gap": r1.val_roc_auc_mean - r2.val_roc_auc_mean,
                                "d": difference(res, ("early_concat", "test", ""), (r2.model, "test", ""), margin)}
    if base["classical"] and "early_concat" in set(s.model):
        pooled = pooled_estimate(res, base["classical"], "early_concat")
        out["classical"] = {"name": base["classical"], "pooled": pooled is not None,
                            "d": pooled or difference(res, (base["classical"], "test", ""), ("early_concat", "test", ""), margin)}
    out["pooled_best"] = pooled_best(res)
    if not g.empty:
        neural, cls = g[g.kind != "reference"], g[g.kind == "reference"]
        by = lambda d: {v: list(d[d.unimodal_verdict == v].model) for v in (HELPS, EQUIVALENT, INCONCLUSIVE, HURTS)}  # noqa: E731
        out.update(neural=by(neural), classical_by=by(cls), beat_classical=list(neural[neural.classical_verdict == HELPS].model))
        fused = s[s.model.isin(g.model)].sort_values("test_roc_auc_mean", ascending=False)
        out["best_fused"] = fused.model.iloc[0]
        out["classical_wins"] = fused.kind.iloc[0] == "reference"
    return out


def _q1_pooled(studies: list[tuple[StudyResults, pd.DataFrame]], margin: float) -> str | None:
    """Every fused model of every study with repeated splits against every unimodal candidate:
    pooled Δ test ROC-AUC [corrected 95% interval]; estimates, no labels (the primary's is the headline)."""
    rows = []
    for res, _ in studies:
        table = split_means(res)
        if table.split.nunique() < 2:
            continue
        fused = table[table.modalities.str.contains("+", regex=False)]
        for m in fused.groupby("model").value.mean().sort_values(ascending=False).index:
            g = fused_vs_unimodal(res, m, margin, table)
            rows.append({"study": res.name, "fused model": m, "splits": str(table[table.model == m].split.nunique()),
                         **{f"Δ vs {x['vs']}": fmt_iv(x["value"], x["lo"], x["hi"], True, margin) for x in g["gains"]}})
    return md_table(pd.DataFrame(rows).fillna("—")) if rows else None


def _q1_table(facts: list[dict], summaries: list[pd.DataFrame], margin: float) -> str:
    rows = []
    for f, s in zip(facts, summaries):
        for r in f["gains"].itertuples():
            row = s[s.model == r.model].iloc[0]
            rows.append({"study": f["name"], "fused model": r.model, "kind": r.kind,
                         "test ROC-AUC [95%]": fmt_iv(row.test_roc_auc_mean, row.test_roc_auc_lo, row.test_roc_auc_hi),
                         "Δ vs best unimodal": f"{fmt_iv(r.unimodal_diff, r.unimodal_lo, r.unimodal_hi, True, margin)} ({r.vs_unimodal})",
                         "Δ vs best classical fusion": f"{fmt_iv(r.classical_diff, r.classical_lo, r.classical_hi, True, margin)} "
                                                       f"({r.vs_classical})" if r.vs_classical else "n/a"})
    return md_table(pd.DataFrame(rows)) if rows else "No fused model in any study."


def _costs(res: StudyResults, s: pd.DataFrame, vs: str | None) -> dict | None:
    """ECE, decisions at each model's validation-chosen threshold, parameters and train time of
    ``early_concat`` and the unimodal model ``vs`` (main split, seed means)."""
    if vs is None or "early_concat" not in set(s.model):
        return None
    u, f = s[s.model == vs].iloc[0], s[s.model == "early_concat"].iloc[0]
    du, df = decisions_at_val_threshold(res, vs), decisions_at_val_threshold(res, "early_concat")
    return {"vs": vs, "binary": len(res.split["classes"]) == 2, "ece_uni": u.test_ece_mean, "ece_fused": f.test_ece_mean, "rec_uni": du["minority_recall"],
            "rec_fused": df["minority_recall"], "bal_uni": du["balanced_accuracy"], "bal_fused": df["balanced_accuracy"],
            "f1_uni": du["f1"], "f1_fused": df["f1"], "uni": du, "fused": df, "params_uni": u.params_total, "params_fused": int(f.params_total),
            "secs_uni": u.train_seconds_mean, "secs_fused": f.train_seconds_mean}


def _q2(res: StudyResults, s: pd.DataFrame, margin: float) -> tuple[str, dict]:
    fused = s[s.modalities.str.contains(r"\+", regex=True)].sort_values("test_roc_auc_mean", ascending=False)
    rows, verdicts = [], {}
    for r in fused.itertuples():
        d = None if r.model == "early_concat" or "early_concat" not in set(s.model) else \
            difference(res, (r.model, "test", ""), ("early_concat", "test", ""), margin)
        verdicts[r.model] = d["verdict"] if d else ""
        rows.append({"model": r.model, "kind": r.kind, "test ROC-AUC [95%]": fmt_iv(r.test_roc_auc_mean, r.test_roc_auc_lo,
                                                                                      r.test_roc_auc_hi),
                     "Δ vs early_concat [95%]": fmt_d(d) if d else "(reference)",
                     "total params": fmt_int(r.params_total), "seed std": "n/a" if r.seeds < 2 else f"{r.test_roc_auc_std:.4f}",
                     "train s": f"{r.train_seconds_mean:.1f}"})
    top = fused.iloc[0] if len(fused) else None
    return md_table(pd.DataFrame(rows)), {"top": top.model if top is not None else "none",
                                          "top_kind": top.kind if top is not None else "",
                                          "by": {x: [m for m, v in verdicts.items() if v == x]
                                                 for x in (HELPS, EQUIVALENT, INCONCLUSIVE, HURTS)}}


def _majority_share(res: StudyResults, model: str, majority: int) -> float:
    """Share of test rows a fused model assigns to the majority (most frequent test) class — its most
    probable class, i.e. threshold 0.5 for two classes — with the tabular side removed (seed mean)."""
    n_cls = len(res.split["classes"])
    p = [res.preds[r.run_key].proba("remove:tabular", n_cls) for r in res.runs
         if r.model == model and r.training.regime != "weakened" and "remove:tabular" in res.preds[r.run_key].perturbed]
    return float(np.mean([np.mean(x.argmax(axis=1) == majority) for x in p])) if p else float("nan")


def _q3(res: StudyResults, s: pd.DataFrame, margin: float) -> dict | None:
    fused = list(s[s.kind == "fusion"].model)
    if "early_concat" not in fused or not unimodal_name(s, "text") or not unimodal_name(s, "tabular"):
        return None
    ev = eval_frame(res.evals, res.runs)
    ev = ev[(ev.weaken == "") & (ev.subset == "test")]
    miss = lambda m, mod: ci_cell(ev[(ev.model == m) & (ev.perturbation == "missing") & (ev.modality == mod)].roc_auc)  # noqa: E731
    rows_missing = np.flatnonzero(np.asarray(res.split.get("text_missing_test", [])))
    cond = "remove_conditional" if any("remove_conditional:text" in res.preds[r.run_key].perturbed
                                       for r in res.runs if r.model == "early_concat") else "remove"
    rows = [{"model": m, "clean": fmt_d(value(res, m), False),
             "no text: unknown (conditional)": fmt_d(value(res, m, f"{cond}:text"), False),
             "no text: random row's (interventional)": fmt_d(value(res, m, "remove:text"), False),
             "text missing (own encoding)": miss(m, "text"),
             "no tabular: unknown (conditional)": fmt_d(value(res, m, f"{cond}:tabular"), False),
             "no tabular: random row's (interventional)": fmt_d(value(res, m, "remove:tabular"), False),
             "tabular missing (own encoding)": miss(m, "tabular"),
             "rows without text": fmt_d(subset_interval(res, m, rows_missing), False) if len(rows_missing) else "n/a"}
            for m in fused]
    ut, ub = unimodal_name(s, "text"), unimodal_name(s, "tabular")
    counts = np.bincount(np.asarray(res.split["y_test"]), minlength=len(res.split["classes"]))
    share = {m: _majority_share(res, m, int(np.argmax(counts))) for m in fused}
    majority = share["early_concat"]
    acc = float(ev[(ev.model == "early_concat") & (ev.perturbation == "remove") & (ev.modality == "tabular")].accuracy.mean())
    out = {"table": md_table(pd.DataFrame(rows)), "n_missing": len(rows_missing), "uni_tab": ub, "uni_text": ut,
           "conditional": cond == "remove_conditional",
           "no_text": value(res, "early_concat", f"{cond}:text"), "no_tab": value(res, "early_concat", f"{cond}:tabular"),
           "no_tab_int": value(res, "early_concat", "remove:tabular"),
           "vs_tab": difference(res, ("early_concat", f"{cond}:text", ""), (ub, "test", ""), margin),
           "vs_text": difference(res, ("early_concat", f"{cond}:tabular", ""), (ut, "test", ""), margin),
           "majority": majority if majority >= 0.98 else None, "acc": acc, "majority_rate": float(counts.max() / counts.sum()),
           "majority_class": res.split["classes"][int(np.argmax(counts))],
           "also_majority": [m for m, v in share.items() if v >= 0.98 and m != "early_concat"],
           "moddrop": None, "moddrop_p": res.config["study"]["moddrop_p"]}
    md = s[(s.regime == "moddrop") & (s.fusion == "early_concat")].model
    if len(md):  # ModDrop trains on the model's own missing input: judge it there (seed means ± t-interval)
        m = md.iloc[0]
        out["moddrop"] = {"model": m, "clean": value(res, m), "miss_text": miss(m, "text"), "miss_tab": miss(m, "tabular"),
                          "plain_miss_text": miss("early_concat", "text"), "plain_miss_tab": miss("early_concat", "tabular")}
    return out


def _remedy_facts(res: StudyResults, margin: float) -> dict | None:
    """Q3's dominance facts from Part 5's remedies (``analysis.remedies``): per remedy × point, the
    weak modality's Shapley share and value, remedy vs plain on their common seeds, with paired
    intervals Bonferroni-corrected over the comparisons (``level``). A share counts as ``raised`` /
    ``lowered`` when its corrected interval excludes zero *and* the Shapley value moves by more than
    ``margin`` (ROC-AUC) the same way; ``small``: the interval excludes zero but the value moves by
    less; ``nothing``: the weak modality's Shapley value is within ±``margin`` with and without the
    remedy (its share is then a ratio of noise); ``unmoved``: the rest. Cells read
    ``"<remedy> at <point>: <weak> <plain> → <remedy> (<change> [lo, hi]; Shapley value <a> → <b>)"``.
    ``None`` without remedy runs."""
    t = remedy_table(res, margin)
    if t.empty:
        return None
    level = 1 - 0.05 / len(t)
    groups: dict[str, list[str]] = {k: [] for k in ("raised", "lowered", "small", "nothing", "unmoved")}
    for r in t.itertuples():
        d = share_difference(res, r.model, r.plain, r.tag, r.weak, level)
        name = f"{REMEDY_PAPERS.get(r.remedy, r.remedy)} at {point_name(r.tag)}"
        phi = f"Shapley value {d['phi_plain']:+.4f} → {d['phi_model']:+.4f}"
        if max(abs(d["phi_plain"]), abs(d["phi_model"])) <= margin:
            groups["nothing"].append(f"{name} ({r.weak}: {phi})")
            continue
        cell = f"{name}: {r.weak} share change {fmt_iv(d['value'], d['lo'], d['hi'], signed=True)}, {phi}"
        if d["lo"] > 0:
            groups["raised" if d["phi"] > margin else "small"].append(cell)
        elif d["hi"] < 0:
            groups["lowered" if d["phi"] < -margin else "small"].append(cell)
        else:
            groups["unmoved"].append(name)
    return {"n": len(t), "seeds": int(t.seeds.min()), "level": f"{100 * level:.1f}", "margin": margin, **groups,
            "verdicts": dict(t.verdict.value_counts()), "helps": [r.model for r in t.itertuples() if r.verdict == HELPS]}


def _interaction_facts(res: StudyResults, margin: float) -> dict | None:
    """Q6's data-level facts of the main study: EMAP gaps of the fused models that can model an
    interaction (``emap_table``; late fusions, which add two logit vectors, are additive by
    construction and counted apart: ``additive``), with ``within`` = every interval inside ±margin,
    ``above`` = models whose interval lies above 0, ``widest`` = the model whose interval reaches
    farthest from 0; and the PID atoms' shares of the unimodal test predictions (``pid_table``,
    point estimates; the report shows no PID interval)."""
    e, p = emap_table(res), pid_table(res, n_boot=0)
    if e.empty and p.empty:
        return None
    emap = None
    late = {r.model for r in res.runs if r.fusion in LATE_FUSIONS}
    additive = sorted(set(e.model) & late) if not e.empty else []
    e = e[~e.model.isin(late)] if not e.empty else e
    if not e.empty:
        w = e.loc[np.maximum(e.hi.abs(), e.lo.abs()).idxmax()]
        emap = {"n": int(e.n.iloc[0]), "models": len(e), "additive": [f"`{m}`" for m in additive],
                "within": bool(((e.lo >= -margin) & (e.hi <= margin)).all()),
                "above": [f"`{r.model}` {fmt_iv(r.gap, r.lo, r.hi, signed=True)}" for r in e.itertuples() if r.lo > 0],
                "widest": f"`{w.model}` {fmt_iv(w.gap, w.lo, w.hi, signed=True)}"}
    pid = None
    if not p.empty:
        share = p.set_index("atom").share
        pid = {k: float(share[k]) for k in ("redundancy", "unique_text", "unique_tabular", "synergy")}
        pid["largest"] = max(pid, key=pid.get)
        pid["text_adds"] = pid["unique_text"] + pid["synergy"]
        pid["tabular_adds"] = pid["unique_tabular"] + pid["synergy"]
    return {"study": res.name, "emap": emap, "pid": pid, "margin": margin}


def _q4(res: StudyResults, s: pd.DataFrame) -> tuple[str, dict]:
    s = s[s.kind.isin(["unimodal", "fusion"])]
    uni, fused = s[s.kind == "unimodal"], s[s.kind == "fusion"]
    rows = [{"group": name, "models": str(len(g)), "mean seed std": f"{g.test_roc_auc_std.mean():.4f}",
             "max seed range": f"{g.test_roc_auc_range.max():.4f}", "diverged runs": str(int(g.diverged.sum())),
             "mean val-loss roughness": fmt_num(g.val_loss_roughness_mean.mean()),
             "mean epochs to best": f"{g.epochs_to_best_mean.mean():.2f}",
             "mean train-val gap": f"{g.train_val_gap_mean.mean():.4f}"} for name, g in (("unimodal", uni), ("fused", fused))
            if len(g)]
    text_models = set(s[s.modalities.str.contains("text")].model)
    text_runs = [r for r in res.runs if r.model in text_models and r.training.regime != "weakened" and r.best_epoch]
    worst = fused.sort_values("test_roc_auc_std", ascending=False).iloc[0] if len(fused) else uni.iloc[0]
    return md_table(pd.DataFrame(rows)), {
        "uni_std": uni.test_roc_auc_std.mean(), "fused_std": fused.test_roc_auc_std.mean() if len(fused) else float("nan"),
        "worst": worst.model, "worst_std": worst.test_roc_auc_std, "diverged": int(s.diverged.sum()), "runs": int(s.seeds.sum()),
        "text_epochs": float(np.mean([r.best_epoch for r in text_runs])) if text_runs else float("nan"),
        "tab_epochs": float(unimodal(s, "tabular").epochs_to_best_mean.mean()),
        "text_overfits": bool(text_runs) and np.mean([r.best_epoch < r.epochs_run for r in text_runs]) >= 0.5,
        "max_epochs": res.config["train"]["max_epochs"], "seeds": int(uni.seeds.max()),
        # the 95% chi-square interval of a standard deviation from k seeds, as multiples of it
        "std_range": [float(np.sqrt((int(uni.seeds.max()) - 1) / chi2.ppf(q, int(uni.seeds.max()) - 1))) for q in (0.975, 0.025)],
        "at_cap": {r.model: sum(x.best_epoch == res.config["train"]["max_epochs"] for x in res.runs
                                if x.model == r.model and x.training.regime == "plain")
                   for r in s.itertuples() if r.epochs_to_best_max == res.config["train"]["max_epochs"]}}


def _q5(res: StudyResults, s: pd.DataFrame) -> dict | None:
    if not res.scaling:
        return None
    wide, slopes = scaling_slopes(res.scaling)
    dmax = int(wide.index.max())
    trained = s[s.kind == "fusion"]
    return {"slopes": slopes, "dmin": int(wide.index.min()), "dmax": dmax,
            "linear": [f for f, v in slopes.items() if v < 1.5], "superlinear": [f for f, v in slopes.items() if v >= 1.5],
            "at_max": {f: int(wide.loc[dmax, f]) for f in wide.columns},
            "fusion_share_max": float((trained.params_fusion / trained.params_total).max()) if len(trained) else float("nan"),
            "text_share": float((trained.params_enc_text / trained.params_total).mean()) if len(trained) else float("nan")}


def _trends(res: StudyResults, s: pd.DataFrame, rl: dict) -> dict | None:
    """Part 5 in one paragraph: the primary fused model's gain trend per sweep (``analysis.trends``)
    and the labels of every fused model."""
    uni = {m: unimodal_name(s, m) for m in ("text", "tabular")}
    trends = sweep_trends(res, imbalance_points(res), uni, rl["margin"])
    if not trends:
        return None
    own = [t for t in trends if t["model"] == rl["primary"]]
    return {"model": rl["primary"], "study": res.name, "own": [{**t, "cell": trend_cell(t)} for t in own], "n": len(trends),
            "counts": {lab: sum(t["label"] == lab for t in trends) for lab in dict.fromkeys(t["label"] for t in trends)}}


def _contrast_sentence(facts: dict) -> str:
    p, f = facts["pooled"], facts["fusion"]
    if p is not None:
        b = p["binding_gain"]
        return (f"the primary contrast pooled over {p['k']} splits is **{p['verdict']}** (closest candidate "
                f"`{p['binding']}`: {fmt_d(b)}).") if b else f"the primary contrast is **{p['verdict']}**."
    if f is None:
        return "no early fusion was trained."
    return (f"early fusion against the best unimodal model `{f['vs']}` is {fmt_d(f['d'])} — **{f['d']['verdict']}**, "
            f"and the highest test ROC-AUC is `{facts['best'].model}`'s (a best-on-test statement, descriptive only).")


def render_postmortem(folders: list[Path], dest: Path, extra: list[Path] = ()) -> str:
    """Fill ``templates/postmortem.md.j2`` from the stored results of the studies in ``folders``
    (the first is the main study; the others are contrasts, e.g. the same data without a proxy).
    ``extra``: further studies (other datasets, planted scenarios) whose situations Q6 scores too."""
    studies = [(res, summary_of(res)) for res in (load_study(f) for f in folders)]
    main, s = studies[0]
    rl = rules(main)
    facts = [_study_facts(r, sm, rl["margin"]) for r, sm in studies]
    auc = main.split["stats"].get("column_auc") or {}
    proxies = [c for c, v in auc.items() if v >= rl["proxy_auc"]]
    same_data = main.config["dataset"]["source"]  # a contrast is the same table without the proxy columns
    missing_proxy = [f for (r, _), f in zip(studies[1:], facts[1:]) if r.config["dataset"]["source"] == same_data
                     and proxies and not set(proxies) & set(r.config["dataset"]["numeric"] + r.config["dataset"]["categorical"])]
    q2_table, q2 = _q2(main, s, rl["margin"])
    q4_table, q4 = _q4(main, s)
    q6_table, q6 = forecast_facts(studies + [(r, summary_of(r)) for r in map(load_study, extra)], rl["margin"])
    forest = figure_forest({r.name: sm for r, sm in studies}, main.folder / "figures" / "forest_roc_auc.png")
    ctx = {"studies": facts, "rules": rl, "n_test": len(main.split["y_test"]), "n_boot": main.config["study"]["bootstrap"],
           "marginal_k": main.config["study"].get("marginal_k", "K"), "proxies": proxies,
           "proxy_auc": {c: auc[c] for c in proxies},
           "contrast": {"name": missing_proxy[0]["name"], "sentence": _contrast_sentence(missing_proxy[0]),
                        "verdict": missing_proxy[0]["pooled"]["verdict"] if missing_proxy[0]["pooled"] else
                        missing_proxy[0]["fusion"]["d"]["verdict"] if missing_proxy[0]["fusion"] else None}
           if missing_proxy else None,
           "forest_fig": os.path.relpath(forest, dest.parent),
           "primary_fig": os.path.relpath(main.folder / "figures" / "primary_contrast.png", dest.parent)
           if (main.folder / "figures" / "primary_contrast.png").is_file() else None, "q1_table": _q1_table(facts, [sm for _, sm in studies], rl["margin"]),
           "costs": _costs(main, s, baselines(s)["unimodal"]), "q1_pooled": _q1_pooled(studies, rl["margin"]), "q2_table": q2_table, "q2": q2,
           "q3": _q3(main, s, rl["margin"]), "remedies": _remedy_facts(main, rl["margin"]),
           "interaction": _interaction_facts(main, rl["margin"]), "q4_table": q4_table, "q4": q4, "q5": _q5(main, s),
           "q6_table": q6_table, "q6": q6, "q6_text": forecast_text(q6), "trends": _trends(main, s, rl),
           "datasets": list(dict.fromkeys(r.config["dataset"].get("source", r.name) for r, _ in studies)),
           "encoder": main.config.get("text", {}).get("encoder", "bag"), "n_classes": len(main.split["classes"]), "imb_seeds": len({r.seed for r in main.runs if r.training.regime == "weakened"})}
    env = environment()
    env.filters.update(diff0=lambda d: fmt_d(d, False), f1=lambda v: f"{v:.1f}")
    return env.get_template("postmortem.md.j2").render(ctx)
