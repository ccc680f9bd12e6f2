"""Benchmark: wall seconds per part, trained models per second, training samples/s and peak memory
per worker of the study, as ratios to a stored baseline; and the local vs the Ray executor.

    fusionstudy bench                              # time a fresh full study in a temporary folder
    fusionstudy bench --profile quick              # the same for the quick profile
    fusionstudy bench --from results/clothing      # print the figures of a stored study (no training)
    fusionstudy bench --from results/clothing --baseline dense-adamw
    fusionstudy bench --executors                  # one small study under the local and the Ray executor
    fusionstudy bench --report [ROOT] [--workers N]  # seconds to regenerate each report of ROOT/results (a copy)
    fusionstudy bench --stack early_concat --set study.seeds=[0,1,2]   # the seeds one by one vs as one stack

Timing is wall-clock on this machine (2 CPU cores here); throughput is training samples per second
of wall time inside ``fit``, averaged over a part's runs; peak memory is each worker process's
peak resident set (MiB, ``getrusage``). This machine is shared and noisy, so the figure to quote
is the ratio to a baseline of ``bench_baselines.json`` (earlier designs' stored ``study.json``
figures of the full profile; a ratio < 1 is faster). ``experiments.md`` shows the committed run's
table. ``--executors`` trains the same small study (:data:`SMALL`, plus any ``--set``) once per
executor, each in its own temporary folder, and prints the wall seconds of each (the whole study,
and its training parts alone, which exclude Ray's start) and their ratio. ``--report`` times
``fusionstudy report --all`` (the two-level bootstrap intervals dominate) on a temporary copy of the
stored results, so nothing committed is rewritten. ``--stack MODEL`` trains the ``study.seeds`` of
one model on the main split twice, each in a fresh process with one torch thread (as a study's
worker): one model at a time (``loop.fit``) and as one stack (``batched.fit_stack``), and prints
per path the training seconds, models/s, training samples/s, the process's peak memory and each
seed's best validation ROC-AUC (equal between the paths within 1e-4).
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from fusionstudy.analysis.tables import baselines, comparable, part_table
from fusionstudy.config import load_config, model_parts
from fusionstudy.data.prepare import prepare
from fusionstudy.extras import import_extra
from fusionstudy.records import load_study
from fusionstudy.report.formats import bench_cells, md_table
from fusionstudy.report.benchmark import benchmark_folders
from fusionstudy.report.write import CONTRAST, MAIN, write_all
from fusionstudy.study.runner import peak_rss_mb, run_study
from fusionstudy.training.batched import fit_stack, make_stack
from fusionstudy.training.loop import fit, make_model


AUTO = "auto"  # the baseline: the newest stored one the study is comparable with


def report(folder: Path, baseline: str | None) -> str:
    """The per-part table of a stored study (with ratios to ``baseline`` when named; ``"auto"``: the
    newest stored baseline the study is comparable with, else none) and its peak memory per
    worker, as Markdown.

    Raises
    ------
    ValueError
        If ``baseline`` is not a key of ``bench_baselines.json``.
    """
    known = baselines()
    if baseline is not None and baseline != AUTO and baseline not in known:
        raise ValueError(f"unknown baseline {baseline!r}; bench_baselines.json has {list(known)}")
    res = load_study(folder)
    if baseline == AUTO:  # the newest design this very study was timed with, or no ratio at all
        baseline = next((k for k in reversed(known) if comparable(res.meta, known[k])), None)
    base = known[baseline] if baseline else None
    lines = []
    if base and not comparable(res.meta, base):
        lines.append(f"(no ratio: baseline {baseline!r} is the {base['profile']} study of {base['study']!r} with "
                     f"{base['runs_trained']} runs; this folder holds the {res.meta.get('profile')} study of "
                     f"{res.meta.get('study')!r} with {res.meta.get('runs_planned')})\n")
        base = None
    lines.append(md_table(bench_cells(part_table(res.meta, res.runs, base))))
    if base:
        lines.append(f"\nbaseline {baseline!r}: {base['label']}")
    peaks = res.meta.get("peak_rss_mb_per_worker")
    if peaks:
        lines.append(f"peak resident memory per worker: {', '.join(f'{p:,} MiB' for p in peaks)}; "
                     f"driver {res.meta.get('peak_rss_mb_driver', 0):,} MiB")
    return "\n".join(lines)


# The small study of --executors: the quick profile on 6,000 rows, without the (driver-side) references.
SMALL = ["dataset.subsample=6000", "study.references=false", "study.save_models=false"]


def compare_executors(data: str, profile: str, overrides: list[str]) -> pd.DataFrame:
    """Wall seconds of the same study under ``train.executor = "local"`` and ``"ray"``: per
    executor the whole study (``wall_s``, with Ray's start) and its training parts (``train_s``:
    Parts 1-5), runs trained, and each time as a ratio to the local executor's."""
    rows = []
    for ex in ("local", "ray"):
        cfg = load_config(data, profile, [*SMALL, *overrides, f'train.executor="{ex}"'])
        torch.set_num_threads(cfg.train.threads)
        with tempfile.TemporaryDirectory() as tmp:
            meta = json.loads((run_study(cfg, tmp) / "study.json").read_text())
        train = sum(meta["part_seconds"].get(p, 0) for p in ("main", "part3", "part5"))
        rows.append({"executor": ex, "runs": meta["runs_trained"], "wall_s": meta["wall_seconds"],
                     "train_s": round(train, 1), "workers": meta["workers"]})
    df = pd.DataFrame(rows)
    for col in ("wall_s", "train_s"):
        df[f"{col}_ratio"] = (df[col] / df[col].iloc[0]).round(2)
    return df


