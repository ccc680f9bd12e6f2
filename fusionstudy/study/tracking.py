"""MLflow tracking of a study: off unless ``[tracking] mlflow_uri`` (or ``train.py --mlflow``) is set.

One MLflow experiment per study (named after its results folder unless ``tracking.experiment``
says otherwise); one MLflow run per stored run record — each trained model and seed, and each
reference and post-hoc ensemble — logged by the driver right after the record store has it
(:class:`TrackedStore`), so the store stays the single source of truth. A run holds the resolved
config as params, ``val_*`` / ``test_*`` metrics, the per-epoch curves as ``curve_*`` step
metrics (step = epoch), parameter counts (``params_*``) and timings as metrics, and the run key
and what the run is as tags. A summary run holds the study's report, ``summary.csv``,
``study.json`` and figures as artifacts (:func:`log_summary`).

Tracking never blocks or fails a study: the first error (an unreachable server, a missing
``mlflow`` package) prints one warning and tracking stops for the rest of the process.

    fusionstudy run --profile quick --mlflow      # -> results/clothing-quick/mlflow.db
    .venv/bin/mlflow ui --backend-store-uri sqlite:///results/clothing-quick/mlflow.db
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from fusionstudy.config import TrackingConfig
from fusionstudy.extras import import_extra
from fusionstudy.records import FailureRecord, RunRecord, RunStore

log = logging.getLogger(__name__)

_WARNED: set[str] = set()  # URIs already warned about: one warning per tracker, however often it fails
_PARAMS, _METRICS = 100, 1000  # MLflow's limits per log_batch call
TIMINGS = ("train_seconds", "samples_per_s", "best_epoch", "epochs_run")


def default_uri(folder: Path) -> str:
    """The tracking URI when only ``--mlflow`` is given: a SQLite file ``mlflow.db`` in the study folder."""
    return f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"


def _warn(uri: str, err: BaseException) -> None:
    if uri not in _WARNED:
        _WARNED.add(uri)
        log.warning(f"MLflow tracking at {uri} is off for this study ({type(err).__name__}: "
              f"{str(err).strip().splitlines()[-1][:300] if str(err).strip() else ''}); the study goes on")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _flat(tree: dict, prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.003}}`` -> ``{"train.lr": "0.003"}`` (lists as JSON)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


class Tracker:
    """The MLflow client of one study; every method is a no-op after the first error."""

    def __init__(self, mlflow, client, experiment_id: str, uri: str):
        self._mlflow, self._client, self._exp, self.uri = mlflow, client, experiment_id, uri
        self.broken = False

    @classmethod
    def open(cls, tc: TrackingConfig, folder: Path) -> Tracker | None:
        """The study's tracker (creating its experiment), or ``None`` when tracking is off or the
        tracker cannot be reached (one warning). Local stores keep artifacts in ``<folder>/mlartifacts``."""
        if not tc.mlflow_uri:
            return None
        try:
            mlflow = import_extra("mlflow")
            client = mlflow.MlflowClient(tracking_uri=tc.mlflow_uri)
            name = tc.experiment or Path(folder).resolve().name
            exp = client.get_experiment_by_name(name)
            local = tc.mlflow_uri.startswith(("sqlite:", "file:")) or "://" not in tc.mlflow_uri
            exp_id = exp.experiment_id if exp else client.create_experiment(
                name, artifact_location=(Path(folder).resolve() / "mlartifacts").as_uri() if local else None)
        except Exception as e:  # noqa: BLE001 — tracking must never fail the study
            _warn(tc.mlflow_uri, e)
            return None
        return cls(mlflow, client, exp_id, tc.mlflow_uri)

    def _safely(self, fn, *args) -> None:
        if self.broken:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            self.broken = True
            _warn(self.uri, e)

    def _run(self, name: str, tags: dict, metrics: list, params: dict, status: str = "FINISHED") -> str:
        E, now = self._mlflow.entities, int(time.time() * 1000)
        tags = {k: str(v) for k, v in tags.items()}
        run_id = self._client.create_run(self._exp, run_name=name, tags=tags).info.run_id
        ms = [E.Metric(k, float(v), now, step) for k, v, step in metrics]
        ps = [E.Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(ps), _PARAMS):
            self._client.log_batch(run_id, params=ps[i:i + _PARAMS])
        for i in range(0, len(ms), _METRICS):
            self._client.log_batch(run_id, metrics=ms[i:i + _METRICS])
        self._client.set_terminated(run_id, status=status)
        return run_id

    def log_run(self, rec: RunRecord) -> None:
        """One MLflow run for a stored run record (see the module docstring for what it holds)."""
        self._safely(self._log_run, rec)

    def _log_run(self, rec: RunRecord) -> None:
        tags = {"run_key": rec.run_key, "model": rec.model, "kind": rec.kind, "fusion": rec.fusion,
                "modalities": ",".join(rec.modalities), "part": rec.part, "seed": rec.seed, "study": rec.study,
                "training": rec.training.regime, "weaken": rec.training.tag, "config_fp": rec.config_fp, "git": rec.git}
        metrics = [(f"{split}_{k}", v, 0) for split, m in rec.metrics.items() for k, v in m.items() if _number(v)]
        metrics += [(f"params_{k}", v, 0) for k, v in rec.params.items() if _number(v)]
        metrics += [(k, getattr(rec, k), 0) for k in TIMINGS if _number(getattr(rec, k))]
        epochs = rec.curves.get("epoch") or list(range(1, 1 + max(map(len, rec.curves.values()), default=0)))
        metrics += [(f"curve_{k}", v, int(epochs[i])) for k, vals in rec.curves.items() if k != "epoch"
                    for i, v in enumerate(vals) if _number(v) and i < len(epochs)]
        self._run(f"{rec.model} seed {rec.seed}", tags, metrics, _flat(rec.config))

    def log_failure(self, f: FailureRecord) -> None:
        """A FAILED MLflow run for a run that raised, with its error as tags."""
        self._safely(lambda: self._run(f"{f.model} seed {f.seed}", {
            "run_key": f.run_key, "model": f.model, "seed": f.seed, "part": f.part, "config_fp": f.config_fp,
            "error_type": f.error_type, "error": f.message, "attempts": f.attempts}, [], {}, status="FAILED"))

    def log_summary(self, folder: Path, files: list[Path]) -> None:
        """A ``summary`` run: ``study.json``'s wall seconds and run counts as metrics, ``files``
        (reports, tables, figure folders; missing ones skipped) as artifacts."""
        self._safely(self._log_summary, Path(folder), files)

    def _log_summary(self, folder: Path, files: list[Path]) -> None:
        meta = json.loads((folder / "study.json").read_text()) if (folder / "study.json").is_file() else {}
        metrics = [(k, meta[k], 0) for k in ("wall_seconds", "runs_trained", "runs_planned") if _number(meta.get(k))]
        run_id = self._run("summary", {"kind": "summary", "study": meta.get("study", folder.name),
                                       "config_fp": meta.get("config_fp", "")}, metrics, {})
        for f in map(Path, files):
            if f.is_dir():
                self._client.log_artifacts(run_id, str(f), artifact_path=f.name)
            elif f.is_file():
                self._client.log_artifact(run_id, str(f))


class TrackedStore(RunStore):
    """A :class:`RunStore` that logs each record to MLflow after storing it (the store first:
    a tracker that fails loses nothing)."""

    def __init__(self, folder: Path, tracker: Tracker):
        super().__init__(folder)
        self.tracker = tracker

    def append(self, record: RunRecord, preds=None, evals=None) -> None:
        """Store the run (``RunStore.append``), then log it (:meth:`Tracker.log_run`)."""
        super().append(record, preds, evals)
        self.tracker.log_run(record)

    def fail(self, failure: FailureRecord) -> None:
        """Store the failure (``RunStore.fail``), then log it (:meth:`Tracker.log_failure`)."""
        super().fail(failure)
        self.tracker.log_failure(failure)


def store_for(folder: Path, tc: TrackingConfig) -> RunStore:
    """The study's record store: tracked in MLflow when ``tc.mlflow_uri`` is set and reachable."""
    tracker = Tracker.open(tc, folder)
    return RunStore(folder) if tracker is None else TrackedStore(folder, tracker)


def log_summary(tc: TrackingConfig, folder: Path, files: list[Path]) -> None:
    """Log the study's summary run (:meth:`Tracker.log_summary`) when tracking is on."""
    tracker = Tracker.open(tc, folder)
    if tracker is not None:
        tracker.log_summary(folder, files)
