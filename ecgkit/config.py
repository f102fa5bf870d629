"""Settings read from the environment: profile, data paths, cache and results folders.

Every setting has an environment variable so that `make reproduce`, the notebooks and the
tests agree without passing paths around:

- ``ECGKIT_PROFILE``: ``quick`` (default) or ``full``.
- ``ECGKIT_PTBXL``: a PTB-XL folder (full dataset or any subset); empty means the synthetic cohort.
- ``ECGKIT_CACHE``: where derived data, converted models and caches go (default ``~/.cache/ecgkit``).
- ``ECGKIT_RESULTS``: where notebooks record their results (default ``_build/results`` in the book's root).
"""
from __future__ import annotations

import os
from pathlib import Path

PROFILES = ("quick", "full")


def profile(value: str | None = None) -> str:
    """The active profile, checked against the known ones."""
    value = value or os.environ.get("ECGKIT_PROFILE") or "quick"
    if value not in PROFILES:
        raise ValueError(f"unknown profile {value!r}; choose one of {PROFILES}")
    return value


def cache_dir(*parts: str) -> Path:
    """A folder under the ecgkit cache, created on demand."""
    root = Path(os.environ.get("ECGKIT_CACHE") or Path.home() / ".cache" / "ecgkit")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_root(start: Path | None = None) -> Path:
    """The book's root (the folder holding ``_toc.yml``) above ``start``, else ``start``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").is_file() and (folder / "ecgkit").is_dir():
            return folder
    return start


def results_dir() -> Path:
    """``$ECGKIT_RESULTS``, else ``_build/results`` in the book's root."""
    env = os.environ.get("ECGKIT_RESULTS")
    path = Path(env) if env else project_root() / "_build" / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ptbxl_dir(value: str | os.PathLike | None = None) -> Path | None:
    """The PTB-XL folder to use, or None when there is none (use the synthetic cohort)."""
    value = value or os.environ.get("ECGKIT_PTBXL") or ""
    if not str(value):
        return None
    path = Path(value).expanduser()
    if not (path / "ptbxl_database.csv").is_file():
        raise FileNotFoundError(
            f"{path} is not a PTB-XL folder: ptbxl_database.csv is missing "
            "(set ECGKIT_PTBXL to the folder that holds ptbxl_database.csv and records100/records500)"
        )
    return path.resolve()
