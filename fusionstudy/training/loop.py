"""The one training loop every part of the study reuses: :func:`fit`, :func:`predict` and the
model factory :func:`make_model`. The device is decided here, once (CPU on this machine).
"""
from __future__ import annotations

import copy
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from fusionstudy.config import MODALITIES, Config, TrainConfig
from fusionstudy.data.prepare import Prepared, SplitData, to_inputs
from fusionstudy.metrics import classification_metrics
from fusionstudy.models.multimodal import MultimodalModel, build_model
from fusionstudy.training.modulation import modulate_gradients
from fusionstudy.training.remedies import Plain
from fusionstudy.training.optim import RowAdagrad, coalesce_rows

DEVICE = torch.device("cpu")  # 2-core CPU machine; models never name a device themselves

BatchFn = Callable[[SplitData, np.random.Generator], SplitData]


@dataclass
class FitResult:
    """What :func:`fit` learned about training: curves and timings.

    ``curves`` maps ``epoch, train_loss`` (running mean over the epoch's batches),
    ``train_eval_loss`` (eval-mode log loss on a fixed 4,000-row train sample),
    ``val_loss, val_roc_auc, seconds`` (the whole epoch), ``train_seconds`` (its training steps only) and
    ``grad_norm_<modality>`` (mean L2 norm of that encoder's gradient per step) to per-epoch lists.
    """

    best_epoch: int
    epochs_run: int
    train_seconds: float
    samples_per_s: float
    diverged: bool
    curves: dict[str, list[float]] = field(default_factory=dict)


def move(inputs: dict[str, tuple]) -> dict[str, tuple]:
    """Put every tensor of a model-input dict on :data:`DEVICE`."""
    return {k: tuple(t.to(DEVICE) for t in v) for k, v in inputs.items()}


@torch.no_grad()
def forward_batches(model: MultimodalModel, split: SplitData, batch_size: int = 4096):
    """Yield the logits ``(B, n_classes)`` of consecutive row batches of ``split``, in eval mode
    without gradients (the one batched-inference loop; fusion diagnostics are read between yields)."""
    model.eval()
    for start in range(0, len(split), batch_size):
        idx = np.arange(start, min(start + batch_size, len(split)))
        yield model(move(to_inputs(split, idx)))


def predict(model: MultimodalModel, split: SplitData, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities ``(n_samples, n_classes)`` for every row of ``split`` in eval mode."""
    out = [torch.softmax(logits, dim=1).cpu() for logits in forward_batches(model, split, batch_size)]
    proba = torch.cat(out).double().numpy()
    return proba / proba.sum(axis=1, keepdims=True)  # exact float64 normalisation for scikit-learn


@torch.no_grad()
def predict_with_features(model: MultimodalModel, split: SplitData, known: dict[str, torch.Tensor],
                          batch_size: int = 4096) -> np.ndarray:
    """:func:`predict`, with the features of the modalities in ``known`` (``{modality: (n, d_m)}``,
    from :func:`encoder_features` of the same rows and ``batch_size``) taken as given: only the other
    encoders run. Encoders see one modality each and the batches are :func:`predict`'s, so the
    result equals ``predict(model, split)`` bit for bit when ``known`` holds this split's own
    features. Returns ``(n_samples, n_classes)`` float64 probabilities (rows sum to 1)."""
    model.eval()
    out, todo = [], [m for m in model.modalities if m not in known]
    for start in range(0, len(split), batch_size):
        idx = np.arange(start, min(start + batch_size, len(split)))
        inputs = move(to_inputs(split, idx)) if todo else {}
        feats = {m: known[m][idx] if m in known else model.encoders[m](inputs[m]) for m in model.modalities}
        out.append(torch.softmax(model.head(model.fusion(feats)), dim=1).cpu())
    proba = torch.cat(out).double().numpy()
    return proba / proba.sum(axis=1, keepdims=True)


_PARAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _params_of(model: MultimodalModel) -> tuple[list[torch.nn.Parameter], dict[str, list[torch.nn.Parameter]]]:
    """``(every parameter, {encoder name: its parameters})`` of ``model``, listed once per model:
    walking the module tree costs ~0.4 ms, 5% of a training step of early fusion."""
    got = _PARAMS.get(model)
    if got is None:
        got = _PARAMS[model] = (list(model.parameters()), {n: list(e.parameters()) for n, e in model.encoders.items()})
    return got


def _grad_norms(model: MultimodalModel) -> dict[str, float]:
    """L2 norm of each encoder's gradient (sparse gradients must be coalesced: one value per row)."""
    norms = {}
    for name, params in _params_of(model)[1].items():
        grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in params if p.grad is not None]
        norms[name] = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    return norms


