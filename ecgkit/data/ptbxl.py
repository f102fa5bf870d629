"""PTB-XL (full dataset or any subset, 100 or 500 Hz) and everything written in its layout.

Signals come as float32 mV arrays (records × samples × 12, standard lead order) through the
memory-mapped cache; labels come in the views of the PTB-XL benchmark (Strodthoff et al. 2021)
and of ALFRED (superdiagnostic with likelihood ≥ 50); the split is the standard one
(train folds 1–8, validation 9, test 10).
"""
from __future__ import annotations

import ast
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..hashing import file_sha256
from . import cache as sigcache
from .dataset import ECGDataset
from .errors import RecordError, SkipReport
from .wfdb_io import LEADS, read_wfdb
from ..vocabulary import SUPERCLASSES

VIEWS = ("superdiagnostic", "superdiagnostic50", "subdiagnostic", "diagnostic", "form", "rhythm", "all")
SPLIT_FOLDS = {"train": tuple(range(1, 9)), "val": (9,), "test": (10,)}
_FILE_COLUMN = {100: "filename_lr", 500: "filename_hr"}


@dataclass
class Labels:
    """A multi-hot label table for one view, with what it could not label.

    ``y`` has one row per record (all records, in dataset order) and one column per class;
    ``unlabelled`` lists the records with no class in this view (all-zero rows, reported
    rather than dropped); ``unknown_codes`` maps records to SCP codes absent from the
    statements table.
    """

    view: str
    y: pd.DataFrame
    unlabelled: pd.Index
    unknown_codes: dict = field(default_factory=dict)

    def summary(self) -> str:
        msg = (f"{self.view}: {len(self.y)} records, {self.y.shape[1]} classes, "
               f"{len(self.unlabelled)} without a label in this view")
        if self.unknown_codes:
            codes = sorted({c for cs in self.unknown_codes.values() for c in cs})
            msg += f"; {len(self.unknown_codes)} records carry unknown SCP codes {codes}"
        return msg

    def labelled(self) -> pd.DataFrame:
        """The rows that carry at least one label in this view."""
        return self.y.drop(index=self.unlabelled)


_SCP_ITEM = re.compile(r"'([^']+)'\s*:\s*(-?[0-9.]+)")
_SCP_PLAIN = re.compile(r"^\{\s*('[^']+'\s*:\s*-?[0-9.]+\s*(,\s*|(?=\})))*\}$")


def parse_scp_codes(text, record="?") -> dict[str, float]:
    """Parse the ``scp_codes`` column ("{'NORM': 100.0, 'SR': 0.0}") into a dict."""
    if isinstance(text, dict):
        return text
    text = str(text).strip()
    if _SCP_PLAIN.match(text):  # the usual form: a fast path without Python's parser
        return {k: float(v) for k, v in _SCP_ITEM.findall(text)}
    try:
        codes = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as exc:
        raise RecordError(record, f"scp_codes {text!r} cannot be parsed") from exc
    if not isinstance(codes, dict):
        raise RecordError(record, f"scp_codes {text!r} is not a dict")
    return {str(k): float(v) for k, v in codes.items()}


