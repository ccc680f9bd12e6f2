"""docs/encoders.md is exactly what render_encoders.py makes of the committed results/encoders-*/."""
import pytest

from config import ROOT
from render_encoders import DOC, ENCODERS, SIZES, folder_of, render_encoders_doc

pytestmark = pytest.mark.skipif(not all((folder_of(e, s) / "study.json").is_file() for e in ENCODERS for s in SIZES),
                                reason="no committed encoder comparison")


def test_committed_encoder_table_matches_regeneration():
    assert render_encoders_doc(ROOT) == (ROOT / DOC).read_text(), "docs/encoders.md is stale: run `python render_encoders.py`"


def test_reading_the_comparison_needs_no_torch():
    import subprocess
    import sys
    code = "import sys, render_encoders; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
