"""Interaction measures: the BROJA PID solver (analysis.interaction) on textbook distributions and
against brute force, and the pairwise logits EMAP projects (training.interaction)."""
from dataclasses import replace

import numpy as np
import pytest

from fusionstudy.analysis.interaction import _mi_y_x1x2, discretize, joint_distribution, min_union_information, pid
from fusionstudy.config import model_parts
from fusionstudy.data.prepare import SplitData
from fusionstudy.metrics import emap_scores
from fusionstudy.training.interaction import EMAP_MAX_ROWS, emap_rows, pairwise_logits
from fusionstudy.training.loop import fit, make_model, predict

H = lambda x: -x * np.log2(x) - (1 - x) * np.log2(1 - x)  # noqa: E731  binary entropy, bits


def gate(f, k: int = 2) -> np.ndarray:
    """``p(x1, x2, y)`` of ``y = f(x1, x2)`` with independent uniform inputs on ``0..k-1``."""
    out = np.zeros((k, k, 1 + max(f(a, b) for a in range(k) for b in range(k))))
    for a in range(k):
        for b in range(k):
            out[a, b, f(a, b)] += 1
    return out / out.sum()


def atoms(p) -> tuple[float, float, float, float]:
    d = pid(p)
    return d.redundancy, d.unique1, d.unique2, d.synergy


def _rdn_xor() -> np.ndarray:
    """Griffith & Koch's RdnXor: w, a1, a2 uniform bits; x_m = 2 w + a_m; y = 2 w + (a1 xor a2)."""
    p = np.zeros((4, 4, 4))
    for w in range(2):
        for a1 in range(2):
            for a2 in range(2):
                p[2 * w + a1, 2 * w + a2, 2 * w + (a1 ^ a2)] += 1 / 8
    return p


# (name, p(x1, x2, y), exact (R, U1, U2, S) in bits) — Bertschinger et al. 2014; Griffith & Koch 2014
RDN = np.zeros((2, 2, 2))
RDN[0, 0, 0] = RDN[1, 1, 1] = 0.5
TEXTBOOK = [
    ("xor: all synergy", gate(lambda a, b: a ^ b), (0, 0, 0, 1)),
    ("y = x1 = x2: all redundancy", RDN, (1, 0, 0, 0)),
    ("y = x1, x2 independent noise: all unique to x1", gate(lambda a, b: a), (0, 1, 0, 0)),
    ("copy y = (x1, x2): unique to each", gate(lambda a, b: 2 * a + b), (0, 1, 1, 0)),
    ("and", gate(lambda a, b: a & b), (H(0.25) - 0.5 * H(0.5), 0, 0, 0.5)),  # R = I(Y; X1) = 0.311
    ("rdn-xor: one redundant bit, one synergistic bit", _rdn_xor(), (1, 0, 0, 1)),
]


@pytest.mark.parametrize("name,p,want", TEXTBOOK, ids=[t[0] for t in TEXTBOOK])
def test_pid_recovers_the_textbook_decompositions(name, p, want):
    np.testing.assert_allclose(atoms(p), want, atol=1e-8)


