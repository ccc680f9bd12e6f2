"""The evaluation of a trained model: encoding the clean test rows once and re-encoding only the
perturbed modality must give the records of predicting every suite item from scratch."""
import numpy as np
import pytest

from fusionstudy.data.prepare import prepare
from fusionstudy.study.runner import RunSpec
from fusionstudy.training import evaluation
from fusionstudy.training.evaluation import eval_suite, evaluate
from fusionstudy.training.loop import background_rows, fit, make_model, predict, predict_with_features, encoder_features
from fusionstudy.metrics import classification_metrics
from tests.conftest import synthetic_config, synthetic_frame


@pytest.fixture(scope="module")
def setup():
    cfg = synthetic_config()
    cfg.study.noise_levels, cfg.study.drop_levels, cfg.study.permutations = [0.5, 1.0], [0.5], 2
    prep = prepare(cfg, synthetic_frame(900))
    return cfg, prep, eval_suite(prep, cfg, full=True)


def _scratch(model, suite, background, pool):
    """Every item predicted from its own inputs, no cache (the pre-cache path)."""
    return [evaluation._predict_item(model, split, marg, background, pool) for _, split, marg in suite]


@pytest.mark.parametrize("name,modalities", [("early_concat", ("tabular", "text")), ("gmu", ("tabular", "text")),
                                             ("text_only", ("text",)), ("tabular_only", ("tabular",))])
def test_cached_evaluation_equals_predicting_every_item_from_scratch(setup, name, modalities, monkeypatch):
    cfg, prep, suite = setup
    fusion = "early_concat" if name.endswith("_only") else name
    model = make_model(modalities, fusion, prep, cfg, 0)
    cfg.train.max_epochs = 1
    fit(model, prep.splits["train"], prep.splits["val"], cfg.train, 0)
    train = prep.splits["train"]
    background, pool = background_rows(train, 50, 0), background_rows(train, 200, 0)
    spec = RunSpec(name, fusion, modalities, 0, "part2")
    records, kept = evaluate(model, suite, spec, "k", "fp", background, pool)
    expected = _scratch(model, suite, background, pool)
    assert len(records) == len(suite) > 20
    seen = []  # the probabilities the cached path scores, item by item (the clean answer once)
    monkeypatch.setattr(evaluation, "classification_metrics", lambda y, p: seen.append(p) or classification_metrics(y, p))
    evaluate(model, suite, spec, "k", "fp", background, pool)
    # a unimodal model's items of the other modality are not scored again; a fused model's all are
    assert (len(seen) < len(suite)) == (len(modalities) == 1)
    for rec, (meta, split, marg), proba in zip(records, suite, expected):
        want = classification_metrics(split.y, proba)
        if marg is not None and not isinstance(marg[1], str) and marg[1] is not None:  # a per-sample drop
            assert rec.metrics == pytest.approx(want, rel=1e-5, abs=1e-6, nan_ok=True), meta
        else:  # every other item bit for bit (NaN == NaN)
            np.testing.assert_equal(rec.metrics, want, err_msg=str(meta))
    for key, proba in kept.items():  # stored removal predictions of a fused model
        item = next(i for i, (m, _, _) in enumerate(suite) if f"{m['perturbation']}:{m['modality']}" == key)
        np.testing.assert_array_equal(proba, expected[item])
    assert (len(kept) == 4) == (len(modalities) == 2)


def test_predict_with_features_reencodes_only_the_missing_modality(setup):
    cfg, prep, _ = setup
    model = make_model(("tabular", "text"), "early_concat", prep, cfg, 1).eval()
    test = prep.splits["test"]
    feats = encoder_features(model, test, np.arange(len(test)), ["text"])
    np.testing.assert_array_equal(predict_with_features(model, test, feats), predict(model, test))
    # a wrong cached feature changes the answer: the cache is really used
    wrong = {"text": feats["text"].flip(0)}
    assert not np.allclose(predict_with_features(model, test, wrong), predict(model, test))


def test_a_perturbation_of_the_other_modality_reuses_the_clean_answer(setup):
    cfg, prep, suite = setup
    model = make_model(("text",), "early_concat", prep, cfg, 2).eval()
    cache = evaluation._TestCache(model, suite[0][1], background_rows(prep.splits["train"], 20, 0))
    tab_noise = next(s for m, s, marg in suite if marg is None and m["modality"] == "tabular"
                     and m["perturbation"] != "clean")
    text_noise = next(s for m, s, marg in suite if marg is None and m["modality"] == "text"
                      and m["perturbation"] not in ("clean", "missing"))
    assert cache.unchanged(tab_noise) == ["text"]  # text inputs untouched
    assert cache.unchanged(text_noise) == []
    assert cache.unchanged(suite[0][1].subset(np.arange(10))) is None  # other rows: no cache
