
import numpy as np
import pytest

from fusionstudy.records import EvalRecord, PredictionRecord, RunRecord, RunStore, Training, load_study, shared_loads


def _run(key="m|seed=0|cfg=fp", **kw):
    base = dict(run_key=key, study="s", model="gmu", kind="fusion", modalities=["tabular", "text"], fusion="gmu",
                part="part4", seed=0, config_fp="fp", config={"study": {"bootstrap": 50}}, git="g", time="t",
                metrics={"val": {"roc_auc": 0.9}, "test": {"roc_auc": 0.8}}, params={"total": 12})
    return RunRecord(**{**base, **kw})


def test_store_round_trips_every_record_type(tmp_path):
    store = RunStore(tmp_path)
    runs = [_run(), _run("w|seed=1", seed=1, training=Training.of(weaken=("subsample", "text", 0.2))),
            _run("d|seed=2", seed=2, training=Training.of(0.3), curves={"val_loss": [0.3, 0.2]}),
            _run("r|seed=0", model="ref_x", kind="reference", modalities=["text"], fusion="none",
                 estimator={"C": 2.0}, params={"total": float("nan")})]
    preds = PredictionRecord.of(runs[0].run_key, {"val": np.array([[0.2, 0.8]]), "test": np.array([[0.6, 0.4]])})
    ev = EvalRecord(run_key=runs[0].run_key, model="gmu", seed=0, part="part4", config_fp="fp",
                    perturbation="remove", modality="text", severity=1.0, subset="test", n=1,
                    metrics={"roc_auc": 0.7}, training=Training())
    store.append(runs[0], preds, [ev])
    for r in runs[1:]:
        store.append(r)
    back = store.records()
    assert [r.run_key for r in back] == [r.run_key for r in runs]
    assert back[1].training == Training("weakened", 0.0, ("subsample", "text", 0.2)) and back[1].training.tag == \
        "subsample:text:0.2"
    assert back[2].training.regime == "moddrop" and back[2].curves == {"val_loss": [0.3, 0.2]}
    assert back[3].kind == "reference" and np.isnan(back[3].params["total"])
    assert store.evals() == [ev]
    p = store.predictions()[runs[0].run_key]
    assert p.val == [0.8] and np.allclose(p.proba("test", 2), [[0.6, 0.4]])


def test_a_torn_last_line_is_skipped_and_does_not_swallow_the_next(tmp_path):
    store = RunStore(tmp_path)
    store.append(_run("a"))
    with open(store.runs_path, "a") as fh:
        fh.write('{"run_key": "torn", "mod')
    store.append(_run("b"))
    assert [r.run_key for r in store.records()] == ["a", "b"] and store.done_keys() == {"a", "b"}


def test_a_json_line_that_is_not_a_record_is_named_and_skipped(tmp_path, caplog):
    store = RunStore(tmp_path)
    store.append(_run("a"))
    with open(store.runs_path, "a") as fh:
        fh.write('{"foo": 1}\n[1, 2]\n"text"\n')
    store.append(_run("b"))
    with caplog.at_level("WARNING"):
        assert [r.run_key for r in store.records()] == ["a", "b"] and store.done_keys() == {"a", "b"}
    assert "runs.jsonl:2 is not a record" in caplog.text and "runs.jsonl:4 is not a record" in caplog.text


def test_old_records_migrate_kind_and_training_on_read(tmp_path):
    (tmp_path / "runs.jsonl").write_text(
        '{"kind": "train", "run_key": "k", "study": "s", "model": "early_concat_moddrop", "part": "part3", "seed": 0, '
        '"config_fp": "fp", "config": {}, "git": "g", "time": "t", "fusion": "early_concat", '
        '"modalities": ["tabular", "text"], "moddrop": 0.3, "weaken": [], "metrics": {}, "params": {}}\n')
    r = RunStore(tmp_path).records()[0]
    assert r.kind == "fusion" and r.training == Training("moddrop", 0.3, ())


def test_load_study_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="runs.jsonl"):
        load_study(tmp_path)


def test_shared_loads_read_a_folder_once_until_its_files_change(tmp_path):
    import json
    RunStore(tmp_path).append(_run(key="m|seed=0|cfg=fp"))
    (tmp_path / "split.json").write_text(json.dumps({"classes": [0, 1]}))
    (tmp_path / "study.json").write_text(json.dumps({"study": "s", "config_fp": "fp"}))
    outside = load_study(tmp_path), load_study(tmp_path)
    assert outside[0].cache is not outside[1].cache  # no memo outside the block
    with shared_loads():
        a = load_study(tmp_path)
        a.cache["x"] = 1
        with shared_loads():
            b = load_study(tmp_path.parent / tmp_path.name)
        assert b.cache is a.cache and [r.run_key for r in b.runs] == ["m|seed=0|cfg=fp"]
        (tmp_path / "summary.csv").write_text("not read by load_study")
        assert load_study(tmp_path).cache is a.cache
        RunStore(tmp_path).append(_run(key="m|seed=1|cfg=fp", seed=1))  # a changed file is read again
        c = load_study(tmp_path)
        assert c.cache is not a.cache and len(c.runs) == 2
    assert load_study(tmp_path).cache is not c.cache
    with shared_loads() as adopt:  # a study read elsewhere (a worker process) is adopted, not read again
        adopt(c)
        assert load_study(tmp_path).cache is c.cache and load_study(tmp_path).folder == tmp_path
