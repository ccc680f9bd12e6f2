"""Analysis: stored records -> pandas tables of numbers and verdicts. Pure: no file I/O, no prose.

Every function takes typed records (``records``) or tables made from them and returns numbers;
``report.experiments`` and ``report.postmortem`` turn them into Markdown, ``report.figures`` into plots. What a
model *is* comes from its record's fields (``kind``, ``modalities``, ``fusion``, ``training``),
never from its name.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fusionstudy.analysis.verdicts import probas
from fusionstudy.locations import PACKAGE
from fusionstudy.metrics import curve_roughness, mean_ci, perceptual_score, rms_grad_ratio
from fusionstudy.records import EvalRecord, RunRecord, StudyResults

# presentation order of the built-in models; other names follow alphabetically
MODEL_ORDER = ["ref_tfidf_logreg", "ref_hist_gbdt", "text_only", "tabular_only", "early_concat",
               "late_logit_avg", "late_ensemble", "gmu", "attention", "late_learned", "tfn", "lmf"]
PARAM_PARTS = ("enc_text", "enc_tabular", "fusion", "head", "total")
METRICS = ("roc_auc", "pr_auc", "f1", "f1_val_threshold", "accuracy", "balanced_accuracy", "minority_recall",
           "log_loss", "ece")


def ordered_models(names) -> list[str]:
    """Known models in report order, then any others alphabetically."""
    names = set(names)
    return [m for m in MODEL_ORDER if m in names] + sorted(names - set(MODEL_ORDER))


def plain(runs: list[RunRecord]) -> list[RunRecord]:
    """Runs neither weakened nor remedied at training time (Parts 1-4 and references; ModDrop runs
    included): the Part 5 remedies have their own table (``analysis.remedies``)."""
    return [r for r in runs if r.training.regime not in ("weakened", "remedy")]


def _train_val_gap(r: RunRecord) -> float:
    c, b = r.curves or {}, r.best_epoch
    if not c or not b:
        return float("nan")
    train = c.get("train_eval_loss") or c["train_loss"]
    return float(c["val_loss"][b - 1] - train[b - 1])


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def summarize(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per model: what it is (kind, modalities, fusion, training regime), metrics as mean
    and 95% CI over seeds, parameter counts per component, time, and stability (seed std and
    range, epochs to best, train-val gap, diverged runs, val-loss roughness)."""
    rows = []
    by_model: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_model.setdefault(r.model, []).append(r)
    for model in ordered_models(by_model):
        rs = sorted(by_model[model], key=lambda r: r.seed)
        row = {"model": model, "part": rs[0].part, "seeds": len(rs)}
        for split in ("val", "test"):
            for metric in METRICS:
                mean, ci = mean_ci([r.metrics[split].get(metric, np.nan) for r in rs])
                row[f"{split}_{metric}_mean"], row[f"{split}_{metric}_ci95"] = mean, ci
        auc = np.array([r.metrics["test"]["roc_auc"] for r in rs])
        row["test_roc_auc_std"] = float(auc.std(ddof=1)) if len(auc) > 1 else 0.0
        row["test_roc_auc_range"] = float(auc.max() - auc.min())
        for p in PARAM_PARTS:
            row[f"params_{p}"] = rs[0].params.get(p, np.nan)
        row["train_seconds_mean"] = float(np.mean([r.train_seconds for r in rs]))
        row["samples_per_s_mean"] = float(np.mean([_nan(r.samples_per_s) for r in rs]))
        row["epochs_to_best_mean"] = float(np.mean([_nan(r.best_epoch) for r in rs]))
        row["epochs_to_best_min"] = min((r.best_epoch or 0) for r in rs)
        row["epochs_to_best_max"] = max((r.best_epoch or 0) for r in rs)
        row["train_val_gap_mean"] = float(np.mean([_train_val_gap(r) for r in rs]))
        row["val_loss_roughness_mean"] = float(np.mean([curve_roughness((r.curves or {}).get("val_loss", []))
                                                        for r in rs]))
        row["diverged"] = int(sum(bool(r.diverged) for r in rs))
        row.update(kind=rs[0].kind, modalities="+".join(rs[0].modalities), fusion=rs[0].fusion,
                   regime=rs[0].training.regime)
        rows.append(row)
    return pd.DataFrame(rows)