def _optimizers(model: MultimodalModel, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for every dense parameter; :class:`optim.RowAdagrad` at ``text_lr`` for the tables built
    with sparse gradients (the text table when ``text_optimizer = "adagrad"``, see ``make_model``)."""
    sparse = [p for m in model.modules() if isinstance(m, torch.nn.EmbeddingBag) and m.sparse for p in m.parameters()]
    dense = [p for p in model.parameters() if all(p is not q for q in sparse)]
    # the fused CPU kernel is ~4x faster than the default on a dense 2M-parameter embedding table
    opts = [torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)]
    return opts + [RowAdagrad(sparse, lr=cfg.text_lr)] if sparse else opts


def _step(model: MultimodalModel, opts: list, scheds: list, loss: torch.Tensor,
          ogm: tuple[dict[str, float], torch.Generator] | None = None) -> dict[str, float]:
    """One optimisation step on ``loss``; returns each encoder's gradient norm (see :func:`_grad_norms`)
    of the loss itself, before ``ogm = (coefficients, generator)`` modulates it (OGM-GE)."""
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for p in _params_of(model)[0]:  # one value per touched row: exact norms, cheap row updates
        if p.grad is not None and p.grad.is_sparse:
            p.grad = coalesce_rows(p.grad)
    norms = _grad_norms(model)
    if ogm is not None:
        modulate_gradients(model, *ogm)
    for opt, sched in zip(opts, scheds):
        opt.step()
        sched.step()
    return norms


def fit(model: MultimodalModel, train: SplitData, val: SplitData, cfg: TrainConfig, seed: int,
        batch_fn: BatchFn | None = None, progress=None, regime: Plain | None = None) -> FitResult:
    """Train with AdamW (and RowAdagrad for a sparse text table, see ``TrainConfig.text_optimizer``)
    and early stopping on validation log loss; restore the best weights.

    Parameters
    ----------
    model : the wrapper to train (modified in place).
    train, val : encoded splits.
    cfg : learning rates, weight decay, text-table optimiser, batch size, max epochs, patience,
        and ``ogm_alpha``: > 0 trains a two-modality model with OGM-GE (``training.modulation``;
        a one-modality model trains plainly).
    seed : controls batch order and OGM-GE's noise (initialisation is seeded by the caller).
    batch_fn : optional ``(batch: SplitData, rng) -> SplitData`` applied to each training batch
        before it becomes tensors (modality dropout).
    progress : optional tqdm bar; its postfix shows the epoch and validation loss.
    regime : the batch loss and gradient modulation (``training.remedies``: plain, OGM-GE,
        G-Blend, MLA); default plain (OGM-GE on every two-modality run when ``cfg.ogm_alpha > 0``).

    A non-finite training loss stops training and marks the run ``diverged``.
    """
    model.to(DEVICE)
    regime = regime or Plain(cfg.ogm_alpha)
    rng = np.random.default_rng(seed)
    opts = _optimizers(model, cfg)
    steps = cfg.max_epochs * math.ceil(len(train) / cfg.batch_size) * regime.steps_per_batch
    scheds = [torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 1.0 if cfg.schedule == "constant" else max(0.0, 1 - t / steps)) for opt in opts]
    y_train = torch.from_numpy(train.y).to(DEVICE)
    curves: dict[str, list[float]] = {k: [] for k in ("epoch", "train_loss", "train_eval_loss", "val_loss",
                                                      "val_roc_auc", "seconds", "train_seconds")}
    # a fixed train subsample scored in eval mode, so the train-val gap compares like with like
    train_probe = train.subset(rng.permutation(len(train))[:4000])
    curves.update({f"grad_norm_{m}": [] for m in model.modalities})
    best, best_state, best_epoch, bad, diverged, seen = math.inf, None, 0, 0, False, 0
    noise = torch.Generator().manual_seed(seed)  # OGM-GE's gradient noise
    t0 = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        te, losses, gn = time.perf_counter(), [], {m: [] for m in model.modalities}
        perm = rng.permutation(len(train))
        # one gather per epoch: each batch is a contiguous slice of the shuffled rows (the same
        # values as gathering its rows, without a sparse row gather per step)
        shuffled = None if batch_fn else train.subset(perm)
        for start in range(0, len(train), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            inputs = to_inputs(batch_fn(train.subset(idx), rng)) if batch_fn else \
                to_inputs(shuffled, slice(start, start + cfg.batch_size))
            batch_losses, norms = [], dict.fromkeys(model.modalities, 0.0)
            for loss, coeffs in regime.losses(model, move(inputs), y_train[idx]):
                for m, v in _step(model, opts, scheds, loss, None if coeffs is None else (coeffs, noise)).items():
                    norms[m] = max(norms[m], v)  # MLA steps one encoder at a time
                batch_losses.append(loss.item())
            for m, v in norms.items():
                gn[m].append(v)
            losses.append(float(np.mean(batch_losses)) if len(batch_losses) > 1 else batch_losses[0])
            seen += len(idx)
            if not np.isfinite(losses[-1]):
                break
        train_secs = time.perf_counter() - te
        proba = predict(model, val)
        if not (np.isfinite(losses).all() and np.isfinite(proba).all()):
            diverged = True
            break
        m = classification_metrics(val.y, proba)
        probe_loss = classification_metrics(train_probe.y, predict(model, train_probe))["log_loss"]
        for k, v in (("epoch", epoch), ("train_loss", float(np.mean(losses))), ("train_eval_loss", probe_loss),
                     ("val_loss", m["log_loss"]),
                     ("val_roc_auc", m["roc_auc"]), ("seconds", time.perf_counter() - te),
                     ("train_seconds", train_secs)):
            curves[k].append(v)
        for mod, v in gn.items():
            curves[f"grad_norm_{mod}"].append(float(np.mean(v)))
        if progress is not None:
            progress.set_postfix(epoch=epoch, val_loss=f"{m['log_loss']:.4f}")
        if m["log_loss"] < best - 1e-5:
            best, best_epoch, bad = m["log_loss"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    secs = time.perf_counter() - t0
    return FitResult(best_epoch, len(curves["epoch"]), secs, seen / secs, diverged, curves)


def make_model(modalities: tuple[str, ...], fusion: str, prep: Prepared, cfg: Config, seed: int) -> MultimodalModel:
    """Seed the initialisation, then build the wrapper with ``modalities``' encoders and ``fusion``
    on ``prep``'s fitted pipelines (see ``config.model_parts`` for a model name's modalities).

    Raises
    ------
    ValueError
        If a modality is not in the data (``prep.modalities``) or the fusion is unknown.
    """
    missing = [m for m in modalities if m not in prep.modalities]
    if missing:
        raise ValueError(f"model needs modality {missing}; dataset has {list(prep.modalities)}")
    torch.manual_seed(seed)
    return build_model(list(modalities), fusion, len(prep.classes), cfg.model, prep.text.vocab_size_,
                       prep.tabular.cardinalities_, prep.splits["train"].num.shape[1], cfg.tabular,
                       sparse_text=cfg.train.text_optimizer == "adagrad", embedding_dim=prep.text.embedding_dim)


MARGINAL_K = 50
"""Default background size K for :func:`predict_marginal`: a Monte-Carlo mean over K train rows,
so its error falls as ``1 / sqrt(K)`` while the fusion + head cost grows as ``n x K``. At K = 50
on the clothing test split (3,523 rows, early fusion) another background draw moves ROC-AUC by
~1e-4 but log loss by up to ~0.02 (K = 200: half that, 4x the time); SHAP's explainers use
50-100 background rows for the same trade-off."""


def background_rows(train: SplitData, k: int = MARGINAL_K, seed: int = 0) -> SplitData:
    """``k`` train rows drawn uniformly without replacement (fixed by ``seed``, kept in train order):
    the background a removed modality is marginalised over in :func:`predict_marginal`.

    Raises
    ------
    ValueError
        If ``k`` is not in ``[1, len(train)]``.
    """
    if not 1 <= k <= len(train):
        raise ValueError(f"background size k must be in [1, {len(train)}] (the train rows), got {k}")
    return train.subset(np.sort(np.random.default_rng(seed).choice(len(train), size=k, replace=False)))


def encoder_features(model: MultimodalModel, split: SplitData, idx: np.ndarray, modalities: list[str],
                     batch_size: int = 4096) -> dict[str, torch.Tensor]:
    """Encoder features ``{modality: (len(idx), d_m)}`` of rows ``idx``, batch by batch, from the
    same inputs as :func:`predict` (``to_inputs``). Call in eval mode under ``torch.no_grad``: each
    encoder sees only its own modality, so features of different rows may be paired freely."""
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    for start in range(0, len(idx), batch_size):
        inputs = move(to_inputs(split, idx[start:start + batch_size]))
        for m in modalities:
            parts[m].append(model.encoders[m](inputs[m]))
    return {m: torch.cat(v) for m, v in parts.items()}


def _mean_over_background(model: MultimodalModel, kept: dict[str, torch.Tensor], removed: dict[str, torch.Tensor],
                          batch_size: int) -> torch.Tensor:
    """``(n, n_classes)`` float64: row i's class probabilities averaged over every background
    feature row of the removed modality, ``batch_size`` (row, background) pairs per pass."""
    k = len(next(iter(removed.values())))
    n = len(next(iter(kept.values())))
    step, out = max(1, batch_size // k), []
    for start in range(0, n, step):
        feats = {m: z[start:start + step].repeat_interleave(k, dim=0) for m, z in kept.items()}
        c = len(next(iter(feats.values()))) // k
        feats.update({m: z.repeat(c, 1) for m, z in removed.items()})
        proba = torch.softmax(model.head(model.fusion(feats)), dim=1).double()
        out.append(proba.view(c, k, -1).mean(dim=1))
    return torch.cat(out)


@torch.no_grad()
def predict_marginal(model: MultimodalModel, split: SplitData, background: SplitData, modality: str,
                     rows: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities ``(n_samples, n_classes)`` with ``modality`` marginalised out for ``rows``.

    Row i's prediction is ``mean_j p(x_i^kept, x_j^removed)`` over the background rows j: the
    interventional value function of SHAP (Lundberg & Lee, 2017; Janzing et al., 2020, "Feature
    relevance quantification in explainable AI: a causal problem"). Unlike the model's own missing
    input (``perturb.remove``), it feeds only inputs seen in training. Encoders see one modality
    each, so the kept features are encoded once per row and the removed ones once per background
    row; only fusion + head run on the ``len(rows) x K`` pairs. A unimodal model losing its only
    modality predicts the same background mean for every row. Eval mode, deterministic.

    Parameters
    ----------
    model : the wrapper; put in eval mode.
    split : the rows to predict.
    background : K rows (see :func:`background_rows`) whose ``modality`` inputs replace the rows'.
    modality : the modality to remove. One the model does not use leaves the prediction unchanged
        (``predict(model, split)``).
    rows : indices (or boolean mask) of the rows to marginalise; default all. Other rows get the
        ordinary prediction.
    batch_size : rows per encoder pass and (row, background) pairs per fusion + head pass.

    Raises
    ------
    ValueError
        If ``modality`` is not a known modality name.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {list(MODALITIES)}")
    if modality not in model.modalities:
        return predict(model, split, batch_size)
    model.eval()
    mask = np.zeros(len(split), dtype=bool)
    mask[np.arange(len(split)) if rows is None else rows] = True
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return predict(model, split, batch_size)
    removed = encoder_features(model, background, np.arange(len(background)), [modality], batch_size)
    kept_names = [m for m in model.modalities if m != modality]
    if kept_names:
        kept = encoder_features(model, split, idx, kept_names, batch_size)
        marg = _mean_over_background(model, kept, removed, batch_size)
    else:  # nothing depends on the row: one constant prediction, computed once
        const = torch.softmax(model.head(model.fusion(removed)), dim=1).double().mean(dim=0)
        marg = const.expand(len(idx), -1)
    marg = marg.cpu().numpy()
    marg = marg / marg.sum(axis=1, keepdims=True)
    if len(idx) == len(split):
        return marg
    proba = predict(model, split, batch_size)
    proba[idx] = marg
    return proba


def _nearest(query: torch.Tensor, pool: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """``(n, k)`` indices of the ``k`` rows of ``pool`` (P, d) nearest to each row of ``query``
    (n, d) in Euclidean distance after standardising each feature by the pool's mean and SD."""
    mu, sd = pool.mean(dim=0), pool.std(dim=0).clamp_min(1e-6)
    q, p = (query - mu) / sd, (pool - mu) / sd
    return torch.cat([torch.cdist(q[s:s + chunk], p).topk(k, dim=1, largest=False).indices
                      for s in range(0, len(q), chunk)])


