"""The on-disk schema of a study: typed records and the append-only store. Torch-free.

A results folder ``results/<study>/`` holds:

* ``runs.jsonl`` — one :class:`RunRecord` per trained (or fitted, or combined) model; ``evals.jsonl`` — one
  :class:`EvalRecord` per model x seed x perturbation x severity x subset;
* ``predictions.jsonl`` — one :class:`PredictionRecord` (val/test probabilities) per run;
* ``failures.jsonl`` — one :class:`FailureRecord` per run that raised (a rerun retries it); ``split.json``
  (row ids, labels, data statistics), ``study.json`` (wall seconds, cores), ``forecasts.jsonl``.

What a run *is* lives in explicit fields — ``kind``, ``modalities``, ``fusion``, ``training`` — never in its
name. A record is appended (and fsynced) the moment its run finishes; a line torn by an interrupted write is
skipped on read and never swallows the next record. Older files are migrated on read (:func:`_migrate_run`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from fusionstudy.locations import writable_folder
from fusionstudy.registry import MODELS, REMEDY_NAMES

log = logging.getLogger(__name__)

KINDS = ("unimodal", "fusion", "reference", "ensemble")


def run_key(model: str, seed: int, fingerprint: str, split: int = 0, weaken_tag: str = "") -> str:
    """The unique id of a run (resume skips stored keys): ``model|[split=k|]seed=s|[weaken=...|]cfg=fp``.
    Split 0 (the study's main split, every part) keeps the key of a one-split study."""
    sp = f"split={split}|" if split else ""
    w = f"|weaken={weaken_tag}" if weaken_tag else ""
    return f"{model}|{sp}seed={seed}{w}|cfg={fingerprint}"


LOCK, HOLDER = ".fusionstudy.lock", ".fusionstudy.holder.json"  # in a results folder while a process writes it
_HELD: dict[Path, int] = {}  # results folders this process holds, with nesting depth (a study, then its report)
REGIMES = ("plain", "moddrop", "weakened", "remedy")


@dataclass(frozen=True)
class Training:
    """How a model was trained: ``regime`` ``plain`` / ``moddrop`` (modality dropout with
    probability ``moddrop_p``) / ``weakened`` (Part 5: ``weaken = (kind, modality, level)`` with
    kind ``subsample`` / ``corrupt`` / ``truncate``) / ``remedy`` (a Part 5 remedy: ``remedy`` one
    of ``registry.REMEDY_NAMES``, on clean data or at the Part 5 point ``weaken``)."""

    regime: str = "plain"
    moddrop_p: float = 0.0
    weaken: tuple = ()
    remedy: str = ""

    def __post_init__(self):
        if self.regime not in REGIMES:
            raise ValueError(f"training regime {self.regime!r} not in {REGIMES}")
        if (self.regime == "remedy") != (self.remedy in REMEDY_NAMES):
            raise ValueError(f"training regime {self.regime!r} with remedy {self.remedy!r}: a remedy run names one "
                             f"of {list(REMEDY_NAMES)}, other runs none")

    @property
    def tag(self) -> str:
        """``""`` unless weakened; else ``"kind:modality:level"`` (e.g. ``subsample:text:0.2``)."""
        return ":".join(map(str, self.weaken))

    @classmethod
    def of(cls, moddrop_p: float = 0.0, weaken=(), remedy: str = "") -> "Training":
        """The training regime of a run spec."""
        if remedy:
            return cls("remedy", 0.0, tuple(weaken), remedy)
        if weaken:
            return cls("weakened", moddrop_p, tuple(weaken))
        return cls("moddrop", moddrop_p) if moddrop_p else cls()


@dataclass
class RunRecord:
    """One trained model (or fitted reference, or post-hoc ensemble) and everything measured on it.

    ``metrics[split][name]`` for split ``val``/``test``; ``params`` trainable parameters per
    component (``enc_<modality>``, ``fusion``, ``head``, ``total``; NaN for trees);
    ``train_seconds`` wall seconds of fitting; ``samples_per_s`` training samples per wall
    second; ``curves`` per-epoch lists (see ``loop.FitResult``); ``diagnostics`` fusion weight
    summaries; ``components`` the run keys an ensemble combines. ``split`` is the index of the
    random train/val/test draw it was trained and scored on (0 = the main split, where every part
    runs; ``1..K-1`` the resplits of Parts 1-2 and the references; records older than repeated
    splits load as split 0). ``interaction`` holds a fused run's EMAP inputs
    (``study.interaction.emap_record``: the subsample's test row positions, the model's and its
    EMAP projection's log-odds there); empty otherwise.
    """

    run_key: str
    study: str
    model: str
    kind: str
    modalities: list[str]
    fusion: str
    part: str
    seed: int
    config_fp: str
    config: dict
    git: str
    time: str
    metrics: dict
    params: dict
    training: Training = field(default_factory=Training)
    train_seconds: float = 0.0
    samples_per_s: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    diverged: bool = False
    curves: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    estimator: dict = field(default_factory=dict)
    components: list[str] = field(default_factory=list)
    split: int = 0
    interaction: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"record {self.run_key}: kind {self.kind!r} not in {KINDS}")
        if isinstance(self.training, dict):
            self.training = Training(**{**self.training, "weaken": tuple(self.training.get("weaken", ()))})


