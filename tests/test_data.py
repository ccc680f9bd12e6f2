import numpy as np
import pandas as pd
import pytest

from fusionstudy.config import SplitConfig, TabularConfig
from fusionstudy.data.prepare import TabularPipeline, make_split, min_class_rows, prepare, to_inputs
from fusionstudy.data.reading import check_label, load_frame, sniff_delimiter, validate_frame
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


def _split_rows(cfg, df):
    """Row ids per split (the split depends only on the label and the seed)."""
    return {k: v.row_ids for k, v in prepare(cfg, df).splits.items()}


def test_nonfinite_cells_become_missing_and_are_counted(caplog):
    cfg = synthetic_config()
    df = synthetic_frame(400)
    rows = _split_rows(cfg, df)
    train, test = rows["train"][:3], rows["test"][:2]
    df.loc[train, "b"] = [np.inf, -np.inf, 1e39]  # 1e39 fits float64 but not float32
    df.loc[test, "b"] = [np.inf, -np.inf]
    prep = prepare(cfg, df)
    assert prep.stats["nonfinite"] == {"b": 5}
    warn = "numeric column 'b': 5 value(s) that are +-inf or beyond float32's range are treated as missing"
    assert prep.stats["warnings"] == [warn] and [warn] == [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    clean = df.drop(index=[*train, *test])["b"]
    assert np.isclose(prep.tabular.medians_[0], clean.iloc[np.isin(clean.index, rows["train"])].median())
    for name, bad in (("train", train), ("test", test)):
        s = prep.splits[name]
        assert np.isfinite(s.num).all()
        at = np.isin(s.row_ids, bad)
        assert (s.num[at, 2] == 1).all()  # column b's missing flag (values b, noise, then flags)
        assert np.allclose(s.num[at, 0], (prep.tabular.medians_[0] - prep.tabular.means_[0]) / prep.tabular.stds_[0])


def test_scaled_overflow_becomes_missing():
    train = pd.DataFrame({"x": [0.0, 0.0, 0.0, 1e-150]})  # train std ~4e-151
    p = TabularPipeline(TabularConfig(), [], ["x"]).fit(train)
    _, num = p.transform(pd.DataFrame({"x": [1.0, 0.0, 1e39, np.nan]}))
    assert np.isfinite(num).all()
    assert num[:, 1].tolist() == [1, 0, 1, 1]  # 1.0 / 4e-151 overflows float32 once scaled
    assert p.count_nonfinite(pd.DataFrame({"x": [1.0, 0.0, 1e39, np.nan, -np.inf]})) == {"x": 3}


def test_label_near_duplicates_are_an_error():
    cfg = synthetic_config()
    df = synthetic_frame(300)
    df["label"] = np.where(df.b > 0, "will return", "won't")
    df.loc[:9, "label"] = "will return "
    with pytest.raises(ValueError) as e:
        prepare(cfg, df)
    assert str(e.value) == ("dataset: label column 'label' has values that differ only in case or surrounding "
                            "whitespace: 'will return' vs 'will return '; spell each class one way")
    df.loc[:9, "label"] = "Won't"
    with pytest.raises(ValueError, match="\"Won't\" vs \"won't\""):
        prepare(cfg, df)


def test_continuous_label_is_an_error():
    cfg = synthetic_config()
    df = synthetic_frame(800).assign(label=lambda d: (d.b * 10 + 50).round(2))  # a price
    k = df.label.nunique()
    with pytest.raises(ValueError) as e:
        validate_frame(df, cfg.dataset)
    assert str(e.value) == (f"dataset: label column 'label' looks continuous: {k} distinct numeric values in 800 "
                            "rows (a class label has at most 20 distinct values or at most 5% of its rows "
                            "distinct); bin it into classes or choose another label")
    # 30 integer-coded classes in 1,000 rows (3% distinct) are classes, not a measurement
    check_label(pd.Series(np.arange(1000) % 30, name="label"))


def test_label_missing_blank_or_mixed_types():
    cfg = synthetic_config()
    df = synthetic_frame(100).assign(label=lambda d: d.label.map({0: "no", 1: "yes"}).astype(object))
    df.loc[:1, "label"] = " "
    with pytest.raises(ValueError, match="label column 'label' has 2 missing, blank or non-finite values"):
        validate_frame(df, cfg.dataset)
    df.loc[:1, "label"] = 1
    with pytest.raises(ValueError, match=r"mixes value types \['int', 'str'\]"):
        validate_frame(df, cfg.dataset)


def test_rare_class_is_named_before_splitting():
    cfg = synthetic_config()
    df = synthetic_frame(800)
    df.loc[:1, "label"] = 2  # 2 of 800 rows
    with pytest.raises(ValueError) as e:
        prepare(cfg, df)
    assert str(e.value) == ("class 2 has 2 of 800 rows; every class needs >= 15 so that train, val and test each "
                            "get >= 2 rows of it; merge or drop rare classes, or add rows")


@pytest.mark.parametrize("val,test", [(0.15, 0.15), (0.1, 0.2), (0.2, 0.1), (0.05, 0.3)])
def test_min_class_rows_reach_every_split(val, test):
    cfg = SplitConfig(val=val, test=test)
    need = min_class_rows(cfg)
    assert need == 15 if (val, test) == (0.15, 0.15) else need >= 6
    for n_big in (need, need + 25, 500):
        y = np.array([0] * need + [1] * n_big + [2] * need)
        for seed in range(15):
            s = make_split(y, SplitConfig(seed=seed, val=val, test=test))
            assert all(np.bincount(y[s[k]], minlength=3).min() >= 2 for k in s)
    with pytest.raises(ValueError, match=f"class 'b' has {need - 1} of"):
        make_split(np.array([0] * 100 + [1] * (need - 1)), cfg, classes=["a", "b"])


@pytest.mark.parametrize("role,msg", [
    ("numeric", "column 'label' is listed under both dataset.numeric and dataset.label"),
    ("text", "column 'label' is listed under both dataset.text and dataset.label"),
    ("categorical", "column 'label' is listed under both dataset.categorical and dataset.label"),
])
def test_label_listed_as_a_feature_is_an_error(role, msg):
    cfg = synthetic_config()
    getattr(cfg.dataset, role).append("label")
    with pytest.raises(ValueError) as e:
        prepare(cfg, synthetic_frame(100))
    assert str(e.value) == msg + "; a column may have only one role, and the label is never a feature"


def test_column_under_two_roles_is_an_error():
    cfg = synthetic_config()
    cfg.dataset.categorical = ["colour", "b"]
    with pytest.raises(ValueError, match="column 'b' is listed under both dataset.categorical and dataset.numeric"):
        validate_frame(synthetic_frame(100), cfg.dataset)
    cfg.dataset.categorical = ["colour", "colour"]
    with pytest.raises(ValueError, match="column 'colour' is listed twice under dataset.categorical"):
        validate_frame(synthetic_frame(100), cfg.dataset)


def test_latin1_csv_needs_the_encoding_key(tmp_path):
    cfg = synthetic_config()
    df = synthetic_frame(60)
    df.loc[0, "review"] = "très jolie robe, café"
    path = tmp_path / "latin.csv"
    path.write_bytes(df.to_csv(index=False).encode("latin-1"))
    cfg.dataset.source = str(path)
    with pytest.raises(ValueError) as e:
        load_frame(cfg.dataset)
    assert str(e.value) == (f"{path}: not UTF-8 text (byte 0xe8 cannot be decoded); set dataset.encoding to the "
                            "file's encoding, e.g. \"latin-1\" or \"cp1252\"")
    cfg.dataset.encoding = "latin-1"
    assert load_frame(cfg.dataset).loc[0, "review"] == "très jolie robe, café"
    cfg.dataset.encoding = "latin-2000"
    with pytest.raises(ValueError, match="dataset.encoding 'latin-2000' is not an encoding Python knows"):
        load_frame(cfg.dataset)


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path, sep):
    cfg = synthetic_config()
    df = synthetic_frame(60)
    df.loc[0, "review"] = "commas, semicolons; pipes | and tabs\tinside"
    path = tmp_path / "data.csv"
    df.to_csv(path, sep=sep, index=False)
    cfg.dataset.source = str(path)
    got = load_frame(cfg.dataset)
    assert got.loc[0, "review"] == df.loc[0, "review"] and np.allclose(got.b, df.b)
    assert sniff_delimiter(path.read_text()[:200], []) == sep  # csv.Sniffer when no spec column helps


