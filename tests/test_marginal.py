"""Removing a modality by marginalising it out: loop.background_rows and loop.predict_marginal."""
from dataclasses import replace

import numpy as np
import pytest

from fusionstudy.config import model_parts
from fusionstudy.data.prepare import SplitData, prepare
from fusionstudy.metrics import classification_metrics
from fusionstudy.models.fusion import FUSIONS
from fusionstudy.training.loop import background_rows, fit, make_model, predict, predict_marginal
from tests.conftest import synthetic_config, synthetic_frame


def _brute_force(model, split, bg, modality):
    """Build all len(split) x K input rows, run the full model, average over K."""
    n, k = len(split), len(bg)
    rep, til = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
    src = {m: (bg, til) if m == modality else (split, rep) for m in ("text", "tabular")}
    big = SplitData(split.row_ids[rep], [split.tokens[i] for i in rep], split.text_missing[rep],
                    src["text"][0].text[src["text"][1]], src["tabular"][0].cat[src["tabular"][1]],
                    src["tabular"][0].num[src["tabular"][1]], split.y[rep])
    return predict(model, big).reshape(n, k, -1).mean(axis=1)


@pytest.fixture(scope="module")
def small(synth_prep):
    cfg, prep = synth_prep
    return cfg, prep, prep.splits["test"].subset(np.arange(37)), background_rows(prep.splits["train"], 7, 0)


def _trained(prep, cfg, model_name, fusion, epochs=2):
    """A briefly trained model, so predictions spread well beyond 0.5 and the comparisons bite."""
    model = make_model(model_parts(model_name, prep.modalities)[0], fusion, prep, cfg, 0)
    fit(model, prep.splits["train"], prep.splits["val"], replace(cfg.train, max_epochs=epochs), 0)
    return model


@pytest.mark.parametrize("modality", ["tabular", "text"])
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_equals_brute_force(small, fusion, modality):
    cfg, prep, split, bg = small
    model = _trained(prep, cfg, fusion, fusion)
    # batch_size 20 with K = 7: chunks of 2 rows, the last one short; encoder batches of 20 rows
    got = predict_marginal(model, split, bg, modality, batch_size=20)
    assert got.shape == (len(split), len(prep.classes))
    np.testing.assert_allclose(got, _brute_force(model, split, bg, modality), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    assert np.abs(got - predict(model, split)).max() > 1e-3  # it changed something, 1000x the tolerance


def test_rows_subset_marginalises_only_those_rows(small):
    cfg, prep, split, bg = small
    model = _trained(prep, cfg, "gmu", "gmu")
    rows = np.array([3, 0, 20, 36])
    got = predict_marginal(model, split, bg, "tabular", rows=rows)
    full, plain = predict_marginal(model, split, bg, "tabular"), predict(model, split)
    other = np.setdiff1d(np.arange(len(split)), rows)
    np.testing.assert_allclose(got[rows], full[rows], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got[other], plain[other])
    np.testing.assert_array_equal(predict_marginal(model, split, bg, "tabular", rows=np.array([], int)), plain)


def test_unimodal_model_losing_its_modality_predicts_the_background_mean(small):
    cfg, prep, split, bg = small
    model = _trained(prep, cfg, "text_only", "early_concat")
    got = predict_marginal(model, split, bg, "text")
    assert (got == got[0]).all()
    np.testing.assert_allclose(got[0], predict(model, bg).mean(axis=0), rtol=0, atol=1e-6)
    # a modality the model does not use: prediction unchanged
    np.testing.assert_array_equal(predict_marginal(model, split, bg, "tabular"), predict(model, split))


def test_deterministic_even_from_train_mode(small):
    cfg, prep, split, bg = small
    model = make_model(("tabular", "text"), "early_concat", prep, cfg, 0)
    a = predict_marginal(model, split, bg, "text")
    model.train()  # dropout on; predict_marginal must switch it off
    np.testing.assert_array_equal(predict_marginal(model, split, bg, "text"), a)


def test_unknown_modality_names_the_allowed_ones(small):
    cfg, prep, split, bg = small
    model = make_model(("tabular", "text"), "early_concat", prep, cfg, 0)
    with pytest.raises(ValueError, match=r"'image'.*\['tabular', 'text'\]"):
        predict_marginal(model, split, bg, "image")


def test_background_rows_are_distinct_train_rows_fixed_by_seed(synth_prep):
    _, prep = synth_prep
    train = prep.splits["train"]
    a, b, c = (background_rows(train, 50, s) for s in (0, 0, 1))
    assert len(a) == 50 and len(set(a.row_ids)) == 50 and set(a.row_ids) <= set(train.row_ids)
    assert np.array_equal(a.row_ids, b.row_ids) and not np.array_equal(a.row_ids, c.row_ids)
    for k in (0, len(train) + 1):
        with pytest.raises(ValueError, match="background size"):
            background_rows(train, k, 0)


@pytest.mark.parametrize("fusion", ["early_concat", "gmu"])
def test_known_answer_only_text_carries_signal(fusion):
    cfg = synthetic_config()
    prep = prepare(cfg, synthetic_frame(text_signal=True, tab_signal=False))
    test, bg = prep.splits["test"], background_rows(prep.splits["train"], 50, 0)
    model = make_model(("tabular", "text"), fusion, prep, cfg, 0)
    fit(model, prep.splits["train"], prep.splits["val"], cfg.train, 0)

    def auc(p):
        return classification_metrics(test.y, p)["roc_auc"]

    clean = auc(predict(model, test))
    assert clean > 0.95
    assert abs(auc(predict_marginal(model, test, bg, "tabular")) - clean) < 0.01
    # 300 test rows: a chance AUC has a standard error of ~0.035
    assert abs(auc(predict_marginal(model, test, bg, "text")) - 0.5) < 0.1