@dataclass
class EvalRecord:
    """Metrics of one trained model on one (perturbed) copy of the test split.

    ``perturbation`` names the transform (``clean``, ``remove``, ``drop``, a noise family,
    ``shuffle``), ``modality`` the modality it acts on (``none`` for clean), ``severity`` its
    level, ``subset`` the rows (``test`` or e.g. ``text_missing``), ``n`` their number.
    """

    run_key: str
    model: str
    seed: int
    part: str
    config_fp: str
    perturbation: str
    modality: str
    severity: float
    subset: str
    n: int
    metrics: dict
    training: Training = field(default_factory=Training)

    def __post_init__(self):
        if isinstance(self.training, dict):
            self.training = Training(**{**self.training, "weaken": tuple(self.training.get("weaken", ()))})


@dataclass
class PredictionRecord:
    """Val/test predictions of a run: positive-class probabilities ``(n,)`` for binary labels,
    else ``(n, n_classes)`` rows, rounded to 6 decimals."""

    run_key: str
    val: list
    test: list
    perturbed: dict = field(default_factory=dict)  # e.g. "remove:text" -> test predictions with text removed

    @classmethod
    def of(cls, run_key: str, probas: dict[str, np.ndarray], perturbed: dict[str, np.ndarray] | None = None
           ) -> "PredictionRecord":
        """From ``{"val": (n, n_classes), "test": ...}`` probabilities (binary: class 1 only) and
        optional perturbed test probabilities of the same shape."""
        stored = lambda p: np.round(positive_or_all(p), 6).tolist()  # noqa: E731
        return cls(run_key, stored(probas["val"]), stored(probas["test"]),
                   {k: stored(p) for k, p in (perturbed or {}).items()})

    def proba(self, split: str, n_classes: int) -> np.ndarray:
        """``(n, n_classes)`` probabilities of ``split`` (``val``, ``test`` or a key of
        ``perturbed``), renormalised after the rounding."""
        a = np.asarray(self.perturbed[split] if split in self.perturbed else getattr(self, split), dtype=float)
        a = np.column_stack([1 - a, a]) if n_classes == 2 and a.ndim == 1 else a
        return a / a.sum(axis=1, keepdims=True)


@dataclass
class FailureRecord:
    """A run that raised (after the executor's retries): its key, what it was, the error's type and
    message, and how many times it was attempted. Not a completed run: a rerun trains it again."""

    run_key: str
    model: str
    seed: int
    part: str
    config_fp: str
    error_type: str
    message: str
    attempts: int
    executor: str
    time: str


def positive_or_all(proba: np.ndarray) -> np.ndarray:
    """The stored form of ``(n, n_classes)`` probabilities: ``(n,)`` of class 1 when binary."""
    return proba[:, 1] if proba.shape[1] == 2 else proba