@torch.no_grad()
def predict_conditional(model: MultimodalModel, split: SplitData, pool: SplitData, modality: str, k: int,
                        batch_size: int = 4096) -> np.ndarray:
    """Class probabilities ``(n_samples, n_classes)`` with ``modality`` unknown *given* the kept one.

    Row i's prediction is ``mean_j p(x_i^kept, x_j^removed)`` over the ``k`` rows j of ``pool``
    (train rows) whose kept-modality features — the model's own encoder output — are nearest to
    row i's: a nearest-neighbour estimate of ``E[p | x^kept]`` with the removed modality drawn
    from ``p(x^removed | x^kept)``, the conditional value function of SHAP (Aas, Jullum & Løland,
    2021; Frye et al., 2021). It answers "what does the model say when the modality is unknown",
    unlike :func:`predict_marginal`, which pairs the row with a random row's modality (with
    correlated modalities, an input unlike any real one). A model without the kept modality
    (a unimodal model losing its own) gets the interventional answer over ``k`` pool rows.

    Parameters
    ----------
    model : the wrapper; put in eval mode.
    split : the rows to predict.
    pool : the train rows to draw from (e.g. 2,000, :func:`background_rows`); ``len(pool) >= k``.
    modality : the modality to remove; one the model does not use changes nothing.
    k : neighbours per row.
    batch_size : rows per encoder pass and (row, neighbour) pairs per fusion + head pass.

    Raises
    ------
    ValueError
        If ``modality`` is unknown or ``k`` is not in ``[1, len(pool)]``.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {list(MODALITIES)}")
    if not 1 <= k <= len(pool):
        raise ValueError(f"conditional removal needs 1 <= k <= {len(pool)} (the pool rows), got k = {k}")
    kept_names = [m for m in model.modalities if m != modality]
    if modality not in model.modalities or not kept_names:
        return predict_marginal(model, split, pool.subset(np.arange(k)), modality, batch_size=batch_size)
    model.eval()
    every = np.arange(len(pool))
    kept_pool = encoder_features(model, pool, every, kept_names, batch_size)
    removed = encoder_features(model, pool, every, [modality], batch_size)[modality]
    kept = encoder_features(model, split, np.arange(len(split)), kept_names, batch_size)
    near = _nearest(torch.cat([kept[m] for m in kept_names], 1), torch.cat([kept_pool[m] for m in kept_names], 1), k)
    step, out = max(1, batch_size // k), []
    for start in range(0, len(split), step):
        rows = slice(start, start + step)
        feats = {m: z[rows].repeat_interleave(k, dim=0) for m, z in kept.items()}
        feats[modality] = removed[near[rows].reshape(-1)]
        proba = torch.softmax(model.head(model.fusion(feats)), dim=1).double()
        out.append(proba.view(-1, k, proba.shape[1]).mean(dim=1))
    marg = torch.cat(out).cpu().numpy()
    return marg / marg.sum(axis=1, keepdims=True)
