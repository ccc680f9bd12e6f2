"""Comparators that are not trained by the loop: the classical references of every split (fit in a
driver thread while the workers train) and the post-hoc late ensemble of the unimodal models."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fusionstudy.config import Config
from fusionstudy.data.prepare import Prepared
from fusionstudy.records import PredictionRecord, RunRecord, RunStore, run_key
from fusionstudy.study.provenance import make_record
from fusionstudy.study.references import REFERENCES, REQUIRES, SEEDED, fit_references, late_average, one_thread


def late_ensemble(prep: Prepared, cfg: Config, store: RunStore, seed: int,
                  split: int = 0) -> tuple[RunRecord, PredictionRecord] | None:
    """Post-hoc late fusion: the mean of the seed's unimodal models' logits (log-probabilities,
    then softmax; ``references.late_average``), as the classical ``ref_late_avg`` does.

    No extra training; its parameter count and train seconds are the models' sums. Returns
    ``None`` unless a plainly trained unimodal run of every modality is stored for this seed.
    """
    fp, preds = cfg.fingerprint(), store.predictions()
    recs = {r.modalities[0]: r for r in store.records() if r.config_fp == fp and r.seed == seed and r.split == split
            and r.kind == "unimodal" and r.training.regime == "plain" and r.run_key in preds}
    if len(prep.modalities) < 2 or any(m not in recs for m in prep.modalities):
        return None
    comps = [recs[m] for m in prep.modalities]
    key = run_key("late_ensemble", seed, fp, split)
    n_cls = len(prep.classes)
    probas = {s: late_average([preds[r.run_key].proba(s, n_cls) for r in comps]) for s in ("val", "test")}
    rec = make_record(cfg, key, "late_ensemble", "ensemble", prep.modalities, "late_ensemble", "part2", seed, probas,
                      prep.splits, split=split, params={"total": sum(r.params["total"] for r in comps)},
                      train_seconds=sum(r.train_seconds for r in comps), components=[r.run_key for r in comps])
    return rec, PredictionRecord.of(key, probas)


def planned_references(cfg: Config, modalities: tuple[str, ...], split: int = 0) -> list[tuple[str, int]]:
    """``(name, seed)`` of every reference run split ``split`` stores (:func:`reference_runs`): each
    reference the modalities allow at the split's first seed, the seed-dependent ones
    (``references.SEEDED``) at every seed (``study.seeds`` on split 0, ``study.split_seeds`` on the
    others); none when ``study.references`` is off."""
    if not cfg.study.references:
        return []
    seeds = cfg.study.seeds if split == 0 else cfg.study.split_seeds
    return [(n, seed) for i, seed in enumerate(seeds) for n in REFERENCES
            if (i == 0 or n in SEEDED) and set(REQUIRES[n]) <= set(modalities)]


def reference_runs(prep: Prepared, cfg: Config, skip: set[str] = frozenset(),
                   split: int = 0) -> list[tuple[RunRecord, PredictionRecord]]:
    """Classical references on the same split (``study.references``): the unimodal ones and the
    classical early, late and stacked fusions the data's modalities allow; each one record. The
    seed-dependent ones (``references.SEEDED``) are fit once per seed of the split (``study.seeds``
    on split 0, ``study.split_seeds`` on the others), the others once (and reused as components of
    the later seeds' late averaging and stacking: same predictions, and their ``seconds`` still
    include the component's fit)."""
    fp, out, unseeded = cfg.fingerprint(), [], {}
    planned = planned_references(cfg, prep.modalities, split)
    for seed in cfg.study.seeds if split == 0 else cfg.study.split_seeds:
        names = [n for n, s in planned if s == seed and run_key(n, seed, fp, split) not in skip]
        fitted = dict(unseeded)  # a seed-free component (the text logistic regression) is fit once per split
        # one thread: the fits are mostly single-threaded lbfgs, and HistGradientBoosting's OpenMP threads
        # spin-wait to a crawl when another process holds a core (seen: 285 s instead of 18 s under load)
        with one_thread():
            refs = fit_references(prep, names, seed=seed, fitted=fitted) if names else []
        unseeded.update({n: r for n, r in fitted.items() if n not in SEEDED})
        for ref in refs:
            key = run_key(ref.name, seed, fp, split)
            rec = make_record(cfg, key, ref.name, "reference", ref.modalities, ref.fusion, "reference", seed,
                              ref.proba, prep.splits, split=split, params={"total": ref.params}, train_seconds=ref.seconds,
                              estimator=ref.estimator)
            out.append((rec, PredictionRecord.of(key, ref.proba)))
    return out


class References:
    """The classical references of a study (:func:`reference_runs`), fit in a driver thread when
    ``background`` (else on :meth:`store_into`); :meth:`store_into` waits for them, appends them
    to the store (the driver stays its single writer) and sets ``secs["reference"]`` (their own
    fit seconds, which overlap Parts 1, 2, 4 when in the background)."""

    def __init__(self, prep: Prepared, cfg: Config, done: set[str], background: bool, split: int = 0):
        self._args, self._stored, self._split = (prep, cfg, done), False, split
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="references") if background and cfg.study.references else None
        self._future = self._pool.submit(self._fit) if self._pool else None

    def _fit(self) -> tuple[list, float]:
        prep, cfg, done = self._args
        t0 = time.perf_counter()
        out = reference_runs(prep, cfg, skip=done, split=self._split) if cfg.study.references else []
        return out, time.perf_counter() - t0

    def store_into(self, store: RunStore, secs: dict) -> None:
        if self._stored:
            return
        out, took = self._future.result() if self._future else self._fit()
        secs["reference"] = secs.get("reference", 0.0) + took
        for rec, preds in out:
            store.append(rec, preds)
        self._stored = True

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)


def store_ensembles(prep: Prepared, cfg: Config, store: RunStore, done: set[str], seeds: list[int],
                    split: int = 0) -> None:
    """Store the post-hoc late ensemble of each seed of ``split`` not yet in ``done`` (once its
    unimodal runs are stored)."""
    for seed in seeds:
        made = None if run_key("late_ensemble", seed, cfg.fingerprint(), split) in done else \
            late_ensemble(prep, cfg, store, seed, split)
        if made:
            store.append(*made)
