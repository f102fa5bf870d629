"""Content hashes (of files, arrays) that go into cache keys (:func:`ecgkit.cache.key`)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_memo: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content, read in blocks; memoized per (path, size, mtime) in this process."""
    path = Path(path)
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        _memo[key] = digest.hexdigest()
    return _memo[key]


def content_sha256(*parts) -> str:
    """sha256 over arrays or tensors (their shape, dtype and bytes, memmaps read in blocks) and
    JSON-able values, in order (the content part of a cache key's spec)."""
    import json

    import numpy as np

    digest = hashlib.sha256()
    for part in parts:
        if hasattr(part, "detach"):  # a torch tensor
            part = part.detach().cpu().numpy()
        if isinstance(part, np.ndarray):
            digest.update(json.dumps([list(part.shape), str(part.dtype)]).encode())
            flat = part.reshape(len(part), -1) if part.ndim else part.reshape(1, 1)
            for i in range(0, len(flat), 256):
                digest.update(np.ascontiguousarray(flat[i:i + 256]).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()