def unimodal(summary: pd.DataFrame, modality: str | None = None) -> pd.DataFrame:
    """The plainly trained unimodal rows of a summary (of one modality if given)."""
    s = summary[(summary.kind == "unimodal") & (summary.regime == "plain")]
    return s if modality is None else s[s.modalities == modality]


def unimodal_name(summary: pd.DataFrame, modality: str) -> str | None:
    """The name of the plainly trained unimodal model of ``modality``, or None."""
    s = unimodal(summary, modality)
    return None if s.empty else str(s.model.iloc[0])


def best_unimodal(summary: pd.DataFrame) -> str:
    """The unimodal model with the higher mean *validation* ROC-AUC (selection never uses test)."""
    return str(unimodal(summary).sort_values("val_roc_auc_mean", ascending=False).model.iloc[0])


def disagreement(res: StudyResults, summary: pd.DataFrame) -> dict:
    """How often the text and the tabular unimodal model (same seed; predicted class = threshold
    0.5, or the argmax for multi-class) disagree on test, and which one is right then; averaged
    over paired seeds. ``text_right`` is NaN when they never disagree."""
    y = np.asarray(res.split["y_test"])
    t = probas(res, unimodal_name(summary, "text"))
    b = probas(res, unimodal_name(summary, "tabular"))
    k = min(len(t), len(b))
    label = lambda p: (p[..., 1] >= 0.5).astype(int) if p.shape[-1] == 2 else p.argmax(axis=-1)  # noqa: E731
    pt, pb = label(t[:k]), label(b[:k])
    dis = pt != pb
    text_right = [(pt[i][dis[i]] == y[dis[i]]).mean() for i in range(k) if dis[i].any()]
    both_wrong = [((pt[i] != y) & (pb[i] != y)).mean() for i in range(k)]
    return {"disagree": float(dis.mean()), "n_disagree": float(dis.sum(axis=1).mean()),
            "text_right": float(np.mean(text_right)) if text_right else float("nan"),
            "both_wrong": float(np.mean(both_wrong)), "seeds": k}


def scaling_slopes(rows: list[dict]) -> tuple[pd.DataFrame, dict[str, float]]:
    """Wide table ``d x fusion`` of parameter counts plus the fitted log-log slope per fusion
    (least squares of log(params) on log(d); ~1 linear, ~2 quadratic)."""
    df = pd.DataFrame(rows)
    wide = df.pivot(index="d", columns="fusion", values="params")
    wide = wide[[c for c in df.fusion.unique()]]
    slopes = {f: float(np.polyfit(np.log(wide.index), np.log(wide[f]), 1)[0]) for f in wide.columns}
    return wide, slopes


def fusion_weight_stats(runs: list[RunRecord]) -> pd.DataFrame:
    """Per model with fusion weights (GMU gates, attention weights, learned late weights) and
    modality: the mean weight (mean ± 95% CI over seeds of the per-seed test mean) and the
    seed-averaged 5/50/95% quantiles of the per-sample weight."""
    rows = []
    by_model: dict[str, list[RunRecord]] = {}
    for r in plain(runs):
        if r.diagnostics and r.training.regime == "plain":
            by_model.setdefault(r.model, []).append(r)
    for model in ordered_models(by_model):
        rs = by_model[model]
        for key in rs[0].diagnostics:
            for mod in rs[0].diagnostics[key]:
                d = [r.diagnostics[key][mod] for r in rs]
                mean, ci = mean_ci([x["mean"] for x in d])
                q = np.mean([x["quantiles"] for x in d], axis=0)
                rows.append({"model": model, "weight": key, "modality": mod, "seeds": len(rs), "mean": mean,
                             "ci": ci, "q05": q[0], "q50": q[2], "q95": q[4]})
    return pd.DataFrame(rows)


