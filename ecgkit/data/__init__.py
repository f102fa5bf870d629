"""Data layer: readers for PTB-XL and other ECG datasets, caching and preprocessing."""
from .dataset import ECGDataset
from .errors import RecordError, SkipReport
from .ptbxl import PTBXL, SUPERCLASSES, fold_table, label_counts, load_ptbxl, ptbxl_labels, ptbxl_split
from .sources import describe_source, load_cohort, load_real, load_synthetic
from .wfdb_io import LEADS, read_wfdb

__all__ = ["ECGDataset", "RecordError", "SkipReport", "LEADS", "read_wfdb", "PTBXL", "SUPERCLASSES",
           "load_ptbxl", "ptbxl_labels", "ptbxl_split", "label_counts", "fold_table",
           "load_cohort", "load_real", "load_synthetic", "describe_source"]
