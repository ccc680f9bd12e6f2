"""Text encoder: a TF-IDF-weighted bag of word n-gram embeddings (fastText-style).

Joulin et al., 2017, "Bag of Tricks for Efficient Text Classification": an ``EmbeddingBag`` over
word 1..n-grams is a strong, fast text classifier. Here the bag is weighted by the train-fitted
TF-IDF weights of ``data.TextPipeline`` and regularised by n-gram dropout (each n-gram of a
training sample is dropped with probability ``token_dropout``) and feature dropout. With
``sparse=True`` the table's gradient holds only the rows a batch touches (``optim.RowAdagrad``
updates just those).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TextEncoder(nn.Module):
    """Bag of n-gram embeddings -> ``(batch, out_dim)`` features.

    Parameters
    ----------
    vocab_size : int
        Number of n-gram ids, including the reserved missing/unknown ids.
    out_dim : int
        Embedding (feature) size ``d``.
    dropout, token_dropout : float
        Feature dropout and per-n-gram weight dropout, training only.
    sparse : bool
        Return the table's gradient as a sparse COO tensor (one row per n-gram occurrence).

    Input is ``(ids (nnz,) int64, offsets (batch,) int64, weights (nnz,) float32)``.
    """

    def __init__(self, vocab_size: int, out_dim: int, dropout: float, token_dropout: float,
                 sparse: bool = False):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, out_dim, mode="sum", sparse=sparse)
        nn.init.normal_(self.bag.weight, std=0.1)
        self.drop = nn.Dropout(dropout)
        self.token_dropout = token_dropout
        self.out_dim = out_dim

    def forward(self, inputs: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        ids, offsets, weights = inputs
        if self.training and self.token_dropout > 0:
            weights = F.dropout(weights, self.token_dropout)
        return self.drop(self.bag(ids, offsets, per_sample_weights=weights))
