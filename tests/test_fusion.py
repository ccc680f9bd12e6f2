"""One conformance suite run over every registered fusion."""
import pytest
import torch

from fusionstudy.models.fusion import FUSIONS, LMF, build_fusion, expected_params

DIMS = {"text": 6, "tabular": 4}
HIDDEN, N_OUT, B = 8, 3, 5


def _feats(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(B, d, generator=g) for k, d in DIMS.items()}


def _build(name):
    torch.manual_seed(0)
    return build_fusion(name, DIMS, HIDDEN, N_OUT, dropout=0.0, tfn_dim=3, lmf_rank=2).eval()


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_output_shape(name):
    f = _build(name)
    out = f(_feats())
    assert out.shape == (B, f.out_dim)
    assert f.out_dim == (N_OUT if f.produces_logits else HIDDEN)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_key_order_invariance(name):
    f, feats = _build(name), _feats()
    reordered = {k: feats[k] for k in reversed(list(feats))}
    assert list(reordered) != list(feats)
    assert torch.equal(f(feats), f(reordered))


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_missing_key_is_named(name):
    f, feats = _build(name), _feats()
    del feats["tabular"]
    with pytest.raises(ValueError, match="tabular"):
        f(feats)


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_every_parameter_gets_a_gradient(name):
    f = _build(name).train()
    f(_feats()).pow(2).sum().backward()
    names = [n for n, p in f.named_parameters()]
    assert names, "a fusion without parameters cannot learn to fuse"
    for n, p in f.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: {n} got no gradient"


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_parameter_count_matches_formula(name):
    for dims in ({"text": 6, "tabular": 4}, {"text": 32, "tabular": 32}):
        f = build_fusion(name, dims, HIDDEN, N_OUT, dropout=0.0, tfn_dim=3, lmf_rank=2)
        counted = sum(p.numel() for p in f.parameters())
        assert counted == expected_params(name, dims, HIDDEN, N_OUT, tfn_dim=3, lmf_rank=2)


def test_lmf_factors_are_registered_and_train():
    f = LMF(DIMS, HIDDEN, N_OUT, lmf_rank=2)
    registered = {id(p) for p in f.parameters()}
    assert all(id(p) in registered for p in f.factors.values())
    opt = torch.optim.SGD(f.parameters(), lr=0.1)
    before = f.factors["text"].detach().clone()
    f(_feats()).sum().backward()
    opt.step()
    assert not torch.equal(before, f.factors["text"])


def test_unknown_fusion_lists_registry():
    with pytest.raises(ValueError, match="early_concat"):
        build_fusion("concat_typo", DIMS, HIDDEN, N_OUT, dropout=0.0, tfn_dim=3, lmf_rank=2)


def test_late_logit_avg_is_the_mean_of_modality_heads():
    f, feats = _build("late_logit_avg"), _feats()
    per = [f.heads[k](feats[k]) for k in ("tabular", "text")]
    assert torch.allclose(f(feats), (per[0] + per[1]) / 2)


def test_weights_are_distributions():
    feats = _feats()
    for name, key in (("gmu", "gates"), ("attention", "weights"), ("late_learned", "weights")):
        f = _build(name)
        f(feats)
        w = f.diagnostics[key]
        assert torch.allclose(w.sum(-1), torch.ones(()), atol=1e-6) and (w >= 0).all()


def test_registry_names_pair_with_their_classes():
    from fusionstudy.models import fusion as F
    from fusionstudy.registry import FUSION_NAMES, MODELS
    assert list(F.FUSIONS) == list(FUSION_NAMES)
    assert {n: c.__name__ for n, c in F.FUSIONS.items()} == {
        "early_concat": "EarlyConcat", "late_logit_avg": "LateLogitAvg", "late_learned": "LateLearned",
        "gmu": "GMU", "attention": "Attention", "tfn": "TFN", "lmf": "LMF"}
    assert {n: s.part for n, s in MODELS.items() if s.kind in ("unimodal", "fusion")} == {
        "tabular_only": "part1", "text_only": "part1", "early_concat": "part2", "late_logit_avg": "part2",
        "late_learned": "part4", "gmu": "part4", "attention": "part4", "tfn": "part4", "lmf": "part4"}


def test_the_registry_names_exactly_the_fusions_that_combine_logits_as_late():
    from fusionstudy.registry import FUSION_NAMES, LATE_FUSIONS
    assert set(FUSION_NAMES) == set(FUSIONS)
    assert set(LATE_FUSIONS) == {name for name, f in FUSIONS.items() if f.produces_logits}
