"""docs/encoders.md is exactly what render_encoders.py makes of the committed results/encoders-*/."""
import pytest

from fusionstudy.report.encoders import DOC, ENCODERS, SIZES, folder_of, render_encoders_doc
from tests.conftest import ROOT

_committed = pytest.mark.skipif(not all((folder_of(e, s, ROOT) / "study.json").is_file() for e in ENCODERS for s in SIZES),
                                reason="no committed encoder comparison")


@pytest.mark.slow
@_committed
def test_committed_encoder_table_matches_regeneration():
    assert render_encoders_doc(ROOT) == (ROOT / DOC).read_text(), "docs/encoders.md is stale: run `python benchmarks/encoders.py --report`"


def test_reading_the_comparison_needs_no_torch():
    import subprocess
    import sys
    code = "import sys, fusionstudy.report.encoders; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _study(tmp_path, name, signal, test_ids=None):
    """A tiny two-seed results set for ``text_only`` whose scores carry ``signal`` x the label."""
    import numpy as np

    from fusionstudy.records import PredictionRecord, RunRecord, StudyResults
    rng = np.random.default_rng(0)
    y = {s: rng.integers(0, 2, 200) for s in ("val", "test")}
    runs, preds = [], {}
    for seed in (0, 1):
        key = f"{name}|text_only|seed={seed}"
        noise = np.random.default_rng(seed + 10)
        p = {s: np.clip(0.5 + signal * (y[s] - 0.5) + 0.3 * noise.standard_normal(200), 0.01, 0.99) for s in y}
        runs.append(RunRecord(run_key=key, study="s", model="text_only", kind="unimodal", modalities=["text"],
                              fusion="early_concat", part="part1", seed=seed, config_fp="fp",
                              config={"study": {"bootstrap": 100}}, git="g", time="t", metrics={}, params={}))
        preds[key] = PredictionRecord.of(key, {s: np.column_stack([1 - v, v]) for s, v in p.items()})
    split = {"classes": ["0", "1"], "val_ids": list(range(200)), "test_ids": test_ids or list(range(200, 400)),
             **{f"y_{s}": v.tolist() for s, v in y.items()}}
    return StudyResults(tmp_path / name, runs, [], preds, split, {"study": "s"})


def test_paired_difference_across_two_studies_and_its_verdict(tmp_path):
    from fusionstudy.report.encoders import paired
    strong, weak = _study(tmp_path, "a", 0.6), _study(tmp_path, "b", 0.1)
    d = paired(strong, weak, "text_only", "test", margin=0.005)
    assert d["lo"] < d["value"] < d["hi"] and d["lo"] > 0.005 and d["verdict"] == "helps" and d["seeds"] == 2
    same = paired(strong, _study(tmp_path, "c", 0.6), "text_only", "val", margin=0.005)
    assert same["value"] == same["lo"] == same["hi"] == 0 and same["verdict"] == "equivalent"
    with pytest.raises(ValueError, match="test_ids"):
        paired(strong, _study(tmp_path, "d", 0.6, test_ids=list(range(1, 201))), "text_only", "test", 0.005)
