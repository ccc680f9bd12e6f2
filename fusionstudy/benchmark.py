"""``fusionstudy benchmark``: the study on every bundled dataset and every planted scenario, then one
cross-dataset page (``docs/benchmark.md``, :mod:`fusionstudy.report.benchmark`).

Resumable: each study is :func:`fusionstudy.api.run_study` into ``<root>/results/<study>``, which skips
stored runs; ``--report-only`` rebuilds the page from stored results without training.
"""
from __future__ import annotations

import logging
from pathlib import Path

from fusionstudy.config import Config, load_config

log = logging.getLogger(__name__)

# (dataset spec, profile): the default study and its contrast keep the full profile (already run by `make study`)
DATASETS = (("clothing", "full"), ("clothing_no_rating", "full"), ("faa_strikes", "benchmark"),
            ("lending_club", "benchmark"))
SCENARIO_ROWS, SCENARIO_SEED, SCENARIO_SPLITS = 6000, 7, 5


def scenario_study(name: str, folder: Path) -> Config:
    """The config of planted scenario ``name`` (``data.scenarios``) as the benchmark runs it: 6,000
    rows drawn with seed 7 (written once to ``folder/<name>.csv``), 3 seeds x 5 splits, no Part 5."""
    from fusionstudy.data.scenarios import scenario_config, two_modality_frame

    csv = folder / f"{name}.csv"
    if not csv.exists():
        folder.mkdir(parents=True, exist_ok=True)
        two_modality_frame(name, n=SCENARIO_ROWS, seed=SCENARIO_SEED).to_csv(csv, index=False)
    cfg = scenario_config(csv)
    cfg.dataset.name = f"scenario_{name}"
    cfg.study.splits = SCENARIO_SPLITS
    cfg.study.subsample_levels, cfg.study.corrupt_levels, cfg.study.truncate_levels = [], [], []
    return cfg


def run_benchmark(root: Path = Path("."), datasets=DATASETS, scenarios: bool = True, train: bool = True) -> Path:
    """Run (or resume) every benchmark study under ``root/results`` and write ``root/docs/benchmark.md``.

    Parameters
    ----------
    root : the repository (or any folder) holding ``results/`` and ``docs/``.
    datasets : ``(spec, profile)`` pairs.  scenarios : also the planted scenarios of
        :data:`fusionstudy.report.benchmark.PLANTED`.  train : ``False`` only rebuilds the page.

    Returns the page's path. Raises as :func:`fusionstudy.api.run_study`.
    """
    from fusionstudy.locations import cache_root
    from fusionstudy.report.benchmark import PLANTED, benchmark_folders, render_benchmark

    root = Path(root)
    if train:
        from fusionstudy.api import run_study

        jobs = [(spec, lambda spec=spec, profile=profile: load_config(spec, profile)) for spec, profile in datasets]
        jobs += [(f"scenario_{n}", lambda n=n: scenario_study(n, cache_root() / "scenarios"))
                 for n in ((p.removeprefix("scenario_") for p in PLANTED) if scenarios else ())]
        stored = [name for name, _ in jobs if (root / "results" / name / "study.json").is_file()]
        log.info(f"benchmark: {len(jobs)} studies under {root / 'results'}; {len(stored)} already stored (a rerun "
                 f"trains only their missing runs), {len(jobs) - len(stored)} to train from scratch (on 2 cores: the "
                 "default study ~30-45 min, FAA ~9, Lending Club ~4, each planted scenario ~1)")
        for i, (name, make) in enumerate(jobs, 1):
            log.info(f"benchmark: study {i} of {len(jobs)}: {name}")
            run_study(make(), out=root / "results" / name)
    folders = benchmark_folders(root)
    expected = [n for n, _ in datasets] + (list(PLANTED) if scenarios else [])
    if not folders:
        raise FileNotFoundError(f"no benchmark study under {root / 'results'} (looked for {', '.join(expected)}): run "
                                f"`fusionstudy benchmark --root {root}` first, or point --root at the folder holding results/")
    missing = [n for n in expected if n not in {f.name for f in folders}]
    if missing:
        log.warning(f"benchmark page without {len(missing)} of {len(expected)} studies (not stored): {', '.join(missing)}")
    dest = root / "docs" / "benchmark.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    render_benchmark(folders, dest)
    log.info(f"wrote {dest}")
    return dest
