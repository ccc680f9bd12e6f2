import pytest

from config import Config, apply, load_config, parse_override, CONFIG_DIR


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
    full, quick = load_config(CONFIG_DIR / "clothing.toml", "full"), load_config(CONFIG_DIR / "clothing.toml", "quick")
    assert len(full.study.seeds) == 5 and len(quick.study.seeds) < 5
    assert full.fingerprint() != quick.fingerprint()  # max_epochs differs, so models differ


def test_missing_profile():
    with pytest.raises(FileNotFoundError, match="nope"):
        load_config(CONFIG_DIR / "clothing.toml", "nope")


def test_dataset_file_overrides_the_profile(tmp_path):
    p = tmp_path / "d.toml"
    p.write_text('[dataset]\nname = "x"\n[study]\nseeds = [7]\n[train]\nmax_epochs = 9\n')
    cfg = load_config(p, "quick")
    assert cfg.study.seeds == [7] and cfg.train.max_epochs == 9
    assert load_config(p, "quick", ["train.max_epochs=3"]).train.max_epochs == 3


def test_a_dataset_file_is_not_a_profile():
    with pytest.raises(ValueError, match="not a profile"):
        load_config(CONFIG_DIR / "clothing.toml", "clothing_no_rating")
