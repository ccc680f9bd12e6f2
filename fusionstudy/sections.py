"""The data sections of a study's configuration: which columns form each modality, how rows are split,
and the text and tabular pipelines. Leaf dataclasses with defaults only; :mod:`fusionstudy.config`
loads, overrides and validates them (and re-exports them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# The cell spellings read as missing (``dataset.na_values``), matched exactly in CSV/TSV cells and in the
# string cells of any table; every other cell of a text or categorical column is kept as the string it is.
NA_VALUES = ("", "NA", "N/A", "#N/A", "NaN", "nan", "NULL", "null", "None")

@dataclass
class DatasetConfig:
    """Which columns form each modality. ``source`` is a bundled table (``"bundled:womens_clothing"``,
    ``"bundled:faa_strikes"``, ``"bundled:lending_club"``: ``data.bundled``), a path to a CSV/Parquet
    file, or a Multimodal-Toolkit folder (see :func:`read_column_info`); relative paths are resolved
    against the config file's folder.

    ``encoding`` and ``delimiter`` apply to CSV/TSV files only. ``encoding = ""`` reads UTF-8 (a
    byte-order mark is skipped) and on a decoding error names the file and asks for this key
    (e.g. ``"latin-1"``, ``"cp1252"``); nothing is guessed. ``delimiter = ""`` uses a tab for
    ``.tsv`` and sniffs ``.csv`` files (see ``tables.sniff_delimiter``); a TOML ``"\\t"`` is a tab.

    ``na_values`` are the cell spellings that mean missing (default :data:`NA_VALUES`; ``[]`` = none,
    not even a blank cell). Text and categorical columns are read as the strings in the file
    (``007`` and ``7`` are two levels); numeric columns stored as strings are parsed."""

    name: str = "clothing"
    source: str = "bundled:womens_clothing"
    text: list[str] = field(default_factory=lambda: ["Title", "Review Text"])
    categorical: list[str] = field(default_factory=lambda: [
        "Division Name", "Department Name", "Class Name", "Clothing ID"])
    numeric: list[str] = field(default_factory=lambda: [
        "Rating", "Age", "Positive Feedback Count"])
    label: str = "Recommended IND"
    subsample: int = 0  # > 0: use a random subset of this many rows (smoke tests, quick looks)
    encoding: str = ""  # CSV/TSV text encoding; "" = UTF-8
    delimiter: str = ""  # CSV/TSV field separator (one character); "" = sniffed
    na_values: list[str] = field(default_factory=lambda: list(NA_VALUES))  # cells read as missing


@dataclass
class SplitConfig:
    """Stratified train/val/test split; fractions of all rows.

    ``column`` names a predefined split instead: a column whose values are ``train``, ``val`` and
    ``test`` (any case, surrounding spaces ignored). ``val`` may be absent: then it is carved
    from the train rows, stratified, with ``seed``, in the share a random split gives it
    (``val / (1 - test)`` of them). A Multimodal-Toolkit folder sets it to
    :data:`FOLDER_SPLIT_COLUMN` (its files are its split)."""

    seed: int = 0
    val: float = 0.15
    test: float = 0.15
    column: str = ""  # a predefined split column; "" = a random stratified split


@dataclass
class TextConfig:
    """Text pipeline: scikit-learn tokenizer, word n-grams, TF-IDF weights, truncation.

    ``encoder`` is what the model reads of the tokens: ``"bag"`` (TF-IDF-weighted n-gram
    embeddings trained from scratch, ``models.text.TextEncoder``) or ``"minilm"`` (frozen 384-d
    all-MiniLM-L6-v2 embeddings of the tokens joined by spaces, cached on disk, read by a trained
    MLP, ``models.text.SentenceHead``; needs the ``minilm`` extra). The TF-IDF matrix is
    built either way: the classical references use it."""

    encoder: str = "bag"
    ngram_max: int = 2
    min_df: int = 2
    max_features: int = 60000
    max_tokens: int = 160
    sublinear_tf: bool = True


@dataclass
class TabularConfig:
    """Tabular pipeline: categories seen fewer than ``min_count`` times in train are 'unknown'."""

    min_count: int = 5
    max_emb_dim: int = 16
