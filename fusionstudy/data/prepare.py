"""Validated frame (``data.reading``) -> fixed split -> train-fitted preprocessing -> tensors.

Knows nothing about models. Two modalities:

* ``text``: the spec's text columns joined, lower-cased and tokenised by scikit-learn's
  ``CountVectorizer`` tokenizer, truncated to ``max_tokens`` tokens, then 1..n-gram TF-IDF
  weights over a vocabulary fit on train. A row is a bag ``(token ids, weights)``; two reserved
  ids stand for "text missing" and "all n-grams unknown".
* ``tabular``: categorical columns -> integer codes (0 = missing, 1 = unknown/rare, 2.. = levels
  seen >= ``min_count`` times in train); numeric columns -> train-median impute, a missing flag,
  standard scaling with train statistics. A numeric cell that is +-inf or overflows float32 (as
  read, or once scaled) is treated as missing and counted (``Prepared.stats["nonfinite"]``).

Bad input fails early with a one-line ``ValueError`` naming the file, column, class or value: a
column under two roles, a label with near-duplicate spellings or that looks continuous, a class
too rare to reach every split (see :func:`min_class_rows`), an undecodable or unparsable CSV.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.model_selection import train_test_split

from fusionstudy.config import MODALITIES, Config, DatasetConfig, SplitConfig, TabularConfig, TextConfig
from fusionstudy.data.embeddings import SentenceEmbedder, embed_tokens, minilm_embedder
from fusionstudy.data.reading import load_frame, validate_frame

log = logging.getLogger(__name__)

FLOAT32_MAX = float(np.finfo(np.float32).max)  # a scaled value beyond it is treated as missing
MIN_ROWS_PER_SPLIT = 2  # of every class in train, val and test: below it a split cannot score the class
WARN_ROWS_PER_CLASS = 10  # of a class in val or test: below it F1 and ROC-AUC there rest on a handful of rows


def min_class_rows(cfg: SplitConfig) -> int:
    """The fewest rows a class may have: the smallest count whose stratified share is at least
    :data:`MIN_ROWS_PER_SPLIT` in train, val and test even in the worst rounding (scikit-learn gives
    each class the floor of its share or one more). 15 for ``val = test = 0.15``."""
    t, v = cfg.test, cfg.val / (1 - cfg.test)  # val is carved from what the test split leaves
    n = 3 * MIN_ROWS_PER_SPLIT
    while True:
        test, rest = math.floor(n * t), n - math.floor(n * t) - 1
        val, train = math.floor(rest * v), rest - math.floor(rest * v) - 1
        if min(test, val, train) >= MIN_ROWS_PER_SPLIT:
            return n
        n += 1


def make_split(y: np.ndarray, cfg: SplitConfig, classes: list | None = None) -> dict[str, np.ndarray]:
    """Stratified train/val/test row ids (sorted), fixed by ``cfg.seed``.

    Parameters
    ----------
    y : (n_samples,) int class indices.
    cfg : split fractions and seed.
    classes : class names for the error messages (default: the indices).

    Raises
    ------
    ValueError
        If fractions are not in (0, 1), or a class has fewer than :func:`min_class_rows` rows
        (naming the class and its count) — with fewer, a split may miss it and cannot score it.
    """
    if not (0 < cfg.val < 1 and 0 < cfg.test < 1 and cfg.val + cfg.test < 1):
        raise ValueError(f"split fractions val={cfg.val}, test={cfg.test} must be in (0, 1) "
                         "and sum to less than 1")
    names = list(classes) if classes is not None else list(range(int(y.max()) + 1))
    counts, need = np.bincount(y, minlength=len(names)), min_class_rows(cfg)
    short = [k for k in np.argsort(counts, kind="stable") if counts[k] < need]
    if short:
        k, more = short[0], f" ({len(short)} classes fall short)" if len(short) > 1 else ""
        raise ValueError(f"class {names[k]!r} has {counts[k]} of {len(y)} rows; every class needs >= {need} "
                         f"so that train, val and test each get >= {MIN_ROWS_PER_SPLIT} rows of it{more}; "
                         "merge or drop rare classes, or add rows")
    ids = np.arange(len(y))
    rest, test = train_test_split(ids, test_size=cfg.test, stratify=y, random_state=cfg.seed)
    train, val = train_test_split(rest, test_size=cfg.val / (1 - cfg.test),
                                  stratify=y[rest], random_state=cfg.seed)
    out = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    _check_split_counts(y, out, names)  # min_class_rows makes this hold; checked, not assumed
    return out


def _check_split_counts(y: np.ndarray, ids: dict[str, np.ndarray], names: list, hint: str = "") -> None:
    counts = np.bincount(y, minlength=len(names))
    for name, rows in ids.items():
        got = np.bincount(y[rows], minlength=len(names))
        if got.min() < MIN_ROWS_PER_SPLIT:
            k = int(got.argmin())
            raise ValueError(f"class {names[k]!r} has {got[k]} row(s) in the {name} split ({counts[k]} in all); "
                             f"each split needs >= {MIN_ROWS_PER_SPLIT}; merge or drop rare classes, or add rows{hint}")


SPLIT_NAMES = ("train", "val", "test")  # the values of a predefined split column (any case)


def predefined_split(values: pd.Series, y: np.ndarray, cfg: SplitConfig, classes: list | None = None
                     ) -> dict[str, np.ndarray]:
    """Row ids (sorted) per split from a column of ``train``/``val``/``test`` values (any case,
    surrounding spaces ignored). Without ``val`` rows, val is carved from train, stratified, with
    ``cfg.seed``: ``cfg.val / (1 - cfg.test)`` of the train rows, the share a random split gives it.

    Parameters
    ----------
    values : (n_samples,) the split column (``cfg.column``).
    y : (n_samples,) int class indices.
    cfg : the split seed and fractions (for carving val) and the column's name (for messages).
    classes : class names for the error messages (default: the indices).

    Raises
    ------
    ValueError
        On another value (naming up to five with their row counts, and the allowed ones), no
        train or test rows, or a class with fewer than 2 rows in some split (naming it).
    """
    names = list(classes) if classes is not None else list(range(int(y.max()) + 1))
    norm = np.array(["" if pd.isna(v) else str(v).strip().lower() for v in values], dtype=object)
    bad = ~np.isin(norm, SPLIT_NAMES)
    if bad.any():
        found = pd.Series(values[bad].to_numpy(dtype=object)).value_counts(dropna=False)
        shown = ", ".join(f"{'(missing)' if pd.isna(v) else repr(v)} ({k} rows)" for v, k in found.head(5).items())
        raise ValueError(f"split column {cfg.column!r} has value(s) {shown}{' ...' if len(found) > 5 else ''}; "
                         f"allowed: train, val, test (any case; val may be left out)")
    ids = {s: np.flatnonzero(norm == s) for s in SPLIT_NAMES}
    for s in ("train", "test"):
        if not len(ids[s]):
            raise ValueError(f"split column {cfg.column!r} has no {s!r} rows; it needs train and test rows")
    hint = "; or move rows between the predefined splits"
    if not len(ids["val"]):
        v = cfg.val / (1 - cfg.test)
        got, need = np.bincount(y[ids["train"]], minlength=len(names)), _carve_rows(v)
        if got.min() < need:
            k = int(got.argmin())
            raise ValueError(f"class {names[k]!r} has {got[k]} row(s) in the train split; carving val from train "
                             f"needs >= {need} of every class (or give val rows in split column {cfg.column!r}){hint}")
        train, val = train_test_split(ids["train"], test_size=v, stratify=y[ids["train"]], random_state=cfg.seed)
        ids["train"], ids["val"] = np.sort(train), np.sort(val)
    _check_split_counts(y, ids, names, hint)
    return ids


def _carve_rows(v: float) -> int:
    """The fewest rows of a class for a stratified carve of fraction ``v`` to leave each side
    :data:`MIN_ROWS_PER_SPLIT` even in the worst rounding (see :func:`min_class_rows`)."""
    n = 2 * MIN_ROWS_PER_SPLIT
    while min(math.floor(n * v), n - math.floor(n * v) - 1) < MIN_ROWS_PER_SPLIT:
        n += 1
    return n


def _identity(x):
    return x


class TextPipeline:
    """Tokenise, truncate and TF-IDF-weight text; vocabulary fit on train only.

    ``fit(texts)`` learns ``vectorizer_`` (word 1..``ngram_max``-grams, ``min_df``);
    ``tokenize(texts)`` returns token lists truncated to ``max_tokens``;
    ``transform(tokens, missing)`` returns a CSR matrix ``(n_samples, vocab_size)`` whose last two
    columns are the reserved ``MISSING`` and ``UNKNOWN`` ids; with a sentence ``embedder``
    (``text.encoder = "minilm"``), ``embed(tokens, missing)`` returns ``(n_samples, 384)`` frozen
    embeddings (zero rows = no text; ``embeddings.embed_tokens``).
    """

    def __init__(self, cfg: TextConfig, embedder: SentenceEmbedder | None = None):
        self.cfg, self.embedder = cfg, embedder
        base = CountVectorizer(strip_accents="unicode", lowercase=True,
                               token_pattern=r"(?u)\b\w+\b")
        self._pre, self._tok = base.build_preprocessor(), base.build_tokenizer()

    def tokenize(self, texts: list[str | None], max_tokens: int | None = None) -> tuple[list[list[str]], int]:
        """Token lists (``None`` -> ``[]``), truncated; returns ``(tokens, n_truncated)``."""
        k = max_tokens or self.cfg.max_tokens
        toks = [self._tok(self._pre(t)) if t else [] for t in texts]
        n_cut = sum(len(t) > k for t in toks)
        return [t[:k] for t in toks], n_cut

    def make_vectorizer(self, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
        """The unfitted TF-IDF vectorizer of this config over token lists (``vocabulary``: a fixed
        one, as when restoring a saved pipeline)."""
        return TfidfVectorizer(
            analyzer="word", tokenizer=_identity, preprocessor=_identity, token_pattern=None,
            lowercase=False, ngram_range=(1, self.cfg.ngram_max), min_df=self.cfg.min_df,
            max_features=self.cfg.max_features, sublinear_tf=self.cfg.sublinear_tf, dtype=np.float32,
            vocabulary=vocabulary)

    @property
    def embedding_dim(self) -> int:
        """Width of :meth:`embed`'s rows; 0 without an embedder (the bag encoder)."""
        return self.embedder.dim if self.embedder is not None else 0

    def embed(self, tokens: list[list[str]], missing: np.ndarray) -> np.ndarray | None:
        """``(n_samples, embedding_dim) float32`` sentence embeddings, or ``None`` without an embedder."""
        return None if self.embedder is None else embed_tokens(self.embedder, tokens, missing)

    def as_missing(self, x: sp.csr_matrix, emb: np.ndarray | None,
                   mask: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray | None]:
        """``x`` ``(n, vocab)`` and ``emb`` ``(n, dim)`` (or ``None``) with the rows in boolean
        ``mask`` given the missing-text representation — weight 1 at ``missing_id_``, a zero
        embedding — exactly what :meth:`transform` and :meth:`embed` give a row with no token,
        without re-vectorising the other rows."""
        keep = sp.diags((~mask).astype(np.float32)) @ x
        rows = np.flatnonzero(mask)
        pad = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, np.full(len(rows), self.missing_id_))),
                            shape=x.shape)
        out = (keep + pad).tocsr()
        out.eliminate_zeros()
        out.sort_indices()
        return out.astype(np.float32), None if emb is None else np.where(mask[:, None], np.float32(0), emb)

    def fit(self, tokens: list[list[str]]) -> "TextPipeline":
        self.vectorizer_ = self.make_vectorizer()
        try:
            self.vectorizer_.fit(tokens)
        except ValueError:  # no text at all, or no n-gram in min_df train rows: only the reserved ids
            self.vectorizer_, self.unigrams_, self.vocab_size_ = None, [], 2
            self.missing_id_, self.unknown_id_ = 0, 1
            return self
        self.unigrams_ = sorted(t for t in self.vectorizer_.vocabulary_ if " " not in t)
        self.vocab_size_ = len(self.vectorizer_.vocabulary_) + 2
        self.missing_id_, self.unknown_id_ = self.vocab_size_ - 2, self.vocab_size_ - 1
        return self

    def transform(self, tokens: list[list[str]], missing: np.ndarray) -> sp.csr_matrix:
        x = (self.vectorizer_.transform(tokens) if self.vectorizer_ is not None
             else sp.csr_matrix((len(tokens), 0), dtype=np.float32))
        empty = np.diff(x.indptr) == 0
        extra = np.zeros(len(tokens), dtype=np.int64)
        extra[empty & missing] = self.missing_id_
        extra[empty & ~missing] = self.unknown_id_
        rows = np.flatnonzero(empty)
        pad = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, extra[rows])),
                            shape=(len(tokens), self.vocab_size_))
        x = sp.hstack([x, sp.csr_matrix((len(tokens), 2), dtype=np.float32)]).tocsr() + pad
        x.sort_indices()
        return x.astype(np.float32)


