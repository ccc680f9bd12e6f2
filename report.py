"""Rebuild every report from stored results, without training.

    python report.py                          # experiments.md, postmortem.md, the contrast report
    python report.py results/clothing         # summary.csv, figures and experiments.md of one study

Nothing here trains or reads the raw dataset, and nothing imports torch: every number comes from
``runs.jsonl``, ``evals.jsonl``, ``predictions.jsonl``, ``split.json`` and ``study.json`` in a
results folder (``records.py``), goes through ``analysis.py`` and is rendered by ``render.py`` /
``postmortem.py`` into Markdown, so the committed reports regenerate byte for byte.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from config import ROOT
from postmortem import render_postmortem
from records import load_study
from render import render_experiments, summary_of

MAIN, CONTRAST = Path("results") / "clothing", Path("results") / "clothing_no_rating"


def write_reports(folder: Path, dest: Path | None = None, root: Path = ROOT) -> Path:
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
    s = summary_of(res)
    s.to_csv(folder / "summary.csv", index=False, float_format="%.6f")
    if dest is None:
        dest = ROOT / "experiments.md" if folder == (ROOT / MAIN).resolve() else folder / "experiments.md"
    dest.write_text(render_experiments(res, folder / "figures", dest.parent, s, root))
    print(f"wrote {folder / 'summary.csv'} and {dest}")
    return dest


def write_all(root: Path = ROOT) -> None:
    """Rebuild everything from ``<root>/results``: ``experiments.md`` (default study), the contrast
    study's ``experiments.md`` and ``postmortem.md``."""
    main, contrast = root / MAIN, root / CONTRAST
    write_reports(main, root / "experiments.md", root)
    if (contrast / "study.json").is_file():
        write_reports(contrast, contrast / "experiments.md", root)
    folders = [main] + ([contrast] if (contrast / "study.json").is_file() else [])
    (root / "postmortem.md").write_text(render_postmortem(folders, root / "postmortem.md"))
    print(f"wrote {root / 'postmortem.md'}")


def main(argv: list[str] | None = None) -> None:
    """``python report.py`` rebuilds every report; ``python report.py FOLDER [--dest FILE]`` one study."""
    ap = argparse.ArgumentParser(description="Rebuild summary.csv, figures, experiments.md and postmortem.md "
                                             "from stored results (no training).")
    ap.add_argument("folder", nargs="?", default=None, help="one results folder (default: all reports)")
    ap.add_argument("--dest", default=None, help="where to write that folder's experiments.md")
    args = ap.parse_args(argv)
    try:
        if args.folder is None:
            write_all()
        else:
            write_reports(Path(args.folder), Path(args.dest) if args.dest else None)
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))


if __name__ == "__main__":
    main()
