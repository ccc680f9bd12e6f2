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
import pickle
import resource
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from fusionstudy.config import Config
from fusionstudy.data.perturb import weakened
from fusionstudy.data.prepare import Prepared, prepare
from fusionstudy.extras import import_extra
from fusionstudy.locations import default_results
from fusionstudy.models.fusion import parameter_scaling
from fusionstudy.records import FailureRecord, RunStore, run_key
from fusionstudy.study.comparators import (  # noqa: F401 (re-exported)
    References,
    late_ensemble,
    planned_references,
    reference_runs,
    store_ensembles,
)
from fusionstudy.study.executors import RayPool, describe_failure, threads_per_run
from fusionstudy.study.forecast import forecast_split, run_forecasts
from fusionstudy.study.protocol import (  # noqa: F401 (re-exported)
    SAVED_PARTS,
    RunSpec,
    check_data_size,
    check_models,
    n_splits,
    plan,
    resplit_plan,
    staged_path,
    staged_prepare,
    usable_models,
)
from fusionstudy.study.provenance import CODE, git_hash, make_record, rules_record  # noqa: F401 (re-exported)
from fusionstudy.study.references import single_column_auc
from fusionstudy.study.runs import stack_tasks, train_run, train_stack
from fusionstudy.study.saving import models_dir, save_preprocessing
from fusionstudy.study.tracking import store_for
from fusionstudy.training.evaluation import eval_suite

log = logging.getLogger(__name__)

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
    CODE["git"] = git


def _worker_run(spec: RunSpec | tuple[RunSpec, ...], stage: str | None = None
                ) -> tuple[tuple | list[tuple], tuple[int, float]]:
    """Train one run (or a stack of seeds, :func:`train_stack`) in a worker: ``(train_run's output
    (a list of them for a stack), (process id, peak resident MiB))``. ``stage`` (a
    ``protocol.staged_prepare`` file) names the split data the run trains on when it is not the
    data the worker started with: one pool serves every split of a study (a spawned worker's
    start, torch's import included, costs ~7 CPU seconds)."""
    if stage is not None and _WORKER.get("stage") != stage:  # a resplit: no evaluation suite, no saved weights
        with open(stage, "rb") as fh:
            _WORKER.update(prep=pickle.load(fh), suite=[], models=None, stage=stage)
        _WORKER.pop("weakened", None)
    elif stage is None and "stage" in _WORKER:
        raise RuntimeError("a run of the pool's first split reached a worker that moved to another split")
    prep, cfg = _WORKER["prep"], _WORKER["cfg"]
    if isinstance(spec, tuple):
        return train_stack(spec, prep, cfg, _WORKER["suite"], save_dir=_WORKER.get("models")), (os.getpid(), peak_rss_mb())
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


def _worker_forecast(split: int, weakens: list[tuple], data: pd.DataFrame | None, stage: str) -> list:
    """``forecast.forecast_split`` in a worker: the main split from the worker's own data, a resplit
    prepared (and staged for the study's later use) or loaded from ``stage``
    (``protocol.staged_prepare``). The worker's own split data stay as they are."""
    cfg = _WORKER["cfg"]
    prep = _WORKER["prep"] if split == 0 and "stage" not in _WORKER else staged_prepare(cfg, data, split, Path(stage))
    return forecast_split(cfg, prep, split, weakens)


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
                             dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))


def _label(task) -> str:
    return f"{task[0].model} seeds {[sp.seed for sp in task]}" if isinstance(task, tuple) else \
        f"{task.model} seed {task.seed}"


def _submit(specs: list[RunSpec], pool, cfg: Config, stage: str | None = None) -> dict:
    """Hand ``specs`` to ``pool`` as tasks (seeds stacked by :func:`stack_tasks`): ``{future: task}``."""
    return {(pool.submit(_worker_run, t, stage) if stage else pool.submit(_worker_run, t)): t
            for t in stack_tasks(specs, cfg)}


