"""Data layer: readers for PTB-XL and other ECG datasets, caching and preprocessing."""
from .dataset import ECGDataset
from .errors import RecordError, SkipReport
from .wfdb_io import LEADS, read_wfdb

__all__ = ["ECGDataset", "RecordError", "SkipReport", "LEADS", "read_wfdb"]