def test_read_errors_name_the_file(tmp_path):
    cfg = synthetic_config()
    path = tmp_path / "semi.csv"
    synthetic_frame(30).to_csv(path, sep=";", index=False)
    cfg.dataset.source, cfg.dataset.delimiter = str(path), ","
    with pytest.raises(ValueError) as e:
        load_frame(cfg.dataset)
    assert str(e.value).startswith(f"{path}: column(s) ['review', 'colour', 'b', 'noise', 'label'] named in the "
                                   "spec are not in the header read with delimiter ',' (dataset.delimiter)")
    assert str(e.value).endswith("set dataset.delimiter if the file uses another one")
    broken = tmp_path / "broken.csv"
    broken.write_text('review,colour,b,noise,label\n"unclosed,red,1,2,0\n')
    cfg.dataset.source, cfg.dataset.delimiter = str(broken), ""
    with pytest.raises(ValueError, match=f"^{broken}: cannot parse it with delimiter ',' \\(sniffed\\)"):
        load_frame(cfg.dataset)
    bad_pq = tmp_path / "bad.parquet"
    bad_pq.write_text("not parquet")
    cfg.dataset.source = str(bad_pq)
    with pytest.raises(ValueError, match=f"^{bad_pq}: cannot read it as Parquet"):
        load_frame(cfg.dataset)


def test_few_minority_rows_in_val_or_test_warn(caplog):
    cfg = synthetic_config()
    df = synthetic_frame(400)
    df["label"] = (df.b > 1.4).astype(int)  # ~8% positives: ~5 per val/test split
    prep = prepare(cfg, df)
    n_val, n_test = (prep.stats["class_counts"][k]["1"] for k in ("val", "test"))
    assert n_val < 10 and n_test < 10
    assert prep.stats["warnings"] == [
        f"the {k} split has only {n} row(s) of class 1 (< 10): its F1 and ROC-AUC rest on a handful of rows "
        f"and can swing widely; add rows or raise split.{k}" for k, n in (("val", n_val), ("test", n_test))]
    assert sum(r.levelname == "WARNING" and r.getMessage().startswith("the ") for r in caplog.records) == 2


def test_text_without_vocabulary_warns():
    cfg = synthetic_config()
    cfg.text.min_df = 10_000
    prep = prepare(cfg, synthetic_frame(200))
    assert prep.text.vocab_size_ == 2 and prep.modalities == ("tabular", "text")
    assert prep.stats["warnings"] == ["text columns ['review']: no word n-gram occurs in at least text.min_df = "
                                      "10000 train rows; the text modality only tells whether a row has text"]
