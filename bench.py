"""Benchmark: wall seconds, runs and training throughput of the study, per part.

    python bench.py                          # time a fresh full study in a temporary folder
    python bench.py --profile quick          # the same for the quick profile
    python bench.py --from results/clothing  # print the figures of a stored study (no training)

Timing is wall-clock on this machine (2 CPU cores here); throughput is training samples per second
of wall time inside ``fit``, averaged over a part's runs. ``experiments.md`` shows this table for
the committed results.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from analysis import part_table
from config import load_config
from records import load_study
from study import run_study


def part_table_of(folder: Path) -> pd.DataFrame:
    """Per part: wall seconds, runs trained and mean samples/s of a stored study."""
    res = load_study(folder)
    return part_table(res.meta, res.runs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="folder", default=None, help="print a stored study's figures instead of running")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--data", default="configs/clothing.toml")
    args = ap.parse_args(argv)
    if args.folder:
        print(part_table_of(Path(args.folder)).to_markdown(index=False))
        return
    cfg = load_config(args.data, args.profile)
    torch.set_num_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = run_study(cfg, tmp)
        print(part_table_of(folder).to_markdown(index=False))


if __name__ == "__main__":
    main()
