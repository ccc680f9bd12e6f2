"""Fuzz: random small frames go load -> validate -> split -> preprocess -> one short training run.

Every case must end either in finite metrics or in one ``ValueError`` with a one-line message;
any other exception, or a NaN metric after a successful run, fails; a CSV's text and categorical
cells read back as the strings written (leading zeros kept, only ``config.NA_VALUES`` missing). Hypothesis draws the
frame's shape and kinds (rows, classes, label kind, column kinds, rates of NaN/inf/blank cells,
CSV or in-memory, delimiter); a numpy generator seeded by Hypothesis fills the cells, so each
example is cheap and still shrinks to small knobs. Deterministic (``derandomize``) and bounded.
"""
from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusionstudy.config import NA_VALUES
from fusionstudy.data.prepare import prepare
from fusionstudy.data.reading import load_frame
from fusionstudy.metrics import classification_metrics
from fusionstudy.training.loop import fit, make_model, predict
from tests.conftest import synthetic_config

TEXT_COLS, CAT_COLS, NUM_COLS = ["review text", "título"], ["couleur", "类别"], ["n0", "prix €"]
WORDS = ["good", "bad", "fit", "très", "naïve", "日本語", "🙂", "", "   ", "the", "1.5", "N/A", "a,b", "x;y", "NA"]
# leading-zero codes (two levels each, never one number) and missing-value markers (config.NA_VALUES)
LEVELS = ["a", "b", "é", "日本", "", " ", "🙂", None, "1", "a ", "007", "7", "07", "NA", "null", "n/a", "None"]
LABEL_NAMES = {"str": ["yes", "no", "maybe"], "unicode": ["oui ✓", "non ✗", "peut-être"]}
SPECIALS = np.array([np.nan, np.inf, -np.inf, 1e39, -1e300, 0.0])

# The first value of each ``sampled_from`` is the one Hypothesis shrinks to: a frame that should
# train. Choices that must fail (a single class, a bool numeric column, the label as a feature)
# are the rarer entries, so most examples reach the training run.
knobs = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(20, 300),
    "n_classes": st.sampled_from([2, 3, 2, 3, 1]),
    "p_major": st.floats(0.34, 0.92),
    "label": st.sampled_from(["int", "str", "unicode", "bool", "int", "str", "dirty", "float", "with_nan"]),
    "n_text": st.sampled_from([1, 2, 0]), "n_cat": st.sampled_from([1, 2, 0]),
    "num_kinds": st.lists(st.sampled_from(["normal", "int", "nullable_int", "constant", "all_nan", "tiny", "huge",
                                           "normal", "int", "bool"]), min_size=0, max_size=2),
    "p_special": st.sampled_from([0.02, 0.0, 0.3]),
    "p_blank": st.sampled_from([0.1, 0.0, 0.6, 1.0]),
    "label_as_feature": st.sampled_from([False] * 9 + [True]),
    "csv": st.sampled_from([None, ",", ";", "\t"]),
    "model": st.sampled_from(["early_concat", "late_logit_avg", "gmu", "tfn", "lmf", "attention"]),
    "min_df": st.sampled_from([1, 2]),
    "numbers_as_strings": st.sampled_from([False, True]),  # numeric cells stored as text, markers for missing
    "duplicate_header": st.sampled_from([False] * 9 + [True]),  # a CSV header naming a spec column twice
})


def _label(k: dict, rng: np.random.Generator) -> pd.Series:
    rest = (1 - k["p_major"]) / max(k["n_classes"] - 1, 1)
    p = [k["p_major"]] + [rest] * (k["n_classes"] - 1)
    cls = rng.choice(k["n_classes"], k["n"], p=np.array(p) / sum(p))
    kind = k["label"]
    if kind == "float":  # a measurement, not classes
        return pd.Series(np.round(rng.normal(50, 10, k["n"]), 2))
    if kind == "bool":
        return pd.Series(cls > 0)
    if kind in LABEL_NAMES or kind == "dirty":
        lab = pd.Series(np.array(LABEL_NAMES.get(kind, LABEL_NAMES["str"]), dtype=object)[cls])
        if kind == "dirty":  # the same class spelled with a trailing space or another case
            r = rng.random(k["n"])
            lab[r < 0.03], lab[(r >= 0.03) & (r < 0.05)] = "yes ", "Yes"
        return lab
    lab = pd.Series(cls.astype(float) if kind == "with_nan" else cls)
    if kind == "with_nan":
        lab[rng.random(k["n"]) < 0.02] = np.nan
    return lab


