"""OGM-GE, on-the-fly gradient modulation with generalisation enhancement (Peng, Wei, Deng, Wang &
Hu, 2022, "Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR): a training
regime for two-modality models that slows the encoder of the modality that is ahead.

Per batch, each modality's score is the summed softmax probability of the true class under its
*unimodal* logits, ``s_m = sum_i softmax(o_m(x_i))[y_i]``; with ``rho = s_m / s_other``, the
encoder of a modality with ``rho > 1`` has its gradient scaled by ``k_m = 1 - tanh(alpha rho)``
(eq. 10; the other keeps ``k = 1``), and every encoder gradient ``g`` becomes
``k g + N(0, std(g)^2)`` (GE: noise of the gradient's own spread, which the paper shows restores
the generalisation the scaled-down gradient's smaller SGD noise would lose). As the reference code,
``rho`` itself (not ``rho - 1``) enters the tanh, so ``k`` jumps from 1 to ``1 - tanh(alpha)``
as a modality takes the lead.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from fusionstudy.models.multimodal import MultimodalModel


def unimodal_logits(model: MultimodalModel, feats: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each modality's own logits ``{m: (batch, n_classes)}`` from features ``{m: (batch, d_m)}``.

    Late fusions that expose ``modality_logits`` (``late_logit_avg``, ``late_learned``) give
    their per-modality heads' logits exactly. Feature fusions (``early_concat``, ...) give the
    fused head with every other modality's features set to 0 — for a fusion that is one linear
    layer this is the paper's split of the concatenation weights (up to the shared bias).
    """
    if hasattr(model.fusion, "modality_logits"):
        return dict(zip(model.fusion.dims, model.fusion.modality_logits(feats)))
    out = {}
    for m in model.modalities:
        alone = {k: z if k == m else torch.zeros_like(z) for k, z in feats.items()}
        out[m] = model.head(model.fusion(alone))
    return out


def ogm_coefficients(logits: dict[str, Tensor], y: Tensor, alpha: float) -> dict[str, float]:
    """The gradient coefficients ``k_m`` of eq. 10 for two modalities (see the module docstring).

    Parameters
    ----------
    logits : two modalities' unimodal logits, each ``(batch, n_classes)``.
    y : (batch,) int64 labels.
    alpha : modulation strength (>= 0); 0 gives ``k = 1`` for both.

    Raises
    ------
    ValueError
        If ``logits`` does not hold exactly two modalities.
    """
    if len(logits) != 2:
        raise ValueError(f"OGM-GE modulates two modalities, got {sorted(logits)}")
    score = {m: float(torch.softmax(o.detach(), dim=1).gather(1, y[:, None]).sum()) for m, o in logits.items()}
    (a, sa), (b, sb) = score.items()
    rho = sa / max(sb, 1e-12)
    if rho > 1:
        return {a: 1.0 - math.tanh(alpha * rho), b: 1.0}
    return {a: 1.0, b: 1.0 - math.tanh(alpha / max(rho, 1e-12))}


def _noisy(grad: Tensor, k: float, generator: torch.Generator) -> Tensor:
    """``k grad + N(0, std(grad)^2)``; a sparse gradient's noise falls on its stored rows only."""
    values = grad._values() if grad.is_sparse else grad
    std = float(values.std(correction=0)) if values.numel() > 1 else 0.0
    noise = torch.randn(values.shape, generator=generator, dtype=values.dtype) * (std + 1e-8)
    new = k * values + noise
    if not grad.is_sparse:
        return new
    return torch.sparse_coo_tensor(grad._indices(), new, grad.shape, is_coalesced=True,
                                   check_invariants=False)  # the coalesced input's own indices


def modulate_gradients(model: MultimodalModel, coeffs: dict[str, float], generator: torch.Generator) -> None:
    """Replace every encoder parameter's gradient ``g`` by ``k_m g + N(0, std(g)^2)`` (OGM-GE),
    ``k_m = coeffs[m]`` for modality ``m``'s encoder; fusion and head gradients are left alone.
    Call between ``loss.backward()`` and the optimiser step (sparse gradients coalesced first)."""
    for m, enc in model.encoders.items():
        for p in enc.parameters():
            if p.grad is not None:
                p.grad = _noisy(p.grad, coeffs[m], generator)
