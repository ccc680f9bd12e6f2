"""The real minilm text encoder on a small subsample of the default data (needs the optional extra
the ``minilm`` extra, which ``make test`` installs)."""
import numpy as np
import pytest

from fusionstudy.config import load_config
from fusionstudy.data.embeddings import CACHE_ENV, MINILM_SHA256
from fusionstudy.data.prepare import prepare
from fusionstudy.metrics import classification_metrics
from fusionstudy.training.loop import fit, make_model, predict

pytestmark = pytest.mark.slow


def test_minilm_encodes_once_and_its_text_model_learns(tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers", reason="optional extra: pip install 'fusionstudy[minilm]'")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "embeddings"))
    cfg = load_config("clothing", "encoders",
                      ["text.encoder=minilm", "dataset.subsample=800", "train.threads=2"])
    prep = prepare(cfg)
    info, val = prep.stats["text_encoder"], prep.splits["val"]
    assert info["weights_sha256"] == MINILM_SHA256 and info["encoded_now"] > 700  # ~780 of 800 rows have text
    norms = np.linalg.norm(val.emb, axis=1)
    assert np.allclose(norms[~val.text_missing], 1, atol=1e-4) and not val.emb[val.text_missing].any()
    model = make_model(("text",), "early_concat", prep, cfg, 0)
    fit(model, prep.splits["train"], val, cfg.train, 0)
    assert classification_metrics(val.y, predict(model, val))["roc_auc"] > 0.75  # chance is 0.5
    again = prepare(cfg)  # a second run: every text from the cache, the model never loaded
    assert again.stats["text_encoder"]["encoded_now"] == 0 and again.text.embedder._fn is None
    assert np.array_equal(again.splits["test"].emb, prep.splits["test"].emb)
    assert again.stats["text_encoder"]["encode_seconds"] == info["encode_seconds"]
