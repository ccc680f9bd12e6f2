"""The model side of EMAP (Hessel & Lee, 2020, "Does my multimodal model learn cross-modal
interactions? It's harder to tell than you might think!", EMNLP): a fused model's logits on every
pairing of one row's first modality with another row's second modality. The projection and its
score are torch-free (``metrics.emap_projection``, ``metrics.emap_scores``).
"""
from __future__ import annotations

import numpy as np
import torch

from fusionstudy.data.prepare import SplitData
from fusionstudy.metrics import emap_projection
from fusionstudy.models.multimodal import MultimodalModel
from fusionstudy.training.loop import encoder_features

EMAP_ROWS = 500
"""Default EMAP subsample: the projection needs the model on ``n x n`` pairings, so its cost
grows as ``n^2`` fusion + head passes (250,000 at the default; encoders run once per row)."""
EMAP_MAX_ROWS = 2000  # 4 million pairings: the bound on the quadratic cost


def emap_rows(n_rows: int, size: int = EMAP_ROWS, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(size, n_rows)`` rows drawn without replacement (fixed by ``seed``):
    the subsample EMAP is computed on.

    Raises
    ------
    ValueError
        If ``size`` is not in ``[2, EMAP_MAX_ROWS]``.
    """
    if not 2 <= size <= EMAP_MAX_ROWS:
        raise ValueError(f"EMAP subsample size must be in [2, {EMAP_MAX_ROWS}] (its cost is size^2 model "
                         f"evaluations), got {size}")
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=min(size, n_rows), replace=False))


@torch.no_grad()
def pairwise_logits(model: MultimodalModel, split: SplitData, rows: np.ndarray | None = None,
                    batch_size: int = 4096) -> np.ndarray:
    """Logits of every cross-row pairing: ``out[i, j] = f(m1 of row i, m2 of row j)``.

    ``m1, m2`` are the model's two modalities in sorted order (``tabular``, ``text``); the diagonal
    ``out[i, i]`` is the model's own logits of row i (what ``loop.predict`` turns into
    probabilities). Each row is encoded once from the inputs ``predict`` uses; only fusion + head
    run on the ``n x n`` pairings, ``batch_size`` pairings per pass. Eval mode, deterministic.

    Parameters
    ----------
    model : a two-modality wrapper; put in eval mode.
    split : the rows; ``rows`` picks some (default all, at most :data:`EMAP_MAX_ROWS`).
    batch_size : rows per encoder pass and pairings per fusion + head pass.

    Returns
    -------
    (n, n, n_classes) float64 logits, ``n = len(rows)``.

    Raises
    ------
    ValueError
        If the model does not read exactly two modalities, or ``n`` exceeds :data:`EMAP_MAX_ROWS`.
    """
    idx = np.arange(len(split)) if rows is None else np.asarray(rows)
    if len(model.modalities) != 2 or len(idx) > EMAP_MAX_ROWS:
        raise ValueError(f"pairwise logits need a model of two modalities (got {model.modalities}) and at most "
                         f"{EMAP_MAX_ROWS} rows (got {len(idx)}); subsample with emap_rows")
    model.eval()
    m1, m2 = model.modalities
    feats = encoder_features(model, split, idx, [m1, m2], batch_size)
    n, out = len(idx), []
    step = max(1, batch_size // n)
    for start in range(0, n, step):
        first = feats[m1][start:start + step]
        pairs = {m1: first.repeat_interleave(n, dim=0), m2: feats[m2].repeat(len(first), 1)}
        out.append(model.head(model.fusion(pairs)).double().view(len(first), n, -1))
    return torch.cat(out).cpu().numpy()


def emap_record(model: MultimodalModel, test: SplitData, size: int = EMAP_ROWS, seed: int = 0) -> dict:
    """What a study stores of a fused model's EMAP (Hessel & Lee, 2020): on the :func:`emap_rows`
    subsample of ``test`` (``size`` rows, fixed by ``seed``, so every run of a study pairs on the
    same rows), the model's own log-odds and its EMAP projection's (``metrics.emap_projection``).

    Returns ``{"rows": [...], "model": [...], "projection": [...]}`` (log-odds rounded to 1e-6),
    or ``{}`` for a multi-class label or ``size = 0`` (EMAP off). Cost: ``size^2`` fusion + head
    passes (:func:`pairwise_logits`).
    """
    if size == 0 or len(np.unique(test.y)) > 2 or len(model.modalities) != 2:
        return {}
    rows = emap_rows(len(test), size, seed)
    f = pairwise_logits(model, test, rows)
    if f.shape[2] != 2:
        return {}
    odds = f[..., 1] - f[..., 0]  # the projection is linear: project the log-odds directly
    proj = emap_projection(odds[..., None])[:, 0]
    return {"rows": rows.tolist(), "model": np.round(np.diagonal(odds), 6).tolist(),
            "projection": np.round(proj, 6).tolist()}
