"""Rebuild every report from stored results, without training.

    fusionstudy report --all                  # experiments.md, postmortem.md, the contrast report
    fusionstudy report results/clothing       # summary.csv, figures and experiments.md of one study

Nothing here trains or reads the raw dataset, and nothing imports torch: every number comes from
``runs.jsonl``, ``evals.jsonl``, ``predictions.jsonl``, ``split.json`` and ``study.json`` in a
results folder (:mod:`fusionstudy.records`), goes through :mod:`fusionstudy.analysis` and is rendered
by :mod:`fusionstudy.report.experiments` / :mod:`fusionstudy.report.postmortem` into Markdown, so the committed reports regenerate byte for byte.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from threadpoolctl import threadpool_limits

from fusionstudy.records import StudyResults, load_study, shared_loads, writer_lock
from fusionstudy.report.experiments import render_experiments, summary_of
from fusionstudy.report.postmortem import render_postmortem

log = logging.getLogger(__name__)

MAIN, CONTRAST = Path("results") / "clothing", Path("results") / "clothing_no_rating"
READ_ONLY_HINT = "a report writes summary.csv and figures/ into the results folder: copy it somewhere writable"


def write_reports(folder: Path, dest: Path | None = None, root: Path = Path(".")) -> Path:
    """Write ``summary.csv``, figures and ``experiments.md`` for a results folder.

    ``dest`` defaults to the repository's ``experiments.md`` for the default study
    (``results/clothing``) and to ``<folder>/experiments.md`` otherwise; ``root`` is the repository
    the report's commands are run from. Returns ``dest``.

    Raises
    ------
    FileNotFoundError
        If the folder holds no study (see ``records.load_study``).
    ValueError
        If it holds no run of the study's current config.
    """
    folder = Path(folder).resolve()
    res = load_study(folder)
    if not res.runs:
        raise ValueError(f"{folder}: no run records for the current config; nothing to report")
    with writer_lock(folder, "fusionstudy report", hint=READ_ONLY_HINT):
        if dest is None:
            dest = root / "experiments.md" if folder == (root / MAIN).resolve() else folder / "experiments.md"
        _write(res, dest, root)
    log.info(f"wrote {folder / 'summary.csv'} and {dest}")
    return dest


def _write(res: StudyResults, dest: Path, root: Path) -> None:
    """The body of :func:`write_reports`, its lock held (here or by the parent process)."""
    s = summary_of(res)
    s.to_csv(res.folder / "summary.csv", index=False, float_format="%.6f")
    dest.write_text(render_experiments(res, res.folder / "figures", dest.parent, s, root))


def _write_in_worker(folder: Path, dest: Path, root: Path) -> tuple[float, StudyResults]:
    """In a worker process of :func:`write_all` (which holds the lock): :func:`write_reports`'s
    files for ``folder``, then the study's forecasts (for the postmortem); returns the wall seconds
    and the study with its memo (``StudyResults.cache``), which the parent adopts instead of
    reading the folder again."""
    from fusionstudy.analysis.forecast import forecasts_by_situation

    t0 = time.perf_counter()
    with threadpool_limits(1):
        res = load_study(Path(folder).resolve())
        if not res.runs:
            raise ValueError(f"{folder}: no run records for the current config; nothing to report")
        _write(res, dest, root)
        forecasts_by_situation(res)
    return time.perf_counter() - t0, res


def write_all(root: Path = Path("."), workers: int = 1) -> None:
    """Rebuild everything from ``<root>/results``: ``experiments.md`` (default study), the
    ``experiments.md`` and ``summary.csv`` of every other stored benchmark study
    (:mod:`fusionstudy.report.benchmark`), ``postmortem.md`` (the headline per real-data study, the
    default first; Q2-Q5 from the default study; Q6 over every stored study, planted scenarios
    included) and ``docs/benchmark.md``.

    Each study is read once and its intervals computed once for all documents
    (:func:`records.shared_loads`). With ``workers > 1`` the studies' own reports are written by
    that many spawned processes, one study per task (the same files, byte for byte: every number
    is a pure function of the stored records); each study, with its memoised intervals and
    forecasts, comes back to this process for the postmortem and the benchmark page. The default
    is one process: on this shared 2-core machine two workers measured slower (72 s against 54 s,
    ``fusionstudy bench --report --workers N``), the studies' transfer and the lost sharing of
    resamples between studies outweighing a core that other processes were already using."""
    from fusionstudy.report.benchmark import PLANTED, benchmark_folders, render_benchmark

    main, contrast = root / MAIN, root / CONTRAST
    folders = [main] + ([contrast] if (contrast / "study.json").is_file() else [])
    others = [f for f in benchmark_folders(root) if f not in folders]
    folders += [f for f in others if f.name not in PLANTED]  # every real dataset's headline, the default first
    others = [f for f in others if f.name in PLANTED]  # planted scenarios: Q6 and the benchmark page only
    with ExitStack() as held:  # every study stays as it is until the postmortem is written
        adopt = held.enter_context(shared_loads())  # each study is read once (and its bootstrap replicates computed once)
        held.enter_context(threadpool_limits(1))  # small arrays: BLAS threads only contend for the cores
        for f in folders + others:
            held.enter_context(writer_lock(f, "fusionstudy report --all", hint=READ_ONLY_HINT))
        jobs = [(main, root / "experiments.md")] + [(f, f / "experiments.md") for f in folders[1:] + others]
        if workers > 1 and len(jobs) > 1:  # one study per task, largest (the default) first; results in order
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
                done = pool.map(_write_in_worker, *zip(*[(f, dest, root) for f, dest in jobs]))
                for (f, dest), (secs, res) in zip(jobs, done):
                    adopt(res)  # the postmortem below reuses its records and memoised intervals
                    log.info(f"wrote {f.resolve() / 'summary.csv'} and {dest}", extra={"seconds": secs})
        else:
            for f, dest in jobs:
                write_reports(f, dest, root)
        (root / "postmortem.md").write_text(render_postmortem(folders, root / "postmortem.md", extra=others))
        if len(folders + others) > 2:
            render_benchmark(folders + others, root / "docs" / "benchmark.md")
    log.info(f"wrote {root / 'postmortem.md'}")
