"""The Part 5 remedies as training regimes (training.remedies, training.regimes) and their plan."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from fusionstudy.config import Config, model_parts, validate
from fusionstudy.records import Training
from fusionstudy.study.protocol import plan, remedy_plan
from fusionstudy.training.loop import fit, make_model, predict
from fusionstudy.training.regimes import build_regime, gblend_weights
from fusionstudy.training.remedies import MLA, GBlend, MLAFusion, Plain


def _model(synth_prep, fusion="early_concat"):
    cfg, prep = synth_prep
    return make_model(*model_parts(fusion, prep.modalities), prep, cfg, 0)


def test_mla_fusion_weights_the_more_certain_modality_by_exp_of_the_entropy_gap(synth_prep):
    model = _model(synth_prep, "late_logit_avg").eval()
    fused = MLAFusion(model.fusion, model.head)
    feats = {"tabular": torch.randn(5, model.fusion.dims["tabular"]), "text": torch.randn(5, model.fusion.dims["text"])}
    o = fused.modality_logits(feats)  # (2, 5, 2)
    np.testing.assert_allclose(o.detach().numpy(), model.fusion.modality_logits(feats).detach().numpy(), atol=1e-6)
    p = torch.softmax(o, dim=2)
    h = -(p * p.log()).sum(dim=2)
    w = torch.exp(h.max(dim=0).values - h)
    w = w / w.sum(dim=0)
    expect = (w[..., None] * o).sum(dim=0)
    np.testing.assert_allclose(fused(feats).detach().numpy(), expect.detach().numpy(), atol=1e-6)
    assert torch.all(fused.diagnostics["entropy_weights"].argmax(dim=1) == h.argmin(dim=0))


def test_mla_alternates_one_encoder_per_step(synth_prep):
    cfg, prep = synth_prep
    model, regime = build_regime("mla", _model(synth_prep), prep.splits["train"], cfg.train, 0)
    assert isinstance(regime, MLA) and isinstance(model.fusion, MLAFusion) and regime.steps_per_batch == 2
    from fusionstudy.data.prepare import to_inputs
    inputs, y = to_inputs(prep.splits["train"], np.arange(64)), torch.from_numpy(prep.splits["train"].y[:64])
    touched = []
    for loss, coeffs in regime.losses(model, inputs, y):
        model.zero_grad(set_to_none=True)
        loss.backward()
        touched.append(sorted(m for m, e in model.encoders.items() if any(p.grad is not None for p in e.parameters())))
        assert coeffs is None
    assert touched == [["tabular"], ["text"]]


def test_gblend_weights_sum_to_one_and_use_train_rows_only(synth_prep):
    cfg, prep = synth_prep
    model = _model(synth_prep)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w = gblend_weights(model, prep.splits["train"], cfg.train, 0)
    assert set(w) == {"tabular", "text", "fused"} and abs(sum(w.values()) - 1) < 1e-9 and min(w.values()) >= 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # copies were trained, not it
    # the estimate reads train rows only: it is the same whatever the validation/test rows are
    again = gblend_weights(_model(synth_prep), prep.splits["train"], cfg.train, 0)
    assert again == pytest.approx(w, rel=1e-6)
    other = gblend_weights(_model(synth_prep), prep.splits["train"], replace(cfg.train, gblend_holdout=0.4), 0)
    assert other != pytest.approx(w, rel=1e-3)


def test_gblend_loss_is_the_weighted_sum_of_the_heads_cross_entropies(synth_prep):
    cfg, prep = synth_prep
    model = _model(synth_prep, "late_logit_avg").eval()
    from fusionstudy.data.prepare import to_inputs
    inputs, y = to_inputs(prep.splits["train"], np.arange(50)), torch.from_numpy(prep.splits["train"].y[:50])
    ce = torch.nn.functional.cross_entropy
    feats = model.features(inputs)
    heads = model.fusion.modality_logits(feats)
    expect = 0.5 * ce(model(inputs), y) + 0.3 * ce(heads[0], y) + 0.2 * ce(heads[1], y)
    (loss, _), = GBlend({"fused": 0.5, "tabular": 0.3, "text": 0.2}).losses(model, inputs, y)
    assert loss.item() == pytest.approx(expect.item(), rel=1e-6)


def test_build_regime_plain_keeps_ogm_alpha_and_refuses_unknown_or_unimodal(synth_prep):
    cfg, prep = synth_prep
    model, regime = build_regime("", _model(synth_prep), prep.splits["train"], replace(cfg.train, ogm_alpha=0.3), 0)
    assert type(regime) is Plain and regime.alpha == 0.3
    _, ogm = build_regime("ogm_ge", _model(synth_prep), prep.splits["train"], cfg.train, 0)
    assert ogm.alpha == cfg.train.remedy_ogm_alpha == 0.5
    with pytest.raises(ValueError, match="remedy 'gblnd'"):
        build_regime("gblnd", _model(synth_prep), prep.splits["train"], cfg.train, 0)
    with pytest.raises(ValueError, match="two-modality"):
        build_regime("mla", _model(synth_prep, "text_only"), prep.splits["train"], cfg.train, 0)


def test_plain_fit_is_unchanged_by_the_regime_argument(synth_prep):
    cfg, prep = synth_prep
    short = replace(cfg.train, max_epochs=2)
    runs = []
    for regime in (None, Plain(0.0)):
        model = _model(synth_prep)
        fit(model, prep.splits["train"], prep.splits["val"], short, 0, regime=regime)
        runs.append(predict(model, prep.splits["test"]))
    np.testing.assert_array_equal(*runs)


def test_remedy_plan_names_runs_and_matches_the_part5_tags():
    cfg = Config()
    specs = remedy_plan(cfg, ("tabular", "text"))
    assert len(specs) == 3 * 3 * 3  # remedies x points x imbalance seeds, early_concat only
    assert {s.model for s in specs} == {"early_concat_ogm_ge", "early_concat_gblend", "early_concat_mla"}
    assert {s.training.tag for s in specs} == {"", "subsample:text:0.05", "corrupt:text:1.0"}
    part5_tags = {s.training.tag for s in plan(cfg)["part5"]}
    assert {s.training.tag for s in specs} - {""} <= part5_tags
    assert all(s.training.regime == "remedy" and s.part == "part5" for s in specs)
    assert remedy_plan(cfg, ("text",)) == []
    cfg.study.corrupt_levels = [0.5]  # a point Part 5 does not train has no plain model to compare with
    assert {s.training.tag for s in remedy_plan(cfg, ("tabular", "text"))} == {"", "subsample:text:0.05"}
    cfg.study.imbalance_models = []  # remedies run with Part 5
    assert remedy_plan(cfg, ("tabular", "text")) == []


def test_remedy_settings_are_checked_at_load_and_leave_the_fingerprint_alone():
    fp = Config().fingerprint()
    cfg = Config()
    cfg.study.remedies, cfg.study.remedy_points = ["mla"], [""]
    assert cfg.fingerprint() == fp  # which runs a study adds is not what a model is
    cfg.train.gblend_holdout = 0.3
    assert cfg.fingerprint() != fp
    for key, value, msg in (("remedies", ["gblend", "owm"], "unknown name"),
                            ("remedy_points", ["subsample:text:1.5"], "kind:modality:level"),
                            ("remedy_points", ["truncate:tabular:8"], "kind:modality:level")):
        bad = Config()
        setattr(bad.study, key, value)
        with pytest.raises(ValueError, match=msg):
            validate(bad)
    with pytest.raises(ValueError, match="a remedy run names one"):
        Training("remedy", 0.0, (), "")
