"""Known answers of the study's stored interaction measures and remedies (issue 21): small studies
of planted scenarios (``data.scenarios``) run through ``run_study``, read back torch-free, and
judged by ``analysis.remedies`` — the path experiments.md's tables take. Slow: each study trains
3 seeds of 3 models plus the MLA remedy (~20-40 s on 2 cores); the crowd-out study trains
G-Blend and OGM-GE instead (~20 s)."""
from __future__ import annotations

import pytest

from fusionstudy.api import load_study
from fusionstudy.analysis.remedies import emap_table, pid_table, remedy_table
from fusionstudy.config import validate
from fusionstudy.analysis.verdicts import value
from fusionstudy.data.scenarios import crowd_out_config, scenario_config, two_modality_frame
from fusionstudy.report.experiments import render_experiments
from fusionstudy.study.runner import run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """``study(scenario) -> StudyResults`` of a 3,000-row scenario: Parts 1-2 (text_only,
    tabular_only, early_concat; seeds 0-2), no Part 5 sweep, the MLA remedy on clean data."""
    done = {}

    def get(scenario: str):
        if scenario not in done:
            folder = tmp_path_factory.mktemp(scenario)
            cfg = (crowd_out_config if scenario == "crowd_out" else scenario_config)(folder / "data.csv")
            cfg.study.splits, cfg.study.robustness = 1, False
            st = cfg.study  # Part 5 on, with an empty grid: the remedy at the clean point only
            st.imbalance_models, st.subsample_levels, st.corrupt_levels, st.truncate_levels = ["early_concat"], [], [], []
            st.remedies, st.remedy_points = ["gblend", "ogm_ge"] if scenario == "crowd_out" else ["mla"], [""]
            df = two_modality_frame(scenario)
            df.to_csv(folder / "data.csv", index=False)
            done[scenario] = load_study(run_study(validate(cfg), out=str(folder / "res"), data=df))
        return done[scenario]
    return get


def _gap(res, model="early_concat"):
    t = emap_table(res, n_boot=300)
    return t[t.model == model].iloc[0]


def test_emap_gap_is_clearly_positive_for_the_planted_interaction(study):
    # planted: the Bayes model's interaction is 0.25 ROC-AUC (scenarios docstring)
    g = _gap(study("interaction"))
    assert g.n == 500 and g.seeds == 3
    assert g.gap > 0.1 and g.lo > 0.05, g.to_dict()


def test_emap_gap_is_about_zero_where_the_truth_is_additive(study):
    g = _gap(study("independent"))
    assert abs(g.gap) < 0.01 and g.lo < 0.005, g.to_dict()


@pytest.mark.parametrize("scenario, atom, share", [("interaction", "synergy", 0.7), ("redundant", "redundancy", 0.8)])
def test_pid_of_the_stored_unimodal_predictions_finds_the_planted_atom(study, scenario, atom, share):
    t = pid_table(study(scenario), n_boot=20).set_index("atom")
    assert t.share[atom] > share and t.share[atom] == t.share.drop("total").max(), t


def test_pid_of_independent_halves_is_not_uniqueness(study):
    # BROJA's known quirk (docs/interaction.md): y = [a + b > 0] shows as redundancy + synergy
    t = pid_table(study("independent"), n_boot=20).set_index("atom")
    assert t.share["unique_text"] + t.share["unique_tabular"] < 0.15, t


def test_the_remedy_is_compared_with_plain_fusion_and_rendered(study, tmp_path):
    res = study("interaction")
    t = remedy_table(res, 0.005)
    assert list(t.model) == ["early_concat_mla"] and t.plain.iloc[0] == "early_concat" and t.seeds.iloc[0] == 3
    # MLA fuses the two modalities' logits (entropy-weighted): it cannot learn the XOR that plain
    # early fusion learns, so on the interaction it measurably loses and uses less interaction
    assert t.verdict.iloc[0] == "hurts" and t.auc.iloc[0] < t.plain_auc.iloc[0] - 0.05, t.iloc[0].to_dict()
    assert _gap(res, "early_concat_mla").gap < _gap(res).gap - 0.05
    text = render_experiments(res, tmp_path, tmp_path)
    assert "### Part 5 remedies" in text and "**EMAP per fused model**" in text and "**PID of the data**" in text


def test_plain_fusion_crowds_out_the_slow_text_and_gblend_gives_it_back(study):
    # planted (scenarios docstring): both readings are about as informative (Bayes 0.893 / 0.891,
    # both 0.927), but the text's 300 rare cue words are slow to learn beside the easy table
    res = study("crowd_out")
    auc = {m: value(res, m)["value"] for m in ("text_only", "tabular_only", "early_concat")}
    assert auc["text_only"] > 0.72 and auc["tabular_only"] > auc["text_only"] + 0.08, auc  # text alone clearly useful
    implied = (auc["text_only"] - 0.5) / (auc["text_only"] + auc["tabular_only"] - 1)  # ~0.39
    t = remedy_table(res, 0.005).set_index("remedy")
    g = t.loc["gblend"]
    assert g.plain == "early_concat" and g.seeds == 3 and g.weak == "text"
    # crowd-out: plain fusion's text share far below the unimodal strengths' and ~no gain over the table
    assert g.plain_share < 0.27 and g.plain_share < implied - 0.1, (g.plain_share, implied)
    assert auc["early_concat"] - auc["tabular_only"] < 0.01, auc
    # G-Blend's own text loss raises the text's share, the paired interval excluding zero
    assert g.share - g.plain_share > 0.04 and g.share_lo > 0, g.to_dict()
    # OGM-GE does not: on train batches the text, memorising its rare words, looks ahead and is slowed
    assert t.loc["ogm_ge"].share < g.plain_share, t.loc["ogm_ge"].to_dict()
