"""The protocol as run specs: which models each part trains, on which split, with which seeds.

Split 0 (the main split) runs every part: Parts 1, 2 and 4 with ``study.seeds``, Part 3's
ModDrop models, Part 5's weakened models. Splits ``1..study.splits-1`` rerun the Parts 1-2 models
with ``study.split_seeds`` (and the references, ``study.comparators``), so that the headline
comparisons pool over random splits (``analysis.pooled``). Model identity comes from
``fusionstudy.registry``; nothing here parses a name.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fusionstudy.config import Config, StudyConfig, model_parts
from fusionstudy.data.prepare import Prepared, prepare
from fusionstudy.records import Training, run_key
from fusionstudy.registry import MODELS, model_spec

log = logging.getLogger(__name__)

SAVED_PARTS = ("part1", "part2", "part4")  # plainly trained models whose weights scoring can load


@dataclass(frozen=True)
class RunSpec:
    """One model to train.

    ``model`` is the name in the summary (``text_only``, ``gmu``, ``early_concat_moddrop``...);
    ``modalities`` and ``fusion`` (a key of ``FUSIONS``) say what it is; ``training`` how it is
    trained (plain, modality dropout, or a Part 5 weakening).
    """

    model: str
    fusion: str
    modalities: tuple[str, ...]
    seed: int
    part: str
    training: Training = field(default_factory=Training)
    split: int = 0

    @property
    def kind(self) -> str:
        return "unimodal" if len(self.modalities) == 1 else "fusion"

    def key(self, fingerprint: str) -> str:
        """Unique id of the run under a config fingerprint (used for resume; ``records.run_key``)."""
        return run_key(self.model, self.seed, fingerprint, self.split, self.training.tag)


def _spec(name: str, seed: int, part: str, available: tuple[str, ...], training: Training = Training(),
          suffix: str = "", split: int = 0) -> RunSpec:
    modalities, fusion = model_parts(name, available)
    return RunSpec(name + suffix, fusion, modalities, seed, part, training, split)


def n_splits(cfg: Config) -> int:
    """How many random splits the study draws: ``study.splits``, or 1 for a predefined split."""
    return 1 if cfg.split.column else cfg.study.splits


def resplit_plan(cfg: Config, modalities: tuple[str, ...], split: int) -> list[RunSpec]:
    """The runs of further split ``split`` (>= 1): the Parts 1-2 models of ``study.models`` the data
    can feed, one per ``study.split_seeds`` seed (the references and ensembles come on top)."""
    names = [n for n in usable_models(cfg.study.models, modalities) if MODELS[n].part in ("part1", "part2")]
    return [_spec(n, s, MODELS[n].part, modalities, split=split) for n in names for s in cfg.study.split_seeds]


def usable_models(names: list[str], modalities: tuple[str, ...]) -> list[str]:
    """The models of ``names`` the data can feed: unimodal models of a present modality, and
    fusions when there are two modalities (so the default list adapts to a one-modality dataset)."""
    specs = [model_spec(n) for n in names]  # an unknown name stops here, naming the allowed ones
    return [s.name for s in specs if (set(s.reads(modalities)) <= set(modalities) if s.kind == "unimodal"
                                      else len(modalities) > 1)]


def check_models(cfg: Config, modalities: tuple[str, ...]) -> None:
    """Refuse a model list the data cannot feed; accept the default list on one-modality data
    with a note (only the unimodal model runs, so the study cannot answer its question).

    Raises
    ------
    ValueError
        If ``study.models`` was set and names a model needing a modality the data lacks (naming it),
        or if no model at all can run.
    """
    dropped = [n for n in cfg.study.models if n not in usable_models([n], modalities)]
    if not usable_models(cfg.study.models, modalities):
        raise ValueError(f"study.models {cfg.study.models}: none can run on a dataset with modalities {list(modalities)}")
    if dropped and cfg.study.models != StudyConfig().models:
        raise ValueError(f"study.models lists {dropped}, which need{'s' if len(dropped) == 1 else ''} "
                         f"{'two modalities' if len(modalities) < 2 else 'a modality the data lacks'}; the dataset has "
                         f"{list(modalities)}")
    if dropped:
        log.info(f"note: the dataset has only {list(modalities)}: skipping {dropped}; with one modality the study "
              "cannot say whether a second one helps")


def plan(cfg: Config, modalities: tuple[str, ...] = ("tabular", "text")) -> dict[str, list[RunSpec]]:
    """Run specs per part: ``main`` (Parts 1, 2, 4), ``part3`` (ModDrop-trained models),
    ``part5`` (training-time weakening of each modality, ``imbalance_seeds`` per point) and
    ``remedies`` (Part 5's remedies, :func:`remedy_plan`). Models
    that need a modality the dataset lacks are left out; fusions need two modalities.
    """
    st = cfg.study
    main = [_spec(n, s, MODELS[n].part, modalities) for n in usable_models(st.models, modalities)
            for s in st.seeds]
    two = len(modalities) == 2
    moddrop = [_spec(n, s, "part3", modalities, Training.of(st.moddrop_p), "_moddrop")
               for n in st.moddrop_models for s in st.seeds] if two else []
    grid = part5_grid(cfg, modalities)
    # a unimodal model of the *other* modality is unaffected by the weakening: Parts 1-2 hold it
    # ordered point, seed, model: the models of one (point, seed) share one weakened copy of the data
    part5 = [_spec(n, s, "part5", modalities, Training.of(weaken=w)) for w in grid for s in st.imbalance_seeds
             for n in st.imbalance_models if two and MODELS[n].reads(modalities) != tuple(o for o in modalities if o != w[1])]
    return {"main": main, "part3": moddrop, "part5": part5, "remedies": remedy_plan(cfg, modalities)}


def parse_point(point: str) -> tuple:
    """A ``study.remedy_points`` entry as a Part 5 weakening tuple (``()`` for ``""``, clean), with
    the level typed as the sweeps type it (int for truncation), so tags match the plain runs'."""
    if not point:
        return ()
    kind, mod, level = point.split(":")
    return (kind, mod, int(float(level)) if kind == "truncate" else float(level))


def remedy_plan(cfg: Config, modalities: tuple[str, ...]) -> list[RunSpec]:
    """The Part 5 remedies: each of ``study.remedy_models`` trained under each of ``study.remedies``
    at each of ``study.remedy_points`` with ``study.imbalance_seeds``, named ``<model>_<remedy>``
    (compared with the plain model at the same point: Parts 1-2 for clean, Part 5 otherwise).
    They run with Part 5: nothing while ``study.imbalance_models`` is empty, and a weakened point
    only if Part 5's grid has it (the plain model trained there is the comparison). Nothing
    without two modalities."""
    st = cfg.study
    if len(modalities) != 2 or not st.imbalance_models:
        return []
    grid = {(k, m, lv) for k, m, levels in (("subsample", "text", st.subsample_levels), ("subsample", "tabular",
            st.subsample_levels), ("corrupt", "text", st.corrupt_levels), ("corrupt", "tabular", st.corrupt_levels),
            ("truncate", "text", st.truncate_levels)) for lv in levels}
    points = [w for w in map(parse_point, st.remedy_points) if not w or (w in grid and w[1] in modalities)]
    return [_spec(n, s, "part5", modalities, Training.of(weaken=w, remedy=r), f"_{r}")
            for w in points for s in st.imbalance_seeds
            for r in st.remedies for n in st.remedy_models]


def part5_grid(cfg: Config, modalities: tuple[str, ...]) -> list[tuple]:
    """Part 5's weakenings ``(kind, modality, level)``: subsample and corrupt each modality at
    ``study.subsample_levels`` / ``study.corrupt_levels``, truncate text at ``study.truncate_levels``."""
    st = cfg.study
    grid = [("subsample", m, f) for m in modalities for f in st.subsample_levels]
    grid += [("corrupt", m, r) for m in modalities for r in st.corrupt_levels]
    return grid + [("truncate", "text", k) for k in st.truncate_levels if "text" in modalities]


def check_data_size(cfg: Config, n_train: int) -> None:
    """The settings that depend on the data's size, checked against its ``n_train`` train rows
    before any training, so that no study runs to its end having trained nothing:
    ``study.marginal_k`` (the train rows a removed modality is marginalised over in every run's
    evaluation) must not exceed them.

    Raises
    ------
    ValueError
        Naming the setting, its value, the train rows and the value to set.
    """
    k = cfg.study.marginal_k
    if k > n_train:
        raise ValueError(f"study.marginal_k = {k} (the removal background size) exceeds the {n_train} train rows; "
                         f"set study.marginal_k to at most {n_train} (e.g. --set study.marginal_k={n_train}) or add rows")


def staged_path(stage: Path, split: int) -> Path:
    """Where :func:`staged_prepare` keeps split ``split``'s prepared data under ``stage``."""
    return Path(stage) / f"split{split}.pkl"


def staged_prepare(cfg: Config, data: pd.DataFrame | None, split: int, stage: Path | None = None) -> Prepared:
    """``prepare(cfg, data, split_index=split)``, kept as a pickle under ``stage`` (a private
    temporary folder of this study's process; ``None``: not kept): a later call for the same split
    loads it (~1 s) instead of preparing again (~7 s on the default data), and a worker process
    reads the same file for its runs of that split. Only files this process wrote are loaded."""
    path = None if stage is None else staged_path(stage, split)
    if path is not None and path.is_file():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    prep = prepare(cfg, data, split_index=split)
    if path is not None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(prep, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    return prep
