"""The stacked seeds of ``training.batched`` against the same seeds trained one at a time."""
from dataclasses import replace

import numpy as np
import pytest

from fusionstudy.config import model_parts
from fusionstudy.metrics import classification_metrics
from fusionstudy.training.batched import fit_stack, make_stack, stack_blocker
from fusionstudy.training.loop import fit, make_model, predict

SEEDS = [0, 1, 2]
TOL = 1e-4  # stated tolerance: |delta| of every probability and of val/test ROC-AUC per member


def _one_by_one(prep, cfg, name):
    mods, fusion = model_parts(name, prep.modalities)
    out = []
    for s in SEEDS:
        model = make_model(mods, fusion, prep, cfg, s)
        res = fit(model, prep.splits["train"], prep.splits["val"], cfg.train, s)
        out.append((res, {k: predict(model, prep.splits[k]) for k in ("val", "test")}))
    return out


def _stacked(prep, cfg, name):
    mods, fusion = model_parts(name, prep.modalities)
    models, gens = make_stack(mods, fusion, prep, cfg, SEEDS)
    results = fit_stack(models, gens, prep.splits["train"], prep.splits["val"], cfg.train, SEEDS)
    return [(r, {k: predict(m, prep.splits[k]) for k in ("val", "test")}) for m, r in zip(models, results)]


@pytest.mark.parametrize("name", ["text_only", "early_concat", "gmu"])
def test_each_member_of_a_3_seed_stack_matches_its_seed_trained_alone(synth_prep, name):
    cfg, prep = synth_prep
    cfg = replace(cfg, train=replace(cfg.train, max_epochs=5, patience=1))
    alone, stacked = _one_by_one(prep, cfg, name), _stacked(prep, cfg, name)
    for (ra, pa), (rs, ps) in zip(alone, stacked):
        assert (rs.best_epoch, rs.epochs_run, rs.diverged) == (ra.best_epoch, ra.epochs_run, ra.diverged)
        for split in ("val", "test"):
            assert np.abs(ps[split] - pa[split]).max() <= TOL
            y = prep.splits[split].y
            auc = [classification_metrics(y, p[split])["roc_auc"] for p in (pa, ps)]
            assert abs(auc[0] - auc[1]) <= TOL
        np.testing.assert_allclose(rs.curves["val_loss"], ra.curves["val_loss"], atol=TOL)
        for k in ra.curves:
            if k.startswith("grad_norm_"):
                np.testing.assert_allclose(rs.curves[k], ra.curves[k], rtol=1e-4)
    if name == "text_only":  # members stop at different epochs: per-member early stopping is exercised
        assert len({r.epochs_run for r, _ in alone}) > 1
        assert all(np.array_equal(ps["test"], pa["test"]) for (_, pa), (_, ps) in zip(alone, stacked))


def test_members_differ_from_each_other(synth_prep):
    cfg, prep = synth_prep
    cfg = replace(cfg, train=replace(cfg.train, max_epochs=2))
    stacked = _stacked(prep, cfg, "early_concat")
    assert not np.allclose(stacked[0][1]["test"], stacked[1][1]["test"])


def test_stack_blocker_names_the_regimes_that_train_one_model_at_a_time(synth_prep):
    cfg, _ = synth_prep
    assert stack_blocker(cfg, "plain", 2) is None
    assert "moddrop" in stack_blocker(cfg, "moddrop", 2)
    assert "weakened" in stack_blocker(cfg, "weakened", 2)
    ogm = replace(cfg, train=replace(cfg.train, ogm_alpha=0.5))
    assert "OGM-GE" in stack_blocker(ogm, "plain", 2) and stack_blocker(ogm, "plain", 1) is None
    tok = replace(cfg, model=replace(cfg.model, token_dropout=0.2))
    assert "token_dropout" in stack_blocker(tok, "plain", 1)


def test_fit_stack_refuses_mismatched_lengths(synth_prep):
    cfg, prep = synth_prep
    models, gens = make_stack(("tabular",), "early_concat", prep, cfg, [0, 1])
    with pytest.raises(ValueError, match="one generator and one seed per model"):
        fit_stack(models, gens[:1], prep.splits["train"], prep.splits["val"], cfg.train, [0, 1])


def test_a_study_with_stacked_seeds_stores_the_records_of_one_by_one_training(tmp_path):
    from fusionstudy.records import RunStore
    from fusionstudy.study.runner import RunSpec, run_study, stack_tasks
    from tests.conftest import synthetic_config, synthetic_frame
    csv = tmp_path / "d.csv"
    synthetic_frame(500).to_csv(csv, index=False)
    cfg = synthetic_config()
    cfg.dataset.source = str(csv)
    cfg.study.models, cfg.study.seeds, cfg.study.moddrop_models = ["text_only", "early_concat"], [0, 1], ["early_concat"]
    cfg.study.imbalance_models, cfg.study.references, cfg.study.save_models = [], False, False
    cfg.study.robustness, cfg.study.splits = False, 1
    cfg.train.max_epochs, cfg.train.workers = 2, 1
    specs = [RunSpec("gmu", "gmu", ("tabular", "text"), s, "part4") for s in (0, 1)]
    assert stack_tasks(specs, cfg) == specs  # opt-in: off by default
    cfg.train.batched = True
    assert stack_tasks(specs, cfg) == [tuple(specs)]
    cfg.train.executor = "ray"
    assert stack_tasks(specs, cfg) == specs  # a Ray task trains one model
    cfg.train.executor = "local"
    runs = {}
    for batched in (True, False):
        cfg.train.batched = batched
        fp = cfg.fingerprint()
        runs[batched] = {r.run_key: r for r in RunStore(run_study(cfg, str(tmp_path / str(batched)))).records()}
    assert runs[True].keys() == runs[False].keys() and len(runs[True]) == 6  # 2 models + 1 moddrop, 2 seeds
    assert all(k.endswith(f"cfg={fp}") or f"cfg={fp}|" in k for k in runs[True])  # batched is not in the fingerprint
    for k, r in runs[True].items():
        for split in ("val", "test"):
            assert abs(r.metrics[split]["roc_auc"] - runs[False][k].metrics[split]["roc_auc"]) <= TOL
