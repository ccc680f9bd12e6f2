"""Training regimes against a dominant modality, as the loss side of :func:`loop.fit`: what one
batch's loss (or losses) is and how its encoder gradients are modulated.

* ``plain`` — cross-entropy of the fused logits (with ``train.ogm_alpha > 0``, OGM-GE on every
  two-modality run, as before the regimes existed).
* ``ogm_ge`` — OGM-GE (Peng et al., CVPR 2022; :mod:`training.modulation`) at ``train.remedy_ogm_alpha``.
* ``gblend`` — Gradient-Blending (Wang, Tran & Feiszli, 2020, "What Makes Training Multi-modal
  Classification Networks Hard?", CVPR): the loss ``sum_k w_k CE(o_k, y)`` over the unimodal
  heads and the fused head, ``w_k`` estimated beforehand from each head's overfitting-to-
  generalisation ratio on held-out train rows (:mod:`training.regimes`).
* ``mla`` — Multimodal Learning with Alternating unimodal adaptation (Zhang, Latham & Zhu, 2024,
  "Multimodal Representation Learning by Alternating Unimodal Adaptation", CVPR): per batch, one
  optimiser step per modality on that modality's logits through a shared head; at test time the
  unimodal logits are fused with entropy weights (:class:`MLAFusion`).

A regime yields ``(loss, ogm coefficients or None)`` pairs; ``fit`` takes one optimiser step per
pair, so MLA's alternation is two steps per batch.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionstudy.models.multimodal import MultimodalModel
from fusionstudy.registry import REMEDY_NAMES
from fusionstudy.training.modulation import ogm_coefficients, unimodal_logits

REMEDIES = REMEDY_NAMES  # the regimes beside plain training (records.Training.remedy)
Step = tuple[Tensor, "dict[str, float] | None"]


class Plain:
    """Cross-entropy of the fused logits; with ``alpha > 0`` and two modalities, OGM-GE's gradient
    coefficients from the same features (``modulation.ogm_coefficients``)."""

    name = "plain"
    steps_per_batch = 1

    def __init__(self, alpha: float = 0.0):
        self.alpha = alpha

    def losses(self, model: MultimodalModel, inputs: dict[str, tuple], y: Tensor) -> Iterator[Step]:
        if self.alpha == 0 or len(model.modalities) != 2:
            yield F.cross_entropy(model(inputs), y), None
            return
        feats = model.features(inputs)
        loss = F.cross_entropy(model.head(model.fusion(feats)), y)
        with torch.no_grad():
            coeffs = ogm_coefficients(unimodal_logits(model, {m: z.detach() for m, z in feats.items()}), y, self.alpha)
        yield loss, coeffs


class OGMGE(Plain):
    """OGM-GE (Peng, Wei, Deng, Wang & Hu, 2022, CVPR) at modulation strength ``alpha`` > 0."""

    name = "ogm_ge"


class GBlend(Plain):
    """Gradient-Blending's loss ``w_fused CE(o_fused, y) + sum_m w_m CE(o_m, y)`` (Wang, Tran &
    Feiszli, 2020, CVPR, eq. 8), with ``weights = {modality or "fused": w}`` summing to 1 from
    ``regimes.gblend_weights``; ``o_m`` are ``modulation.unimodal_logits`` (the late fusions'
    per-modality heads, else the fused head with the other side's features at 0)."""

    name = "gblend"

    def __init__(self, weights: dict[str, float]):
        super().__init__(0.0)
        self.weights = weights

    def losses(self, model: MultimodalModel, inputs: dict[str, tuple], y: Tensor) -> Iterator[Step]:
        feats = model.features(inputs)
        loss = self.weights["fused"] * F.cross_entropy(model.head(model.fusion(feats)), y)
        for m, o in unimodal_logits(model, feats).items():
            loss = loss + self.weights[m] * F.cross_entropy(o, y)
        yield loss, None


class MLAFusion(nn.Module):
    """MLA's test-time fusion around a trained ``fusion`` + ``head`` (Zhang, Latham & Zhu, 2024, CVPR,
    eq. 7): ``o = sum_m w_m o_m`` with ``w_m = exp(max_k H_k - H_m) / sum_j exp(max_k H_k - H_j)``,
    ``H_m`` the entropy (nats) of ``softmax(o_m)`` per row — the more certain modality weighs more.

    ``o_m`` (``modality_logits``) is the shared head on modality ``m`` alone: the wrapped late
    fusion's per-modality head, or the wrapped feature fusion + head with every other modality's
    features at 0. Returns logits ``(batch, n_outputs)``; ``diagnostics["entropy_weights"]`` holds
    ``w`` ``(batch, n_modalities)``.
    """

    produces_logits = True

    def __init__(self, fusion: nn.Module, head: nn.Module):
        super().__init__()
        self.inner, self.head = fusion, head
        self.dims, self.out_dim, self.diagnostics = fusion.dims, fusion.n_outputs, {}

    def modality_logit(self, m: str, z: Tensor) -> Tensor:
        """Modality ``m``'s logits ``(batch, n_outputs)`` from its features ``z`` ``(batch, d_m)`` alone."""
        alone = {k: z if k == m else z.new_zeros(len(z), d) for k, d in self.dims.items()}
        if hasattr(self.inner, "modality_logits"):
            return self.inner.modality_logits(alone)[list(self.dims).index(m)]
        return self.head(self.inner(alone))

    def modality_logits(self, feats: dict[str, Tensor]) -> Tensor:
        """Per-modality logits stacked to ``(n_modalities, batch, n_outputs)``."""
        return torch.stack([self.modality_logit(m, feats[m]) for m in self.dims])

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        o = self.modality_logits(feats)
        logp = torch.log_softmax(o, dim=2)
        h = -(logp.exp() * logp).sum(dim=2)  # (M, batch) entropies
        w = torch.softmax(h.max(dim=0).values - h, dim=0)  # exp(max H - H_m), normalised
        self.diagnostics = {"entropy_weights": w.detach().T}
        return torch.einsum("mb,mbo->bo", w, o)


class MLA(Plain):
    """MLA's alternating unimodal adaptation (Zhang, Latham & Zhu, 2024, CVPR): per batch, for each
    modality in turn, ``CE(o_m, y)`` through the shared head with only that encoder run (one
    optimiser step each). The paper's orthogonal weight modification of the shared head is left
    out: for a feature fusion, ``o_m`` feeds zeros in the other modality's slot, so the first fused
    layer's weights of the two modalities are disjoint and only the later layers are shared. The
    model must carry :class:`MLAFusion` (``regimes.build_regime`` installs it)."""

    name = "mla"
    steps_per_batch = 2

    def __init__(self):
        super().__init__(0.0)

    def losses(self, model: MultimodalModel, inputs: dict[str, tuple], y: Tensor) -> Iterator[Step]:
        if not isinstance(model.fusion, MLAFusion):
            raise ValueError("MLA trains a model whose fusion is an MLAFusion; build it with regimes.build_regime")
        for m, enc in model.encoders.items():  # lazily: each step sees the previous step's weights
            yield F.cross_entropy(model.fusion.modality_logit(m, enc(inputs[m])), y), None
