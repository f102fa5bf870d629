"""A memory-mapped signal cache: the first read parses WFDB, later reads map one .npy file.

The key is the dataset, the sampling rate and a fingerprint of the content (every record
file's name, size and modification time plus the metadata table's hash), so an edited,
added or removed record rebuilds the cache and nothing stale is ever served.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..cache import key
from ..config import cache_dir


def fingerprint(files, extra: str = "") -> str:
    """The cache key of some files' names, sizes and modification times (cheap; no file is read)."""
    parts = []
    for f in sorted(map(str, files)):
        try:
            st = os.stat(f)
            parts.append([f, st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            parts.append([f, "missing"])
    return key("signal_cache", {"extra": extra, "files": parts})


def cache_path(dataset: str, rate: float, key: str, root: str | os.PathLike | None = None) -> Path:
    """Where the signals of ``dataset`` at ``rate`` with content key ``key`` are cached."""
    return cache_dir("signals", dataset, root=root) / f"{int(rate)}hz-{key}"


def load_cached(path: Path):
    """(memmapped signals, ids, info) or None when there is no complete cache at ``path``."""
    if not (path / "complete").is_file():
        return None
    signals = np.load(path / "signals.npy", mmap_mode="r")
    ids = np.load(path / "ids.npy")
    info = json.loads((path / "info.json").read_text())
    return signals, ids, info


def write_cache(path: Path, n_records: int, n_samples: int, n_leads: int, fill, info: dict):
    """Write a cache by calling ``fill(out_array)``; atomic: a half-written cache is never used.

    ``fill`` writes records into the memmap and returns (ids, info-additions).
    """
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    arr = np.lib.format.open_memmap(tmp / "signals.npy", mode="w+", dtype=np.float32,
                                    shape=(n_records, n_samples, n_leads))
    ids, more = fill(arr)
    n_ok = len(ids)
    arr.flush()
    del arr
    if n_ok < n_records:  # drop the rows of skipped records
        full = np.load(tmp / "signals.npy", mmap_mode="r")
        small = np.lib.format.open_memmap(tmp / "signals.small.npy", mode="w+", dtype=np.float32,
                                          shape=(n_ok, n_samples, n_leads))
        small[:] = full[:n_ok]
        small.flush()
        del small, full
        os.replace(tmp / "signals.small.npy", tmp / "signals.npy")
    np.save(tmp / "ids.npy", np.asarray(ids))
    (tmp / "info.json").write_text(json.dumps({**info, **more}, indent=1, default=str))
    (tmp / "complete").write_text("ok\n")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return load_cached(path)
