"""fusionstudy: is a second modality worth it? Train unimodal and fused models on two-modality
data, stress them, and answer with numbers.

Library face (loaded lazily, so ``import fusionstudy`` and reading results never import torch)::

    load_config(dataset="clothing", profile="full", overrides=None) -> Config
    run_study(cfg, data=None, out=None, report=False) -> StudyResults
    load_study(folder) -> StudyResults
    predict(study_folder, model, rows, seed=None) -> DataFrame
    forecast(cfg, data=None, out=None) -> DataFrame   # before fusing: forecast gain, interval, P(helps)
    list_profiles(), list_datasets()

Layers (imports point one way): ``config`` -> ``data`` -> ``models`` -> ``training`` -> ``study``
-> ``records`` -> ``analysis`` -> ``report``; ``cli`` is the ``fusionstudy`` command on top.
"""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fusionstudy")
except PackageNotFoundError:  # run from a checkout without installing
    __version__ = "0+unknown"

_API = {"load_config": "fusionstudy.config", "run_study": "fusionstudy.api", "load_study": "fusionstudy.records",
        "predict": "fusionstudy.api", "forecast": "fusionstudy.api", "list_profiles": "fusionstudy.locations",
        "list_datasets": "fusionstudy.locations", "Config": "fusionstudy.config",
        "StudyResults": "fusionstudy.records"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'fusionstudy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
