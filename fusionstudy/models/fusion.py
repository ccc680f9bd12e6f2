"""Fusion strategies, all behind one signature: ``forward(feats: dict[str, Tensor]) -> Tensor``.

Every class is built from ``dims: dict[str, int]`` (feature size per modality), the hidden size
``hidden`` and the number of outputs ``n_outputs``; it iterates modalities in sorted key order and
raises ``ValueError`` naming a missing key. Feature fusions return ``(batch, out_dim)`` with
``out_dim == hidden`` and are followed by the wrapper's head; late fusions
(``produces_logits = True``) return the combined logits ``(batch, n_outputs)`` themselves.
Fusions that expose per-modality weights store them (detached) in ``self.diagnostics``.

Registry: ``FUSIONS = {name: class}``; :func:`build_fusion` constructs one by name.
"""
from __future__ import annotations

import inspect
import math

import pandas as pd
import torch
from torch import Tensor, nn

from fusionstudy.config import load_config
from fusionstudy.registry import FUSION_NAMES


class Fusion(nn.Module):
    """Base class: stores sorted modality names and checks the input dict."""

    produces_logits = False

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int):
        super().__init__()
        if not dims:
            raise ValueError("a fusion needs at least one modality in dims")
        self.dims = {k: int(dims[k]) for k in sorted(dims)}
        self.hidden, self.n_outputs = hidden, n_outputs
        self.out_dim = n_outputs if self.produces_logits else hidden
        self.diagnostics: dict[str, Tensor] = {}

    def _ordered(self, feats: dict[str, Tensor]) -> list[Tensor]:
        missing = [k for k in self.dims if k not in feats]
        if missing:
            raise ValueError(f"{type(self).__name__}: missing modality key(s) {missing}; "
                             f"got {sorted(feats)}, expected {list(self.dims)}")
        return [feats[k] for k in self.dims]


class EarlyConcat(Fusion):
    """Early fusion: concatenate learned representations, then a joint layer.

    ``cat([z_m for m in sorted(dims)]) (batch, sum d_m) -> Linear -> ReLU -> (batch, hidden)``.
    Parameters: ``(sum d_m + 1) * hidden``. With one modality this is a unimodal model's
    first head layer.
    """

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int, dropout: float):
        super().__init__(dims, hidden, n_outputs)
        self.joint = nn.Sequential(nn.Linear(sum(self.dims.values()), hidden), nn.ReLU(),
                                   nn.Dropout(dropout))

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        return self.joint(torch.cat(self._ordered(feats), dim=1))


def _modality_heads(dims: dict[str, int], hidden: int, n_outputs: int, dropout: float) -> nn.ModuleDict:
    return nn.ModuleDict({k: nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout),
                                           nn.Linear(hidden, n_outputs)) for k, d in dims.items()})


class LateLogitAvg(Fusion):
    """Late fusion: one MLP head per modality, logits averaged, trained jointly.

    Returns ``mean_m head_m(z_m)`` of shape ``(batch, n_outputs)``. Parameters:
    ``sum_m (d_m + 1) * hidden + (hidden + 1) * n_outputs``.
    """

    produces_logits = True

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int, dropout: float):
        super().__init__(dims, hidden, n_outputs)
        self.heads = _modality_heads(self.dims, hidden, n_outputs, dropout)

    def modality_logits(self, feats: dict[str, Tensor]) -> Tensor:
        """Per-modality logits stacked to ``(n_modalities, batch, n_outputs)``."""
        return torch.stack([self.heads[k](z) for k, z in zip(self.dims, self._ordered(feats))])

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        return self.modality_logits(feats).mean(dim=0)


class LateLearned(LateLogitAvg):
    """Late fusion with learned global modality weights: ``sum_m softmax(w)_m head_m(z_m)``.

    ``w`` has shape ``(n_modalities,)``, initialised to 0 (equal weights = ``late_logit_avg``).
    ``diagnostics["weights"]`` holds ``softmax(w)``.
    """

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int, dropout: float):
        super().__init__(dims, hidden, n_outputs, dropout)
        self.w = nn.Parameter(torch.zeros(len(self.dims)))

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        a = torch.softmax(self.w, dim=0)
        self.diagnostics = {"weights": a.detach()}
        return torch.einsum("m,mbo->bo", a, self.modality_logits(feats))


