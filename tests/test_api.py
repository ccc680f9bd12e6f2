"""The library face and the command line as a user meets them: from a folder outside the checkout."""
import subprocess
import sys

import numpy as np
import pytest

import fusionstudy as fs
from tests.conftest import ROOT, synthetic_config, synthetic_frame


def _small(cfg):
    cfg.study.models = ["text_only", "tabular_only", "early_concat"]
    cfg.study.moddrop_models, cfg.study.imbalance_models = [], []
    cfg.study.noise_levels, cfg.study.drop_levels, cfg.study.permutations = [1.0], [0.5], 1
    cfg.study.robustness = False
    cfg.train.max_epochs, cfg.train.workers = 2, 1
    return cfg


def test_run_study_on_a_dataframe_in_a_folder_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not tmp_path.resolve().is_relative_to(ROOT)
    df = synthetic_frame(600)
    cfg = _small(synthetic_config())
    cfg.dataset.source = "no/such/file.csv"  # the DataFrame is the data: the source is never read
    res = fs.run_study(cfg, data=df)
    assert res.folder == (tmp_path / "results" / "synthetic").resolve()
    back = fs.load_study(tmp_path / "results" / "synthetic")
    assert {r.model for r in back.runs} >= {"text_only", "tabular_only", "early_concat", "ref_hist_gbdt"}
    auc = {r.model: r.metrics["test"]["roc_auc"] for r in back.runs if r.seed == 0}
    assert auc["early_concat"] > 0.8 and np.isfinite(list(auc.values())).all()  # both halves carry signal
    assert [r.metrics for r in back.runs] == [r.metrics for r in res.runs]
    proba = fs.predict(res.folder, "early_concat", df.drop(columns="label").head(5))
    assert proba.shape == (5, 3) and np.allclose(proba[["proba_0", "proba_1"]].sum(axis=1), 1)


def test_a_path_as_data_is_read_like_a_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    synthetic_frame(500).to_csv(tmp_path / "t.csv", index=False)
    cfg = _small(synthetic_config())
    cfg.study.models, cfg.study.references = ["tabular_only"], False
    res = fs.run_study(cfg, data="t.csv", out="here")
    assert res.folder == (tmp_path / "here").resolve() and {r.model for r in res.runs} == {"tabular_only"}


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fusionstudy", *args], cwd=cwd, capture_output=True, text=True)


def test_the_command_lists_its_verbs_and_fails_in_one_line(tmp_path):
    out = _cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for verb in ("run", "forecast", "report", "predict", "bench", "docs", "list"):
        assert verb in out.stdout
    bad = _cli("run", "--data", "nope.toml", cwd=tmp_path)  # a data error: exit 1, one line
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert "nope.toml" in bad.stderr and "bundled: ['clothing', 'clothing_no_rating', 'faa_strikes', 'faa_strikes_no_effect_words', 'lending_club']" in bad.stderr
    usage = _cli("run", "--no-such-flag", cwd=tmp_path)  # a usage error: exit 2
    assert usage.returncode == 2 and "unrecognized arguments: --no-such-flag" in usage.stderr
    assert "profiles: benchmark, encoders, full, quick" in _cli("list", cwd=tmp_path).stdout


def test_bundled_names_and_files_load_alike(tmp_path):
    named = fs.load_config("clothing", "quick")
    spec = tmp_path / "c.toml"
    spec.write_text((ROOT / "fusionstudy" / "datasets" / "clothing.toml").read_text())
    assert fs.load_config(spec, "quick").fingerprint() == named.fingerprint()
    with pytest.raises(FileNotFoundError, match=r"profile 'quik' is neither a bundled profile \(.*quick\)"):
        fs.load_config("clothing", "quik")
