"""The protocol: the study's parts as a list of run specs, run through one resumable executor.

Results folder ``results/<study>/``:

* ``runs.jsonl`` — one self-describing record per trained model (config, seed, git hash,
  metrics on val and test, parameter counts per component, timings, per-epoch curves);
* ``predictions.jsonl`` — the val/test probabilities of each run, keyed like ``runs.jsonl``;
* ``failures.jsonl`` — the runs that raised (after the executor's retries); a rerun retries them;
* ``split.json`` — row ids and labels of the fixed split plus data statistics;
* ``study.json`` — wall seconds per part, core count, config fingerprint;
* ``models/<fingerprint>/`` — the fitted preprocessing and the weights of the plainly trained
  models of Parts 1, 2 and 4 (``study.saving``; git-ignored), unless ``study.save_models = false``;
* ``summary.csv``, ``experiments.md`` sections and ``figures/`` — rendered by ``report.write``.

A record is appended (and flushed) the moment its run finishes, so an interrupted study loses at
most the run in progress, and a rerun skips every run whose key is already stored. Runs execute
in local processes or, with ``train.executor = "ray"``, as Ray tasks (``study.executors``); either
way this process alone writes the records (and logs them to MLflow when asked, ``study.tracking``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import resource
import subprocess
import time
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from fusionstudy.config import Config, StudyConfig, check_data_size, model_parts
from fusionstudy.data import perturb
from fusionstudy.data.prepare import Prepared, SplitData, prepare
from fusionstudy.locations import default_results
from fusionstudy.metrics import best_f1_threshold, classification_metrics, f1_at_threshold
from fusionstudy.models.fusion import parameter_scaling
from fusionstudy.records import EvalRecord, FailureRecord, PredictionRecord, RunRecord, RunStore, Training
from fusionstudy.registry import MODELS, model_spec
from fusionstudy.study.executors import RayPool, describe_failure, threads_per_run
from fusionstudy.study.references import REFERENCES, SEEDED, fit_references, late_average, single_column_auc
from fusionstudy.study.saving import models_dir, save_preprocessing, save_weights
from fusionstudy.study.tracking import store_for
from fusionstudy.training.evaluation import eval_suite, evaluate, fusion_diagnostics
from fusionstudy.training.loop import background_rows, fit, make_model, predict

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

    @property
    def kind(self) -> str:
        return "unimodal" if len(self.modalities) == 1 else "fusion"

    def key(self, fingerprint: str) -> str:
        """Unique id of the run under a config fingerprint (used for resume)."""
        w = "|weaken=" + self.training.tag if self.training.weaken else ""
        return f"{self.model}|seed={self.seed}{w}|cfg={fingerprint}"


def _spec(name: str, seed: int, part: str, available: tuple[str, ...], training: Training = Training(),
          suffix: str = "") -> RunSpec:
    modalities, fusion = model_parts(name, available)
    return RunSpec(name + suffix, fusion, modalities, seed, part, training)


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
    """Run specs per part: ``main`` (Parts 1, 2, 4), ``part3`` (ModDrop-trained models) and
    ``part5`` (training-time weakening of each modality, ``imbalance_seeds`` per point). Models
    that need a modality the dataset lacks are left out; fusions need two modalities.
    """
    st = cfg.study
    main = [_spec(n, s, MODELS[n].part, modalities) for n in usable_models(st.models, modalities)
            for s in st.seeds]
    two = len(modalities) == 2
    moddrop = [_spec(n, s, "part3", modalities, Training.of(st.moddrop_p), "_moddrop")
               for n in st.moddrop_models for s in st.seeds] if two else []
    grid = [("subsample", m, f) for m in modalities for f in st.subsample_levels]
    grid += [("corrupt", m, r) for m in modalities for r in st.corrupt_levels]
    grid += [("truncate", "text", k) for k in st.truncate_levels if "text" in modalities]
    # a unimodal model of the *other* modality is unaffected by the weakening: Parts 1-2 hold it
    # ordered point, seed, model: the models of one (point, seed) share one weakened copy of the data
    part5 = [_spec(n, s, "part5", modalities, Training.of(weaken=w)) for w in grid for s in st.imbalance_seeds
             for n in st.imbalance_models if two and MODELS[n].reads(modalities) != tuple(o for o in modalities if o != w[1])]
    return {"main": main, "part3": moddrop, "part5": part5}


def git_hash() -> str:
    """``git rev-parse HEAD`` of the toolkit (with ``+dirty`` for local changes), or ``unknown``."""
    try:
        here = Path(__file__).resolve().parent  # an installed package outside a checkout gives "unknown"
        h = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                           text=True, check=True).stdout.strip()
        # results/ and the reports are what the study writes, not code: they do not make the code "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":!/results",
                                ":!/experiments.md", ":!/postmortem.md"],
                               cwd=here, capture_output=True, text=True).stdout.strip()
        return h + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_record(cfg: Config, key: str, model: str, kind: str, modalities, fusion: str, part: str, seed: int,
                probas: dict[str, np.ndarray], splits: dict[str, SplitData], **fields) -> RunRecord:
    """The one record factory: identity, config, provenance, and val/test metrics of ``probas``."""
    metrics = {s: classification_metrics(splits[s].y, p) for s, p in probas.items()}
    if probas["val"].shape[1] == 2:  # F1 at the threshold that maximises F1 on val (never chosen on test)
        thr = best_f1_threshold(splits["val"].y, probas["val"][:, 1])
        for s, p in probas.items():
            metrics[s].update(f1_val_threshold=f1_at_threshold(splits[s].y, p[:, 1], thr), val_threshold=thr)
    return RunRecord(run_key=key, study=cfg.dataset.name, model=model, kind=kind, modalities=sorted(modalities),
                     fusion=fusion, part=part, seed=seed, config_fp=cfg.fingerprint(), config=cfg.to_dict(),
                     git=_WORKER.get("git") or git_hash(),
                     time=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), metrics=metrics, **fields)


def weakened(prep: Prepared, weaken: tuple, seed: int) -> Prepared:
    """``prep`` with a Part 5 weakening ``(kind, modality, level)`` applied: ``subsample`` keeps the
    modality on a fraction of *train* rows (removed on the rest), ``corrupt`` corrupts it on
    *train* rows at the given rate; ``truncate`` cuts text to k tokens on *every* split. Val/test
    stay clean otherwise."""
    if not weaken:
        return prep
    kind, modality, level = weaken
    splits = dict(prep.splits)
    if kind == "subsample":
        splits["train"] = perturb.drop(splits["train"], prep, modality, 1.0 - level, seed)
    elif kind == "corrupt":
        splits["train"] = perturb.corrupt(splits["train"], prep, modality, level, seed)
    elif kind == "truncate":
        splits = {k: perturb.truncate(v, prep, int(level)) for k, v in splits.items()}
    else:
        raise ValueError(f"unknown weakening {kind!r}; use subsample, corrupt or truncate")
    return replace(prep, splits=splits, weakening=tuple(weaken))


def train_run(spec: RunSpec, prep: Prepared, cfg: Config, suite: list | None = None, progress=None,
              weak: Prepared | None = None, save_dir: Path | None = None
              ) -> tuple[RunRecord, PredictionRecord, list[EvalRecord]]:
    """Build, fit and evaluate one model; return ``(record, predictions, eval records)``.

    ``prep`` is the clean data; ``weak`` the same weakened by ``spec.training.weaken`` (built
    here, with the run's seed, when not given). A removed modality is marginalised over
    ``study.marginal_k`` train rows drawn with the run's seed, from the data the test split
    looks like (clean train rows; truncated ones for a truncation run). With ``save_dir``, the
    weights of a plainly trained model of :data:`SAVED_PARTS` are saved there
    (``saving.save_weights``) — the weights its stored predictions come from.
    """
    fp = cfg.fingerprint()
    key, tr = spec.key(fp), spec.training
    p = (weak or weakened(prep, tr.weaken, spec.seed)) if tr.weaken else prep
    model = make_model(spec.modalities, spec.fusion, p, cfg, spec.seed)
    batch_fn = (lambda b, rng: perturb.modality_dropout(b, p, tr.moddrop_p, rng)) if tr.moddrop_p else None
    res = fit(model, p.splits["train"], p.splits["val"], cfg.train, spec.seed, batch_fn=batch_fn, progress=progress)
    probas = {s: predict(model, p.splits[s]) for s in ("val", "test")}
    if save_dir is not None and tr.regime == "plain" and spec.part in SAVED_PARTS:
        save_weights(model, save_dir, spec.model, spec.seed, key)
    rec = make_record(cfg, key, spec.model, spec.kind, spec.modalities, spec.fusion, spec.part, spec.seed, probas,
                      p.splits, training=tr, params=model.param_counts(),
                      diagnostics=fusion_diagnostics(model, p.splits["test"]), **asdict(res))
    if suite is None or tr.weaken:
        suite = eval_suite(p, cfg, full=False)
    truncated = tr.weaken and tr.weaken[0] == "truncate"
    background = background_rows((p if truncated else prep).splits["train"], cfg.study.marginal_k, spec.seed)
    evals, kept = evaluate(model, suite, spec, key, fp, background)
    return rec, PredictionRecord.of(key, probas, kept), evals


def late_ensemble(prep: Prepared, cfg: Config, store: RunStore, seed: int) -> tuple[RunRecord, PredictionRecord] | None:
    """Post-hoc late fusion: the mean of the seed's unimodal models' logits (log-probabilities,
    then softmax; ``references.late_average``), as the classical ``ref_late_avg`` does.

    No extra training; its parameter count and train seconds are the models' sums. Returns
    ``None`` unless a plainly trained unimodal run of every modality is stored for this seed.
    """
    fp, preds = cfg.fingerprint(), store.predictions()
    recs = {r.modalities[0]: r for r in store.records() if r.config_fp == fp and r.seed == seed
            and r.kind == "unimodal" and r.training.regime == "plain" and r.run_key in preds}
    if len(prep.modalities) < 2 or any(m not in recs for m in prep.modalities):
        return None
    comps = [recs[m] for m in prep.modalities]
    key = f"late_ensemble|seed={seed}|cfg={fp}"
    n_cls = len(prep.classes)
    probas = {s: late_average([preds[r.run_key].proba(s, n_cls) for r in comps]) for s in ("val", "test")}
    rec = make_record(cfg, key, "late_ensemble", "ensemble", prep.modalities, "late_ensemble", "part2", seed, probas,
                      prep.splits, params={"total": sum(r.params["total"] for r in comps)},
                      train_seconds=sum(r.train_seconds for r in comps), components=[r.run_key for r in comps])
    return rec, PredictionRecord.of(key, probas)


def reference_runs(prep: Prepared, cfg: Config, skip: set[str] = frozenset()) -> list[tuple[RunRecord, PredictionRecord]]:
    """Classical references on the same split (``study.references``): the unimodal ones and the
    classical early, late and stacked fusions the data's modalities allow; each one record. The
    seed-dependent ones (``references.SEEDED``) are fit once per study seed, the others once."""
    fp, out = cfg.fingerprint(), []
    for i, seed in enumerate(cfg.study.seeds):
        names = [n for n in REFERENCES if (i == 0 or n in SEEDED) and f"{n}|seed={seed}|cfg={fp}" not in skip]
        # one thread: the fits are mostly single-threaded lbfgs, and HistGradientBoosting's OpenMP threads
        # spin-wait to a crawl when another process holds a core (seen: 285 s instead of 18 s under load)
        with threadpool_limits(1):
            refs = fit_references(prep, names, seed=seed) if names else []
        for ref in refs:
            key = f"{ref.name}|seed={seed}|cfg={fp}"
            rec = make_record(cfg, key, ref.name, "reference", ref.modalities, ref.fusion, "reference", seed,
                              ref.proba, prep.splits, params={"total": ref.params}, train_seconds=ref.seconds,
                              estimator=ref.estimator)
            out.append((rec, PredictionRecord.of(key, ref.proba)))
    return out


def write_split(prep: Prepared, folder: Path) -> None:
    """Save the split's row ids, val/test labels, the missing-text mask and data statistics."""
    sp = prep.splits
    stats = {**prep.stats, "column_auc": single_column_auc(prep)}
    obj = {"classes": [str(c) for c in prep.classes], "modalities": list(prep.modalities), "stats": stats,
           **{f"{k}_ids": v.row_ids.tolist() for k, v in sp.items()},
           **{f"y_{k}": sp[k].y.tolist() for k in ("val", "test")},
           "text_missing_test": sp["test"].text_missing.astype(int).tolist()}
    (folder / "split.json").write_text(json.dumps(obj))


def results_dir(cfg: Config, out: str | None) -> Path:
    """``out`` if given, else ``./results/<dataset.name>`` (``-<profile>`` appended unless full)."""
    if out:
        return Path(out)
    suffix = "" if cfg.profile == "full" else f"-{cfg.profile}"
    return default_results() / f"{cfg.dataset.name}{suffix}"


_WORKER: dict = {}


def _init_worker(prep: Prepared, cfg: Config, suite: list, threads: int, git: str,
                 models: Path | None = None) -> None:
    torch.set_num_threads(threads)
    threadpool_limits(threads)  # numpy/scipy/OpenMP pools too: two workers x two threads oversubscribe 2 cores
    _WORKER.update(prep=prep, cfg=cfg, suite=suite, git=git, models=models)


def _worker_run(spec: RunSpec) -> tuple[tuple, tuple[int, float]]:
    """Train one run in a worker: ``(train_run's output, (process id, peak resident MiB))``."""
    prep, cfg = _WORKER["prep"], _WORKER["cfg"]
    w, weak = spec.training.weaken, None
    if w:  # the models of one seed at a Part 5 point see the same weakened data: build it once
        cache = _WORKER.setdefault("weakened", {})
        if (w, spec.seed) not in cache:
            if len(cache) >= 2:  # runs arrive grouped by (point, seed): keep the two latest copies
                cache.pop(next(iter(cache)))
            cache[(w, spec.seed)] = weakened(prep, w, spec.seed)
        weak = cache[(w, spec.seed)]
    out = train_run(spec, prep, cfg, _WORKER["suite"], weak=weak, save_dir=_WORKER.get("models"))
    return out, (os.getpid(), peak_rss_mb())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB: ``VmHWM`` of ``/proc/self/status`` on
    Linux (``getrusage``'s ``ru_maxrss`` would carry the parent's peak into a spawned worker across
    fork + exec), else ``ru_maxrss`` (KiB on Linux, bytes on macOS: read as KiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _failed(store: RunStore, spec: RunSpec, fp: str, err: Exception, pool) -> None:
    """Store a run that raised in ``failures.jsonl``; the study goes on (a rerun retries it)."""
    kind, msg = describe_failure(err)
    attempts, executor = (pool.attempts, "ray") if isinstance(pool, RayPool) else (1, "local")
    tqdm.write(f"run {spec.key(fp)} failed after {attempts} attempt(s): {kind}: {msg}")
    store.fail(FailureRecord(spec.key(fp), spec.model, spec.seed, spec.part, fp, kind, msg, attempts, executor,
                             dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")))


def _execute(specs: list[RunSpec], store: RunStore, pool, desc: str, fp: str, peaks: dict[int, float]) -> None:
    """Train ``specs`` (in ``pool`` when given, else in this process), storing each as it ends; a
    run that raises is stored as failed (:func:`_failed`) and the others go on. ``peaks`` collects
    each worker's peak resident memory (MiB) by process id."""
    if not specs:
        return

    def store_one(spec: RunSpec, result) -> None:
        try:
            out, (pid, rss) = result()
        except BrokenExecutor:  # the local pool itself died: every later run would fail the same way
            raise
        except Exception as e:  # noqa: BLE001 — one failing run must not stop the others
            _failed(store, spec, fp, e, pool)
        else:
            store.append(*out)
            peaks[pid] = max(peaks.get(pid, 0.0), rss)

    with tqdm(total=len(specs), desc=desc, unit="run", dynamic_ncols=True) as bar:
        if pool is None:
            for spec in specs:
                bar.set_postfix_str(f"{spec.model} seed {spec.seed}")
                store_one(spec, lambda: _worker_run(spec))  # noqa: B023 — called at once
                bar.update()
            return
        futures = {pool.submit(_worker_run, sp): sp for sp in specs}
        for fut in as_completed(futures):
            store_one(futures[fut], fut.result)
            bar.set_postfix_str(f"{futures[fut].model} seed {futures[fut].seed} done")
            bar.update()


class _References:
    """The classical references of a study (:func:`reference_runs`), fit in a driver thread when
    ``background`` (else on :meth:`store_into`); :meth:`store_into` waits for them, appends them
    to the store (the driver stays its single writer) and sets ``secs["reference"]`` (their own
    fit seconds, which overlap Parts 1, 2, 4 when in the background)."""

    def __init__(self, prep: Prepared, cfg: Config, done: set[str], background: bool):
        self._args, self._stored = (prep, cfg, done), False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="references") if background and cfg.study.references else None
        self._future = self._pool.submit(self._fit) if self._pool else None

    def _fit(self) -> tuple[list, float]:
        prep, cfg, done = self._args
        t0 = time.perf_counter()
        out = reference_runs(prep, cfg, skip=done) if cfg.study.references else []
        return out, time.perf_counter() - t0

    def store_into(self, store: RunStore, secs: dict) -> None:
        if self._stored:
            return
        out, secs["reference"] = self._future.result() if self._future else self._fit()
        for rec, preds in out:
            store.append(rec, preds)
        self._stored = True

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)


def run_study(cfg: Config, out: str | None = None, data: pd.DataFrame | None = None) -> Path:
    """Run every part of the study for ``cfg``, skipping stored runs (the CLI then writes the reports).

    ``data`` is the table itself (a DataFrame with the spec's columns); ``None`` reads
    ``cfg.dataset.source``. The library's :func:`fusionstudy.run_study` wraps this and loads the results.

    Parts run in order (data, Parts 1/2/4 with the classical references fit alongside in the
    driver, Part 3 ModDrop models, Part 5), each trained by ``cfg.train.workers`` processes. Returns the results folder; prints per-part wall
    seconds and stores them in ``study.json``.
    """
    folder, fp = results_dir(cfg, out), cfg.fingerprint()
    t_start = time.perf_counter()
    code = git_hash()  # the code the study starts with, recorded in every record it writes
    _WORKER["git"] = code
    log.info(f"study {cfg.dataset.name!r} profile {cfg.profile!r} -> {folder}")
    prep = prepare(cfg, data)  # bad data fails here, before any results folder exists
    check_models(cfg, prep.modalities)
    check_data_size(cfg, len(prep.splits["train"]))  # a size-bound setting stops here too
    store = store_for(folder, cfg.tracking)
    write_split(prep, folder)
    models = models_dir(folder, fp) if cfg.study.save_models else None
    if models is not None:
        save_preprocessing(prep, cfg, models)
    suite = eval_suite(prep, cfg, full=cfg.study.robustness)
    secs = {"data": time.perf_counter() - t_start, "reference": 0.0}
    done = store.done_keys()
    parts = plan(cfg, prep.modalities)
    todo = {k: [sp for sp in v if sp.key(fp) not in done] for k, v in parts.items()}
    n_all, n_todo = sum(map(len, parts.values())), sum(map(len, todo.values()))
    log.info(f"{n_todo} runs to train, {n_all - n_todo} already stored; {cfg.train.workers} worker(s)")
    workers = max(1, min(cfg.train.workers, n_todo))
    threads = max(1, cfg.train.threads // workers)
    if cfg.train.executor == "ray" and n_todo:  # as many runs at once as the cluster's CPUs allow
        threads = threads_per_run(cfg.ray)
        pool = RayPool(cfg.ray, _init_worker, (prep, cfg, suite, threads, code, models))
        workers = pool.workers
    else:
        pool = None if workers == 1 else ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(prep, cfg, suite, threads, code, models))
    if pool is None:
        _init_worker(prep, cfg, suite, cfg.train.threads, code, models)
    # the references are fit by a driver thread while the workers train Parts 1, 2, 4 (the driver
    # only waits on them); in-process training keeps them first, so its thread count never changes
    refs = _References(prep, cfg, done, background=pool is not None)
    if pool is None:
        refs.store_into(store, secs)
    peaks: dict[int, float] = {}
    try:
        for part, desc in (("main", "Parts 1, 2, 4"), ("part3", "Part 3 (ModDrop)"), ("part5", "Part 5 (imbalance)")):
            t0 = time.perf_counter()
            _execute(todo[part], store, pool, desc, fp, peaks)
            secs[part] = time.perf_counter() - t0
            if part == "main":
                refs.store_into(store, secs)
                for seed in cfg.study.seeds:
                    made = None if f"late_ensemble|seed={seed}|cfg={fp}" in done else late_ensemble(prep, cfg, store, seed)
                    if made:
                        store.append(*made)
    finally:
        refs.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    t0 = time.perf_counter()
    if any(sp.kind == "fusion" for sp in parts["main"]):
        rows = parameter_scaling(cfg.study.scaling_dims, sorted(prep.modalities), cfg.model.head_hidden,
                                 len(prep.classes), cfg.model.lmf_rank)
        (folder / "param_scaling.json").write_text(json.dumps(rows) + "\n")
    secs["scaling"] = time.perf_counter() - t0
    wall = time.perf_counter() - t_start
    failed = {sp.key(fp) for v in todo.values() for sp in v} - store.done_keys()
    n_todo -= len(failed)
    meta = {"study": cfg.dataset.name, "profile": cfg.profile, "config_fp": fp, "cores": os.cpu_count(),
            "workers": workers, "torch_threads_per_worker": threads, "wall_seconds": round(wall, 1),
            "runs_trained": n_todo, "runs_planned": n_all,
            "peak_rss_mb_per_worker": sorted(round(v) for v in peaks.values()), "peak_rss_mb_driver": round(peak_rss_mb()),
            "part_seconds": {k: round(v, 1) for k, v in secs.items()},
            "git": code, "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "executor": cfg.train.executor, **({"runs_failed": len(failed)} if failed else {})}
    old = json.loads((folder / "study.json").read_text()) if (folder / "study.json").is_file() else {}
    if old.get("config_fp") not in (None, fp):
        log.warning(f"{folder} held a study of another config ({old['config_fp']}); its runs stay in runs.jsonl, "
              f"but study.json, summary.csv and the reports now describe config {fp} (use --out to keep settings apart)")
    if old.get("config_fp") == fp and n_todo == 0 and not failed:
        log.info(f"nothing new to train: keeping the timings of the run that trained these models ({folder / 'study.json'})")
    else:
        if old.get("config_fp") == fp:  # a resumed study: its cost is the sum of its invocations
            meta["wall_seconds"] = round(old["wall_seconds"] + wall, 1)
            meta["runs_trained"] = old["runs_trained"] + n_todo
            meta["part_seconds"] = {k: round(old["part_seconds"].get(k, 0) + v, 1) for k, v in secs.items()}
            meta["invocations"] = old.get("invocations", 1) + 1
        (folder / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("per-part wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in meta["part_seconds"].items()))
    log.info(f"study wall time {wall:.1f} s on {os.cpu_count()} cores ({n_todo} runs trained)")
    if failed:
        log.warning(f"{len(failed)} run(s) failed, see {folder / 'failures.jsonl'}; rerun the same command to retry them")
    return folder