def _store_task(store: RunStore, task, result: Callable, fp: str, peaks: dict[int, float], pool) -> None:
    """Store the runs of a finished ``task`` (``result()`` gives :func:`_worker_run`'s output), or
    store them as failed (:func:`_failed`) if it raised; a dead local pool raises."""
    runs = task if isinstance(task, tuple) else (task,)
    try:
        out, (pid, rss) = result()
    except BrokenExecutor:  # the local pool itself died: every later run would fail the same way
        raise
    except Exception as e:  # noqa: BLE001 — one failing run must not stop the others
        for spec in runs:
            _failed(store, spec, fp, e, pool)
    else:
        for one in (out if isinstance(task, tuple) else [out]):
            store.append(*one)
        peaks[pid] = max(peaks.get(pid, 0.0), rss)


def _collect(futures: dict, store: RunStore, desc: str, fp: str, peaks: dict[int, float], pool) -> None:
    """Store each task of ``futures`` (:func:`_submit`) as it ends, with a progress bar."""
    total = sum(len(t) if isinstance(t, tuple) else 1 for t in futures.values())
    with tqdm(total=total, desc=desc, unit="run", dynamic_ncols=True) as bar:
        for fut in as_completed(futures):
            task = futures[fut]
            _store_task(store, task, fut.result, fp, peaks, pool)
            bar.update(len(task) if isinstance(task, tuple) else 1)
            bar.set_postfix_str(f"{_label(task)} done")


def _execute(specs: list[RunSpec], store: RunStore, pool, desc: str, fp: str, peaks: dict[int, float],
             cfg: Config, stage: str | None = None) -> None:
    """Train ``specs`` (in ``pool`` when given, else in this process; seeds stacked by
    :func:`stack_tasks`), storing each run as its task ends; a task that raises stores its runs as
    failed (:func:`_failed`) and the others go on. ``peaks`` collects each worker's peak resident
    memory (MiB) by process id. ``stage``: the staged split data of the runs
    (``protocol.staged_prepare``'s file), for a local pool opened on another split."""
    if not specs:
        return
    if pool is not None:
        _collect(_submit(specs, pool, cfg, stage), store, desc, fp, peaks, pool)
        return
    with tqdm(total=len(specs), desc=desc, unit="run", dynamic_ncols=True) as bar:
        for task in stack_tasks(specs, cfg):
            bar.set_postfix_str(_label(task))
            _store_task(store, task, lambda: _worker_run(task), fp, peaks, pool)  # noqa: B023 — called at once
            bar.update(len(task) if isinstance(task, tuple) else 1)


def _open_pool(cfg: Config, prep: Prepared, suite: list, code: str, models: Path | None, n_todo: int):
    """``(pool, workers, torch threads per worker)`` for ``n_todo`` runs on ``prep``: a Ray pool, a
    pool of spawned processes, or ``None`` (train in this process, set up here)."""
    workers = max(1, min(cfg.train.workers, n_todo))
    threads = max(1, cfg.train.threads // workers)
    if cfg.train.executor == "ray" and n_todo:  # as many runs at once as the cluster's CPUs allow
        threads = threads_per_run(cfg.ray)
        pool = RayPool(cfg.ray, _init_worker, (prep, cfg, suite, threads, code, models))
        return pool, pool.workers, threads
    pool = None if workers == 1 else ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
        initargs=(prep, cfg, suite, threads, code, models))
    if pool is None:
        _init_worker(prep, cfg, suite, cfg.train.threads, code, models)
    return pool, workers, threads


def _train_resplit(cfg: Config, prep: Prepared, split: int, store: RunStore, code: str, peaks: dict) -> list[str]:
    """Train, store and return the keys of split ``split``'s missing runs: the Parts 1-2 models
    (:func:`resplit_plan`), the references (in a driver thread) and the post-hoc late ensembles, in a
    pool opened for this split alone (Ray, or in this process; a study's shared local pool runs
    :class:`_ResplitInFlight` instead)."""
    fp, done = cfg.fingerprint(), store.done_keys()
    todo = [sp for sp in resplit_plan(cfg, prep.modalities, split) if sp.key(fp) not in done]
    pool, _, _ = _open_pool(cfg, prep, [], code, None, len(todo))
    refs = References(prep, cfg, done, background=pool is not None, split=split)
    try:
        _store_split(cfg, prep, split, store, done, refs,
                     lambda desc: _execute(todo, store, pool, desc, fp, peaks, cfg))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return [sp.key(fp) for sp in todo]


