"""Figures: tables of numbers -> matplotlib PNG files (Agg backend, no metadata, so reruns are
byte-stable). Every function takes analysis output and a path and returns the path written."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fusionstudy.analysis.tables import SWEEP_TITLES, ordered_models, scaling_slopes  # noqa: E402
from fusionstudy.records import RunRecord  # noqa: E402


def figure_val_curves(runs: list[RunRecord], path: Path, models: list[str] | None = None) -> Path:
    """Validation log loss per epoch: mean over seeds with a min-max band, one line per model."""
    with_curves = [r for r in runs if r.curves and r.curves.get("val_loss")]
    models = ordered_models(r.model for r in with_curves) if models is None else models
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for model in models:
        curves = [r.curves["val_loss"] for r in with_curves if r.model == model]
        if not curves:
            continue
        n = max(len(c) for c in curves)
        m = np.full((len(curves), n), np.nan)
        for i, c in enumerate(curves):
            m[i, :len(c)] = c
        x = np.arange(1, n + 1)
        line, = ax.plot(x, np.nanmean(m, axis=0), marker="o", ms=3, label=f"{model} ({len(curves)} seeds)")
        ax.fill_between(x, np.nanmin(m, axis=0), np.nanmax(m, axis=0), color=line.get_color(), alpha=0.15)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation log loss (nats)")
    ax.set_title("Validation loss per epoch (line: seed mean; band: seed min-max)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def figure_scaling(rows: list[dict], path: Path) -> Path:
    """Log-log plot of fusion-layer parameters against representation size ``d``."""
    wide, slopes = scaling_slopes(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for f in wide.columns:
        ax.plot(wide.index, wide[f], marker="o", ms=3, label=f"{f} (slope {slopes[f]:.2f})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("representation size d per modality")
    ax.set_ylabel("fusion-layer parameters (count)")
    ax.set_title("Fusion parameter count vs representation size (hidden size fixed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def figure_fusion_weights(runs: list[RunRecord], path: Path) -> Path | None:
    """Histograms of per-sample modality weights on the test split (GMU gates, attention weights),
    summed over seeds, and the learned global late-fusion weights per seed."""
    runs = [r for r in runs if r.diagnostics and r.training.regime == "plain"]
    models = ordered_models({r.model for r in runs})
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    edges = np.linspace(0, 1, 21)
    for ax, model in zip(axes[0], models):
        rs = [r for r in runs if r.model == model]
        key = next(iter(rs[0].diagnostics))
        for mod in rs[0].diagnostics[key]:
            hist = np.sum([r.diagnostics[key][mod]["hist"] for r in rs], axis=0)
            ax.stairs(hist / hist.sum(), edges, label=mod, fill=True, alpha=0.45)
        ax.set_title(f"{model}: {key} ({len(rs)} seeds)")
        ax.set_xlabel("weight given to the modality (0-1)")
        ax.set_ylabel("fraction of test rows")
        ax.legend(fontsize=8)
    fig.suptitle("How much each fused model weighs each modality (test split)", fontsize=10)
    return _save(fig, path)


FAMILY_TITLES = {"drop:text": "text dropped for a fraction q of rows", "drop:tabular": "tabular dropped for a fraction q of rows",
                 "text_noise": "text: tokens replaced/deleted (p)", "text_typo": "text: typos (p)",
                 "text_delete": "text: tokens deleted (p)", "tab_noise": "tabular: Gaussian noise + category swaps (s)",
                 "tab_mask": "tabular: cells masked (p)"}


def figure_robustness(curves: pd.DataFrame, models: list[str], path: Path, unimodal: set[str]) -> Path:
    """Small multiples: test ROC-AUC (seed mean) vs severity, one panel per perturbation family."""
    fams = [f for f in FAMILY_TITLES if f in set(curves.family)]
    ncol = 4
    nrow = int(np.ceil(len(fams) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.2 * nrow), squeeze=False)
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    for ax, fam in zip(axes.flat, fams):
        for i, m in enumerate(models):
            c = curves[(curves.model == m) & (curves.family == fam)].sort_values("severity")
            if not c.empty:
                ax.plot(c.severity, c.roc_auc, marker="o", ms=3, label=m, color=colours[(2 * i) % 20 + (2 * i) // 20],
                        ls="--" if m in unimodal else "-")
        ax.set_title(FAMILY_TITLES[fam], fontsize=9)
        ax.set_xlabel("severity (0 = clean, 1 = max)")
        ax.set_ylabel("test ROC-AUC")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(fams):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Robustness of each model to inference-time perturbations (mean over seeds)", fontsize=11)
    return _save(fig, path)


def figure_imbalance(pts: pd.DataFrame, value: str, ylabel: str, path: Path, refs: bool) -> Path:
    """One panel per sweep: ``value`` vs level (clean first) per model."""
    sweeps = [k for k in SWEEP_TITLES if ((pts.kind == k[0]) & (pts.modality == k[1])).any()]
    fig, axes = plt.subplots(1, len(sweeps), figsize=(3.8 * len(sweeps), 3.4), squeeze=False)
    for ax, (kind, mod) in zip(axes[0], sweeps):
        p = pts[(pts.kind == kind) & (pts.modality == mod)]
        levels = list(dict.fromkeys(p.level))
        for m in dict.fromkeys(p.model):
            uni = (p[p.model == m].model_kind == "unimodal").any()
            if not refs and uni:
                continue
            c = p[p.model == m].set_index("level").reindex(levels)
            ax.plot(range(len(levels)), c[value], marker="o", ms=3, label=m,
                    ls="--" if uni else "-")
        ax.set_xticks(range(len(levels)), levels)
        ax.set_title(SWEEP_TITLES[(kind, mod)], fontsize=9)
        ax.set_xlabel({"subsample": "fraction f", "corrupt": "rate r", "truncate": "tokens k"}[kind])
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def figure_forest(summaries: dict[str, pd.DataFrame], path: Path) -> Path:
    """Forest plot: test ROC-AUC seed mean with its two-level 95% interval (seeds and test rows)
    for every model, one panel per study; classical references in grey, the best unimodal model
    (picked on validation) as a dashed line."""
    fig, axes = plt.subplots(1, len(summaries), figsize=(6.5 * len(summaries), 5.6), squeeze=False)
    for ax, (name, s) in zip(axes[0], summaries.items()):
        s = s.iloc[::-1]
        y = np.arange(len(s))
        err = np.vstack([s.test_roc_auc_mean - s.test_roc_auc_lo, s.test_roc_auc_hi - s.test_roc_auc_mean])
        colours = np.where(s.kind == "reference", "grey", np.where(s.kind == "unimodal", "tab:orange", "tab:blue"))
        for yi, x, e, c in zip(y, s.test_roc_auc_mean, err.T, colours):
            ax.errorbar(x, yi, xerr=e.reshape(2, 1), fmt="o", ms=4, capsize=3, color=c)
        ax.set_yticks(y, [f"{m} (n={n})" for m, n in zip(s.model, s.seeds)], fontsize=8)
        uni = s[(s.kind.isin(["unimodal", "reference"])) & ~s.modalities.str.contains(r"\+", regex=True)]
        best = uni.sort_values("val_roc_auc_mean").iloc[-1]
        ax.axvline(best.test_roc_auc_mean, ls="--", color="grey", lw=1)
        ax.set_xlabel("test ROC-AUC, 95% interval over seeds and test rows")
        ax.set_title(f"{name} (dashed: best unimodal, {best.model})", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("Every model of every study — grey: classical, orange: unimodal, blue: fused", fontsize=11)
    return _save(fig, path)


def figure_primary(gains: list[dict], model: str, margin: float, path: Path) -> Path:
    """The primary contrast at a glance: ``model`` minus each unimodal candidate, one row each —
    the per-split differences as dots and the pooled mean with its corrected 95% interval as a bar;
    the margin ±``margin`` and zero as vertical lines."""
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.7 * len(gains)))
    for i, g in enumerate(gains):
        ax.scatter(g["per_split"], np.full(len(g["per_split"]), i + 0.18), s=12, color="grey", alpha=0.7,
                   label="one split" if i == 0 else None)
        ax.errorbar(g["value"], i, xerr=[[g["value"] - g["lo"]], [g["hi"] - g["value"]]], fmt="o", ms=6,
                    capsize=4, color="tab:blue", label="pooled mean, corrected 95% interval" if i == 0 else None)
    for x, ls in ((0, "-"), (margin, "--"), (-margin, "--")):
        ax.axvline(x, color="black" if x == 0 else "tab:red", ls=ls, lw=1)
    ax.set_yticks(range(len(gains)), [f"vs {g['vs']}" for g in gains])
    ax.set_xlabel(f"{model} − candidate, test ROC-AUC (dashed: ±margin {margin})")
    ax.set_title(f"Primary contrast: {model} against every unimodal candidate", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def figure_benchmark(rows: list[dict], margin: float, path: Path) -> Path | None:
    """One row per study: the primary contrast's pooled gain (early fusion minus the binding unimodal
    candidate) with its corrected 95% interval and per-split dots, the before-fusion forecast as a
    hollow diamond, the margin ±``margin`` and zero as vertical lines. ``None`` without rows."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.55 * len(rows)))
    lo = min(min(r["gain"]["lo"], *r["gain"]["per_split"]) for r in rows)
    hi = max(max(r["gain"]["hi"], *r["gain"]["per_split"], (r["forecast"] or {}).get("gain", 0)) for r in rows)
    for i, r in enumerate(rows[::-1]):
        g, f = r["gain"], r["forecast"]
        ax.scatter(g["per_split"], np.full(len(g["per_split"]), i + 0.18), s=10, color="grey", alpha=0.7,
                   label="one split" if i == 0 else None)
        ax.errorbar(g["value"], i, xerr=[[g["value"] - g["lo"]], [g["hi"] - g["value"]]], fmt="o", ms=6, capsize=4,
                    color={"helps": "tab:green", "hurts": "tab:red", "equivalent": "tab:blue"}.get(r["verdict"], "tab:orange"),
                    label="measured gain, pooled 95% (colour = verdict)" if i == 0 else None)
        if f:
            ax.scatter(f["gain"], i - 0.2, marker="D", s=30, facecolors="none", edgecolors="black",
                       label="before-fusion forecast" if i == 0 else None)
    for x, ls in ((0, "-"), (margin, "--"), (-margin, "--")):
        ax.axvline(x, color="black" if x == 0 else "tab:red", ls=ls, lw=1)
    ax.set_yticks(range(len(rows)), [f"{r['study']}: {r['verdict']}" for r in rows[::-1]])
    ax.set_xscale("symlog", linthresh=0.02)
    ax.set_xlim(min(lo * 1.3, -2 * margin), max(hi * 1.3, 2 * margin))
    ax.set_xlabel(f"early fusion − strongest unimodal candidate, test ROC-AUC\n(symmetric log scale, linear within ±0.02; "
                  f"dashed: ±margin {margin})")
    ax.set_title("Is the second modality worth it? Primary contrast per study", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16 - 0.25 / len(rows)), ncol=3, frameon=False)
    return _save(fig, path)
