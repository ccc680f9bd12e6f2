import numpy as np
import pandas as pd
import pytest

from config import SplitConfig, TabularConfig
from data import TabularPipeline, load_frame, make_split, prepare, to_inputs, validate_frame
from tests.conftest import synthetic_config, synthetic_frame


def test_split_disjoint_stratified_and_fixed():
    y = np.array([0] * 800 + [1] * 200)
    s = make_split(y, SplitConfig(seed=3))
    ids = [set(s[k]) for k in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(y)
    for k in ("train", "val", "test"):
        assert abs(y[s[k]].mean() - 0.2) < 0.01
    assert len(s["test"]) == 150 and len(s["val"]) == 150
    assert all((make_split(y, SplitConfig(seed=3))[k] == s[k]).all() for k in s)


def test_category_seen_only_in_test_maps_to_unknown():
    train = pd.DataFrame({"c": ["a", "a", "b", "b", "rare", None], "x": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0]})
    p = TabularPipeline(TabularConfig(min_count=2), ["c"], ["x"]).fit(train)
    cat, num = p.transform(pd.DataFrame({"c": ["a", "zzz", None, "rare"], "x": [np.nan, 1.0, 2.0, 3.0]}))
    assert cat[:, 0].tolist() == [p.levels_["c"]["a"], p.UNKNOWN, p.MISSING, p.UNKNOWN]
    # median imputed from train (3.0) -> scaled with train mean/std; missing flag set
    assert num[0, 1] == 1 and num[1, 1] == 0
    assert np.isclose(num[0, 0], (3.0 - p.means_[0]) / p.stds_[0])


def test_preprocessing_fit_on_train_only(synth_prep):
    cfg, prep = synth_prep
    df = synthetic_frame()
    train_rows = prep.splits["train"].row_ids
    assert np.allclose(prep.tabular.medians_, df.iloc[train_rows][["b", "noise"]].median().to_numpy())
    # a word that occurs only in test rows is not in the vocabulary
    df2 = df.copy()
    test_row = prep.splits["test"].row_ids[0]
    df2.loc[test_row, "review"] = "onlyintest onlyintest level1"
    prep2 = prepare(cfg, df2)
    assert "onlyintest" not in prep2.text.vectorizer_.vocabulary_


def test_missing_text_keeps_a_missing_token(synth_prep):
    _, prep = synth_prep
    s = prep.splits["train"]
    rows = np.flatnonzero(s.text_missing)
    assert len(rows) > 0
    sub = s.text[rows]
    assert (sub.indices == prep.text.missing_id_).all() and (sub.data == 1).all()
    ids, offsets, w = to_inputs(s, rows[:3])["text"]
    assert ids.tolist() == [prep.text.missing_id_] * 3 and offsets.tolist() == [0, 1, 2]


def test_truncation_is_counted():
    cfg = synthetic_config()
    cfg.text.max_tokens = 3
    prep = prepare(cfg, synthetic_frame(300))
    assert prep.stats["n_truncated"] > 250
    assert max(len(t) for t in prep.splits["train"].tokens) == 3


def test_missing_column_is_named():
    cfg = synthetic_config()
    with pytest.raises(ValueError, match="'colour'"):
        validate_frame(synthetic_frame(100).drop(columns="colour"), cfg.dataset)


def test_single_class_label_and_wrong_type():
    cfg = synthetic_config()
    df = synthetic_frame(100)
    with pytest.raises(ValueError, match="single class"):
        validate_frame(df.assign(label=1), cfg.dataset)
    with pytest.raises(ValueError, match="numeric column 'b'"):
        validate_frame(df.assign(b="x"), cfg.dataset)


def test_bad_files(tmp_path):
    cfg = synthetic_config()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cfg.dataset.source = str(empty)
    with pytest.raises(ValueError, match="empty"):
        load_frame(cfg.dataset)
    cfg.dataset.source = str(tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_frame(cfg.dataset)
    header_only = tmp_path / "h.csv"
    synthetic_frame(5).iloc[:0].to_csv(header_only, index=False)
    cfg.dataset.source = str(header_only)
    with pytest.raises(ValueError, match="no rows"):
        load_frame(cfg.dataset)


def test_multiclass_labels_work():
    cfg = synthetic_config()
    df = synthetic_frame(600)
    df["label"] = np.where(df.b > 0.5, "hi", np.where(df.b < -0.5, "lo", "mid"))
    prep = prepare(cfg, df)
    assert prep.classes == ["hi", "lo", "mid"] and set(prep.splits["test"].y) == {0, 1, 2}