def eval_frame(evals: list[EvalRecord], runs: list[RunRecord]) -> pd.DataFrame:
    """Evaluation records as a flat frame: model, kind and modalities (from the run record),
    seed, weaken ("" unless weakened at training time), perturbation, modality, severity,
    subset, n and every metric."""
    what = {r.run_key: (r.kind, "+".join(r.modalities)) for r in runs}
    rows = [{"model": e.model, "kind": what[e.run_key][0], "modalities": what[e.run_key][1], "seed": e.seed,
             "part": e.part, "weaken": e.training.tag, "perturbation": e.perturbation, "modality": e.modality,
             "severity": e.severity, "subset": e.subset, "n": e.n, **e.metrics}
            for e in evals if e.run_key in what]
    return pd.DataFrame(rows)


def shapley_two_player(v_full: float, v_text: float, v_tab: float, v_empty: float = 0.5) -> dict[str, float]:
    """Exact Shapley values of a two-modality game (Shapley, 1953). ``v_text`` is the score with
    only text (tabular removed), ``v_tab`` with only tabular; ``v_empty = 0.5`` is ROC-AUC of a
    constant score. The two values sum to ``v_full - v_empty``."""
    return {"text": 0.5 * ((v_text - v_empty) + (v_full - v_tab)),
            "tabular": 0.5 * ((v_tab - v_empty) + (v_full - v_text))}


def dominance(ev: pd.DataFrame) -> pd.DataFrame:
    """Per fused model and seed on the test split: clean ROC-AUC, ROC-AUC with each modality
    removed (marginalised), the two Shapley values and the text share, and the perceptual score
    of each modality (Gat et al., 2021: the relative drop when the modality is permuted across
    rows, ``metrics.perceptual_score``; NaN without shuffles)."""
    t = ev[ev.subset == "test"]
    rows = []
    for (model, seed, weaken), g in t.groupby(["model", "seed", "weaken"], sort=False):
        scores: dict[tuple, list] = {}  # (perturbation, modality) -> the group's ROC-AUCs in row order
        for key, auc in zip(zip(g.perturbation.to_numpy(), g.modality.to_numpy()), g.roc_auc.to_numpy()):
            scores.setdefault(key, []).append(auc)
        get = lambda p, m: scores.get((p, m), [])  # noqa: E731
        clean = float(get("clean", "none")[0])
        rm_text, rm_tab = get("remove", "text"), get("remove", "tabular")
        if not rm_text or not rm_tab:
            continue
        phi = shapley_two_player(clean, float(rm_tab[0]), float(rm_text[0]))
        total = phi["text"] + phi["tabular"]
        rows.append({"model": model, "kind": g.kind.iloc[0], "modalities": g.modalities.iloc[0], "seed": seed,
                     "weaken": weaken, "clean": clean, "no_text": float(rm_text[0]),
                     "no_tabular": float(rm_tab[0]), "phi_text": phi["text"], "phi_tabular": phi["tabular"],
                     "share_text": phi["text"] / total if total > 0 else float("nan"),
                     **{f"perm_{m}": perceptual_score(clean, get("shuffle", m)) if get("shuffle", m)
                        else float("nan") for m in ("text", "tabular")}})
    return pd.DataFrame(rows)


def grad_rms_ratios(runs: list[RunRecord], model: str) -> list[float]:
    """Per seed: the text-to-tabular ratio of per-parameter RMS gradients (each encoder's mean
    per-step L2 gradient norm / sqrt(its parameter count); ``metrics.rms_grad_ratio``), averaged
    over the epochs up to the best one (the weights early stopping kept). Raw L2 norms would
    favour the encoder with more parameters."""
    out = []
    for r in plain(runs):
        c = r.curves or {}
        if r.model != model or not c.get("grad_norm_text") or not c.get("grad_norm_tabular"):
            continue
        b = r.best_epoch or len(c["grad_norm_text"])
        ratio = rms_grad_ratio(np.array(c["grad_norm_text"][:b]), np.array(c["grad_norm_tabular"][:b]),
                               r.params["enc_text"], r.params["enc_tabular"])
        out.append(float(np.mean(ratio)))
    return out


