"""Score new rows with the models a study trained and saved; the scoring command-line entry point.

    python predict.py --study results/my_study --model early_concat --input new.csv --output preds.csv
    python predict.py --study results/my_study --model gmu --seed 0 --input new.csv --output preds.csv

The study's fitted preprocessing (``results/<study>/models/<fingerprint>/``, see ``saving.py``)
encodes the rows exactly as the study encoded its test split: a row without text gets the
missing-text id, a missing cell is missing, a category never seen (or too rare) in train is
unknown. The input needs the columns of the model's modalities (no label); the output CSV has
the input's rows in order, one probability column per class (``proba_<class>``, the mean over
the saved seeds unless ``--seed`` picks one) and ``predicted`` (the most probable class).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from config import model_parts
from data import encode_rows
from loop import predict
from saving import SavedStudy, load_preprocessing
from tables import read_table, validate_rows


def needed_columns(saved: SavedStudy, model: str) -> list[str]:
    """The spec's columns that ``model``'s modalities read, in spec order.

    Raises
    ------
    FileNotFoundError
        If no weights of ``model`` are saved (naming the saved models).
    """
    if model not in saved.models():
        raise FileNotFoundError(f"no saved weights for model {model!r} in {saved.folder}; saved: {saved.models() or 'none'}"
                                ". Only plainly trained models of Parts 1, 2 and 4 are saved, by a study run with "
                                "study.save_models = true")
    ds = saved.cfg.dataset
    modalities, _ = model_parts(model, saved.modalities)
    return [*(ds.text if "text" in modalities else []),
            *((ds.categorical + ds.numeric) if "tabular" in modalities else [])]


def score(saved: SavedStudy, model: str, rows: pd.DataFrame, seed: int | None = None,
          where: str = "input") -> pd.DataFrame:
    """Class probabilities and predicted class of each row of ``rows``.

    Parameters
    ----------
    saved : a study's restored preprocessing (``saving.load_preprocessing``).
    model : a model name of the study (``text_only``, ``early_concat``, ``gmu``...).
    rows : (n_samples, ...) the raw rows, with at least :func:`needed_columns`.
    seed : one training seed; ``None`` averages the probabilities over every saved seed.
    where : the input's name in error messages.

    Returns
    -------
    (n_samples, n_classes + 1) frame: ``proba_<class>`` columns, then ``predicted``; input order.

    Raises
    ------
    ValueError
        On a missing needed column, a non-numeric numeric column, or no rows.
    FileNotFoundError
        If no weights are saved for the model (or that seed), naming the saved ones.
    """
    feats = validate_rows(rows, saved.cfg.dataset, needed_columns(saved, model), where)
    split = encode_rows(feats, saved.cfg.dataset, saved.text, saved.tabular)
    seeds = [seed] if seed is not None else saved.seeds(model)
    missing = sorted(set(saved.cfg.study.seeds) - set(seeds)) if seed is None else []
    if missing:
        print(f"warning: averaging over seeds {seeds}; seeds {missing} of the study have no saved weights",
              file=sys.stderr)
    proba = np.mean([predict(saved.load_model(model, s), split) for s in seeds], axis=0)
    out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in saved.classes])
    out["predicted"] = [saved.classes[k] for k in proba.argmax(axis=1)]
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, score the input file, write the output CSV (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", required=True, help="the study's results folder, e.g. results/my_study")
    ap.add_argument("--model", required=True, help="a trained model of Parts 1, 2 or 4, e.g. early_concat")
    ap.add_argument("--input", required=True, help="rows to score: .csv, .tsv or .parquet")
    ap.add_argument("--output", required=True, help="where to write the predictions (CSV)")
    ap.add_argument("--seed", type=int, default=None, help="use one seed's model (default: mean over seeds)")
    ap.add_argument("--encoding", default=None, help="the input's text encoding (default: the study's dataset.encoding)")
    ap.add_argument("--delimiter", default=None, help="the input's delimiter (default: the study's, else sniffed)")
    args = ap.parse_args(argv)
    try:
        saved = load_preprocessing(Path(args.study))
        torch.set_num_threads(saved.cfg.train.threads)
        ds = saved.cfg.dataset
        ds = replace(ds, encoding=ds.encoding if args.encoding is None else args.encoding,
                     delimiter=ds.delimiter if args.delimiter is None else args.delimiter)
        path = Path(args.input)
        if not path.is_file():
            raise FileNotFoundError(f"--input {args.input}: no such file")
        rows = read_table(path, ds, needed_columns(saved, args.model))
        out = score(saved, args.model, rows, args.seed, where=str(path))
    except (ValueError, FileNotFoundError) as e:  # bad input or study: say what, no traceback
        raise SystemExit(f"error: {e}") from None
    out.to_csv(args.output, index=False)
    print(f"wrote {len(out)} predictions of {args.model} to {args.output}")


if __name__ == "__main__":
    main()