def to_json(record) -> str:
    """One JSON line for a record (dataclasses as dicts, tuples as lists)."""
    return json.dumps(dataclasses.asdict(record))


@dataclass
class ForecastRecord:
    """One before-fusion forecast input (:mod:`fusionstudy.study.forecast`): the validation
    probabilities of one classical unimodal model per modality, fit on the train rows of split
    ``split`` (weakened as Part 5's point ``weaken`` = ``"kind:modality:level"``, or clean ``""``).

    ``proba`` maps modality -> ``(n_val, n_classes)`` probabilities as nested lists (rounded to 6
    decimals); ``y`` the validation class indices; ``models`` what was fit (hyper-parameters);
    ``seconds`` the fit wall time; ``git``/``created`` the code and UTC time that made it (the
    forecast's commit precedes any later result it is scored against)."""

    key: str
    config_fp: str
    split: int
    weaken: str
    y: list
    proba: dict
    models: dict
    seconds: float
    git: str
    created: str


def _kind_of(d: dict) -> str:
    """The kind of an old record: its registry entry's (a ModDrop model's name carries a suffix)."""
    spec = MODELS.get(d["model"])
    if spec is not None:
        return spec.kind
    return "unimodal" if len(d.get("modalities") or []) == 1 else "fusion"


def _migrate_run(d: dict) -> dict:
    """Records written before ``kind``/``training`` existed: derive them once, here."""
    d = dict(d)
    if "kind" not in d or d["kind"] == "train":
        d["kind"] = _kind_of(d)
    if "training" not in d:
        d["training"] = dataclasses.asdict(Training.of(d.pop("moddrop", 0.0) or 0.0, d.pop("weaken", None) or ()))
    for old in ("moddrop", "weaken"):
        d.pop(old, None)
    return d


def _migrate_eval(d: dict) -> dict:
    d = dict(d)
    d.pop("kind", None)
    if "training" not in d:
        d["training"] = dataclasses.asdict(Training.of(0.0, d.pop("weaken", None) or ()))
    d.pop("weaken", None)
    return d


