"""The text-encoder comparison's report: stored results -> ``docs/encoders.md``. Torch-free.

    python benchmarks/encoders.py --report   # rewrite docs/encoders.md from results/encoders-*/

Numbers come only from the four results folders ``results/encoders-<encoder>-<size>/`` that
``benchmarks/encoders.py`` trains; the differences *minilm - bag* are paired across the two folders of a
size (same split, same test and validation rows, seed i with seed i) with the project's
two-level bootstrap (``verdicts.combine``) and judged by its one rule (``verdicts.rule``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fusionstudy.analysis.verdicts import combine, rule, term
from fusionstudy.config import ReportConfig
from fusionstudy.records import StudyResults, load_study
from fusionstudy.report.experiments import environment
from fusionstudy.report.formats import fmt_d, fmt_int, md_table

log = logging.getLogger(__name__)

ENCODERS = ("bag", "minilm")
SIZES = {"full": 0, "2000": 2000}  # name -> dataset.subsample (0 = every row)
MODELS = ("text_only", "early_concat")
REFERENCES = ("tabular_only", "ref_tfidf_logreg", "ref_hist_gbdt", "ref_early_logreg", "ref_late_avg")
DOC = Path("docs") / "encoders.md"


def folder_of(encoder: str, size: str, root: Path = Path(".")) -> Path:
    """``<root>/results/encoders-<encoder>-<size>``."""
    return root / "results" / f"encoders-{encoder}-{size}"


def paired(a: StudyResults, b: StudyResults, model: str, key: str, margin: float) -> dict:
    """Seed-mean ROC-AUC of ``model`` in ``a`` minus in ``b`` on ``key`` (``val``/``test``): the
    two-level interval over their common seeds (paired seed by seed, rows resampled alike) and the
    rule's verdict.

    Raises
    ------
    ValueError
        If the two studies' splits differ (the difference would not be paired).
    """
    for k in ("val_ids", "test_ids"):
        if a.split[k] != b.split[k]:
            raise ValueError(f"{a.folder} and {b.folder} have different {k}: the difference is not paired")
    seeds = sorted({r.seed for r in a.runs if r.model == model} & {r.seed for r in b.runs if r.model == model})
    out = combine([(1.0, term(a, model, key, "", seeds)), (-1.0, term(b, model, key, "", seeds))])
    return {**out, "verdict": rule(out["lo"], out["hi"], margin)}


def _mean(res: StudyResults, model: str, f) -> float:
    return float(np.mean([f(r) for r in res.runs if r.model == model and r.training.tag == ""]))


def comparison(studies: dict[tuple[str, str], StudyResults], margin: float) -> pd.DataFrame:
    """One row per (size, model): each encoder's seed-mean val/test ROC-AUC with its interval,
    the paired minilm - bag difference on val and test with the rule's verdict (on test), mean
    text-encoder and total parameters, mean train seconds and the texts' encode seconds."""
    rows = []
    for size in SIZES:
        bag, lm = studies[("bag", size)], studies[("minilm", size)]
        for model in MODELS:
            row = {"size": size, "rows": bag.split["stats"]["rows"], "model": model}
            for enc, res in (("bag", bag), ("minilm", lm)):
                for key in ("val", "test"):
                    row[f"{enc}_{key}"] = combine([(1.0, term(res, model, key))])
                row[f"{enc}_enc_params"] = _mean(res, model, lambda r: r.params["enc_text"])
                row[f"{enc}_params"] = _mean(res, model, lambda r: r.params["total"])
                row[f"{enc}_train_s"] = _mean(res, model, lambda r: r.train_seconds)
                row[f"{enc}_epoch"] = _mean(res, model, lambda r: r.best_epoch)
            row["encode_s"] = lm.split["stats"].get("text_encoder", {}).get("encode_seconds", np.nan)
            for key in ("val", "test"):
                row[f"diff_{key}"] = paired(lm, bag, model, key, margin)
            rows.append(row)
    return pd.DataFrame(rows)


