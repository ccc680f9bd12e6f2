"""The Ray executor (``executors.py``): same records as the local executor, bounded retries, failures
recorded while the other runs complete. Slow: each test starts a local Ray (~5-10 s, ~600 MB)."""
import json

import pytest

from fusionstudy.config import load_config
from fusionstudy.records import RunStore
from fusionstudy.study.executors import CRASH, CRASH_DIR, describe_failure
from fusionstudy.study.runner import run_study
from tests.conftest import synthetic_config, synthetic_frame

pytestmark = pytest.mark.slow
pytest.importorskip("ray")


def _small_real_study(executor: str):
    """The default dataset, 1,500 rows: 4 models x 2 seeds, one ModDrop model, one Part 5 point per modality."""
    return load_config("clothing", "quick", [
        "dataset.subsample=1500", "study.seeds=[0, 1]", "study.splits=1", "study.references=false", "study.bootstrap=50",
        'study.models=["text_only", "tabular_only", "early_concat", "gmu"]', 'study.moddrop_models=["early_concat"]',
        'study.imbalance_models=["early_concat"]', "study.corrupt_levels=[]", "study.truncate_levels=[]",
        "study.subsample_levels=[0.5]", "study.noise_levels=[1.0]", "study.permutations=1", "study.save_models=false",
        "train.workers=2", "train.threads=2", f'train.executor="{executor}"', "ray.num_cpus=2"])


def _untimed(curves: dict) -> dict:
    return {k: v for k, v in curves.items() if "seconds" not in k}


def test_ray_executor_stores_the_local_executors_metrics_for_the_same_seeds(tmp_path):
    folders = {ex: run_study(_small_real_study(ex), str(tmp_path / ex)) for ex in ("local", "ray")}
    runs = {ex: {r.run_key: r for r in RunStore(f).records()} for ex, f in folders.items()}
    # 8 Parts 1-2-4 + 2 ModDrop + 2 Part 5 + 2 late ensembles + 3 clean-point remedies (OGM-GE, G-Blend, MLA; imbalance seed 0)
    assert runs["ray"].keys() == runs["local"].keys() and len(runs["ray"]) == 8 + 2 + 2 + 2 + 3
    for key, rec in runs["local"].items():
        assert runs["ray"][key].metrics == rec.metrics, key
        assert _untimed(runs["ray"][key].curves) == _untimed(rec.curves), key
    evals = {ex: {(e.run_key, e.perturbation, e.modality, e.severity): e.metrics for e in RunStore(f).evals()}
             for ex, f in folders.items()}
    assert evals["ray"] == evals["local"]
    meta = json.loads((folders["ray"] / "study.json").read_text())
    assert meta["executor"] == "ray" and meta["workers"] == 2 and meta["torch_threads_per_worker"] == 1
    assert not (folders["ray"] / "failures.jsonl").exists()


def test_a_killed_ray_task_is_retried_then_recorded_as_failed_while_the_rest_complete(tmp_path, monkeypatch):
    csv = tmp_path / "d.csv"
    synthetic_frame(600).to_csv(csv, index=False)
    cfg = synthetic_config()
    cfg.dataset.source = str(csv)
    cfg.study.models, cfg.study.seeds = ["text_only", "tabular_only", "early_concat"], [0, 1]
    cfg.study.moddrop_models, cfg.study.imbalance_models, cfg.study.references = [], [], False
    cfg.study.noise_levels, cfg.study.drop_levels, cfg.study.permutations = [1.0], [0.5], 1
    cfg.train.max_epochs, cfg.train.executor, cfg.ray.max_retries, cfg.ray.num_cpus = 2, "ray", 1, 2
    (tmp_path / "crash").mkdir()
    # early_concat seed 0 dies on its first attempt only; tabular_only seed 1 on every attempt
    monkeypatch.setenv(CRASH, "early_concat|seed=0@1,tabular_only|seed=1")
    monkeypatch.setenv(CRASH_DIR, str(tmp_path / "crash"))
    folder = run_study(cfg, str(tmp_path / "res"))
    store, fp = RunStore(folder), cfg.fingerprint()
    assert len(list((tmp_path / "crash").glob("attempt-early_concat*"))) == 2  # killed once, retried, stored
    assert len(list((tmp_path / "crash").glob("attempt-tabular_only*"))) == 2  # 1 + max_retries attempts
    (fail,) = store.failures()
    assert fail.run_key == f"tabular_only|seed=1|cfg={fp}" and fail.attempts == 2 and fail.executor == "ray"
    assert "Crashed" in fail.error_type or "Died" in fail.error_type, fail
    trained = {r.run_key for r in store.records() if r.kind != "ensemble"}
    assert trained == {f"{m}|seed={s}|cfg={fp}" for m in cfg.study.models for s in (0, 1)} - {fail.run_key}
    assert json.loads((folder / "study.json").read_text())["runs_failed"] == 1
    monkeypatch.delenv(CRASH)
    cfg.train.executor = "local"  # a rerun retries the failed run (not in the done keys)
    run_study(cfg, str(folder))
    assert fail.run_key in store.done_keys()


def test_describe_failure_unwraps_a_ray_task_error():
    ray = pytest.importorskip("ray")
    err = ray.exceptions.RayTaskError("f", "Traceback ...", ValueError("bad value 3"))
    assert describe_failure(err) == ("ValueError", "bad value 3")
    assert describe_failure(ray.exceptions.WorkerCrashedError())[0] == "WorkerCrashedError"