def _fields(cls, d: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _ends_torn(path: Path) -> bool:
    """True if ``path`` is non-empty and its last byte is not a newline."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def read_jsonl(path: Path, key: str = "run_key") -> list[dict]:
    """Every record of ``path`` (a JSON object with field ``key``); any other line is reported and skipped."""
    out = []
    for i, line in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
        try:
            d = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:  # a run cut off mid-write; keep every complete one
            d = False
        if isinstance(d, dict) and key in d:
            out.append(d)
        elif d is not None:
            log.warning(f"{path}:{i} is not a record (a JSON object with {key!r}: cut off mid-write, or edited?); skipped")
    return out


class RunStore:
    """Append-only JSON-lines store of run records, their predictions and evaluation records.

    Parameters
    ----------
    folder : the study's results folder (created if absent).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runs_path = self.folder / "runs.jsonl"
        self.preds_path = self.folder / "predictions.jsonl"
        self.evals_path = self.folder / "evals.jsonl"
        self.failures_path = self.folder / "failures.jsonl"
        self.forecasts_path = self.folder / "forecasts.jsonl"

    def records(self) -> list[RunRecord]:
        """Every stored run record, oldest first. A run key stored twice (two studies writing one
        folder at once, before folders were locked) counts once, as its last record, with a warning."""
        rows = read_jsonl(self.runs_path)
        last = {d["run_key"]: i for i, d in enumerate(rows)}
        if len(last) < len(rows):
            dup = next(d["run_key"] for i, d in enumerate(rows) if last[d["run_key"]] != i)
            log.warning(f"{self.runs_path}: {len(rows) - len(last)} duplicated run record(s) (e.g. {dup!r}), written "
                        "by two studies at once; kept the last record of each")
            rows = [d for i, d in enumerate(rows) if last[d["run_key"]] == i]
        return [RunRecord(**_fields(RunRecord, _migrate_run(d))) for d in rows]

    def done_keys(self) -> set[str]:
        """Run keys already stored (a rerun skips them: resume)."""
        return {d["run_key"] for d in read_jsonl(self.runs_path)}

    def predictions(self) -> dict[str, PredictionRecord]:
        """Prediction records by run key (the last one wins)."""
        return {d["run_key"]: PredictionRecord(**_fields(PredictionRecord, d)) for d in read_jsonl(self.preds_path)}

    def evals(self) -> list[EvalRecord]:
        """Every stored evaluation record, oldest first."""
        return [EvalRecord(**_fields(EvalRecord, _migrate_eval(d))) for d in read_jsonl(self.evals_path)]

    def failures(self) -> list[FailureRecord]:
        """Every stored failure, oldest first (a key that later completed is in :meth:`done_keys` too)."""
        return [FailureRecord(**_fields(FailureRecord, d)) for d in read_jsonl(self.failures_path)]

    def append(self, record: RunRecord, preds: PredictionRecord | None = None,
               evals: list[EvalRecord] | None = None) -> None:
        """Write predictions and evaluations first and the run record last: a stored run record
        means the run is complete (resume skips it). Each file is flushed and fsynced."""
        for path, objs in ((self.preds_path, [preds] if preds else []), (self.evals_path, evals or []),
                           (self.runs_path, [record])):
            _append_lines(path, objs)

    def forecasts(self) -> dict[str, ForecastRecord]:
        """Before-fusion forecast records by key (the last one wins)."""
        return {d["key"]: ForecastRecord(**_fields(ForecastRecord, d)) for d in read_jsonl(self.forecasts_path, "key")}

    def append_forecast(self, record: ForecastRecord) -> None:
        """Store one forecast record (flushed and fsynced)."""
        _append_lines(self.forecasts_path, [record])

    def fail(self, failure: FailureRecord) -> None:
        """Store a failed run in ``failures.jsonl`` (flushed and fsynced, like :meth:`append`)."""
        _append_lines(self.failures_path, [failure])


def _append_lines(path: Path, objs: list) -> None:
    """Append one JSON line per record to ``path``, then flush and fsync."""
    if objs:
        torn = _ends_torn(path)  # a line cut off by an interrupted write must not swallow the next
        with open(path, "a") as fh:
            fh.write("\n" * torn + "".join(to_json(o) + "\n" for o in objs))
            fh.flush()
            os.fsync(fh.fileno())


@contextmanager
def writer_lock(folder: str | Path, what: str, hint: str) -> Iterator[Path]:
    """Hold the one-writer lock of results folder ``folder`` (created if absent) while ``what``
    (e.g. ``"fusionstudy run"``) writes it; a ``filelock.FileLock`` on ``<folder>/.fusionstudy.lock``,
    with the holder (pid, host, ``what``, since when) in ``.fusionstudy.holder.json``. Taking it again
    inside the holding process is free (a study, then its report). Yields the resolved folder.

    Raises
    ------
    ValueError
        At once, if another process holds the lock (naming the holder) or the folder cannot be
        written (naming it, the reason and ``hint``).
    """
    folder = Path(folder).resolve()
    if folder in _HELD:
        _HELD[folder] += 1
        try:
            yield folder
        finally:
            _HELD[folder] -= 1
        return
    lock = FileLock(writable_folder(folder, hint) / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(f"{folder}: another process is writing this results folder ({_holder(folder)}); wait for it "
                         "to end, or work on a copy of the folder") from None
    try:
        _HELD[folder] = 1
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        (folder / HOLDER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                                                 "since": since}))
        yield folder
    finally:
        _HELD.pop(folder, None)
        (folder / HOLDER).unlink(missing_ok=True)
        lock.release()


def _holder(folder: Path) -> str:
    try:
        h = json.loads((folder / HOLDER).read_text())
        return f"`{h['what']}`, process {h['pid']} on {h['host']}, since {h['since']}"
    except (OSError, ValueError, KeyError):  # the holder is between taking the lock and saying so
        return "holder not yet recorded"


