"""The model store of a study: trained weights and the fitted preprocessing, saved so that new rows
can be scored later (``scoring``), and loaded without executing anything from the files.

Layout, under ``results/<study>/models/<config fingerprint>/`` (git-ignored: too big to commit):

* ``preprocessing.json`` — the resolved config, label classes, modalities, the text vocabulary
  (n-gram -> column) and reserved ids, the category maps and the train dtypes of the
  categorical columns;
* ``preprocessing.npz`` — ``idf`` (TF-IDF weights, one per vocabulary column), ``medians``,
  ``means``, ``stds`` (numeric columns, train statistics), read with ``allow_pickle=False``;
* ``<model>/seed<N>.safetensors`` — the weights of one trained model (Parts 1, 2 and 4, plain
  training), with its run key, fusion and modalities in the file's metadata.

safetensors files hold tensors and string metadata only; JSON and NumPy arrays without pickle
hold the rest, so loading a study's models never runs code stored in them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from fusionstudy.config import Config, apply, model_parts, validate
from fusionstudy.data.embeddings import minilm_embedder
from fusionstudy.data.prepare import Prepared, TabularPipeline, TextPipeline
from fusionstudy.models.multimodal import MultimodalModel, build_model

FORMAT = 1  # bumped when the layout of the saved preprocessing changes


def models_dir(folder: Path, fingerprint: str) -> Path:
    """``<folder>/models/<fingerprint>``: where a study of that config keeps its models."""
    return Path(folder) / "models" / fingerprint


def weights_path(folder: Path, model: str, seed: int) -> Path:
    """The weights file of ``model`` trained with ``seed`` in a :func:`models_dir` folder."""
    return Path(folder) / model / f"seed{seed}.safetensors"


def _replace_atomically(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_preprocessing(prep: Prepared, cfg: Config, folder: Path) -> None:
    """Write ``preprocessing.json`` and ``preprocessing.npz`` for ``prep``'s fitted pipelines."""
    text, tab = prep.text, prep.tabular
    vocab = (None if text.vectorizer_ is None
             else {term: int(i) for term, i in sorted(text.vectorizer_.vocabulary_.items(), key=lambda kv: kv[1])})
    meta = {"format": FORMAT, "config_fp": cfg.fingerprint(), "config": cfg.to_dict(), "classes": list(prep.classes),
            "modalities": list(prep.modalities),
            "text": {"vocabulary": vocab, "vocab_size": int(text.vocab_size_), "missing_id": int(text.missing_id_),
                     "unknown_id": int(text.unknown_id_)},
            "tabular": {"categorical": tab.categorical, "numeric": tab.numeric, "dtypes": tab.dtypes_,
                        "levels": {c: {str(k): int(v) for k, v in m.items()} for c, m in tab.levels_.items()}}}
    arrays = {"medians": tab.medians_, "means": tab.means_, "stds": tab.stds_}
    if text.vectorizer_ is not None:
        arrays["idf"] = text.vectorizer_.idf_
    _replace_atomically(folder / "preprocessing.json", lambda p: p.write_text(json.dumps(meta) + "\n"))
    _replace_atomically(folder / "preprocessing.npz", lambda p: _savez(p, arrays))


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
        np.savez(fh, **arrays)


def save_weights(model: MultimodalModel, folder: Path, name: str, seed: int, run_key: str) -> Path:
    """Save ``model``'s weights (safetensors) as ``<folder>/<name>/seed<seed>.safetensors``."""
    path = weights_path(folder, name, seed)
    meta = {"run_key": run_key, "model": name, "seed": str(seed), "modalities": ",".join(model.modalities)}
    _replace_atomically(path, lambda p: save_model(model, str(p), metadata=meta, force_contiguous=True))
    return path


