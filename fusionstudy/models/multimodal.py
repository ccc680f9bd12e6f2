"""The one model wrapper: ``encoders (ModuleDict) -> fusion -> head``.

A unimodal model is the same wrapper with one encoder and ``early_concat`` fusion. Late fusions
return logits, so their head is the identity.
"""
from __future__ import annotations

from torch import Tensor, nn

from fusionstudy.config import ModelConfig, TabularConfig
from fusionstudy.models.fusion import build_fusion
from fusionstudy.models.tabular import TabularEncoder
from fusionstudy.models.text import SentenceHead, TextEncoder


class MultimodalModel(nn.Module):
    """``forward(inputs: dict[str, tuple]) -> logits (batch, n_outputs)``.

    Parameters
    ----------
    encoders : dict of str -> nn.Module
        Modality name -> encoder returning ``(batch, out_dim)`` features.
    fusion : str
        A key of ``fusion.FUSIONS``.
    n_outputs : int
        Number of classes (the loss is cross-entropy over ``n_outputs`` logits).
    cfg : ModelConfig
        Hidden size, dropout and fusion options.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: str, n_outputs: int, cfg: ModelConfig):
        super().__init__()
        self.encoders = nn.ModuleDict({k: encoders[k] for k in sorted(encoders)})
        dims = {k: e.out_dim for k, e in self.encoders.items()}
        self.fusion = build_fusion(fusion, dims, cfg.head_hidden, n_outputs, dropout=cfg.dropout,
                                   tfn_dim=cfg.tfn_dim, lmf_rank=cfg.lmf_rank)
        self.head = nn.Identity() if self.fusion.produces_logits else nn.Sequential(
            nn.Linear(self.fusion.out_dim, cfg.head_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, n_outputs))

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def features(self, inputs: dict[str, tuple]) -> dict[str, Tensor]:
        """Per-modality features ``{name: (batch, out_dim)}``.

        Raises
        ------
        ValueError
            If an encoder's modality is missing from ``inputs``.
        """
        missing = [k for k in self.encoders if k not in inputs]
        if missing:
            raise ValueError(f"inputs lack modality {missing}; model expects {self.modalities}")
        return {k: enc(inputs[k]) for k, enc in self.encoders.items()}

    def forward(self, inputs: dict[str, tuple]) -> Tensor:
        return self.head(self.fusion(self.features(inputs)))

    def param_counts(self) -> dict[str, int]:
        """Trainable parameters per component: ``enc_<modality>``, ``fusion``, ``head``, ``total``."""
        def n(m: nn.Module) -> int:
            return sum(p.numel() for p in m.parameters() if p.requires_grad)
        counts = {f"enc_{k}": n(e) for k, e in self.encoders.items()}
        counts.update(fusion=n(self.fusion), head=n(self.head), total=n(self))
        return counts


def build_model(modalities: list[str], fusion: str, n_outputs: int, cfg: ModelConfig,
                vocab_size: int, cardinalities: list[int], n_numeric: int,
                tab_cfg: TabularConfig, sparse_text: bool = False, embedding_dim: int = 0) -> MultimodalModel:
    """Build the wrapper with the encoders named in ``modalities`` ("text", "tabular");
    ``sparse_text`` gives the text table sparse gradients (see ``models.text.TextEncoder``).
    ``embedding_dim > 0``: the text input is a frozen sentence embedding of that size, read by a
    ``models.text.SentenceHead`` (hidden width ``cfg.head_hidden``) instead of the n-gram bag.

    Raises
    ------
    ValueError
        On an unknown modality name or fusion.
    """
    unknown = set(modalities) - {"text", "tabular"}
    if unknown:
        raise ValueError(f"unknown modality {sorted(unknown)}; known: ['tabular', 'text']")
    encoders = {}
    if "text" in modalities:
        encoders["text"] = (SentenceHead(embedding_dim, cfg.head_hidden, cfg.text_dim, cfg.dropout) if embedding_dim
                            else TextEncoder(vocab_size, cfg.text_dim, cfg.dropout, cfg.token_dropout, sparse_text))
    if "tabular" in modalities:
        encoders["tabular"] = TabularEncoder(cardinalities, n_numeric, cfg.tab_hidden, cfg.tab_dim,
                                             cfg.dropout, tab_cfg.max_emb_dim)
    return MultimodalModel(encoders, fusion, n_outputs, cfg)
