"""File formats: WFDB records (format 16, 1 µV steps) and reproducible gzip CSV."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

HEADER_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")


def digital(eight_mv: np.ndarray) -> np.ndarray:
    """8 leads in mV → 12 leads as int16 adu (1 µV); derived leads from the digital I and II."""
    d8 = np.clip(np.rint(eight_mv * 1000.0), -32767, 32767).astype(np.int32)
    i, ii = d8[:, 0], d8[:, 1]
    limb = np.column_stack([i, ii, ii - i, np.rint(-(i + ii) / 2.0), np.rint(i - ii / 2.0),
                            np.rint(ii - i / 2.0)])
    d = np.concatenate([limb, d8[:, 2:]], axis=1)
    return np.clip(d, -32767, 32767).astype("<i2")


def write_wfdb(base: Path, d: np.ndarray, fs: int) -> None:
    """Write ``base``.hea/.dat (format 16, gain 1000/mV) as PTB-XL and wfdb.wrsamp do."""
    name = base.name
    n = d.shape[0]
    checks = d.astype(np.int64).sum(axis=0) % 65536
    lines = [f"{name} 12 {fs} {n}"]
    for j, lead in enumerate(HEADER_LEADS):
        lines.append(f"{name}.dat 16 1000.0(0)/mV 16 0 {int(d[0, j])} {int(checks[j])} 0 {lead}")
    base.with_name(name + ".hea").write_text("\n".join(lines) + "\n")
    base.with_name(name + ".dat").write_bytes(d.tobytes())


def record_paths(ecg_id: int) -> tuple[str, str]:
    folder = f"{(ecg_id // 1000) * 1000:05d}"
    return (f"records100/{folder}/{ecg_id:05d}_lr", f"records500/{folder}/{ecg_id:05d}_hr")


def write_gzip_csv(df: pd.DataFrame, path: Path) -> None:
    """CSV through gzip with a fixed header (no time stamp, no name) so files are reproducible."""
    text = df.to_csv(index=False).encode()
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=6) as gz:
        gz.write(text)
