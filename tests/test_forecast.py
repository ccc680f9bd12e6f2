"""The before-fusion forecast: planted truths on synthetic data, the power formula, the scoring, storage."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fusionstudy.analysis.forecast import (
    cross_fit_stack,
    forecast_frame,
    forecast_gain,
    p_helps,
    pooled_forecast,
    resampled_kappa_r,
    score_forecasts,
    stack_features,
)
from fusionstudy.analysis.verdicts import EQUIVALENT, HELPS
from fusionstudy.data.scenarios import scenario_config, two_modality_frame
from fusionstudy.records import RunStore


def _cfg(tmp_path, scenario: str, n: int, splits: int = 1):
    path = tmp_path / f"{scenario}.csv"
    two_modality_frame(scenario, n=n, seed=1).to_csv(path, index=False)
    cfg = scenario_config(path)
    cfg.study.splits, cfg.study.bootstrap = splits, 500
    cfg.study.subsample_levels, cfg.study.corrupt_levels, cfg.study.truncate_levels = [], [], []
    return cfg


def _forecast(tmp_path, scenario: str, n: int = 6000, splits: int = 1):
    from fusionstudy.api import forecast
    cfg = _cfg(tmp_path, scenario, n, splits)
    return forecast(cfg, out=tmp_path / scenario), cfg


def test_independent_halves_are_forecast_to_help(tmp_path):
    # truth: each modality alone ROC-AUC 0.83, both 0.998 (the Bayes answers of the scenario)
    table, _ = _forecast(tmp_path, "independent", n=3000)
    row = table.iloc[0]
    assert row.situation == "clean" and row.verdict == HELPS
    assert 0.10 < row.gain < 0.20 and row.p_helps > 0.99
    assert 0.78 < row.auc_text < 0.88 and 0.78 < row.auc_tabular < 0.88 and row.auc_stack > 0.95  # text tells a decile only


def test_redundant_and_text_only_are_not_forecast_to_help(tmp_path):
    for scenario in ("redundant", "text_only_signal"):
        table, cfg = _forecast(tmp_path, scenario, n=12000)
        row = table.iloc[0]
        assert abs(row.gain) < cfg.report.margin, (scenario, row.gain)
        assert row.verdict == EQUIVALENT, (scenario, row.lo, row.hi)
        assert row.p_helps < 0.05


def test_forecast_reads_no_test_row_and_resumes(tmp_path):
    from fusionstudy.api import forecast
    from fusionstudy.data.prepare import prepare
    cfg = _cfg(tmp_path, "independent", 2000, splits=2)
    out = tmp_path / "study"
    forecast(cfg, out=out)
    recs = RunStore(out).forecasts()
    assert sorted(r.split for r in recs.values()) == [0, 1]
    prep = prepare(cfg, split_index=1)
    r1 = next(r for r in recs.values() if r.split == 1)
    assert r1.y == prep.splits["val"].y.tolist()  # validation rows of that split, never test
    assert {m: np.asarray(p).shape for m, p in r1.proba.items()} == {"tabular": (len(r1.y), 2), "text": (len(r1.y), 2)}
    n_lines = len(RunStore(out).forecasts_path.read_text().splitlines())
    table = forecast(cfg, out=out)  # resumed: nothing refit
    assert len(RunStore(out).forecasts_path.read_text().splitlines()) == n_lines
    assert table.iloc[0].splits == 2


def test_power_is_half_where_the_lower_bound_meets_the_margin():
    z = stats.norm.ppf(0.975)
    assert p_helps(0.005 + z * 0.002, 0.002, 0.005) == pytest.approx(0.5)
    assert p_helps(0.005 + (z + 1.645) * 0.002, 0.002, 0.005) == pytest.approx(0.95, abs=1e-3)
    assert p_helps(0.0, 0.002, 0.005) == pytest.approx(stats.norm.cdf(-2.5 - z))
    assert p_helps(0.01, 0.0, 0.005) == 1.0 and p_helps(0.004, 0.0, 0.005) == 0.0
    assert np.isnan(p_helps(0.01, float("nan"), 0.005))


def test_pooling_uses_the_nadeau_bengio_interval_over_splits():
    rows = [{"gain": g, "se": 0.001} for g in (0.010, 0.012, 0.008, 0.010)]
    f = pooled_forecast(rows, ratio=0.2, margin=0.005)
    sd = np.std([0.010, 0.012, 0.008, 0.010], ddof=1)
    half = stats.t.ppf(0.975, 3) * np.sqrt((1 / 4 + 0.2) * sd ** 2)
    assert f["gain"] == pytest.approx(0.010) and f["hi"] - f["gain"] == pytest.approx(half)
    one = pooled_forecast(rows[:1], ratio=0.2, margin=0.005)
    assert one["lo"] == pytest.approx(0.010 - stats.norm.ppf(0.975) * 0.001)
    assert one["verdict"] == HELPS and one["helps"]


def test_the_stacker_is_cross_fitted():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 3))  # no signal: an in-sample fit would score above 0.5, out-of-fold does not
    p = cross_fit_stack(x, y)
    from sklearn.metrics import roc_auc_score
    assert p.shape == (400, 2) and np.allclose(p.sum(1), 1)
    assert roc_auc_score(y, p[:, 1]) < 0.55
    with pytest.raises(ValueError, match="validation rows of every class"):
        cross_fit_stack(x[:6], np.array([0, 0, 0, 0, 0, 1]))


def test_stack_features_binary_and_multiclass():
    p = np.array([[0.2, 0.8], [0.5, 0.5]])
    f = stack_features([p, p[::-1]])
    assert f.shape == (2, 3) and f[1, 0] == pytest.approx(0.0) and f[0, 2] == pytest.approx(f[0, 0] * f[0, 1])
    assert stack_features([np.full((4, 3), 1 / 3)] * 2).shape == (4, 6)


def test_forecast_gain_on_planted_probabilities():
    rng = np.random.default_rng(1)
    n = 4000
    a, b = rng.normal(size=(2, n))
    y = (a + b > 0).astype(int)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    probas = {"text": np.column_stack([1 - sig(2 * a), sig(2 * a)]), "tabular": np.column_stack([1 - sig(2 * b), sig(2 * b)])}
    f = forecast_gain(y, probas, n_boot=200)
    assert f["auc"]["stack"] > 0.99 and 0.13 < f["gain"] < 0.19 and 0 < f["se"] < 0.01


def test_scoring_known_answers():
    s = score_forecasts([0.01, 0.02, 0.0, -0.01], [0.012, 0.018, 0.001, -0.012], [True, True, False, False],
                        [True, False, False, False])
    assert s["hits"] == 3 and s["rate"] == 0.75 and s["constant"] == 3 and s["constant_says"] == "does not help"
    assert s["kappa"] == pytest.approx(0.5)  # po 0.75, pe 0.5*0.25 + 0.5*0.75 = 0.5
    assert s["r"] == pytest.approx(np.corrcoef([0.01, 0.02, 0.0, -0.01], [0.012, 0.018, 0.001, -0.012])[0, 1]) and s["mae"] == pytest.approx(0.00175)
    assert np.isnan(score_forecasts([0.1, 0.2], [0.1, 0.2], [True, True], [True, True])["kappa"])


def test_forecast_frame_names_every_situation(tmp_path):
    from fusionstudy.study.forecast import forecast_record
    from fusionstudy.data.prepare import prepare
    from fusionstudy.data.perturb import weakened
    cfg = _cfg(tmp_path, "independent", 1500)
    prep = prepare(cfg)
    recs = [forecast_record(prep, cfg, 0, ()), forecast_record(weakened(prep, ("truncate", "text", 1), 0), cfg, 0,
                                                                 ("truncate", "text", 1))]
    table = forecast_frame(recs, 0.5, 0.005, n_boot=100)
    assert list(table.situation) == ["clean", "truncate:text:1"]
    assert table.gain.iloc[0] > 0.05


def test_resampled_kappa_and_r_equal_sklearn_and_corrcoef_on_the_repeated_rows():
    from sklearn.metrics import cohen_kappa_score
    rng = np.random.default_rng(3)
    seen = {"kappa": 0, "nan": 0}
    for _ in range(40):
        n = int(rng.integers(3, 10))
        pg, mg = rng.normal(size=n), rng.normal(size=n)
        pg[rng.random(n) < 0.15] = np.nan
        ph, mh = rng.random(n) < 0.5, rng.random(n) < 0.5
        w = rng.integers(0, 3, size=(15, n))
        kappa, r = resampled_kappa_r(pg, mg, ph, mh, w)
        for b in range(len(w)):
            i = np.repeat(np.arange(n), w[b])
            if len(set(ph[i])) > 1 and len(set(mh[i])) > 1:
                assert kappa[b] == cohen_kappa_score(mh[i], ph[i])  # the same arithmetic: exactly equal
                seen["kappa"] += 1
            else:
                assert np.isnan(kappa[b])
            ok = ~np.isnan(pg[i]) & ~np.isnan(mg[i])
            if ok.sum() >= 3 and pg[i][ok].std() > 0 and mg[i][ok].std() > 0:
                assert r[b] == pytest.approx(np.corrcoef(pg[i][ok], mg[i][ok])[0, 1], abs=1e-12)
            else:
                assert np.isnan(r[b])
                seen["nan"] += 1
    assert seen["kappa"] > 100 and seen["nan"] > 10  # both branches were exercised


def test_part5_points_get_a_forecast_only_when_the_study_trains_part5(tmp_path):
    from fusionstudy.study.forecast import situations
    cfg = _cfg(tmp_path, "independent", 500, splits=3)
    cfg.study.subsample_levels, cfg.study.imbalance_models = [0.5], ["text_only", "early_concat"]
    clean = [(0, ()), (1, ()), (2, ())]
    assert situations(cfg, ("tabular", "text")) == clean + [(0, ("subsample", "tabular", 0.5)), (0, ("subsample", "text", 0.5))]
    cfg.study.imbalance_models = []  # the no-Rating contrast: no Part 5 run measures a weakened forecast
    assert situations(cfg, ("tabular", "text")) == clean


def test_a_design_study_is_never_held_out_even_when_retrained_with_its_forecast_first():
    from types import SimpleNamespace

    from fusionstudy.records import StudyResults
    from fusionstudy.report.forecast import DESIGN_STUDIES, held_out

    def study(name, forecast_time, fused_time):
        fused = SimpleNamespace(kind="fusion", time=fused_time)
        forecast = SimpleNamespace(created=forecast_time)
        return StudyResults(None, [fused], [], {}, {}, {"study": name}, forecasts=[forecast])

    assert "clothing" in DESIGN_STUDIES
    first, later = "2026-12-07T20:06:44+00:00", "2026-12-07T20:07:34+00:00"
    assert not held_out(study("clothing", first, later))  # forecast first, yet the predictor was designed on it
    assert held_out(study("faa_strikes", first, later))
    assert not held_out(study("faa_strikes", later, first))  # forecast after a fused result
    assert not held_out(StudyResults(None, [SimpleNamespace(kind="fusion", time=later)], [], {}, {},
                                     {"study": "faa_strikes"}))  # no forecast stored
