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
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fusionstudy.config import Config
from fusionstudy.records import StudyResults, load_study

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
        On a bad spec or table (the message names the column or key and what to do).
    """
    import torch  # the training stack loads only when a study is run, never to read results

    from fusionstudy.study.runner import run_study as _run

    frame = data if isinstance(data, pd.DataFrame) else None
    if data is not None and frame is None:
        cfg = replace(cfg, dataset=replace(cfg.dataset, source=str(Path(data).resolve())))
    torch.set_num_threads(cfg.train.threads)
    folder = _run(cfg, None if out is None else str(Path(out).resolve()), data=frame)
    if report:
        from fusionstudy.report.write import write_reports
        write_reports(folder)
    return load_study(folder)


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
