"""The text-encoder comparison: the n-gram bag trained from scratch vs frozen all-MiniLM-L6-v2
sentence embeddings + a trained MLP (``text.encoder``), on the default data and on a 2,000-row
subsample, with the study's seeds. One command, resumable (stored runs are skipped):

    python benchmarks/encoders.py              # train what is missing, then write docs/encoders.md  (make encoders)
    python benchmarks/encoders.py --report     # only rewrite docs/encoders.md from results/encoders-*/
    python benchmarks/encoders.py --encoder bag --size 2000   # train a part only (then the page needs the rest)

Each (encoder, size) is an ordinary study (``fusionstudy.run_study``, the bundled profile ``encoders``)
in ``results/encoders-<encoder>-<size>/``; the bag folders also hold ``tabular_only`` and the
classical references (the same for both encoders). The minilm runs need the optional extra
(the ``minilm`` extra); their embeddings are cached (``embeddings.py``), so only the first
run encodes. The table is rendered by :mod:`fusionstudy.report.encoders` from the stored records alone.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fusionstudy.config import load_config
from fusionstudy.data.embeddings import ExtraNotInstalled
from fusionstudy.report.encoders import ENCODERS, SIZES, folder_of, write_encoders_doc
from fusionstudy.study.runner import run_study

ROOT = Path(__file__).resolve().parents[1]  # this repository: results/encoders-*/, docs/encoders.md
PROFILE = "encoders"  # fusionstudy/profiles/encoders.toml


def overrides(encoder: str, size: str) -> list[str]:
    """The ``--set`` overrides of one (encoder, size) study on top of :data:`PROFILE`."""
    bag = encoder == "bag"
    models = '["text_only", "tabular_only", "early_concat"]' if bag else '["text_only", "early_concat"]'
    return [f"text.encoder={encoder}", f"dataset.subsample={SIZES[size]}", f"study.models={models}",
            f"study.references={str(bag).lower()}"]


def main(argv: list[str] | None = None) -> None:
    """Run every (encoder, size) study not yet stored, then write docs/encoders.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="only rewrite docs/encoders.md from stored results")
    ap.add_argument("--encoder", choices=ENCODERS, action="append", help="train only this encoder (repeatable)")
    ap.add_argument("--size", choices=list(SIZES), action="append", help="train only this data size (repeatable)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        for size in [] if args.report else args.size or SIZES:
            for encoder in args.encoder or ENCODERS:
                cfg = load_config("clothing", PROFILE, overrides(encoder, size))
                torch.set_num_threads(cfg.train.threads)
                run_study(cfg, str(folder_of(encoder, size, ROOT)))
        missing = [str(folder_of(e, s, ROOT)) for s in SIZES for e in ENCODERS if not (folder_of(e, s, ROOT) / "study.json").is_file()]
        if missing:
            print(f"not rendering docs/encoders.md yet: no results in {missing} ({time.perf_counter() - t0:.0f} s)")
            return
        print(f"wrote {write_encoders_doc(ROOT)} ({time.perf_counter() - t0:.0f} s in all)")
    except (ExtraNotInstalled, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
