"""The one training loop every part of the study reuses: :func:`fit`, :func:`predict` and the
model factory :func:`make_model`. The device is decided here, once (CPU on this machine).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from config import Config, TrainConfig
from data import Prepared, SplitData, to_inputs
from metrics import classification_metrics
from models.multimodal import MultimodalModel, build_model

DEVICE = torch.device("cpu")  # 2-core CPU machine; models never name a device themselves

BatchFn = Callable[[SplitData, np.random.Generator], SplitData]


@dataclass
class FitResult:
    """What :func:`fit` learned about training: curves and timings.

    ``curves`` maps ``epoch, train_loss`` (running mean over the epoch's batches),
    ``train_eval_loss`` (eval-mode log loss on a fixed 4,000-row train sample),
    ``val_loss, val_roc_auc, seconds`` and
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


def _grad_norms(model: MultimodalModel) -> dict[str, float]:
    norms = {}
    for name, enc in model.encoders.items():
        grads = [p.grad for p in enc.parameters() if p.grad is not None]
        norms[name] = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    return norms


def fit(model: MultimodalModel, train: SplitData, val: SplitData, cfg: TrainConfig, seed: int,
        batch_fn: BatchFn | None = None, progress=None) -> FitResult:
    """Train with AdamW and early stopping on validation log loss; restore the best weights.

    Parameters
    ----------
    model : the wrapper to train (modified in place).
    train, val : encoded splits.
    cfg : learning rate, weight decay, batch size, max epochs, patience.
    seed : controls batch order (initialisation is seeded by the caller before building).
    batch_fn : optional ``(batch: SplitData, rng) -> SplitData`` applied to each training batch
        before it becomes tensors (modality dropout).
    progress : optional tqdm bar; its postfix shows the epoch and validation loss.

    A non-finite training loss stops training and marks the run ``diverged``.
    """
    model.to(DEVICE)
    rng = np.random.default_rng(seed)
    # the fused CPU kernel is ~4x faster than the default on the 2M-parameter embedding table
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    steps = cfg.max_epochs * math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 1.0 if cfg.schedule == "constant" else max(0.0, 1 - t / steps))
    y_train = torch.from_numpy(train.y).to(DEVICE)
    curves: dict[str, list[float]] = {k: [] for k in ("epoch", "train_loss", "train_eval_loss", "val_loss",
                                                      "val_roc_auc", "seconds")}
    # a fixed train subsample scored in eval mode, so the train-val gap compares like with like
    train_probe = train.subset(rng.permutation(len(train))[:4000])
    curves.update({f"grad_norm_{m}": [] for m in model.modalities})
    best, best_state, best_epoch, bad, diverged, seen = math.inf, None, 0, 0, False, 0
    t0 = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        te, losses, gn = time.perf_counter(), [], {m: [] for m in model.modalities}
        perm = rng.permutation(len(train))
        for start in range(0, len(train), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            inputs = to_inputs(batch_fn(train.subset(idx), rng)) if batch_fn else to_inputs(train, idx)
            loss = F.cross_entropy(model(move(inputs)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for m, v in _grad_norms(model).items():
                gn[m].append(v)
            opt.step()
            sched.step()
            losses.append(loss.item())
            seen += len(idx)
            if not np.isfinite(losses[-1]):
                break
        proba = predict(model, val)
        if not (np.isfinite(losses).all() and np.isfinite(proba).all()):
            diverged = True
            break
        m = classification_metrics(val.y, proba)
        probe_loss = classification_metrics(train_probe.y, predict(model, train_probe))["log_loss"]
        for k, v in (("epoch", epoch), ("train_loss", float(np.mean(losses))), ("train_eval_loss", probe_loss),
                     ("val_loss", m["log_loss"]),
                     ("val_roc_auc", m["roc_auc"]), ("seconds", time.perf_counter() - te)):
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
                       prep.tabular.cardinalities_, prep.splits["train"].num.shape[1], cfg.tabular)