def _store_split(cfg: Config, prep: Prepared, split: int, store: RunStore, done: set[str], refs: References,
                 train: Callable[[str], None]) -> None:
    """A resplit's ending, whichever way its runs train: ``train(progress label)`` stores its runs,
    then its references (``refs``, fitting since the split began) and its post-hoc late ensembles
    are stored; the references' thread is closed on the way out, also on error or interrupt."""
    try:
        train(f"split {split + 1} of {n_splits(cfg)}")
        refs.store_into(store, {})
        store_ensembles(prep, cfg, store, done, cfg.study.split_seeds, split)
    finally:
        refs.close()


class _ResplitInFlight:
    """A resplit on the study's shared local pool: its missing runs are handed to the pool (queued
    behind the previous split's) and its references start fitting in a driver thread when built;
    :meth:`finish` stores them all and the late ensembles. The next split is started before this
    one finishes, so the workers never wait on a split's references or its last runs."""

    def __init__(self, cfg: Config, prep: Prepared, split: int, store: RunStore, pool: ProcessPoolExecutor,
                 stage: Path):
        fp, self.done = cfg.fingerprint(), store.done_keys()
        self.cfg, self.prep, self.split = cfg, prep, split
        self.todo = [sp for sp in resplit_plan(cfg, prep.modalities, split) if sp.key(fp) not in self.done]
        self.refs = References(prep, cfg, self.done, background=True, split=split)
        self.futures = _submit(self.todo, pool, cfg, str(staged_path(stage, split))) if self.todo else {}
        self.pool = pool

    def finish(self, store: RunStore, peaks: dict) -> list[str]:
        """Store this split's runs, references and late ensembles; return the keys of its runs."""
        fp = self.cfg.fingerprint()
        _store_split(self.cfg, self.prep, self.split, store, self.done, self.refs,
                     lambda desc: _collect(self.futures, store, desc, fp, peaks, self.pool))
        return [sp.key(fp) for sp in self.todo]


def _split_ids(prep: Prepared, seed: int) -> dict:
    """A split's seed and its val/test row ids (train = the other rows), as ``splits.json`` keeps them."""
    return {"seed": seed, **{f"{s}_ids": prep.splits[s].row_ids.tolist() for s in ("val", "test")}}


def _split_stored(cfg: Config, modalities: tuple[str, ...], k: int, done: set[str], ids: dict) -> bool:
    """Whether resplit ``k`` needs nothing: its row ids are in ``ids`` (``splits.json``, drawn with
    this seed) and every run it plans is in ``done``: the models (:func:`resplit_plan`), the
    references (:func:`comparators.planned_references`) and, with two modalities, the late ensembles.
    Then its data need not be prepared (~5 s a split); anything missing and it is (a study whose
    ensembles cannot be made just always prepares)."""
    fp = cfg.fingerprint()
    keys = [sp.key(fp) for sp in resplit_plan(cfg, modalities, k)]
    keys += [run_key(n, seed, fp, k) for n, seed in planned_references(cfg, modalities, k)]
    keys += [run_key("late_ensemble", seed, fp, k) for seed in cfg.study.split_seeds] if len(modalities) > 1 else []
    return ids.get(str(k), {}).get("seed") == cfg.split.seed + k and set(keys) <= done