class TabularPipeline:
    """Categorical codes with missing/unknown buckets and scaled numerics; fit on train only.

    ``fit(df)`` learns ``levels_`` (per column, level -> code), ``medians_``, ``means_``,
    ``stds_`` and ``dtypes_`` (per categorical column, its dtype in train; see :meth:`align`).
    ``transform(df)`` returns ``cat (n, n_cat) int64`` and
    ``num (n, 2 * n_num) float32`` (scaled values, then 0/1 missing flags). A numeric cell that
    is +-inf or beyond float32's range, as read or once scaled, counts as missing (imputed and
    flagged), so ``num`` is always finite; :meth:`count_nonfinite` counts such cells.
    """

    MISSING, UNKNOWN = 0, 1

    def __init__(self, cfg: TabularConfig, categorical: list[str], numeric: list[str]):
        self.cfg, self.categorical, self.numeric = cfg, list(categorical), list(numeric)

    def fit(self, df: pd.DataFrame) -> "TabularPipeline":
        self.dtypes_ = {c: str(df[c].dtype) for c in self.categorical}
        self.levels_ = {}
        for c in self.categorical:
            counts = df[c].dropna().astype(str).value_counts()
            kept = sorted(counts.index[counts >= self.cfg.min_count])
            self.levels_[c] = {v: i + 2 for i, v in enumerate(kept)}
        x = pd.DataFrame(self._raw_numeric(df)[0], columns=self.numeric)
        self.medians_ = x.median().fillna(0.0).to_numpy()
        filled = x.fillna(pd.Series(self.medians_, index=self.numeric))
        self.means_ = filled.mean().to_numpy()
        self.stds_ = np.where(filled.std(ddof=0).to_numpy() > 0, filled.std(ddof=0).to_numpy(), 1.0)
        return self

    @property
    def cardinalities_(self) -> list[int]:
        """Embedding table size per categorical column (levels + missing + unknown)."""
        return [len(self.levels_[c]) + 2 for c in self.categorical]

    def missing_values(self) -> tuple[np.ndarray, np.ndarray]:
        """The encoding of a row whose every tabular cell is missing: ``cat (n_cat,)`` all
        ``MISSING``; ``num (2 * n_num,)`` the scaled train medians, then flags of 1."""
        num = np.concatenate([(self.medians_ - self.means_) / self.stds_, np.ones(len(self.numeric))])
        return np.full(len(self.categorical), self.MISSING, dtype=np.int64), num.astype(np.float32)

    def align(self, df: pd.DataFrame) -> pd.DataFrame:
        """New rows' categorical columns in the number kind seen in train, so that a level is
        spelled as in ``levels_``: a file whose integer codes hold a blank cell is read as floats
        (``1077.0``), and codes read as integers meet train levels read as floats (``1077.0``). Codes
        read as strings (``data.reading`` reads categories as the file spells them) meet the train
        levels of a study that read them as numbers by being parsed first."""
        out = df.copy()
        for c, dtype in self.dtypes_.items():
            col, kind = out[c], pd.api.types.pandas_dtype(dtype).kind
            if kind in "iuf" and not pd.api.types.is_numeric_dtype(col):
                parsed = pd.to_numeric(col, errors="coerce")
                col = parsed if parsed.notna().sum() == col.notna().sum() else col
            if col.dtype.kind == "f" and kind != "f" and (col.dropna() == col.dropna().round()).all():
                out[c] = col.astype("Int64")
            elif col.dtype.kind in "iu" and kind == "f":
                out[c] = col.astype(float)
            else:
                out[c] = col
        return out

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        cat = np.zeros((len(df), len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            col = df[c]
            codes = col.astype(str).map(self.levels_[c]).fillna(self.UNKNOWN).to_numpy(np.int64)
            cat[:, j] = np.where(col.isna().to_numpy(), self.MISSING, codes)
        return cat, self._encode_numeric(df)[0]

    def _raw_numeric(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(n, n_num)`` float64 values with +-inf and beyond-float32 cells set to NaN, and their mask."""
        x = df[self.numeric].astype(float).to_numpy(copy=True)
        bad = np.isinf(x) | (np.abs(np.nan_to_num(x)) > FLOAT32_MAX)
        x[bad] = np.nan
        return x, bad

    def _encode_numeric(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``num (n, 2 * n_num) float32`` and, per column, how many cells became missing because
        they were non-finite or overflowed float32 as read or once scaled."""
        x, bad = self._raw_numeric(df)
        miss = np.isnan(x)
        with np.errstate(over="ignore", invalid="ignore"):  # a tiny train std can scale a value to inf
            z = (np.where(miss, self.medians_, x) - self.means_) / self.stds_
            over = ~(np.abs(z) <= FLOAT32_MAX)
        z = np.where(over, (self.medians_ - self.means_) / self.stds_, z)
        num = np.concatenate([z, miss | over], axis=1).astype(np.float32)
        return num, (bad | over).sum(axis=0)

    def count_nonfinite(self, df: pd.DataFrame) -> dict[str, int]:
        """``{numeric column: cells treated as missing for being +-inf or beyond float32}`` over
        the rows of ``df``; columns without such cells are left out."""
        return {c: int(k) for c, k in zip(self.numeric, self._encode_numeric(df)[1]) if k}


@dataclass
class SplitData:
    """One split's model inputs. ``tokens`` are kept so text perturbations can re-vectorise;
    ``row_ids`` are row numbers in the source file.

    Shapes: ``text (n, vocab)`` CSR; ``cat (n, n_cat)``; ``num (n, 2 * n_num)``; ``y (n,)``;
    ``emb (n, 384)`` frozen sentence embeddings (``text.encoder = "minilm"``; else ``None``).
    """

    row_ids: np.ndarray
    tokens: list[list[str]]
    text_missing: np.ndarray
    text: sp.csr_matrix
    cat: np.ndarray
    num: np.ndarray
    y: np.ndarray
    emb: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "SplitData":
        """The rows ``idx`` of this split as a new :class:`SplitData` (copies, never views)."""
        return SplitData(self.row_ids[idx], [self.tokens[i] for i in idx], self.text_missing[idx],
                         self.text[idx], self.cat[idx], self.num[idx], self.y[idx],
                         None if self.emb is None else self.emb[idx])


@dataclass
class Prepared:
    """Everything a study needs from the data: splits, fitted pipelines, label classes."""

    splits: dict[str, SplitData]
    text: TextPipeline
    tabular: TabularPipeline
    classes: list
    stats: dict
    modalities: tuple[str, ...]
    weakening: tuple = ()  # a Part 5 training-time weakening already applied to these splits


def _join_text(df: pd.DataFrame, cols: list[str]) -> tuple[list[str | None], np.ndarray]:
    parts = df[cols].astype("object").where(df[cols].notna(), None)
    texts = [". ".join(str(v) for v in row if v is not None and str(v).strip()) or None
             for row in parts.itertuples(index=False)]
    return texts, np.array([t is None for t in texts])


def prepare(cfg: Config, df: pd.DataFrame | None = None, split_index: int = 0) -> Prepared:
    """Load (unless ``df`` is given), split, fit both pipelines on train, encode all splits.

    ``split_index`` k > 0 draws the k-th further random split (seed ``split.seed + k``) of the same
    rows (a subsample stays the one of ``split.seed``); its warnings are not logged again.

    Besides sizes, ``stats`` holds ``nonfinite`` (``{numeric column: cells treated as missing for
    being +-inf or beyond float32}``, only columns with any), ``class_counts``
    (``{split: {str(class): rows}}``) and ``warnings`` (one-line strings from
    :func:`data_warnings`, also printed to stderr).

    Raises
    ------
    ValueError
        From :func:`validate_frame` / :func:`make_split` on bad data.
    """
    ds = cfg.dataset
    extra = (cfg.split.column,) if cfg.split.column else ()
    df = load_frame(ds, cfg.base_dir, extra) if df is None else validate_frame(df, ds, extra=extra)
    orig_ids = np.arange(len(df))
    if 0 < ds.subsample < len(df):
        df = df.sample(n=ds.subsample, random_state=cfg.split.seed).sort_index()
        orig_ids = df.index.to_numpy()
        df = df.reset_index(drop=True)
    classes = sorted(df[ds.label].unique().tolist())
    y = df[ds.label].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    ids = (predefined_split(df[cfg.split.column], y, cfg.split, classes) if cfg.split.column
           else make_split(y, replace(cfg.split, seed=cfg.split.seed + split_index), classes))
    texts, text_missing = _join_text(df, ds.text) if ds.text else ([None] * len(df), np.ones(len(df), bool))
    embedder = minilm_embedder() if cfg.text.encoder == "minilm" and ds.text else None
    textp, tabp = TextPipeline(cfg.text, embedder), TabularPipeline(cfg.tabular, ds.categorical, ds.numeric)
    tokens, n_cut = textp.tokenize(texts)
    textp.fit([tokens[i] for i in ids["train"]])
    tabp.fit(df.iloc[ids["train"]])
    splits = {}
    for name, rows in ids.items():
        toks = [tokens[i] for i in rows]
        cat, num = tabp.transform(df.iloc[rows])
        splits[name] = SplitData(orig_ids[rows], toks, text_missing[rows], textp.transform(toks, text_missing[rows]),
                                 cat, num, y[rows], textp.embed(toks, text_missing[rows]))
    modalities = tuple(m for m in MODALITIES
                       if (m == "text" and ds.text) or (m == "tabular" and (ds.categorical or ds.numeric)))
    stats = {"rows": len(df), "n_truncated": int(n_cut), "max_tokens": cfg.text.max_tokens,
             "text_missing": int(text_missing.sum()), "vocab_size": textp.vocab_size_,
             "cardinalities": dict(zip(ds.categorical, tabp.cardinalities_)),
             "split_sizes": {k: int(len(v)) for k, v in ids.items()},
             "positive_rate": float(np.mean(y == len(classes) - 1)),
             "nonfinite": tabp.count_nonfinite(df),
             "class_counts": {k: {str(c): int(n) for c, n in zip(classes, np.bincount(y[v], minlength=len(classes)))}
                              for k, v in ids.items()}}
    if embedder is not None:  # cost of the clean texts when first encoded (a warm cache reports the same)
        stats["text_encoder"] = {"encoder": cfg.text.encoder, "weights_sha256": embedder.weights_sha,
                                 "encode_seconds": round(embedder.cost([" ".join(t) for t in tokens if t]), 2),
                                 "encoded_now": embedder.encoded_}
    stats["warnings"] = data_warnings(stats, cfg, classes, text_vocabulary=textp.vectorizer_ is not None)
    for w in stats["warnings"] if split_index == 0 else []:
        log.warning(w)
    return Prepared(splits, textp, tabp, classes, stats, modalities)


def data_warnings(stats: dict, cfg: Config, classes: list, text_vocabulary: bool = True) -> list[str]:
    """One-line warnings about prepared data that runs but may mislead, in a fixed order.

    From ``stats["nonfinite"]`` (numeric cells treated as missing), ``stats["class_counts"]``
    (a class with fewer than :data:`WARN_ROWS_PER_CLASS` rows in val or test) and, if
    ``text_vocabulary`` is False while the spec has text columns, an empty text vocabulary.
    """
    out = [f"numeric column {c!r}: {k} value(s) that are +-inf or beyond float32's range are treated as missing"
           for c, k in stats["nonfinite"].items()]
    for split in ("val", "test"):
        counts = stats["class_counts"][split]
        out += [f"the {split} split has only {counts[str(c)]} row(s) of class {c!r} (< {WARN_ROWS_PER_CLASS}): "
                f"its F1 and ROC-AUC rest on a handful of rows and can swing widely; add rows or raise split.{split}"
                for c in classes if counts[str(c)] < WARN_ROWS_PER_CLASS]
    if cfg.dataset.text and not text_vocabulary:
        out.append(f"text columns {cfg.dataset.text}: no word n-gram occurs in at least text.min_df = "
                   f"{cfg.text.min_df} train rows; the text modality only tells whether a row has text")
    return out


def encode_rows(df: pd.DataFrame, ds: DatasetConfig, text: TextPipeline, tabular: TabularPipeline) -> SplitData:
    """New rows through fitted pipelines, as :func:`prepare` encodes a split: no text -> the
    missing-text id, a missing cell -> missing, an unseen category -> unknown. ``row_ids`` are
    ``0..n-1`` (input order) and ``y`` zeros (no label needed)."""
    texts, missing = _join_text(df, ds.text) if ds.text else ([None] * len(df), np.ones(len(df), bool))
    tokens, _ = text.tokenize(texts)
    cat, num = tabular.transform(tabular.align(df))
    n = len(df)
    return SplitData(np.arange(n), tokens, missing, text.transform(tokens, missing), cat, num, np.zeros(n, np.int64),
                     text.embed(tokens, missing))


def to_inputs(split: SplitData, idx: np.ndarray | slice | None = None) -> dict[str, tuple[torch.Tensor, ...]]:
    """Model inputs for rows ``idx`` (indices or a slice) of a split (all rows if ``None``).

    Returns ``{"tabular": (cat (B, n_cat) int64, num (B, 2*n_num) float32),
    "text": (ids (nnz,) int64, offsets (B,) int64, weights (nnz,) float32)}`` — the
    ``EmbeddingBag`` input format — or, with sentence embeddings, ``"text": (emb (B, 384)
    float32, missing (B,) bool)`` (``missing``: the row has no text; its ``emb`` row is zero).
    """
    idx = np.arange(len(split)) if idx is None else idx
    if split.emb is not None:
        e = split.emb[idx]
        text = (torch.from_numpy(e), torch.from_numpy(~e.any(axis=1)))
    else:
        t = split.text[idx]
        text = (torch.from_numpy(t.indices.astype(np.int64)), torch.from_numpy(t.indptr[:-1].astype(np.int64)),
                torch.from_numpy(t.data))
    tab = (torch.from_numpy(split.cat[idx]), torch.from_numpy(split.num[idx]))
    return {"tabular": tab, "text": text}
