"""Benchmark: wall seconds per part, trained models per second, training samples/s and peak memory
per worker of the study, as ratios to a stored baseline.

    python bench.py                              # time a fresh full study in a temporary folder
    python bench.py --profile quick              # the same for the quick profile
    python bench.py --from results/clothing      # print the figures of a stored study (no training)
    python bench.py --from results/clothing --baseline dense-adamw

Timing is wall-clock on this machine (2 CPU cores here); throughput is training samples per second
of wall time inside ``fit``, averaged over a part's runs; peak memory is each worker process's
peak resident set (MiB, ``getrusage``). This machine is shared and noisy, so the figure to quote
is the ratio to a baseline of ``bench_baselines.json`` (earlier designs' stored ``study.json``
figures of the full profile; a ratio < 1 is faster). ``experiments.md`` shows the committed run's table.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from analysis import part_table
from config import ROOT, load_config
from formats import bench_cells, md_table
from records import load_study
from study import run_study

BASELINES = ROOT / "bench_baselines.json"


def baselines() -> dict[str, dict]:
    """The stored baselines of ``bench_baselines.json``: name -> ``study.json``-like dict."""
    return {k: v for k, v in json.loads(BASELINES.read_text()).items() if not k.startswith("_")}


def report(folder: Path, baseline: str | None) -> str:
    """The per-part table of a stored study (with ratios to ``baseline`` when named) and its
    peak memory per worker, as Markdown.

    Raises
    ------
    ValueError
        If ``baseline`` is not a key of ``bench_baselines.json``.
    """
    known = baselines()
    if baseline is not None and baseline not in known:
        raise ValueError(f"unknown baseline {baseline!r}; bench_baselines.json has {list(known)}")
    res = load_study(folder)
    base = known[baseline] if baseline else None
    lines = [md_table(bench_cells(part_table(res.meta, res.runs, base)))]
    if base:
        lines.append(f"\nbaseline {baseline!r}: {base['label']}")
    peaks = res.meta.get("peak_rss_mb_per_worker")
    if peaks:
        lines.append(f"peak resident memory per worker: {', '.join(f'{p:,} MiB' for p in peaks)}; "
                     f"driver {res.meta.get('peak_rss_mb_driver', 0):,} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="folder", default=None, help="print a stored study's figures instead of running")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--data", default="configs/clothing.toml")
    ap.add_argument("--baseline", default="sparse-adagrad",
                    help=f"a key of bench_baselines.json ({', '.join(baselines())}) or 'none'")
    args = ap.parse_args(argv)
    base = None if args.baseline == "none" else args.baseline
    if args.folder:
        print(report(Path(args.folder), base))
        return
    cfg = load_config(args.data, args.profile)
    torch.set_num_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = run_study(cfg, tmp)
        print(report(folder, base if args.profile == "full" else None))


if __name__ == "__main__":
    main()
