"""Ablation and imbalance transforms: pure functions ``SplitData -> SplitData``.

Every transform acts on a modality's *inputs* (tokens, category codes, scaled numerics), never on
learned features, so it means the same for every architecture. Each takes a severity and a seed
(same arguments -> same output) and returns a new split; the input split is never modified.

Severity semantics:

* ``remove`` / ``drop`` (fraction ``q`` of rows) / ``text_delete`` / ``tab_mask``: the modality's
  *missing representation*, the one the pipeline gives rows that really lack it (no text: the
  missing-text token; tabular: every category missing, every numeric value missing = imputed
  median + flag). Severity 0 is the identity; severity 1 equals :func:`remove`. This is what a
  model trained with missing inputs (ModDrop, Part 5 subsampling) learns to read; for a model that
  never saw it, it is an untrained input, not an absence of evidence. The study's *removal* of a
  modality is therefore marginalisation (``loop.predict_marginal``); this encoding is reported
  separately as ``missing``.
* ``text_noise`` (each token replaced by a random train word or deleted, with probability p),
  ``text_typo`` (each token gets a one-character edit with probability p), ``tab_noise``
  (Gaussian noise of ``severity x`` each numeric feature's train std, and each category swapped to
  a random known level with probability ``severity``): corruption. Severity 0 is the identity;
  severity 1 is maximal corruption, not removal.
* ``truncate`` keeps the first ``k`` tokens; ``shuffle`` permutes a modality across rows
  (the permutation / perceptual score of Gat et al., 2021).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from fusionstudy.data.prepare import Prepared, SplitData

MODALITY_OF = {"text_delete": "text", "text_noise": "text", "text_typo": "text",
               "tab_mask": "tabular", "tab_noise": "tabular"}


def _replace(split: SplitData, **fields) -> SplitData:
    kw = {k: getattr(split, k) for k in ("row_ids", "tokens", "text_missing", "text", "cat", "num", "y", "emb")}
    kw.update(fields)
    return SplitData(**kw)


def with_tokens(split: SplitData, prep: Prepared, tokens: list[list[str]], missing: np.ndarray) -> SplitData:
    """Re-vectorise new token lists with the train-fitted text pipeline (and, for the ``minilm``
    encoder, embed them through the same cache: a perturbation means the same for both encoders).
    A row left with no token at all is treated as missing text (nothing of the text remains)."""
    missing = missing | np.array([len(t) == 0 for t in tokens], dtype=bool)
    return _replace(split, tokens=tokens, text_missing=missing, text=prep.text.transform(tokens, missing),
                    emb=prep.text.embed(tokens, missing))


def _rows_mask(n: int, rows: np.ndarray | None) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[np.arange(n) if rows is None else rows] = True
    return m


def remove(split: SplitData, prep: Prepared, modality: str, rows: np.ndarray | None = None) -> SplitData:
    """Give ``rows`` (default: all) the modality's missing representation.

    Raises
    ------
    ValueError
        On an unknown modality.
    """
    m = _rows_mask(len(split), rows)
    if modality == "text":
        tokens = [[] if m[i] else t for i, t in enumerate(split.tokens)]
        text, emb = prep.text.as_missing(split.text, split.emb, m)
        return _replace(split, tokens=tokens, text_missing=split.text_missing | m, text=text, emb=emb)
    if modality == "tabular":
        cat_missing, num_missing = prep.tabular.missing_values()
        cat, num = split.cat.copy(), split.num.copy()
        cat[m], num[m] = cat_missing, num_missing
        return _replace(split, cat=cat, num=num)
    raise ValueError(f"unknown modality {modality!r}; known: ['tabular', 'text']")


def drop_rows(n: int, q: float, seed: int = 0) -> np.ndarray:
    """The rows a per-sample drop of fraction ``q`` hits: exactly ``round(q * n)`` of ``n``, fixed by ``seed``."""
    _check_severity(q)
    return np.random.default_rng(seed).permutation(n)[: int(round(q * n))]


def drop(split: SplitData, prep: Prepared, modality: str, q: float, seed: int = 0) -> SplitData:
    """Give the modality's missing representation to a random fraction ``q`` of rows
    (:func:`drop_rows`); used at training time (Part 5 subsampling)."""
    return remove(split, prep, modality, drop_rows(len(split), q, seed))


def _check_severity(s: float) -> None:
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {s}")


def _token_noise(split: SplitData, prep: Prepared, p: float, seed: int, edit: Callable) -> SplitData:
    _check_severity(p)
    if p == 0:
        return split
    rng = np.random.default_rng(seed)
    tokens = []
    for toks in split.tokens:
        hit = rng.random(len(toks)) < p
        tokens.append([w for t, h in zip(toks, hit) for w in (edit(t, rng) if h else [t])])
    return with_tokens(split, prep, tokens, split.text_missing.copy())


def text_delete(split: SplitData, prep: Prepared, p: float, seed: int = 0) -> SplitData:
    """Delete each token with probability ``p`` (p = 1 leaves no text: removal)."""
    return _token_noise(split, prep, p, seed, lambda t, rng: [])


def text_noise(split: SplitData, prep: Prepared, p: float, seed: int = 0) -> SplitData:
    """Each token, with probability ``p``, is deleted or (equally often) replaced by a word drawn
    uniformly from the train vocabulary's unigrams."""
    words = prep.text.unigrams_
    return _token_noise(split, prep, p, seed,
                        lambda t, rng: [] if rng.random() < 0.5 else [words[rng.integers(len(words))]])


