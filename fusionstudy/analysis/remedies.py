"""Tables of Part 5's remedies and of the interaction measures, from stored results (torch-free).

* :func:`remedy_table` — each remedy run (``training.regime == "remedy"``) against the plain fused
  model of the same fusion at the same Part 5 point, on their common seeds: paired test ROC-AUC
  difference with the study's two-level interval and rule, the weak modality's Shapley share for
  both, and the cost (train seconds).
* :func:`emap_table` — per fused model of split 0, the interaction it uses: ROC-AUC of its own
  log-odds minus its EMAP projection's (Hessel & Lee, 2020) on the stored subsample.
* :func:`pid_table` — the data-level answer: PID (BROJA; Liang et al., 2023) of the two unimodal
  models' binned test predictions and the label.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fusionstudy.analysis.interaction import discretize, joint_distribution, pid
from fusionstudy.analysis.verdicts import (common_seeds, difference_on, probas, runs_of, seeds_of, shapley_intervals,
                                           term)
from fusionstudy.metrics import bootstrap_counts, interval, seed_average, seed_draws, weighted_auc
from fusionstudy.records import RunRecord

PID_BINS = 8  # bins per unimodal prediction (docs/interaction.md: the plug-in bias grows with k1 k2)
PID_BOOT = 100  # row resamples of the PID interval (~0.3 s each)


def _plain_of(runs: list[RunRecord], r: RunRecord) -> str | None:
    """The plainly trained (or plainly weakened) fused model of ``r``'s fusion at ``r``'s point."""
    regime = "weakened" if r.training.weaken else "plain"
    names = sorted({x.model for x in runs if x.kind == "fusion" and x.fusion == r.fusion and x.training.regime == regime
                    and x.training.tag == r.training.tag and x.split == 0})
    return names[0] if names else None


def _weak_share(res, model: str, tag: str, weak: str) -> float:
    phi = shapley_intervals(res, model, tag)
    total = phi["text"]["value"] + phi["tabular"]["value"]
    return phi[weak]["value"] / total if total > 0 else float("nan")


def _phi_reps(res, model: str, tag: str, seeds: tuple[int, ...], draws: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    """Each modality's two-player Shapley value of ROC-AUC (removal = marginalised, v(∅) = 0.5):
    the seed mean and its ``(n_boot,)`` two-level replicates under the seed ``draws``."""
    full, no_tab, no_text = (term(res, model, k, tag, seeds) for k in ("test", "remove:tabular", "remove:text"))
    out = {}
    for m, alone, without in (("text", no_tab, no_text), ("tabular", no_text, no_tab)):
        obs = 0.5 * (alone[0] - 0.5 + full[0] - without[0])
        reps = 0.5 * (alone[1] - 0.5 + full[1] - without[1])
        out[m] = (float(obs.mean()), seed_average(reps, draws))
    return out


def share_difference(res, model: str, plain: str, tag: str, weak: str, level: float = 0.95) -> dict[str, float]:
    """The weak modality's Shapley share of ``model`` minus that of ``plain`` at Part 5 point ``tag``
    on the seeds both have, with a paired two-level interval at ``level`` (seeds drawn alike for
    both, test rows resampled alike; the share ``phi_weak / (phi_text + phi_tabular)`` is
    recomputed in every replicate), and the same for the weak modality's Shapley *value* (ROC-AUC
    units). Returns ``value`` (seed-mean shares' difference on the common seeds), ``lo``, ``hi``,
    ``phi`` (seed-mean Shapley values' difference), ``phi_lo``, ``phi_hi``, ``phi_plain`` and
    ``phi_model`` (each model's seed-mean Shapley value of the weak modality)."""
    # paired: the seeds both trained (a remedy may have fewer seeds, study.imbalance_seeds, than plain fusion)
    seeds = tuple(sorted(set(seeds_of(res, model, tag)) & set(seeds_of(res, plain, tag))))
    if not seeds:
        return dict.fromkeys(("value", "lo", "hi", "phi", "phi_lo", "phi_hi", "phi_plain", "phi_model"), float("nan"))
    n_boot = term(res, model, "test", tag, seeds)[1].shape[1]
    draws = seed_draws(len(seeds), n_boot, seed=0)
    share, value = {}, {}
    for m in (model, plain):
        phi = _phi_reps(res, m, tag, seeds, draws)
        total = (phi["text"][0] + phi["tabular"][0], phi["text"][1] + phi["tabular"][1])
        with np.errstate(divide="ignore", invalid="ignore"):
            share[m] = (phi[weak][0] / total[0], np.where(total[1] > 0, phi[weak][1] / total[1], np.nan))
        value[m] = phi[weak]
    lo, hi = interval(0.0, share[model][1] - share[plain][1], level)
    phi_lo, phi_hi = interval(0.0, value[model][1] - value[plain][1], level)
    return {"value": share[model][0] - share[plain][0], "lo": lo, "hi": hi, "phi": value[model][0] - value[plain][0],
            "phi_lo": phi_lo, "phi_hi": phi_hi, "phi_plain": value[plain][0], "phi_model": value[model][0]}


def remedy_table(res, margin: float) -> pd.DataFrame:
    """One row per remedy model and Part 5 point (``tag``, ``""`` = clean): ``remedy``, its plain
    counterpart ``plain``, ``seeds``, ``auc`` / ``plain_auc`` (seed-mean test ROC-AUC),
    ``diff``/``lo``/``hi``/``verdict`` (remedy − plain, the rule at ``margin``), ``weak`` (the text at
    a clean point, else the weakened modality), ``share``/``plain_share`` (its share of the
    two-player Shapley value of ROC-AUC, removal = marginalised, on each model's seeds) and
    ``share_value``/``share_lo``/``share_hi`` (remedy − plain on the common seeds and its paired 95%
    interval), ``share_phi``/``share_phi_lo``/``share_phi_hi``/``share_phi_plain``/``share_phi_model``
    (the same for its Shapley value, ROC-AUC units; :func:`share_difference`), ``secs``/``plain_secs`` (mean
    train seconds per run, set-up included). Empty without remedy runs."""
    rem = [r for r in res.runs if r.training.regime == "remedy" and r.split == 0]
    rows = []
    for model, tag in dict.fromkeys((r.model, r.training.tag) for r in rem):
        first = next(r for r in rem if r.model == model and r.training.tag == tag)
        plain = _plain_of(res.runs, first)
        if plain is None:
            continue
        seeds = common_seeds(res, [(model, tag), (plain, tag)])
        d = difference_on(res, (model, "test", tag), (plain, "test", tag), seeds, margin)
        weak = first.training.weaken[1] if first.training.weaken else "text"
        secs = {m: float(np.mean([r.train_seconds for r in runs_of(res, m, tag) if r.seed in seeds])) for m in (model, plain)}
        auc = {m: float(np.mean([r.metrics["test"]["roc_auc"] for r in runs_of(res, m, tag) if r.seed in seeds]))
               for m in (model, plain)}
        rows.append({"model": model, "remedy": first.training.remedy, "plain": plain, "tag": tag, "seeds": len(seeds),
                     "auc": auc[model], "plain_auc": auc[plain], "diff": d["value"], "lo": d["lo"], "hi": d["hi"],
                     "verdict": d["verdict"], "weak": weak, "share": _weak_share(res, model, tag, weak),
                     "plain_share": _weak_share(res, plain, tag, weak),
                     **{f"share_{k}": v for k, v in share_difference(res, model, plain, tag, weak).items()},
                     "secs": secs[model], "plain_secs": secs[plain]})
    return pd.DataFrame(rows)


def _emap_runs(res) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for r in res.runs:
        if r.split == 0 and not r.training.weaken and (r.interaction or {}).get("emap"):
            out.setdefault(r.model, []).append(r)
    return out


def emap_table(res, n_boot: int = 1000) -> pd.DataFrame:
    """Per fused model with stored EMAP inputs: ``n`` (subsample rows), ``seeds``, ``model_auc`` and
    ``projection_auc`` (seed means) and ``gap`` = their difference — the interaction the model
    uses, in ROC-AUC — with a two-level 95% interval (seeds and subsample rows resampled; each
    seed's projection held at the one computed on the whole subsample). ``regime`` says how it
    was trained. Runs with different subsample rows are not pooled (the first rows win)."""
    y_test = np.asarray(res.split["y_test"])
    rows = []
    for model, rs in _emap_runs(res).items():
        rs = sorted(rs, key=lambda r: r.seed)
        ref = rs[0].interaction["emap"]["rows"]
        rs = [r for r in rs if r.interaction["emap"]["rows"] == ref]
        y = y_test[np.asarray(ref)]
        counts = bootstrap_counts(len(y), n_boot, seed=0)
        obs, reps = [], []
        for r in rs:
            e = r.interaction["emap"]
            own, proj = np.asarray(e["model"]), np.asarray(e["projection"])
            ones = np.ones((1, len(y)))
            obs.append((weighted_auc(y, own, ones)[0], weighted_auc(y, proj, ones)[0]))
            reps.append(weighted_auc(y, own, counts) - weighted_auc(y, proj, counts))
        obs = np.asarray(obs)
        draws = seed_draws(len(rs), n_boot, seed=0)
        gap = float(np.mean(obs[:, 0] - obs[:, 1]))
        lo, hi = interval(gap, seed_average(np.asarray(reps), draws))
        rows.append({"model": model, "regime": rs[0].training.regime, "n": len(y), "seeds": len(rs),
                     "model_auc": float(obs[:, 0].mean()), "projection_auc": float(obs[:, 1].mean()),
                     "gap": gap, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def pid_of(text_score: np.ndarray, tab_score: np.ndarray, y: np.ndarray, bins: int = PID_BINS) -> dict[str, float]:
    """PID atoms in bits of ``(X1, X2, Y)`` = (binned text score, binned tabular score, label):
    ``redundancy``, ``unique_text``, ``unique_tabular``, ``synergy``, ``total`` (= I(Y; X1, X2))."""
    d = pid(joint_distribution(discretize(text_score, bins), discretize(tab_score, bins), np.asarray(y)))
    return {"redundancy": d.redundancy, "unique_text": d.unique1, "unique_tabular": d.unique2,
            "synergy": d.synergy, "total": d.total}


def pid_table(res, text_model: str = "text_only", tab_model: str = "tabular_only", n_boot: int = PID_BOOT,
              bins: int = PID_BINS) -> pd.DataFrame:
    """One row per PID atom (bits, and share of the total) from the seed-mean positive-class test
    probabilities of the two plainly trained unimodal models on split 0, with a percentile 95%
    interval over ``n_boot`` resamples of the test rows (binned once, on all rows). Empty unless
    both models are stored and the label is binary."""
    if len(res.split["classes"]) != 2 or not (seeds_of(res, text_model) and seeds_of(res, tab_model)):
        return pd.DataFrame()
    y = np.asarray(res.split["y_test"])
    x1 = discretize(probas(res, text_model)[:, :, 1].mean(axis=0), bins)
    x2 = discretize(probas(res, tab_model)[:, :, 1].mean(axis=0), bins)
    atoms = ("redundancy", "unique_text", "unique_tabular", "synergy", "total")

    def decompose(idx: np.ndarray) -> dict[str, float]:
        try:
            d = pid(joint_distribution(x1[idx], x2[idx], y[idx]))
        except np.linalg.LinAlgError:  # a degenerate resample (a singular Newton system): left out as NaN
            return dict.fromkeys(atoms, np.nan)
        return dict(zip(atoms, (d.redundancy, d.unique1, d.unique2, d.synergy, d.total)))

    full = decompose(np.arange(len(y)))
    if np.isnan(full["total"]):
        return pd.DataFrame()
    rng = np.random.default_rng(0)
    boots = [decompose(rng.integers(0, len(y), len(y))) for _ in range(n_boot)]
    rows = []
    for a in atoms:
        lo, hi = interval(full[a], np.array([b[a] for b in boots]))
        share = [b[a] / b["total"] for b in boots]
        slo, shi = interval(full[a] / full["total"], np.array(share))
        rows.append({"atom": a, "bits": full[a], "lo": lo, "hi": hi, "share": full[a] / full["total"],
                     "share_lo": slo, "share_hi": shi, "n": len(y), "bins": bins})
    return pd.DataFrame(rows)
