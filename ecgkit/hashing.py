"""Content hashes for cache keys."""
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
