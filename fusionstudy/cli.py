"""fusionstudy: is a second modality worth it? Train, stress and report unimodal vs fused models.

    fusionstudy run                                   # full study of the bundled clothing data -> ./results/clothing
    fusionstudy run --profile quick                   # smoke run: fewer seeds and epochs
    fusionstudy run --data my_data.toml               # your CSV/Parquet, described in one TOML file
    fusionstudy run --data path/to/folder             # a Multimodal-Toolkit folder (train/val/test.csv + column_info.json)
    fusionstudy run --set train.lr=0.001 --set study.seeds=[0,1]
    fusionstudy run --set train.executor="ray" --set ray.address="auto"
    fusionstudy forecast --data lending_club          # before fusing: forecast gain and P(helps), no fused model
    fusionstudy benchmark                             # every bundled dataset + planted scenarios -> docs/benchmark.md
    fusionstudy run --profile quick --mlflow          # track in MLflow: <out>/mlflow.db
    fusionstudy report results/clothing               # rebuild one study's summary, figures, experiments.md
    fusionstudy report --all                          # every report of this folder's results/ (the repository's)
    fusionstudy predict --study results/x --model early_concat --input new.csv --output preds.csv
    fusionstudy bench --from results/clothing         # wall seconds, runs/s, samples/s per part
    fusionstudy bench --report                        # seconds to regenerate each report (on a copy of results/)
    fusionstudy bench --stack early_concat            # a model's seeds one by one vs as one stack
    fusionstudy docs                                  # regenerate the parameter table of docs/fusion.md
    fusionstudy list                                  # bundled profiles and dataset specs

Errors are one line on stderr: exit code 2 for a usage error, 1 for a data or study error (also a
study in which a planned run failed: its results and report are written, the line says what failed),
130 when interrupted (Ctrl-C or SIGTERM; every finished run is stored, the same command resumes).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from fusionstudy.config import load_config, parse_override

log = logging.getLogger("fusionstudy")
# what a study or a command may raise for a user's mistake: bad data or spec, a missing optional
# package, no Ray cluster, an unwritable place; one line, no traceback
USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, ImportError, ConnectionError, OSError)


def failure_note(folder: Path) -> str:
    """One line on the runs that failed in the study's last invocation (``study.json``'s
    ``runs_failed``) and the most common reason, from ``failures.jsonl``; ``""`` if none failed."""
    meta = json.loads((Path(folder) / "study.json").read_text())
    if not meta.get("runs_failed"):
        return ""
    from fusionstudy.records import RunStore

    store = RunStore(folder)
    done = store.done_keys()
    fails = {f.run_key: f for f in store.failures() if f.config_fp == meta["config_fp"] and f.run_key not in done}
    why, n_why = Counter(f"{f.error_type}: {f.message}" for f in fails.values()).most_common(1)[0]
    return (f"{meta['runs_failed']} of {meta['runs_planned']} planned run(s) failed ({n_why} with {why}); "
            f"see {store.failures_path}; fix the cause and rerun the same command to retry them")


def _run(args: argparse.Namespace) -> None:
    from fusionstudy.api import run_study  # the training stack loads after the folder's lock is taken

    cfg = load_config(args.data, args.profile, args.set)
    if args.mlflow is not None:
        from fusionstudy.study.runner import results_dir
        from fusionstudy.study.tracking import default_uri
        cfg.tracking.mlflow_uri = args.mlflow or default_uri(results_dir(cfg, args.out))
    res = run_study(cfg, out=args.out)
    if not args.no_report:
        from fusionstudy.report.write import write_reports
        from fusionstudy.study.tracking import log_summary
        dest = write_reports(res.folder, root=Path(args.root))
        log_summary(cfg.tracking, res.folder, [dest, res.folder / "summary.csv", res.folder / "study.json",
                                               res.folder / "figures"])
    failed = failure_note(res.folder)
    if failed:  # the study and its report are stored; the command still says it did not do everything
        raise RuntimeError(failed)


def _forecast(args: argparse.Namespace) -> None:
    from fusionstudy.api import forecast

    cfg = load_config(args.data, args.profile, args.set)
    table = forecast(cfg, out=args.out)
    cells = table.assign(**{c: table[c].map("{:+.4f}".format) for c in ("gain", "lo", "hi")},
                         p_helps=table.p_helps.map("{:.2f}".format))
    print(cells.drop(columns=[c for c in table if c.startswith("auc_")]).to_string(index=False))
    print("\ngain: forecast ROC-AUC of a cross-fitted stack of the two unimodal models minus the better one "
          "(validation rows); lo/hi: its 95% interval (pooled over splits); verdict: the study's rule at margin "
          f"{cfg.report.margin}; p_helps: the chance a study with this noise calls the gain 'helps' (its power), "
          "not the chance that fusion helps. Rows other than 'clean' are the Part 5 weakenings "
          "(kind:modality:level; none: --set study.subsample_levels=[] --set study.corrupt_levels=[] "
          f"--set study.truncate_levels=[]). Stored in {Path(args.out) if args.out else 'the study folder'}/forecasts.jsonl.")
    clean = table[table.situation == "clean"].iloc[0]
    print(f"\nforecast (clean, {clean.splits} split(s)): fusing gains {clean.gain:+.4f} ROC-AUC "
          f"[{clean.lo:+.4f}, {clean.hi:+.4f}] over the better modality ({clean.better}): {clean.verdict} at margin "
          f"{cfg.report.margin}; P(a study calls it helps) = {clean.p_helps:.2f}")


def _benchmark(args: argparse.Namespace) -> None:
    from fusionstudy.benchmark import run_benchmark

    print(run_benchmark(Path(args.root), scenarios=not args.no_scenarios, train=not args.report_only))


def _report(args: argparse.Namespace) -> None:
    from fusionstudy.report.write import write_all, write_reports

    if args.all or args.folder is None:
        write_all(Path(args.root), args.workers)
    else:
        write_reports(Path(args.folder), Path(args.dest) if args.dest else None, Path(args.root))


# files `fusionstudy run` and `report` keep in a results folder (besides its .json/.jsonl records)
STUDY_FILES = ("summary.csv", "experiments.md")


def _predict(args: argparse.Namespace) -> None:
    import torch

    from fusionstudy.data.reading import read_table
    from fusionstudy.locations import writable_folder
    from fusionstudy.scoring import needed_columns, score
    from fusionstudy.study.saving import load_preprocessing

    saved = load_preprocessing(Path(args.study))
    torch.set_num_threads(saved.cfg.train.threads)
    ds = saved.cfg.dataset
    ds = replace(ds, encoding=ds.encoding if args.encoding is None else args.encoding,
                 delimiter=ds.delimiter if args.delimiter is None else args.delimiter)
    path, dest = Path(args.input), Path(args.output)
    if not path.is_file():
        raise FileNotFoundError(f"--input {args.input}: no such file")
    if dest.is_dir():
        raise ValueError(f"--output {dest}: is a folder; name the CSV file to write, e.g. {dest / 'preds.csv'}")
    study = Path(args.study).resolve()
    if dest.resolve().is_relative_to(study) and (dest.suffix in (".jsonl", ".json") or dest.name in STUDY_FILES
                                                  or dest.resolve().is_relative_to(study / "models")):
        raise ValueError(f"--output {dest}: would overwrite the study's own files; write the predictions "
                         f"elsewhere (e.g. {Path('predictions') / (args.model + '.csv')})")
    writable_folder(dest.parent, hint="pass an --output in a writable folder")  # before any scoring
    rows = read_table(path, ds, needed_columns(saved, args.model), keys={"encoding": "--encoding",
                                                                         "delimiter": "--delimiter"})
    out = score(saved, args.model, rows, args.seed, where=str(path))
    out.to_csv(dest, index=False)
    log.info(f"wrote {len(out)} predictions of {args.model} to {args.output}")


def _bench(args: argparse.Namespace) -> None:
    from fusionstudy.bench import bench, bench_reports

    if args.report is not None:
        print(bench_reports(Path(args.report), args.workers).to_markdown(index=False))
        return
    print(bench(args.data, args.profile, args.set, args.folder, args.baseline, args.executors, args.stack))


def _docs(args: argparse.Namespace) -> None:
    from fusionstudy.models.fusion import render_fusion_docs

    doc = Path(args.docs) / "fusion.md"
    if not doc.is_file():
        raise FileNotFoundError(f"{doc}: no such file (run from the repository root, or pass --docs FOLDER)")
    doc.write_text(render_fusion_docs(doc.read_text()))
    log.info(f"wrote the parameter table of {doc}")


def _list(args: argparse.Namespace) -> None:
    from fusionstudy.data.bundled import BUNDLED, PREFIX
    from fusionstudy.locations import cache_root, list_datasets, list_profiles

    print(f"profiles: {', '.join(list_profiles())}\nbundled datasets: {', '.join(list_datasets())}\n"
          f"bundled sources: {', '.join(PREFIX + n for n in BUNDLED)}\ncache: {cache_root()}")


def override(text: str) -> str:
    """An argparse ``type`` for ``--set``: ``text`` if it looks like ``section.key=value`` (kept as
    text; values are parsed and checked when the config loads), else an ``ArgumentTypeError`` (a
    usage error: exit code 2)."""
    try:
        parse_override(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="clothing", help="a bundled dataset name (see `fusionstudy list`), a TOML "
                   "spec, or a Multimodal-Toolkit folder (train.csv, val.csv (optional), test.csv, column_info.json)")
    p.add_argument("--profile", default="full", help="a bundled profile (full, quick, ...) or a TOML file")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", type=override,
                   help="override one config value (repeatable)")


class _Plain(logging.Formatter):
    """Progress as bare lines; warnings prefixed ``warning:``."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"warning: {msg}" if record.levelno >= logging.WARNING else msg


