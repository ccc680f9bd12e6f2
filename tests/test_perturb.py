import numpy as np
import pytest

from fusionstudy.data import perturb
from fusionstudy.data.prepare import SplitData


def _same(a: SplitData, b: SplitData) -> bool:
    return ((a.text != b.text).nnz == 0 and np.array_equal(a.cat, b.cat) and np.array_equal(a.num, b.num)
            and a.tokens == b.tokens and np.array_equal(a.text_missing, b.text_missing))


@pytest.fixture(scope="module")
def test_split(synth_prep):
    return synth_prep[1], synth_prep[1].splits["test"]


@pytest.mark.parametrize("name", sorted(perturb.NOISE))
def test_severity_zero_is_identity(test_split, name):
    prep, t = test_split
    assert _same(perturb.NOISE[name](t, prep, 0.0, seed=1), t)


@pytest.mark.parametrize("name", ["text_delete", "tab_mask"])
def test_information_loss_at_severity_one_equals_removal(test_split, name):
    prep, t = test_split
    assert _same(perturb.NOISE[name](t, prep, 1.0, seed=1), perturb.remove(t, prep, perturb.MODALITY_OF[name]))


@pytest.mark.parametrize("modality", ["text", "tabular"])
def test_drop_endpoints_and_fraction(test_split, modality):
    prep, t = test_split
    assert _same(perturb.drop(t, prep, modality, 0.0), t)
    assert _same(perturb.drop(t, prep, modality, 1.0), perturb.remove(t, prep, modality))
    d = perturb.drop(t, prep, modality, 0.3, seed=5)
    removed = d.text_missing & ~t.text_missing if modality == "text" else (d.cat == 0).all(axis=1) & ~(t.cat == 0).all(axis=1)
    assert abs(removed.mean() - 0.3) < 0.03


def test_noise_at_full_severity_changes_the_modality_and_nothing_else(test_split):
    prep, t = test_split
    n = perturb.text_noise(t, prep, 1.0, seed=0)
    assert np.array_equal(n.cat, t.cat) and np.array_equal(n.num, t.num)
    kept = sum(a == b for x, y in zip(n.tokens, t.tokens) for a, b in zip(x, y))
    assert kept < 0.1 * sum(map(len, t.tokens))
    g = perturb.tab_noise(t, prep, 1.0, seed=0)
    assert (g.text != t.text).nnz == 0
    n_num = t.num.shape[1] // 2
    assert np.std(g.num[:, :n_num] - t.num[:, :n_num]) == pytest.approx(1.0, abs=0.1)  # = 1 train std
    assert (g.cat != t.cat).mean() > 0.4  # 3 colours: 2/3 of swaps land on another level


def test_transforms_are_pure_and_seeded(test_split):
    prep, t = test_split
    before = (t.text.copy(), t.cat.copy(), t.num.copy(), [list(x) for x in t.tokens])
    a, b = perturb.text_typo(t, prep, 0.5, seed=3), perturb.text_typo(t, prep, 0.5, seed=3)
    perturb.tab_noise(t, prep, 0.5, seed=3)
    perturb.remove(t, prep, "tabular")
    assert _same(a, b)
    assert (t.text != before[0]).nnz == 0 and np.array_equal(t.cat, before[1]) and np.array_equal(t.num, before[2])
    assert t.tokens == before[3]


def test_shuffle_permutes_rows(test_split):
    prep, t = test_split
    s = perturb.shuffle(t, prep, "tabular", seed=0)
    assert not np.array_equal(s.num, t.num)
    assert np.array_equal(np.sort(s.num[:, 0]), np.sort(t.num[:, 0])) and np.array_equal(s.y, t.y)


def test_truncate(test_split):
    prep, t = test_split
    assert max(map(len, perturb.truncate(t, prep, 2).tokens)) == 2
    with pytest.raises(ValueError, match="k >= 1"):
        perturb.truncate(t, prep, 0)


def test_modality_dropout_rates_and_never_both(synth_prep):
    prep = synth_prep[1]
    batch = prep.splits["train"]
    out = perturb.modality_dropout(batch, prep, 0.3, np.random.default_rng(0))
    lost_text = out.text_missing & ~batch.text_missing
    lost_tab = (out.cat == 0).all(axis=1) & (out.num[:, out.num.shape[1] // 2:] == 1).all(axis=1)
    assert not (lost_text & lost_tab).any()
    # P(lose a given modality) = p(1-p) + p^2/2 = 0.255
    assert abs(lost_tab.mean() - 0.255) < 0.03 and abs(lost_text.mean() - 0.255) < 0.04


def test_bad_severity_and_modality(test_split):
    prep, t = test_split
    with pytest.raises(ValueError, match="severity"):
        perturb.tab_mask(t, prep, 1.5)
    with pytest.raises(ValueError, match="image"):
        perturb.remove(t, prep, "image")


@pytest.mark.parametrize("split_name", ["train", "test"])
def test_text_removal_equals_revectorising_the_emptied_tokens(synth_prep, split_name):
    # remove() builds the missing-text rows directly; it must equal what the pipeline gives a row
    # left with no token, byte for byte (indices, order, values, dtype), and leave other rows alone
    prep = synth_prep[1]
    s = prep.splits[split_name]
    rows = np.flatnonzero(np.random.default_rng(3).random(len(s)) < 0.4)
    mask = np.zeros(len(s), dtype=bool)
    mask[rows] = True
    fast = perturb.remove(s, prep, "text", rows)
    slow = perturb.with_tokens(s, prep, [[] if mask[i] else t for i, t in enumerate(s.tokens)], s.text_missing | mask)
    for attr in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(fast.text, attr), getattr(slow.text, attr))
    assert fast.text.dtype == slow.text.dtype == np.float32
    assert np.array_equal(fast.text_missing, slow.text_missing) and fast.tokens == slow.tokens
    assert (fast.text[rows].indices == prep.text.missing_id_).all()
