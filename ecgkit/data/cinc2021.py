"""PhysioNet/CinC Challenge 2020/2021 layout: WFDB headers pointing at MATLAB v4 ``.mat`` signals.

Used by the challenge releases of CPSC 2018 (+ extra), INCART, PTB, PTB-XL, Georgia,
Chapman-Shaoxing and Ningbo. Each record is a pair ``A0001.hea`` / ``A0001.mat``:

- the ``.mat`` file is MATLAB v4 (written by ``wfdb2mat``) holding one int16 matrix ``val``,
  leads × samples, in digital units; the 20-byte v4 header plus the name ``val\\0`` make the
  24-byte offset of the header's ``16+24`` format;
- the header has signal lines such as ``A0001.mat 16+24 1000/mV 16 0 28 -1716 0 I`` (gain
  1000 per mV, baseline 0) and comment lines ``# Age: 74``, ``# Sex: Male``,
  ``# Dx: 426783006,164889003`` (SNOMED CT codes), ``# Rx: Unknown``, ``# Hx: ...``, ``# Sx: ...``.

Records are read with wfdb-python (which reads the v4 matrix as format 16 at byte offset 24);
a ``.mat`` file that wfdb cannot read in that way (MATLAB v5, another precision) is read with
``scipy.io.loadmat`` and scaled with the header's gain and baseline instead. Before reading, the
v4 matrix header is checked against the WFDB header, so a truncated file or a lead-count
mismatch is named as such.
"""
from __future__ import annotations

import os
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from .dataset import ECGDataset, parse_age, parse_sex
from .errors import RecordError
from .bulk import collect_records, prepare_record
from .preprocess import window_samples
from .wfdb_io import LEADS, lead_order, read_header, read_wfdb

#: a few common SNOMED CT codes of the challenge data and their names (labels keep the codes)
SNOMED_NAMES = {
    "426783006": "sinus rhythm",
    "164889003": "atrial fibrillation",
    "164890007": "atrial flutter",
    "270492004": "1st degree AV block",
    "195042002": "2nd degree AV block",
    "27885002": "complete heart block",
    "164909002": "left bundle branch block",
    "733534002": "complete left bundle branch block",
    "59118001": "right bundle branch block",
    "713427006": "complete right bundle branch block",
    "713426002": "incomplete right bundle branch block",
    "6374002": "bundle branch block",
    "445118002": "left anterior fascicular block",
    "698252002": "nonspecific intraventricular conduction disorder",
    "426177001": "sinus bradycardia",
    "427084000": "sinus tachycardia",
    "427393009": "sinus arrhythmia",
    "426627000": "bradycardia",
    "426761007": "supraventricular tachycardia",
    "284470004": "premature atrial contraction",
    "63593006": "supraventricular premature beats",
    "427172004": "premature ventricular contractions",
    "17338001": "ventricular premature beats",
    "164884008": "ventricular ectopics",
    "11157007": "ventricular bigeminy",
    "251180001": "ventricular trigeminy",
    "164896001": "ventricular fibrillation",
    "10370003": "pacing rhythm",
    "74390002": "Wolff-Parkinson-White pattern",
    "164947007": "prolonged PR interval",
    "49578007": "shortened PR interval",
    "111975006": "prolonged QT interval",
    "39732003": "left axis deviation",
    "47665007": "right axis deviation",
    "251146004": "low QRS voltages",
    "365413008": "poor R wave progression",
    "164917005": "Q wave abnormal",
    "164934002": "T wave abnormal",
    "59931005": "T wave inversion",
    "428750005": "nonspecific ST-T abnormality",
    "429622005": "ST depression",
    "164931005": "ST elevation",
    "164873001": "left ventricular hypertrophy",
    "89792004": "right ventricular hypertrophy",
    "67741000119109": "left atrial enlargement",
    "164865005": "myocardial infarction",
    "57054005": "acute myocardial infarction",
    "164861001": "myocardial ischemia",
    "413444003": "acute myocardial ischemia",
}

#: codes the Challenge 2021 scoring treats as one class → the code they are merged into
EQUIVALENT_CODES = {
    "733534002": "164909002",  # complete LBBB → LBBB
    "713427006": "59118001",   # complete RBBB → RBBB
    "63593006": "284470004",   # supraventricular premature beats → PAC
    "17338001": "427172004",   # ventricular premature beats → PVC
}

__all__ = ["SNOMED_NAMES", "EQUIVALENT_CODES", "snomed_name", "parse_header_comments",
           "read_cinc_record", "load_cinc2021"]

