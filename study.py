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
import multiprocessing as mp
import json
import os
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

import perturb
from config import ROOT, Config
from data import Prepared, SplitData, prepare, to_inputs
from fusion import FUSIONS, parameter_scaling
from metrics import classification_metrics
from loop import fit, make_model, move, predict

UNIMODAL = ("text_only", "tabular_only")
PART_OF = {"text_only": "part1", "tabular_only": "part1", "early_concat": "part2",
           "late_logit_avg": "part2", "late_ensemble": "part2"}


@dataclass(frozen=True)
class RunSpec:
    """One model to train.

    ``model`` is the name in the summary (``text_only``, ``gmu``, ``early_concat_moddrop``...),
    ``fusion`` a key of ``FUSIONS``, ``moddrop`` the ModDrop probability, and ``weaken`` a Part 5
    training-time weakening ``(kind, modality, level)`` with kind ``subsample`` / ``corrupt`` /
    ``truncate`` (empty for a clean run).
    """

    model: str
    fusion: str
    seed: int
    part: str
    moddrop: float = 0.0
    weaken: tuple = ()

    @property
    def base_model(self) -> str:
        """The architecture's name without the ``_moddrop`` suffix (decides the modalities)."""
        return self.model.removesuffix("_moddrop")

    def key(self, fingerprint: str) -> str:
        """Unique id of the run under a config fingerprint (used for resume)."""
        w = "|weaken=" + ":".join(map(str, self.weaken)) if self.weaken else ""
        return f"{self.model}|seed={self.seed}{w}|cfg={fingerprint}"


def _fusion_of(name: str) -> str:
    if name in UNIMODAL:
        return "early_concat"
    if name not in FUSIONS:
        raise ValueError(f"unknown model {name!r}; use one of {list(UNIMODAL) + sorted(FUSIONS)}")
    return name


def plan(cfg: Config, modalities: tuple[str, ...] = ("tabular", "text")) -> dict[str, list[RunSpec]]:
    """Run specs per part: ``main`` (Parts 1, 2, 4), ``part3`` (ModDrop-trained models) and
    ``part5`` (training-time weakening of each modality, ``imbalance_seeds`` per point).

    Raises
    ------
    ValueError
        If a model name is neither ``<modality>_only`` nor a registered fusion.
    """
    st = cfg.study
    main = [RunSpec(n, _fusion_of(n), s, PART_OF.get(n, "part4")) for n in st.models for s in st.seeds]
    moddrop = [RunSpec(f"{n}_moddrop", _fusion_of(n), s, "part3", moddrop=st.moddrop_p)
               for n in st.moddrop_models for s in st.seeds] if len(modalities) == 2 else []
    grid = [("subsample", m, f) for m in modalities for f in st.subsample_levels]
    grid += [("corrupt", m, r) for m in modalities for r in st.corrupt_levels]
    grid += [("truncate", "text", k) for k in st.truncate_levels if "text" in modalities]
    part5 = [RunSpec(n, _fusion_of(n), s, "part5", weaken=w) for w in grid for n in st.imbalance_models
             if len(modalities) == 2 and n not in (f"{o}_only" for o in modalities if o != w[1])
             for s in st.imbalance_seeds]
    return {"main": main, "part3": moddrop, "part5": part5}


