"""One run of the protocol, start to end: build, fit, predict, record, save and evaluate a model
(:func:`train_run`), or the seeds of one model as a stack (:func:`train_stack`). ``study.runner``
hands these to its executor and stores what they return; nothing here writes a file except a plainly
trained model's weights (``save_dir``)."""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from fusionstudy.config import Config
from fusionstudy.data import perturb
from fusionstudy.data.perturb import weakened
from fusionstudy.data.prepare import Prepared
from fusionstudy.records import EvalRecord, PredictionRecord, RunRecord
from fusionstudy.study.protocol import SAVED_PARTS, RunSpec
from fusionstudy.study.provenance import make_record
from fusionstudy.study.saving import save_weights
from fusionstudy.training.batched import fit_stack, make_stack, stack_blocker
from fusionstudy.training.evaluation import eval_suite, evaluate, fusion_diagnostics
from fusionstudy.training.interaction import emap_record
from fusionstudy.training.loop import background_rows, fit, make_model, predict
from fusionstudy.training.regimes import build_regime


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
    tr = spec.training
    p = (weak or weakened(prep, tr.weaken, spec.seed)) if tr.weaken else prep
    model = make_model(spec.modalities, spec.fusion, p, cfg, spec.seed)
    batch_fn = (lambda b, rng: perturb.modality_dropout(b, p, tr.moddrop_p, rng)) if tr.moddrop_p else None
    t0 = time.perf_counter()  # a remedy's set-up (G-Blend's weight estimation) counts as training time
    model, regime = build_regime(tr.remedy, model, p.splits["train"], cfg.train, spec.seed)
    setup = time.perf_counter() - t0
    res = fit(model, p.splits["train"], p.splits["val"], cfg.train, spec.seed, batch_fn=batch_fn, progress=progress,
              regime=regime)
    res.train_seconds += setup
    return _scored(spec, model, res, p, prep, cfg, suite, save_dir, regime)


def train_stack(specs: tuple[RunSpec, ...], prep: Prepared, cfg: Config, suite: list | None = None,
                save_dir: Path | None = None) -> list[tuple[RunRecord, PredictionRecord, list[EvalRecord]]]:
    """:func:`train_run` for runs that differ only in their seed, trained as one stack
    (``training.batched.fit_stack``; each member equals its seed trained alone within 1e-4), then
    scored one by one as :func:`train_run` scores them. One output per spec, in order.

    Raises
    ------
    ValueError
        If the runs differ in more than their seed, or their training cannot be stacked
        (``batched.stack_blocker``).
    """
    first = specs[0]
    if any(replace(sp, seed=first.seed) != first for sp in specs):
        raise ValueError(f"a stack trains the seeds of one run; got {[sp.key('') for sp in specs]}")
    why = stack_blocker(cfg, first.training.regime, len(first.modalities))
    if why:
        raise ValueError(f"{first.model}: {why} trains one model at a time (train_run)")
    seeds = [sp.seed for sp in specs]
    models, gens = make_stack(first.modalities, first.fusion, prep, cfg, seeds)
    results = fit_stack(models, gens, prep.splits["train"], prep.splits["val"], cfg.train, seeds)
    return [_scored(sp, m, r, prep, prep, cfg, suite, save_dir) for sp, m, r in zip(specs, models, results)]


def stack_tasks(specs: list[RunSpec], cfg: Config) -> list[RunSpec | tuple[RunSpec, ...]]:
    """``specs`` as tasks: the runs that differ only in their seed, with a stackable training
    (``batched.stack_blocker``), as one tuple (a stack) when ``train.batched`` and the local
    executor (a Ray task trains one model); the others alone. First-seen order is kept."""
    if not cfg.train.batched or cfg.train.executor != "local":
        return list(specs)
    groups: dict = {}
    for sp in specs:
        alone = stack_blocker(cfg, sp.training.regime, len(sp.modalities)) is not None
        groups.setdefault(sp if alone else replace(sp, seed=-1), []).append(sp)
    return [g[0] if len(g) == 1 else tuple(g) for g in groups.values()]


def _scored(spec: RunSpec, model, res, p: Prepared, prep: Prepared, cfg: Config, suite: list | None,
            save_dir: Path | None, regime=None) -> tuple[RunRecord, PredictionRecord, list[EvalRecord]]:
    """Predict, record, save and evaluate a fitted model (``p``: the data it trained on; ``regime``:
    its remedy regime, whose G-Blend weights are recorded)."""
    fp = cfg.fingerprint()
    key, tr = spec.key(fp), spec.training
    probas = {s: predict(model, p.splits[s]) for s in ("val", "test")}
    if save_dir is not None and tr.regime == "plain" and spec.part in SAVED_PARTS:
        save_weights(model, save_dir, spec.model, spec.seed, key)
    rec = make_record(cfg, key, spec.model, spec.kind, spec.modalities, spec.fusion, spec.part, spec.seed, probas,
                      p.splits, training=tr, split=spec.split, params=model.param_counts(),
                      diagnostics=fusion_diagnostics(model, p.splits["test"]), **asdict(res))
    if getattr(regime, "weights", None):
        rec.diagnostics["gblend_weights"] = regime.weights
    if spec.split == 0 and (spec.part in ("part2", "part4") or (tr.regime == "remedy" and not tr.weaken)):
        rec.interaction = {"emap": emap_record(model, p.splits["test"], cfg.study.emap_rows)}
    if suite is None or tr.weaken:
        suite = eval_suite(p, cfg, full=False)
    truncated = tr.weaken and tr.weaken[0] == "truncate"
    train = (p if truncated else prep).splits["train"]
    background = background_rows(train, cfg.study.marginal_k, spec.seed)
    pool = background_rows(train, min(cfg.study.conditional_pool, len(train)), spec.seed)
    evals, kept = evaluate(model, suite, spec, key, fp, background, pool)
    return rec, PredictionRecord.of(key, probas, kept), evals
