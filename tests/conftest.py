"""Shared fixtures: a small synthetic two-modality dataset where each modality holds half the signal."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository (committed results, reports)
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

from fusionstudy.config import Config  # noqa: E402

torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to a busy machine


def synthetic_frame(n: int = 2000, seed: int = 0, text_signal: bool = True, tab_signal: bool = True) -> pd.DataFrame:
    """y = [a + b > 0] with a ~ N(0,1) told only by the text (a word per decile of a, plus filler
    words) and b ~ N(0,1) only by the numeric column ``b``; ``noise`` and ``colour`` carry nothing.
    A modality without signal gets an independent draw instead."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (a * text_signal + b * tab_signal > 0).astype(int)
    a_shown = a if text_signal else rng.normal(size=n)
    b_shown = b if tab_signal else rng.normal(size=n)
    dec = np.digitize(a_shown, np.quantile(a_shown, np.linspace(0.1, 0.9, 9)))
    filler = np.array(["the", "dress", "fits", "colour", "fabric", "order", "size", "nice"])
    text = [" ".join([f"level{d}"] * 2 + list(rng.choice(filler, 5))) for d in dec]
    text = [t if rng.random() > 0.03 else None for t in text]  # some rows have no text at all
    return pd.DataFrame({"review": text, "b": b_shown, "noise": rng.normal(size=n),
                         "colour": rng.choice(["red", "blue", "green"], n), "label": y})


def synthetic_config(**train) -> Config:
    """Config for :func:`synthetic_frame`; small model, few epochs."""
    cfg = Config()
    cfg.dataset.name, cfg.dataset.source = "synthetic", "unused"
    cfg.dataset.text, cfg.dataset.categorical = ["review"], ["colour"]
    cfg.dataset.numeric, cfg.dataset.label = ["b", "noise"], "label"
    cfg.text.min_df = 1
    cfg.tabular.min_count = 1
    cfg.model.text_dim = cfg.model.tab_dim = cfg.model.head_hidden = cfg.model.tab_hidden = 16
    cfg.model.token_dropout = 0.0
    cfg.train.max_epochs, cfg.train.batch_size, cfg.train.lr = 12, 128, 1e-2
    cfg.train.patience, cfg.train.threads = 3, 1
    for k, v in train.items():
        setattr(cfg.train, k, v)
    cfg.study.seeds, cfg.study.bootstrap, cfg.study.splits = [0], 50, 1
    return cfg


@pytest.fixture(scope="session")
def synth_prep():
    from fusionstudy.data.prepare import prepare
    cfg = synthetic_config()
    return cfg, prepare(cfg, synthetic_frame())
