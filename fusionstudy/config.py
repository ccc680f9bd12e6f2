"""Study configuration: typed sections loaded from TOML with hard rules.

A study is configured by a profile (a bundled name such as ``full`` or ``quick``, :mod:`fusionstudy.locations`), then a
dataset spec (a bundled name such as ``clothing``, a TOML file or a folder; it may override any profile key), then
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

from fusionstudy.data.mmtk import FOLDER_SPLIT_COLUMN, folder_spec
from fusionstudy.locations import PROFILES, resolve_profile, resolve_spec
from fusionstudy.registry import FUSION_NAMES, MODALITIES, REMEDY_NAMES, TRAINABLE_NAMES, UNIMODAL_NAMES, model_spec
from fusionstudy.sections import NA_VALUES, DatasetConfig, SplitConfig, TabularConfig, TextConfig  # re-exported

SCHEDULES = ("constant", "linear")
# A Multimodal-Toolkit folder (train.csv, val.csv, test.csv, column_info.json): the keys its
# column_info.json may hold, and the column the loader adds to name the file each row came from.
TEXT_OPTIMIZERS = ("adagrad", "adamw")
EXECUTORS = ("local", "ray")  # where runs are trained: this machine's processes or a Ray cluster (``study.executors``)
# "bag": n-gram embeddings trained from scratch; "minilm": frozen all-MiniLM-L6-v2 sentence
# embeddings (the optional extra ``fusionstudy[minilm]``) + a trained MLP (``data.embeddings``).
TEXT_ENCODERS = ("bag", "minilm")
# Bumped when the evaluation protocol changes meaning, so stored runs of the old protocol are not
# resumed into a new study (2: removal = marginalisation, classical fusion references).
PROTOCOL_VERSION = 3  # 3: removal conditional on the kept modality beside the interventional one


def model_parts(name: str, available: tuple[str, ...] = MODALITIES) -> tuple[tuple[str, ...], str]:
    """The modalities and fusion of a trainable model (``study.models``), from the registry
    (:mod:`fusionstudy.registry`): a unimodal model is one encoder + the ``early_concat`` head, a
    fusion fuses every modality in ``available``.

    Raises
    ------
    ValueError
        If the name is not a trainable model, or names a modality the dataset lacks.
    """
    spec = model_spec(name)
    if spec.name not in TRAINABLE_NAMES:
        raise ValueError(f"unknown model {name!r}; use one of {list(TRAINABLE_NAMES)}")
    missing = [m for m in spec.reads(available) if m not in available]
    if missing:
        raise ValueError(f"model {name!r} needs modality {missing[0]!r}; dataset has {list(available)}")
    return spec.reads(available), spec.fusion


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

    ``schedule`` is ``"constant"`` or ``"linear"`` (every learning rate decays linearly to 0 over
    ``max_epochs``, as in fastText).

    ``text_optimizer`` trains the text encoder's n-gram embedding table: ``"adagrad"`` gives it
    sparse gradients and ``optim.RowAdagrad`` at ``text_lr`` (only the rows a batch touches move);
    ``"adamw"`` keeps it dense in the one AdamW at ``lr``. ``lr`` and ``weight_decay`` apply to
    every other parameter. ``patience = 1`` stops at the first epoch whose validation log loss does
    not improve. Both were chosen on validation: docs/text_encoder.md.

    ``ogm_alpha > 0`` trains a two-modality model with OGM-GE (Peng et al., 2022, "Balanced
    Multimodal Learning via On-the-fly Gradient Modulation", CVPR; ``training.modulation``): the
    dominant modality's encoder gradients are scaled by ``1 - tanh(ogm_alpha * rho)`` and every
    encoder gradient gets Gaussian noise of its own spread. ``0`` (default) is plain training and
    leaves the config fingerprint as it was before the key existed.

    The Part 5 remedies (``study.remedies``, ``training.remedies``) use ``remedy_ogm_alpha`` (OGM-GE's
    strength in its own regime) and G-Blend's ``gblend_holdout`` (the fraction of *train* rows held
    out to measure each head's overfitting and generalisation) and ``gblend_epochs`` (epochs of
    that measurement). At their defaults they leave the fingerprint as it was."""

    lr: float = 3e-3
    weight_decay: float = 1e-4
    text_optimizer: str = "adagrad"
    text_lr: float = 0.2
    batch_size: int = 128
    max_epochs: int = 4
    patience: int = 1
    schedule: str = "linear"
    threads: int = 2
    workers: int = 2  # runs trained in parallel processes; each gets threads // workers torch threads
    executor: str = "local"  # "local" (``workers`` processes) or "ray" (the [ray] section); not in the fingerprint
    ogm_alpha: float = 0.0  # OGM-GE modulation strength; 0 = off (the paper uses 0.1-0.8)
    remedy_ogm_alpha: float = 0.5  # OGM-GE's strength in the ogm_ge regime (mid of the paper's 0.1-0.8)
    gblend_holdout: float = 0.2
    gblend_epochs: int = 1
    # train the seeds of one model as one stacked model (training.batched; local executor, plain
    # regimes); each member equals its seed trained alone within 1e-4, so not in the fingerprint.
    # Off by default: on 2 CPU cores it measured no faster (training.batched, bench --stack)
    batched: bool = False


