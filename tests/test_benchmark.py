"""The committed benchmark (issue 19): each planted scenario's pooled verdict against its planted truth,
the forecast stored before the first fused run of every benchmark study, and the scenario configs."""
from pathlib import Path

import pytest

from fusionstudy.analysis.pooled import fused_vs_unimodal
from fusionstudy.analysis.verdicts import EQUIVALENT, HELPS
from fusionstudy.benchmark import scenario_study
from fusionstudy.records import load_study
from fusionstudy.report.benchmark import PLANTED

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 0.005


def _stored(name: str):
    folder = ROOT / "results" / name
    if not (folder / "study.json").is_file():
        pytest.skip(f"{name} not committed")
    return load_study(folder)


@pytest.mark.parametrize("name, truth", [("scenario_independent", HELPS), ("scenario_interaction", HELPS),
                                         ("scenario_dominant_modality", HELPS),
                                         ("scenario_text_only_signal", EQUIVALENT)])
def test_planted_scenarios_get_their_planted_verdict(name, truth):
    out = fused_vs_unimodal(_stored(name), "early_concat", MARGIN)
    assert out["verdict"] == truth, out
    assert all(g["k"] == 5 for g in out["gains"])


def test_redundant_scenario_shows_no_gain():
    # planted: either modality makes the other redundant, so fusion cannot gain. At margin 0.005 the
    # pooled interval is not tight enough for "equivalent" (early fusion pays a small overfitting cost,
    # its lower bound sits below -margin): the committed page says "inconclusive"; what holds is no gain
    out = fused_vs_unimodal(_stored("scenario_redundant"), "early_concat", MARGIN)
    binding = next(g for g in out["gains"] if g["vs"] == out["binding"])
    assert binding["hi"] < MARGIN and out["verdict"] != HELPS, binding


@pytest.mark.parametrize("name", ["faa_strikes", "lending_club", *PLANTED])
def test_forecasts_were_stored_before_the_first_fused_run(name):
    res = _stored(name)
    assert res.forecasts, name
    first_fused = min(r.time for r in res.runs + res.resplits if r.kind == "fusion")
    assert max(f.created for f in res.forecasts if f.split == 0 and not f.weaken) < first_fused


def test_scenario_study_config(tmp_path):
    cfg = scenario_study("redundant", tmp_path)
    assert (tmp_path / "redundant.csv").is_file() and cfg.dataset.name == "scenario_redundant"
    assert cfg.study.splits == 5 and cfg.study.seeds == [0, 1, 2] and cfg.study.subsample_levels == []


def test_report_only_on_an_empty_root_is_one_clear_error(tmp_path):
    from fusionstudy.benchmark import run_benchmark
    with pytest.raises(FileNotFoundError, match="no benchmark study under .*results.*run `fusionstudy benchmark --root"):
        run_benchmark(tmp_path, train=False)
    assert not (tmp_path / "docs").exists()


def test_a_spec_with_its_own_source_does_not_inherit_the_default_columns(tmp_path):
    from fusionstudy.config import load_config
    spec = tmp_path / "one.toml"
    spec.write_text('[dataset]\nname = "one"\nsource = "t.csv"\ntext = ["body"]\nlabel = "y"\n')
    cfg = load_config(spec, "quick")
    assert cfg.dataset.text == ["body"] and cfg.dataset.categorical == [] and cfg.dataset.numeric == []


def test_benchmark_trains_every_study_in_order_and_says_which_are_stored(tmp_path, monkeypatch, caplog):
    import fusionstudy.api
    from fusionstudy import benchmark
    from fusionstudy.config import load_config
    from fusionstudy.report.benchmark import PLANTED
    calls = []
    monkeypatch.setattr(fusionstudy.api, "run_study", lambda cfg, out: calls.append((cfg.dataset.name, Path(out).name)))
    monkeypatch.setattr(benchmark, "scenario_study", lambda name, folder: load_config("clothing", "quick"))
    (tmp_path / "results" / "clothing").mkdir(parents=True)
    (tmp_path / "results" / "clothing" / "study.json").write_text("{}")
    with caplog.at_level("INFO", logger="fusionstudy"), pytest.raises(FileNotFoundError, match="runs.jsonl not found"):
        benchmark.run_benchmark(tmp_path, datasets=(("clothing", "full"), ("faa_strikes", "benchmark")))
    assert [out for _, out in calls] == ["clothing", "faa_strikes", *PLANTED]
    assert calls[1][0] == "faa_strikes"
    assert f"{2 + len(PLANTED)} studies" in caplog.text and "1 already stored" in caplog.text
    assert f"study {2 + len(PLANTED)} of {2 + len(PLANTED)}: {PLANTED[-1]}" in caplog.text