_DEFAULT_GAIN = 200.0  # WFDB's default ADC gain when a header gives 0
_V4_PRECISION = {0: ("d", 8), 1: ("f", 4), 2: ("i", 4), 3: ("h", 2), 4: ("H", 2), 5: ("B", 1)}
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}


def snomed_name(code) -> str:
    """A readable name for a SNOMED CT code (the code itself when it is not in the table)."""
    return SNOMED_NAMES.get(str(code).strip(), str(code).strip())




def _missing(value: str | None) -> str | None:
    text = (value or "").strip()
    return None if text.lower() in ("", "unknown", "nan", "none") else text


def parse_header_comments(comments, record: str = "?") -> dict:
    """Age, sex, Dx codes and the other ``Key: value`` comment lines of a challenge header.

    ``age`` is a float (NaN when ``NaN``/``Unknown``), ``sex`` ``"Male"``/``"Female"``/None,
    ``dx`` a list of code strings; other keys come lower-cased (``rx``, ``hx``, ``sx``...) with
    ``Unknown`` as None. Raises :class:`RecordError` when Dx is missing, empty or holds
    something that is not a SNOMED CT code (digits).
    """
    fields: dict[str, str] = {}
    for line in comments or []:
        text = str(line).strip().lstrip("#").strip()
        if ":" not in text:
            continue
        key, value = text.split(":", 1)
        fields.setdefault(key.strip().lower(), value.strip())
    if "dx" not in fields:
        raise RecordError(record, "header has no '# Dx:' line")
    raw = [c.strip() for c in fields["dx"].replace(";", ",").split(",")]
    codes = [c for c in raw if c]
    if not codes:
        raise RecordError(record, "header's Dx line is empty")
    bad = [c for c in codes if not c.isdigit()]
    if bad:
        raise RecordError(record, f"Dx {bad} cannot be parsed as SNOMED CT codes (Dx: {fields['dx']!r})")
    out = {"age": parse_age(fields.get("age")), "sex": parse_sex(fields.get("sex")),
           "dx": list(dict.fromkeys(codes))}
    for key, value in fields.items():
        if key not in ("age", "sex", "dx"):
            out[key] = _missing(value)
    return out


def _mat4_header(file: Path) -> dict | None:
    """(precision, rows, cols, data offset) of a little-endian MATLAB v4 file, or None."""
    with open(file, "rb") as fh:
        head = fh.read(20)
        if len(head) < 20 or head.startswith(b"MATLAB"):
            return None  # too short to tell, or MATLAB v5
        mopt, rows, cols, imagf, namlen = struct.unpack("<5i", head)
        if not (0 <= mopt < 1000 and 0 < namlen < 64 and rows >= 0 and cols >= 0):
            return None
        name = fh.read(namlen).rstrip(b"\x00").decode("latin-1")
    precision = (mopt % 100) // 10
    if precision not in _V4_PRECISION or mopt % 10 != 0 or imagf:
        return None
    return {"precision": precision, "rows": rows, "cols": cols, "name": name,
            "offset": 20 + namlen, "bytes": _V4_PRECISION[precision][1]}


def _check_mat(file: Path, header, name: str) -> bool:
    """Check a ``.mat`` signal file against its header; True when wfdb can read it directly."""
    size = file.stat().st_size
    if size < 20:
        raise RecordError(name, f"signal file {file.name} is truncated: {size} bytes")
    v4 = _mat4_header(file)
    if v4 is None:
        return False
    n_sig, sig_len = header.n_sig, header.sig_len
    if v4["rows"] != n_sig:
        raise RecordError(name, f"{file.name} holds {v4['rows']} leads × {v4['cols']} samples, "
                                f"header lists {n_sig} signals")
    if sig_len is not None and v4["cols"] != sig_len:
        raise RecordError(name, f"{file.name} holds {v4['cols']} samples, header says {sig_len}")
    needed = v4["offset"] + v4["rows"] * v4["cols"] * v4["bytes"]
    if size < needed:
        raise RecordError(name, f"signal file {file.name} is truncated: {size} bytes, "
                                f"its {v4['rows']}×{v4['cols']} matrix needs {needed}")
    fmts = {str(f) for f in header.fmt}
    offsets = {int(o or 0) for o in (header.byte_offset or [0])}
    return v4["precision"] == 3 and fmts == {"16"} and offsets == {v4["offset"]}