def git_hash() -> str:
    """``git rev-parse HEAD`` of the toolkit (with ``+dirty`` for local changes), or ``unknown``."""
    try:
        h = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
        # results/ is data the study writes, not code: it does not make the code "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return h + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _ends_torn(path: Path) -> bool:
    """True if ``path`` is non-empty and its last byte is not a newline."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


class RunStore:
    """Append-only JSON-lines store of run records, their predictions and evaluation records."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runs_path = self.folder / "runs.jsonl"
        self.preds_path = self.folder / "predictions.jsonl"
        self.evals_path = self.folder / "evals.jsonl"

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

    def evals(self) -> list[dict]:
        return self._read(self.evals_path)

    def append(self, record: dict, preds: dict | None = None, evals: list[dict] | None = None) -> None:
        """Write predictions and evaluations first and the run record last: a stored run record
        means the run is complete (resume skips it)."""
        for path, objs in ((self.preds_path, [preds] if preds else []), (self.evals_path, evals or []),
                           (self.runs_path, [record])):
            if objs:
                # a line cut off by an interrupted write must not swallow the next record
                torn = _ends_torn(path)
                with open(path, "a") as fh:
                    fh.write("\n" * torn + "".join(json.dumps(o) + "\n" for o in objs))
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
            "seed": seed, "config_fp": cfg.fingerprint(), "config": cfg.to_dict(), "git": _WORKER.get("git") or git_hash(),
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def weakened(prep: Prepared, spec: RunSpec, seed: int) -> Prepared:
    """``prep`` with the spec's Part 5 weakening applied: ``subsample`` keeps the modality on a
    fraction of *train* rows (removed on the rest), ``corrupt`` corrupts it on *train* rows at the
    given rate; ``truncate`` cuts text to k tokens on *every* split. Val/test stay clean otherwise."""
    if not spec.weaken:
        return prep
    kind, modality, level = spec.weaken
    splits = dict(prep.splits)
    if kind == "subsample":
        splits["train"] = perturb.drop(splits["train"], prep, modality, 1.0 - level, seed)
    elif kind == "corrupt":
        splits["train"] = perturb.corrupt(splits["train"], prep, modality, level, seed)
    elif kind == "truncate":
        splits = {k: perturb.truncate(v, prep, int(level)) for k, v in splits.items()}
    else:
        raise ValueError(f"unknown weakening {kind!r}; use subsample, corrupt or truncate")
    return replace(prep, splits=splits, weakening=spec.weaken)


def eval_suite(prep: Prepared, cfg: Config, full: bool = True) -> list[tuple[dict, SplitData]]:
    """Perturbed copies of the test split, each with its description. ``full=False`` gives the
    Part 5 suite (clean + remove each modality); ``full=True`` adds per-sample drop, every noise
    family at every severity, ``permutations`` shuffles per modality, and the rows whose text is
    naturally missing as their own subset."""
    test, st = prep.splits["test"], cfg.study
    item = lambda p, m, sev, split, subset="test": ({"perturbation": p, "modality": m, "severity": sev,  # noqa: E731
                                                     "subset": subset}, split)
    suite = [item("clean", "none", 0.0, test)]
    suite += [item("remove", m, 1.0, perturb.remove(test, prep, m)) for m in prep.modalities]
    if not full or len(prep.modalities) < 2:
        return suite
    suite += [item("drop", m, q, perturb.drop(test, prep, m, q, cfg.split.seed))
              for m in prep.modalities for q in st.drop_levels]
    suite += [item(name, perturb.MODALITY_OF[name], sev, fn(test, prep, sev, cfg.split.seed))
              for name, fn in perturb.NOISE.items() for sev in st.noise_levels]
    suite += [item("shuffle", m, float(i), perturb.shuffle(test, prep, m, i))
              for m in prep.modalities for i in range(st.permutations)]
    missing = np.flatnonzero(test.text_missing)
    if len(missing):
        suite.append(item("clean", "none", 0.0, test.subset(missing), "text_missing"))
    return suite


def evaluate(model, suite: list[tuple[dict, SplitData]], base: dict) -> list[dict]:
    """One evaluation record per suite item: ``base`` fields + the item's description + metrics."""
    return [{**base, **meta, "n": len(split), "metrics": classification_metrics(split.y, predict(model, split))}
            for meta, split in suite]


def train_run(spec: RunSpec, prep: Prepared, cfg: Config, suite: list | None = None,
              progress=None) -> tuple[dict, dict, list[dict]]:
    """Build, fit and evaluate one model; return ``(record, predictions, eval records)``."""
    key = spec.key(cfg.fingerprint())
    p = prep if prep.weakening == spec.weaken else weakened(prep, spec, cfg.split.seed)
    model = make_model(spec.base_model, spec.fusion, p, cfg, spec.seed)
    batch_fn = (lambda b, rng: perturb.modality_dropout(b, p, spec.moddrop, rng)) if spec.moddrop else None
    res = fit(model, p.splits["train"], p.splits["val"], cfg.train, spec.seed, batch_fn=batch_fn, progress=progress)
    probas = {s: predict(model, p.splits[s]) for s in ("val", "test")}
    rec = base_record(spec.model, spec.part, spec.seed, key, cfg)
    rec.update(fusion=spec.fusion, modalities=model.modalities, moddrop=spec.moddrop, weaken=list(spec.weaken),
               metrics={s: classification_metrics(p.splits[s].y, pr) for s, pr in probas.items()},
               params=model.param_counts(), diagnostics=fusion_diagnostics(model, p.splits["test"]),
               **{k: v for k, v in asdict(res).items()})
    if suite is None or spec.weaken:
        suite = eval_suite(p, cfg, full=False)
    base = {"kind": "eval", "run_key": key, "model": spec.model, "seed": spec.seed, "part": spec.part,
            "weaken": list(spec.weaken), "config_fp": cfg.fingerprint()}
    return rec, {"run_key": key, **{s: _proba_list(pr) for s, pr in probas.items()}}, evaluate(model, suite, base)