@dataclass
class StudyConfig:
    """What the protocol runs: models, seeds, bootstrap resamples, ablation and imbalance grids."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    # Repeated splits: the unit of evidence. Split 0 runs every part with ``seeds``; splits
    # 1..splits-1 (seed ``split.seed + k``) rerun Parts 1-2 and the references with
    # ``split_seeds``. Headline intervals pool all of them (analysis.pooled). A predefined split
    # (``split.column``) is one split whatever this says.
    splits: int = 10
    split_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    models: list[str] = field(default_factory=lambda: [
        "text_only", "tabular_only", "early_concat", "late_logit_avg",
        "gmu", "attention", "late_learned", "tfn", "lmf"])
    scaling_dims: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256])
    # Part 3: inference-time ablations on every trained model; ModDrop-trained variants
    noise_levels: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 1.0])
    drop_levels: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75])
    permutations: int = 5
    marginal_k: int = 50  # train rows a removed modality is marginalised over (loop.predict_marginal)
    # train rows the conditional removal searches for the marginal_k nearest neighbours in the kept
    # modality's representation (loop.predict_conditional); capped at the train rows
    conditional_pool: int = 2000
    # EMAP (Hessel & Lee, 2020) of every fused run on split 0: test rows in the subsample (cost
    # grows as its square; 0 = off), see training.interaction
    emap_rows: int = 500
    moddrop_models: list[str] = field(default_factory=lambda: ["early_concat", "gmu"])
    moddrop_p: float = 0.3
    # Part 5: training-time weakening of one modality (clean level reused from Parts 1-2)
    imbalance_models: list[str] = field(default_factory=lambda: [
        "text_only", "tabular_only", "early_concat", "late_logit_avg", "gmu"])
    imbalance_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    subsample_levels: list[float] = field(default_factory=lambda: [0.5, 0.2, 0.05])
    corrupt_levels: list[float] = field(default_factory=lambda: [0.3, 0.6, 1.0])
    truncate_levels: list[int] = field(default_factory=lambda: [32, 8, 2])
    # Part 5 remedies (training regimes of training.remedies) for remedy_models at remedy_points
    # ("" = clean; else a Part 5 weakening "kind:modality:level"), with imbalance_seeds
    remedies: list[str] = field(default_factory=lambda: ["ogm_ge", "gblend", "mla"])
    remedy_models: list[str] = field(default_factory=lambda: ["early_concat"])
    remedy_points: list[str] = field(default_factory=lambda: ["", "subsample:text:0.05", "corrupt:text:1.0"])
    references: bool = True
    forecast: bool = True  # the before-fusion forecast (study.forecast, analysis.forecast): forecasts.jsonl
    # Part 3's inference-time perturbations beyond clean/remove/missing (drop, noise, typos,
    # masking, shuffles, the text-missing subset); false leaves them out of every run's evaluation
    robustness: bool = True
    bootstrap: int = 2000  # resamples of every two-level interval (Monte-Carlo error of a bound ~0.0001)
    # weights of Parts 1, 2, 4 and the fitted preprocessing under results/<study>/models/ (``scoring``)
    save_models: bool = True


@dataclass
class ReportConfig:
    """Decision rules of the report, fixed before any result is seen and stored with the results.

    ``margin``: a paired difference in test ROC-AUC is "helps" when its 95% interval lies above
    ``+margin``, "hurts" when below ``-margin``, "equivalent" when inside ``±margin``, else
    "inconclusive" (0.005 = the
    size of a ROC-AUC standard error on ~3,500 test rows, see docs/stability.md).
    ``primary``: the fused model of the primary contrast (``analysis.pooled``), the only comparison
    with a bold verdict. ``history``: when the rule was fixed relative to the results (the study also
    records the commit of the rule's code, ``study.json`` ``rules``).
    ``dominance_gap``: one unimodal model "clearly dominates" the other when ahead by more than this.
    ``collapse_tolerance``: a removal that moves ROC-AUC by less than this (or the seed std, if
    larger) leaves the model unchanged. ``drop_level``: the per-sample drop fraction shown in
    the robustness tables. ``proxy_auc``: a single column whose validation ROC-AUC reaches this
    is flagged as a near-proxy of the label.
    """

    margin: float = 0.005
    # the primary contrast: this fused model against every unimodal candidate, pooled over splits
    primary: str = "early_concat"
    # when the rule was fixed relative to results the team had seen (stored with every record)
    history: str = ""  # e.g. "margin chosen on <date>, before/after <which> results had been seen"
    dominance_gap: float = 0.01
    collapse_tolerance: float = 0.001
    drop_level: float = 0.5
    proxy_auc: float = 0.95


@dataclass
class RayConfig:
    """The Ray executor (``train.executor = "ray"``, ``executors.RayPool``). ``address``: ``""`` starts a
    local Ray with ``num_cpus`` CPUs (0 = every core), ``"auto"`` / ``"ray://host:port"`` joins a cluster.
    A run reserves ``cpus_per_run`` CPUs (= its torch threads); a failed run is retried ``max_retries`` times."""

    address: str = ""
    num_cpus: int = 0
    cpus_per_run: float = 1.0
    max_retries: int = 2


@dataclass
class TrackingConfig:
    """MLflow tracking (``study.tracking``), off while ``mlflow_uri`` is empty; ``experiment`` "" = the folder's name."""

    mlflow_uri: str = ""
    experiment: str = ""


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
    report: ReportConfig = field(default_factory=ReportConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    profile: str = "full"
    base_dir: str = "."

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable dict of every section."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Short hash of everything that changes what a trained model is or how it is evaluated
        (not the seed lists, the report's rules, nor where runs execute or are tracked)."""
        d = self.to_dict()
        d["protocol"] = {"version": PROTOCOL_VERSION, "marginal_k": self.study.marginal_k,
                         "conditional_pool": self.study.conditional_pool}
        for how_to_read in ("encoding", "delimiter"):  # read options: the same table either way
            d["dataset"].pop(how_to_read)
        if self.dataset.na_values == list(NA_VALUES):  # the default markers: hashed as before the key existed
            d["dataset"].pop("na_values")
        if not self.split.column:  # the random split: hashed as before the key existed
            d["split"].pop("column")
        if self.text.encoder == "bag":  # the default encoder: hashed as before the key existed
            d["text"].pop("encoder")
        d["train"].pop("executor")  # where a run executes does not change the model: hashed as before
        for key, default in (("ogm_alpha", 0.0), ("remedy_ogm_alpha", 0.5), ("gblend_holdout", 0.2),
                             ("gblend_epochs", 1)):
            if getattr(self.train, key) == default:  # plain training: hashed as before the key existed
                d["train"].pop(key)
        d["train"].pop("batched")  # nor whether its seeds train stacked (equal within 1e-4, tests/test_batched.py)
        for what in ("study", "report", "ray", "tracking", "base_dir", "profile"):  # not what a model is
            d.pop(what)
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
        quoting = (" (on a command line, quote the whole override so the shell keeps the inner quotes: "
                   f"--set '{where}=[\"a\", \"b\"]')" if isinstance(value, str) and value.startswith("[") else "")
        raise ValueError(f"config key {where} must be {type(default).__name__} (like its current value "
                         f"{default!r}), got {value!r}{quoting}")
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
                raise ValueError(f"{origin}: unknown config key {sec}.{key}; known: {sorted(known)}")
            setattr(target, key, _check_type(f"{sec}.{key}", getattr(target, key), value))
    return cfg


def read_toml(path: Path) -> dict:
    """The TOML file ``path`` as a dict.

    Raises
    ------
    ValueError
        If it is not valid TOML, naming the file and the parser's line and column.
    """
    with open(path, "rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e})") from None


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


def load_config(dataset: str | Path = "clothing", profile: str = "full",
                overrides: list[str] | None = None) -> Config:
    """Resolve profile file, then dataset file, then overrides into one :class:`Config` (later wins).

    ``dataset`` is a TOML file or a Multimodal-Toolkit folder (:func:`folder_spec`). A dataset
    whose ``source`` is such a folder uses the folder's files as its split unless ``split.column``
    names another column.

    Raises
    ------
    FileNotFoundError
        If the dataset or profile file does not exist.
    ValueError
        On unknown keys or wrong types (see :func:`apply`).
    """
    prof_path = resolve_profile(profile)
    if Path(dataset).is_file() and Path(dataset).suffix != ".toml":
        raise ValueError(f"--data {dataset}: expected a TOML spec (or a dataset folder), got a "
                         f"{Path(dataset).suffix or 'plain'} file; describe the table in a TOML file whose "
                         "[dataset] source points to it (see README)")
    dataset = resolve_spec(dataset)
    profile = str(profile) if prof_path.parent == PROFILES else prof_path.stem
    cfg = Config(profile=profile, base_dir=str(dataset.resolve().parent))
    prof = read_toml(prof_path)
    if "dataset" in prof or "split" in prof:
        raise ValueError(f"{prof_path} describes a dataset, not a profile; pass it as --data, and use a "
                         f"profile without [dataset]/[split] (e.g. full, quick)")
    # the profile sets the defaults of a run; the dataset file may then override any of them
    apply(cfg, prof, origin=str(prof_path))
    if dataset.is_dir():
        apply(cfg, folder_spec(dataset), origin=str(dataset / "column_info.json"))
    else:
        spec = read_toml(dataset)
        ds = spec.get("dataset", {})
        if "source" in ds:  # the user's own table: a column list it leaves out is empty, not the default data's
            cfg.dataset.text, cfg.dataset.categorical, cfg.dataset.numeric = [], [], []
        apply(cfg, spec, origin=str(dataset))
    for o in overrides or []:
        apply(cfg, parse_override(o), origin=f"--set {o}")
    source = Path(cfg.base_dir) / cfg.dataset.source
    if not cfg.split.column and not cfg.dataset.source.startswith("bundled:") and source.is_dir():
        cfg.split.column = FOLDER_SPLIT_COLUMN  # a folder's files are its split
    return validate(cfg)


def _require(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise ValueError(f"config key {key} {rule}; got {value!r}")


def _names(key: str, values: list[str], allowed: tuple[str, ...], empty_ok: bool = False) -> None:
    _require(empty_ok or bool(values), key, "must not be empty", values)
    bad = [v for v in values if v not in allowed]
    _require(not bad, key, f"has unknown name(s) {bad}; allowed: {list(allowed)}", values)
    _require(len(set(values)) == len(values), key, "lists a name twice", values)


def _in_range(key: str, values, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
    for v in values if isinstance(values, list) else [values]:
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        _require(ok, key, f"must lie in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}", v)


def _check_remedies(st: StudyConfig) -> None:
    """``study.remedies`` / ``remedy_models`` name known regimes and fusions; each of
    ``remedy_points`` is ``""`` (clean) or a Part 5 weakening ``kind:modality:level`` in range."""
    _names("study.remedies", st.remedies, REMEDY_NAMES, empty_ok=True)
    _names("study.remedy_models", st.remedy_models, FUSION_NAMES, empty_ok=True)
    _require(len(set(st.remedy_points)) == len(st.remedy_points), "study.remedy_points", "lists a point twice",
             st.remedy_points)
    for point in filter(None, st.remedy_points):
        kind, mod, level = (point.split(":") + ["", "", ""])[:3]
        ok = mod in MODALITIES and kind in ("subsample", "corrupt", "truncate") and level.replace(".", "", 1).isdigit()
        ok = ok and (0 < float(level) < 1 if kind == "subsample" else 0 < float(level) <= 1 if kind == "corrupt"
                     else mod == "text" and float(level).is_integer() and float(level) >= 1)
        _require(ok, "study.remedy_points", "entries must be \"\" (clean) or kind:modality:level, e.g. "
             "\"subsample:text:0.05\", \"corrupt:text:1.0\", \"truncate:text:8\"", point)


def validate(cfg: Config) -> Config:
    """Check every value of a resolved config before any data work; return it unchanged.

    Raises
    ------
    ValueError
        Naming the key, the rule and the allowed values: unknown model/fusion names, an unknown
        ``train.schedule``, a level out of range, an empty list where one is required.
    """
    st, tr, m = cfg.study, cfg.train, cfg.model
    _names("study.models", st.models, UNIMODAL_NAMES + FUSION_NAMES)
    _names("report.primary", [cfg.report.primary], FUSION_NAMES)
    _names("study.moddrop_models", st.moddrop_models, FUSION_NAMES, empty_ok=True)
    _names("study.imbalance_models", st.imbalance_models, UNIMODAL_NAMES + FUSION_NAMES, empty_ok=True)
    _require(bool(st.seeds), "study.seeds", "must not be empty", st.seeds)
    _require(1 <= st.splits <= 1000, "study.splits", "must be in [1, 1000]", st.splits)
    _require(bool(st.split_seeds) or st.splits == 1, "study.split_seeds", "must not be empty while study.splits > 1",
             st.split_seeds)
    _require(bool(st.imbalance_seeds) or not st.imbalance_models, "study.imbalance_seeds",
             "must not be empty while study.imbalance_models is set", st.imbalance_seeds)
    _require(tr.schedule in SCHEDULES, "train.schedule", f"must be one of {list(SCHEDULES)}", tr.schedule)
    _require(tr.executor in EXECUTORS, "train.executor", f"must be one of {list(EXECUTORS)}", tr.executor)
    for key, hi in (("num_cpus", 10**6), ("cpus_per_run", 10**6), ("max_retries", 100)):
        _in_range(f"ray.{key}", getattr(cfg.ray, key), 0, hi, lo_open=key == "cpus_per_run")
    _require(cfg.text.encoder in TEXT_ENCODERS, "text.encoder", f"must be one of {list(TEXT_ENCODERS)}",
             cfg.text.encoder)
    _require(tr.text_optimizer in TEXT_OPTIMIZERS, "train.text_optimizer", f"must be one of {list(TEXT_OPTIMIZERS)}",
             tr.text_optimizer)
    _in_range("dataset.subsample", cfg.dataset.subsample, 0, 10**12)
    _in_range("study.subsample_levels", st.subsample_levels, 0, 1, lo_open=True, hi_open=True)
    _in_range("study.corrupt_levels", st.corrupt_levels, 0, 1, lo_open=True)
    _in_range("study.noise_levels", st.noise_levels, 0, 1, lo_open=True)
    _in_range("study.drop_levels", st.drop_levels, 0, 1, lo_open=True, hi_open=True)
    _in_range("study.truncate_levels", st.truncate_levels, 1, 10**9)
    _in_range("study.scaling_dims", st.scaling_dims, 1, 10**6)
    _in_range("study.moddrop_p", st.moddrop_p, 0, 1, lo_open=True, hi_open=True)
    _in_range("study.permutations", st.permutations, 1, 1000)
    _in_range("study.marginal_k", st.marginal_k, 1, 10**5)
    _in_range("study.conditional_pool", st.conditional_pool, st.marginal_k, 10**7)
    _in_range("study.bootstrap", st.bootstrap, 50, 10**6)
    _in_range("split.val", cfg.split.val, 0, 1, lo_open=True, hi_open=True)
    _in_range("split.test", cfg.split.test, 0, 1, lo_open=True, hi_open=True)
    _require(cfg.split.val + cfg.split.test < 1, "split.val + split.test", "must be below 1",
             cfg.split.val + cfg.split.test)
    for key in ("text_dim", "tab_dim", "tab_hidden", "head_hidden", "lmf_rank", "tfn_dim"):
        _in_range(f"model.{key}", getattr(m, key), 1, 10**6)
    for key in ("dropout", "token_dropout", "modality_dropout"):
        _in_range(f"model.{key}", getattr(m, key), 0, 1, hi_open=True)
    _in_range("train.lr", tr.lr, 0, 10, lo_open=True)
    _in_range("train.text_lr", tr.text_lr, 0, 100, lo_open=True)
    _in_range("train.weight_decay", tr.weight_decay, 0, 10)
    _in_range("train.ogm_alpha", tr.ogm_alpha, 0, 100)
    _in_range("train.remedy_ogm_alpha", tr.remedy_ogm_alpha, 0, 100, lo_open=True)
    _in_range("train.gblend_holdout", tr.gblend_holdout, 0, 1, lo_open=True, hi_open=True)
    _in_range("train.gblend_epochs", tr.gblend_epochs, 1, 100)
    _in_range("study.emap_rows", st.emap_rows, 0, 2000)
    _check_remedies(st)
    for key in ("batch_size", "max_epochs", "patience", "threads", "workers"):
        _in_range(f"train.{key}", getattr(tr, key), 1, 10**6)
    for key in ("ngram_max", "min_df", "max_features", "max_tokens"):
        _in_range(f"text.{key}", getattr(cfg.text, key), 1, 10**9)
    _in_range("tabular.min_count", cfg.tabular.min_count, 1, 10**9)
    _in_range("tabular.max_emb_dim", cfg.tabular.max_emb_dim, 1, 10**6)
    rp = cfg.report
    _in_range("report.margin", rp.margin, 0, 1)
    _in_range("report.dominance_gap", rp.dominance_gap, 0, 1)
    _in_range("report.collapse_tolerance", rp.collapse_tolerance, 0, 1)
    _in_range("report.proxy_auc", rp.proxy_auc, 0.5, 1)
    _require(rp.drop_level in st.drop_levels, "report.drop_level", f"must be one of study.drop_levels "
             f"{st.drop_levels} (the level shown in the robustness tables)", rp.drop_level)
    _require(bool(cfg.dataset.label), "dataset.label", "must name the label column", cfg.dataset.label)
    ds = cfg.dataset
    _require(cfg.split.column not in [*ds.text, *ds.categorical, *ds.numeric, ds.label], "split.column",
             "must not be the label or a feature column", cfg.split.column)
    return cfg