def robustness_curves(ev: pd.DataFrame) -> pd.DataFrame:
    """Mean test ROC-AUC over seeds per model, family and severity, with severity 0 = the clean score.
    Families: ``drop:<modality>``, ``remove:<modality>`` as drop at 1, and each noise family."""
    t = ev[(ev.subset == "test") & (ev.weaken == "")]
    clean = t[t.perturbation == "clean"].groupby("model").roc_auc.mean()
    rows = []
    for model in t.model.unique():
        g = t[t.model == model]
        fams = {f"drop:{m}": g[((g.perturbation == "drop") | (g.perturbation == "remove")) & (g.modality == m)]
                for m in ("text", "tabular")}
        fams.update({p: g[g.perturbation == p] for p in g.perturbation.unique()
                     if p not in ("clean", "drop", "remove", "missing", "shuffle")})
        for fam, sub in fams.items():
            if sub.empty:
                continue
            curve = sub.groupby("severity").roc_auc.mean()
            rows.append({"model": model, "family": fam, "severity": 0.0, "roc_auc": float(clean[model])})
            rows += [{"model": model, "family": fam, "severity": float(s), "roc_auc": float(v)} for s, v in curve.items()]
    return pd.DataFrame(rows)


def curve_area(curve: pd.DataFrame) -> float:
    """Trapezoid area under ROC-AUC vs severity over [0, 1] (= mean score across severities)."""
    c = curve.sort_values("severity")
    return float(np.trapezoid(c.roc_auc, c.severity))


SWEEP_TITLES = {("subsample", "text"): "text present for a fraction f of train rows",
                ("subsample", "tabular"): "tabular present for a fraction f of train rows",
                ("corrupt", "text"): "text corrupted at rate r in training",
                ("corrupt", "tabular"): "tabular corrupted at rate r in training",
                ("truncate", "text"): "text truncated to k tokens"}
CLEAN_LEVEL = {"subsample": 1.0, "corrupt": 0.0, "truncate": "full"}


def imbalance_points(res: StudyResults) -> pd.DataFrame:
    """One row per sweep, level and model: mean test ROC-AUC, removal scores, Shapley share of the
    weak modality, seed std; the clean level comes from the Parts 1-2 runs of the same seeds
    (memoised in ``res.cache``; a copy is returned)."""
    if "imbalance_points" not in res.cache:
        res.cache["imbalance_points"] = _imbalance_points(res)
    return res.cache["imbalance_points"].copy()


def _imbalance_points(res: StudyResults) -> pd.DataFrame:
    ev = eval_frame(res.evals, res.runs)
    if ev.empty or not (ev.weaken != "").any():
        return pd.DataFrame()
    dom = dominance(ev)
    p5 = [r for r in res.runs if r.training.regime == "weakened"]
    seeds = sorted({r.seed for r in p5})
    models = ordered_models({r.model for r in p5})
    rows = []
    for kind, mod in SWEEP_TITLES:
        levels = sorted({r.training.weaken[2] for r in p5 if tuple(r.training.weaken[:2]) == (kind, mod)},
                        reverse=kind != "corrupt")
        if not levels:
            continue
        for level in [CLEAN_LEVEL[kind]] + levels:
            w = "" if level == CLEAN_LEVEL[kind] else f"{kind}:{mod}:{level}"
            for m in models:
                d = dom[(dom.model == m) & (dom.weaken == w) & dom.seed.isin(seeds)]
                if d.empty:
                    continue
                weak_removed = d.no_text if mod == "text" else d.no_tabular
                strong_removed = d.no_tabular if mod == "text" else d.no_text
                share = d.share_text if mod == "text" else 1 - d.share_text
                rows.append({"kind": kind, "modality": mod, "level": str(level), "model": m,
                             "model_kind": d.kind.iloc[0], "model_modalities": d.modalities.iloc[0], "seeds": len(d),
                             "auc": d.clean.mean(), "auc_std": d.clean.std(ddof=1) if len(d) > 1 else 0.0,
                             "drop_weak": (d.clean - weak_removed).mean(), "drop_strong": (d.clean - strong_removed).mean(),
                             "weak_share": share.mean(), "weak_share_ci": mean_ci(share)[1]})
    return pd.DataFrame(rows)


