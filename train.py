"""Train and compare unimodal and fused models; the study's command-line entry point.

    python train.py                                  # full study on the default dataset
    python train.py --profile quick                  # smoke run: fewer seeds and epochs
    python train.py --data configs/my_data.toml      # your CSV/Parquet, described in one file
    python train.py --data path/to/folder --profile quick   # a Multimodal-Toolkit folder (train/val/test.csv
                                                     # + column_info.json); study name = folder name
    python predict.py --study results/my_data --model early_concat --input new.csv --output preds.csv
    python train.py --set train.lr=0.001 --set study.seeds=[0,1]
    python train.py --set train.executor="ray" --set ray.address="auto"   # train on a running Ray cluster
    python train.py --profile quick --mlflow         # track in MLflow: results/clothing-quick/mlflow.db
    python report.py results/clothing                # rebuild the reports without training

This file is the command line only: the protocol is in ``study.py``, the training loop in
``loop.py``, the reports in ``report.py``.
"""
from __future__ import annotations

import argparse

import torch

from config import load_config
from report import write_reports
from study import results_dir, run_study
from tracking import default_uri, log_summary


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the study (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="configs/clothing.toml",
                    help="dataset config (TOML), or a Multimodal-Toolkit folder: train.csv, val.csv (optional), "
                         "test.csv and column_info.json")
    ap.add_argument("--profile", default="full", help="study profile: configs/<profile>.toml")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one config value (repeatable)")
    ap.add_argument("--out", default=None, help="results folder (default results/<dataset.name>"
                                                "[-<profile>])")
    ap.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                    help="track runs in MLflow at URI (sets tracking.mlflow_uri; without URI: a SQLite file "
                         "mlflow.db in the results folder)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.data, args.profile, args.set)
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e))
    if args.mlflow is not None:
        cfg.tracking.mlflow_uri = args.mlflow or default_uri(results_dir(cfg, args.out))
    torch.set_num_threads(cfg.train.threads)
    try:
        folder = run_study(cfg, args.out)
        dest = write_reports(folder)
        log_summary(cfg.tracking, folder, [dest, folder / "summary.csv", folder / "study.json", folder / "figures"])
    # bad data or spec, a missing optional package, no Ray cluster: say what, no traceback
    except (ValueError, FileNotFoundError, RuntimeError, ImportError, ConnectionError) as e:
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit("interrupted: every finished run is stored; rerun the same command to resume") from None


if __name__ == "__main__":
    main()
