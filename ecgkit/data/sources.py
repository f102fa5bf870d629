"""Pick the data a chapter runs on: real PTB-XL when a path is set, else the synthetic cohort."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import ProfileSettings, ptbxl_dir
from .ptbxl import PTBXL, load_ptbxl
from .synthetic import synthetic_cohort


@dataclass(frozen=True)
class CohortSettings(ProfileSettings):
    """The synthetic cohort a chapter runs on when no PTB-XL folder is configured."""

    n_records: int = 600
    seed: int = 0

    PROFILES = {"full": dict(n_records=5000)}
    SMOKE = dict(n_records=160)   # make smoke


#: records in the synthetic cohort per profile
SYNTHETIC_RECORDS = {name: CohortSettings.for_profile(name).n_records for name in ("quick", "full")}


def load_real(path=None, rate: int = 100, **kwargs) -> PTBXL | None:
    """The real PTB-XL data at ``path`` (or ``$ECGKIT_PTBXL``), or None when none is configured."""
    where = ptbxl_dir(path)
    return None if where is None else load_ptbxl(where, rate, name="ptbxl", **kwargs)


def load_synthetic(n_records: int | None = None, seed: int = 0, rate: int = 100,
                   profile: str | None = None, **kwargs) -> PTBXL:
    """The synthetic cohort (generated once per size and seed, then cached)."""
    n_records = CohortSettings.for_profile(profile, n_records=n_records).n_records
    path = synthetic_cohort(n_records=n_records, seed=seed)
    return load_ptbxl(path, rate, name=f"synthetic-{n_records}-seed{seed}", **kwargs)


def load_cohort(path=None, rate: int = 100, seed: int = 0, n_synthetic: int | None = None,
                **kwargs) -> PTBXL:
    """Real PTB-XL when configured, else the synthetic cohort; ``dataset.name`` says which."""
    real = load_real(path, rate, **kwargs)
    return real if real is not None else load_synthetic(n_synthetic, seed, rate, **kwargs)


def describe_source(dataset: PTBXL) -> str:
    """A one-line description of a dataset for results files and tables."""
    kind = "synthetic cohort" if dataset.name.startswith("synthetic") else "PTB-XL (real)"
    return (f"{kind} {dataset.name}: {len(dataset)} records, {dataset.meta['patient_id'].nunique()} "
            f"patients, {dataset.fs:g} Hz, {len(dataset.skipped)} skipped")