class _Stopwatch(logging.Handler):
    """Wall seconds between the report writer's ``wrote ...`` log lines (or a worker's own, when the
    line carries them): one lap per document."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.start, self.laps = time.perf_counter(), []

    def emit(self, record: logging.LogRecord) -> None:  # a worker's document carries its own seconds
        now = time.perf_counter()
        self.laps.append((record.getMessage().removeprefix("wrote "), getattr(record, "seconds", now - self.start)))
        self.start = now


def bench_reports(root: Path = Path("."), workers: int = 1) -> pd.DataFrame:
    """Wall seconds (this machine) to regenerate every report of ``fusionstudy report --all`` from
    ``root``'s stored results (the default study, its contrast and every benchmark study), on a
    temporary copy (figures and reports not copied).

    Returns one row per document in the order written (``document``, relative to ``root``;
    ``seconds`` since the previous document, loading included — or, for a study written by one of
    the ``workers`` processes (:func:`~fusionstudy.report.write.write_all`), that worker's seconds
    on it; ``same_as_root``: ``yes`` if the text equals ``root``'s, ``no``, or ``n/a`` if ``root``
    has none) and a ``total`` row (wall seconds of the whole regeneration).

    Raises
    ------
    FileNotFoundError
        If ``root/results/clothing`` holds no study.
    """
    if not (root / MAIN / "study.json").is_file():
        raise FileNotFoundError(f"{root / MAIN}: no study.json; pass the repository whose results/ to time")
    with tempfile.TemporaryDirectory() as tmp:
        for folder in dict.fromkeys([MAIN, CONTRAST] + [f.relative_to(root) for f in benchmark_folders(root)]):
            if (root / folder / "study.json").is_file():
                shutil.copytree(root / folder, Path(tmp) / folder,
                                ignore=shutil.ignore_patterns("figures", "*.md", "summary.csv", ".fusionstudy.*"))
        watch, writer = _Stopwatch(), logging.getLogger("fusionstudy.report.write")
        writer.addHandler(watch)
        level, t0 = writer.level, time.perf_counter()
        writer.setLevel(logging.INFO)
        try:
            write_all(Path(tmp), workers)
            total = time.perf_counter() - t0
        finally:
            writer.removeHandler(watch)
            writer.setLevel(level)
        rows = [{"document": _relative(Path(tmp), doc), "seconds": round(sec, 1)} for doc, sec in watch.laps]
        for r in rows:
            new, old = Path(tmp) / r["document"], root / r["document"]
            r["same_as_root"] = "n/a" if not old.is_file() else "yes" if new.read_text() == old.read_text() else "no"
    return pd.DataFrame(rows + [{"document": "total", "seconds": round(total, 1), "same_as_root": ""}])


def _relative(tmp: Path, logged: str) -> str:
    """The document of a ``wrote [summary.csv and] DOC`` line, relative to the copy's root."""
    doc = Path(logged.split(" and ")[-1])
    return str(doc.relative_to(tmp)) if doc.is_relative_to(tmp) else str(doc)


