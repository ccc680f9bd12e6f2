"""The protocol: the study's parts as a list of run specs, run through one resumable executor.

Results folder ``results/<study>/``:

* ``runs.jsonl`` — one self-describing record per trained model (config, seed, git hash,
  metrics on val and test, parameter counts per component, timings, per-epoch curves);
* ``predictions.jsonl`` — the val/test probabilities of each run, keyed like ``runs.jsonl``;
* ``split.json`` — row ids and labels of the fixed split plus data statistics;
* ``study.json`` — wall seconds per part, core count, config fingerprint;
* ``summary.csv``, ``experiments.md`` sections and ``figures/`` — rendered by ``report.py``.

A record is appended (and flushed) the moment its run finishes, so an interrupted study loses at
most the run in progress, and a rerun skips every run whose key is already stored.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from config import ROOT, Config
from data import Prepared, SplitData, prepare, to_inputs
from fusion import FUSIONS, parameter_scaling
from metrics import classification_metrics
from train import fit, make_model, move, predict

UNIMODAL = ("text_only", "tabular_only")
PART_OF = {"text_only": "part1", "tabular_only": "part1", "early_concat": "part2",
           "late_logit_avg": "part2", "late_ensemble": "part2"}


@dataclass(frozen=True)
class RunSpec:
    """One model to train: name in the summary, fusion, seed, and the part it belongs to."""

    model: str
    fusion: str
    seed: int
    part: str

    def key(self, fingerprint: str) -> str:
        """Unique id of the run under a config fingerprint (used for resume)."""
        return f"{self.model}|seed={self.seed}|cfg={fingerprint}"


def plan(cfg: Config) -> list[RunSpec]:
    """Run specs of the trained models in ``cfg.study.models`` x ``cfg.study.seeds``.

    Raises
    ------
    ValueError
        If a model name is neither ``<modality>_only`` nor a registered fusion.
    """
    specs = []
    for name in cfg.study.models:
        if name not in UNIMODAL and name not in FUSIONS:
            raise ValueError(f"study.models: unknown model {name!r}; use one of "
                             f"{list(UNIMODAL) + sorted(FUSIONS)}")
        fusion = "early_concat" if name in UNIMODAL else name
        specs += [RunSpec(name, fusion, s, PART_OF.get(name, "part4")) for s in cfg.study.seeds]
    return specs


def git_hash() -> str:
    """``git rev-parse HEAD`` of the toolkit (with ``+dirty`` for local changes), or ``unknown``."""
    try:
        h = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return h + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class RunStore:
    """Append-only JSON-lines store of run records and their predictions in one folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runs_path, self.preds_path = self.folder / "runs.jsonl", self.folder / "predictions.jsonl"

    @staticmethod
    def _read(path: Path) -> list[dict]:
        if not path.is_file():
            return []
        out = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a run cut off mid-write; keep every complete one
                    print(f"warning: {path}:{i} is not valid JSON (interrupted write?); skipped")
        return out

    def records(self) -> list[dict]:
        return self._read(self.runs_path)

    def predictions(self) -> dict[str, dict]:
        return {p["run_key"]: p for p in self._read(self.preds_path)}

    def append(self, record: dict, preds: dict | None = None) -> None:
        """Write predictions first, then the record, so a stored record always has predictions."""
        for path, obj in ((self.preds_path, preds), (self.runs_path, record)):
            if obj is not None:
                with open(path, "a") as fh:
                    fh.write(json.dumps(obj) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())


def _proba_list(proba: np.ndarray) -> list:
    p = proba[:, 1] if proba.shape[1] == 2 else proba
    return np.round(p, 6).tolist()


def fusion_diagnostics(model, split: SplitData, batch_size: int = 4096) -> dict:
    """Summaries of the fusion's per-modality weights on ``split`` (GMU gates, attention weights,
    learned late weights): mean, quantiles and a 20-bin histogram per modality. Empty if none."""
    model.eval()
    chunks: dict[str, list] = {}
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            idx = np.arange(start, min(start + batch_size, len(split)))
            model(move(to_inputs(split, idx)))
            for k, v in model.fusion.diagnostics.items():
                chunks.setdefault(k, []).append(v.reshape(-1, len(model.fusion.dims)).cpu().numpy())
    out = {}
    for k, parts in chunks.items():
        w = np.concatenate(parts)
        out[k] = {m: {"mean": float(w[:, j].mean()),
                      "quantiles": np.quantile(w[:, j], [0.05, 0.25, 0.5, 0.75, 0.95]).round(5).tolist(),
                      "hist": np.histogram(w[:, j], bins=20, range=(0, 1))[0].tolist()}
                  for j, m in enumerate(model.fusion.dims)}
    return out


