"""Evaluation of a trained model: the perturbed test copies of Part 3 (:func:`eval_suite`), one
:class:`records.EvalRecord` per item (:func:`evaluate`), and the fusion's per-modality weights
(:func:`fusion_diagnostics`). ``study.train_run`` calls these once per trained model.
"""
from __future__ import annotations

import numpy as np

from fusionstudy.config import Config
from fusionstudy.data import perturb
from fusionstudy.data.prepare import Prepared, SplitData
from fusionstudy.metrics import classification_metrics
from fusionstudy.records import EvalRecord
from fusionstudy.training.loop import forward_batches, predict, predict_conditional, predict_marginal


def fusion_diagnostics(model, split: SplitData) -> dict:
    """Summaries of the fusion's per-modality weights on ``split`` (GMU gates, attention weights,
    learned late weights): mean, quantiles and a 20-bin histogram per modality. Empty if none."""
    chunks: dict[str, list] = {}
    for _ in forward_batches(model, split):
        for k, v in model.fusion.diagnostics.items():
            chunks.setdefault(k, []).append(v.reshape(-1, len(model.fusion.dims)).cpu().numpy())
    out = {}
    for k, parts in chunks.items():
        w = np.concatenate(parts)
        out[k] = {m: {"mean": float(w[:, j].mean()),
                      "quantiles": np.quantile(w[:, j], [0.05, 0.25, 0.5, 0.75, 0.95]).round(5).tolist(),
                      "hist": np.histogram(w[:, j], bins=20, range=(0, 1))[0].tolist()}
                  for j, m in enumerate(model.fusion.dims)}
    return out


def eval_suite(prep: Prepared, cfg: Config, full: bool = True) -> list[tuple[dict, SplitData, tuple | None]]:
    """Perturbed copies of the test split: ``(description, split, marginal)`` items.

    ``marginal = (modality, rows)`` marks a *removal*: the model predicts with that modality
    marginalised out for ``rows`` (``None`` = all; ``loop.predict_marginal``: *interventional*, a
    random train row's modality); ``rows = "conditional"`` marks ``remove_conditional``, the
    modality drawn from train rows that resemble the kept one (``loop.predict_conditional``: the
    modality *unknown*). ``missing`` feeds
    the model's own missing-input encoding instead (``perturb.remove``). ``full=False`` gives the
    Part 5 suite (clean, remove and missing per modality); ``full=True`` adds per-sample drop
    (marginalised), every noise family at every severity, ``permutations`` shuffles per modality,
    and the rows whose text is naturally missing as their own subset.
    """
    test, st = prep.splits["test"], cfg.study
    item = lambda p, m, sev, split, marg=None, subset="test": ({"perturbation": p, "modality": m, "severity": sev,  # noqa: E731
                                                               "subset": subset}, split, marg)
    suite = [item("clean", "none", 0.0, test)]
    suite += [item("remove", m, 1.0, test, (m, None)) for m in prep.modalities]
    suite += [item("remove_conditional", m, 1.0, test, (m, "conditional")) for m in prep.modalities]
    suite += [item("missing", m, 1.0, perturb.remove(test, prep, m)) for m in prep.modalities]
    if not full or len(prep.modalities) < 2:
        return suite
    suite += [item("drop", m, q, test, (m, perturb.drop_rows(len(test), q, cfg.split.seed)))
              for m in prep.modalities for q in st.drop_levels]
    suite += [item(name, perturb.MODALITY_OF[name], sev, fn(test, prep, sev, cfg.split.seed))
              for name, fn in perturb.NOISE.items() for sev in st.noise_levels]
    suite += [item("shuffle", m, float(i), perturb.shuffle(test, prep, m, i))
              for m in prep.modalities for i in range(st.permutations)]
    missing = np.flatnonzero(test.text_missing)
    if len(missing):
        suite.append(item("clean", "none", 0.0, test.subset(missing), subset="text_missing"))
    return suite


# test predictions kept per fused run, for paired intervals on removals
STORED_PERTURBATIONS = ("remove", "remove_conditional")


def _predict_item(model, split: SplitData, marg, background: SplitData, pool: SplitData | None) -> np.ndarray:
    if marg is None:
        return predict(model, split)
    if isinstance(marg[1], str) and marg[1] == "conditional":
        return predict_conditional(model, split, pool, marg[0], len(background))
    return predict_marginal(model, split, background, *marg)


def evaluate(model, suite: list, spec, key: str, fp: str, background: SplitData,
             pool: SplitData | None = None) -> tuple[list[EvalRecord], dict[str, np.ndarray]]:
    """One evaluation record per suite item (the identity of ``spec``, a ``study.RunSpec``, + the
    item's description + metrics), and the test probabilities of the :data:`STORED_PERTURBATIONS` items of a fused
    model, keyed ``"<perturbation>:<modality>"``. ``background`` (K rows) is what an interventional
    removal averages over; ``pool`` what a conditional one searches for K neighbours."""
    out, kept = [], {}
    for meta, split, marg in suite:
        proba = _predict_item(model, split, marg, background, pool)
        out.append(EvalRecord(run_key=key, model=spec.model, seed=spec.seed, part=spec.part, config_fp=fp,
                              n=len(split), metrics=classification_metrics(split.y, proba), training=spec.training,
                              **meta))
        if meta["perturbation"] in STORED_PERTURBATIONS and spec.kind == "fusion":
            kept[f"{meta['perturbation']}:{meta['modality']}"] = proba
    return out, kept
