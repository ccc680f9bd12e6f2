"""Known answers (issue 9, item 8): data with planted structure (``synthetic.py``) run through the
real pipeline — ``study.run_study`` into a folder, ``records.load_study``, the report's verdict
functions — must give back the planted truth.

Every threshold comes from the planted structure (the Bayes answers in ``synthetic``'s docstring)
plus room for learning and test-row noise; none is fitted to observed runs. The fusion verdict is
the report's own (``verdicts.gains_table``: paired two-level interval, margin from
``[report]``), against the best unimodal model picked on validation.
"""
from __future__ import annotations

import numpy as np
import pytest

from fusionstudy.analysis.tables import eval_frame, plain, summarize
from fusionstudy.analysis.verdicts import HELPS, HURTS, gains_table, shapley_intervals, situation
from fusionstudy.data.scenarios import SCENARIOS, scenario_config, two_modality_frame
from fusionstudy.records import load_study
from fusionstudy.study.runner import run_study

# integration tests: each scenario trains a small study (~30-50 s); CI runs them with `-m slow`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """``study(scenario) -> (cfg, results, summary)``; each scenario's study runs once per module."""
    done = {}

    def get(scenario: str):
        if scenario not in done:
            folder = tmp_path_factory.mktemp(scenario)
            two_modality_frame(scenario).to_csv(folder / "data.csv", index=False)
            cfg = scenario_config(folder / "data.csv")
            res = load_study(run_study(cfg, str(folder / "results")))
            done[scenario] = cfg, res, summarize(plain(res.runs))
        return done[scenario]
    return get


def fusion_gain(scenario_study) -> dict:
    """``early_concat`` minus the best unimodal model: the report's row of ``gains_table``."""
    cfg, res, s = scenario_study
    row = gains_table(res, s, cfg.report.margin).set_index("model").loc["early_concat"]
    return {k: row[f"unimodal_{k}"] for k in ("diff", "lo", "hi", "verdict")} | {"vs": row.vs_unimodal}


def shapley_shares(res) -> dict[str, float]:
    phi = {m: v["value"] for m, v in shapley_intervals(res, "early_concat").items()}
    return {m: v / sum(phi.values()) for m, v in phi.items()}


def mean_eval(res, model: str, perturbation: str, modality: str, metric: str) -> float:
    """Mean over seeds of a test-split metric of ``model`` under a perturbation."""
    ev = eval_frame(res.evals, res.runs)
    hit = ev[(ev.model == model) & (ev.perturbation == perturbation) & (ev.modality == modality)
             & (ev.subset == "test")]
    assert len(hit) == len(res.config["study"]["seeds"]), (model, perturbation, modality)
    return float(hit[metric].mean())


def test_generator_plants_what_its_docstring_says():
    with pytest.raises(ValueError, match="no_such"):
        two_modality_frame("no_such")
    big = two_modality_frame("dominant_value", n=40_000, seed=1)
    assert big.x.median() == 5  # median imputation would feed the 5-star value
    assert big.label.mean() == pytest.approx(0.7995, abs=0.01)
    assert big[big.x == 5].label.mean() == pytest.approx(0.93, abs=0.01)
    level = big.review.str.slice(5, 6).astype(int)
    assert big[level <= 1].label.mean() == pytest.approx(0.3575, abs=0.02)  # text alone says "no"
    assert big[(level <= 1) & (big.x == 5)].label.mean() == pytest.approx(0.65, abs=0.03)  # 5 stars say "yes"
    for scenario in SCENARIOS:
        df = two_modality_frame(scenario, n=20_000, seed=2)
        assert list(df.columns) == ["review", "x", "noise", "colour", "label"]
        assert abs(np.corrcoef(df.noise, df.label)[0, 1]) < 0.03
    assert abs(np.corrcoef(two_modality_frame("text_only_signal", 20_000, 2)[["x", "label"]].T)[0, 1]) < 0.03


def test_text_only_signal_fusion_gains_nothing_and_tabular_gets_no_share(study):
    _, res, _ = sc = study("text_only_signal")
    gain = fusion_gain(sc)
    assert gain["vs"] == "text_only"
    assert gain["verdict"] not in (HELPS, HURTS), gain
    assert abs(shapley_shares(res)["tabular"]) < 0.1  # planted: 0


def test_independent_halves_fusion_helps_and_both_get_a_share(study):
    _, res, _ = sc = study("independent")
    gain = fusion_gain(sc)
    assert gain["verdict"] == HELPS, gain  # planted: ROC-AUC 0.83 alone, 0.998 together
    shares = shapley_shares(res)
    assert shares["text"] > 0.25 and shares["tabular"] > 0.25, shares  # planted: 0.5 each


def test_redundant_modalities_fusion_gains_nothing_though_both_are_strong(study):
    _, _, s = sc = study("redundant")
    auc = s.set_index("model").test_roc_auc_mean
    assert auc["text_only"] > 0.8 and auc["tabular_only"] > 0.8, auc  # planted: 0.932 each
    gain = fusion_gain(sc)
    assert gain["verdict"] not in (HELPS, HURTS), gain


def test_dominant_value_removal_keeps_the_text_answer_and_missing_injects_the_typical_value(study):
    _, res, _ = study("dominant_value")
    positive_rate = float(np.mean(res.split["y_test"]))
    text_alone = mean_eval(res, "text_only", "clean", "none", "accuracy")
    removed = {k: mean_eval(res, "early_concat", "remove", "tabular", k) for k in ("accuracy", "log_loss", "ece")}
    missing = {k: mean_eval(res, "early_concat", "missing", "tabular", k) for k in ("accuracy", "log_loss", "ece")}
    # planted: marginalising the rating out gives the text-alone posterior, accuracy 0.8565 for
    # both, 0.057 above the positive rate (0.02 is issue 9's bar on the clothing data)
    assert abs(removed["accuracy"] - text_alone) < 0.03, (removed, text_alone)
    assert removed["accuracy"] > positive_rate + 0.02, (removed, positive_rate)
    # planted: the model's own "missing" input imputes the median rating, 5, and every level of
    # the text becomes P(y | level, 5 stars) >= 0.65 — overconfident in the majority class (Bayes
    # ECE ~0.13 against 0 for the marginal, log loss unbounded). It is not a removal.
    assert missing["log_loss"] > removed["log_loss"], (missing, removed)
    assert missing["ece"] > removed["ece"], (missing, removed)


def test_redundant_modalities_removal_meanings_and_no_over_reliance(study):
    """Planted: text and ``x`` show the same reading, so with the table *unknown* the fused model
    can still read it off the text: conditional removal scores like the retrained text model (the
    interventional one need not: it pairs each review with a random row's reading). Nothing
    over-relies: the redundant modality is not needed."""
    cfg, res, s = study("redundant")
    text_alone = mean_eval(res, "text_only", "clean", "none", "roc_auc")
    conditional = mean_eval(res, "early_concat", "remove_conditional", "tabular", "roc_auc")
    assert abs(conditional - text_alone) < 0.02, (conditional, text_alone)
    uni = {"text": ("text_only", ""), "tabular": ("tabular_only", "")}
    out = situation(res, "early_concat", uni, "", cfg.report.margin)
    assert not out["over_relies"], out["rely"]
