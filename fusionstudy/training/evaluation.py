"""Evaluation of a trained model: the perturbed test copies of Part 3 (:func:`eval_suite`), one
:class:`records.EvalRecord` per item (:func:`evaluate`), and the fusion's per-modality weights
(:func:`fusion_diagnostics`). ``study.train_run`` calls these once per trained model.
"""
from __future__ import annotations

import numpy as np
import torch

from fusionstudy.config import Config
from fusionstudy.data import perturb
from fusionstudy.data.prepare import Prepared, SplitData
from fusionstudy.metrics import classification_metrics
from fusionstudy.records import EvalRecord
from fusionstudy.training.loop import (encoder_features, forward_batches, predict, predict_conditional,
                                      predict_marginal, predict_with_features)


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


def _same_inputs(a: SplitData, b: SplitData, modality: str) -> bool:
    """Whether ``a`` and ``b`` (same rows) feed ``modality``'s encoder identical inputs."""
    if modality == "tabular":
        return np.array_equal(a.cat, b.cat) and np.array_equal(a.num, b.num)
    if a.emb is not None or b.emb is not None:
        return a.emb is not None and b.emb is not None and np.array_equal(a.emb, b.emb)
    return all(np.array_equal(getattr(a.text, f), getattr(b.text, f)) for f in ("indptr", "indices", "data"))


class _TestCache:
    """What every suite item of one model shares, computed once: the clean test rows' encoder
    features and probabilities, and each modality's marginal removal over all rows.

    A perturbed copy of the same rows re-encodes only the modalities whose inputs it changed
    (``loop.predict_with_features``: equal to ``loop.predict`` bit for bit); a copy that changes
    none of the model's inputs (a tabular noise for the text-only model; removing a modality the
    model does not use) has the clean answer; a per-sample drop of modality m on rows R takes the
    full removal's rows R and the clean prediction elsewhere — row i's marginal prediction
    ``mean_j p(x_i, x_j^m)`` does not depend on which other rows are dropped (equal to
    ``loop.predict_marginal`` on R up to float32 rounding of a different batching).
    """

    def __init__(self, model, clean: SplitData, background: SplitData):
        self.model, self.clean, self.background = model.eval(), clean, background
        self.feats = encoder_features(model, clean, np.arange(len(clean)), model.modalities)
        self.proba = predict_with_features(model, clean, self.feats)
        self.metrics = classification_metrics(clean.y, self.proba)
        self.removed: dict[str, np.ndarray] = {}

    def unchanged(self, split: SplitData) -> list[str] | None:
        """The model's modalities whose inputs ``split`` leaves as the clean split has them, or
        ``None`` when ``split`` holds other rows."""
        if split is not self.clean and (len(split) != len(self.clean)
                                        or not np.array_equal(split.row_ids, self.clean.row_ids)):
            return None
        return [m for m in self.model.modalities if split is self.clean or _same_inputs(split, self.clean, m)]

    def is_clean(self, split: SplitData, marg) -> bool:
        """Whether the item's prediction is the clean one: same inputs, nothing the model uses removed."""
        return (self.unchanged(split) == self.model.modalities
                and (marg is None or marg[0] not in self.model.modalities))

    def predict(self, split: SplitData, marg, pool: SplitData | None) -> np.ndarray:
        """The item's ``(n, n_classes)`` probabilities (see the class docstring)."""
        same = self.unchanged(split)
        if marg is None:
            return predict(self.model, split) if same is None else \
                predict_with_features(self.model, split, {m: self.feats[m] for m in same})
        modality, rows = marg
        if isinstance(rows, str) or same != self.model.modalities:  # conditional, or perturbed inputs
            return _predict_item(self.model, split, marg, self.background, pool)
        if modality not in self.removed:
            self.removed[modality] = predict_marginal(self.model, self.clean, self.background, modality)
        if rows is None:
            return self.removed[modality]
        out = self.proba.copy()
        out[rows] = self.removed[modality][rows]
        return out


def _predict_item(model, split: SplitData, marg, background: SplitData, pool: SplitData | None) -> np.ndarray:
    """One suite item's probabilities predicted from its own inputs (no shared work)."""
    if marg is None:
        return predict(model, split)
    if isinstance(marg[1], str) and marg[1] == "conditional":
        return predict_conditional(model, split, pool, marg[0], len(background))
    return predict_marginal(model, split, background, *marg)


@torch.no_grad()
def evaluate(model, suite: list, spec, key: str, fp: str, background: SplitData,
             pool: SplitData | None = None) -> tuple[list[EvalRecord], dict[str, np.ndarray]]:
    """One evaluation record per suite item (the identity of ``spec``, a ``study.RunSpec``, + the
    item's description + metrics), and the test probabilities of the :data:`STORED_PERTURBATIONS` items of a fused
    model, keyed ``"<perturbation>:<modality>"``. ``background`` (K rows) is what an interventional
    removal averages over; ``pool`` what a conditional one searches for K neighbours.

    The first item's split (the clean test rows) is encoded once and the work the items share is
    done once (:class:`_TestCache`); the records equal those of predicting every item from
    scratch (bit for bit, per-sample drops up to float32 rounding; tests/test_evaluation.py).
    """
    out, kept = [], {}
    cache = _TestCache(model, suite[0][1], background) if suite and suite[0][2] is None else None
    for meta, split, marg in suite:
        if cache is not None and cache.is_clean(split, marg):  # the model sees the clean inputs: same answer
            proba, metrics = cache.proba, cache.metrics
        else:
            proba = cache.predict(split, marg, pool) if cache is not None else \
                _predict_item(model, split, marg, background, pool)
            metrics = classification_metrics(split.y, proba)
        out.append(EvalRecord(run_key=key, model=spec.model, seed=spec.seed, part=spec.part, config_fp=fp,
                              n=len(split), metrics=dict(metrics), training=spec.training, **meta))
        if meta["perturbation"] in STORED_PERTURBATIONS and spec.kind == "fusion":
            kept[f"{meta['perturbation']}:{meta['modality']}"] = proba
    return out, kept
