"""Score new rows with the models a study trained and saved; the scoring command-line entry point.

    fusionstudy predict --study results/my_study --model early_concat --input new.csv --output preds.csv
    fusionstudy predict --study results/my_study --model gmu --seed 0 --input new.csv --output preds.csv

The study's fitted preprocessing (``results/<study>/models/<fingerprint>/``, see ``study.saving``)
encodes the rows exactly as the study encoded its test split: a row without text gets the
missing-text id, a missing cell is missing, a category never seen (or too rare) in train is
unknown. The input needs the columns of the model's modalities (no label); the output CSV has
the input's rows in order, one probability column per class (``proba_<class>``, the mean over
the saved seeds unless ``--seed`` picks one) and ``predicted`` (the most probable class).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from fusionstudy.config import model_parts
from fusionstudy.data.prepare import encode_rows
from fusionstudy.data.reading import validate_rows
from fusionstudy.study.saving import SavedStudy
from fusionstudy.training.loop import predict

log = logging.getLogger(__name__)


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
        log.warning(f"averaging over seeds {seeds}; seeds {missing} of the study have no saved weights")
    proba = np.mean([predict(saved.load_model(model, s), split) for s in seeds], axis=0)
    out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in saved.classes])
    out["predicted"] = [saved.classes[k] for k in proba.argmax(axis=1)]
    return out