def _run_resplits(cfg: Config, data: pd.DataFrame | None, store: RunStore, code: str, peaks: dict,
                  folder: Path, split0: dict, stage: Path, shared: ProcessPoolExecutor | None,
                  modalities: tuple[str, ...]) -> tuple[int, int, set[str]]:
    """Splits 1..K-1 (:func:`n_splits`), one after another, each split's data prepared (or loaded
    from ``stage``, where the forecast left it: ``protocol.staged_prepare``) by a driver thread
    while the one before trains; ``splits.json`` gets every split's seed and val/test row ids
    (``split0``: the main split's). ``shared``: the study's local pool, which gets split k's runs
    before split k-1's are stored (:class:`_ResplitInFlight`); else :func:`_train_resplit`. A split
    whose every run is stored is not prepared again (:func:`_split_stored`; ``modalities``: split
    0's). Returns ``(runs planned, runs attempted now, keys that failed)``."""
    planned, attempted, failed = 0, 0, set()
    info, k_max, flying = {"0": split0}, n_splits(cfg), []
    stored_ids = json.loads((folder / "splits.json").read_text()) if (folder / "splits.json").is_file() else {}
    stored_keys, ks = store.done_keys(), []
    for k in range(1, k_max):
        if _split_stored(cfg, modalities, k, stored_keys, stored_ids):
            info[str(k)] = stored_ids[str(k)]
            planned += len(resplit_plan(cfg, modalities, k))
        else:
            ks.append(k)

    def land(done: _ResplitInFlight | None, keys: list[str] | None = None, k: int = 0) -> None:
        nonlocal attempted, failed
        if done is not None:
            keys, k = done.finish(store, peaks), done.split
            flying.remove(done)
        staged_path(stage, k).unlink(missing_ok=True)
        attempted += len(keys)
        failed |= set(keys) - store.done_keys()

    with ThreadPoolExecutor(1, thread_name_prefix="prepare") as ahead:
        nxt = ahead.submit(staged_prepare, cfg, data, ks[0], stage) if ks else None
        try:
            for i, k in enumerate(ks):
                prep = nxt.result()
                nxt = ahead.submit(staged_prepare, cfg, data, ks[i + 1], stage) if i + 1 < len(ks) else None
                info[str(k)] = _split_ids(prep, cfg.split.seed + k)
                planned += len(resplit_plan(cfg, prep.modalities, k))
                if shared is None:
                    land(None, _train_resplit(cfg, prep, k, store, code, peaks), k)
                else:  # split k queued behind split k-1, whose runs and references are then stored
                    flying.append(_ResplitInFlight(cfg, prep, k, store, shared, stage))
                    if len(flying) > 1:
                        land(flying[0])
                del prep
            while flying:
                land(flying[0])
        finally:
            for f in flying:  # interrupted: no references' thread outlives the study
                f.refs.close()
    (folder / "splits.json").write_text(json.dumps({str(k): info[str(k)] for k in range(k_max)}))
    return planned, attempted, failed


