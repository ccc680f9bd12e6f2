"""Optional dependencies (Ray, MLflow): imported only on the code path that uses them.

The core study runs with torch, numpy, pandas, scikit-learn and matplotlib alone; ``ray`` and
``mlflow`` are the package's extras ``ray`` and ``mlflow`` (``make test`` installs them). Both are
imported through :func:`import_extra`, which first sets the switches they need offline: Ray
writes an auth token file and warns unless ``RAY_AUTH_MODE=disabled``; MLflow phones home unless
``MLFLOW_DISABLE_TELEMETRY=true``, and retries an unreachable server for minutes unless its HTTP
retries are bounded. A value already set in the environment wins.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

OFFLINE_ENV = {
    "ray": {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
    "mlflow": {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"},
}


def import_extra(name: str) -> ModuleType:
    """Import the optional package ``name`` (a key of :data:`OFFLINE_ENV`) after setting its
    offline switches in ``os.environ``.

    Raises
    ------
    ImportError
        If it is not installed, with the command that installs it.
    """
    for key, value in OFFLINE_ENV[name].items():
        os.environ.setdefault(key, value)
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"{name} is an optional dependency and is not installed ({e}); install it with "
                          f"`pip install torch==2.13.0 'fusionstudy[{name}]'` (from a checkout: "
                          f"`.venv/bin/pip install torch==2.13.0 -e '.[{name}]'`)") from None
