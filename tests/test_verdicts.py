import numpy as np
import pytest

from fusionstudy.analysis.verdicts import EQUIVALENT, HELPS, HURTS, INCONCLUSIVE, combine, rule
from fusionstudy.metrics import bootstrap_counts, interval, per_seed_auc


def _scores(rng, n, separations):
    y = rng.integers(0, 2, n)
    return y, np.array([s * y + rng.normal(size=n) for s in separations])


def _term(y, scores, counts, seeds=None):
    obs, reps = per_seed_auc(y, scores, counts)
    return obs, reps, tuple(range(len(scores))) if seeds is None else seeds


def test_rule_needs_the_whole_interval_beyond_the_margin():
    assert rule(0.006, 0.02, 0.005) == HELPS and rule(0.004, 0.02, 0.005) == INCONCLUSIVE
    assert rule(-0.02, -0.006, 0.005) == HURTS and rule(-0.02, -0.004, 0.005) == INCONCLUSIVE
    assert rule(-0.004, 0.0049, 0.005) == EQUIVALENT and rule(0.001, 0.004, 0.005) == EQUIVALENT
    assert rule(float("nan"), float("nan"), 0.005) == INCONCLUSIVE


def test_a_model_minus_itself_is_exactly_zero():
    rng = np.random.default_rng(0)
    y, s = _scores(rng, 500, [1.0, 1.2, 0.8])
    t = _term(y, s, bootstrap_counts(500, 100))
    assert combine([(1.0, t), (-1.0, t)]) == {"value": 0.0, "lo": 0.0, "hi": 0.0, "seeds": 3}


def test_a_better_model_is_detected_and_pairing_narrows_the_interval():
    rng = np.random.default_rng(1)
    y, weak = _scores(rng, 1000, [0.8, 0.9, 1.0])
    strong = weak + 1.0 * y  # the same rows' noise: strongly paired
    counts = bootstrap_counts(1000, 200)
    d = combine([(1.0, _term(y, strong, counts)), (-1.0, _term(y, weak, counts))])
    assert d["lo"] > 0.05 and rule(d["lo"], d["hi"], 0.005) == HELPS
    alone = combine([(1.0, _term(y, strong, counts))])
    assert d["hi"] - d["lo"] < alone["hi"] - alone["lo"]  # pairing removes the shared row noise


def test_a_one_seed_reference_enters_every_seed_draw_alike():
    rng = np.random.default_rng(2)
    y, s = _scores(rng, 800, [1.0, 1.5, 2.0])
    counts = bootstrap_counts(800, 200)
    ref = _term(y, s[:1], counts, seeds=(0,))
    d = combine([(1.0, _term(y, s, counts)), (-1.0, ref)])
    obs, reps = per_seed_auc(y, s, counts)
    assert d["value"] == pytest.approx(obs.mean() - ref[0][0])
    # with the model's seeds fixed instead of redrawn the interval is the rows-only one, and narrower
    lo, hi = interval(0.0, reps.mean(axis=0) - ref[1][0])
    assert d["hi"] - d["lo"] > hi - lo


def test_terms_with_different_seed_counts_are_refused():
    rng = np.random.default_rng(3)
    y, s = _scores(rng, 300, [1.0, 1.0, 1.0])
    counts = bootstrap_counts(300, 50)
    with pytest.raises(AssertionError, match="seed counts"):
        combine([(1.0, _term(y, s, counts)), (-1.0, _term(y, s[:2], counts))])
