"""Where fusionstudy reads its bundled files and writes its caches; nothing depends on a checkout.

- Profiles (``full``, ``quick``, ``encoders``) and bundled dataset specs (``clothing``,
  ``clothing_no_rating``) ship as package data, read through :mod:`importlib.resources`.
- Downloaded datasets and sentence embeddings are cached under :func:`cache_root`:
  ``$FUSIONSTUDY_CACHE`` if set, else ``$XDG_CACHE_HOME/fusionstudy``, else ``~/.cache/fusionstudy``.
- Results go where the caller says; the default is ``./results`` (relative to the working directory).
"""
from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

CACHE_ENV = "FUSIONSTUDY_CACHE"
PACKAGE = Path(str(resources.files("fusionstudy")))
PROFILES = PACKAGE / "profiles"
DATASETS = PACKAGE / "datasets"


def cache_root() -> Path:
    """The cache folder for downloaded data and embeddings (see the module docstring); not created here."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fusionstudy"


def default_results() -> Path:
    """``./results`` under the current working directory: where studies land unless told otherwise."""
    return Path.cwd() / "results"


def writable_folder(folder: str | Path, hint: str) -> Path:
    """``folder``, created (with its parents) if absent, once a file could be written into it.

    Raises
    ------
    ValueError
        If it cannot be created or written (read-only, a file in the way, no permission), naming the
        folder, the reason and ``hint`` (what to do instead, e.g. ``"pass a writable --out"``).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"{folder}: cannot write there ({e.strerror or type(e).__name__}); {hint}") from None
    return folder


def list_profiles() -> list[str]:
    """Names of the bundled study profiles (``full``, ``quick``, ...), sorted."""
    return sorted(p.stem for p in PROFILES.glob("*.toml"))


def list_datasets() -> list[str]:
    """Names of the bundled dataset specs (``clothing``, ``clothing_no_rating``, ...), sorted."""
    return sorted(p.stem for p in DATASETS.glob("*.toml"))


def resolve_spec(dataset: str | Path) -> Path:
    """A dataset argument as a path: an existing file or folder as given, else a bundled spec's
    name (``"clothing"`` -> the packaged ``datasets/clothing.toml``).

    Raises
    ------
    FileNotFoundError
        If it is neither, listing the bundled names.
    """
    path = Path(dataset)
    if path.exists():
        return path
    if isinstance(dataset, str) and (DATASETS / f"{dataset}.toml").is_file():
        return DATASETS / f"{dataset}.toml"
    raise FileNotFoundError(f"dataset {str(dataset)!r} is neither a file, a folder nor a bundled spec; "
                            f"bundled: {list_datasets()}")


def resolve_profile(profile: str | Path) -> Path:
    """A profile argument as a path: a bundled profile's name (``"full"``, ``"quick"``) or a TOML file.

    Raises
    ------
    FileNotFoundError
        If it is neither, listing the bundled names.
    """
    if (PROFILES / f"{profile}.toml").is_file():
        return PROFILES / f"{profile}.toml"
    if (DATASETS / f"{profile}.toml").is_file():  # load_config says it is a dataset, not a profile
        return DATASETS / f"{profile}.toml"
    if str(profile).endswith(".toml") and Path(profile).is_file():
        return Path(profile)
    raise FileNotFoundError(f"profile {profile!r} is neither a bundled profile ({', '.join(list_profiles())}) nor a .toml file "
                            "that exists")
