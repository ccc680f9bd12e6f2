"""Synthetic two-modality data with planted structure: the known answers the study must recover.

Every scenario has the same columns, so one config reads them all (:func:`scenario_config`):

* ``review`` (text) — two copies of a *level word* ``level0`` ... ``level9`` (the decile of a
  latent the text tells) and five filler words that carry nothing;
* ``x`` (numeric) — the tabular column that may carry signal;
* ``noise`` (numeric) and ``colour`` (categorical) — independent of everything;
* ``label`` — 0/1.

Latents are standard normal; a decile is one of N(0, 1)'s (fixed cut points, not the sample's).

``text_only_signal``
    ``y = [a + 0.5 e > 0]``, text tells ``a`` (Bayes ROC-AUC 0.932); ``x`` is an independent
    draw. Truth: tabular holds no information, so fusion cannot gain and the tabular Shapley
    value is 0.
``independent``
    ``y = [a + b > 0]`` with ``a`` told by the text and ``b = x`` by the table, independent.
    Truth: each modality alone is weak (Bayes ROC-AUC 0.83), together near perfect (0.998);
    fusion helps, and the Shapley values are equal (each ~0.25 of ROC-AUC, half the total).
``redundant``
    ``y = [a > 0]``; both modalities show the *same* noisy reading, the decile of
    ``s = a + 0.5 e``: the text as its level word, ``x`` as the number 0-9. Truth: both unimodal
    models are strong (Bayes ROC-AUC 0.932 each) and either one makes the other redundant, so
    fusion cannot gain. (Independent noise per modality would make the two readings
    complementary — averaging them helps — so the noise is shared.)
``interaction``
    A cross-modal XOR: the text's cue ``c = [a > z_0.6]`` (levels 6-9) and the table's
    ``s = [x > z_0.6]`` (``x = b``), ``y = c XOR s``, flipped with probability 0.1. Each cue is
    on for 40 % of rows, so each modality alone tells a little (P(y = 1 | c) = 0.42 or 0.58).
    Exact Bayes answers: fused ROC-AUC 0.90, each modality alone 0.58; the best *additive*
    logit (EMAP projection of the Bayes logit under the product of the cues' marginals) scores
    0.65, so the interaction the Bayes model uses is 0.25 ROC-AUC. PID of (c, s, y): synergy
    0.514 bits, redundancy 0.018, uniqueness 0 (of a total 0.531).
``dominant_modality``
    ``y = [a + 0.5 b + 0.3 e > 0]`` with ``x = a`` (the table, dominant) and the text telling
    ``b``'s decile (weak but real). Bayes ROC-AUC: table alone 0.919, text alone 0.693, both
    0.977 — a fused model that leans on the table alone forgoes 0.058.

``crowd_out``
    Modality competition (Wu, Jastrzebski, Cho & Geras, 2022, "Characterizing and overcoming the
    greedy nature of learning in multi-modal deep neural networks", ICML; Peng et al., 2022): ``y =
    [a + 0.3 e > 0]``; the table reads ``a`` with its own noise, ``x = a + 0.6 n1``, and the text
    reads it with independent noise, the decile of ``(a + 0.6 n2) / sqrt(1.36)``, told by one of
    :data:`CROWD_SYNONYMS` synonyms per decile (``cue3v17``: 300 cue words, ~5 rows each in 1,650
    train rows) beside five filler words. The readings are complementary (independent noise):
    Bayes ROC-AUC (simulated, 200,000 rows) table alone 0.893, text alone 0.891, both 0.927. The
    table is easy (one number, learned from every row); the text is slow (each cue word is learned
    from its own few rows, at the lowered step size of :func:`crowd_out_config`). Jointly trained,
    the table explains the shared latent first and the text's cue words are left a weak residual
    signal, so plain early fusion learns them worse than text_only does: its text Shapley share
    falls far below what the unimodal models' strengths imply and it gains ~nothing over the
    table. A remedy that trains the text on its own loss (G-Blend) raises the share. At the
    default text step size (0.2, a word learned in a sighting or two) the text is not slow and
    the crowd-out mostly vanishes (tests/test_known_remedies.py; docs/remedies.md).
``dominant_value``
    ``x`` is a 1-5 rating, independent of the text's tone ``a``, with P(5) = 0.55 (so the train
    median is 5) and P(4, 3, 2, 1) = 0.23, 0.12, 0.06, 0.04. A rating ``r <= 4`` is recommended
    when the tone clears a bar, ``y = [a > z_r]`` with ``P(a > z_r) = 0.8, 0.6, 0.4, 0.2`` for
    ratings 4, 3, 2, 1; a 5-star review is recommended unless the tone is in its bottom 20 %,
    where it is a coin with P = 0.65. So P(y = 1) = 0.7995, P(y = 1 | rating 5) = 0.93: the typical value is evidence
    for the majority class. Exact Bayes answers (levels = tone deciles):

    - text alone: P(y | level 0 or 1) = 0.55 * 0.65 = 0.3575, every other level >= 0.78;
      accuracy 0.7995 + 0.2 * (1 - 2 * 0.3575) = 0.8565;
    - rating *removed* = marginalised over P(rating): equals the text-alone posterior (tone and
      rating are independent), accuracy 0.8565;
    - rating *missing* = set to the train median 5: P(y | level, 5) >= 0.65 for every level, so
      every row is called positive: accuracy 0.7995 (the positive rate), minority recall 0, and
      levels 2-7 are called certain (P = 1 against a true 0.78-0.96). The pipeline's missing
      encoding also switches on inputs no train row had (missing flags, category code 0), whose
      weights keep their random initialisation.

    Why not a 99.8 % positive 5-star rating as in the clothing data: with tone and rating
    independent, text alone beats the positive rate by at most about P(y = 0 | rating 5)
    (its negative calls need P(y = 0 | text) > 0.5 while 55 % of every text level is 5-star),
    so a near-certain typical value leaves nothing for the text to show.
"""
from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from fusionstudy.config import Config, validate