def _read_mat_fallback(path: Path, header, name: str) -> np.ndarray:
    """``val`` from ``scipy.io.loadmat``, scaled with the header's gain and baseline, in mV."""
    files = sorted(set(header.file_name))
    if len(files) != 1:
        raise RecordError(name, f"signals are spread over {files}; expected one .mat file")
    file = path.parent / files[0]
    try:
        val = scipy.io.loadmat(str(file))["val"]
    except KeyError:
        raise RecordError(name, f"{file.name} holds no 'val' matrix") from None
    except Exception as exc:
        raise RecordError(name, f"{file.name} cannot be read ({type(exc).__name__}: {exc})") from exc
    val = np.asarray(val, dtype=np.float64)
    if val.ndim != 2 or val.shape[0] != header.n_sig:
        raise RecordError(name, f"{file.name} holds a {val.shape} matrix, header lists {header.n_sig} signals")
    if header.sig_len is not None and val.shape[1] != header.sig_len:
        raise RecordError(name, f"{file.name} holds {val.shape[1]} samples, header says {header.sig_len}")
    gain = np.array([float(g) if g else _DEFAULT_GAIN for g in header.adc_gain])
    base = np.array([float(b or 0) for b in header.baseline])
    units = np.array([_UNIT_TO_MV.get(str(u).strip().lower(), 1.0) for u in (header.units or ["mV"] * header.n_sig)])
    phys = (val - base[:, None]) / gain[:, None] * units[:, None]
    if str(header.fmt[0]) == "16":  # WFDB's NaN marker for format 16
        phys[val == -32768] = np.nan
    try:
        order = lead_order(header.sig_name)
    except ValueError as exc:
        raise RecordError(name, str(exc)) from exc
    return np.ascontiguousarray(phys.T[:, order], dtype=np.float32)


def read_cinc_record(path: str | os.PathLike, record: str | None = None, source_fs: float | None = None,
                     header=None) -> tuple[np.ndarray, float, dict]:
    """Read one challenge record (``path`` without extension).

    Returns (samples × 12 float32 mV in :data:`LEADS` order, which may hold NaN; its rate;
    header info from :func:`parse_header_comments` plus ``fs_source`` and ``n_samples_source``).
    Raises :class:`RecordError` naming the record for a missing or unparseable header, a lead
    count other than 12, a rate other than ``source_fs``, a missing, truncated or mismatched
    signal file, or a Dx line that cannot be parsed.
    """
    path = Path(path)
    name = record or path.name
    header = header if header is not None else read_header(path, name)
    info = parse_header_comments(header.comments, name)
    if header.n_sig != len(LEADS):
        raise RecordError(name, f"header lists {header.n_sig} signals, expected {len(LEADS)}")
    if source_fs is not None and abs(float(header.fs) - float(source_fs)) > 1e-6:
        raise RecordError(name, f"sampling rate is {header.fs:g} Hz, expected {float(source_fs):g} Hz")
    files = sorted(set(header.file_name or []))
    if not files:
        raise RecordError(name, "header names no signal file")
    for fname in files:
        if not (path.parent / fname).is_file():
            raise RecordError(name, f"signal file {path.parent / fname} is missing")
    direct = True
    if all(f.lower().endswith(".mat") for f in files):
        direct = all(_check_mat(path.parent / f, header, name) for f in files)
    if direct:
        sig, _, _ = read_wfdb(path, fs=None, n_leads=len(LEADS), record=name, allow_nan=True)
    else:
        sig = _read_mat_fallback(path, header, name)
    info.update(fs_source=float(header.fs), n_samples_source=int(sig.shape[0]))
    return sig, float(header.fs), info


