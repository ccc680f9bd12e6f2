import json

import numpy as np
import pandas as pd
import pytest

from fusionstudy.analysis.tables import dominance, eval_frame
from fusionstudy.config import StudyConfig
from fusionstudy.data.prepare import prepare
from fusionstudy.records import RunStore, load_study
from fusionstudy.report.write import write_reports
from fusionstudy.study import runner as study
from fusionstudy.study.runner import RunSpec, plan, run_study, train_run
from fusionstudy.training.evaluation import eval_suite
from tests.conftest import synthetic_config, synthetic_frame


def test_plan_covers_every_part_and_skips_the_other_unimodal_model():
    cfg = synthetic_config()
    p = plan(cfg)
    assert {s.model for s in p["main"]} == set(cfg.study.models)
    assert {s.model for s in p["part3"]} == {"early_concat_moddrop", "gmu_moddrop"}
    text_weak = {s.model for s in p["part5"] if s.training.weaken[1] == "text"}
    assert "text_only" in text_weak and "tabular_only" not in text_weak
    assert {s.training.weaken[0] for s in p["part5"]} == {"subsample", "corrupt", "truncate"}
    assert {s.kind for s in p["main"]} == {"unimodal", "fusion"}
    keys = [s.key("fp") for v in p.values() for s in v]
    assert len(keys) == len(set(keys))
    cfg.study.models = ["text_only", "no_such_fusion"]
    with pytest.raises(ValueError, match="no_such_fusion"):
        plan(cfg)


def test_only_informative_modality_gets_the_shapley_share():
    cfg = synthetic_config()
    prep = prepare(cfg, synthetic_frame(1500, text_signal=False))
    rec, _, evals = train_run(RunSpec("early_concat", "early_concat", ("tabular", "text"), 0, "part2"), prep, cfg,
                              eval_suite(prep, cfg))
    d = dominance(eval_frame(evals, [rec])).iloc[0]
    assert d.clean > 0.9
    assert 1 - d.share_text > 0.95  # tabular holds all the signal
    assert d.phi_text + d.phi_tabular == pytest.approx(d.clean - 0.5)


