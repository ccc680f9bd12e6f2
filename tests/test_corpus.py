"""A corpus of unusual user tables (from peer projects' issue trackers), each a small generated file:
every one ends in the right values or in one exact line. Beside the fuzz test (random frames)."""
import numpy as np
import pandas as pd
import pytest

from fusionstudy import cli
from fusionstudy.data.prepare import prepare
from fusionstudy.data.reading import load_frame, validate_frame, validate_rows
from fusionstudy.metrics import classification_metrics
from fusionstudy.records import load_study
from fusionstudy.study import runner
from fusionstudy.training.loop import fit, make_model, predict
from tests.conftest import synthetic_config, synthetic_frame


def _codes_config(path):
    cfg = synthetic_config(max_epochs=3)
    cfg.dataset.source, cfg.dataset.text, cfg.dataset.categorical, cfg.dataset.numeric = str(path), [], ["code"], []
    return cfg


def test_codes_differing_only_in_leading_zeros_are_two_levels_and_the_model_separates_them(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    path = tmp_path / "codes.csv"
    path.write_text("code,label\n" + "".join(f"{'007' if k else '7'},{k}\n" for k in y))
    cfg = _codes_config(path)
    assert load_frame(cfg.dataset).code.head(4).tolist() == ["007" if k else "7" for k in y[:4]]
    prep = prepare(cfg)
    assert prep.tabular.levels_ == {"code": {"007": 2, "7": 3}}
    model = make_model(("tabular",), "early_concat", prep, cfg, seed=0)
    fit(model, prep.splits["train"], prep.splits["val"], cfg.train, seed=0)
    auc = classification_metrics(prep.splits["test"].y, predict(model, prep.splits["test"]))["roc_auc"]
    assert auc == 1.0  # the code is the label: as the two spellings S_A / S_B would give


def _cells(col: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in col.head(8)]


def test_missing_value_markers_are_the_documented_list_and_configurable(tmp_path):
    path = tmp_path / "markers.csv"
    cells = ["NA", "", "None", "n/a", "null", "-", "0", "NaN"]
    pd.DataFrame({"code": cells * 4, "label": [0, 1] * 16}).to_csv(path, index=False)
    cfg = _codes_config(path)
    assert _cells(load_frame(cfg.dataset).code) == [None, None, None, "n/a", None, "-", "0", None]
    cfg.dataset.na_values = ["n/a", "-"]
    assert _cells(load_frame(cfg.dataset).code) == ["NA", "", "None", None, "null", None, "0", "NaN"]
    assert cfg.fingerprint() != synthetic_config().fingerprint()  # other markers, another table


def test_the_default_markers_keep_the_fingerprint_of_studies_stored_before_the_key():
    assert synthetic_config().fingerprint() == "48fa1b99f9"  # as computed before dataset.na_values existed (protocol 3)


def test_parquet_numbers_stored_as_strings_are_parsed_and_bad_cells_named_truthfully(tmp_path):
    df = synthetic_frame(200)
    df["b"] = [f" {v:.6f}" for v in df.b]  # strings, with a space
    df.loc[5, "b"] = "N/A"
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    cfg = synthetic_config()
    cfg.dataset.source = str(path)
    got = load_frame(cfg.dataset).b
    assert got.dtype == float and np.isnan(got[5]) and got[0] == float(df.b[0])
    df.loc[[7, 9], "b"] = ["12,5", "abc"]
    df.to_parquet(path)
    with pytest.raises(ValueError) as e:
        load_frame(cfg.dataset)
    assert str(e.value) == (f"{path}: numeric column 'b' holds 2 cell(s) that are not numbers (row 7: '12,5', "
                            "row 9: 'abc'); fix or blank those cells, or add their spelling to dataset.na_values "
                            "if it means missing")


def test_a_duplicated_header_name_is_an_error_in_files_and_frames(tmp_path):
    df = synthetic_frame(60)
    path = tmp_path / "dup.csv"
    frame = pd.concat([df[["review", "b", "colour"]], df[["noise"]].rename(columns={"noise": "b"}), df.label], axis=1)
    frame.to_csv(path, index=False)  # the noise column under the signal's name
    cfg = synthetic_config()
    cfg.dataset.source, cfg.dataset.numeric = str(path), ["b"]
    msg = ("the header names column(s) 'b' (2 times) more than once; rename them so that each column the "
           "spec reads has one name")
    with pytest.raises(ValueError) as e:
        load_frame(cfg.dataset)
    assert str(e.value) == f"{path}: {msg}"
    cfg.dataset.numeric = ["b.1"]  # pandas' renamed copy is no way around it
    with pytest.raises(ValueError, match="'b' \\(2 times\\)"):
        load_frame(cfg.dataset)
    cfg.dataset.numeric = ["b"]
    with pytest.raises(ValueError) as e:
        validate_frame(frame, cfg.dataset)
    assert str(e.value) == f"dataset: {msg}"
    with pytest.raises(ValueError) as e:
        validate_rows(frame.drop(columns="label"), cfg.dataset, ["b"], where="new.csv")
    assert str(e.value) == f"new.csv: {msg}"
    cfg.dataset.numeric = ["noise"]  # a repeated name the spec does not read is no ambiguity
    df.rename(columns={"b": "x"})[["review", "x", "colour", "x", "noise", "label"]].to_csv(path, index=False)
    assert list(load_frame(cfg.dataset).columns) == ["review", "colour", "noise", "label"]


def _spec_file(tmp_path, n: int, seed: int = 1):
    synthetic_frame(n, seed=seed).to_csv(tmp_path / "t.csv", index=False)
    spec = tmp_path / "t.toml"
    spec.write_text('[dataset]\nname = "t"\nsource = "t.csv"\ntext = ["review"]\ncategorical = ["colour"]\n'
                    'numeric = ["b", "noise"]\nlabel = "label"\n[text]\nmin_df = 1\n[tabular]\nmin_count = 1\n'
                    '[train]\nworkers = 1\nthreads = 1\nmax_epochs = 2\n'
                    '[study]\nseeds = [0]\nsplits = 1\nmodels = ["text_only", "tabular_only", "early_concat", "gmu"]\n'
                    'moddrop_models = []\nimbalance_models = []\nrobustness = false\nbootstrap = 50\n')
    return spec


def test_a_50_row_first_look_stops_before_training_or_trains_every_listed_model(tmp_path):
    spec, out = _spec_file(tmp_path, 50), tmp_path / "res"
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "run", "--data", str(spec), "--out", str(out)])
    assert str(e.value) == ("fusionstudy run: error: study.marginal_k = 50 (the removal background size) exceeds "
                            "the 34 train rows; set study.marginal_k to at most 34 (e.g. --set study.marginal_k=34) "
                            "or add rows")
    assert not out.exists()
    cli.main(["-q", "run", "--data", str(spec), "--out", str(out), "--set", "study.marginal_k=34"])
    res = load_study(out)
    auc = {r.model: r.metrics["test"]["roc_auc"] for r in res.runs}
    assert {"text_only", "tabular_only", "early_concat", "gmu"} <= set(auc) and np.isfinite(list(auc.values())).all()
    assert "runs_failed" not in res.meta and (out / "experiments.md").is_file()


def test_a_study_in_which_a_planned_run_failed_exits_non_zero_with_what_failed(tmp_path, monkeypatch):
    spec, out = _spec_file(tmp_path, 300), tmp_path / "res"
    real = runner.train_run

    def flaky(spec, *a, **kw):
        if spec.model == "gmu":
            raise MemoryError("out of memory on purpose")
        return real(spec, *a, **kw)
    monkeypatch.setattr(runner, "train_run", flaky)
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "run", "--data", str(spec), "--out", str(out)])
    assert str(e.value) == (f"fusionstudy run: error: 1 of 4 planned run(s) failed (1 with MemoryError: out of memory "
                            f"on purpose); see {out / 'failures.jsonl'}; fix the cause and rerun the same command to "
                            "retry them")
    assert (out / "experiments.md").is_file()  # the report of what did run is written
    monkeypatch.setattr(runner, "train_run", real)
    cli.main(["-q", "run", "--data", str(spec), "--out", str(out)])  # the retry succeeds: exit 0
    assert "gmu" in {r.model for r in load_study(out).runs}
