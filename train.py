"""This repository's study: the bundled clothing data, its no-``Rating`` contrast, then every report.

    python train.py                      # full profile -> results/clothing, results/clothing_no_rating,
                                         #   experiments.md, postmortem.md (what `make study` runs)
    python train.py --profile quick      # smoke run into results/*-quick/ (committed reports untouched)
    python train.py --set train.lr=0.001 # any `fusionstudy run` override, applied to both studies

The toolkit itself is the package ``fusionstudy`` (``pip install .``; command ``fusionstudy``).
This script only strings its library calls together for the studies whose reports are committed
here; for your own data use ``fusionstudy run --data my_data.toml`` or ``fusionstudy.run_study``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import fusionstudy
from fusionstudy.cli import INTERRUPTED, USER_ERRORS, override
from fusionstudy.records import failure_note
from fusionstudy.report.write import write_all, write_reports

ROOT = Path(__file__).resolve().parent
STUDIES = ("clothing", "clothing_no_rating")  # bundled specs: the default study, then its contrast


def main(argv: list[str] | None = None) -> None:
    """Run both studies (resuming stored runs), then rebuild the reports for the full profile."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="full", help="a bundled profile: full (default) or quick")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", type=override,
                    help="override (repeatable)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    suffix = "" if args.profile == "full" else f"-{args.profile}"
    try:
        failed = []
        for name in STUDIES:
            cfg = fusionstudy.load_config(name, args.profile, args.set)
            res = fusionstudy.run_study(cfg, out=ROOT / "results" / f"{name}{suffix}")
            failed += [f"{name}: {note}" for note in [failure_note(res.folder)] if note]
            if args.profile != "full" or args.set:  # a smoke or modified run: its own report, in its folder
                write_reports(res.folder, root=ROOT)
        if args.profile == "full" and not args.set:
            write_all(ROOT)
        if failed:  # everything is stored and reported; the exit code still says a planned run failed
            raise RuntimeError("; ".join(failed))
    except USER_ERRORS as e:
        raise SystemExit(f"train.py: error: {e}") from None
    except KeyboardInterrupt:
        print("interrupted: every finished run is stored; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None


if __name__ == "__main__":
    main()
