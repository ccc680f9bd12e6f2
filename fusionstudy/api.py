"""The library face: what a notebook calls, and what the ``fusionstudy`` command line calls too.

    import fusionstudy as fs
    cfg = fs.load_config("clothing", "quick")                  # a bundled spec, a TOML file or a folder
    res = fs.run_study(cfg, data=df, out="results/mine")       # df: a pandas DataFrame (or a path)
    res.runs[0].metrics["test"]["roc_auc"]
    fs.load_study("results/mine")                              # read a finished study back (no torch)
    fs.predict("results/mine", "early_concat", new_rows)       # class probabilities per row
"""
from __future__ import annotations

import logging
import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fusionstudy.config import Config, validate
from fusionstudy.records import LOCK, StudyResults, load_study, writer_lock

log = logging.getLogger("fusionstudy")


def run_study(cfg: Config, data: pd.DataFrame | str | Path | None = None, out: str | Path | None = None,
              report: bool = False) -> StudyResults:
    """Train and evaluate every part of the study ``cfg`` describes; return its stored results.

    Parameters
    ----------
    cfg : a :class:`~fusionstudy.config.Config` (see :func:`fusionstudy.load_config`).
    data : the table to study: a DataFrame with the spec's columns (``cfg.dataset``), a path to a
        CSV/TSV/Parquet file or a Multimodal-Toolkit folder, or ``None`` for ``cfg.dataset.source``.
    out : the results folder (default ``./results/<dataset.name>[-<profile>]``). A rerun into the
        same folder resumes: stored runs are not trained again.
    report : also write ``summary.csv``, the figures and ``experiments.md`` into ``out``.

    Returns
    -------
    The loaded :class:`~fusionstudy.records.StudyResults` (``.runs``, ``.evals``, ``.meta``, ``.folder``).

    Raises
    ------
    ValueError, FileNotFoundError
        On a bad spec or table (the message names the column or key and what to do), an unwritable
        ``out``, or another process writing ``out`` (one writer per folder: ``records.writer_lock``).
    RuntimeError
        If called from a training worker re-importing an unguarded script (see the message).
    """
    if mp.parent_process() is not None:  # a spawned training worker is re-running the user's script
        raise RuntimeError("run_study was called while a worker process imported your script: put the call under "
                           "`if __name__ == \"__main__\":` (worker processes re-import it) or set cfg.train.workers = 1")
    validate(cfg)  # values set in code get the range checks a config file gets
    frame = data if isinstance(data, pd.DataFrame) else None
    if data is not None and frame is None:
        cfg = replace(cfg, dataset=replace(cfg.dataset, source=str(Path(data).resolve())))
    if out is None:
        from fusionstudy.study.runner import results_dir
        out = results_dir(cfg, None)
    folder, existed = Path(out).resolve(), Path(out).exists()
    try:  # the lock comes first, so a second writer stops at once, not after loading the training stack
        with writer_lock(folder, "fusionstudy run", hint="pass a writable folder (--out; out= in Python)"):
            _train(cfg, folder, frame, report)
    except BaseException:
        if not existed:  # bad data or settings stop before any result: leave no folder behind
            _remove_if_only_the_lock(folder)
        raise
    return load_study(folder)


def _train(cfg: Config, folder: Path, frame: pd.DataFrame | None, report: bool) -> None:
    import torch  # the training stack loads only when a study is run, never to read results

    from fusionstudy.report.write import write_reports
    from fusionstudy.study.runner import run_study

    torch.set_num_threads(cfg.train.threads)
    run_study(cfg, str(folder), data=frame)
    if report:
        write_reports(folder)


def _remove_if_only_the_lock(folder: Path) -> None:
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= {LOCK}:
        (folder / LOCK).unlink(missing_ok=True)
        folder.rmdir()


def forecast(cfg: Config, data: pd.DataFrame | str | Path | None = None, out: str | Path | None = None) -> pd.DataFrame:
    """Is the second modality worth fusing? The before-fusion forecast (:mod:`fusionstudy.analysis.forecast`),
    from two classical unimodal models fit on train rows and a cross-fitted stack on validation rows,
    with no fused model trained and no test row read.

    Fits the forecast of every split clean and of every Part 5 point of the main split, stores them
    in ``out``'s ``forecasts.jsonl`` (default: the study's results folder; a later ``run_study``
    reuses them), and returns one row per situation: ``situation``, ``splits``, ``auc_<modality>``,
    ``auc_stack``, ``better``, ``gain`` (forecast ROC-AUC gain of the stack over the better
    unimodal model), ``lo``/``hi`` (95% interval, Nadeau–Bengio over splits), ``verdict`` (the
    study's rule at ``report.margin``) and ``p_helps`` (the power of that rule at the forecast gain).
    Cost: a few seconds per situation (``study.splits`` + the Part 5 grid; set
    ``study.subsample_levels`` etc. to ``[]`` for the clean forecast alone).

    Raises
    ------
    ValueError, FileNotFoundError
        As :func:`run_study`; also for data with fewer than two modalities.
    """
    from fusionstudy.analysis.forecast import forecast_frame
    from fusionstudy.data.prepare import prepare
    from fusionstudy.records import RunStore
    from fusionstudy.study.forecast import run_forecasts
    from fusionstudy.study.runner import results_dir

    validate(cfg)
    frame = data if isinstance(data, pd.DataFrame) else None
    if data is not None and frame is None:
        cfg = replace(cfg, dataset=replace(cfg.dataset, source=str(Path(data).resolve())))
    folder = Path(out or results_dir(cfg, None)).resolve()
    prep = prepare(cfg, frame)
    if len(prep.modalities) < 2:
        raise ValueError(f"the forecast needs two modalities; the data has {list(prep.modalities)}: "
                         "declare text and tabular columns in the spec")
    with writer_lock(folder, "fusionstudy forecast", hint="pass a writable folder (--out; out= in Python)"):
        run_forecasts(cfg, folder, frame, prep)
    fp = cfg.fingerprint()
    records = [r for r in RunStore(folder).forecasts().values() if r.config_fp == fp]
    sizes = {k: len(v) for k, v in prep.splits.items()}
    return forecast_frame(records, sizes["test"] / sizes["train"], cfg.report.margin, cfg.study.bootstrap)


def predict(study: str | Path, model: str, rows: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """Score ``rows`` with a model a study trained and saved (``study.save_models = true``).

    Returns an ``(n_samples, n_classes + 1)`` frame: ``proba_<class>`` columns (mean over the saved
    seeds unless ``seed`` picks one), then ``predicted``; rows in input order. See
    :func:`fusionstudy.scoring.score` for the errors it raises.
    """
    from fusionstudy.scoring import score
    from fusionstudy.study.saving import load_preprocessing

    return score(load_preprocessing(Path(study)), model, rows, seed)


__all__ = ["run_study", "load_study", "predict"]
