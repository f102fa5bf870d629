"""Real ECGs with cardiologists' wave boundaries (LUDB, the QT Database) as per-sample labels.

Two layouts are read:

* the **prepared folder** (``$ECGKIT_DELINEATION``, e.g. ``ludb-odd.npz`` and ``qtdb.npz``: 250 Hz
  signals and labels of the annotated spans, see the folder's README): :func:`read_prepared`;
* **PhysioNet's layout** of the full databases: LUDB's WFDB records with one annotation file per
  lead (``1.dat``/``1.hea`` + ``1.i`` … ``1.v6``, :func:`read_ludb`) and the QT Database's records
  with the first cardiologist's annotations (``sel100.dat``/``.hea`` + ``sel100.q1c``,
  :func:`read_qtdb`), at the record's own rate.

Labels (:data:`LABELS`): 0 none, 1 P wave, 2 QRS complex, 3 T wave, :data:`UNMARKED` (−1) where
nobody marked anything (outside the annotated span) and :data:`NO_T_ONSET` (−2) in the QT
Database from each QRS offset to the middle of the T wave (QTDB marks no T onset). A wave occupies
``[onset, offset)``: its onset is its first labelled sample, its offset the first sample after
it. Training ignores negative labels; :func:`wave_boundaries` drops boundaries that touch an
unmarked sample or the segment's edge (they are the segment's, not the wave's) and T onsets next
to :data:`NO_T_ONSET`.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..vocabulary import LEADS

#: Per-sample label values.
LABELS = {0: "none", 1: "P", 2: "QRS", 3: "T"}
#: Samples nobody annotated (ignored in training and scoring).
UNMARKED = -1
#: Samples before a T wave's peak where the annotator marks no T onset (the QT Database): ignored
#: in training; a boundary next to them is known, except the T onset.
NO_T_ONSET = -2
#: LUDB's annotation file extensions, one per lead, in :data:`LEADS` order.
LUDB_EXTENSIONS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
#: Wave symbols of the WFDB annotations (LUDB and QTDB alike).
_WAVE_SYMBOL = {"p": 1, "N": 2, "t": 3}
#: Annotations further apart than this (s) end an annotated stretch (QTDB marks selected beats).
STRETCH_GAP_S = 2.0


@dataclass
class AnnotatedECG:
    """One annotated stretch of an ECG: ``signal`` (samples × leads, mV) and ``labels`` (same
    shape, int8, :data:`LABELS` and :data:`UNMARKED`) at ``fs`` Hz."""

    database: str
    record: str
    signal: np.ndarray
    labels: np.ndarray
    fs: float
    leads: tuple = ()
    start: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.signal = np.asarray(self.signal, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int8)
        if self.signal.ndim == 1:
            self.signal, self.labels = self.signal[:, None], self.labels[:, None]
        if self.signal.shape != self.labels.shape:
            raise ValueError(f"{self.name}: signal {self.signal.shape} and labels "
                             f"{self.labels.shape} differ in shape")
        if not self.leads:
            self.leads = tuple(range(self.signal.shape[1]))

    @property
    def name(self) -> str:
        return f"{self.database}/{self.record}"

    @property
    def group(self) -> str:
        """The patient record this stretch comes from (cross-validation folds split by it)."""
        return f"{self.database}/{str(self.record).split('#')[0]}"

    @property
    def seconds(self) -> float:
        return self.signal.shape[0] / self.fs


# --------------------------------------------------------------------------------------------
# The prepared folder
# --------------------------------------------------------------------------------------------

def read_prepared(path: str | os.PathLike, database: str | None = None) -> list[AnnotatedECG]:
    """The annotated stretches of one prepared ``.npz`` (``record, start, length, signal,
    labels``; 250 Hz). ``database`` defaults to the file name's first word (``ludb``, ``qtdb``).
    In the QT Database the T label's start is not a cardiologist's mark, so the samples from the
    QRS offset to the middle of each T wave are :data:`NO_T_ONSET` (:func:`unmark_t_onsets`)."""
    path = Path(path)
    database = database or re.split(r"[-_.]", path.name)[0].lower()
    with np.load(path, allow_pickle=False) as z:
        missing = {"record", "start", "length", "signal", "labels"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: not a prepared delineation file (missing {sorted(missing)})")
        records, starts, lengths = z["record"], z["start"], z["length"]
        signals = np.split(z["signal"], np.cumsum(lengths)[:-1])
        labels = np.split(z["labels"], np.cumsum(lengths)[:-1])
        fs = float(z["fs"]) if "fs" in z.files else 250.0
    n_leads = signals[0].shape[1] if signals else 0
    leads = tuple(LEADS) if n_leads == len(LEADS) else tuple(f"ch{i + 1}" for i in range(n_leads))
    out = []
    for rec, start, sig, lab in zip(records, starts, signals, labels):
        lab = lab.astype(np.int8)
        if database == "qtdb":
            lab = unmark_t_onsets(lab)
        out.append(AnnotatedECG(database, str(rec), sig, lab, fs, leads, int(start)))
    return out


def unmark_t_onsets(labels: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` (samples × leads) with the stretch from each QRS offset to the middle
    of the following T wave set to :data:`NO_T_ONSET`: for annotations without a T onset."""
    labels = np.array(labels, dtype=np.int8, copy=True)
    for j in range(labels.shape[1]):
        col = labels[:, j]
        values, starts, stops = label_runs(col)
        for k, (v, a, b) in enumerate(zip(values, starts, stops)):
            if v != 3:
                continue
            qrs_end = a
            for m in range(k - 1, -1, -1):
                if values[m] == 2:
                    qrs_end = stops[m]
                    break
                if values[m] not in (0, 3):
                    break
            col[qrs_end:(a + b) // 2] = NO_T_ONSET
    return labels


# --------------------------------------------------------------------------------------------
# PhysioNet's layout (WFDB records + annotation files)
# --------------------------------------------------------------------------------------------

def _fill_waves(lab, waves, marks, gap_samples):
    """Label ``[onset, offset)`` of each wave (value, onset or None, peak, offset) on ``lab``:
    annotated stretches (marks less than ``gap_samples`` apart) become 0 first, the rest stays
    :data:`UNMARKED`; a wave without an onset (QTDB's T) is :data:`NO_T_ONSET` from the previous
    wave's offset to its peak."""
    splits = np.flatnonzero(np.diff(marks) > gap_samples)
    firsts = np.concatenate([[marks[0]], marks[splits + 1]])
    lasts = np.concatenate([marks[splits], [marks[-1]]])
    n = lab.size
    for a, b in zip(firsts, lasts):   # one sample beyond the first and last marks: they are real
        lab[max(0, a - 1):min(n, b + 2)] = 0
    prev_off = None
    for value, on, peak, off in waves:
        if on is None:
            start = prev_off if prev_off is not None and prev_off < peak else peak
            lab[max(0, start):min(n, peak)] = NO_T_ONSET
            lab[max(0, peak):min(n, off)] = value
        else:
            lab[max(0, on):min(n, off)] = value
        prev_off = off
    return lab


def _read_wfdb_annotated(folder: Path, record: str, extensions: dict, database: str) -> AnnotatedECG:
    import wfdb

    from .wfdb_io import standard_lead

    header = wfdb.rdrecord(str(folder / record))
    sig = np.asarray(header.p_signal, dtype=np.float32)
    fs = float(header.fs)
    names = [standard_lead(s) or s for s in header.sig_name]
    labels = np.full(sig.shape, UNMARKED, dtype=np.int8)
    for col, ext in extensions.items():
        path = folder / f"{record}.{ext}"
        if not path.is_file():
            continue
        ann = wfdb.rdann(str(folder / record), ext)
        lab = np.full(sig.shape[0], UNMARKED, dtype=np.int8)
        waves = _waves_from_annotation(ann.sample, ann.symbol)
        if waves:
            marks = np.sort(np.asarray(ann.sample, dtype=np.int64))
            lab = _fill_waves(lab, waves, marks, STRETCH_GAP_S * fs)
        if col is None:            # one annotation for every channel (QTDB)
            labels[:] = lab[:, None]
        else:
            labels[:, col] = lab
    return AnnotatedECG(database, record, sig, labels, fs, tuple(names))


def _waves_from_annotation(sample, symbol):
    sample = np.asarray(sample, dtype=np.int64)
    symbol = list(symbol)
    peaks = [i for i, s in enumerate(symbol) if s in _WAVE_SYMBOL]
    waves = []
    for k, i in enumerate(peaks):
        lo = peaks[k - 1] if k else -1
        hi = peaks[k + 1] if k + 1 < len(peaks) else len(symbol)
        on = next((int(sample[j]) for j in range(i - 1, lo, -1) if symbol[j] == "("), None)
        off = next((int(sample[j]) for j in range(i + 1, hi) if symbol[j] == ")"), None)
        if off is not None:
            waves.append((_WAVE_SYMBOL[symbol[i]], on, int(sample[i]), off))
    return waves


def _record_names(folder: Path, extension: str) -> list[str]:
    names = {p.name[: -len(extension) - 1] for p in folder.glob(f"*.{extension}")}
    return sorted((n for n in names if (folder / f"{n}.hea").is_file()),
                  key=lambda s: (len(s), s))


def read_ludb(folder: str | os.PathLike, records=None) -> list[AnnotatedECG]:
    """LUDB in PhysioNet's layout: each record's 12 leads with the lead's own annotation file
    (``.i`` … ``.v6``), at the record's rate (500 Hz). ``records``: names to read (default all
    with a header and an ``.i`` file)."""
    folder = Path(folder)
    names = [str(r) for r in records] if records is not None else _record_names(folder, "i")
    ext = {LEADS.index(lead): e for lead, e in zip(LEADS, LUDB_EXTENSIONS)}
    return [_read_wfdb_annotated(folder, name, ext, "ludb") for name in names]


def read_qtdb(folder: str | os.PathLike, records=None, annotator: str = "q1c") -> list[AnnotatedECG]:
    """The QT Database in PhysioNet's layout: both channels of each record with the
    cardiologist's ``annotator`` file (``.q1c``; one label track for both channels), cut into its
    annotated stretches (marks more than :data:`STRETCH_GAP_S` apart start a new one, named
    ``record#k``). T onsets are not marked there: :func:`unmark_t_onsets` applies."""
    folder = Path(folder)
    names = [str(r) for r in records] if records is not None else _record_names(folder, annotator)
    out = []
    for name in names:
        whole = _read_wfdb_annotated(folder, name, {None: annotator}, "qtdb")
        marked = (whole.labels[:, 0] != UNMARKED).astype(np.int8)
        values, starts, stops = label_runs(marked)
        spans = [(a, b) for v, a, b in zip(values, starts, stops) if v == 1]
        for k, (a, b) in enumerate(spans):
            rec = name if len(spans) == 1 else f"{name}#{k}"
            out.append(AnnotatedECG("qtdb", rec, whole.signal[a:b], whole.labels[a:b], whole.fs,
                                    whole.leads, int(a)))
    return out


# --------------------------------------------------------------------------------------------
# Any folder, and what the data is
# --------------------------------------------------------------------------------------------

def load_annotated(folder: str | os.PathLike | None = None, databases=("ludb", "qtdb"),
                   per_database: int | None = None) -> list[AnnotatedECG]:
    """Every annotated ECG in ``folder`` (default ``$ECGKIT_DELINEATION``): prepared ``.npz``
    files named after their database, and PhysioNet-layout folders (LUDB: ``*.i`` annotation
    files; QTDB: ``*.q1c``) in it or one level below. Empty when no folder is set.
    ``per_database``: only the first that many stretches of each database (toy runs)."""
    from ..config import settings

    folder = folder or settings().delineation
    if folder is None:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"delineation data folder {folder} does not exist")
    out: list[AnnotatedECG] = []
    for path in sorted(folder.glob("*.npz")):
        name = re.split(r"[-_.]", path.name)[0].lower()
        if name in databases:
            out += read_prepared(path, name)
    for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        if "ludb" in databases and any(sub.glob("*.i")):
            out += read_ludb(sub)
        if "qtdb" in databases and any(sub.glob("*.q1c")):
            out += read_qtdb(sub)
    if per_database:
        out = [e for db in dict.fromkeys(x.database for x in out)
               for e in [x for x in out if x.database == db][:per_database]]
    return out


