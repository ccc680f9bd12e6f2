"""Text encoder: a TF-IDF-weighted bag of word n-gram embeddings (fastText-style).

Joulin et al., 2017, "Bag of Tricks for Efficient Text Classification": an ``EmbeddingBag`` over
word 1..n-grams is a strong, fast text classifier. Here the bag is weighted by the train-fitted
TF-IDF weights of ``data.TextPipeline`` and regularised by n-gram dropout (each n-gram of a
training sample is dropped with probability ``token_dropout``) and feature dropout. With
``sparse=True`` the table's gradient holds only the rows a batch touches (``optim.RowAdagrad``
updates just those).

:class:`SentenceHead` is the other text encoder (``text.encoder = "minilm"``): a trained MLP on
frozen pretrained sentence embeddings.
"""
from __future__ import annotations

import torch
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


class SentenceHead(nn.Module):
    """Frozen sentence embedding -> trained MLP -> ``(batch, out_dim)`` features (the ``minilm``
    text encoder; the embeddings come from ``data.embeddings``, Reimers & Gurevych 2019).

    ``Linear(in_dim, hidden) -> ReLU -> Dropout -> Linear(hidden, out_dim) -> Dropout``; a row
    without text gets ``missing``, a learned ``(out_dim,)`` vector (as the bag's learned
    missing-text id), instead of the MLP of its zero embedding. Parameters:
    ``(in_dim + 1) * hidden + (hidden + 1) * out_dim + out_dim``.

    Parameters
    ----------
    in_dim : int
        Embedding size (384 for all-MiniLM-L6-v2).
    hidden, out_dim : int
        MLP width and feature size ``d``.
    dropout : float
        Dropout after the hidden layer and on the features, training only.

    Input is ``(emb (batch, in_dim) float32, missing (batch,) bool)``.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        self.missing = nn.Parameter(torch.zeros(out_dim))
        self.drop = nn.Dropout(dropout)
        self.out_dim = out_dim

    def forward(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        emb, missing = inputs
        return self.drop(torch.where(missing[:, None], self.missing, self.mlp(emb)))
