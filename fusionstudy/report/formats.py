"""Cell formats of the Markdown reports: numbers -> short strings (one place, so every table agrees)."""
from __future__ import annotations

import pandas as pd

from fusionstudy.metrics import mean_ci


def fmt_ci(mean: float, ci: float, digits: int = 4) -> str:
    """``0.9712 ± 0.0021``; ``n/a`` for NaN."""
    if mean != mean:
        return "n/a"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def fmt_iv(value: float, lo: float, hi: float, signed: bool = False, margin: float | None = None) -> str:
    """``0.9712 [0.9650, 0.9770]`` (``+0.0071 [+0.0040, +0.0100]`` when ``signed``); n/a for NaN.

    With the decision rule's ``margin``, a bound within 0.0001 of ±margin gets five decimals, so
    that a rounded bound never reads as on the wrong side of the margin (``+0.00499``, not ``+0.0050``)."""
    if value != value:
        return "n/a"
    sign = "+" if signed else ""

    def f(v: float) -> str:
        near = margin is not None and abs(abs(v) - margin) < 1e-4
        return f"{v:{sign}.{5 if near else 4}f}"
    return f"{f(value)} [{f(lo)}, {f(hi)}]"


def fmt_d(d: dict, signed: bool = True) -> str:
    """A :mod:`verdicts` result ``{"value", "lo", "hi"[, "margin"]}`` as :func:`fmt_iv` (a signed
    difference that carries its rule's margin shows near-margin bounds with five decimals)."""
    return fmt_iv(d["value"], d["lo"], d["hi"], signed, d.get("margin") if signed else None)


def fmt_num(v: float, digits: int = 4) -> str:
    """``0.0045``; ``n/a`` for NaN (e.g. a curve too short for its roughness)."""
    return "n/a" if v != v else f"{v:.{digits}f}"


def fmt_int(v) -> str:
    """``1,920,064``; ``—`` for NaN (trees have no parameters)."""
    return "—" if v != v else f"{int(v):,}"


def ci_cell(values, digits: int = 4) -> str:
    """Mean ± 95% t-interval half-width over seeds of ``values``."""
    return fmt_ci(*mean_ci(list(values)), digits)


def md_table(df: pd.DataFrame) -> str:
    """GitHub Markdown table of ``df`` (values already formatted as strings)."""
    return df.to_markdown(index=False, disable_numparse=True)


def bench_cells(table: pd.DataFrame) -> pd.DataFrame:
    """``analysis.part_table`` as report cells: seconds to 0.1, models/s to 0.01, samples/s with
    thousands separators, ratios to 0.01 (``x0.52``); ``—`` where a part trains nothing."""
    def num(fmt: str):
        return lambda v: "—" if v != v or v is None else fmt.format(v)
    cols = {"name": ("part", str), "wall_s": ("wall s", num("{:.1f}")), "runs": ("runs", num("{:d}")),
            "models_per_s": ("models/s", num("{:.2f}")), "samples_per_s": ("train samples/s (mean per run)", num("{:,.0f}")),
            "baseline_wall_s": ("baseline wall s", num("{:.1f}")), "ratio": ("ratio to baseline", num("x{:.2f}"))}
    out = pd.DataFrame({label: [fn(v) for v in table[c]] for c, (label, fn) in cols.items() if c in table})
    out.loc[table.runs.values == 0, "runs"] = "—"
    return out
