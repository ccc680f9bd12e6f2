"""The minilm text encoder without the optional extra: cache keying, the weights check, the clear
error when the extra is missing, the head's shapes, and the whole path with a fake sentence model."""
import hashlib
import importlib.util
import pickle
import sys

import numpy as np
import pytest
import torch

from fusionstudy.config import Config, validate
from fusionstudy.data import embeddings, perturb
from fusionstudy.data import prepare as data
from fusionstudy.data.embeddings import ExtraNotInstalled, SentenceEmbedder, embed_tokens, text_key, verify_weights
from fusionstudy.data.prepare import prepare, to_inputs
from fusionstudy.metrics import classification_metrics
from fusionstudy.models.multimodal import build_model
from fusionstudy.models.text import SentenceHead
from fusionstudy.training.loop import fit, make_model, predict
from tests.conftest import ROOT, synthetic_config, synthetic_frame

DIM = 16


def fake_encoder(calls: list):
    """A deterministic stand-in for the sentence model: a unit-norm random projection of word
    counts (words hashed to fixed random vectors); records every batch it is given."""
    def encode(texts):
        calls.append(list(texts))
        out = np.zeros((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                seed = int(hashlib.md5(w.encode()).hexdigest()[:8], 16)
                out[i] += np.random.default_rng(seed).standard_normal(DIM)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return encode


def _never_load():
    raise AssertionError("the model must not be loaded when every text is cached")


def make_embedder(tmp_path, calls, sha="a" * 64):
    loads = []
    emb = SentenceEmbedder(sha, lambda: loads.append(1) or fake_encoder(calls), tmp_path, dim=DIM)
    return emb, loads


def test_text_key_is_the_sha256_of_the_text():
    assert text_key("nice dress") == hashlib.sha256(b"nice dress").hexdigest() != text_key("nice dress ")


def test_cache_encodes_each_text_once_per_weights_file(tmp_path):
    calls = []
    emb, loads = make_embedder(tmp_path, calls)
    v = emb.embed(["fits well", "too small", "fits well"])
    assert v.shape == (3, DIM) and v.dtype == np.float32 and np.array_equal(v[0], v[2])
    assert calls == [["fits well", "too small"]] and emb.encoded_ == 2
    again, loads2 = make_embedder(tmp_path, calls)  # a new process: reads the shards from disk
    assert np.array_equal(again.embed(["too small", "fits well"]), v[[1, 0]])
    assert again.encoded_ == 0 and not loads2 and len(calls) == 1  # nothing encoded, model never loaded
    assert again.cost(["fits well", "too small"]) == pytest.approx(emb.encode_seconds_)
    other, _ = make_embedder(tmp_path, calls, sha="b" * 64)  # other weights: their own namespace
    other.embed(["fits well"])
    assert other.encoded_ == 1 and len(calls) == 2
    again.load = _never_load  # the real loader is a picklable partial; a test lambda is not
    back = pickle.loads(pickle.dumps(again))  # what a worker process receives: no model, no memory
    assert back._fn is None and back._mem is None and np.array_equal(back.embed(["fits well"]), v[:1])


def test_embed_tokens_gives_missing_and_empty_rows_the_zero_vector(tmp_path):
    emb, _ = make_embedder(tmp_path, [])
    out = embed_tokens(emb, [["a", "b"], [], ["c"]], np.array([False, False, True]))
    assert np.allclose(np.linalg.norm(out, axis=1), [1, 0, 0])
    assert np.array_equal(out[0], emb.embed(["a b"])[0])


def test_weights_check_names_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"not the weights")
    assert verify_weights(path, hashlib.sha256(b"not the weights").hexdigest()) == hashlib.sha256(
        b"not the weights").hexdigest()
    with pytest.raises(ValueError, match=r"model\.safetensors.*sha256"):
        verify_weights(path)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        verify_weights(tmp_path / "missing.safetensors")


def test_missing_extra_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers"
                        else real(name, *a))
    with pytest.raises(ExtraNotInstalled, match=r"pip install torch==2\.13\.0 'fusionstudy\[minilm\]'"):
        embeddings.minilm_dir()
    cfg = synthetic_config()
    cfg.text.encoder = "minilm"
    with pytest.raises(ExtraNotInstalled, match=r"fusionstudy\[minilm\]"):
        prepare(cfg, synthetic_frame(200))
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails even if installed
    with pytest.raises(ExtraNotInstalled, match="pip install"):
        embeddings.load_sentence_encoder(ROOT)


def test_config_checks_the_encoder_name_and_keeps_the_bag_fingerprint():
    cfg = Config()
    bag = cfg.fingerprint()
    cfg.text.encoder = "minilm"
    assert cfg.fingerprint() != bag
    cfg.text.encoder = "bert"
    with pytest.raises(ValueError, match=r"text\.encoder.*minilm"):
        validate(cfg)


def test_sentence_head_shapes_missing_vector_and_gradients():
    head = SentenceHead(384, 64, 32, dropout=0.3)
    emb, missing = torch.randn(5, 384), torch.tensor([False, True, False, False, True])
    out = head((emb, missing))
    assert out.shape == (5, 32)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    head.eval()
    with torch.no_grad():
        head.missing.fill_(0.5)
        assert torch.equal(head((emb, missing))[1], torch.full((32,), 0.5))
    n = sum(p.numel() for p in head.parameters())
    assert n == (384 + 1) * 64 + (64 + 1) * 32 + 32


def test_build_model_uses_the_head_for_embeddings():
    cfg = Config().model
    m = build_model(["text"], "early_concat", 2, cfg, vocab_size=100, cardinalities=[], n_numeric=0,
                    tab_cfg=Config().tabular, embedding_dim=384)
    assert isinstance(m.encoders["text"], SentenceHead)
    assert m.param_counts()["enc_text"] == (384 + 1) * cfg.head_hidden + (cfg.head_hidden + 1) * cfg.text_dim + cfg.text_dim


@pytest.fixture
def fake_minilm(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(data, "minilm_embedder", lambda: make_embedder(tmp_path, calls)[0])
    cfg = synthetic_config()
    cfg.text.encoder = "minilm"
    return cfg, prepare(cfg, synthetic_frame()), calls


def test_minilm_path_trains_and_perturbs_with_a_fake_sentence_model(fake_minilm):
    cfg, prep, calls = fake_minilm
    test = prep.splits["test"]
    assert test.emb.shape == (len(test), DIM) and prep.text.embedding_dim == DIM
    assert prep.stats["text_encoder"]["encoder"] == "minilm"
    assert np.array_equal(~test.emb.any(axis=1), test.text_missing)  # zero row <=> no text
    x, miss = to_inputs(test)["text"]
    assert x.shape == (len(test), DIM) and miss.dtype == torch.bool
    model = make_model(("text",), "early_concat", prep, cfg, 0)
    fit(model, prep.splits["train"], prep.splits["val"], cfg.train, 0)
    assert classification_metrics(test.y, predict(model, test))["roc_auc"] > 0.75
    noisy = perturb.text_noise(test, prep, 0.5, seed=0)  # perturbed tokens are embedded too
    assert not np.array_equal(noisy.emb, test.emb) and calls[-1]
    assert not perturb.remove(test, prep, "text").emb.any()
    sh = perturb.shuffle(test, prep, "text", seed=1)
    assert np.array_equal(sh.emb, test.emb[np.random.default_rng(1).permutation(len(test))])
    assert np.array_equal(test.subset(np.array([3, 1])).emb, test.emb[[3, 1]])