def _as_proba(p: list, n_classes: int) -> np.ndarray:
    a = np.asarray(p, dtype=float)
    a = np.column_stack([1 - a, a]) if n_classes == 2 and a.ndim == 1 else a
    return a / a.sum(axis=1, keepdims=True)  # stored probabilities are rounded to 6 decimals


def late_ensemble(prep: Prepared, cfg: Config, store: RunStore, seed: int) -> tuple[dict, dict] | None:
    """Post-hoc late fusion: mean of the seed's ``text_only`` and ``tabular_only`` probabilities.

    No extra training; its parameter count and train seconds are the two models' sums. Returns
    ``None`` if either unimodal run of this seed is not stored yet.
    """
    fp, preds = cfg.fingerprint(), store.predictions()
    recs = {r["model"]: r for r in store.records()
            if r.get("config_fp") == fp and r["seed"] == seed and not r.get("weaken")}
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


def reference_runs(prep: Prepared, cfg: Config, skip: set[str] = frozenset()) -> list[tuple[dict, dict]]:
    """Classical references on the same split: TF-IDF + logistic regression (C picked on val
    from {0.5, 2, 8}) on the text pipeline's matrix, and HistGradientBoosting on the tabular
    codes (categorical columns with <= 255 codes declared categorical)."""
    tr, sp = prep.splits["train"], prep.splits
    out = []
    stored = lambda name: RunSpec(name, name, 0, "reference").key(cfg.fingerprint()) in skip  # noqa: E731
    if "text" in prep.modalities and not stored("ref_tfidf_logreg"):
        t0 = time.perf_counter()
        fits = [LogisticRegression(C=c, max_iter=3000).fit(tr.text, tr.y) for c in (0.5, 2.0, 8.0)]
        best = max(fits, key=lambda m: classification_metrics(sp["val"].y, m.predict_proba(sp["val"].text))["roc_auc"])
        out.append(("ref_tfidf_logreg", best, lambda s: s.text, time.perf_counter() - t0, {"C": best.C}))
    if "tabular" in prep.modalities and not stored("ref_hist_gbdt"):
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


_WORKER: dict = {}


def _init_worker(prep: Prepared, cfg: Config, suite: list, threads: int, git: str) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(prep=prep, cfg=cfg, suite=suite, git=git)


def _worker_run(spec: RunSpec):
    t0 = time.perf_counter()
    prep, cfg = _WORKER["prep"], _WORKER["cfg"]
    if spec.weaken:  # every model and seed of a Part 5 point sees the same weakened data: build it once
        cache = _WORKER.setdefault("weakened", {})
        if spec.weaken not in cache:
            cache.clear()  # runs arrive grouped by point; keep one weakened copy in memory
            cache[spec.weaken] = weakened(prep, spec, cfg.split.seed)
        prep = cache[spec.weaken]
    out = train_run(spec, prep, cfg, _WORKER["suite"])
    return spec, out, time.perf_counter() - t0


def _execute(specs: list[RunSpec], store: RunStore, pool, desc: str) -> None:
    """Train ``specs`` (in ``pool`` when given, else in this process), storing each as it ends."""
    if not specs:
        return
    with tqdm(total=len(specs), desc=desc, unit="run", dynamic_ncols=True) as bar:
        if pool is None:
            for spec in specs:
                bar.set_postfix_str(f"{spec.model} seed {spec.seed}")
                store.append(*_worker_run(spec)[1])
                bar.update()
            return
        for fut in as_completed([pool.submit(_worker_run, sp) for sp in specs]):
            spec, out, _ = fut.result()
            store.append(*out)
            bar.set_postfix_str(f"{spec.model} seed {spec.seed} done")
            bar.update()