def _numeric(kind: str, n: int, rng: np.random.Generator, p_special: float):
    x = {"normal": rng.normal(0, 10.0 ** rng.integers(-3, 7), n), "int": rng.integers(-5, 5, n).astype(float),
         "constant": np.full(n, 3.0), "all_nan": np.full(n, np.nan), "tiny": rng.normal(0, 1e-150, n),
         "huge": rng.normal(0, 1e30, n), "nullable_int": rng.integers(0, 9, n).astype(float),
         "bool": rng.random(n) < 0.5}[kind]
    if kind == "bool":
        return x
    special = rng.random(n) < p_special
    x[special] = rng.choice(SPECIALS, special.sum())
    if kind == "nullable_int":
        return pd.array(np.where(np.isfinite(x), x, np.nan), dtype="Float64").round().astype("Int64")
    return x


def _frame(k: dict) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(k["seed"])
    n, cols = k["n"], {}
    blank = lambda: rng.random(n) < k["p_blank"]  # noqa: E731
    for c in TEXT_COLS[:k["n_text"]]:
        text = np.array([" ".join(rng.choice(WORDS, rng.integers(0, 7))) for _ in range(n)], dtype=object)
        text[blank()] = rng.choice(np.array([None, "", "  "], dtype=object), 1)[0]
        cols[c] = text
    for c in CAT_COLS[:k["n_cat"]]:
        cols[c] = np.array(LEVELS, dtype=object)[rng.integers(0, len(LEVELS), n)]
    for c, kind in zip(NUM_COLS, k["num_kinds"]):
        cols[c] = _numeric(kind, n, rng, k["p_special"])
        if k["numbers_as_strings"] and kind != "bool":
            cols[c] = np.array(["NA" if pd.isna(v) else f" {v}" for v in cols[c]], dtype=object)
    df = pd.DataFrame(cols)
    df["label"] = _label(k, rng)
    spec = {"text": TEXT_COLS[:k["n_text"]], "categorical": CAT_COLS[:k["n_cat"]],
            "numeric": NUM_COLS[:len(k["num_kinds"])]}
    if k["label_as_feature"]:
        spec["categorical"] = [*spec["categorical"], "label"]
    return df, spec


def _config(spec: dict, k: dict):
    cfg = synthetic_config(max_epochs=1, batch_size=64)
    cfg.dataset.text, cfg.dataset.categorical, cfg.dataset.numeric = spec["text"], spec["categorical"], spec["numeric"]
    cfg.text.min_df = k["min_df"]
    cfg.model.text_dim = cfg.model.tab_dim = cfg.model.head_hidden = cfg.model.tab_hidden = 8
    cfg.model.tfn_dim, cfg.model.lmf_rank = 4, 2
    return cfg


def _to_csv(df: pd.DataFrame, spec: dict, k: dict, path: Path) -> None:
    cols = list(df.columns)
    if k["duplicate_header"]:  # the last column again, under the first spec column's name
        first = (spec["text"] + spec["categorical"] + spec["numeric"] + ["label"])[0]
        df = df.assign(_dup=df[cols[-1]])
        cols = cols + [first]
    df.to_csv(path, sep=k["csv"], index=False, header=cols)


def _as_read(col: pd.Series) -> list:
    """A text or categorical column as the study must read it back from CSV: the strings, markers missing."""
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) or v in NA_VALUES else v for v in col]


def _run(df: pd.DataFrame, spec: dict, k: dict, folder: Path) -> dict[str, float]:
    cfg = _config(spec, k)
    if k["csv"] is not None:
        cfg.dataset.source = str(folder / "data.csv")
        _to_csv(df, spec, k, folder / "data.csv")
        back = load_frame(cfg.dataset)
        for c in spec["text"] + spec["categorical"]:
            assert [None if pd.isna(v) else v for v in back[c]] == _as_read(df[c]), c
        df = None
    prep = prepare(cfg, df)
    json.dumps(prep.stats)  # the study writes it to split.json
    if len(prep.modalities) == 2:
        modalities, fusion = prep.modalities, k["model"]
    else:
        modalities, fusion = prep.modalities, "early_concat"
    model = make_model(modalities, fusion, prep, cfg, seed=0)
    fit(model, prep.splits["train"], prep.splits["val"], cfg.train, seed=0)
    return classification_metrics(prep.splits["test"].y, predict(model, prep.splits["test"]))


@settings(max_examples=200, deadline=timedelta(seconds=10), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(k=knobs)
def test_random_frames_end_in_finite_metrics_or_one_value_error(k):
    df, spec = _frame(k)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            m = _run(df, spec, k, Path(tmp))
        except ValueError as e:
            msg = str(e)
            assert msg and "\n" not in msg, f"not a one-line message: {msg!r}"
            return
    assert all(np.isfinite(v) for v in m.values()), m
