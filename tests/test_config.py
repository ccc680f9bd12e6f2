import copy
import json

import pytest

from fusionstudy.config import Config, apply, load_config, parse_override
from tests.conftest import ROOT


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ValueError, match="learning_rate"):
        apply(Config(), {"train": {"learning_rate": 0.1}})


def test_unknown_section_is_an_error_naming_it():
    with pytest.raises(ValueError, match="optimiser"):
        apply(Config(), {"optimiser": {"lr": 0.1}})


def test_override_must_keep_type():
    with pytest.raises(ValueError, match="train.max_epochs"):
        apply(Config(), parse_override("train.max_epochs=fast"))
    cfg = apply(Config(), parse_override("train.lr=1"))  # int where a float is expected is fine
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


def test_unknown_key_in_a_file(tmp_path):
    p = tmp_path / "d.toml"
    p.write_text('[dataset]\nname = "x"\nlabels = "y"\n')
    with pytest.raises(ValueError, match="labels"):
        load_config(p, "quick")


def test_profiles_load_and_differ():
    full, quick = load_config("clothing", "full"), load_config("clothing", "quick")
    assert len(full.study.seeds) == 5 and len(quick.study.seeds) < 5
    assert full.fingerprint() != quick.fingerprint()  # max_epochs differs, so models differ


def test_missing_profile():
    with pytest.raises(FileNotFoundError, match="nope"):
        load_config("clothing", "nope")


def test_dataset_file_overrides_the_profile(tmp_path):
    p = tmp_path / "d.toml"
    p.write_text('[dataset]\nname = "x"\n[study]\nseeds = [7]\n[train]\nmax_epochs = 9\n')
    cfg = load_config(p, "quick")
    assert cfg.study.seeds == [7] and cfg.train.max_epochs == 9
    assert load_config(p, "quick", ["train.max_epochs=3"]).train.max_epochs == 3


def test_a_dataset_file_is_not_a_profile():
    with pytest.raises(ValueError, match="not a profile"):
        load_config("clothing", "clothing_no_rating")


@pytest.mark.parametrize("override, key, allowed", [
    ("study.models=['text_only','gmuu']", "study.models", "gmu"),
    ("study.moddrop_models=['text_only']", "study.moddrop_models", "early_concat"),
    ("train.schedule='cosine'", "train.schedule", "linear"),
    ("train.text_optimizer='sgd'", "train.text_optimizer", "adagrad"),
    ("train.text_lr=0", "train.text_lr", "(0, 100]"),
    ("study.subsample_levels=[0.5,1.5]", "study.subsample_levels", "(0, 1)"),
    ("study.seeds=[]", "study.seeds", "must not be empty"),
    ("report.drop_level=0.3", "report.drop_level", "study.drop_levels"),
])
def test_bad_values_fail_at_load_naming_key_and_allowed(override, key, allowed):
    with pytest.raises(ValueError) as e:
        load_config("clothing", "full", [override])
    assert key in str(e.value) and allowed in str(e.value)


def test_misspelled_fusion_option_is_an_unknown_key():
    with pytest.raises(ValueError, match="lmf_rnak"):
        load_config("clothing", "full", ["model.lmf_rnak=8"])


def test_report_rules_are_config_and_leave_the_fingerprint_alone():
    base = load_config("clothing", "full")
    changed = load_config("clothing", "full", ["report.margin=0.01"])
    assert changed.report.margin == 0.01 and changed.to_dict()["report"]["margin"] == 0.01
    assert changed.fingerprint() == base.fingerprint()  # decision rules do not change what a model is


def test_where_runs_execute_or_are_tracked_is_not_in_the_fingerprint():
    cfg = load_config("clothing", "full")
    fp = cfg.fingerprint()
    apply(cfg, {"train": {"executor": "ray"}, "ray": {"address": "auto", "num_cpus": 8, "cpus_per_run": 2.0,
                                                      "max_retries": 0},
                "tracking": {"mlflow_uri": "sqlite:///x.db", "experiment": "e"}})
    assert cfg.fingerprint() == fp


def test_a_study_stored_before_the_ray_and_tracking_sections_keeps_its_fingerprint():
    with open(ROOT / "results" / "clothing" / "runs.jsonl") as fh:
        rec = json.loads(fh.readline())
    stored = copy.deepcopy(rec["config"])
    # a record written before [ray], [tracking], train.executor and text.encoder existed
    for key in ("ray", "tracking"):
        stored.pop(key, None)
    stored["train"].pop("executor", None)
    stored["text"].pop("encoder", None)
    cfg = apply(Config(profile=stored["profile"], base_dir=stored["base_dir"]),
                {k: v for k, v in stored.items() if isinstance(v, dict)})
    assert cfg.fingerprint() == rec["config_fp"]  # so its runs resume under the new code


def test_executor_and_ray_settings_are_checked_at_load():
    with pytest.raises(ValueError, match=r"train.executor must be one of \['local', 'ray'\]"):
        load_config("clothing", "quick", ['train.executor="dask"'])
    with pytest.raises(ValueError, match="ray.cpus_per_run"):
        load_config("clothing", "quick", ["ray.cpus_per_run=0"])
    with pytest.raises(ValueError, match="unknown config key ray.adress"):
        load_config("clothing", "quick", ['ray.adress="auto"'])


def test_invalid_toml_names_the_file_and_an_unquoted_list_says_how_to_quote(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1\n")
    with pytest.raises(ValueError, match=rf"^{bad}: not valid TOML \(.*line 1"):
        load_config("clothing", str(bad))
    with pytest.raises(ValueError, match=r"quote the whole override .*--set 'study.models=\[\"a\", \"b\"\]'"):
        load_config("clothing", "quick", ["study.models=[text_only]"])  # what bash leaves of ["text_only"]
