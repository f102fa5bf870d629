"""Data layer: readers for PTB-XL and other ECG datasets, caching and preprocessing."""
from .cinc2021 import load_cinc2021
from .cpsc2018 import load_cpsc2018
from .dataset import ECGDataset
from .errors import RecordError, SkipReport
from .mimic_ecg import load_mimic_ecg
from .preprocess import (LeadStandardizer, ecg_bandpass, ecg_fill_nan, ecg_notch, ecg_remove_baseline,
                         ecg_resample, fixed_length)
from .ptbxl import PTBXL, SUPERCLASSES, fold_table, label_counts, load_ptbxl, ptbxl_labels, ptbxl_split
from .sources import describe_source, load_cohort, load_real, load_synthetic
from .wfdb_io import LEADS, read_wfdb

__all__ = ["ECGDataset", "RecordError", "SkipReport", "LEADS", "read_wfdb", "PTBXL", "SUPERCLASSES",
           "load_ptbxl", "ptbxl_labels", "ptbxl_split", "label_counts", "fold_table",
           "load_cohort", "load_real", "load_synthetic", "describe_source",
           "load_cpsc2018", "load_cinc2021", "load_mimic_ecg",
           "ecg_bandpass", "ecg_remove_baseline", "ecg_notch", "ecg_resample", "fixed_length",
           "ecg_fill_nan", "LeadStandardizer"]