@dataclass
class SavedStudy:
    """A study's fitted preprocessing, restored: what scoring new rows needs besides the weights.

    ``folder`` is the :func:`models_dir` it was read from; ``text``/``tabular`` are fitted
    pipelines equal to those the study trained with.
    """

    folder: Path
    cfg: Config
    classes: list
    modalities: tuple[str, ...]
    text: TextPipeline
    tabular: TabularPipeline

    def seeds(self, model: str) -> list[int]:
        """The seeds whose weights are saved for ``model``, ascending."""
        return sorted(int(p.stem.removeprefix("seed")) for p in (self.folder / model).glob("seed*.safetensors")
                      if p.stem.removeprefix("seed").isdigit())

    def models(self) -> list[str]:
        """The model names with saved weights."""
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and self.seeds(p.name))

    def load_model(self, model: str, seed: int) -> MultimodalModel:
        """The trained ``model`` of ``seed``, in eval mode.

        Raises
        ------
        FileNotFoundError
            If no weights are saved for that model and seed (naming the saved ones).
        """
        path = weights_path(self.folder, model, seed)
        if not path.is_file():
            saved = {m: self.seeds(m) for m in self.models()}
            raise FileNotFoundError(f"no saved weights for model {model!r} seed {seed} in {self.folder}; saved "
                                    f"(model: seeds): {saved or 'none'}. Only plainly trained models of Parts 1, 2 "
                                    "and 4 are saved, by studies run with study.save_models = true")
        modalities, fusion = model_parts(model, self.modalities)
        with safe_open(str(path), "pt") as fh:
            saved_mods = (fh.metadata() or {}).get("modalities", "")
        if saved_mods and saved_mods.split(",") != sorted(modalities):
            raise ValueError(f"{path}: weights of modalities {saved_mods}, but {model!r} uses {sorted(modalities)}")
        net = build_model(list(modalities), fusion, len(self.classes), self.cfg.model, self.text.vocab_size_,
                          self.tabular.cardinalities_, 2 * len(self.tabular.numeric), self.cfg.tabular,
                          embedding_dim=self.text.embedding_dim)
        load_model(net, str(path), strict=True)
        return net.eval()


def _config_from(d: dict) -> Config:
    d = dict(d)
    cfg = Config(profile=d.pop("profile", "full"), base_dir=d.pop("base_dir", "."))
    return validate(apply(cfg, d, origin="preprocessing.json"))


def _text_from(cfg: Config, state: dict, idf: np.ndarray | None) -> TextPipeline:
    text = TextPipeline(cfg.text, minilm_embedder() if cfg.text.encoder == "minilm" and cfg.dataset.text else None)
    vocab = state["vocabulary"]
    text.vectorizer_ = None if vocab is None else text.make_vectorizer(vocab)
    if text.vectorizer_ is not None:
        text.vectorizer_.idf_ = idf  # also fixes the vocabulary (scikit-learn's idf_ setter)
    text.unigrams_ = sorted(t for t in vocab or {} if " " not in t)
    text.vocab_size_, text.missing_id_, text.unknown_id_ = state["vocab_size"], state["missing_id"], state["unknown_id"]
    return text


def _tabular_from(cfg: Config, state: dict, arrays) -> TabularPipeline:
    tab = TabularPipeline(cfg.tabular, state["categorical"], state["numeric"])
    tab.levels_, tab.dtypes_ = state["levels"], state["dtypes"]
    tab.medians_, tab.means_, tab.stds_ = arrays["medians"], arrays["means"], arrays["stds"]
    return tab


def load_preprocessing(study: Path, fingerprint: str | None = None) -> SavedStudy:
    """Restore the fitted preprocessing of the study in results folder ``study``.

    ``fingerprint`` picks the config (default: the one in ``study.json``, else the only one saved).

    Raises
    ------
    FileNotFoundError
        If there is no folder ``study``, or the study saved no preprocessing (run it with
        ``study.save_models = true``).
    ValueError
        If several configs are saved and none is chosen, or the files are of another format.
    """
    if not Path(study).is_dir():
        raise FileNotFoundError(f"{study}: no such study (no folder there); pass the results folder a study "
                                "wrote, e.g. results/my_study")
    root = Path(study) / "models"
    meta_path = Path(study) / "study.json"
    saved = sorted(p.name for p in root.glob("*") if (p / "preprocessing.json").is_file())
    if fingerprint is None and meta_path.is_file():
        fingerprint = json.loads(meta_path.read_text()).get("config_fp")
    if fingerprint is None and len(saved) == 1:  # an interrupted first run has no study.json yet
        fingerprint = saved[0]
    if fingerprint not in saved:
        raise FileNotFoundError(f"{root}: no saved preprocessing{f' of config {fingerprint}' if fingerprint else ''}"
                                f" (saved: {saved or 'none'}). Models are saved when a run is trained (study.save_models"
                                " = true, the default); runs already stored without them (e.g. committed results) are"
                                " not retrained: train into a new folder, e.g. fusionstudy run --out results/my_study")
    folder = models_dir(study, fingerprint)
    meta = json.loads((folder / "preprocessing.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / 'preprocessing.json'}: format {meta.get('format')!r}, this code reads {FORMAT}")
    cfg = _config_from(meta["config"])
    with np.load(folder / "preprocessing.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return SavedStudy(folder, cfg, meta["classes"], tuple(meta["modalities"]),
                      _text_from(cfg, meta["text"], arrays.get("idf")), _tabular_from(cfg, meta["tabular"], arrays))