def test_run_study_on_a_csv_resumes_and_never_loses_runs(tmp_path):
    csv = tmp_path / "toy.csv"
    synthetic_frame(800).to_csv(csv, index=False)
    cfg = synthetic_config()
    cfg.dataset.source = str(csv)
    cfg.study.models = ["text_only", "tabular_only", "early_concat"]
    cfg.study.moddrop_models, cfg.study.imbalance_models = ["early_concat"], ["text_only", "early_concat"]
    cfg.study.subsample_levels, cfg.study.corrupt_levels, cfg.study.truncate_levels = [0.5], [], [2]
    cfg.study.noise_levels, cfg.study.drop_levels, cfg.study.permutations = [1.0], [0.5], 1
    cfg.study.imbalance_seeds = [0]
    cfg.train.max_epochs, cfg.train.workers = 2, 1
    folder = run_study(cfg, str(tmp_path / "res"))
    meta = json.loads((folder / "study.json").read_text())
    # 3 main + 1 ModDrop + Part 5: (text_only, early_concat) x {subsample, truncate} text + early_concat x subsample tab
    # + the 3 default remedies at the clean point (the default weakened points are not in this grid)
    assert meta["runs_trained"] == meta["runs_planned"] == 3 + 1 + 5 + 3
    runs = RunStore(folder).records()
    assert {r.model for r in runs} >= {"text_only", "late_ensemble", "ref_hist_gbdt", "early_concat_moddrop"}
    assert {r.kind for r in runs} == {"unimodal", "fusion", "reference", "ensemble"}
    assert {r.training.regime for r in runs} == {"plain", "moddrop", "weakened", "remedy"}
    # cut the last record in half: the run is redone, every complete one is kept
    lines = (folder / "runs.jsonl").read_text().splitlines()
    (folder / "runs.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    run_study(cfg, str(folder))
    meta2 = json.loads((folder / "study.json").read_text())
    assert meta2["runs_trained"] == meta["runs_trained"] + 1 and meta2["invocations"] == 2
    assert meta2["wall_seconds"] > meta["wall_seconds"]
    run_study(cfg, str(folder))  # nothing left to train: the timings are kept
    assert json.loads((folder / "study.json").read_text()) == meta2
    dest = write_reports(folder, tmp_path / "exp.md")
    text = dest.read_text()
    for heading in ("## Parts 1–2", "## Part 3", "### Dominance", "## Part 5"):
        assert heading in text
    s = pd.read_csv(folder / "summary.csv")
    assert set(s.model) >= {"text_only", "tabular_only", "early_concat", "late_ensemble", "early_concat_moddrop"}
    assert len(load_study(folder).evals) > 0
    assert "planned runs: the others were stored by an interrupted invocation" not in text
    # an interrupted first invocation writes no study.json: the rerun's wall covers only what it trained
    (folder / "study.json").unlink()
    lines = (folder / "runs.jsonl").read_text().splitlines()
    (folder / "runs.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    run_study(cfg, str(folder))
    assert (f"it times 1 of the {meta['runs_planned']} planned runs: the others were stored by an interrupted "
            "invocation, which is not timed.") in write_reports(folder, tmp_path / "exp.md").read_text()


def test_report_on_an_empty_folder_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="runs.jsonl"):
        load_study(tmp_path)


def _tiny_study(tmp_path, df, **study):
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    cfg = synthetic_config()
    cfg.dataset.source = str(csv)
    cfg.study.models = ["text_only", "tabular_only", "early_concat", "gmu"]
    cfg.study.moddrop_models, cfg.study.imbalance_models = [], ["text_only", "early_concat"]
    cfg.study.subsample_levels, cfg.study.corrupt_levels, cfg.study.truncate_levels = [0.5], [], []
    cfg.study.noise_levels, cfg.study.drop_levels, cfg.study.permutations = [1.0], [0.5], 1
    cfg.study.imbalance_seeds = [0]
    cfg.train.max_epochs, cfg.train.workers = 2, 1
    for k, v in study.items():
        setattr(cfg.study, k, v)
    return cfg


def test_multiclass_study_reports_without_crashing(tmp_path):
    df = synthetic_frame(600)
    df["label"] = np.where(df.b > 0.5, "hi", np.where(df.b < -0.5, "lo", "mid"))
    cfg = _tiny_study(tmp_path, df)
    folder = run_study(cfg, str(tmp_path / "res"))
    text = write_reports(folder, tmp_path / "exp.md").read_text()
    assert "## Part 4" in text and "## Part 5" in text
    s = pd.read_csv(folder / "summary.csv").set_index("model")
    assert s.loc["tabular_only", "test_roc_auc_mean"] > 0.7  # macro one-vs-rest, 2 epochs; chance is 0.5
    from fusionstudy.report.postmortem import render_postmortem
    post = render_postmortem([folder], tmp_path / "post.md")  # issue 19: right wording for any dataset
    for binary_only in ("F1 @ 0.5", "minority recall at", "threshold 0.5", " nan", "NaN"):
        assert binary_only not in post, binary_only
    assert "## 6. When is multimodal modelling actually worth it?" in post and "1 study" in post


def test_dataset_without_text_trains_tabular_models(tmp_path):
    cfg = _tiny_study(tmp_path, synthetic_frame(500).drop(columns="review"), models=StudyConfig().models,
                      imbalance_models=[])
    cfg.dataset.text = []
    folder = run_study(cfg, str(tmp_path / "res"))
    runs = RunStore(folder).records()
    # the default list adapts: a fusion needs two modalities, so only the tabular models run
    assert {r.model for r in runs} == {"tabular_only", "ref_hist_gbdt"}
    assert all(r.modalities == ["tabular"] for r in runs)
    text = write_reports(folder, tmp_path / "exp.md").read_text()
    assert "No fusion variant was trained" in text and "No imbalance sweep" in text


def test_a_listed_model_the_data_cannot_feed_is_an_error_before_any_folder_exists(tmp_path):
    cfg = _tiny_study(tmp_path, synthetic_frame(300).drop(columns="review"), models=["tabular_only", "gmu"])
    cfg.dataset.text = []
    with pytest.raises(ValueError, match=r"study.models lists \['gmu'\], which needs two modalities"):
        run_study(cfg, str(tmp_path / "res"))
    assert not (tmp_path / "res").exists()


def test_binary_study_with_a_short_model_list_and_no_part5_reports(tmp_path):
    cfg = _tiny_study(tmp_path, synthetic_frame(600), imbalance_models=[])
    folder = run_study(cfg, str(tmp_path / "res"))
    text = write_reports(folder, tmp_path / "exp.md").read_text()
    assert "## Part 4: fusion variants" in text and "`gmu`" in text and "No imbalance sweep" in text
    assert "stratified random split" in text
    assert "late_logit_avg" not in text.split("## Part 4")[1].split("###")[0]  # not trained, not in the table


def test_text_only_dataset_reports(tmp_path):
    df = synthetic_frame(500)[["review", "label"]]
    df["fold"] = np.array(["train", "train", "train", "val", "test"] * 100)  # a predefined split
    cfg = _tiny_study(tmp_path, df, imbalance_models=[], models=StudyConfig().models)
    cfg.dataset.categorical, cfg.dataset.numeric = [], []
    cfg.split.column = "fold"
    folder = run_study(cfg, str(tmp_path / "res"))
    assert {r.model for r in RunStore(folder).records()} == {"text_only", "ref_tfidf_logreg"}
    text = write_reports(folder, tmp_path / "exp.md").read_text()
    assert "Both unimodal models are needed" in text and "No fusion variant" in text
    assert "predefined split (column `fold`) 300 / 100 / 100" in text


def test_a_run_that_raises_is_recorded_as_failed_the_others_complete_and_a_rerun_retries_it(tmp_path, monkeypatch):
    cfg = _tiny_study(tmp_path, synthetic_frame(400), models=["text_only", "tabular_only"], imbalance_models=[])
    cfg.study.references = False
    real = study.train_run

    def flaky(spec, *a, **kw):
        if spec.model == "text_only":
            raise MemoryError("out of memory on purpose")
        return real(spec, *a, **kw)
    monkeypatch.setattr(study, "train_run", flaky)
    folder = run_study(cfg, str(tmp_path / "res"))
    store, key = RunStore(folder), f"text_only|seed=0|cfg={cfg.fingerprint()}"
    (fail,) = store.failures()
    assert (fail.run_key, fail.error_type, fail.message, fail.attempts, fail.executor) == (
        key, "MemoryError", "out of memory on purpose", 1, "local")
    assert {r.model for r in store.records()} == {"tabular_only"}
    meta = json.loads((folder / "study.json").read_text())
    assert meta["runs_failed"] == 1 and meta["runs_trained"] == 1
    monkeypatch.setattr(study, "train_run", real)
    run_study(cfg, str(folder))
    assert key in store.done_keys() and "runs_failed" not in json.loads((folder / "study.json").read_text())


def test_a_rerun_prepares_only_the_splits_with_something_left_to_train(tmp_path, monkeypatch):
    csv = tmp_path / "toy.csv"
    synthetic_frame(500).to_csv(csv, index=False)
    cfg = synthetic_config()
    cfg.dataset.source = str(csv)
    cfg.study.models, cfg.study.seeds, cfg.study.split_seeds = ["text_only", "tabular_only", "early_concat"], [0], [0]
    cfg.study.moddrop_models, cfg.study.imbalance_models, cfg.study.remedies = [], [], []
    cfg.study.splits, cfg.study.robustness, cfg.study.forecast = 3, False, False
    cfg.train.max_epochs, cfg.train.workers = 1, 1
    folder = run_study(cfg, str(tmp_path / "res"))
    splits_json, stored = (folder / "splits.json").read_text(), RunStore(folder).records()
    prepared = []
    real = study.staged_prepare
    monkeypatch.setattr(study, "staged_prepare", lambda c, d, k, st: prepared.append(k) or real(c, d, k, st))
    run_study(cfg, str(folder))  # every run of every split is stored: no split's data is prepared again
    assert prepared == [] and (folder / "splits.json").read_text() == splits_json
    lines = (folder / "runs.jsonl").read_text().splitlines()
    lost = next(i for i, line in enumerate(lines) if '"model": "ref_stack_gbdt"' in line and '"split": 2' in line)
    (folder / "runs.jsonl").write_text("\n".join(lines[:lost] + lines[lost + 1:]) + "\n")
    run_study(cfg, str(folder))  # split 2 lost a reference: that split alone is prepared, and the reference refit
    assert prepared == [2] and (folder / "splits.json").read_text() == splits_json
    again = {r.run_key: r.metrics for r in RunStore(folder).records()}
    assert again == {r.run_key: r.metrics for r in stored}


@pytest.mark.slow
def test_one_worker_pool_serves_every_split_with_the_in_process_results(tmp_path):
    """The local pool lives through all splits (workers load each resplit's data from a staged
    file; split k is queued before split k-1 is stored): two workers store the records one process
    stores, references included, with two worker processes in all."""
    csv = tmp_path / "toy.csv"
    synthetic_frame(700).to_csv(csv, index=False)
    folders = {}
    for workers in (1, 2):
        cfg = synthetic_config()
        cfg.dataset.source = str(csv)
        cfg.study.models, cfg.study.seeds, cfg.study.split_seeds = ["text_only", "tabular_only", "early_concat"], [0], [0, 1]
        cfg.study.moddrop_models, cfg.study.imbalance_models, cfg.study.remedies = [], [], []
        cfg.study.splits, cfg.study.references, cfg.study.robustness = 3, True, False
        cfg.train.max_epochs, cfg.train.workers, cfg.train.threads = 2, workers, workers
        folders[workers] = run_study(cfg, str(tmp_path / f"w{workers}"))
    runs = {w: {r.run_key.rsplit("|cfg=", 1)[0]: r.metrics for r in RunStore(f).records()} for w, f in folders.items()}
    # + the late ensemble of each seed and split, + the references (5 on split 0, 8 on each resplit of 2 seeds)
    assert runs[2] == runs[1] and len(runs[1]) == 3 + 2 * 6 + 1 + 2 * 2 + 5 + 2 * 8
    assert {int(k.split("split=")[1].split("|")[0]) for k in runs[2] if "split=" in k} == {1, 2}
    meta = json.loads((folders[2] / "study.json").read_text())
    assert meta["workers"] == 2 and len(meta["peak_rss_mb_per_worker"]) == 2  # one pool, not one per split
    # the forecast, fit by the two workers (each resplit prepared there), stores what one process stores
    casts = {w: {k: (r.y, r.proba, r.models) for k, r in RunStore(f).forecasts().items()} for w, f in folders.items()}
    assert casts[2] == casts[1] and {f"split={k}|weaken=" for k in range(3)} <= set(casts[1])
    first_fused = min(r.time for r in RunStore(folders[2]).records() if r.kind == "fusion")
    assert max(r.created for r in RunStore(folders[2]).forecasts().values()) <= first_fused


@pytest.mark.slow  # trains a tiny study and spawns two report processes: ~40 s on 2 cores
def test_report_all_in_two_processes_writes_the_same_bytes_as_in_one(tmp_path):
    import shutil

    from fusionstudy.report.write import write_all
    folder = run_study(_tiny_study(tmp_path, synthetic_frame(600)), str(tmp_path / "res"))
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        for name in ("clothing", "clothing_no_rating"):
            shutil.copytree(folder, root / "results" / name, ignore=shutil.ignore_patterns("*.md", "summary.csv", "figures"))
    write_all(roots[0], workers=1)
    write_all(roots[1], workers=2)
    written = sorted(p.relative_to(roots[0]) for p in roots[0].rglob("*") if p.suffix in (".md", ".csv", ".png"))
    assert {"experiments.md", "postmortem.md", "results/clothing_no_rating/experiments.md"} <= {str(p) for p in written}
    for rel in written:
        assert (roots[1] / rel).read_bytes() == (roots[0] / rel).read_bytes(), rel


def test_report_pairs_remedies_with_plain_fusion_on_the_seeds_both_have(tmp_path):
    """Remedies train study.imbalance_seeds (one here), plain fusion study.seeds (two): the
    share comparison pairs seed 0 alone, and the report is written (a quick-profile regression)."""
    from fusionstudy.analysis.remedies import remedy_table, share_difference
    cfg = _tiny_study(tmp_path, synthetic_frame(600), models=["text_only", "tabular_only", "early_concat"], seeds=[0, 1],
                      imbalance_models=["early_concat"], subsample_levels=[], drop_levels=[], robustness=False)
    folder = run_study(cfg, str(tmp_path / "res"))
    res = load_study(folder)
    t = remedy_table(res, 0.005)
    assert len(t) == 3 and set(t.remedy) == {"ogm_ge", "gblend", "mla"} and (t.plain == "early_concat").all()
    d = share_difference(res, "early_concat_gblend", "early_concat", "", "text")
    assert np.isfinite(d["value"]) and d["lo"] <= d["value"] <= d["hi"]
    write_reports(folder, tmp_path / "experiments.md")
    assert "Part 5 remedies" in (tmp_path / "experiments.md").read_text()
