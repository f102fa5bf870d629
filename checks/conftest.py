"""`make check`: assert what the last `make reproduce` recorded (recommenders style).

The notebooks run once, in `make reproduce`; these checks read the results files they wrote
(``$ECGKIT_RESULTS``, default ``_build/results``) and assert the values with tolerances: golden
values of the seeded runs, so that an encoder that learns nothing or a pipeline that answers
"yes" to everything fails, not only ranges.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def results_folder() -> Path:
    return Path(os.environ.get("ECGKIT_RESULTS") or ROOT / "_build" / "results")


@pytest.fixture(scope="session")
def results():
    """``results("03_alfred_evaluation")`` → the recorded :class:`ecgkit.results.Results`."""
    from ecgkit.results import load_results

    folder = results_folder()

    def load(notebook: str):
        path = folder / f"{notebook}.json"
        if not path.is_file():
            pytest.fail(f"{path} is missing: run `make reproduce` first (it records the results)")
        return load_results(notebook, folder)

    return load


def on_real_ptbxl(r) -> bool:
    """Whether a notebook ran on the shared 500-record real PTB-XL subset (CI's data)."""
    return "ptbxl" in str(r.info.get("dataset", "")).lower() and "synthetic" not in str(
        r.info.get("dataset", "")).lower().split("+")[0]