def _typo(token: str, rng: np.random.Generator) -> list[str]:
    if len(token) < 2:
        return [token + "x"]
    i = int(rng.integers(len(token) - 1))
    kind = rng.integers(3)
    if kind == 0:  # swap two adjacent characters
        return [token[:i] + token[i + 1] + token[i] + token[i + 2:]]
    if kind == 1:  # drop a character
        return [token[:i] + token[i + 1:]]
    return [token[:i] + "abcdefghijklmnopqrstuvwxyz"[rng.integers(26)] + token[i + 1:]]


def text_typo(split: SplitData, prep: Prepared, p: float, seed: int = 0) -> SplitData:
    """Give each token, with probability ``p``, one typo (adjacent swap, deletion or substitution)."""
    return _token_noise(split, prep, p, seed, _typo)


def tab_mask(split: SplitData, prep: Prepared, p: float, seed: int = 0) -> SplitData:
    """Set each tabular cell missing with probability ``p`` (p = 1: removal)."""
    _check_severity(p)
    rng = np.random.default_rng(seed)
    cat_missing, num_missing = prep.tabular.missing_values()
    n_num = split.num.shape[1] // 2
    cat, num = split.cat.copy(), split.num.copy()
    mc = rng.random(cat.shape) < p
    cat[mc] = np.broadcast_to(cat_missing, cat.shape)[mc]
    mn = np.tile(rng.random((len(split), n_num)) < p, 2)
    num[mn] = np.broadcast_to(num_missing, num.shape)[mn]
    return _replace(split, cat=cat, num=num)


def tab_noise(split: SplitData, prep: Prepared, s: float, seed: int = 0) -> SplitData:
    """Add N(0, s^2) to each observed scaled numeric value (= ``s`` x the feature's train std in
    raw units) and swap each known category to a uniformly drawn known level with probability s."""
    _check_severity(s)
    if s == 0:
        return split
    rng = np.random.default_rng(seed)
    n_num = split.num.shape[1] // 2
    num = split.num.copy()
    observed = num[:, n_num:] == 0
    num[:, :n_num] += (s * rng.standard_normal((len(split), n_num)) * observed).astype(np.float32)
    cat = split.cat.copy()
    for j, card in enumerate(prep.tabular.cardinalities_):
        hit = (rng.random(len(split)) < s) & (cat[:, j] >= 2)
        if card > 2:  # a column with no known level has nothing to swap to
            cat[hit, j] = rng.integers(2, card, hit.sum())
    return _replace(split, cat=cat, num=num)


def truncate(split: SplitData, prep: Prepared, k: int) -> SplitData:
    """Keep the first ``k`` tokens of every text (``k >= 1``)."""
    if k < 1:
        raise ValueError(f"truncate needs k >= 1 tokens, got {k}")
    return with_tokens(split, prep, [t[:k] for t in split.tokens], split.text_missing.copy())


def shuffle(split: SplitData, prep: Prepared, modality: str, seed: int = 0) -> SplitData:
    """Permute one modality's inputs across rows, breaking its link to the label and to the other
    modality while keeping its marginal distribution (Gat et al., 2021, perceptual score)."""
    perm = np.random.default_rng(seed).permutation(len(split))
    if modality == "text":
        return _replace(split, tokens=[split.tokens[i] for i in perm], text_missing=split.text_missing[perm],
                        text=split.text[perm], emb=None if split.emb is None else split.emb[perm])
    if modality == "tabular":
        return _replace(split, cat=split.cat[perm], num=split.num[perm])
    raise ValueError(f"unknown modality {modality!r}; known: ['tabular', 'text']")


NOISE: dict[str, Callable[..., SplitData]] = {
    "text_delete": text_delete, "text_noise": text_noise, "text_typo": text_typo,
    "tab_mask": tab_mask, "tab_noise": tab_noise,
}


def corrupt(split: SplitData, prep: Prepared, modality: str, r: float, seed: int = 0) -> SplitData:
    """Training-time corruption at rate ``r``: ``text_noise`` for text, ``tab_noise`` for tabular."""
    return (text_noise if modality == "text" else tab_noise)(split, prep, r, seed)


def modality_dropout(batch: SplitData, prep: Prepared, p: float, rng: np.random.Generator) -> SplitData:
    """ModDrop (Neverova et al., 2016) on a training batch: each modality is removed per sample
    with probability ``p``; a sample drawn to lose both keeps one of them, chosen at random."""
    lose = rng.random((len(batch), 2)) < p  # columns: tabular, text
    both = lose.all(axis=1)
    keep = rng.integers(2, size=both.sum())
    lose[np.flatnonzero(both), keep] = False
    for j, m in enumerate(("tabular", "text")):
        if lose[:, j].any():
            batch = remove(batch, prep, m, np.flatnonzero(lose[:, j]))
    return batch


def weakened(prep: Prepared, weaken: tuple, seed: int) -> Prepared:
    """``prep`` with a Part 5 weakening ``(kind, modality, level)`` applied: ``subsample`` keeps the
    modality on a fraction of *train* rows (removed on the rest), ``corrupt`` corrupts it on
    *train* rows at the given rate; ``truncate`` cuts text to k tokens on *every* split. Val/test
    stay clean otherwise."""
    if not weaken:
        return prep
    kind, modality, level = weaken
    splits = dict(prep.splits)
    if kind == "subsample":
        splits["train"] = drop(splits["train"], prep, modality, 1.0 - level, seed)
    elif kind == "corrupt":
        splits["train"] = corrupt(splits["train"], prep, modality, level, seed)
    elif kind == "truncate":
        splits = {k: truncate(v, prep, int(level)) for k, v in splits.items()}
    else:
        raise ValueError(f"unknown weakening {kind!r}; use subsample, corrupt or truncate")
    return replace(prep, splits=splits, weakening=tuple(weaken))