def ptbxl_metadata(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(records table indexed by ecg_id with parsed ``scp_codes``, SCP statements table)."""
    path = Path(path)
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} is missing: not a PTB-XL folder")
    meta = pd.read_csv(path / "ptbxl_database.csv", index_col="ecg_id")
    meta["scp_codes"] = [parse_scp_codes(t, rec) for rec, t in meta["scp_codes"].items()]
    scp = pd.read_csv(path / "scp_statements.csv", index_col=0)
    return meta, scp


def ptbxl_labels(meta: pd.DataFrame, scp: pd.DataFrame, view: str = "superdiagnostic",
                 min_likelihood: float | None = None) -> Labels:
    """Multi-hot labels for ``view``.

    Views: ``superdiagnostic`` (diagnostic statements mapped to ``diagnostic_class``, any
    likelihood, as the PTB-XL benchmark), ``superdiagnostic50`` (the same with likelihood ≥ 50,
    as ALFRED), ``subdiagnostic`` (``diagnostic_subclass``), ``diagnostic``, ``form``,
    ``rhythm`` and ``all`` statements. ``min_likelihood`` overrides the view's threshold.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown label view {view!r}; choose one of {VIEWS}")
    threshold = 50.0 if view == "superdiagnostic50" else 0.0
    if min_likelihood is not None:
        threshold = float(min_likelihood)
    is_set = lambda col: scp[col].fillna(0).astype(float) == 1.0  # noqa: E731
    if view in ("superdiagnostic", "superdiagnostic50"):
        mapping = scp.loc[is_set("diagnostic"), "diagnostic_class"].dropna()
        classes = [c for c in SUPERCLASSES if c in set(mapping)] + sorted(set(mapping) - set(SUPERCLASSES))
    elif view == "subdiagnostic":
        mapping = scp.loc[is_set("diagnostic"), "diagnostic_subclass"].dropna()
        classes = sorted(set(mapping))
    elif view == "all":
        mapping = pd.Series(scp.index, index=scp.index)
        classes = sorted(mapping)
    else:
        mapping = pd.Series(scp.index[is_set(view)], index=scp.index[is_set(view)])
        classes = sorted(mapping)
    mapping = mapping.to_dict()
    known = set(scp.index)
    y = np.zeros((len(meta), len(classes)), dtype=np.int8)
    col = {c: j for j, c in enumerate(classes)}
    unknown: dict = {}
    for i, (rec, codes) in enumerate(zip(meta.index, meta["scp_codes"])):
        for code, likelihood in codes.items():
            if code not in known:
                unknown.setdefault(rec, []).append(code)
                continue
            if code in mapping and likelihood >= threshold:
                y[i, col[mapping[code]]] = 1
    frame = pd.DataFrame(y, index=meta.index, columns=classes)
    return Labels(view, frame, meta.index[y.sum(axis=1) == 0], unknown)


def ptbxl_split(meta: pd.DataFrame, folds=SPLIT_FOLDS) -> dict[str, pd.Index]:
    """The standard split by ``strat_fold``: train 1–8, val 9, test 10 (record ids per part)."""
    return {part: meta.index[meta["strat_fold"].isin(f)] for part, f in folds.items()}


@dataclass(repr=False)
class PTBXL(ECGDataset):
    """An :class:`ECGDataset` in PTB-XL layout, with its statements table, label views and split."""

    scp: pd.DataFrame | None = None
    path: Path | None = None

    def label_view(self, view: str = "superdiagnostic", min_likelihood: float | None = None) -> Labels:
        return ptbxl_labels(self.meta, self.scp, view, min_likelihood)

    def split(self) -> dict[str, pd.Index]:
        return ptbxl_split(self.meta)

    def part(self, part: str) -> np.ndarray:
        """Row positions of a split part (``train``, ``val``, ``test``) in ``signals``."""
        return np.flatnonzero(self.meta.index.isin(self.split()[part]))

    @property
    def patient_ids(self) -> pd.Series:
        return self.meta["patient_id"]


def load_ptbxl(path: str | os.PathLike, rate: int = 100, records=None, cache: bool = True,
               strict: bool = False, progress: bool = True, name: str | None = None,
               cache_root: str | os.PathLike | None = None) -> PTBXL:
    """Load a PTB-XL folder (or any folder in its layout) at 100 or 500 Hz.

    Bad records (missing or truncated files, wrong rate or lead count, NaNs) raise a
    :class:`RecordError` with ``strict=True``; otherwise they are skipped, counted in
    ``dataset.skipped`` and reported in a warning. ``records`` restricts to some ecg_ids.
    ``cache_root``: the cache folder (default ``$ECGKIT_CACHE``).
    """
    path = Path(path)
    if rate not in _FILE_COLUMN:
        raise ValueError(f"PTB-XL comes at 100 or 500 Hz, not {rate}; resample after loading")
    meta, scp = ptbxl_metadata(path)
    if records is not None:
        missing = sorted(set(records) - set(meta.index))
        if missing:
            raise KeyError(f"ecg_id(s) {missing[:10]} are not in {path / 'ptbxl_database.csv'}")
        meta = meta.loc[list(records)]
    name = name or "ptbxl"
    n_samples = int(10 * rate)
    skipped = SkipReport()

    def fill(out):
        ids = []
        files = [path / f for f in meta[_FILE_COLUMN[rate]]]
        for rec, f in tqdm(list(zip(meta.index, files)), desc=f"reading {name} {rate} Hz",
                           disable=not progress, mininterval=1.0):
            try:
                sig, _, _ = read_wfdb(f, fs=rate, n_leads=12, record=f"ecg_id {rec} ({f.name})")
                if sig.shape[0] != n_samples:
                    raise RecordError(f"ecg_id {rec}", f"{sig.shape[0]} samples, expected {n_samples} (10 s)")
            except RecordError as err:
                if strict:
                    raise
                skipped.add(rec, err.problem)
                continue
            out[len(ids)] = sig
            ids.append(rec)
        return ids, {"skipped": {str(k): v for k, v in skipped.skipped.items()}}

    if cache:
        names = [f"{path}/{f}" for f in meta[_FILE_COLUMN[rate]]]
        key = sigcache.fingerprint(
            [f"{n}.dat" for n in names] + [f"{n}.hea" for n in names],
            extra=f"{name}|{rate}|{file_sha256(path / 'ptbxl_database.csv')}",
        )
        where = sigcache.cache_path(name, rate, key, root=cache_root)
        hit = sigcache.load_cached(where)
        if hit is None:
            hit = sigcache.write_cache(where, len(meta), n_samples, 12, fill, {"source": str(path)})
        signals, ids, info = hit
        for rec, why in info.get("skipped", {}).items():  # JSON keys are strings
            skipped.add(int(rec) if pd.api.types.is_integer_dtype(meta.index) else rec, why)
        if strict and len(skipped):
            rec, why = next(iter(skipped.skipped.items()))
            raise RecordError(f"ecg_id {rec}", why)
    else:
        buf = np.zeros((len(meta), n_samples, 12), dtype=np.float32)
        ids, _ = fill(buf)
        signals = buf[: len(ids)]
    ids = pd.Index(np.asarray(ids), name="ecg_id")
    if len(skipped):
        warnings.warn(f"{name}: {skipped.summary()}", stacklevel=2)
    kept = meta.loc[ids]
    dataset = PTBXL(name=name, signals=signals, fs=float(rate), meta=kept, skipped=skipped,
                    leads=LEADS, scp=scp, path=path)
    dataset.labels = dataset.label_view("superdiagnostic").y
    return dataset


def label_counts(dataset: PTBXL, views=("superdiagnostic", "superdiagnostic50")) -> pd.DataFrame:
    """Records per superclass in each view and split part, plus the unlabelled ones."""
    parts = dataset.split()
    rows = {}
    for view in views:
        labels = dataset.label_view(view)
        for part, ids in [("all", dataset.meta.index)] + list(parts.items()):
            y = labels.y.loc[labels.y.index.isin(ids)]
            counts = y.sum().astype(int).to_dict()
            counts["(no label)"] = int(y.index.isin(labels.unlabelled).sum())
            counts["records"] = len(y)
            rows[(view, part)] = counts
    frame = pd.DataFrame(rows).T.fillna(0).astype(int)
    frame.index.names = ["view", "part"]
    return frame


def fold_table(dataset: PTBXL) -> pd.DataFrame:
    """Records, patients and superclass counts per ``strat_fold``, with the part each fold is in."""
    meta = dataset.meta
    part_of = {f: part for part, folds in SPLIT_FOLDS.items() for f in folds}
    y = dataset.label_view("superdiagnostic").y
    frame = y.groupby(meta["strat_fold"]).sum()
    frame.insert(0, "patients", meta.groupby("strat_fold")["patient_id"].nunique())
    frame.insert(0, "records", meta.groupby("strat_fold").size())
    frame.insert(0, "part", [part_of.get(int(f), "?") for f in frame.index])
    return frame


def medians_by_statement(values: pd.DataFrame, meta: pd.DataFrame, statements,
                         norm_likelihood: float = 50.0) -> pd.DataFrame:
    """Median of each column of ``values`` (indexed like ``meta``) among the records carrying each
    SCP statement, with the number of records; ``NORM`` counts only at likelihood ≥ ``norm_likelihood``."""
    codes = meta.loc[values.index, "scp_codes"]
    rows = {}
    for code in statements:
        threshold = norm_likelihood if code == "NORM" else 0.0
        mask = codes.map(lambda c: c.get(code, -1.0) >= threshold).to_numpy()
        rows[code] = {"records": int(mask.sum()), **values.loc[mask].median().to_dict()}
    return pd.DataFrame(rows).T.astype({"records": int})