def _slice_family(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Every 2 x 2 table with row sums ``a`` and column sums ``b``: ``(len(t), 2, 2)`` at ``t = q[0, 0]``."""
    return np.stack([np.stack([t, a[0] - t], -1), np.stack([b[0] - t, a[1] - b[0] + t], -1)], -2)


@pytest.mark.parametrize("seed", range(4))
def test_pid_minimum_matches_a_grid_search_over_the_whole_feasible_set(seed):
    # for binary x1, x2, y the feasible set is a rectangle (one free cell per y): search it all
    p = np.random.default_rng(seed).random((2, 2, 2)) ** 2
    p /= p.sum()
    grids = []
    for y in range(2):
        a, b = p[:, :, y].sum(axis=1), p[:, :, y].sum(axis=0)
        t = np.linspace(max(0.0, b[0] - a[1]), min(a[0], b[0]), 801)
        grids.append(_slice_family(a, b, t))
    q0, q1 = grids[0][:, None], grids[1][None, :]  # every pair of slices: (801, 801, 2, 2) each
    r = q0 + q1
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(q0 * np.log2(q0 / r) + q1 * np.log2(q1 / r), axis=(2, 3))  # H_q(Y | X1, X2)
    py = p.sum(axis=(0, 1))
    best = -np.sum(py * np.log2(py)) - h.max()
    q, _ = min_union_information(p)
    assert _mi_y_x1x2(q) <= best + 1e-9  # never worse than any grid point (the solver's gap: 1e-10 nats) ...
    assert _mi_y_x1x2(q) == pytest.approx(best, abs=1e-4)  # ... and within the grid's resolution of it


def _random_feasible(p: np.ndarray, rng) -> np.ndarray:
    """A random member of Delta_p: a random positive table scaled to p's (x1, y), (x2, y) marginals."""
    q = rng.random(p.shape) * (p.sum(axis=1)[:, None, :] > 0) * (p.sum(axis=0)[None, :, :] > 0)
    ratio = lambda want, have: np.divide(want, have, out=np.zeros_like(want), where=have > 0)  # noqa: E731
    for _ in range(2000):
        q *= ratio(p.sum(axis=1), q.sum(axis=1))[:, None, :]
        q *= ratio(p.sum(axis=0), q.sum(axis=0))[None, :, :]
    return q


def test_pid_atoms_add_up_are_non_negative_and_no_feasible_point_does_better():
    rng = np.random.default_rng(5)
    p = rng.random((6, 5, 3)) ** 4
    p[0, :, 1] = 0  # empty cells, as counted data has
    p /= p.sum()
    d = pid(p)
    q, _ = min_union_information(p)
    np.testing.assert_allclose(q.sum(axis=1), p.sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(q.sum(axis=0), p.sum(axis=0), atol=1e-12)
    assert min(d.redundancy, d.unique1, d.unique2, d.synergy) > -1e-9
    assert d.redundancy + d.unique1 + d.unique2 + d.synergy == pytest.approx(d.total, abs=1e-12)
    assert d.redundancy + d.unique1 == pytest.approx(d.mi1, abs=1e-12)
    union = _mi_y_x1x2(q)
    assert all(union <= _mi_y_x1x2(_random_feasible(p, rng)) + 1e-9 for _ in range(20))
    swapped = pid(p.transpose(1, 0, 2))
    assert swapped.unique1 == pytest.approx(d.unique2, abs=1e-8) and swapped.synergy == pytest.approx(d.synergy, abs=1e-8)


def test_pid_rejects_what_is_not_a_distribution():
    for bad in (np.ones((2, 2)), -np.ones((2, 2, 2)), np.zeros((2, 2, 2)), np.full((2, 2, 2), np.nan)):
        with pytest.raises(ValueError, match="3-d array"):
            pid(bad)


def test_discretize_keeps_ties_together_and_joint_distribution_counts():
    assert discretize(np.array([0.2, 0.7, 0.2, 0.9])).tolist() == [0, 1, 0, 2]  # few values: one code each
    v = np.r_[np.zeros(50), np.linspace(0.1, 1, 50)]
    codes = discretize(v, 4)
    assert len(set(codes[:50])) == 1 and codes.max() <= 3 and np.all(np.diff(codes[np.argsort(v)]) >= 0)
    p = joint_distribution(np.array([0, 1, 1]), np.array([2, 0, 0]), np.array([1, 0, 0]))
    assert p.shape == (2, 3, 2) and p[1, 0, 0] == pytest.approx(2 / 3) and p.sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="n_bins"):
        discretize(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="equally long"):
        joint_distribution(np.array([0, 1]), np.array([0]), np.array([0, 1]))


def _trained(prep, cfg, name, epochs=2):
    model = make_model(*model_parts(name, prep.modalities), prep, cfg, 0)
    fit(model, prep.splits["train"], prep.splits["val"], replace(cfg.train, max_epochs=epochs), 0)
    return model


def test_pairwise_logits_are_the_model_on_rebuilt_input_rows(synth_prep):
    cfg, prep = synth_prep
    test = prep.splits["test"]
    model = _trained(prep, cfg, "early_concat")
    rows = np.arange(3, 30)
    got = pairwise_logits(model, test, rows, batch_size=50)  # 1 row of 27 pairings per pass
    n = len(rows)
    assert got.shape == (n, n, 2)
    tab, text = np.repeat(rows, n), np.tile(rows, n)  # pairing (i, j): tabular of row i, text of row j
    pairs = SplitData(test.row_ids[tab], [test.tokens[k] for k in text], test.text_missing[text],
                      test.text[text], test.cat[tab], test.num[tab], test.y[tab])
    soft = np.exp(got - got.max(axis=2, keepdims=True))
    np.testing.assert_allclose((soft / soft.sum(axis=2, keepdims=True)).reshape(n * n, 2), predict(model, pairs),
                               atol=1e-6)
    assert np.abs(got - got[np.arange(n), np.arange(n)][:, None, :]).max() > 0.1  # pairing changes the logits


def test_late_logit_averaging_is_additive_so_its_emap_gap_is_zero(synth_prep):
    cfg, prep = synth_prep
    test = prep.splits["test"]
    rows = emap_rows(len(test), 120, seed=1)
    e = emap_scores(test.y[rows], pairwise_logits(_trained(prep, cfg, "late_logit_avg"), test, rows), n_boot=50)
    assert e["model"] > 0.8 and e["gap"] == pytest.approx(0, abs=1e-9), e


def test_emap_subsample_is_bounded_and_a_model_needs_two_modalities(synth_prep):
    cfg, prep = synth_prep
    rows = emap_rows(50, 500, seed=0)
    assert rows.tolist() == list(range(50))  # a split smaller than the size: every row
    assert len(emap_rows(5000, 300, seed=0)) == 300
    with pytest.raises(ValueError, match=str(EMAP_MAX_ROWS)):
        emap_rows(5000, EMAP_MAX_ROWS + 1)
    with pytest.raises(ValueError, match="two modalities"):
        pairwise_logits(_trained(prep, cfg, "text_only", epochs=1), prep.splits["test"], np.arange(10))
