"""The measured parts of the data cards in docs/datasets/: a one-split look at each bundled dataset
with the classical references, the near-proxy scan, and the FAA remarks' leakage check.

    PYTHONPATH=. FUSIONSTUDY_CACHE=.cache nice -n 10 python benchmarks/dataset_cards.py   # ~3-6 min on 2 cores

Every spec is read, split (its own ``[split]``: stratified 70/15/15, seed 0) and encoded exactly as
a study does (``data.prepare``); the references are the study's own (``study.references``), fit on
train with hyper-parameters picked on val. Figures are test ROC-AUC with a 95% percentile
bootstrap interval over test rows (1,000 resamples). The script rewrites only the blocks between
``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` in each card; the prose around them is written by hand.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

import fusionstudy as fs
from fusionstudy.data.bundled import EFFECT_WORDS, load_bundled
from fusionstudy.data.prepare import prepare
from fusionstudy.study.references import fit_references, single_column_auc

DOCS = Path(__file__).resolve().parents[1] / "docs" / "datasets"
REFS = {"ref_tfidf_logreg": "text: TF-IDF + logistic regression", "ref_hist_gbdt": "tabular: HistGradientBoosting",
        "ref_early_logreg": "early fusion: logistic regression on [TF-IDF \\| one-hot \\| numeric]",
        "ref_late_avg": "late fusion: mean of the two unimodal logits", "ref_stack_gbdt":
        "stacking: HistGradientBoosting on tabular + out-of-fold text score"}
N_BOOT = 1000
# "outcome narrative": besides the words naming the effect, words telling what the flight did next
OUTCOME_WORDS = re.compile(r"\b(?:land\w*|gate|back|cancel\w*|delay\w*|contd|continu\w*|dest\w*|depart\w*|deptd"
                           r"|safely|incid\w*|arff|standing by|stdng by|towed|inspn|inspect\w*)\b", re.IGNORECASE)


def auc_interval(y: np.ndarray, score: np.ndarray, base: np.ndarray | None = None,
                 seed: int = 0) -> tuple[float, float, float]:
    """Test ROC-AUC of ``score`` (minus that of ``base``, paired, if given) and its 95% percentile
    bootstrap interval over rows (``N_BOOT`` resamples, the same rows for both scores)."""
    def auc(i):
        return roc_auc_score(y[i], score[i]) - (0.0 if base is None else roc_auc_score(y[i], base[i]))
    rng, vals = np.random.default_rng(seed), []
    for _ in range(N_BOOT):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            vals.append(auc(i))
    return float(auc(np.arange(len(y)))), *map(float, np.percentile(vals, [2.5, 97.5]))


def look(cfg, df: pd.DataFrame | None = None, names: list[str] | None = None) -> tuple[dict, object, dict]:
    """The references' (``names``, default all) test ROC-AUCs with intervals, each fusion's paired gain
    over the unimodal reference that is better on val, the single-column scan and the split facts;
    also the prepared data and the fitted references."""
    prep = prepare(cfg, df)
    va, te = prep.splits["val"], prep.splits["test"]
    fitted = {r.name: r for r in fit_references(prep, names)}
    refs = {n: auc_interval(te.y, r.proba["test"][:, 1]) for n, r in fitted.items()}
    uni = [n for n in ("ref_tfidf_logreg", "ref_hist_gbdt") if n in fitted]
    best = max(uni, key=lambda n: roc_auc_score(va.y, fitted[n].proba["val"][:, 1]))
    gains = {n: auc_interval(te.y, r.proba["test"][:, 1], fitted[best].proba["test"][:, 1])
             for n, r in fitted.items() if len(r.modalities) == 2}
    no_text = prep.stats["text_missing"]
    y_all = np.concatenate([s.y for s in prep.splits.values()])
    miss = np.concatenate([s.text_missing for s in prep.splits.values()])
    facts = {"rows": prep.stats["rows"], "positive_rate": prep.stats["positive_rate"],
             "text_missing": no_text / prep.stats["rows"], "sizes": prep.stats["split_sizes"],
             "test_pos": int(te.y.sum()), "rate_no_text": float(y_all[miss].mean()) if no_text else float("nan"),
             "rate_text": float(y_all[~miss].mean()), "best": best}
    return {"refs": refs, "gains": gains, "columns": single_column_auc(prep), "facts": facts}, prep, fitted


def refs_table(res: dict) -> str:
    f = res["facts"]
    head = (f"Split: the spec's stratified random split, seed 0 — train {f['sizes']['train']:,} / val "
            f"{f['sizes']['val']:,} / test {f['sizes']['test']:,} rows ({f['test_pos']:,} positives in test). "
            f"Test ROC-AUC with a 95% bootstrap interval over test rows ({N_BOOT:,} resamples); for a fusion, "
            f"its paired gain over the unimodal reference that is better on val (`{f['best']}`).\n\n")
    rows = []
    for n, (a, lo, hi) in res["refs"].items():
        g = res["gains"].get(n)
        gain = f"{g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}]" if g else "—"
        rows.append(f"| `{n}` | {REFS[n]} | {a:.3f} | [{lo:.3f}, {hi:.3f}] | {gain} |")
    return (head + "| reference | model | test ROC-AUC | 95% interval | gain over the better unimodal |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows))


def facts_table(res: dict, label: str) -> str:
    f = res["facts"]
    return ("| rows | label | positive rate | rows without text | positive rate: with text / without |\n"
            "|---|---|---|---|---|\n"
            f"| {f['rows']:,} | `{label}` = 1 | {f['positive_rate']:.2%} | {f['text_missing']:.2%} | "
            f"{f['rate_text']:.2%} / {f['rate_no_text']:.2%} |")


def columns_table(auc: dict[str, float], top: int = 12, proxy: float = 0.95) -> str:
    items = sorted(auc.items(), key=lambda kv: -kv[1])[:top]
    rows = [f"| `{c}` | {v:.3f} | {'**yes**' if v >= proxy else 'no'} |" for c, v in items]
    return ("| column | val ROC-AUC alone | near-proxy (≥ 0.95)? |\n|---|---|---|\n" + "\n".join(rows))


def strong_tokens(text: pd.Series, y: np.ndarray, min_rows: int = 20, precision: float = 0.9) -> pd.DataFrame:
    """Word 1-2-grams in at least ``min_rows`` remarks whose positive rate reaches ``precision``."""
    cv = CountVectorizer(ngram_range=(1, 2), min_df=min_rows, binary=True, token_pattern=r"(?u)\b\w\w+\b")
    x = cv.fit_transform(text.fillna("").str.lower())
    n, pos = np.asarray(x.sum(0)).ravel(), np.asarray(x[y == 1].sum(0)).ravel()
    out = pd.DataFrame({"token": cv.get_feature_names_out(), "rows": n, "positive rate": pos / n,
                        "share of positives": pos / max(y.sum(), 1)})
    return out[out["positive rate"] >= precision].sort_values("share of positives", ascending=False)


def faa_leakage(prep, text_ref) -> str:
    """How much of the remarks' signal is the effect named in words: shares, strong tokens on train,
    the text reference on test rows without such words, and text references with words removed."""
    raw = load_bundled("faa_strikes")  # the spec's rows, in the same order
    remarks, y = raw["remarks"].fillna(""), raw["effect_present"].to_numpy()
    hit = remarks.str.contains(EFFECT_WORDS).to_numpy()
    tr, te = prep.splits["train"].row_ids, prep.splits["test"].row_ids
    p = text_ref.proba["test"][:, 1]
    plain = ~hit[te]
    before = strong_tokens(remarks.iloc[tr], y[tr])
    after = strong_tokens(remarks.iloc[tr].str.replace(EFFECT_WORDS, " ", regex=True), y[tr])
    lines = [
        f"- Train rows whose remarks contain an effect word (`data.bundled.EFFECT_WORDS`): {hit[tr].mean():.1%}; "
        f"of the train positives {hit[tr][y[tr] == 1].mean():.1%}, of the negatives {hit[tr][y[tr] == 0].mean():.1%}; "
        f"positive rate among them {y[tr][hit[tr]].mean():.1%} (base rate {y[tr].mean():.1%}).",
        f"- Single 1-2-grams in ≥ 20 train remarks with a positive rate ≥ 90%: {len(before)} "
        f"({', '.join(f'`{t}` {r:.0%}' for t, r in before[['token', 'positive rate']].head(8).values)}, ...); "
        f"together they occur in the remarks of {_any(remarks.iloc[tr], before['token'])[y[tr] == 1].mean():.1%} "
        f"of the train positives. After removing the effect words: {len(after)}"
        + (f" ({', '.join(f'`{t}`' for t in after['token'].head(8))})." if len(after) else "."),
        f"- `ref_tfidf_logreg` (all remarks) on the {plain.sum():,} test rows without an effect word: "
        "{:.3f} [{:.3f}, {:.3f}]; on the {:,} with one: {:.3f}.".format(
            *auc_interval(y[te][plain], p[plain]), int((~plain).sum()), roc_auc_score(y[te][~plain], p[~plain]))]
    return "\n".join(lines)


def _any(text: pd.Series, tokens: pd.Series) -> np.ndarray:
    cv = CountVectorizer(ngram_range=(1, 2), vocabulary=list(tokens), binary=True, token_pattern=r"(?u)\b\w\w+\b")
    return np.asarray(cv.transform(text.str.lower()).sum(1)).ravel() > 0


def faa_masks(cfg) -> str:
    """The text reference with the effect words, then also the outcome-narrative words, removed."""
    raw = load_bundled("faa_strikes")
    rows = []
    for what, pattern in (("none (the remarks as written)", None), ("effect words", EFFECT_WORDS),
                          ("effect words + outcome narrative (`OUTCOME_WORDS` here)", OUTCOME_WORDS)):
        if pattern is not None:
            raw = raw.assign(remarks=raw["remarks"].str.replace(pattern, " ", regex=True))
        res, _, _ = look(cfg, raw, ["ref_tfidf_logreg"])
        a, lo, hi = res["refs"]["ref_tfidf_logreg"]
        rows.append(f"| {what} | {a:.3f} | [{lo:.3f}, {hi:.3f}] |")
    return "| words removed from the remarks | text ROC-AUC (test) | 95% interval |\n|---|---|---|\n" + "\n".join(rows)


LOAN_PROXIES = {"categorical": ["sub_grade", "loan_status"],
                "numeric": ["interest_rate", "installment", "balance", "paid_total", "paid_principal",
                            "paid_interest", "paid_late_fees"]}


def loans_proxies() -> str:
    """The single-column scan and the tabular reference with the excluded columns put back."""
    cfg = fs.load_config("lending_club", "quick")
    for role, cols in LOAN_PROXIES.items():
        setattr(cfg.dataset, role, [*getattr(cfg.dataset, role), *cols])
    res, _, _ = look(cfg, None, ["ref_hist_gbdt"])
    a, lo, hi = res["refs"]["ref_hist_gbdt"]
    excluded = {c: v for c, v in res["columns"].items() if c in sum(LOAN_PROXIES.values(), [])}
    return (columns_table(excluded, top=len(excluded)) + f"\n\nWith them put back, `ref_hist_gbdt` reaches "
            f"{a:.3f} [{lo:.3f}, {hi:.3f}] test ROC-AUC (same split).")


def fill(card: Path, blocks: dict[str, str]) -> None:
    """Replace each ``<!-- begin:NAME -->...<!-- end:NAME -->`` block of ``card`` by ``blocks[NAME]``."""
    text = card.read_text()
    for name, body in blocks.items():
        pat = re.compile(rf"(<!-- begin:{name} -->\n).*?(\n<!-- end:{name} -->)", re.DOTALL)
        if not pat.search(text):
            sys.exit(f"{card}: no block {name}")
        text = pat.sub(lambda m: m.group(1) + body + m.group(2), text)
    card.write_text(text)


def card_blocks(spec: str, contrast: str | None = None) -> tuple[dict[str, str], object, dict]:
    cfg = fs.load_config(spec, "quick")
    res, prep, fitted = look(cfg)
    blocks = {"facts": facts_table(res, cfg.dataset.label), "look": refs_table(res),
              "columns": columns_table(res["columns"])}
    if contrast:
        cres, _, _ = look(fs.load_config(contrast, "quick"))
        blocks["contrast"] = f"`{contrast}`: " + refs_table(cres)
    return blocks, prep, fitted


def main() -> None:
    with threadpool_limits(1):
        blocks, _, _ = card_blocks("clothing", "clothing_no_rating")
        fill(DOCS / "womens_clothing.md", blocks)
        blocks, prep, fitted = card_blocks("faa_strikes", "faa_strikes_no_effect_words")
        blocks["leakage"] = faa_leakage(prep, fitted["ref_tfidf_logreg"])
        blocks["masks"] = faa_masks(fs.load_config("faa_strikes", "quick"))
        fill(DOCS / "faa_strikes.md", blocks)
        blocks, _, _ = card_blocks("lending_club")
        blocks["proxies"] = loans_proxies()
        fill(DOCS / "lending_club.md", blocks)
    print("wrote", ", ".join(str(p) for p in sorted(DOCS.glob("*.md"))))


if __name__ == "__main__":
    main()
