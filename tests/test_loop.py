from dataclasses import replace

import numpy as np
import pytest

from fusionstudy.config import model_parts
from fusionstudy.data.prepare import prepare
from fusionstudy.metrics import classification_metrics
from fusionstudy.training.loop import _optimizers, fit, make_model, predict
from tests.conftest import synthetic_config, synthetic_frame


def _train_eval(prep, cfg, model_name, seed=0):
    modalities, fusion = model_parts(model_name, prep.modalities)
    model = make_model(modalities, fusion, prep, cfg, seed)
    res = fit(model, prep.splits["train"], prep.splits["val"], cfg.train, seed)
    proba = predict(model, prep.splits["test"])
    return classification_metrics(prep.splits["test"].y, proba)["roc_auc"], res, proba


def test_fusion_beats_either_modality_on_half_signal_task(synth_prep):
    cfg, prep = synth_prep
    text, _, _ = _train_eval(prep, cfg, "text_only")
    tab, _, _ = _train_eval(prep, cfg, "tabular_only")
    early, _, _ = _train_eval(prep, cfg, "early_concat")
    late, _, _ = _train_eval(prep, cfg, "late_logit_avg")
    assert early > 0.9 and late > 0.9
    assert text < 0.87 and tab < 0.87
    assert early - max(text, tab) > 0.05


def test_same_seed_same_metrics(synth_prep):
    cfg, prep = synth_prep
    a1, r1, p1 = _train_eval(prep, cfg, "early_concat", seed=3)
    a2, r2, p2 = _train_eval(prep, cfg, "early_concat", seed=3)
    assert np.array_equal(p1, p2) and a1 == a2 and r1.curves["val_loss"] == r2.curves["val_loss"]
    a3, _, p3 = _train_eval(prep, cfg, "early_concat", seed=4)
    assert not np.array_equal(p1, p3)


@pytest.mark.parametrize("text_optimizer", ["adagrad", "adamw"])
def test_same_seed_same_metrics_for_either_text_optimizer(synth_prep, text_optimizer):
    cfg, prep = synth_prep
    cfg = replace(cfg, train=replace(cfg.train, text_optimizer=text_optimizer, max_epochs=3))
    runs = [_train_eval(prep, cfg, "text_only", seed=5) for _ in range(2)]
    (a1, r1, p1), (a2, r2, p2) = runs
    assert np.array_equal(p1, p2) and a1 == a2
    assert r1.curves["val_loss"] == r2.curves["val_loss"] and r1.curves["grad_norm_text"] == r2.curves["grad_norm_text"]


def test_text_table_gets_row_adagrad_only_when_configured(synth_prep):
    cfg, prep = synth_prep
    for name, sparse in (("adagrad", True), ("adamw", False)):
        c = replace(cfg, train=replace(cfg.train, text_optimizer=name))
        model = make_model(("tabular", "text"), "early_concat", prep, c, 0)
        assert model.encoders["text"].bag.sparse == sparse
        opts = _optimizers(model, c.train)
        assert [type(o).__name__ for o in opts] == ["AdamW", "RowAdagrad"][:1 + sparse]
        assert sum(p.numel() for o in opts for g in o.param_groups for p in g["params"]) == \
            model.param_counts()["total"]


def test_fit_records_curves_and_restores_best(synth_prep):
    cfg, prep = synth_prep
    _, res, _ = _train_eval(prep, cfg, "early_concat")
    c = res.curves
    assert len(c["val_loss"]) == res.epochs_run >= res.best_epoch >= 1
    assert res.best_epoch == int(np.argmin(c["val_loss"])) + 1
    assert all(v > 0 for v in c["grad_norm_text"]) and all(v > 0 for v in c["grad_norm_tabular"])
    assert res.samples_per_s > 0 and not res.diverged


def test_divergence_is_flagged():
    cfg = synthetic_config(lr=1e30)
    prep = prepare(cfg, synthetic_frame(400))
    _, res, _ = _train_eval(prep, cfg, "early_concat")
    assert res.diverged


def test_unimodal_model_for_absent_modality_is_an_error(synth_prep):
    cfg, prep = synth_prep
    with pytest.raises(ValueError, match="image"):
        make_model(("image",), "early_concat", prep, cfg, 0)
