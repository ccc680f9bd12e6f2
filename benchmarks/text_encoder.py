"""Benchmark of the text model's training: validation ROC-AUC and log loss, best epoch, seconds
per epoch and milliseconds per training step of one model under named configurations.

    python benchmarks/text_encoder.py                               # text_only, every variant, seeds 0 1 2
    python benchmarks/text_encoder.py --variants adamw adagrad --seeds 0 1
    python benchmarks/text_encoder.py --model early_concat             # a fusion shares the text encoder
    python benchmarks/text_encoder.py --test                           # also test ROC-AUC: to show, never to choose

Every variant is a list of ``--set``-style overrides of the default config; choices are made on
the validation split. One torch thread (``--threads``); seeds run in the outer loop so that a busy
machine slows every variant alike — still, compare timings as ratios within one run.
``ms/step`` is the training steps' wall time (batching, forward, backward, optimiser) per batch;
``s/epoch`` adds the epoch's validation and train-probe scoring.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import torch

from fusionstudy.config import load_config, model_parts
from fusionstudy.data.prepare import prepare
from fusionstudy.metrics import classification_metrics
from fusionstudy.training.loop import fit, make_model, predict

DATA_SECTIONS = ("dataset", "split", "text", "tabular")
VARIANTS: dict[str, list[str]] = {
    "adamw": ["train.text_optimizer='adamw'"],  # the design before issue 11: one dense AdamW
    "adamw, weight decay 0.1": ["train.text_optimizer='adamw'", "train.weight_decay=0.1"],
    "adamw, token dropout 0.5": ["train.text_optimizer='adamw'", "model.token_dropout=0.5"],
    "adamw, batch 512": ["train.text_optimizer='adamw'", "train.batch_size=512"],
    "adagrad": [],  # the default: sparse table, RowAdagrad at text_lr
    "adagrad, text_lr 0.05": ["train.text_lr=0.05"],
    "adagrad, text_lr 0.5": ["train.text_lr=0.5"],
    "adagrad, token dropout 0.5": ["model.token_dropout=0.5"],
    "adagrad, text_dim 64": ["model.text_dim=64"],
    "adagrad, batch 256": ["train.batch_size=256"],
    "adagrad, dropout 0.1": ["model.dropout=0.1"],
    "adagrad, 2 epochs": ["train.max_epochs=2", "train.patience=1"],
    # fusion training (docs/text_encoder.md, "Fusion training"): run with --model early_concat / tabular_only
    "patience 2": ["train.patience=2"],
    "3 epochs": ["train.max_epochs=3"],
    "6 epochs": ["train.max_epochs=6"],
    "8 epochs": ["train.max_epochs=8"],
    "lr 0.01": ["train.lr=0.01"],
    "lr 0.001": ["train.lr=0.001"],
    "weight decay 0.01": ["train.weight_decay=0.01"],
    "head 128": ["model.head_hidden=128"],
    "tabular 128": ["model.tab_dim=128", "model.tab_hidden=128"],
    "batch 64": ["train.batch_size=64"],
    "text_lr 0.05": ["train.text_lr=0.05"],
    "text_lr 0.02": ["train.text_lr=0.02"],
}


def run_variant(prep, overrides: list[str], model: str, seed: int, splits: tuple[str, ...]) -> dict:
    """Train ``model`` once under ``overrides``; its metrics on ``splits`` and its timings."""
    cfg = load_config(overrides=overrides)
    modalities, fusion = model_parts(model, prep.modalities)
    net = make_model(modalities, fusion, prep, cfg, seed)
    res = fit(net, prep.splits["train"], prep.splits["val"], cfg.train, seed)
    steps = res.epochs_run * math.ceil(len(prep.splits["train"]) / cfg.train.batch_size)
    row = {"best_epoch": res.best_epoch, "s_epoch": float(np.mean(res.curves["seconds"])),
           "ms_step": 1000 * sum(res.curves["train_seconds"]) / steps}
    for s in splits:
        m = classification_metrics(prep.splits[s].y, predict(net, prep.splits[s]))
        row.update({f"{s}_roc_auc": m["roc_auc"], f"{s}_log_loss": m["log_loss"]})
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="text_only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"names from {list(VARIANTS)}")
    ap.add_argument("--test", action="store_true", help="also report test metrics (never select on them)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    data_keys = [o for v in args.variants for o in VARIANTS[v] if o.split(".")[0] in DATA_SECTIONS]
    assert not data_keys, f"a variant changes the data, which is prepared once: {data_keys}"
    torch.set_num_threads(args.threads)
    prep = prepare(load_config())  # no variant touches the data sections, so one preparation serves all
    splits = ("val", "test") if args.test else ("val",)
    rows = [{"variant": v, "seed": seed, **run_variant(prep, VARIANTS[v], args.model, seed, splits)}
            for seed in args.seeds for v in args.variants]
    table = pd.DataFrame(rows).drop(columns="seed").groupby("variant", sort=False).mean().reset_index()
    print(f"{args.model}, mean over seeds {args.seeds}, {args.threads} torch thread(s)")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return table


if __name__ == "__main__":
    main()