def references(studies: dict[tuple[str, str], StudyResults]) -> pd.DataFrame:
    """Seed-mean val/test ROC-AUC (two-level interval on test) of the bag folders' other models."""
    rows = []
    for size in SIZES:
        res = studies[("bag", size)]
        for model in REFERENCES:
            if any(r.model == model for r in res.runs):
                rows.append({"size": size, "model": model, "val": _mean(res, model, lambda r: r.metrics["val"]["roc_auc"]),
                             "test": combine([(1.0, term(res, model, "test"))])})
    return pd.DataFrame(rows)


def _cells(t: pd.DataFrame) -> pd.DataFrame:
    f = lambda d: fmt_d(d, signed=False)  # noqa: E731
    return pd.DataFrame([{
        "data": f"{r.size} ({r.rows:,} rows)", "model": r.model,
        "bag test": f(r.bag_test), "minilm test": f(r.minilm_test), "minilm − bag, test": fmt_d(r.diff_test),
        "verdict": r.diff_test["verdict"], "bag val": f(r.bag_val), "minilm val": f(r.minilm_val),
        "minilm − bag, val": fmt_d(r.diff_val)} for r in t.itertuples()])


def _costs(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "data": r.size, "model": r.model, "bag text-encoder params": fmt_int(r.bag_enc_params),
        "minilm trained text params": fmt_int(r.minilm_enc_params), "bag total": fmt_int(r.bag_params),
        "minilm total": fmt_int(r.minilm_params), "bag train s": f"{r.bag_train_s:.1f}",
        "minilm train s": f"{r.minilm_train_s:.1f}", "bag best epoch": f"{r.bag_epoch:.1f}",
        "minilm best epoch": f"{r.minilm_epoch:.1f}", "minilm encode s (once)": f"{r.encode_s:.0f}"}
        for r in t.itertuples()])


def render_encoders_doc(root: Path = Path(".")) -> str:
    """The Markdown of ``docs/encoders.md`` from ``<root>/results/encoders-*`` (template
    ``templates/encoders.md.j2``).

    Raises
    ------
    FileNotFoundError
        If a results folder is missing (run ``python benchmarks/encoders.py``).
    """
    studies = {(e, s): load_study(folder_of(e, s, root)) for e in ENCODERS for s in SIZES}
    margin = {**ReportConfig().__dict__, **studies[("bag", "full")].config.get("report", {})}["margin"]
    t, refs = comparison(studies, margin), references(studies)
    wins = {size: {r.model: r.diff_test["verdict"] for r in t[t["size"] == size].itertuples()} for size in SIZES}
    ref_cells = pd.DataFrame([{"data": r.size, "model": r.model, "val ROC-AUC": f"{r.val:.4f}",
                               "test ROC-AUC": fmt_d(r.test, signed=False)} for r in refs.itertuples()])
    full = studies[("minilm", "full")]
    cfg, stats = full.config, full.split["stats"]
    n_texts = stats["rows"] - stats["text_missing"]
    encode_s = stats.get("text_encoder", {}).get("encode_seconds", float("nan"))
    test_texts = round(n_texts * stats["split_sizes"]["test"] / stats["rows"])  # perturbed: 3 noise families x levels
    return environment().get_template("encoders.md.j2").render(
        table=md_table(_cells(t)), costs=md_table(_costs(t)), refs=md_table(ref_cells), wins=wins, margin=margin,
        seeds=cfg["study"]["seeds"], train=cfg["train"], sizes={s: t[t["size"] == s].rows.iloc[0] for s in SIZES},
        n_texts=n_texts, encode_s=round(encode_s), rate=round(n_texts / encode_s, 1),
        n_perturbed=3 * len(cfg["study"]["noise_levels"]) * test_texts)


def write_encoders_doc(root: Path = Path(".")) -> Path:
    """Write :func:`render_encoders_doc` to ``<root>/docs/encoders.md``; return its path."""
    path = root / DOC
    path.write_text(render_encoders_doc(root))
    return path