class GMU(Fusion):
    """Gated Multimodal Unit (Arevalo et al., 2017, "Gated Multimodal Units for Information Fusion").

    ``h_m = tanh(W_m z_m)``; gates ``g = softmax_m(W_g cat(z))`` per hidden unit, so for two
    modalities ``g_1 = sigmoid(.)`` and ``g_2 = 1 - g_1`` as in the bimodal GMU; output
    ``sum_m g_m * h_m`` of shape ``(batch, hidden)``. ``diagnostics["gates"]`` is
    ``(batch, n_modalities)``, each gate averaged over hidden units.
    Parameters: ``sum_m (d_m + 1) hidden + (sum d_m + 1) M hidden``.
    """

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int):
        super().__init__(dims, hidden, n_outputs)
        self.proj = nn.ModuleDict({k: nn.Linear(d, hidden) for k, d in self.dims.items()})
        self.gate = nn.Linear(sum(self.dims.values()), len(self.dims) * hidden)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        zs = self._ordered(feats)
        h = torch.stack([torch.tanh(self.proj[k](z)) for k, z in zip(self.dims, zs)], dim=1)
        g = torch.softmax(self.gate(torch.cat(zs, dim=1)).view(h.shape), dim=1)
        self.diagnostics = {"gates": g.mean(dim=2).detach()}
        return (g * h).sum(dim=1)


class Attention(Fusion):
    """Attention over modality embeddings (as torchmultimodal's ``AttentionFusionModule``).

    Per-sample weights ``a = softmax(W_a cat(z))`` of shape ``(batch, M)``; output
    ``sum_m a_m * P_m z_m`` of shape ``(batch, hidden)``. ``diagnostics["weights"] = a``.
    Parameters: ``(sum d_m + 1) M + sum_m (d_m + 1) hidden``.
    """

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int):
        super().__init__(dims, hidden, n_outputs)
        self.score = nn.Linear(sum(self.dims.values()), len(self.dims))
        self.proj = nn.ModuleDict({k: nn.Linear(d, hidden) for k, d in self.dims.items()})

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        zs = self._ordered(feats)
        a = torch.softmax(self.score(torch.cat(zs, dim=1)), dim=1)
        self.diagnostics = {"weights": a.detach()}
        p = torch.stack([self.proj[k](z) for k, z in zip(self.dims, zs)], dim=1)
        return torch.relu((a.unsqueeze(2) * p).sum(dim=1))


class TFN(Fusion):
    """Tensor Fusion Network (Zadeh et al., 2017): outer product of ``[P_m z_m; 1]``.

    Each ``z_m`` is projected to ``k = tfn_dim`` first so the ``(k + 1) ** M`` tensor fits in
    memory; the flattened tensor ``(batch, (k+1)**M)`` -> Linear -> ReLU -> ``(batch, hidden)``.
    Parameters: ``sum_m (d_m + 1) k + ((k + 1) ** M + 1) hidden``.
    """

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int, tfn_dim: int):
        super().__init__(dims, hidden, n_outputs)
        self.proj = nn.ModuleDict({k: nn.Linear(d, tfn_dim) for k, d in self.dims.items()})
        self.out = nn.Linear((tfn_dim + 1) ** len(self.dims), hidden)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        zs = self._ordered(feats)
        t = None
        for k, z in zip(self.dims, zs):
            p = self.proj[k](z)
            p = torch.cat([p, torch.ones_like(p[:, :1])], dim=1)
            t = p if t is None else torch.einsum("bi,bj->bij", t, p).flatten(1)
        return torch.relu(self.out(t))


class LMF(Fusion):
    """Low-rank Multimodal Fusion (Liu et al., 2018): TFN's weight tensor in rank-``r`` factors.

    ``out = sum_r w_r prod_m ([z_m; 1] @ W_m[r]) + b`` of shape ``(batch, hidden)``; factors
    ``W_m`` are registered ``Parameter`` s of shape ``(r, d_m + 1, hidden)`` (the original code
    kept them in a Python list, so they never trained).
    Parameters: ``sum_m r (d_m + 1) hidden + r + hidden``.
    """

    def __init__(self, dims: dict[str, int], hidden: int, n_outputs: int, lmf_rank: int):
        super().__init__(dims, hidden, n_outputs)
        self.factors = nn.ParameterDict({
            k: nn.Parameter(torch.empty(lmf_rank, d + 1, hidden)) for k, d in self.dims.items()})
        for p in self.factors.values():
            nn.init.xavier_normal_(p)
        self.rank_weights = nn.Parameter(torch.full((lmf_rank,), 1.0 / math.sqrt(lmf_rank)))
        self.bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        prod = None
        for k, z in zip(self.dims, self._ordered(feats)):
            z1 = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)
            f = torch.einsum("bd,rdh->rbh", z1, self.factors[k])
            prod = f if prod is None else prod * f
        return torch.relu(torch.einsum("r,rbh->bh", self.rank_weights, prod) + self.bias)


# The names are the registry's (``fusionstudy.registry.FUSION_NAMES``, what configs are checked
# against at load); this pairs each with its class, in the same order.
_CLASSES = (EarlyConcat, LateLogitAvg, LateLearned, GMU, Attention, TFN, LMF)
if len(_CLASSES) != len(FUSION_NAMES):
    raise ImportError(f"{len(FUSION_NAMES)} fusion names in the registry but {len(_CLASSES)} classes here")
