"""MLflow tracking (``tracking.py``): one MLflow run per stored run, curves as step metrics, a summary
run with the report's files; an unreachable tracker warns once and the study goes on. Slow: MLflow
creates its SQLite schema (~5 s) and imports in ~3 s."""
import json

import pytest

from fusionstudy.records import RunStore
from fusionstudy.report.write import write_reports
from fusionstudy.study.runner import run_study
from fusionstudy.study.tracking import default_uri, log_summary
from tests.conftest import synthetic_config, synthetic_frame

pytestmark = pytest.mark.slow
mlflow = pytest.importorskip("mlflow")


def _study(tmp_path, uri: str):
    csv = tmp_path / "d.csv"
    synthetic_frame(500).to_csv(csv, index=False)
    cfg = synthetic_config()
    cfg.dataset.source = str(csv)
    cfg.study.models, cfg.study.seeds = ["text_only", "tabular_only", "early_concat"], [0, 1]
    cfg.study.moddrop_models, cfg.study.imbalance_models = [], []
    cfg.study.noise_levels, cfg.study.drop_levels, cfg.study.permutations = [1.0], [0.5], 1
    cfg.train.max_epochs, cfg.train.workers = 3, 1
    cfg.tracking.mlflow_uri = uri
    return cfg


def test_mlflow_gets_one_run_per_trained_model_and_seed_with_curves_and_a_summary(tmp_path):
    folder = tmp_path / "res"
    cfg = _study(tmp_path, default_uri(folder))
    run_study(cfg, str(folder))
    dest = write_reports(folder, folder / "experiments.md")
    log_summary(cfg.tracking, folder, [dest, folder / "summary.csv", folder / "figures"])
    client = mlflow.MlflowClient(tracking_uri=default_uri(folder))
    exp = client.get_experiment_by_name("res")  # one experiment per study, named after its folder
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_key = {r.data.tags["run_key"]: r for r in runs if "run_key" in r.data.tags}
    records = RunStore(folder).records()
    assert len(by_key) == len(runs) - 1 and set(by_key) == {r.run_key for r in records}  # + the summary run
    trained = [r for r in records if r.kind in ("unimodal", "fusion")]
    assert {(r.model, r.seed) for r in trained} == {(m, s) for m in cfg.study.models for s in (0, 1)}
    for rec in trained:
        run = by_key[rec.run_key]
        assert run.info.status == "FINISHED" and run.data.tags["model"] == rec.model
        assert run.data.metrics["test_roc_auc"] == pytest.approx(rec.metrics["test"]["roc_auc"])
        assert run.data.params["train.max_epochs"] == "3" and run.data.params["study.seeds"] == "[0, 1]"
        assert run.data.metrics["params_total"] == rec.params["total"] and "train_seconds" in run.data.metrics
        hist = client.get_metric_history(run.info.run_id, "curve_val_loss")
        hist = sorted(hist, key=lambda m: m.step)
        assert [m.step for m in hist] == rec.curves["epoch"] == [1, 2, 3]
        assert [m.value for m in hist] == pytest.approx(rec.curves["val_loss"])
    (summary,) = [r for r in runs if r.data.tags.get("kind") == "summary"]
    arts = {a.path for a in client.list_artifacts(summary.info.run_id)}
    assert {"experiments.md", "summary.csv", "figures"} <= arts
    assert summary.data.metrics["runs_trained"] == json.loads((folder / "study.json").read_text())["runs_trained"]


def test_an_unreachable_mlflow_tracker_warns_once_and_the_study_goes_on(tmp_path, caplog):
    cfg = _study(tmp_path, "http://127.0.0.1:9")  # nothing listens on the discard port
    cfg.study.models, cfg.study.seeds = ["tabular_only"], [0]
    folder = run_study(cfg, str(tmp_path / "res"))
    log_summary(cfg.tracking, folder, [folder / "study.json"])
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "MLflow tracking at http://127.0.0.1:9" in r.getMessage()]
    assert len(warned) == 1
    assert "tabular_only" in {r.model for r in RunStore(folder).records()}
