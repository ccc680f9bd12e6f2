"""Study configuration: typed sections loaded from TOML with hard rules.

A study is configured by a profile file (``configs/full.toml`` or ``configs/quick.toml``), then a
dataset file (``configs/clothing.toml``; it may override any profile key), then
``--set section.key=value`` overrides. As in nanoGPT, unknown keys are errors and an override must keep the default's type.
The resolved config is saved with every result record.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CONFIG_DIR = ROOT / "configs"


@dataclass
class DatasetConfig:
    """Which columns form each modality. ``source`` is ``"bundled:womens_clothing"`` or a path
    to a CSV/Parquet file (relative paths are resolved against the config file's folder).

    ``encoding`` and ``delimiter`` apply to CSV/TSV files only. ``encoding = ""`` reads UTF-8 (a
    byte-order mark is skipped) and on a decoding error names the file and asks for this key
    (e.g. ``"latin-1"``, ``"cp1252"``); nothing is guessed. ``delimiter = ""`` uses a tab for
    ``.tsv`` and sniffs ``.csv`` files (see ``data.sniff_delimiter``); a TOML ``"\\t"`` is a tab."""

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


@dataclass
class SplitConfig:
    """Stratified train/val/test split; fractions of all rows."""

    seed: int = 0
    val: float = 0.15
    test: float = 0.15


@dataclass
class TextConfig:
    """Text pipeline: scikit-learn tokenizer, word n-grams, TF-IDF weights, truncation."""

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


@dataclass
class ModelConfig:
    """Encoder, fusion and head sizes (representation size ``d`` per modality)."""

    text_dim: int = 32
    tab_dim: int = 64
    tab_hidden: int = 64
    head_hidden: int = 64
    dropout: float = 0.3
    token_dropout: float = 0.0
    lmf_rank: int = 4
    tfn_dim: int = 16
    modality_dropout: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation: AdamW, early stopping on validation loss with best-weights restore.

    ``schedule`` is ``"constant"`` or ``"linear"`` (learning rate decays linearly to 0 over
    ``max_epochs``, as in fastText)."""

    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 4
    patience: int = 2
    schedule: str = "linear"
    threads: int = 2
    workers: int = 2  # runs trained in parallel processes; each gets threads // workers torch threads


@dataclass
class StudyConfig:
    """What the protocol runs: models, seeds, bootstrap resamples, ablation and imbalance grids."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    models: list[str] = field(default_factory=lambda: [
        "text_only", "tabular_only", "early_concat", "late_logit_avg",
        "gmu", "attention", "late_learned", "tfn", "lmf"])
    scaling_dims: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256])
    # Part 3: inference-time ablations on every trained model; ModDrop-trained variants
    noise_levels: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 1.0])
    drop_levels: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75])
    permutations: int = 5
    moddrop_models: list[str] = field(default_factory=lambda: ["early_concat", "gmu"])
    moddrop_p: float = 0.3
    # Part 5: training-time weakening of one modality (clean level reused from Parts 1-2)
    imbalance_models: list[str] = field(default_factory=lambda: [
        "text_only", "tabular_only", "early_concat", "late_logit_avg", "gmu"])
    imbalance_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    subsample_levels: list[float] = field(default_factory=lambda: [0.5, 0.2, 0.05])
    corrupt_levels: list[float] = field(default_factory=lambda: [0.3, 0.6, 1.0])
    truncate_levels: list[int] = field(default_factory=lambda: [32, 8, 2])
    references: bool = True
    bootstrap: int = 1000


@dataclass
class Config:
    """The whole resolved configuration of one study."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    text: TextConfig = field(default_factory=TextConfig)
    tabular: TabularConfig = field(default_factory=TabularConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    profile: str = "full"
    base_dir: str = "."

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable dict of every section."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Short hash of everything that changes what a trained model is (not the seed list)."""
        d = self.to_dict()
        d.pop("study")
        d.pop("base_dir")
        d.pop("profile")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def _check_type(where: str, default, value):
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(
            isinstance(v, type(default[0])) for v in value) if default else isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"config key {where!r} must be {type(default).__name__} like the default "
                         f"{default!r}, got {value!r}")
    return value


def apply(cfg: Config, tree: dict, origin: str = "config") -> Config:
    """Overlay a nested dict (as read from TOML) onto ``cfg`` in place.

    Raises
    ------
    ValueError
        On an unknown section or key (naming it and the file) or a value of the wrong type.
    """
    sections = {f.name for f in dataclasses.fields(cfg)}
    for sec, values in tree.items():
        if sec not in sections or not isinstance(values, dict):
            raise ValueError(f"{origin}: unknown config section {sec!r}; "
                             f"known: {sorted(s for s in sections if s not in ('profile', 'base_dir'))}")
        target = getattr(cfg, sec)
        known = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"{origin}: unknown config key {sec}.{key!r}; known: {sorted(known)}")
            setattr(target, key, _check_type(f"{sec}.{key}", getattr(target, key), value))
    return cfg


def parse_override(text: str) -> dict:
    """Turn ``"train.lr=0.001"`` into ``{"train": {"lr": 0.001}}`` (value parsed as TOML).

    Raises
    ------
    ValueError
        If the text is not ``section.key=value``.
    """
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ValueError(f"override {text!r} must look like section.key=value, e.g. train.lr=0.001")
    path, raw = text.split("=", 1)
    sec, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare strings need no quotes on the command line
    return {sec: {key: value}}


def load_config(dataset: str | Path = CONFIG_DIR / "clothing.toml", profile: str = "full",
                overrides: list[str] | None = None) -> Config:
    """Resolve profile file, then dataset file, then overrides into one :class:`Config` (later wins).

    Raises
    ------
    FileNotFoundError
        If the dataset or profile file does not exist.
    ValueError
        On unknown keys or wrong types (see :func:`apply`).
    """
    dataset = Path(dataset)
    prof_path = CONFIG_DIR / f"{profile}.toml"
    for p in (dataset, prof_path):
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} not found"
                                    + (f"; profiles: {sorted(x.stem for x in CONFIG_DIR.glob('*.toml'))}"
                                       if p == prof_path else ""))
    cfg = Config(profile=profile, base_dir=str(dataset.resolve().parent))
    with open(prof_path, "rb") as fh:
        prof = tomllib.load(fh)
    if "dataset" in prof or "split" in prof:
        raise ValueError(f"{prof_path} describes a dataset, not a profile; pass it as --data, and use a "
                         f"profile without [dataset]/[split] (e.g. full, quick)")
    # the profile sets the defaults of a run; the dataset file may then override any of them
    apply(cfg, prof, origin=str(prof_path))
    with open(dataset, "rb") as fh:
        apply(cfg, tomllib.load(fh), origin=str(dataset))
    for o in overrides or []:
        apply(cfg, parse_override(o), origin=f"--set {o}")
    return cfg