def run_study(cfg: Config, out: str | None = None, data: pd.DataFrame | None = None) -> Path:
    """Run every part of the study for ``cfg``, skipping stored runs (the CLI then writes the reports).

    ``data`` is the table itself (a DataFrame with the spec's columns); ``None`` reads
    ``cfg.dataset.source``. The library's :func:`fusionstudy.run_study` wraps this and loads the results.

    Parts run in order (data, Parts 1/2/4 with the classical references fit alongside in the
    driver, Part 3 ModDrop models, Part 5), each trained by ``cfg.train.workers`` processes. Returns the results folder; prints per-part wall
    seconds and stores them in ``study.json``.
    """
    folder, fp = results_dir(cfg, out), cfg.fingerprint()
    t_start, started = time.perf_counter(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    code = git_hash()  # the code the study starts with, recorded in every record it writes
    _WORKER["git"] = CODE["git"] = code
    log.info(f"study {cfg.dataset.name!r} profile {cfg.profile!r} -> {folder}")
    if cfg.train.executor == "ray":  # a missing optional Ray stops the study before any data is read or written
        import_extra("ray")
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
    # each resplit's prepared data, kept as a file for the forecast, the driver and the workers
    stage_dir, pool, shared = tempfile.TemporaryDirectory(prefix="fusionstudy-stage-"), None, False
    stage = Path(stage_dir.name)
    try:
        done = store.done_keys()
        parts = plan(cfg, prep.modalities)
        todo = {k: [sp for sp in v if sp.key(fp) not in done] for k, v in parts.items()}
        n_all, n_todo = sum(map(len, parts.values())), sum(map(len, todo.values()))
        log.info(f"split 1 of {n_splits(cfg)}: {n_todo} runs to train, {n_all - n_todo} already stored; "
                 f"{cfg.train.workers} worker(s)")
        re_keys = {sp.key(fp) for k in range(1, n_splits(cfg)) for sp in resplit_plan(cfg, prep.modalities, k)} - done
        pool, workers, threads = _open_pool(cfg, prep, suite, code, models, n_todo + len(re_keys))
        # a local pool lives through every split (its workers load each split's data from a file)
        shared = isinstance(pool, ProcessPoolExecutor)
        # the references are fit by a driver thread while the workers fit the forecast and train
        # Parts 1, 2, 4 (the driver only waits on them); in-process training keeps them after the
        # forecast, so its thread count never changes
        refs = References(prep, cfg, done, background=pool is not None)
        if cfg.study.forecast:  # before any fused model exists: the forecast's records predate what they predict
            t0 = time.perf_counter()
            submit = (lambda k, ws: pool.submit(_worker_forecast, k, ws, data, str(stage))) if shared else None
            run_forecasts(cfg, folder, data, prep, stage, submit)
            secs["forecast"] = time.perf_counter() - t0
        if pool is None:
            refs.store_into(store, secs)
        peaks: dict[int, float] = {}
        try:
            for part, desc in (("main", "Parts 1, 2, 4"), ("part3", "Part 3 (ModDrop)"),
                               ("part5", "Part 5 (imbalance)"), ("remedies", "Part 5 remedies")):
                t0 = time.perf_counter()
                _execute(todo[part], store, pool, desc, fp, peaks, cfg)
                secs[part] = time.perf_counter() - t0
                if part == "main":
                    refs.store_into(store, secs)
                    store_ensembles(prep, cfg, store, done, cfg.study.seeds)
        finally:
            refs.close()
            if pool is not None and not shared:
                pool.shutdown(cancel_futures=True)
        modalities, n_classes, split0 = prep.modalities, len(prep.classes), _split_ids(prep, cfg.split.seed)
        del prep, suite  # the resplits hold one split's data at a time
        t0 = time.perf_counter()
        re_planned, re_todo, re_failed = _run_resplits(cfg, data, store, code, peaks, folder, split0, stage,
                                                       pool if shared else None, modalities)
        secs["resplits"] = time.perf_counter() - t0
    finally:
        if shared:
            pool.shutdown(cancel_futures=True)
        stage_dir.cleanup()
    t0 = time.perf_counter()
    if any(sp.kind == "fusion" for sp in parts["main"]):
        rows = parameter_scaling(cfg.study.scaling_dims, sorted(modalities), cfg.model.head_hidden,
                                 n_classes, cfg.model.lmf_rank)
        (folder / "param_scaling.json").write_text(json.dumps(rows) + "\n")
    secs["scaling"] = time.perf_counter() - t0
    wall = time.perf_counter() - t_start
    failed = ({sp.key(fp) for v in todo.values() for sp in v} - store.done_keys()) | re_failed
    n_todo += re_todo - len(failed)
    n_all += re_planned
    meta = {"study": cfg.dataset.name, "profile": cfg.profile, "config_fp": fp, "cores": os.cpu_count(),
            "workers": workers, "torch_threads_per_worker": threads, "wall_seconds": round(wall, 1),
            "runs_trained": n_todo, "runs_planned": n_all,
            "peak_rss_mb_per_worker": sorted(round(v) for v in peaks.values()), "peak_rss_mb_driver": round(peak_rss_mb()),
            "part_seconds": {k: round(v, 1) for k, v in secs.items()},
            "git": code, "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "executor": cfg.train.executor, "splits": n_splits(cfg), "rules": rules_record(cfg, started),
            **({"runs_failed": len(failed)} if failed else {})}
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
