"""Save and predict: a small study saves its models; predict.py scores new rows exactly as the study
scored its test split (``predictions.jsonl``), with unseen categories, empty text and bad input."""
import json

import numpy as np
import pandas as pd
import pytest

from fusionstudy import cli, scoring
from fusionstudy.data.prepare import TabularPipeline, encode_rows
from fusionstudy.records import RunStore
from fusionstudy.study.runner import RunSpec, run_study, train_run
from fusionstudy.study.saving import load_preprocessing
from tests.conftest import synthetic_config, synthetic_frame

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    csv = tmp / "reviews.csv"
    synthetic_frame(700, seed=3).to_csv(csv, index=False)
    cfg = synthetic_config()
    cfg.dataset.source = str(csv)
    cfg.study.models, cfg.study.seeds = ["text_only", "tabular_only", "early_concat"], list(SEEDS)
    cfg.study.moddrop_models, cfg.study.imbalance_models, cfg.study.references = ["early_concat"], [], False
    cfg.study.noise_levels, cfg.study.drop_levels, cfg.study.permutations = [1.0], [0.5], 1
    cfg.train.max_epochs, cfg.train.workers = 3, 1
    folder = run_study(cfg, str(tmp / "res"))
    return folder, pd.read_csv(csv)


def _stored(folder, model: str, seed: int) -> np.ndarray:
    fp = json.loads((folder / "study.json").read_text())["config_fp"]
    return np.asarray(RunStore(folder).predictions()[f"{model}|seed={seed}|cfg={fp}"].test)


def test_predict_scores_new_rows_like_the_study_scored_its_test_split(study, tmp_path):
    folder, src = study
    test_ids = np.array(json.loads((folder / "split.json").read_text())["test_ids"])
    order = np.random.default_rng(0).permutation(len(test_ids))  # the input's own row order
    extra = src.iloc[test_ids[:2]].copy()
    extra.iloc[0, extra.columns.get_loc("colour")] = "purple"  # a category the study never saw
    extra.iloc[1, extra.columns.get_loc("review")] = ""  # an empty text
    new = pd.concat([src.iloc[test_ids[order]], extra]).drop(columns="label")
    new.to_csv(tmp_path / "new.csv", index=False)
    args = ["--study", str(folder), "--model", "early_concat", "--input", str(tmp_path / "new.csv")]
    cli.main(["predict", *args, "--output", str(tmp_path / "mean.csv")])
    cli.main(["predict", *args, "--output", str(tmp_path / "seed1.csv"), "--seed", "1"])
    mean, one = pd.read_csv(tmp_path / "mean.csv"), pd.read_csv(tmp_path / "seed1.csv")
    assert list(mean.columns) == ["proba_0", "proba_1", "predicted"] and len(mean) == len(new)
    n = len(order)
    # rows in both: the stored test predictions (rounded to 6 decimals), in the input's order
    assert np.round(one.proba_1[:n].to_numpy(), 6).tolist() == _stored(folder, "early_concat", 1)[order].tolist()
    stored_mean = np.mean([_stored(folder, "early_concat", s) for s in SEEDS], axis=0)[order]
    np.testing.assert_allclose(mean.proba_1[:n], stored_mean, atol=1e-6)  # a mean of 6-decimal roundings
    np.testing.assert_allclose(mean[["proba_0", "proba_1"]].sum(axis=1), 1.0)
    assert (mean.predicted == (mean.proba_1 > 0.5).astype(int)).all()
    assert np.isfinite(mean.proba_1[n:]).all()


def test_unseen_category_is_unknown_and_empty_text_is_missing(study):
    folder, src = study
    saved = load_preprocessing(folder)
    rows = src.head(4).drop(columns="label").copy()
    rows["colour"] = ["purple", "teal", "red", None]
    rows["review"] = ["", "   ", None, rows.review.iloc[3]]
    enc = encode_rows(rows, saved.cfg.dataset, saved.text, saved.tabular)
    assert enc.cat[:, 0].tolist()[:2] == [TabularPipeline.UNKNOWN] * 2 and enc.cat[3, 0] == TabularPipeline.MISSING
    assert enc.text_missing.tolist() == [True, True, True, bool(pd.isna(rows.review.iloc[3]))]
    out = scoring.score(saved, "early_concat", rows)
    twin = scoring.score(saved, "early_concat", rows.assign(colour=["teal", "purple", "red", None], review=None))
    assert np.array_equal(out.proba_1[:2], twin.proba_1[:2])  # unknown is unknown; no text is no text


