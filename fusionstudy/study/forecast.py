"""Before-fusion forecast inputs: one classical unimodal model per modality, fit on train rows only,
scored on the validation rows, stored in ``forecasts.jsonl`` (:class:`fusionstudy.records.ForecastRecord`).

What the forecast does with them (cross-fitted stacking, predicted gain, power) is
:mod:`fusionstudy.analysis.forecast`. Here: which situations get a forecast (every split clean, and
every Part 5 weakening of the main split, as the study trains them) and the fits:

* text — L2 logistic regression on the TF-IDF matrix, C from ``references.C_GRID`` picked on a
  stratified fifth of the train rows (ROC-AUC), then refit on every train row;
* tabular — ``HistGradientBoostingClassifier`` as ``ref_hist_gbdt`` (its early stopping holds out
  a tenth of the *train* rows).

Nothing is selected or early-stopped on the validation rows that score the models; no test row is read.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from fusionstudy.config import Config
from fusionstudy.data.perturb import weakened
from fusionstudy.data.prepare import Prepared, prepare
from fusionstudy.metrics import classification_metrics
from fusionstudy.records import ForecastRecord, RunStore
from fusionstudy.study.protocol import n_splits, part5_grid, staged_prepare
from fusionstudy.study.provenance import CODE, git_hash
from fusionstudy.study.references import C_GRID, categorical_mask, one_thread, tabular_matrix

log = logging.getLogger(__name__)

HOLDOUT = 0.2  # share of the train rows that picks the text model's C
SEED = 0  # the forecast's one seed: the HistGradientBoosting state, the hold-out, the weakening


def fit_text(prep: Prepared, seed: int = SEED) -> tuple[np.ndarray, dict]:
    """TF-IDF logistic regression fit on the train rows; C picked on a stratified hold-out of them.

    Returns ``(validation probabilities (n_val, n_classes), {"C": ..., "C_grid": [...]})``.
    """
    tr, va = prep.splits["train"], prep.splits["val"]
    fit, hold = train_test_split(np.arange(len(tr.y)), test_size=HOLDOUT, stratify=tr.y, random_state=seed)
    score = {c: classification_metrics(tr.y[hold], LogisticRegression(C=c, max_iter=3000).fit(tr.text[fit], tr.y[fit])
                     .predict_proba(tr.text[hold]))["roc_auc"] for c in C_GRID}
    c = max(score, key=score.get)
    model = LogisticRegression(C=c, max_iter=3000).fit(tr.text, tr.y)
    return model.predict_proba(va.text), {"C": c, "C_grid": list(C_GRID)}


def fit_tabular(prep: Prepared, seed: int = SEED) -> tuple[np.ndarray, dict]:
    """Histogram gradient boosting on the train rows (early stopping on a tenth of them).

    Returns ``(validation probabilities (n_val, n_classes), {"random_state": seed})``.
    """
    tr = prep.splits["train"]
    hgb = HistGradientBoostingClassifier(categorical_features=categorical_mask(prep), random_state=seed)
    hgb.fit(tabular_matrix(tr), tr.y)
    return hgb.predict_proba(tabular_matrix(prep.splits["val"])), {"random_state": seed, "n_iter": int(hgb.n_iter_)}


FITS = {"text": fit_text, "tabular": fit_tabular}


def forecast_key(split: int, weaken: str) -> str:
    """``split=k|weaken=kind:modality:level`` (``weaken=`` empty when clean)."""
    return f"split={split}|weaken={weaken}"


def situations(cfg: Config, modalities: tuple[str, ...]) -> list[tuple[int, tuple]]:
    """``(split, weakening)`` pairs that get a forecast: every split clean, then every Part 5
    point of the main split (``protocol.part5_grid``) when the study trains Part 5 models
    (``study.imbalance_models``; a forecast without a measurement is never scored)."""
    out = [(k, ()) for k in range(n_splits(cfg))]
    return out + ([(0, w) for w in part5_grid(cfg, modalities)] if cfg.study.imbalance_models else [])


def forecast_record(prep: Prepared, cfg: Config, split: int, weaken: tuple) -> ForecastRecord:
    """Fit both unimodal models on ``prep`` (already weakened as ``weaken``) and record their
    validation probabilities. Threads: limited to one BLAS/OpenMP thread per fit."""
    t0, proba, models = time.perf_counter(), {}, {}
    with one_thread():  # one thread: OpenMP trees thrash on a shared machine (and results depend on it)
        for m in prep.modalities:
            p, models[m] = FITS[m](prep)
            proba[m] = np.round(p, 6).tolist()
    tag = ":".join(map(str, weaken))
    return ForecastRecord(forecast_key(split, tag), cfg.fingerprint(), split, tag, prep.splits["val"].y.tolist(),
                          proba, models, round(time.perf_counter() - t0, 2), CODE.get("git") or git_hash(),
                          dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def forecast_split(cfg: Config, prep: Prepared, split: int, weakens: list[tuple]) -> list[ForecastRecord]:
    """The records of split ``split``'s situations ``weakens`` (``()`` = clean), ``prep`` being that
    split's prepared data (each weakening drawn with :data:`SEED`)."""
    return [forecast_record(weakened(prep, w, SEED) if w else prep, cfg, split, w) for w in weakens]


def run_forecasts(cfg: Config, folder: Path, data: pd.DataFrame | None = None,
                  prep0: Prepared | None = None, stage: Path | None = None,
                  submit: Callable[[int, list[tuple]], Future] | None = None) -> int:
    """Compute and store every missing forecast record of the study in ``folder`` (resumable:
    stored keys of this config are skipped). ``prep0`` is the main split's prepared data if the
    caller has it; the other splits' data are prepared here, and kept under ``stage`` for the
    study's later use when given (``protocol.staged_prepare``). Returns the number of records
    written; nothing for one-modality data.

    ``submit(split, weakenings)`` (optional) runs :func:`forecast_split` elsewhere — the study's
    worker processes, which prepare (and stage) a resplit's data themselves — and returns a future
    of its records: each resplit is one task, each weakening of the main split another, so two
    workers fit the forecast in about half the time. The records are the same either way (one
    seed, one thread per fit); only their order in ``forecasts.jsonl`` differs. This process stays
    the store's single writer.
    """
    store = RunStore(folder)
    fp = cfg.fingerprint()
    have = {k for k, r in store.forecasts().items() if r.config_fp == fp}
    prep0 = prepare(cfg, data) if prep0 is None else prep0
    modalities = prep0.modalities
    todo = [(k, w) for k, w in situations(cfg, modalities) if forecast_key(k, ":".join(map(str, w))) not in have]
    if not todo or len(modalities) < 2:
        return 0
    if submit is not None:  # the longest tasks (a resplit prepares its data) first
        tasks = sorted(((k, [w]) for k, w in todo), key=lambda t: t[0] == 0)
        futures = [submit(k, ws) for k, ws in tasks]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="before-fusion forecast", unit="fit",
                        leave=False):
            for rec in fut.result():
                store.append_forecast(rec)
    else:
        preps: dict[int, Prepared] = {0: prep0}
        for k, w in tqdm(todo, desc="before-fusion forecast", unit="fit", leave=False):
            if k not in preps:
                preps = {k: staged_prepare(cfg, data, k, stage)}  # one split's data at a time
            store.append_forecast(forecast_split(cfg, preps[k], k, [w])[0])
    log.info(f"before-fusion forecast: {len(todo)} situation(s) fit")
    return len(todo)
