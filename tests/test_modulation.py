"""OGM-GE (training.modulation): eq. 10's coefficients, the modulated gradients, the regime in
``fit`` and its config key; and its known answer where plain fusion does not collapse."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from fusionstudy.analysis.tables import shapley_two_player
from fusionstudy.config import Config, load_config, model_parts
from fusionstudy.data.prepare import prepare, to_inputs
from fusionstudy.data.scenarios import scenario_config, two_modality_frame
from fusionstudy.metrics import classification_metrics
from fusionstudy.training.loop import background_rows, fit, make_model, predict, predict_marginal
from fusionstudy.training.modulation import modulate_gradients, ogm_coefficients, unimodal_logits
from tests.conftest import ROOT


def test_coefficients_follow_eq_10_and_slow_only_the_leading_modality():
    y = torch.tensor([0, 1, 1, 0])
    sure = torch.tensor([[4.0, 0.0], [0.0, 4.0], [0.0, 4.0], [4.0, 0.0]])  # p(true class) = 0.982
    unsure = torch.zeros(4, 2)  # p = 0.5
    rho = (4 * torch.softmax(sure[0], 0)[0].item()) / 2.0
    k = ogm_coefficients({"tabular": sure, "text": unsure}, y, alpha=0.5)
    assert k == pytest.approx({"tabular": 1 - math.tanh(0.5 * rho), "text": 1.0}, abs=1e-12)
    assert ogm_coefficients({"tabular": unsure, "text": sure}, y, 0.5) == pytest.approx(
        {"tabular": 1.0, "text": 1 - math.tanh(0.5 * rho)}, abs=1e-12)
    assert ogm_coefficients({"tabular": sure, "text": unsure}, y, 0.0) == {"tabular": 1.0, "text": 1.0}
    with pytest.raises(ValueError, match="two modalities"):
        ogm_coefficients({"text": sure}, y, 0.5)


def test_modulated_gradient_is_k_times_g_plus_noise_of_its_spread(synth_prep):
    cfg, prep = synth_prep
    model = make_model(("tabular", "text"), "early_concat", prep, cfg, 0)  # sparse text table (Adagrad)
    model(to_inputs(prep.splits["train"], np.arange(64))).sum().backward()
    for p in model.parameters():
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    modulate_gradients(model, {"tabular": 0.25, "text": 1.0}, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)  # the same draws, in the same order
    for name, p in model.named_parameters():
        g = before[name]
        if not name.startswith("encoders."):
            assert torch.equal(p.grad, g)  # fusion and head untouched
            continue
        k = 0.25 if name.startswith("encoders.tabular") else 1.0
        vals = g._values() if g.is_sparse else g
        noise = torch.randn(vals.shape, generator=gen) * (float(vals.std(correction=0)) + 1e-8)
        got = p.grad._values() if g.is_sparse else p.grad
        assert p.grad.is_sparse == g.is_sparse
        torch.testing.assert_close(got, k * vals + noise, rtol=0, atol=1e-6)


def test_unimodal_logits_are_the_late_heads_or_the_head_without_the_other_side(synth_prep):
    cfg, prep = synth_prep
    feats = {"tabular": torch.randn(5, 16), "text": torch.randn(5, 16)}
    late = make_model(("tabular", "text"), "late_logit_avg", prep, cfg, 0).eval()
    got = unimodal_logits(late, feats)
    torch.testing.assert_close((got["tabular"] + got["text"]) / 2, late.head(late.fusion(feats)))
    early = make_model(("tabular", "text"), "early_concat", prep, cfg, 0).eval()
    alone = early.head(early.fusion({"tabular": feats["tabular"], "text": torch.zeros(5, 16)}))
    torch.testing.assert_close(unimodal_logits(early, feats)["tabular"], alone)


def test_ogm_alpha_is_checked_at_load_and_leaves_the_default_fingerprint_alone():
    with pytest.raises(ValueError, match=r"train.ogm_alpha must lie in \[0, 100\]"):
        load_config("clothing", "quick", ["train.ogm_alpha=-0.5"])
    with open(ROOT / "results" / "clothing" / "runs.jsonl") as fh:
        stored_fp = json.loads(fh.readline())["config_fp"]
    assert load_config("clothing").fingerprint() == stored_fp  # the committed study resumes as is
    on = Config()
    on.train.ogm_alpha = 0.5
    assert on.fingerprint() != Config().fingerprint()  # an OGM-GE model is another model


def test_a_unimodal_model_trains_plainly_under_ogm_alpha(synth_prep):
    cfg, prep = synth_prep
    runs = []
    for alpha in (0.0, 0.8):
        model = make_model(("text",), "early_concat", prep, cfg, 0)
        fit(model, prep.splits["train"], prep.splits["val"], replace(cfg.train, max_epochs=2, ogm_alpha=alpha), 0)
        runs.append(predict(model, prep.splits["test"]))
    np.testing.assert_array_equal(*runs)


@pytest.fixture(scope="module")
def dominant(tmp_path_factory):
    cfg = scenario_config(tmp_path_factory.mktemp("dominant") / "data.csv")
    return cfg, prepare(cfg, two_modality_frame("dominant_modality"))


def _text_share(cfg, prep, fusion: str, alpha: float) -> tuple[float, float]:
    """Test ROC-AUC and the text's share of the two-player Shapley value (removal = marginalised)."""
    test, model = prep.splits["test"], make_model(*model_parts(fusion, prep.modalities), prep, cfg, 0)
    fit(model, prep.splits["train"], prep.splits["val"], replace(cfg.train, ogm_alpha=alpha), 0)
    bg = background_rows(prep.splits["train"], 50, 0)
    auc = lambda p: classification_metrics(test.y, p)["roc_auc"]  # noqa: E731
    phi = shapley_two_player(auc(predict(model, test)), auc(predict_marginal(model, test, bg, "tabular")),
                             auc(predict_marginal(model, test, bg, "text")))
    return auc(predict(model, test)), phi["text"] / (phi["text"] + phi["tabular"])


@pytest.mark.parametrize("fusion", ["early_concat", "late_logit_avg"])
def test_ogm_ge_leaves_a_fusion_that_did_not_collapse_as_it_was(dominant, fusion):
    # planted (dominant_modality): Bayes ROC-AUC 0.919 tabular, 0.693 text, 0.977 both, so the
    # text's Bayes Shapley share is 0.1255 / 0.477 = 0.263; plain fusion reaches it, so there is
    # no imbalance for OGM-GE to correct, and it must not buy balance with accuracy
    cfg, prep = dominant
    plain_auc, plain_share = _text_share(cfg, prep, fusion, 0.0)
    ogm_auc, ogm_share = _text_share(cfg, prep, fusion, 0.5)
    assert abs(plain_share - 0.263) < 0.03, plain_share
    assert abs(ogm_share - plain_share) < 0.03 and ogm_auc > plain_auc - 0.01, (plain_auc, plain_share, ogm_auc, ogm_share)
