"""The Multimodal-Toolkit dataset folder (Gu & Budhkar, 2021, "A package for learning on tabular
and text data with transformers"): ``train.csv``, optional ``val.csv``, ``test.csv`` and a
``column_info.json`` naming the columns. ``fusionstudy run --data <folder>`` reads one; this module
checks its ``column_info.json`` and turns it into the config tree of ``config.load_config``.
"""
from __future__ import annotations

import json
from pathlib import Path

FOLDER_SPLIT_COLUMN = "__split__"
COLUMN_INFO_KEYS = ("text_cols", "cat_cols", "num_cols", "label_col", "label_list")


def read_column_info(folder: str | Path) -> dict:
    """The ``column_info.json`` of a Multimodal-Toolkit folder, checked: ``label_col`` (required),
    ``text_cols``, ``cat_cols``, ``num_cols`` (lists of column names; absent or null = none) and
    ``label_list`` (the class names that integer labels index; absent or null = labels as they are).

    Raises
    ------
    FileNotFoundError
        If the folder has no ``column_info.json``.
    ValueError
        On invalid JSON, an unknown key (naming it and the known ones) or a value of the wrong type.
    """
    path = Path(folder) / "column_info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no column_info.json; a Multimodal-Toolkit folder holds train.csv, "
                                f"val.csv (optional), test.csv and column_info.json with keys {list(COLUMN_INFO_KEYS)}")
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: must hold a JSON object with keys {list(COLUMN_INFO_KEYS)}")
    unknown = sorted(set(info) - set(COLUMN_INFO_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {list(COLUMN_INFO_KEYS)}")
    if not isinstance(info.get("label_col"), str) or not info["label_col"]:
        raise ValueError(f"{path}: label_col must name the label column; got {info.get('label_col')!r}")
    out = {"label_col": info["label_col"]}
    for key in ("text_cols", "cat_cols", "num_cols", "label_list"):
        v = info.get(key) or []
        kinds = (str, int) if key == "label_list" else (str,)
        if not isinstance(v, list) or not all(isinstance(x, kinds) and not isinstance(x, bool) for x in v):
            raise ValueError(f"{path}: {key} must be a list of {'names or numbers' if key == 'label_list' else 'column names'}"
                             f"; got {v!r}")
        out[key] = v
    return out


def folder_spec(folder: str | Path) -> dict:
    """The config tree of a Multimodal-Toolkit folder: ``[dataset]`` from its column_info.json
    (study name = the folder's name) and ``[split] column`` = :data:`FOLDER_SPLIT_COLUMN`.

    Raises
    ------
    FileNotFoundError, ValueError
        From :func:`read_column_info`.
    """
    folder = Path(folder).resolve()
    info = read_column_info(folder)
    return {"dataset": {"name": folder.name, "source": folder.name, "text": info["text_cols"],
                        "categorical": info["cat_cols"], "numeric": info["num_cols"], "label": info["label_col"]},
            "split": {"column": FOLDER_SPLIT_COLUMN}}
