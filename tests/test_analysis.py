import numpy as np
import pytest

from fusionstudy.analysis.tables import scaling_slopes, shapley_two_player, summarize
from fusionstudy.records import RunRecord
from fusionstudy.report.experiments import fmt_ci


def test_shapley_sums_to_full_minus_empty():
    phi = shapley_two_player(0.98, 0.94, 0.97)
    assert phi["text"] + phi["tabular"] == pytest.approx(0.98 - 0.5)
    assert phi["tabular"] > phi["text"]


def test_one_informative_modality_gets_all_the_shapley_share():
    phi = shapley_two_player(0.9, 0.5, 0.9)  # text alone is chance, tabular alone is everything
    assert phi["text"] == pytest.approx(0.0) and phi["tabular"] == pytest.approx(0.4)


def _rec(model, seed, auc, part="part1"):
    m = {k: 0.5 for k in ("pr_auc", "f1", "accuracy", "log_loss", "ece")}
    return RunRecord(run_key=f"{model}|{seed}", study="t", model=model, kind="unimodal", modalities=["text"],
                     fusion="early_concat", part=part, seed=seed, config_fp="fp", config={}, git="g", time="t",
                     params={"total": 10, "enc_text": 7, "head": 3}, train_seconds=2.0, samples_per_s=100.0,
                     best_epoch=2, diverged=False,
                     curves={"val_loss": [0.5, 0.4, 0.45], "train_loss": [0.6, 0.3, 0.2],
                             "train_eval_loss": [0.5, 0.3, 0.2]},
                     metrics={"val": {"roc_auc": auc, **m}, "test": {"roc_auc": auc - 0.01, **m}})


def test_summarize_means_cis_and_stability():
    s = summarize([_rec("text_only", i, a) for i, a in enumerate([0.90, 0.92, 0.94])]).iloc[0]
    assert s.seeds == 3 and s.val_roc_auc_mean == pytest.approx(0.92)
    assert s.test_roc_auc_range == pytest.approx(0.04) and s.test_roc_auc_std == pytest.approx(0.02)
    assert s.train_val_gap_mean == pytest.approx(0.1)  # val 0.4 - eval-mode train 0.3 at best epoch 2
    assert s.params_total == 10 and np.isnan(s.params_enc_tabular)
    assert fmt_ci(s.val_roc_auc_mean, s.val_roc_auc_ci95) == "0.9200 ± 0.0497"


def test_scaling_slopes_recover_exponents():
    rows = [{"fusion": "lin", "d": d, "params": 3 * d + 1} for d in (8, 16, 32, 64)]
    rows += [{"fusion": "quad", "d": d, "params": d * d} for d in (8, 16, 32, 64)]
    _, slopes = scaling_slopes(rows)
    assert slopes["lin"] == pytest.approx(1.0, abs=0.05) and slopes["quad"] == pytest.approx(2.0)


def test_dominance_reads_each_seeds_removals_and_shuffles():
    import pandas as pd

    from fusionstudy.analysis.tables import dominance
    rows = []
    for seed, (clean, no_text, no_tab, shuffles) in enumerate([(0.9, 0.7, 0.8, [0.85, 0.75]), (0.8, 0.6, 0.75, [])]):
        base = {"subset": "test", "model": "m", "seed": seed, "weaken": "", "kind": "fusion", "modalities": "tabular+text"}
        rows += [{**base, "perturbation": "clean", "modality": "none", "roc_auc": clean},
                 {**base, "perturbation": "remove", "modality": "text", "roc_auc": no_text},
                 {**base, "perturbation": "remove", "modality": "tabular", "roc_auc": no_tab},
                 {**base, "subset": "val", "perturbation": "remove", "modality": "text", "roc_auc": 0.1}]
        rows += [{**base, "perturbation": "shuffle", "modality": "text", "roc_auc": s} for s in shuffles]
    d = dominance(pd.DataFrame(rows)).set_index("seed")
    assert d.loc[0, "no_text"] == 0.7 and d.loc[0, "no_tabular"] == 0.8
    assert d.loc[0, "phi_text"] == pytest.approx(0.5 * ((0.8 - 0.5) + (0.9 - 0.7)))
    assert d.loc[0, "perm_text"] == pytest.approx((0.9 - 0.8) / 0.9) and np.isnan(d.loc[0, "perm_tabular"])
    assert np.isnan(d.loc[1, "perm_text"]) and d.loc[1, "share_text"] == pytest.approx(
        (0.75 - 0.5 + 0.8 - 0.6) / (0.8 - 0.5) / 2)
