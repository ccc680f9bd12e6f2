"""Set up a training regime of :mod:`training.remedies` for one model: :func:`build_regime`, and
G-Blend's weight estimation on held-out *train* rows (never validation or test rows)."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from fusionstudy.config import TrainConfig
from fusionstudy.data.prepare import SplitData, to_inputs
from fusionstudy.models.multimodal import MultimodalModel
from fusionstudy.training.loop import _optimizers, _step, move
from fusionstudy.training.modulation import unimodal_logits
from fusionstudy.training.remedies import GBlend, MLA, MLAFusion, OGMGE, REMEDIES, Plain

HEADS = "fused"  # G-Blend's name of the fused head beside the modalities' own


def _head_loss(model: MultimodalModel, split: SplitData, idx: np.ndarray, head: str) -> torch.Tensor:
    feats = model.features(move(to_inputs(split, idx)))
    y = torch.from_numpy(split.y[idx])
    logits = model.head(model.fusion(feats)) if head == HEADS else unimodal_logits(model, feats)[head]
    return F.cross_entropy(logits, y)


@torch.no_grad()
def _eval_loss(model: MultimodalModel, split: SplitData, head: str) -> float:
    model.eval()
    return float(np.mean([_head_loss(model, split, np.arange(s, min(s + 4096, len(split))), head).item()
                          for s in range(0, len(split), 4096)]))


def overfit_generalise(model: MultimodalModel, fit_rows: SplitData, held_out: SplitData, head: str,
                       cfg: TrainConfig, epochs: int, seed: int) -> tuple[float, float]:
    """Train a copy of ``model`` on ``head``'s loss alone for ``epochs`` epochs; return
    ``(G, O)`` of Wang, Tran & Feiszli (2020), eq. 5-6, in nats: the generalisation gain
    ``G = L*_0 - L*_N`` (held-out loss before minus after) and the change in overfitting
    ``O = (L*_N - L_N) - (L*_0 - L_0)`` (held-out minus fit-rows loss; the fit rows' loss is
    measured in eval mode on at most as many rows as are held out, like with like)."""
    m, rng = copy.deepcopy(model), np.random.default_rng(seed)
    probe = fit_rows.subset(rng.permutation(len(fit_rows))[:len(held_out)])
    before = (_eval_loss(m, probe, head), _eval_loss(m, held_out, head))
    opts = _optimizers(m, cfg)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0) for o in opts]  # constant rates
    for _ in range(epochs):
        m.train()
        perm = rng.permutation(len(fit_rows))
        for s in range(0, len(fit_rows), cfg.batch_size):
            _step(m, opts, scheds, _head_loss(m, fit_rows, perm[s:s + cfg.batch_size], head))
    after = (_eval_loss(m, probe, head), _eval_loss(m, held_out, head))
    return before[1] - after[1], (after[1] - after[0]) - (before[1] - before[0])


def gblend_weights(model: MultimodalModel, train: SplitData, cfg: TrainConfig, seed: int) -> dict[str, float]:
    """G-Blend's loss weights (Wang, Tran & Feiszli, 2020, "What Makes Training Multi-modal
    Classification Networks Hard?", CVPR, eq. 8, offline variant): ``w_k ∝ |G_k| / O_k^2`` for
    each head ``k`` (every modality and ``"fused"``), normalised to sum 1, from
    :func:`overfit_generalise` with ``cfg.gblend_holdout`` of the train rows held out (drawn with
    ``seed``) and ``cfg.gblend_epochs`` epochs from ``model``'s initial weights (``model`` itself
    is not trained). As the reference code, ``|G| / O^2`` (a head that overfits fast weighs little).

    Returns
    -------
    ``{head: weight}``, weights >= 0 summing to 1.
    """
    perm = np.random.default_rng(seed).permutation(len(train))
    n_out = max(1, int(round(cfg.gblend_holdout * len(train))))
    held_out, fit_rows = train.subset(np.sort(perm[:n_out])), train.subset(np.sort(perm[n_out:]))
    raw = {}
    for head in [*model.modalities, HEADS]:
        g, o = overfit_generalise(model, fit_rows, held_out, head, cfg, cfg.gblend_epochs, seed)
        raw[head] = abs(g) / max(o * o, 1e-8)
    total = sum(raw.values())
    return {k: (v / total if total > 0 else 1 / len(raw)) for k, v in raw.items()}


def build_regime(remedy: str, model: MultimodalModel, train: SplitData, cfg: TrainConfig,
                 seed: int) -> tuple[MultimodalModel, Plain]:
    """The model to train and its regime for ``remedy`` (``""`` = plain, or one of
    :data:`remedies.REMEDIES`): OGM-GE at ``cfg.remedy_ogm_alpha``; G-Blend with
    :func:`gblend_weights` estimated now; MLA with the model's fusion + head wrapped in
    :class:`remedies.MLAFusion` (modified in place and returned).

    Raises
    ------
    ValueError
        If ``remedy`` is unknown, or a remedy is asked of a model without exactly two modalities.
    """
    if not remedy:
        return model, Plain(cfg.ogm_alpha)
    if remedy not in REMEDIES or len(model.modalities) != 2:
        raise ValueError(f"remedy {remedy!r} needs one of {list(REMEDIES)} and a two-modality model "
                         f"(got modalities {model.modalities})")
    if remedy == "ogm_ge":
        return model, OGMGE(cfg.remedy_ogm_alpha)
    if remedy == "gblend":
        return model, GBlend(gblend_weights(model, train, cfg, seed))
    model.fusion, model.head = MLAFusion(model.fusion, model.head), torch.nn.Identity()
    return model, MLA()
