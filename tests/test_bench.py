
import numpy as np
import pytest

from fusionstudy import bench
from fusionstudy.analysis.tables import part_table
from fusionstudy.report.formats import bench_cells


def _meta():
    return {"cores": 2, "workers": 2, "wall_seconds": 100.0, "runs_trained": 20,
            "part_seconds": {"data": 5.0, "reference": 5.0, "main": 40.0, "part3": 0.0, "part5": 50.0}}


def test_part_table_counts_rates_and_ratios_to_a_baseline(tmp_path):
    base = {"wall_seconds": 400.0, "part_seconds": {"data": 10.0, "main": 80.0, "part5": 200.0}}
    t = part_table(_meta(), [], base).set_index("part")
    assert t.loc["total", "models_per_s"] == pytest.approx(0.2)
    assert t.loc["total", "ratio"] == pytest.approx(0.25)
    assert t.loc["main", "ratio"] == pytest.approx(0.5) and t.loc["part5", "ratio"] == pytest.approx(0.25)
    assert np.isnan(t.loc["reference", "ratio"])  # no baseline figure for it
    scaled = part_table({**_meta(), "part_seconds": {"scaling": 0.1}}, [], {**base, "part_seconds": {"scaling": 0.0}})
    assert np.isnan(scaled.set_index("part").loc["scaling", "ratio"])  # a 0.0 s baseline part: no ratio, not inf
    cells = bench_cells(t.reset_index())
    assert list(cells.columns)[-1] == "ratio to baseline"
    assert cells["ratio to baseline"].iloc[-1] == "x0.25" and cells["ratio to baseline"].iloc[1] == "—"
    assert "ratio" not in part_table(_meta(), []).columns


def test_stored_baselines_are_full_profile_studies_and_unknown_names_are_errors(tmp_path):
    known = bench.baselines()
    assert {"dense-adamw", "sparse-adagrad", "per-model", "per-model-contrast"} <= set(known)
    for b in known.values():  # the parts run one after another; the references may overlap them (a driver thread)
        serial = sum(v for k, v in b["part_seconds"].items() if k != "reference")
        assert serial - 1.0 <= b["wall_seconds"] <= serial + b["part_seconds"].get("reference", 0.0) + 10.0, b["label"]
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        bench.report(tmp_path, "nope")


def test_the_default_baseline_is_the_newest_one_of_the_same_study(tmp_path):
    from tests.conftest import ROOT
    text = bench.report(ROOT / "results" / "clothing", bench.AUTO)
    assert "baseline 'per-model':" in text and "no ratio" not in text  # the newest comparable, not sparse-adagrad
    assert "ratio to baseline" not in bench.report(ROOT / "results" / "faa_strikes", bench.AUTO)  # none timed it
    assert "(no ratio: baseline 'sparse-adagrad'" in bench.report(ROOT / "results" / "clothing", "sparse-adagrad")


def test_bench_reports_needs_stored_results_and_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="results/clothing: no study.json"):
        bench.bench_reports(tmp_path)


@pytest.mark.slow  # two spawned processes: ~18 s on 2 cores
def test_bench_stack_prints_both_paths_side_by_side_with_equal_val_auc(tmp_path):
    from fusionstudy.bench import compare_stack
    from tests.conftest import synthetic_frame
    synthetic_frame(600).to_csv(tmp_path / "t.csv", index=False)
    spec = tmp_path / "t.toml"
    spec.write_text('[dataset]\nname = "t"\nsource = "t.csv"\ntext = ["review"]\ncategorical = ["colour"]\n'
                    'numeric = ["b", "noise"]\nlabel = "label"\n[text]\nmin_df = 1\n[tabular]\nmin_count = 1\n'
                    '[train]\nmax_epochs = 2\n[study]\nseeds = [0, 1]\nsplits = 1\n')
    df = compare_stack(str(spec), "quick", [], "early_concat")
    assert df["path"].tolist() == ["one by one", "stacked"] and (df["models"] == 2).all()
    assert (df["seconds"] > 0).all() and (df["peak MiB"] > 50).all() and df["speed-up"].iloc[0] == 1.0
    assert df["val ROC-AUC"].iloc[0] == df["val ROC-AUC"].iloc[1]  # 5 decimals: equal within 1e-4


def test_report_stopwatch_takes_a_workers_own_seconds_and_times_the_rest_between_lines():
    import logging
    import time
    watch, log = bench._Stopwatch(), logging.getLogger("test_bench_stopwatch")
    log.addHandler(watch)
    log.setLevel(logging.INFO)
    try:
        log.info("wrote /r/results/a/summary.csv and /r/results/a/experiments.md", extra={"seconds": 12.5})
        time.sleep(0.05)
        log.info("wrote /r/postmortem.md")
    finally:
        log.removeHandler(watch)
    assert watch.laps[0] == ("/r/results/a/summary.csv and /r/results/a/experiments.md", 12.5)
    assert watch.laps[1][0] == "/r/postmortem.md" and 0.04 < watch.laps[1][1] < 5


def test_a_resumed_study_is_not_compared_with_a_baseline():
    from fusionstudy.analysis.tables import comparable
    base = {"study": "clothing", "profile": "full", "runs_trained": 370}
    meta = {"study": "clothing", "profile": "full", "runs_planned": 370}
    assert comparable(meta, base) and not comparable({**meta, "invocations": 3}, base)
    assert not comparable({**meta, "runs_planned": 235}, base)