def _train_seeds(data: str, profile: str, overrides: list[str], model: str, stacked: bool) -> dict:
    """In a fresh process: train ``model``'s ``study.seeds`` one by one or as one stack; one row of
    :func:`compare_stack`."""
    torch.set_num_threads(1)
    cfg = load_config(data, profile, overrides)
    prep, seeds = prepare(cfg), cfg.study.seeds
    mods, fusion = model_parts(model, prep.modalities)
    train, val = prep.splits["train"], prep.splits["val"]
    t0 = time.perf_counter()
    if stacked:
        models, gens = make_stack(mods, fusion, prep, cfg, seeds)
        res = fit_stack(models, gens, train, val, cfg.train, seeds)
    else:
        res = [fit(make_model(mods, fusion, prep, cfg, s), train, val, cfg.train, s) for s in seeds]
    secs = time.perf_counter() - t0
    return {"path": "stacked" if stacked else "one by one", "models": len(seeds), "seconds": round(secs, 2),
            "models/s": round(len(seeds) / secs, 3),
            "samples/s": round(sum(r.samples_per_s * r.train_seconds for r in res) / secs),
            "peak MiB": round(peak_rss_mb()), "epochs": " ".join(str(r.epochs_run) for r in res),
            "val ROC-AUC": " ".join(f"{r.curves['val_roc_auc'][r.best_epoch - 1]:.5f}" if r.best_epoch else "nan"
                                    for r in res)}


def compare_stack(data: str, profile: str, overrides: list[str], model: str) -> pd.DataFrame:
    """The ``study.seeds`` of ``model`` trained one by one and as one stack, each path in its own
    spawned process (so peak memory is its own): training seconds, models/s, samples/s (training
    samples of every seed per wall second), peak resident MiB, epochs run and best val ROC-AUC per
    seed, and the speed-up (one-by-one seconds / stacked seconds)."""
    rows = []
    for stacked in (False, True):
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            rows.append(pool.submit(_train_seeds, data, profile, overrides, model, stacked).result())
    df = pd.DataFrame(rows)
    df["speed-up"] = (df["seconds"].iloc[0] / df["seconds"]).round(2)
    return df


def bench(data: str = "clothing", profile: str | None = None, overrides: list[str] | None = None,
          folder: str | None = None, baseline: str | None = AUTO, executors: bool = False,
          stack: str | None = None) -> str:
    """What ``fusionstudy bench`` prints: a stored study's figures (``folder``), the executor
    comparison (``executors``), one model's seeds one by one vs stacked (``stack``, a model name),
    or the figures of a fresh study trained in a temporary folder.

    Raises
    ------
    ValueError
        On an unknown ``baseline`` (``"none"`` or ``None`` for no ratio; ``"auto"``: the newest
        stored baseline the study is :func:`comparable` with, if any).
    ImportError
        If ``executors`` and Ray is not installed (before any training).
    """
    overrides = overrides or []
    base = None if baseline in (None, "none") else baseline
    if base is not None and base != AUTO and base not in baselines():
        raise ValueError(f"unknown baseline {base!r}; stored baselines: {list(baselines())} (or 'none')")
    if stack:
        return compare_stack(data, profile or "full", overrides, stack).to_markdown(index=False)
    if executors:
        import_extra("ray")  # before any training: the comparison needs the optional Ray
        return compare_executors(data, profile or "quick", overrides).to_markdown(index=False)
    if folder:
        return report(Path(folder), base)
    profile = profile or "full"
    cfg = load_config(data, profile, overrides)
    torch.set_num_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as tmp:
        # the stored baselines are full-profile studies of the default data: no ratio for anything else
        return report(run_study(cfg, tmp), base if profile == "full" and not overrides else None)
