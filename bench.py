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
import json
import tempfile
from pathlib import Path

import pandas as pd

PART_NAMES = {"data": "data + split + preprocessing", "reference": "classical references",
              "main": "Parts 1, 2, 4 (unimodal, fusion, variants) + Part 3 evaluations",
              "part3": "Part 3 ModDrop models + evaluations", "part5": "Part 5 imbalance sweeps",
              "scaling": "parameter-scaling table"}
RUN_PARTS = {"main": ("part1", "part2", "part4"), "part3": ("part3",), "part5": ("part5",)}


def part_table(folder: Path) -> pd.DataFrame:
    """Per part: wall seconds (from ``study.json``), runs trained and mean samples/s (``runs.jsonl``).

    Raises
    ------
    FileNotFoundError
        If the folder holds no ``study.json``.
    """
    folder = Path(folder)
    if not (folder / "study.json").is_file():
        raise FileNotFoundError(f"{folder / 'study.json'} not found; run the study first")
    meta = json.loads((folder / "study.json").read_text())
    from study import RunStore
    runs = [r for r in RunStore(folder).records() if r.get("config_fp") == meta["config_fp"]]
    rows = []
    for part, secs in meta["part_seconds"].items():
        rs = [r for r in runs if r["part"] in RUN_PARTS.get(part, ()) and r.get("samples_per_s")]
        rows.append({"part": PART_NAMES.get(part, part), "wall s": f"{secs:.1f}", "runs": str(len(rs)) if rs else "—",
                     "train samples/s (mean per run)": f"{sum(r['samples_per_s'] for r in rs) / len(rs):,.0f}" if rs else "—"})
    rows.append({"part": f"total ({meta['cores']} cores, {meta.get('workers', 1)} worker processes)",
                 "wall s": f"{meta['wall_seconds']:.1f}", "runs": str(meta["runs_trained"]), "train samples/s (mean per run)": ""})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="folder", default=None, help="print a stored study's figures instead of running")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--data", default="configs/clothing.toml")
    args = ap.parse_args(argv)
    if args.folder:
        print(part_table(Path(args.folder)).to_markdown(index=False))
        return
    import torch

    from config import load_config
    from study import run_study
    cfg = load_config(args.data, args.profile)
    torch.set_num_threads(cfg.train.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = run_study(cfg, tmp)
        print(part_table(folder).to_markdown(index=False))


if __name__ == "__main__":
    main()