FUSIONS: dict[str, type[Fusion]] = dict(zip(FUSION_NAMES, _CLASSES))


def build_fusion(name: str, dims: dict[str, int], hidden: int, n_outputs: int, *, dropout: float,
                 tfn_dim: int, lmf_rank: int) -> Fusion:
    """Construct ``FUSIONS[name]``, giving each class only the options its constructor names
    (``dropout`` for the concat/late heads, ``tfn_dim`` for TFN, ``lmf_rank`` for LMF).

    Raises
    ------
    ValueError
        If ``name`` is not registered (the message lists the registry).
    """
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; registered: {sorted(FUSIONS)}")
    wanted = inspect.signature(FUSIONS[name]).parameters
    options = {k: v for k, v in (("dropout", dropout), ("tfn_dim", tfn_dim), ("lmf_rank", lmf_rank)) if k in wanted}
    return FUSIONS[name](dims, hidden, n_outputs, **options)


def expected_params(name: str, dims: dict[str, int], hidden: int, n_outputs: int, *,
                    tfn_dim: int, lmf_rank: int) -> int:
    """Closed-form parameter count of each fusion (the formulas in the class docstrings)."""
    d, m, h = list(dims.values()), len(dims), hidden
    late = sum((x + 1) * h for x in d) + m * (h + 1) * n_outputs
    return {
        "early_concat": (sum(d) + 1) * h,
        "late_logit_avg": late,
        "late_learned": late + m,
        "gmu": sum((x + 1) * h for x in d) + (sum(d) + 1) * m * h,
        "attention": (sum(d) + 1) * m + sum((x + 1) * h for x in d),
        "tfn": sum((x + 1) * tfn_dim for x in d) + ((tfn_dim + 1) ** m + 1) * h,
        "lmf": sum(lmf_rank * (x + 1) * h for x in d) + lmf_rank + h,
    }[name]


def parameter_scaling(sizes: list[int], modalities: list[str], hidden: int, n_outputs: int,
                      lmf_rank: int) -> list[dict]:
    """Fusion-layer parameter count (``numel`` over registered parameters) of every registered
    fusion as the per-modality representation size ``d`` goes over ``sizes``.

    The output size ``hidden`` stays fixed so the count reflects how each fusion combines the
    representations; TFN's projection size is tied to ``d`` (``k = d``), as a TFN over raw
    ``d``-dimensional features would be. Returns rows ``{"fusion", "d", "params"}``.
    """
    rows = []
    for name in FUSIONS:
        for d in sizes:
            f = build_fusion(name, {m: d for m in modalities}, hidden, n_outputs, dropout=0.0, tfn_dim=d,
                             lmf_rank=lmf_rank)
            rows.append({"fusion": name, "d": d, "params": sum(p.numel() for p in f.parameters())})
    return rows


def fusion_param_table(dims: dict[str, int], hidden: int, n_outputs: int, tfn_dim: int, lmf_rank: int) -> list[dict]:
    """Parameter count of every registered fusion for the given sizes: counted with ``numel``
    over registered parameters, next to the closed-form formula (they must agree)."""
    rows = []
    for name in FUSIONS:
        f = build_fusion(name, dims, hidden, n_outputs, dropout=0.0, tfn_dim=tfn_dim, lmf_rank=lmf_rank)
        counted = sum(p.numel() for p in f.parameters())
        formula = expected_params(name, dims, hidden, n_outputs, tfn_dim=tfn_dim, lmf_rank=lmf_rank)
        rows.append({"fusion": name, "output": "logits" if f.produces_logits else f"features ({hidden})",
                     "parameters (numel)": f"{counted:,}", "closed form": f"{formula:,}"})
    return rows


GEN_BEGIN, GEN_END = "<!-- BEGIN GENERATED: fusionstudy docs -->", "<!-- END GENERATED -->"


def render_fusion_docs(text: str) -> str:
    """Replace the generated block of ``docs/fusion.md`` with the current parameter table
    (sizes from the default ``configs/clothing.toml`` + ``full`` profile)."""
    m = load_config().model
    dims = {"tabular": m.tab_dim, "text": m.text_dim}
    table = pd.DataFrame(fusion_param_table(dims, m.head_hidden, 2, m.tfn_dim, m.lmf_rank)).to_markdown(
        index=False, disable_numparse=True)
    block = (f"{GEN_BEGIN}\nFusion-layer parameters at the default sizes (text d = {m.text_dim}, tabular "
             f"d = {m.tab_dim}, hidden = {m.head_hidden}, 2 classes, TFN k = {m.tfn_dim}, LMF rank = "
             f"{m.lmf_rank}):\n\n{table}\n{GEN_END}")
    head, rest = text.split(GEN_BEGIN, 1)
    return head + block + rest.split(GEN_END, 1)[1]
