"""The committed reports are exactly what report.py makes of the committed results."""
import re
import shutil
from pathlib import Path

import pytest

from fusionstudy.models.fusion import render_fusion_docs
from fusionstudy.report.benchmark import PLANTED, REAL
from fusionstudy.report.write import write_all

ROOT = Path(__file__).resolve().parents[1]
STUDIES = [s for s in REAL + PLANTED if (ROOT / "results" / s / "study.json").is_file()]
REPORTS = ["experiments.md", "postmortem.md"] + [f"results/{s}/experiments.md" for s in STUDIES if s != "clothing"] + \
    (["docs/benchmark.md"] if len(STUDIES) > 2 else [])

pytestmark = pytest.mark.skipif(not (ROOT / "results" / "clothing" / "study.json").is_file(),
                                reason="no committed results")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    root = tmp_path_factory.mktemp("regen")
    for study in STUDIES:  # the default study, its contrast, and the benchmark's other studies
        src = ROOT / "results" / study
        shutil.copytree(src, root / "results" / study, ignore=shutil.ignore_patterns("figures", "*.md", "summary.csv"))
    (root / "docs").mkdir()
    write_all(root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", REPORTS)
def test_committed_report_matches_regeneration(regenerated, name):
    if not (ROOT / name).is_file():
        pytest.skip(f"{name} not committed")
    assert (regenerated / name).read_text() == (ROOT / name).read_text(), f"{name} is stale: run `python report.py`"


@pytest.mark.slow
def test_summary_csv_matches(regenerated):
    for study in STUDIES:
        committed = ROOT / "results" / study / "summary.csv"
        if committed.is_file():
            assert (regenerated / "results" / study / "summary.csv").read_text() == committed.read_text()


@pytest.mark.parametrize("name", REPORTS)
def test_every_referenced_figure_exists(name):
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} not committed")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text())
    assert links, f"{name} shows no figure"
    for link in links:
        fig = (path.parent / link).resolve()
        assert fig.is_file() and fig.stat().st_size > 5000, f"{name}: {link} missing or empty"


def test_fusion_docs_table_is_current():
    doc = ROOT / "docs" / "fusion.md"
    assert render_fusion_docs(doc.read_text()) == doc.read_text(), "run `python fusion.py --docs`"


@pytest.mark.slow
def test_committed_primary_verdict_is_deterministic_and_recomputes_from_the_raw_records():
    """The headline needs no resampling seed (the corrected t interval is a formula), so no reseed
    can flip it; recomputed here from runs.jsonl with plain numpy, it matches the report's."""
    import json

    import numpy as np
    from scipy import stats

    from fusionstudy.records import load_study
    from fusionstudy.report.pooled import primary_facts

    folder = ROOT / "results" / "clothing"
    facts = primary_facts(load_study(folder))
    fp = json.loads((folder / "study.json").read_text())["config_fp"]
    auc: dict = {}
    for line in (folder / "runs.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["config_fp"] == fp and r["part"] in ("part1", "part2", "reference") and r["training"]["regime"] == "plain":
            auc.setdefault((r["model"], r.get("split", 0)), []).append(r["metrics"]["test"]["roc_auc"])
    sizes = json.loads((folder / "split.json").read_text())["stats"]["split_sizes"]
    for g in facts["gains"]:
        d = np.array([np.mean(auc[("early_concat", k)]) - np.mean(auc[(g["vs"], k)]) for k in range(10)])
        half = stats.t.ppf(0.975, 9) * np.sqrt((0.1 + sizes["test"] / sizes["train"]) * d.var(ddof=1))
        assert g["value"] == pytest.approx(d.mean(), abs=1e-12) and g["lo"] == pytest.approx(d.mean() - half, abs=1e-12)
    assert f"— **{facts['verdict']}**" in (ROOT / "postmortem.md").read_text()
