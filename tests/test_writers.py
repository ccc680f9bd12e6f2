"""One writer per results folder (``records.writer_lock``), folders damaged by two writers, and
places a study or report cannot write: each stops at once in one line and leaves the folder valid."""
import json
import logging
import os
import subprocess
import sys
import time

import pytest

from fusionstudy import cli
from fusionstudy.records import HOLDER, LOCK, RunStore, load_study, writer_lock
from fusionstudy.report.write import write_reports
from fusionstudy.study.runner import run_study
from tests.conftest import ROOT, synthetic_frame
from tests.test_corpus import _spec_file


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "fusionstudy", "-q", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_process_on_a_held_folder_stops_at_once_naming_the_holder(tmp_path):
    spec, out = _spec_file(tmp_path, 300), tmp_path / "res"
    with writer_lock(out, "a test", hint="unused"):
        h = json.loads((out / HOLDER).read_text())
        run = _cli("run", "--data", str(spec), "--out", str(out), cwd=tmp_path)
        _, err = run.communicate(timeout=120)
        assert sorted(p.name for p in out.iterdir()) == sorted([LOCK, HOLDER])  # nothing written
    assert run.returncode == 1 and err == (
        f"fusionstudy run: error: {out.resolve()}: another process is writing this results folder (`a test`, process "
        f"{os.getpid()} on {h['host']}, since {h['since']}); wait for it to end, or work on a copy of the folder\n")
    assert not (out / HOLDER).exists()
    with writer_lock(out, "a test", hint="unused"), writer_lock(out, "the same process again", hint="unused"):
        assert json.loads((out / HOLDER).read_text())["what"] == "a test"  # nested: free, the holder stays


def test_two_studies_on_one_out_at_once_one_runs_the_other_stops_and_the_folder_stays_valid(tmp_path):
    spec, out = _spec_file(tmp_path, 400), tmp_path / "res"
    first = _cli("run", "--data", str(spec), "--out", str(out), "--no-report", cwd=tmp_path)
    for _ in range(600):  # until the first holds the folder
        if (out / HOLDER).is_file() or first.poll() is not None:
            break
        time.sleep(0.1)
    second = _cli("run", "--data", str(spec), "--out", str(out), "--no-report", cwd=tmp_path)
    (_, err2), (_, err1) = second.communicate(timeout=300), first.communicate(timeout=300)
    assert (first.returncode, second.returncode) == (0, 1), err1
    assert err2.count("\n") == 1 and "another process is writing this results folder (`fusionstudy run`, " \
        f"process {first.pid} on " in err2
    keys = [json.loads(line)["run_key"] for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 10  # 4 models, 5 references, late_ensemble (1 seed): each once
    assert {r.model for r in load_study(out).runs} >= {"text_only", "tabular_only", "early_concat", "gmu"}
    assert write_reports(out).is_file()


def test_a_folder_with_duplicated_run_keys_loads_reports_and_resumes(tmp_path, caplog):
    spec, out = _spec_file(tmp_path, 300), tmp_path / "res"
    cli.main(["-q", "run", "--data", str(spec), "--out", str(out), "--no-report"])
    runs = (out / "runs.jsonl").read_text().splitlines()
    (out / "runs.jsonl").write_text("\n".join(runs + runs[:3]) + "\n")  # as two writers at once left it
    with caplog.at_level(logging.WARNING):
        res = load_study(out)
    key = json.loads(runs[0])["run_key"]
    assert [r.getMessage() for r in caplog.records] == [(
        f"{out / 'runs.jsonl'}: 3 duplicated run record(s) (e.g. {key!r}), written by two studies at once; kept "
        "the last record of each")]
    assert len(res.runs) == len(runs) and len(RunStore(out).records()) == len(runs)
    assert write_reports(out).is_file()
    cli.main(["-q", "run", "--data", str(spec), "--out", str(out)])  # a rerun resumes: nothing new to train


def test_an_unwritable_out_stops_before_training_and_a_read_only_study_before_reporting(tmp_path, monkeypatch):
    spec = _spec_file(tmp_path, 300)
    (tmp_path / "file").write_text("")
    trained = []
    monkeypatch.setattr("fusionstudy.study.runner.prepare", lambda *a: trained.append(a))
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "run", "--data", str(spec), "--out", str(tmp_path / "file" / "res")])
    assert str(e.value) == (f"fusionstudy run: error: {tmp_path / 'file' / 'res'}: cannot write there (Not a "
                            "directory); pass a writable folder (--out; out= in Python)") and trained == []
    monkeypatch.undo()
    cfg_dir = tmp_path / "res"
    run_study(_small_config(tmp_path), str(cfg_dir))
    if os.geteuid() == 0:  # root writes anywhere: make the folder unwritable the way root meets it
        monkeypatch.setattr("tempfile.TemporaryFile", _read_only)
    else:
        cfg_dir.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(["report", str(cfg_dir)])
    finally:
        cfg_dir.chmod(0o755)
    assert str(e.value) == (f"fusionstudy report: error: {cfg_dir}: cannot write there (Read-only file system); a "
                            "report writes summary.csv and figures/ into the results folder: copy it somewhere writable")
    assert not (cfg_dir / "summary.csv").exists()


def _read_only(*a, **kw):
    raise OSError(30, "Read-only file system")


def _small_config(tmp_path):
    from tests.conftest import synthetic_config
    cfg = synthetic_config(max_epochs=1, workers=1)
    synthetic_frame(300).to_csv(tmp_path / "s.csv", index=False)
    cfg.dataset.source = str(tmp_path / "s.csv")
    cfg.study.models, cfg.study.moddrop_models, cfg.study.imbalance_models = ["tabular_only"], [], []
    cfg.study.references, cfg.study.robustness = False, False
    return cfg


@pytest.mark.parametrize("argv", [["run", "--set", "train.lr"], ["forecast", "--set", "lr=0.1"]])
def test_a_malformed_set_is_a_usage_error_with_exit_code_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "must look like section.key=value" in capsys.readouterr().err


def test_an_interrupted_command_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", interrupted)
    monkeypatch.setattr(cli.signal, "signal", lambda *a: None)  # leave the test runner's SIGTERM alone
    with pytest.raises(SystemExit) as e:
        cli.main(["-q", "run", "--out", "unused"])
    assert e.value.code == cli.INTERRUPTED == 130
    assert capsys.readouterr().err.strip() == ("interrupted: every finished run is stored; rerun the same command "
                                               "to resume")


def test_a_missing_ray_stops_the_study_before_any_data_is_read_or_written(tmp_path, monkeypatch):
    from fusionstudy import api

    def no_ray(name):
        raise ImportError(f"{name} is not installed: pip install 'fusionstudy[ray]'")

    prepared = []
    monkeypatch.setattr("fusionstudy.study.runner.import_extra", no_ray)
    monkeypatch.setattr("fusionstudy.study.runner.prepare", lambda *a: prepared.append(a))
    from tests.conftest import synthetic_config

    cfg = synthetic_config()
    cfg.train.executor = "ray"
    with pytest.raises(ImportError, match="pip install"):
        api.run_study(cfg, out=str(tmp_path / "res"), data=None)
    assert prepared == [] and not (tmp_path / "res").exists()