def run_study(cfg: Config, out: str | None = None) -> Path:
    """Run every part of the study for ``cfg``, skipping stored runs (the CLI then writes the reports).

    Parts run in order (data + references, Parts 1/2/4, Part 3 ModDrop models, Part 5), each
    trained by ``cfg.train.workers`` processes. Returns the results folder; prints per-part wall
    seconds and stores them in ``study.json``.
    """
    folder = results_dir(cfg, out)
    store, fp = RunStore(folder), cfg.fingerprint()
    t_start = time.perf_counter()
    code = git_hash()  # the code the study starts with, recorded in every record it writes
    _WORKER["git"] = code
    print(f"study {cfg.dataset.name!r} profile {cfg.profile!r} -> {folder}")
    prep = prepare(cfg)
    write_split(prep, folder)
    suite = eval_suite(prep, cfg)
    secs = {"data": time.perf_counter() - t_start}
    done = {r["run_key"] for r in store.records()}
    t0 = time.perf_counter()
    if cfg.study.references:
        for rec, preds in reference_runs(prep, cfg, skip=done):
            store.append(rec, preds)
    secs["reference"] = time.perf_counter() - t0
    parts = plan(cfg, prep.modalities)
    todo = {k: [sp for sp in v if sp.key(fp) not in done] for k, v in parts.items()}
    n_all, n_todo = sum(map(len, parts.values())), sum(map(len, todo.values()))
    print(f"{n_todo} runs to train, {n_all - n_todo} already stored; {cfg.train.workers} worker(s)")
    workers = max(1, min(cfg.train.workers, n_todo))
    threads = max(1, cfg.train.threads // workers)
    pool = None if workers == 1 else ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(prep, cfg, suite, threads, code))
    if pool is None:
        _init_worker(prep, cfg, suite, cfg.train.threads, code)
    try:
        for part, desc in (("main", "Parts 1, 2, 4"), ("part3", "Part 3 (ModDrop)"), ("part5", "Part 5 (imbalance)")):
            t0 = time.perf_counter()
            _execute(todo[part], store, pool, desc)
            secs[part] = time.perf_counter() - t0
            if part == "main" and all(m in cfg.study.models for m in UNIMODAL):
                for seed in cfg.study.seeds:
                    key = RunSpec("late_ensemble", "late_ensemble", seed, "part2").key(fp)
                    made = None if key in done else late_ensemble(prep, cfg, store, seed)
                    if made:
                        store.append(*made)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    t0 = time.perf_counter()
    if any(m in FUSIONS for m in cfg.study.models):
        rows = parameter_scaling(cfg.study.scaling_dims, sorted(prep.modalities), cfg.model.head_hidden,
                                 len(prep.classes), cfg.model.lmf_rank)
        (folder / "param_scaling.json").write_text(json.dumps(rows) + "\n")
    secs["scaling"] = time.perf_counter() - t0
    wall = time.perf_counter() - t_start
    meta = {"study": cfg.dataset.name, "profile": cfg.profile, "config_fp": fp, "cores": os.cpu_count(),
            "workers": workers, "torch_threads_per_worker": threads, "wall_seconds": round(wall, 1),
            "runs_trained": n_todo, "runs_planned": n_all,
            "part_seconds": {k: round(v, 1) for k, v in secs.items()},
            "git": code, "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    old = json.loads((folder / "study.json").read_text()) if (folder / "study.json").is_file() else {}
    if old.get("config_fp") == fp and n_todo == 0:
        print(f"nothing new to train: keeping the timings of the run that trained these models ({folder / 'study.json'})")
    else:
        if old.get("config_fp") == fp:  # a resumed study: its cost is the sum of its invocations
            meta["wall_seconds"] = round(old["wall_seconds"] + wall, 1)
            meta["runs_trained"] = old["runs_trained"] + n_todo
            meta["part_seconds"] = {k: round(old["part_seconds"].get(k, 0) + v, 1) for k, v in secs.items()}
            meta["invocations"] = old.get("invocations", 1) + 1
        (folder / "study.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("per-part wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in meta["part_seconds"].items()))
    print(f"study wall time {wall:.1f} s on {os.cpu_count()} cores ({n_todo} runs trained)")
    return folder