def load_cinc2021(path: str | os.PathLike, fs: float | None = None, seconds: float | None = None,
                  n_samples: int | None = None, records=None, strict: bool = False,
                  source_fs: float | None = None, codes=None, merge_equivalent: bool = False,
                  crop: str = "start", nan: str = "skip", max_gap: int = 10,
                  progress: bool = True, name: str = "cinc2021", rng=None) -> ECGDataset:
    """Load every challenge-style record (``*.hea``) found recursively under ``path``.

    - ``fs``: resample every record to this rate on load. Without it, the dataset keeps the
      source rate: ``source_fs`` when given, else the most common header rate, and records at
      another rate are skipped (the skip reason says to pass ``fs``).
    - ``source_fs``: the expected header rate; records whose header disagrees are skipped.
    - ``seconds`` / ``n_samples``: crop or zero-pad to a fixed window (at the output rate) with
      ``crop`` (``start``, ``center``, ``end``, ``random`` with ``rng``); otherwise records of
      different lengths come as a list of arrays.
    - ``records``: restrict to these record names (``A0001``, ``HR00001``...).
    - ``codes``: the label columns (SNOMED CT codes, in this order); default all codes present,
      sorted numerically. ``merge_equivalent`` folds the codes the 2021 scoring treats as one
      (:data:`EQUIVALENT_CODES`) before building labels; ``meta['dx']`` keeps the raw codes.
    - ``nan``: ``"skip"`` or ``"fill"`` (interpolate gaps up to ``max_gap`` source samples).
    - ``strict``: raise :class:`RecordError` instead of skipping a bad record.

    ``meta`` (indexed by record name) has ``source`` (folder under ``path``), ``age``, ``sex``,
    ``dx``, ``dx_names``, ``rx``, ``hx``, ``sx`` (and other header keys), ``fs_source``,
    ``n_samples_source`` and ``file``; ``labels`` is multi-hot with the codes as column names
    (:func:`snomed_name` gives their names).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder")
    found: dict[str, Path] = {}
    duplicates: dict[str, Path] = {}
    for hea in sorted(path.rglob("*.hea")):
        if hea.stem in found:
            duplicates[hea.stem] = hea
        else:
            found[hea.stem] = hea.with_suffix("")
    ids = sorted(found)
    if records is not None:
        wanted = [str(r) for r in records]
        unknown = [r for r in wanted if r not in found]
        if unknown:
            raise KeyError(f"record(s) {unknown[:10]} have no header under {path}")
        ids = wanted

    headers: dict[str, object] = {}
    rate = float(source_fs) if source_fs is not None else None
    if fs is None and rate is None and ids:
        from tqdm import tqdm
        rates = Counter()
        for rec in tqdm(ids, desc=f"reading {name} headers", disable=not progress, mininterval=1.0):
            try:
                headers[rec] = read_header(found[rec], rec)
            except RecordError:
                continue  # reported when the record itself is read
            rates[float(headers[rec].fs)] += 1
        rate = rates.most_common(1)[0][0] if rates else None
    out_fs = float(fs) if fs is not None else (rate if rate is not None else 500.0)
    window = window_samples(out_fs, seconds, n_samples)

    def read_one(rec: str):
        if rec in duplicates:
            raise RecordError(rec, f"two records share this name: {found[rec]} and {duplicates[rec]}")
        header = headers.get(rec)
        sig, fs_src, info = read_cinc_record(found[rec], rec, source_fs=source_fs, header=header)
        if fs is None and rate is not None and abs(fs_src - rate) > 1e-6:
            raise RecordError(rec, f"sampling rate is {fs_src:g} Hz, unlike the {rate:g} Hz of the "
                                   f"other records; pass fs= to resample on load")
        sig = prepare_record(sig, fs_src, rec, fs=fs, n_samples=window, crop=crop, nan=nan,
                             max_gap=max_gap, rng=rng)
        rel = found[rec].parent.relative_to(path)
        info["source"] = rel.parts[0] if rel.parts else path.name
        info["dx_names"] = [snomed_name(c) for c in info["dx"]]
        info["file"] = str(found[rec])
        return sig, info

    kept, signals, metas, skipped = collect_records(
        ids, read_one, name=name, strict=strict, n_samples=window, progress=progress,
        desc=f"reading {name}", record_name=str)
    first = ["source", "age", "sex", "dx", "dx_names", "rx", "hx", "sx", "fs_source", "n_samples_source", "file"]
    meta = pd.DataFrame(metas, index=pd.Index(kept, name="record"))
    meta = meta.reindex(columns=first + [c for c in meta.columns if c not in first])
    labels = _multi_hot(meta["dx"], codes, merge_equivalent)
    return ECGDataset(name=name, signals=signals, fs=out_fs, meta=meta, labels=labels,
                      skipped=skipped, leads=LEADS)


def _multi_hot(dx: pd.Series, codes=None, merge_equivalent: bool = False) -> pd.DataFrame:
    def norm(code):
        code = str(code).strip()
        return EQUIVALENT_CODES.get(code, code) if merge_equivalent else code

    rows = [[norm(c) for c in cs] for cs in dx]
    if codes is None:
        columns = sorted({c for cs in rows for c in cs}, key=lambda c: (len(c), c))
    else:
        columns = list(dict.fromkeys(norm(c) for c in codes))
    col = {c: j for j, c in enumerate(columns)}
    y = np.zeros((len(rows), len(columns)), dtype=np.int8)
    for i, cs in enumerate(rows):
        for c in cs:
            if c in col:
                y[i, col[c]] = 1
    return pd.DataFrame(y, index=dx.index, columns=columns)