PART_NAMES = {"data": "data + split + preprocessing",
              "reference": "classical references (fit by the driver while worker processes train Parts 1, 2, 4)",
              "main": "Parts 1, 2, 4 (unimodal, fusion, variants) + Part 3 evaluations",
              "part3": "Part 3 ModDrop models + evaluations", "part5": "Part 5 imbalance sweeps",
              "remedies": "Part 5 remedies (OGM-GE, G-Blend, MLA)",
              "scaling": "parameter-scaling table"}
RUN_PARTS = {"main": ("part1", "part2", "part4"), "part3": ("part3",), "part5": ("part5",), "remedies": ("part5",)}


BASELINES = PACKAGE / "analysis" / "bench_baselines.json"


def baselines() -> dict[str, dict]:
    """The stored baselines of ``bench_baselines.json`` (earlier designs' ``study.json`` figures):
    name -> dict with ``study``, ``profile``, ``label``, ``wall_seconds``, ``part_seconds``."""
    return {k: v for k, v in json.loads(BASELINES.read_text()).items() if not k.startswith("_")}


def comparable(meta: dict, baseline: dict) -> bool:
    """Whether a study (``study.json`` dict) is the one a baseline timed: same study name, profile
    and number of planned runs (a subsample or another model list is a different study), trained in
    one invocation (a resumed study's wall sums several runs, each with its own start-up and load)."""
    return ((baseline["study"], baseline["profile"], baseline["runs_trained"])
            == (meta.get("study"), meta.get("profile"), meta.get("runs_planned"))) and meta.get("invocations", 1) == 1


def baseline_ratios(meta: dict) -> list[dict]:
    """Wall time of a study (``study.json`` dict) against every stored baseline it is
    :func:`comparable` with: ``name``, ``label``, ``baseline_s``, ``ratio`` (< 1 is faster)."""
    return [{"name": k, "label": b["label"], "baseline_s": b["wall_seconds"], "ratio": meta["wall_seconds"] / b["wall_seconds"]}
            for k, b in baselines().items() if comparable(meta, b)]


def part_table(meta: dict, runs: list[RunRecord], baseline: dict | None = None) -> pd.DataFrame:
    """Per part of a study, then the total: ``part`` (key), ``name``, ``wall_s`` (``study.json``),
    ``runs`` trained, ``models_per_s`` (runs / wall seconds), ``samples_per_s`` (mean training
    samples per second inside ``fit`` over the part's runs) and, with ``baseline`` (a
    ``study.json``-like dict of an earlier design), its ``baseline_wall_s`` and ``ratio``
    (wall / baseline wall: < 1 is faster). Numbers only; the report formats them."""
    rows = []
    base = (baseline or {}).get("part_seconds", {})
    for part, secs in meta["part_seconds"].items():
        rs = [r for r in runs if r.part in RUN_PARTS.get(part, ()) and r.samples_per_s
              and (r.training.regime == "remedy") == (part == "remedies")]
        rows.append({"part": part, "name": PART_NAMES.get(part, part), "wall_s": secs, "runs": len(rs),
                     "models_per_s": len(rs) / secs if rs and secs else np.nan,
                     "samples_per_s": float(np.mean([r.samples_per_s for r in rs])) if rs else np.nan,
                     "baseline_wall_s": base.get(part, np.nan)})
    rows.append({"part": "total", "name": f"total ({meta['cores']} cores, {meta.get('workers', 1)} worker processes)",
                 "wall_s": meta["wall_seconds"], "runs": meta["runs_trained"],
                 "models_per_s": meta["runs_trained"] / meta["wall_seconds"] if meta["wall_seconds"] else np.nan,
                 "samples_per_s": np.nan, "baseline_wall_s": (baseline or {}).get("wall_seconds", np.nan)})
    out = pd.DataFrame(rows)
    # a part the baseline timed at 0.0 s (stored to 0.1 s) has no ratio, not an infinite one
    out["ratio"] = out.wall_s / out.baseline_wall_s.where(out.baseline_wall_s > 0)
    return out if baseline else out.drop(columns=["baseline_wall_s", "ratio"])
