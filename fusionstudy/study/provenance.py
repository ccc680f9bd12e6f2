"""Provenance of a record: the code's git hash and the one factory every run record goes through."""
from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import numpy as np

from fusionstudy.config import Config
from fusionstudy.data.prepare import SplitData
from fusionstudy.metrics import best_f1_threshold, classification_metrics, f1_at_threshold
from fusionstudy.records import RunRecord

RULE_FILES = ("fusionstudy/analysis/pooled.py", "fusionstudy/analysis/verdicts.py", "fusionstudy/config.py")
CODE: dict = {}  # {"git": hash}: the code a study started with, set once per process by the runner


def git_hash() -> str:
    """``git rev-parse HEAD`` of the toolkit (with ``+dirty`` for local changes), or ``unknown``."""
    try:
        here = Path(__file__).resolve().parent  # an installed package outside a checkout gives "unknown"
        h = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                           text=True, check=True).stdout.strip()
        # results/ and the reports are what the study writes, not code: they do not make the code "dirty"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":!/results",
                                ":!/experiments.md", ":!/postmortem.md"],
                               cwd=here, capture_output=True, text=True).stdout.strip()
        return h + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def rules_record(cfg: Config, started: str) -> dict:
    """The decision rule a study is judged by and when it was fixed: the ``[report]`` values, the
    last commit (hash, ISO date) that changed the rule's code (:data:`RULE_FILES`) as git knew it
    when the study started (``"unknown"`` outside a checkout), and the study's start time."""
    here = Path(__file__).resolve().parent
    try:
        last = subprocess.run(["git", "log", "-1", "--format=%h %cI", "--", *(f":/{f}" for f in RULE_FILES)],
                              cwd=here, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        last = []
    return {"margin": cfg.report.margin, "primary": cfg.report.primary, "history": cfg.report.history,
            "rule_commit": last[0] if len(last) == 2 else "unknown", "rule_committed": last[1] if len(last) == 2 else "",
            "study_started": started, "code": CODE.get("git") or git_hash()}


def make_record(cfg: Config, key: str, model: str, kind: str, modalities, fusion: str, part: str, seed: int,
                probas: dict[str, np.ndarray], splits: dict[str, SplitData], **fields) -> RunRecord:
    """The one record factory: identity, config, provenance, and val/test metrics of ``probas``."""
    metrics = {s: classification_metrics(splits[s].y, p) for s, p in probas.items()}
    if probas["val"].shape[1] == 2:  # F1 at the threshold that maximises F1 on val (never chosen on test)
        thr = best_f1_threshold(splits["val"].y, probas["val"][:, 1])
        for s, p in probas.items():
            metrics[s].update(f1_val_threshold=f1_at_threshold(splits[s].y, p[:, 1], thr), val_threshold=thr)
    return RunRecord(run_key=key, study=cfg.dataset.name, model=model, kind=kind, modalities=sorted(modalities),
                     fusion=fusion, part=part, seed=seed, config_fp=cfg.fingerprint(), config=cfg.to_dict(),
                     git=CODE.get("git") or git_hash(),
                     time=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), metrics=metrics, **fields)
