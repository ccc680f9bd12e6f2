"""Part 5 trends (fusionstudy/analysis/trends.py): the weakening scale, the label rule, and planted
sweeps whose slope is known."""
import math

import numpy as np
import pytest
from scipy.stats import norm

from fusionstudy.analysis.trends import BEYOND, FLAT, GROWS, SHRINKS, WITHIN, gain_trend, trend_label, weakening_x
from fusionstudy.analysis.verdicts import INCONCLUSIVE
from fusionstudy.records import PredictionRecord, RunRecord, StudyResults, Training

N, SEEDS, MARGIN = 4000, (0, 1, 2), 0.005
LEVELS = (1.0, 0.5, 0.2, 0.05)  # a subsample sweep of the text side


def test_weakening_scale_is_zero_when_clean_and_grows_with_the_weakening():
    assert weakening_x("subsample", 1.0, 160) == 0 and weakening_x("subsample", "0.05", 160) == pytest.approx(0.95)
    assert weakening_x("corrupt", "0.0", 160) == 0 and weakening_x("corrupt", 0.6, 160) == 0.6
    assert weakening_x("truncate", "full", 160) == 0 and weakening_x("truncate", "40", 160) == 2.0
    assert weakening_x("truncate", "2", 160) == pytest.approx(math.log2(80))
    with pytest.raises(ValueError, match="subsample level"):
        weakening_x("subsample", 1.5, 160)
    with pytest.raises(ValueError, match="unknown sweep kind"):
        weakening_x("shuffle", 0.5, 160)


def test_trend_label_tests_direction_against_zero_and_size_against_the_margin():
    assert trend_label(-0.024, -0.013, MARGIN) == (SHRINKS, BEYOND)
    assert trend_label(-0.004, -0.001, MARGIN) == (SHRINKS, WITHIN)
    assert trend_label(-0.0064, -0.0022, MARGIN) == (SHRINKS, "")
    assert trend_label(0.006, 0.02, MARGIN) == (GROWS, BEYOND)
    assert trend_label(-0.003, 0.004, MARGIN) == (FLAT, "")
    assert trend_label(-0.0056, 0.0001, MARGIN) == (INCONCLUSIVE, "")
    assert trend_label(float("nan"), float("nan"), MARGIN) == (INCONCLUSIVE, "")


def _planted(separations: dict[str, list[float]]) -> StudyResults:
    """A results set of a text-subsample sweep: each model at each level scores ``d * y + noise``
    with separation ``d`` (ROC-AUC = Phi(d / sqrt 2)); ``tabular_only`` is clean and the strongest
    on validation, so each level's gain is ``fused - tabular_only``. The noise is shared by every
    model of a seed (paired, as real models on the same rows are)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N)
    runs, preds = [], {}
    for seed in SEEDS:
        noise = np.random.default_rng(seed + 1).standard_normal(N)
        for model, seps in separations.items():
            kind, mods = ("fusion", ["tabular", "text"]) if model == "early_concat" else \
                ("unimodal", [model.split("_")[0]])
            for level, d in zip(LEVELS, seps):
                weaken = () if level == 1.0 or model == "tabular_only" else ("subsample", "text", level)
                if model == "tabular_only" and level != 1.0:
                    continue
                key = f"{model}|{weaken}|{seed}"
                p = 1 / (1 + np.exp(-(d * y + noise - d / 2)))
                runs.append(RunRecord(run_key=key, study="s", model=model, kind=kind, modalities=mods, fusion="early",
                                      part="part5" if weaken else "part1", seed=seed, config_fp="fp",
                                      config={"study": {"bootstrap": 300}, "text": {"max_tokens": 160}}, git="g", time="t",
                                      metrics={"val": {"roc_auc": float(norm.cdf(d / np.sqrt(2)))}}, params={},
                                      training=Training.of(weaken=weaken)))
                preds[key] = PredictionRecord.of(key, {"val": np.column_stack([1 - p, p]), "test": np.column_stack([1 - p, p])})
    split = {"classes": ["0", "1"], "y_val": y.tolist(), "y_test": y.tolist()}
    return StudyResults(None, runs, [], preds, split, {"study": "s"})


def _trend(separations: dict[str, list[float]]) -> dict:
    res = _planted(separations)
    points = [(weakening_x("subsample", lv, 160), "" if lv == 1.0 else f"subsample:text:{lv}") for lv in LEVELS]
    return gain_trend(res, "early_concat", points, {"text": "text_only", "tabular": "tabular_only"}, "text", MARGIN)


TAB = [2.6] * 4  # tabular_only, ROC-AUC 0.967 (the clean side of the sweep)
TEXT = [1.8, 1.6, 1.2, 0.6]  # text_only weakens with the sweep


def test_a_gain_that_vanishes_as_text_is_subsampled_is_labelled_shrinks_beyond_the_margin():
    # fused separation falls from 3.2 to 2.6 (= tabular's) as text is subsampled: the planted gain goes
    # from Phi(3.2/sqrt2) - Phi(2.6/sqrt2) = +0.021 to 0, linearly in x by construction of the levels
    seps = [2.6 + 0.6 * (1 - x / 0.95) for x in (0.0, 0.5, 0.8, 0.95)]
    truth = [norm.cdf(s / np.sqrt(2)) - norm.cdf(2.6 / np.sqrt(2)) for s in seps]
    t = _trend({"early_concat": seps, "text_only": TEXT, "tabular_only": TAB})
    assert t["strong"] == ["tabular"] * 4 and t["seeds"] == SEEDS
    np.testing.assert_allclose(t["gains"], truth, atol=0.004)
    assert (t["label"], t["size"]) == (SHRINKS, BEYOND)
    assert t["change_lo"] < truth[-1] - truth[0] < t["change_hi"]  # the interval covers the planted change


def test_a_gain_that_grows_as_text_weakens_is_labelled_grows():
    seps = [2.6, 2.75, 2.9, 3.2]
    t = _trend({"early_concat": seps, "text_only": TEXT, "tabular_only": TAB})
    assert t["change"] > 0.01 and (t["label"], t["size"]) == (GROWS, BEYOND)


def test_a_constant_gain_is_flat_and_no_gain_at_all_is_exactly_zero():
    t = _trend({"early_concat": [2.8] * 4, "text_only": TEXT, "tabular_only": TAB})
    assert t["label"] == FLAT and abs(t["change"]) < 1e-12  # same scores at every level: same gain
    t = _trend({"early_concat": TAB, "text_only": TEXT, "tabular_only": TAB})
    assert t["slope"] == t["lo"] == t["hi"] == 0 and t["label"] == FLAT