SCENARIOS = ("text_only_signal", "independent", "redundant", "dominant_value", "interaction", "dominant_modality",
             "crowd_out")
FILLER = np.array(["the", "dress", "fits", "colour", "fabric", "order", "size", "nice"])
DECILE_CUTS = np.array([NormalDist().inv_cdf(q / 10) for q in range(1, 10)])
RATING_P = np.array([0.04, 0.06, 0.12, 0.23, 0.55])  # ratings 1..5
RATING_BAR = np.array([0.8, 0.6, 0.4, 0.2, 0.2])  # ratings 1..5: the tone quantile a review must clear
FIVE_STAR_LOW_TONE_P = 0.65  # ... except a 5-star review below it, still recommended with this probability
CUE_QUANTILE, CUE_FLIP = 0.6, 0.1  # interaction: each cue is on above this quantile; label noise
CROWD_SYNONYMS, CROWD_NOISE = 30, 0.6  # crowd_out: cue words per text decile; each reading's noise SD


def _review_text(level: np.ndarray, rng: np.random.Generator) -> list[str]:
    filler = FILLER[rng.integers(len(FILLER), size=(len(level), 5))]
    return [f"level{d} level{d} " + " ".join(f) for d, f in zip(level, filler)]


def _crowd_out(a: np.ndarray, e: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Review, ``x`` and label of the ``crowd_out`` scenario (module docstring), ``noise`` and
    ``colour`` as every scenario's."""
    n = len(a)
    x = a + CROWD_NOISE * rng.normal(size=n)
    level = np.digitize((a + CROWD_NOISE * rng.normal(size=n)) / np.sqrt(1 + CROWD_NOISE ** 2), DECILE_CUTS)
    synonym = rng.integers(CROWD_SYNONYMS, size=n)
    filler = FILLER[rng.integers(len(FILLER), size=(n, 5))]
    review = [f"cue{d}v{k} " + " ".join(f) for d, k, f in zip(level, synonym, filler)]
    return pd.DataFrame({"review": review, "x": x, "noise": rng.normal(size=n),
                         "colour": rng.choice(["red", "blue", "green"], n), "label": (a + 0.3 * e > 0).astype(int)})


def _dominant_value(a: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rating (independent of tone ``a``) and label of the ``dominant_value`` scenario."""
    rating = rng.choice(np.arange(1, 6), size=len(a), p=RATING_P)
    bar = np.array([NormalDist().inv_cdf(q) for q in RATING_BAR])
    y = a > bar[rating - 1]
    coin = rng.random(len(a)) < FIVE_STAR_LOW_TONE_P
    y = np.where((rating == 5) & ~y, coin, y)
    return rating.astype(float), y.astype(int)


def two_modality_frame(scenario: str, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of the planted ``scenario`` (see the module docstring), drawn with ``seed``.

    Returns
    -------
    DataFrame with columns ``review`` (str), ``x``, ``noise`` (float), ``colour`` (str),
    ``label`` (int 0/1), ``n`` rows.

    Raises
    ------
    ValueError
        If ``scenario`` is not one of :data:`SCENARIOS`.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; use one of {list(SCENARIOS)}")
    rng = np.random.default_rng(seed)
    a, b, e = rng.normal(size=(3, n))
    if scenario == "crowd_out":
        return _crowd_out(a, e, rng)
    if scenario == "text_only_signal":
        told, x, y = a, b, (a + 0.5 * e > 0).astype(int)
    elif scenario == "independent":
        told, x, y = a, b, (a + b > 0).astype(int)
    elif scenario == "interaction":
        told, x = a, b
        cue = NormalDist().inv_cdf(CUE_QUANTILE)
        y = ((a > cue) ^ (b > cue) ^ (rng.random(n) < CUE_FLIP)).astype(int)
    elif scenario == "dominant_modality":
        told, x, y = b, a, (a + 0.5 * b + 0.3 * e > 0).astype(int)
    elif scenario == "redundant":
        told = (a + 0.5 * e) / np.sqrt(1.25)  # unit variance, so its deciles are N(0, 1)'s
        x, y = np.digitize(told, DECILE_CUTS).astype(float), (a > 0).astype(int)
    else:
        told = a
        x, y = _dominant_value(a, rng)
    return pd.DataFrame({"review": _review_text(np.digitize(told, DECILE_CUTS), rng), "x": x,
                         "noise": rng.normal(size=n), "colour": rng.choice(["red", "blue", "green"], n),
                         "label": y})


def scenario_config(csv_path: str | Path, seeds: tuple[int, ...] = (0, 1, 2)) -> Config:
    """A small, fast study of a :func:`two_modality_frame` saved at ``csv_path``: ``text_only``,
    ``tabular_only`` and ``early_concat``, 16-wide encoders, up to 12 epochs, one torch thread,
    no worker processes, 200 bootstrap resamples, one noise level / drop level / shuffle, no
    ModDrop models, no Part 5, no classical references. Test split 30 % (900 of 3,000 rows), so
    a planted accuracy gap of a few points is several standard errors wide."""
    cfg = Config(profile="synthetic")
    ds = cfg.dataset
    ds.name, ds.source, ds.text, ds.categorical, ds.numeric, ds.label = (
        "synthetic", str(csv_path), ["review"], ["colour"], ["x", "noise"], "label")
    cfg.split.val, cfg.split.test = 0.15, 0.3
    cfg.text.min_df, cfg.tabular.min_count = 1, 1
    m = cfg.model
    m.text_dim = m.tab_dim = m.head_hidden = m.tab_hidden = 16
    tr = cfg.train
    tr.max_epochs, tr.batch_size, tr.lr, tr.patience, tr.threads, tr.workers = 12, 128, 1e-2, 3, 1, 1
    st = cfg.study
    st.seeds, st.bootstrap, st.references = list(seeds), 200, False
    st.models = ["text_only", "tabular_only", "early_concat"]
    st.moddrop_models, st.imbalance_models = [], []
    st.noise_levels, st.drop_levels, st.permutations = [1.0], [0.5], 1
    return validate(cfg)


def crowd_out_config(csv_path: str | Path, seeds: tuple[int, ...] = (0, 1, 2)) -> Config:
    """:func:`scenario_config` for the ``crowd_out`` scenario, with a slow text encoder: the text
    table's RowAdagrad step ``train.text_lr`` 0.01 (a twentieth of the default 0.2) and up to
    ``train.max_epochs`` 20, so text_only can learn its cue words over many epochs."""
    cfg = scenario_config(csv_path, seeds)
    cfg.train.text_lr, cfg.train.max_epochs = 0.01, 20
    return validate(cfg)