def base_record(spec_model: str, part: str, seed: int, key: str, cfg: Config) -> dict:
    """Fields every record shares: identity, config, provenance."""
    return {"kind": "train", "run_key": key, "study": cfg.dataset.name, "model": spec_model, "part": part,
            "seed": seed, "config_fp": cfg.fingerprint(), "config": cfg.to_dict(), "git": git_hash(),
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def train_run(spec: RunSpec, prep: Prepared, cfg: Config, progress=None) -> tuple[dict, dict]:
    """Build, fit and evaluate one model; return ``(record, predictions)``."""
    key = spec.key(cfg.fingerprint())
    model = make_model(spec.model, spec.fusion, prep, cfg, spec.seed)
    res = fit(model, prep.splits["train"], prep.splits["val"], cfg.train, spec.seed, progress=progress)
    probas = {s: predict(model, prep.splits[s]) for s in ("val", "test")}
    rec = base_record(spec.model, spec.part, spec.seed, key, cfg)
    rec.update(fusion=spec.fusion, modalities=model.modalities,
               metrics={s: classification_metrics(prep.splits[s].y, p) for s, p in probas.items()},
               params=model.param_counts(), diagnostics=fusion_diagnostics(model, prep.splits["test"]),
               **{k: v for k, v in asdict(res).items()})
    return rec, {"run_key": key, **{s: _proba_list(p) for s, p in probas.items()}}


def _as_proba(p: list, n_classes: int) -> np.ndarray:
    a = np.asarray(p, dtype=float)
    return np.column_stack([1 - a, a]) if n_classes == 2 and a.ndim == 1 else a


def late_ensemble(prep: Prepared, cfg: Config, store: RunStore, seed: int) -> tuple[dict, dict] | None:
    """Post-hoc late fusion: mean of the seed's ``text_only`` and ``tabular_only`` probabilities.

    No extra training; its parameter count and train seconds are the two models' sums. Returns
    ``None`` if either unimodal run of this seed is not stored yet.
    """
    fp, preds = cfg.fingerprint(), store.predictions()
    recs = {r["model"]: r for r in store.records() if r.get("config_fp") == fp and r["seed"] == seed}
    if not all(m in recs and recs[m]["run_key"] in preds for m in UNIMODAL):
        return None
    key = RunSpec("late_ensemble", "late_ensemble", seed, "part2").key(fp)
    n_cls = len(prep.classes)
    probas = {s: np.mean([_as_proba(preds[recs[m]["run_key"]][s], n_cls) for m in UNIMODAL], axis=0)
              for s in ("val", "test")}
    rec = base_record("late_ensemble", "part2", seed, key, cfg)
    rec.update(fusion="late_ensemble", modalities=sorted(prep.modalities),
               metrics={s: classification_metrics(prep.splits[s].y, p) for s, p in probas.items()},
               params={"total": sum(recs[m]["params"]["total"] for m in UNIMODAL)},
               train_seconds=sum(recs[m]["train_seconds"] for m in UNIMODAL),
               components=[recs[m]["run_key"] for m in UNIMODAL])
    return rec, {"run_key": key, **{s: _proba_list(p) for s, p in probas.items()}}


def _tabular_matrix(split: SplitData) -> np.ndarray:
    return np.column_stack([split.cat, split.num]).astype(np.float64)


def reference_runs(prep: Prepared, cfg: Config) -> list[tuple[dict, dict]]:
    """Classical references on the same split: TF-IDF + logistic regression (C picked on val
    from {0.5, 2, 8}) on the text pipeline's matrix, and HistGradientBoosting on the tabular
    codes (categorical columns with <= 255 codes declared categorical)."""
    tr, sp = prep.splits["train"], prep.splits
    out = []
    if "text" in prep.modalities:
        t0 = time.perf_counter()
        fits = [LogisticRegression(C=c, max_iter=3000).fit(tr.text, tr.y) for c in (0.5, 2.0, 8.0)]
        best = max(fits, key=lambda m: classification_metrics(sp["val"].y, m.predict_proba(sp["val"].text))["roc_auc"])
        out.append(("ref_tfidf_logreg", best, lambda s: s.text, time.perf_counter() - t0, {"C": best.C}))
    if "tabular" in prep.modalities:
        t0 = time.perf_counter()
        card = prep.tabular.cardinalities_
        mask = [c <= 255 for c in card] + [False] * tr.num.shape[1]
        hgb = HistGradientBoostingClassifier(categorical_features=mask, random_state=0)
        hgb.fit(_tabular_matrix(tr), tr.y)
        out.append(("ref_hist_gbdt", hgb, _tabular_matrix, time.perf_counter() - t0, {}))
    results = []
    for name, est, feats, secs, extra in out:
        key = RunSpec(name, name, 0, "reference").key(cfg.fingerprint())
        probas = {s: est.predict_proba(feats(sp[s])) for s in ("val", "test")}
        rec = base_record(name, "reference", 0, key, cfg)
        rec.update(fusion="none", modalities=["text"] if name == "ref_tfidf_logreg" else ["tabular"],
                   metrics={s: classification_metrics(sp[s].y, p) for s, p in probas.items()},
                   # trees have nodes, not parameters: NaN keeps them out of parameter comparisons
                   params={"total": int(est.coef_.size + est.intercept_.size) if hasattr(est, "coef_")
                           else float("nan")},
                   train_seconds=secs, estimator=extra)
        results.append((rec, {"run_key": key, **{s: _proba_list(p) for s, p in probas.items()}}))
    return results


def write_split(prep: Prepared, folder: Path) -> None:
    """Save the split's row ids, val/test labels, the missing-text mask and data statistics."""
    sp = prep.splits
    obj = {"classes": [str(c) for c in prep.classes], "modalities": list(prep.modalities), "stats": prep.stats,
           **{f"{k}_ids": v.row_ids.tolist() for k, v in sp.items()},
           **{f"y_{k}": sp[k].y.tolist() for k in ("val", "test")},
           "text_missing_test": sp["test"].text_missing.astype(int).tolist()}
    (folder / "split.json").write_text(json.dumps(obj))


def results_dir(cfg: Config, out: str | None) -> Path:
    """``out`` if given, else ``results/<dataset.name>`` (``-<profile>`` appended unless full)."""
    if out:
        return Path(out)
    suffix = "" if cfg.profile == "full" else f"-{cfg.profile}"
    return ROOT / "results" / f"{cfg.dataset.name}{suffix}"


def run_study(cfg: Config, out: str | None = None, report: bool = True) -> Path:
    """Run every part of the study for ``cfg``, skipping stored runs; then write the reports.

    Returns the results folder. Prints per-part wall seconds.
    """
    folder = results_dir(cfg, out)
    store, fp = RunStore(folder), cfg.fingerprint()
    t_start = time.perf_counter()
    print(f"study {cfg.dataset.name!r} profile {cfg.profile!r} -> {folder}")
    prep = prepare(cfg)
    write_split(prep, folder)
    part_seconds = {"data": time.perf_counter() - t_start}
    done = {r["run_key"] for r in store.records()}
    if cfg.study.references and not all(RunSpec(n, n, 0, "reference").key(fp) in done
                                        for n in ("ref_tfidf_logreg", "ref_hist_gbdt")):
        t0 = time.perf_counter()
        for rec, preds in reference_runs(prep, cfg):
            if rec["run_key"] not in done:
                store.append(rec, preds)
        part_seconds["reference"] = time.perf_counter() - t0
    todo = [s for s in plan(cfg) if s.key(fp) not in done]
    print(f"{len(todo)} runs to train, {len(plan(cfg)) - len(todo)} already stored")
    with tqdm(todo, desc="training", unit="run", dynamic_ncols=True) as bar:
        for spec in bar:
            bar.set_description(f"{spec.model} seed {spec.seed}")
            t0 = time.perf_counter()
            store.append(*train_run(spec, prep, cfg, progress=bar))
            part_seconds[spec.part] = part_seconds.get(spec.part, 0.0) + time.perf_counter() - t0
    if all(m in cfg.study.models for m in UNIMODAL):
        for seed in cfg.study.seeds:
            key = RunSpec("late_ensemble", "late_ensemble", seed, "part2").key(fp)
            made = None if key in done else late_ensemble(prep, cfg, store, seed)
            if made:
                store.append(*made)
    if any(m in FUSIONS for m in cfg.study.models):
        rows = parameter_scaling(cfg.study.scaling_dims, sorted(prep.modalities), cfg.model.head_hidden,
                                 len(prep.classes), cfg.model.lmf_rank)
        (folder / "param_scaling.json").write_text(json.dumps(rows) + "\n")
    wall = time.perf_counter() - t_start
    meta = {"study": cfg.dataset.name, "profile": cfg.profile, "config_fp": fp, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "wall_seconds": round(wall, 1),
            "runs_trained": len(todo), "part_seconds": {k: round(v, 1) for k, v in part_seconds.items()},
            "git": git_hash(), "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (folder / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("per-part wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in meta["part_seconds"].items()))
    print(f"study wall time {wall:.1f} s on {os.cpu_count()} cores ({len(todo)} runs trained)")
    if report:
        from report import write_reports
        write_reports(folder)
    return folder
