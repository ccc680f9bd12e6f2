"""The committed reports are exactly what report.py makes of the committed results."""
import re
import shutil
from pathlib import Path

import pytest

from fusionstudy.models.fusion import render_fusion_docs
from fusionstudy.report.write import write_all

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ["experiments.md", "postmortem.md", "results/clothing_no_rating/experiments.md"]

pytestmark = pytest.mark.skipif(not (ROOT / "results" / "clothing" / "study.json").is_file(),
                                reason="no committed results")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    root = tmp_path_factory.mktemp("regen")
    for study in ("clothing", "clothing_no_rating"):
        src = ROOT / "results" / study
        if src.is_dir():
            shutil.copytree(src, root / "results" / study, ignore=shutil.ignore_patterns("figures", "*.md", "summary.csv"))
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
    for study in ("clothing", "clothing_no_rating"):
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
