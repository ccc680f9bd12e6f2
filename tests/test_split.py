"""Predefined splits: a ``[split] column`` and Multimodal-Toolkit folders (``--data <folder>``)."""
import json

import numpy as np
import pandas as pd
import pytest

from fusionstudy import cli as train
from fusionstudy.config import load_config, validate
from fusionstudy.data.mmtk import FOLDER_SPLIT_COLUMN
from fusionstudy.data.prepare import prepare
from fusionstudy.records import RunStore
from tests.conftest import ROOT, synthetic_config, synthetic_frame


def _with_fold(df: pd.DataFrame, val: bool = True, seed: int = 0) -> pd.DataFrame:
    """A ``fold`` column of mixed-case, space-padded split names: ~20% test, ~15% val (if any)."""
    r = np.random.default_rng(seed).random(len(df))
    fold = np.where(r < 0.2, "TEST", np.where((r < 0.35) & val, " Val", "train"))
    return df.assign(fold=fold)


def _fold_cfg():
    cfg = synthetic_config()
    cfg.split.column = "fold"
    return cfg


def test_split_column_with_val_is_used_as_given():
    df = _with_fold(synthetic_frame(600))
    prep = prepare(_fold_cfg(), df)
    norm = df.fold.str.strip().str.lower()
    for s in ("train", "val", "test"):
        assert prep.splits[s].row_ids.tolist() == np.flatnonzero(norm == s).tolist()


def test_split_column_without_val_carves_it_from_train_stratified_with_the_split_seed():
    cfg, df = _fold_cfg(), _with_fold(synthetic_frame(600), val=False)
    a, b = prepare(cfg, df), prepare(cfg, df)
    train_rows = set(np.flatnonzero(df.fold == "train"))
    tr, va = set(a.splits["train"].row_ids), set(a.splits["val"].row_ids)
    assert tr | va == train_rows and not tr & va
    assert a.splits["test"].row_ids.tolist() == np.flatnonzero(df.fold == "TEST").tolist()
    assert len(va) == pytest.approx(len(train_rows) * 0.15 / 0.85, abs=2)  # the share a random split gives val
    assert abs(a.splits["val"].y.mean() - a.splits["train"].y.mean()) < 0.03  # stratified
    assert b.splits["val"].row_ids.tolist() == a.splits["val"].row_ids.tolist()
    cfg.split.seed = 1
    assert set(prepare(cfg, df).splits["val"].row_ids) != va


def test_split_column_with_other_values_names_them():
    df = _with_fold(synthetic_frame(300))
    df.loc[:4, "fold"] = "dev"
    df.loc[5, "fold"] = None
    msg = r"split column 'fold' has value\(s\) 'dev' \(5 rows\), \(missing\) \(1 rows\); allowed: train, val, test"
    with pytest.raises(ValueError, match=msg):
        prepare(_fold_cfg(), df)
    with pytest.raises(ValueError, match="split column 'fold' has no 'test' rows"):
        prepare(_fold_cfg(), df.assign(fold="train"))
    with pytest.raises(ValueError, match=r"column\(s\) \['fold'\] named in the spec are not in the data"):
        prepare(_fold_cfg(), df.drop(columns="fold"))


def test_class_counts_are_checked_in_every_predefined_split():
    df = _with_fold(synthetic_frame(300))
    test_pos = df.index[(df.fold == "TEST") & (df.label == 1)]
    df.loc[test_pos[1:], "fold"] = "train"  # one positive row left in test
    with pytest.raises(ValueError, match=r"class 1 has 1 row\(s\) in the test split .*move rows between"):
        prepare(_fold_cfg(), df)
    df = _with_fold(synthetic_frame(300), val=False)
    train_pos = df.index[(df.fold == "train") & (df.label == 1)]
    df.loc[train_pos[4:], "label"] = 0  # 4 positives in train: too few to carve a val split from
    with pytest.raises(ValueError, match=r"class 1 has 4 row\(s\) in the train split; carving val"):
        prepare(_fold_cfg(), df)


