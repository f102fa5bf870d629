"""Data layer: readers for PTB-XL and other ECG datasets, caching and preprocessing.

Names are imported on first use (PEP 562), so that ``from ecgkit.data.errors import RecordError``
or a rules-only diagnosis does not pay for every reader's dependencies at start-up.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "load_cinc2021": "cinc2021", "load_cpsc2018": "cpsc2018", "ECGDataset": "dataset",
    "RecordError": "errors", "SkipReport": "errors", "load_mimic_ecg": "mimic_ecg",
    "LeadStandardizer": "preprocess", "ecg_bandpass": "preprocess", "ecg_fill_nan": "preprocess",
    "ecg_notch": "preprocess", "ecg_remove_baseline": "preprocess", "ecg_resample": "preprocess",
    "fixed_length": "preprocess", "PTBXL": "ptbxl", "SUPERCLASSES": "ptbxl", "fold_table": "ptbxl",
    "label_counts": "ptbxl", "load_ptbxl": "ptbxl", "ptbxl_labels": "ptbxl", "ptbxl_split": "ptbxl",
    "read_record": "records",
    "describe_source": "sources", "load_cohort": "sources", "load_real": "sources",
    "load_synthetic": "sources", "LEADS": "wfdb_io", "read_wfdb": "wfdb_io",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