@dataclass
class StudyResults:
    """Everything a report needs from one results folder (records of the current config only).

    ``runs`` are the runs of the main split (split 0: every part, with the predictions the
    within-split intervals resample); ``resplits`` the runs of the further random splits
    (``study.splits``; Parts 1-2 and the references), pooled by :mod:`fusionstudy.analysis.pooled`;
    ``splits`` the row ids and seed of every split (``splits.json``; empty for older studies).
    """

    folder: Path
    runs: list[RunRecord]
    evals: list[EvalRecord]
    preds: dict[str, PredictionRecord]
    split: dict
    meta: dict
    scaling: list[dict] | None = None  # param_scaling.json: fusion-layer parameters per representation size
    resplits: list[RunRecord] = field(default_factory=list)
    splits: dict = field(default_factory=dict)
    forecasts: list[ForecastRecord] = field(default_factory=list)  # forecasts.jsonl: before-fusion forecast inputs
    cache: dict = field(default_factory=dict, repr=False)  # memo of derived arrays (bootstrap replicates)

    @property
    def config(self) -> dict:
        """The resolved config the runs were trained with (as stored in the records)."""
        return self.runs[0].config if self.runs else {}

    @property
    def name(self) -> str:
        return self.meta["study"]


_SHARED: list[dict] = []  # while shared_loads() runs: resolved folder -> (_stamp of it, StudyResults)
READ = ("study.json", "split.json", "splits.json", "param_scaling.json", "runs.jsonl", "evals.jsonl",
        "predictions.jsonl", "forecasts.jsonl")  # what load_study reads; _stamp: their mtimes and sizes
_stamp = lambda folder: [(f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None
                         for f in map(Path(folder).joinpath, READ)]


@contextmanager
def shared_loads() -> Iterator:
    """In the block (nested ones share it) :func:`load_study` reads a folder once while its files keep size and
    mtime: later calls share its StudyResults and ``cache``. Yields ``adopt(res)``: use ``res`` (read elsewhere)."""
    _SHARED.append(_SHARED[-1] if _SHARED else {})
    try:
        yield lambda res: _SHARED[-1].__setitem__(Path(res.folder).resolve(), (_stamp(res.folder), res))
    finally:
        _SHARED.pop()


def load_study(folder: Path) -> StudyResults:
    """Read a results folder: runs of the config fingerprint in ``study.json``, their evaluations
    (an evaluation stored twice for one run — an interrupted run redone — counts once),
    predictions, ``split.json``, ``study.json`` and ``param_scaling.json`` if present.

    Raises
    ------
    FileNotFoundError
        If the folder lacks ``runs.jsonl``, ``split.json`` or ``study.json`` (run the study first).
    """
    folder = Path(folder)
    for name in ("runs.jsonl", "split.json", "study.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found; run `fusionstudy run` (or `fusionstudy.run_study`) to create it")
    if _SHARED and _SHARED[-1].get(folder.resolve(), (None,))[0] == _stamp(folder):  # read already, unchanged since
        return dataclasses.replace(_SHARED[-1][folder.resolve()][1], folder=folder)  # the same cache dict
    meta = json.loads((folder / "study.json").read_text())
    store = RunStore(folder)
    every = [r for r in store.records() if r.config_fp == meta["config_fp"]]
    runs, resplits = [r for r in every if r.split == 0], [r for r in every if r.split != 0]
    keys = {r.run_key for r in runs}
    evals = {(e.run_key, e.perturbation, e.modality, e.severity, e.subset): e for e in store.evals() if e.run_key in keys}
    scaling, splits = folder / "param_scaling.json", folder / "splits.json"
    res = StudyResults(folder, runs, list(evals.values()), store.predictions(),
                       json.loads((folder / "split.json").read_text()), meta,
                       json.loads(scaling.read_text()) if scaling.is_file() else None, resplits,
                       json.loads(splits.read_text()) if splits.is_file() else {},
                       [f for f in store.forecasts().values() if f.config_fp == meta["config_fp"]])
    _SHARED and _SHARED[-1].update({folder.resolve(): (_stamp(folder), res)})  # a stale memo is replaced
    return res
