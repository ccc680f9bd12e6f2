"""Tabular encoder: categorical embeddings + numeric features -> MLP (as in wide&deep's deep side)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def embedding_dim(cardinality: int, max_dim: int) -> int:
    """fastai's rule of thumb ``min(max_dim, round(1.6 * n ** 0.56))`` for an embedding size."""
    return int(min(max_dim, round(1.6 * cardinality ** 0.56)))


class TabularEncoder(nn.Module):
    """``(cat (batch, n_cat) int64, num (batch, n_num_in) float32)`` -> ``(batch, out_dim)``.

    Parameters
    ----------
    cardinalities : list of int
        Embedding table size of each categorical column (codes 0 = missing, 1 = unknown).
    n_numeric : int
        Width of the numeric block (scaled values plus missing flags).
    hidden, out_dim : int
        MLP width and feature size.
    dropout : float
        Dropout after the hidden layer.
    max_emb_dim : int
        Cap of each column's embedding size (see :func:`embedding_dim`).
    """

    def __init__(self, cardinalities: list[int], n_numeric: int, hidden: int, out_dim: int,
                 dropout: float, max_emb_dim: int):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim(n, max_emb_dim))
                                        for n in cardinalities)
        width = sum(e.embedding_dim for e in self.embeddings) + n_numeric
        if width == 0:
            raise ValueError("TabularEncoder needs at least one categorical or numeric column")
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        cat, num = inputs
        parts = [emb(cat[:, j]) for j, emb in enumerate(self.embeddings)] + [num]
        return self.mlp(torch.cat(parts, dim=1))
