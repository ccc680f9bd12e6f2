"""Known answers for the interaction measures (issue 21): EMAP and PID on models trained on the
planted scenarios (``data.scenarios``) must give back the planted truth.

Thresholds come from the planted structure (the exact answers in ``scenarios``' docstring and in
:func:`test_population_pid_of_the_planted_cues`) plus room for learning and test-row noise.
PID runs on the unimodal models' binned test predictions (900 rows); its plug-in estimate of
``I(Y; X1, X2)`` is biased upwards by about (cells - 1) / (2 n ln 2) bits, which lands in synergy
(~0.04 bits here), so "most information" is asserted as a share of the total, not as exact zeros.
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fusionstudy.analysis.interaction import discretize, joint_distribution, pid
from fusionstudy.config import model_parts
from fusionstudy.data.prepare import prepare
from fusionstudy.data.scenarios import DECILE_CUTS, scenario_config, two_modality_frame
from fusionstudy.metrics import emap_scores
from fusionstudy.training.interaction import emap_rows, pairwise_logits
from fusionstudy.training.loop import fit, make_model, predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(scenario, model) -> (test split, model)``; each model of a scenario trains once
    (seed 0, the scenario config's 12 epochs with early stopping, 3,000 rows)."""
    preps, models = {}, {}

    def get(scenario: str, name: str):
        if scenario not in preps:
            cfg = scenario_config(tmp_path_factory.mktemp(scenario) / "data.csv")
            preps[scenario] = cfg, prepare(cfg, two_modality_frame(scenario))
        cfg, prep = preps[scenario]
        if (scenario, name) not in models:
            model = make_model(*model_parts(name, prep.modalities), prep, cfg, 0)
            fit(model, prep.splits["train"], prep.splits["val"], cfg.train, 0)
            models[scenario, name] = model
        return prep.splits["test"], models[scenario, name]
    return get


def emap_of(trained, scenario: str) -> dict:
    test, model = trained(scenario, "early_concat")
    rows = emap_rows(len(test), 500, seed=0)
    return emap_scores(test.y[rows], pairwise_logits(model, test, rows), n_boot=200)


def pid_of(trained, scenario: str):
    """PID of (text model's prediction, tabular model's prediction, label), 8 bins each."""
    (test, text), (_, tab) = trained(scenario, "text_only"), trained(scenario, "tabular_only")
    x1, x2 = (discretize(predict(m, test)[:, 1], 8) for m in (text, tab))
    return pid(joint_distribution(x1, x2, test.y))


def test_generator_plants_the_interaction_and_the_dominant_modality():
    df = two_modality_frame("interaction", n=200_000, seed=4)
    c, s = df.review.str.slice(5, 6).astype(int) >= 6, df.x > NormalDist().inv_cdf(0.6)
    assert c.mean() == pytest.approx(0.4, abs=0.01) and s.mean() == pytest.approx(0.4, abs=0.01)
    assert df.label[c ^ s].mean() == pytest.approx(0.9, abs=0.01)  # XOR, 10 % flipped
    assert df.label[~(c ^ s)].mean() == pytest.approx(0.1, abs=0.01)
    assert df.label[c].mean() == pytest.approx(0.58, abs=0.01) and df.label[~c].mean() == pytest.approx(0.42, abs=0.01)
    dom = two_modality_frame("dominant_modality", n=200_000, seed=4)
    level = dom.review.str.slice(5, 6).astype(int)
    assert roc_auc_score(dom.label, dom.x) == pytest.approx(0.919, abs=0.005)
    assert roc_auc_score(dom.label, level) == pytest.approx(0.693, abs=0.005)


def test_population_pid_of_the_planted_cues():
    """The exact decompositions the trained models' PIDs are compared with (400,000 rows)."""
    df = two_modality_frame("interaction", n=400_000, seed=5)
    c, s = (df.review.str.slice(5, 6).astype(int) >= 6).astype(int), (df.x > NormalDist().inv_cdf(0.6)).astype(int)
    d = pid(joint_distribution(c, s, df.label))
    assert d.synergy == pytest.approx(0.514, abs=0.01) and d.redundancy == pytest.approx(0.018, abs=0.005)
    assert d.unique1 < 1e-3 and d.unique2 < 1e-3
    # independent halves, y = [a + b > 0]: BROJA gives them no unique information at all — a
    # threshold on a sum is redundancy (0.27 bits) + synergy (0.61), as for AND (R 0.31, S 0.5)
    ind = two_modality_frame("independent", n=400_000, seed=5)
    d = pid(joint_distribution(ind.review.str.slice(5, 6).astype(int), np.digitize(ind.x, DECILE_CUTS), ind.label))
    assert d.unique1 < 0.02 and d.unique2 < 0.02, d
    assert d.synergy > 0.55 and d.redundancy > 0.2, d


def test_emap_finds_no_interaction_where_the_truth_is_additive(trained):
    e = emap_of(trained, "independent")
    assert e["model"] > 0.95, e  # planted: 0.998 for a fused model
    assert abs(e["gap"]) < 0.01, e  # planted: y = [a + b > 0] is additive in the two modalities


def test_emap_finds_the_planted_interaction(trained):
    e = emap_of(trained, "interaction")
    assert e["model"] > 0.85, e  # planted Bayes ROC-AUC 0.90
    assert e["gap"] > 0.1 and e["gap_lo"] > 0.05, e  # planted: 0.90 - 0.65 = 0.25


def test_pid_of_unimodal_predictions_finds_synergy_in_the_interaction(trained):
    d = pid_of(trained, "interaction")
    assert d.synergy > 0.7 * d.total and d.synergy > max(d.redundancy, d.unique1, d.unique2), d  # planted: 0.97


def test_pid_of_unimodal_predictions_finds_uniqueness_where_only_the_text_tells(trained):
    d = pid_of(trained, "text_only_signal")
    assert d.unique1 > 0.8 * d.total and d.unique2 < 0.02, d  # planted: all of it unique to the text


def test_pid_of_unimodal_predictions_finds_redundancy_in_the_redundant_scenario(trained):
    d = pid_of(trained, "redundant")
    assert d.redundancy > 0.8 * d.total, d  # planted: both tell the same decile, all redundant


def test_pid_of_unimodal_predictions_of_independent_halves_is_synergy_and_redundancy(trained):
    d = pid_of(trained, "independent")
    assert d.unique1 + d.unique2 < 0.15 * d.total, d  # planted: ~0 (see the population test)
    assert d.synergy > max(d.redundancy, d.unique1, d.unique2), d