def test_predict_errors_name_the_problem(study, tmp_path):
    folder, src = study
    new = tmp_path / "new.csv"
    src.drop(columns=["label", "colour"]).head(5).to_csv(new, index=False)
    args = ["--study", str(folder), "--input", str(new), "--output", str(tmp_path / "p.csv")]
    with pytest.raises(SystemExit, match=r"\['colour'\]"):
        cli.main(["predict", *args, "--model", "early_concat"])
    cli.main(["predict", *args, "--model", "text_only"])  # a text model needs no tabular column
    assert len(pd.read_csv(tmp_path / "p.csv")) == 5
    with pytest.raises(SystemExit, match=r"no saved weights for model 'early_concat_moddrop'.*'early_concat'"):
        cli.main(["predict", *args, "--model", "early_concat_moddrop"])  # Part 3 models are not saved
    with pytest.raises(SystemExit, match="seed 7"):
        cli.main(["predict", *args, "--model", "text_only", "--seed", "7"])
    with pytest.raises(SystemExit, match="no saved preprocessing"):
        cli.main(["predict", "--study", str(tmp_path), "--model", "text_only", "--input", str(new), "--output", "x.csv"])
    records = (folder / "runs.jsonl").read_bytes()
    for own in ("runs.jsonl", "summary.csv", "study.json"):
        with pytest.raises(SystemExit, match="would overwrite the study's own files"):
            cli.main(["predict", *args[:4], "--output", str(folder / own), "--model", "text_only"])
    assert (folder / "runs.jsonl").read_bytes() == records


def test_saved_files_are_data_only(study):
    folder, _ = study
    saved = load_preprocessing(folder)
    files = sorted(p.relative_to(saved.folder).as_posix() for p in saved.folder.rglob("*") if p.is_file())
    assert files == sorted(["preprocessing.json", "preprocessing.npz"] + [
        f"{m}/seed{s}.safetensors" for m in ("early_concat", "tabular_only", "text_only") for s in SEEDS])
    with np.load(saved.folder / "preprocessing.npz", allow_pickle=False) as z:
        assert all(z[k].dtype.kind == "f" for k in z.files)
    assert saved.models() == ["early_concat", "tabular_only", "text_only"] and saved.seeds("gmu") == []


def test_saving_weights_changes_no_stored_number(synth_prep, tmp_path):
    cfg, prep = synth_prep
    spec = RunSpec("early_concat", "early_concat", ("tabular", "text"), 0, "part2")
    rec, preds, evals = train_run(spec, prep, cfg)
    rec2, preds2, evals2 = train_run(spec, prep, cfg, save_dir=tmp_path)
    assert (tmp_path / "early_concat" / "seed0.safetensors").is_file()
    assert rec2.metrics == rec.metrics and preds2 == preds
    assert [e.metrics for e in evals2] == [e.metrics for e in evals]


def test_predict_places_and_encodings_fail_in_one_line_before_scoring(study, tmp_path):
    folder, src = study
    new = tmp_path / "new.csv"
    rows = src.drop(columns="label").head(5).copy()
    rows.loc[0, "review"] = "très jolie"
    new.write_bytes(rows.to_csv(index=False).encode("latin-1"))
    args = ["predict", "--study", str(folder), "--model", "text_only", "--input", str(new)]
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--output", str(tmp_path / "p.csv")])
    assert str(e.value) == (f"fusionstudy predict: error: {new}: not UTF-8 text (byte 0xe8 cannot be decoded); set "
                            "--encoding to the file's encoding, e.g. \"latin-1\" or \"cp1252\"")
    args += ["--encoding", "latin-1"]
    cli.main([*args, "--output", str(tmp_path / "a" / "b" / "p.csv")])  # a missing folder is created
    assert len(pd.read_csv(tmp_path / "a" / "b" / "p.csv")) == 5
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--output", str(tmp_path / "file" / "p.csv")])
    assert str(e.value) == (f"fusionstudy predict: error: {tmp_path / 'file'}: cannot write there (File exists); "
                            "pass an --output in a writable folder")
    with pytest.raises(SystemExit) as e:
        cli.main(["predict", "--study", str(tmp_path / "typo"), "--model", "text_only", "--input", str(new),
                  "--output", "p.csv"])
    assert str(e.value) == (f"fusionstudy predict: error: {tmp_path / 'typo'}: no such study (no folder there); pass "
                            "the results folder a study wrote, e.g. results/my_study")