def fingerprint(ecgs: list[AnnotatedECG]) -> str:
    """A short content hash of annotated ECGs (names, rates, signals and labels)."""
    h = hashlib.sha256()
    for e in ecgs:
        h.update(f"{e.name}|{e.fs}|{e.signal.shape}".encode())
        h.update(np.ascontiguousarray(e.signal).tobytes())
        h.update(np.ascontiguousarray(e.labels).tobytes())
    return h.hexdigest()[:16]


def describe_annotated(ecgs: list[AnnotatedECG]) -> pd.DataFrame:
    """Per database: records, stretches, leads, rate and annotated minutes."""
    rows = []
    for db in dict.fromkeys(e.database for e in ecgs):
        part = [e for e in ecgs if e.database == db]
        rows.append({"database": db, "records": len({e.group for e in part}),
                     "stretches": len(part), "leads": part[0].signal.shape[1],
                     "rate (Hz)": part[0].fs,
                     "annotated minutes": sum(float((e.labels[:, 0] != UNMARKED).sum()) / e.fs
                                              for e in part) / 60.0})
    return pd.DataFrame(rows).set_index("database") if rows else pd.DataFrame()


def label_runs(labels: np.ndarray):
    """(value, start, stop) of the constant runs of a 1-D array (stop exclusive)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return labels[starts], starts, stops


def wave_boundaries(labels: np.ndarray, leads=None) -> pd.DataFrame:
    """The cardiologist's fiducials from labels (samples × leads): one row per wave with
    ``lead`` and, for its kind, ``p_on/p_off``, ``qrs_on/qrs_off`` or ``t_on/t_off`` (samples;
    −1 elsewhere). A boundary at the segment's edge or next to an unmarked sample is −1, and so
    is a T onset next to :data:`NO_T_ONSET`."""
    labels = np.asarray(labels)
    labels = labels[:, None] if labels.ndim == 1 else labels
    leads = list(leads) if leads is not None else list(range(labels.shape[1]))
    names = {1: "p", 2: "qrs", 3: "t"}
    rows = []
    n = labels.shape[0]
    for j, lead in enumerate(leads):
        col = labels[:, j]
        values, starts, stops = label_runs(col)
        for v, a, b in zip(values, starts, stops):
            if v not in names:
                continue
            before = col[a - 1] if a > 0 else UNMARKED
            after = col[b] if b < n else UNMARKED
            on = int(a) if before != UNMARKED and not (v == 3 and before == NO_T_ONSET) else -1
            off = int(b) if after != UNMARKED else -1
            if on < 0 and off < 0:
                continue
            row = {"lead": lead, "p_on": -1, "p_off": -1, "qrs_on": -1, "qrs_off": -1,
                   "t_on": -1, "t_off": -1}
            row[f"{names[v]}_on"], row[f"{names[v]}_off"] = on, off
            rows.append(row)
    cols = ["lead", "p_on", "p_off", "qrs_on", "qrs_off", "t_on", "t_off"]
    return pd.DataFrame(rows, columns=cols)