def test_split_column_is_no_feature_and_keeps_the_default_fingerprint():
    cfg = _fold_cfg()
    cfg.split.column = "b"
    with pytest.raises(ValueError, match="split.column must not be the label or a feature"):
        validate(cfg)
    # the stored committed studies keep their fingerprint: an empty split.column is not hashed
    for name, spec in (("clothing", "clothing.toml"), ("clothing_no_rating", "clothing_no_rating.toml")):
        stored = ROOT / "results" / name / "study.json"
        if stored.is_file():
            assert load_config(spec.removesuffix(".toml")).fingerprint() == json.loads(stored.read_text())["config_fp"]
    base = load_config().fingerprint()
    assert load_config(overrides=["study.save_models=false"]).fingerprint() == base
    assert load_config(overrides=["split.column=fold"]).fingerprint() != base


def _mtk_folder(tmp_path, n: int = 400, val: bool = True):
    """A Multimodal-Toolkit folder of the synthetic data, labels as indices into ``label_list``."""
    df = synthetic_frame(n)
    part = np.random.default_rng(1).choice(["train", "val", "test"] if val else ["train", "test"], n,
                                            p=[0.6, 0.2, 0.2] if val else [0.75, 0.25])
    folder = tmp_path / "reviews_mtk"
    folder.mkdir()
    for name in np.unique(part):
        df[part == name].to_csv(folder / f"{name}.csv", index=False)
    info = {"text_cols": ["review"], "cat_cols": ["colour"], "num_cols": ["b", "noise"], "label_col": "label",
            "label_list": ["no", "yes"]}
    (folder / "column_info.json").write_text(json.dumps(info))
    return folder, df, part


def test_folder_is_read_with_its_files_as_the_split_and_label_list_names(tmp_path):
    folder, df, part = _mtk_folder(tmp_path, val=False)
    cfg = load_config(folder, "quick", ["text.min_df=1", "tabular.min_count=1"])
    assert cfg.dataset.name == "reviews_mtk" and cfg.split.column == FOLDER_SPLIT_COLUMN
    assert (cfg.dataset.text, cfg.dataset.categorical, cfg.dataset.label) == (["review"], ["colour"], "label")
    prep = prepare(cfg)
    assert prep.classes == ["no", "yes"]
    n_train, n_test = int((part == "train").sum()), int((part == "test").sum())
    assert len(prep.splits["test"]) == n_test and len(prep.splits["train"]) + len(prep.splits["val"]) == n_train
    # rows are numbered train.csv first, then test.csv
    assert prep.splits["test"].row_ids.tolist() == list(range(n_train, n_train + n_test))
    assert prep.splits["test"].y.tolist() == df.label[part == "test"].tolist()  # index k -> label_list[k]


def test_folder_errors_name_the_file_and_key(tmp_path):
    folder, *_ = _mtk_folder(tmp_path)
    info = json.loads((folder / "column_info.json").read_text())
    (folder / "column_info.json").write_text(json.dumps({**info, "text_col": ["review"]}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['text_col'\]"):
        load_config(folder)
    (folder / "column_info.json").write_text(json.dumps({**info, "label_list": ["only"]}))
    with pytest.raises(ValueError, match=r"train.csv: label column 'label' has value\(s\) \['0', '1'\] that are neither"):
        prepare(load_config(folder))
    (folder / "column_info.json").write_text(json.dumps(info))
    (folder / "test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no test.csv"):
        prepare(load_config(folder))


def test_train_cli_runs_the_quick_profile_on_a_folder(tmp_path):
    folder, _, part = _mtk_folder(tmp_path, n=300)
    out = tmp_path / "res"
    trim = ['study.models=["text_only","tabular_only","early_concat"]', "study.moddrop_models=[]",
            "study.imbalance_models=[]", "study.seeds=[0]", "study.references=false", "train.workers=1",
            "train.threads=1", "text.min_df=1", "tabular.min_count=1"]  # the quick profile, cut to seconds
    train.main(["run", "--data", str(folder), "--profile", "quick", "--out", str(out)] + [a for t in trim for a in ("--set", t)])
    runs = RunStore(out).records()
    assert {r.config["profile"] for r in runs} == {"quick"} and {r.study for r in runs} == {"reviews_mtk"}
    assert {r.config["train"]["max_epochs"] for r in runs} == {2}  # from configs/quick.toml
    assert {r.model for r in runs} >= {"text_only", "tabular_only", "early_concat"}
    split = json.loads((out / "split.json").read_text())
    assert split["classes"] == ["no", "yes"]
    assert {k: len(split[f"{k}_ids"]) for k in ("train", "val", "test")} == {k: int((part == k).sum())
                                                                            for k in ("train", "val", "test")}
    assert (out / "experiments.md").is_file() and (out / "models").is_dir()
