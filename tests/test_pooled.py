"""Pooled-over-splits evidence: the corrected interval, the intersection–union comparator rule, and
known answers — coverage of the interval on a planted truth, and the verdict of real studies of
planted scenarios (helps where a modality adds signal, equivalent where it cannot)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from fusionstudy.analysis.pooled import (
    comparator_verdict,
    fused_vs_unimodal,
    k_tradeoff,
    nb_interval,
    pooled_difference,
    split_means,
    unimodal_candidates,
)
from fusionstudy.analysis.verdicts import EQUIVALENT, HELPS, HURTS, INCONCLUSIVE
from fusionstudy.data.scenarios import scenario_config, two_modality_frame
from fusionstudy.records import load_study
from fusionstudy.study.runner import run_study


def test_nb_interval_is_the_corrected_resampled_t():
    d = np.array([0.010, 0.006, 0.008, 0.012, 0.004])
    out = nb_interval(d, ratio=0.25)
    half = stats.t.ppf(0.975, 4) * np.sqrt((1 / 5 + 0.25) * d.var(ddof=1))
    assert out["value"] == pytest.approx(0.008) and out["k"] == 5
    assert out["lo"] == pytest.approx(0.008 - half) and out["hi"] == pytest.approx(0.008 + half)
    # the correction widens the naive t interval by sqrt(1 + K * ratio)
    naive = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert half / naive == pytest.approx(np.sqrt(1 + 5 * 0.25))
    one = nb_interval(np.array([0.01]), 0.25)
    assert one["value"] == 0.01 and np.isnan(one["lo"]) and np.isnan(one["hi"])


def _g(vs, value, lo, hi, k=10):
    return {"vs": vs, "value": value, "lo": lo, "hi": hi, "k": k}


def test_helps_only_when_every_candidate_is_beaten():
    m = 0.005
    assert comparator_verdict([_g("a", 0.02, 0.01, 0.03), _g("b", 0.01, 0.006, 0.014)], m) == {
        "verdict": HELPS, "binding": "b"}
    # beating the neural model but not the classical one is not "helps": the pick cannot decide
    out = comparator_verdict([_g("nn", 0.02, 0.01, 0.03), _g("gbdt", 0.0, -0.003, 0.003)], m)
    assert out == {"verdict": EQUIVALENT, "binding": "gbdt"}
    assert comparator_verdict([_g("a", 0.02, 0.01, 0.03), _g("b", -0.02, -0.03, -0.01)], m)["verdict"] == HURTS
    assert comparator_verdict([_g("a", 0.02, 0.01, 0.03), _g("b", 0.004, -0.002, 0.01)], m)["verdict"] == INCONCLUSIVE
    assert comparator_verdict([_g("a", 0.02, 0.01, 0.03, k=1)], m)["verdict"] == INCONCLUSIVE
    assert comparator_verdict([], m)["verdict"] == INCONCLUSIVE


def test_split_table_pairs_by_split_and_lists_the_candidates():
    rows = [("text_only", "unimodal", "text", s, 0.90 + 0.01 * s) for s in range(3)]
    rows += [("ref_hist_gbdt", "reference", "tabular", s, 0.95) for s in range(3)]
    rows += [("early_concat", "fusion", "tabular+text", s, 0.96 + 0.01 * s) for s in range(3)]
    rows += [("tabular_only", "unimodal", "tabular", 0, 0.9)]  # trained on one split only: no candidate
    t = pd.DataFrame(rows, columns=["model", "kind", "modalities", "split", "value"]).assign(n_seeds=1)
    assert unimodal_candidates(t) == ["ref_hist_gbdt", "text_only"]
    d = pooled_difference(t, "early_concat", "text_only", 0.2, 0.005)
    assert d["per_split"] == pytest.approx([0.06, 0.06, 0.06]) and d["value"] == pytest.approx(0.06)
    assert d["splits_above_margin"] == 3 and d["verdict"] == HELPS  # no spread: a zero-width interval
    tr = k_tradeoff(0.0015, 0.214)
    assert list(tr.splits) == [2, 3, 5, 10, 20, 40] and tr.half_width.is_monotonic_decreasing
    assert tr.set_index("splits").half_width[10] == pytest.approx(2.262 * 0.0015 * np.sqrt(0.1 + 0.214), rel=1e-3)


def _planted(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 2))
    return x, (x[:, 0] + 0.6 * x[:, 1] + rng.normal(size=n) > 0).astype(int)


def _gain(x, y, x_test, y_test) -> float:
    """Test ROC-AUC of a logistic regression on both columns minus one on the first alone."""
    both = LogisticRegression().fit(x, y).decision_function(x_test)
    one = LogisticRegression().fit(x[:, :1], y).decision_function(x_test[:, :1])
    return roc_auc_score(y_test, both) - roc_auc_score(y_test, one)


@pytest.mark.slow
def test_corrected_interval_covers_the_planted_gain():
    """Coverage on a planted truth: K = 10 random 70/30 splits of 600 rows, 80 repetitions. The
    truth is the expected gain of a model trained on 420 rows, from 300 independent training sets
    scored on 20,000 fresh rows. The corrected interval must cover it near its nominal 95%; the
    naive t interval (no correction for overlapping training sets) covers far less."""
    rng = np.random.default_rng(0)
    x_big, y_big = _planted(20_000, rng)
    truth = np.mean([_gain(*_planted(420, rng), x_big, y_big) for _ in range(300)])
    covered = naive = 0
    for rep in range(80):
        x, y = _planted(600, rng)
        d = []
        for k in range(10):
            xa, xb, ya, yb = train_test_split(x, y, test_size=0.3, stratify=y, random_state=1000 * rep + k)
            d.append(_gain(xa, ya, xb, yb))
        ci = nb_interval(np.array(d), 0.3 / 0.7)
        covered += ci["lo"] <= truth <= ci["hi"]
        half = stats.t.ppf(0.975, 9) * np.std(d, ddof=1) / np.sqrt(10)
        naive += abs(np.mean(d) - truth) <= half
    assert truth > 0.02  # the second column carries planted signal
    assert covered / 80 >= 0.85, covered
    assert naive < covered, (naive, covered)


def _pooled_study(tmp_path, scenario: str, n: int, splits: int):
    tmp_path.mkdir(parents=True, exist_ok=True)
    two_modality_frame(scenario, n=n).to_csv(tmp_path / "data.csv", index=False)
    cfg = scenario_config(tmp_path / "data.csv", seeds=(0, 1))
    cfg.study.splits, cfg.study.split_seeds = splits, [0, 1]
    cfg.study.robustness = False
    # the planted studies' margin: ~2 standard errors of a ROC-AUC on their 900-1,500 test rows
    cfg.report.margin = 0.02
    return load_study(run_study(cfg, str(tmp_path / "results")))


@pytest.mark.slow
def test_pooled_verdict_recovers_the_planted_truth(tmp_path):
    # independent halves: each modality alone ~0.83, together ~0.998 -> helps over every candidate
    res = _pooled_study(tmp_path / "ind", "independent", 3000, 4)
    out = fused_vs_unimodal(res, "early_concat", 0.02)
    assert split_means(res).split.nunique() == 4
    assert {g["vs"] for g in out["gains"]} == {"text_only", "tabular_only"}
    assert out["verdict"] == HELPS, out
    # text-only signal: the table is noise, so fusion cannot gain over the text model -> equivalent
    res = _pooled_study(tmp_path / "txt", "text_only_signal", 5000, 5)
    out = fused_vs_unimodal(res, "early_concat", 0.02)
    assert out["binding"] == "text_only" and out["verdict"] == EQUIVALENT, out


def test_decisions_at_each_seeds_validation_threshold_carry_their_seed_range():
    from fusionstudy.analysis.pooled import decisions_at_val_threshold
    from fusionstudy.records import PredictionRecord, RunRecord, StudyResults

    y = np.array([0, 0, 1, 1, 1, 1])  # class 0 is the minority
    scores = {0: [0.1, 0.2, 0.8, 0.9, 0.7, 0.6],  # separable: every threshold F1 picks recalls all of class 0
              1: [0.1, 0.65, 0.8, 0.9, 0.7, 0.6]}  # one class-0 row scored above two class-1 rows
    runs, preds = [], {}
    for seed, p in scores.items():
        key = f"m|seed={seed}"
        runs.append(RunRecord(run_key=key, study="s", model="m", kind="unimodal", modalities=["text"],
                              fusion="early_concat", part="part1", seed=seed, config_fp="fp", config={},
                              git="g", time="t", metrics={}, params={}))
        preds[key] = PredictionRecord.of(key, {s: np.column_stack([1 - np.array(p), p]) for s in ("val", "test")})
    split = {"classes": ["0", "1"], "y_val": y.tolist(), "y_test": y.tolist()}
    d = decisions_at_val_threshold(StudyResults(None, runs, [], preds, split, {"study": "s"}), "m")
    # seed 0 recalls both minority rows; seed 1's F1-optimal threshold is 0.6 (F1 8/9; 0.7 gives
    # 6/7), which calls the 0.65 class-0 row positive: minority recall 1/2
    assert (d["minority_recall_min"], d["minority_recall_max"], d["minority_recall"]) == (0.5, 1.0, 0.75)
    assert (d["balanced_accuracy_min"], d["balanced_accuracy_max"]) == (0.75, 1.0)