def parser() -> argparse.ArgumentParser:
    """The ``fusionstudy`` argument parser with its subcommands (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="fusionstudy", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("run", help="train and evaluate a study, then write its report")
    _study_options(p)
    p.add_argument("--out", default=None, help="results folder (default ./results/<dataset.name>[-<profile>])")
    p.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                   help="track runs in MLflow at URI (without URI: a SQLite file mlflow.db in the results folder)")
    p.add_argument("--no-report", action="store_true", help="train only; `fusionstudy report` writes it later")
    p.add_argument("--root", default=".", help="the folder the report's commands are run from (default: here)")
    p.set_defaults(func=_run)
    p = sub.add_parser("forecast", help="before training any fusion: forecast its gain from unimodal models")
    _study_options(p)
    p.add_argument("--out", default=None, help="results folder (default ./results/<dataset.name>[-<profile>])")
    p.set_defaults(func=_forecast)
    p = sub.add_parser("benchmark", help="every bundled dataset and planted scenario, then docs/benchmark.md")
    p.add_argument("--root", default=".", help="the folder holding results/ and docs/ (default: here)")
    p.add_argument("--report-only", action="store_true", help="rebuild docs/benchmark.md from stored results")
    p.add_argument("--no-scenarios", action="store_true", help="leave out the planted scenarios")
    p.set_defaults(func=_benchmark)
    p = sub.add_parser("report", help="rebuild reports from stored results (no training, no torch)")
    p.add_argument("folder", nargs="?", default=None, help="one results folder (default: --all)")
    p.add_argument("--dest", default=None, help="where to write that folder's experiments.md")
    p.add_argument("--all", action="store_true", help="experiments.md, postmortem.md and the contrast report of "
                   "ROOT/results/clothing{,_no_rating}")
    p.add_argument("--root", default=".", help="the repository whose reports --all rebuilds (default: here)")
    p.add_argument("--workers", type=int, default=1, help="processes writing the studies' reports for --all (default: 1)")
    p.set_defaults(func=_report)
    p = sub.add_parser("predict", help="score new rows with a study's saved models")
    p.add_argument("--study", required=True, help="the study's results folder, e.g. results/my_study")
    p.add_argument("--model", required=True, help="a trained model of Parts 1, 2 or 4, e.g. early_concat")
    p.add_argument("--input", required=True, help="rows to score: .csv, .tsv or .parquet")
    p.add_argument("--output", required=True, help="where to write the predictions (CSV)")
    p.add_argument("--seed", type=int, default=None, help="use one seed's model (default: mean over seeds)")
    p.add_argument("--encoding", default=None, help="the input's text encoding (default: the study's)")
    p.add_argument("--delimiter", default=None, help="the input's delimiter (default: the study's, else sniffed)")
    p.set_defaults(func=_predict)
    p = sub.add_parser("bench", help="time a study per part (or print a stored study's figures)")
    _study_options(p)
    p.add_argument("--from", dest="folder", default=None, help="print a stored study's figures instead of running")
    p.add_argument("--baseline", default="auto", help="a stored baseline's name, 'none', or 'auto' (default: the "
                   "newest stored baseline of the same study, if any)")
    p.add_argument("--executors", action="store_true", help="time one small study under each executor")
    p.add_argument("--stack", default=None, metavar="MODEL",
                   help="train MODEL's study.seeds one by one and as one stack, side by side")
    p.add_argument("--report", nargs="?", const=".", default=None, metavar="ROOT",
                   help="time `report --all` on a copy of ROOT/results (default ROOT: here); no training")
    p.add_argument("--workers", type=int, default=1, help="with --report: processes writing the studies' reports")
    p.set_defaults(func=_bench)
    p = sub.add_parser("docs", help="regenerate the generated parameter table of docs/fusion.md")
    p.add_argument("--docs", default="docs", help="the docs folder (default: ./docs)")
    p.set_defaults(func=_docs)
    p = sub.add_parser("list", help="bundled profiles, dataset specs and the cache folder")
    p.set_defaults(func=_list)
    return ap


INTERRUPTED = 130  # exit code of an interrupted command: 128 + SIGINT, as a shell reports Ctrl-C


def _terminated(signum, frame) -> None:
    """SIGTERM handler: raise KeyboardInterrupt in the main thread, so the study's ``finally``
    blocks shut its worker pool down (the run in progress finishes or is cancelled; every finished
    run is already stored) instead of leaving worker processes behind."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fusionstudy`` console script."""
    args = parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Plain())
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler])
    logging.getLogger("fusionstudy").setLevel(logging.WARNING if args.quiet else logging.INFO)
    signal.signal(signal.SIGTERM, _terminated)  # `kill PID` stops the workers too, as Ctrl-C does
    try:
        args.func(args)
    except USER_ERRORS as e:
        raise SystemExit(f"fusionstudy {args.command}: error: {e}") from None  # exit code 1
    except KeyboardInterrupt:
        print("interrupted: every finished run is stored; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None


if __name__ == "__main__":
    main()
