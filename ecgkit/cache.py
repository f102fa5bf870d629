"""Cache keys and the build-or-load step every cached artefact goes through.

:func:`key` is the one key function: the sha256 of a canonical JSON of ``{namespace, version,
spec}``, cut to :data:`DIGEST_CHARS` hex characters. ``version`` defaults to the namespace's entry
in :data:`ecgkit.versions.VERSIONS` (bumped by hand when what an artefact holds changes); a
module's own source is never part of a key (a comment edit must not rebuild anything).

:func:`build_or_load` keeps an artefact in ``cache_dir(namespace, key)``: it loads a complete
folder, else builds into a temporary folder, writes ``spec.json`` and a ``complete`` marker, and
renames it into place (a half-written artefact is never read).

:func:`save_frames` / :func:`load_frames` keep a list of data frames in an artefact folder exactly
(values, dtypes, index, ``attrs``) without pickle: numeric columns in one ``.npz``, the others as
gzipped JSON (tuples kept as tuples).

Every key computed in this process is remembered by namespace (:func:`keys_used`): a notebook's
:class:`ecgkit.results.Recorder` writes them into its results, so a table names the artefacts
(index, delineator, ESI runs, adapter, generations ...) it was computed from.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from .config import cache_dir
from .versions import VERSIONS

__all__ = ["DIGEST_CHARS", "canonical_json", "key", "keys_used", "build_or_load", "artefact_folder",
           "save_frames", "load_frames"]

#: hex characters of every cache key (96 bits: collisions are not a concern)
DIGEST_CHARS = 24

#: the keys computed in this process, by namespace (:func:`keys_used`)
_USED: dict[str, set[str]] = {}


def canonical_json(spec: Any) -> str:
    """``spec`` as JSON with sorted keys and no spaces (paths and other objects as ``str``)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def key(namespace: str, spec: Any, version: str | int | None = None) -> str:
    """The cache key of an artefact of ``namespace`` described by ``spec`` (JSON-able).

    ``version`` defaults to ``VERSIONS[namespace]``; a namespace without an entry needs one.
    """
    if version is None:
        if namespace not in VERSIONS:
            raise KeyError(f"no version for cache namespace {namespace!r}: add it to ecgkit.versions."
                           f"VERSIONS or pass version= (known: {sorted(VERSIONS)})")
        version = VERSIONS[namespace]
    blob = canonical_json({"namespace": namespace, "version": str(version), "spec": spec})
    digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    _USED.setdefault(namespace, set()).add(digest)
    return digest


def keys_used(listed: int = 20) -> dict:
    """The cache keys computed in this process: ``{namespace: [keys]}``, sorted; a namespace with
    more than ``listed`` keys (one per LLM generation, say) is given as ``{"keys": count}``."""
    return {ns: sorted(keys) if len(keys) <= listed else {"keys": len(keys)}
            for ns, keys in sorted(_USED.items())}


def artefact_folder(namespace: str, spec: Any, version: str | int | None = None,
                    root: str | os.PathLike | None = None) -> Path:
    """``cache_dir(namespace) / key`` (under ``root`` instead of ``$ECGKIT_CACHE`` when given)."""
    return cache_dir(namespace, root=root) / key(namespace, spec, version)


def build_or_load(namespace: str, spec: Any, build: Callable[[Path], Any], load: Callable[[Path], Any],
                  version: str | int | None = None, root: str | os.PathLike | None = None):
    """``load(folder)`` of the cached artefact, building it first with ``build(tmp_folder)`` when
    absent. Returns ``(artefact, key, built)``."""
    k = key(namespace, spec, version)
    folder = cache_dir(namespace, root=root) / k
    if (folder / "complete").is_file():
        return load(folder), k, False
    tmp = folder.with_name(f".{k}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        (tmp / "spec.json").write_text(canonical_json({"namespace": namespace, "key": k, "spec": spec}))
        (tmp / "complete").write_text("ok\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load(folder), k, True


# --------------------------------------------------------------------------------------------
# Data frames in an artefact folder (no pickle)
# --------------------------------------------------------------------------------------------

def _to_json(value):
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):   # a numpy scalar
        return value.item()
    return value


def _from_json(value):
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {_from_json(k): _from_json(v) for k, v in value["__dict__"]}
    return value


def save_frames(folder: str | os.PathLike, name: str, frames: list) -> None:
    """Write ``frames`` (pandas data frames) as ``<name>.npz`` (numeric columns, concatenated
    over the frames) and ``<name>.json.gz`` (layout, index, ``attrs`` and the other columns)."""
    import gzip

    import numpy as np
    import pandas as pd

    numeric: dict[str, list] = {}
    objects: dict[str, list] = {}
    layout = []
    for frame in frames:
        index = frame.index
        plain_index = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
        columns = []
        for position, column in enumerate(frame.columns):
            values = frame.iloc[:, position]
            dtype = str(values.dtype)
            kind = "num" if values.dtype.kind in "biuf" and isinstance(values.dtype, np.dtype) else "obj"
            store = canonical_json([kind, dtype, position if kind == "obj" else 0])
            if kind == "num":
                numeric.setdefault(store, []).append(values.to_numpy())
            else:
                objects.setdefault(store, []).extend(_to_json(v) for v in values.tolist())
            columns.append([_to_json(column), dtype, store])
        layout.append({"n": len(frame), "columns": columns, "attrs": _to_json(dict(frame.attrs)),
                       "columns_dtype": str(frame.columns.dtype),
                       "index": None if plain_index else {
                           "names": _to_json(list(index.names)), "dtype": str(index.dtype),
                           "values": _to_json(index.tolist())}})
    stores = {f"a{i}": np.concatenate(arrays) for i, arrays in enumerate(numeric.values())}
    np.savez(Path(folder) / f"{name}.npz", **stores)
    blob = {"layout": layout, "numeric": {s: f"a{i}" for i, s in enumerate(numeric)}, "objects": objects}
    with gzip.open(Path(folder) / f"{name}.json.gz", "wt", encoding="utf-8", compresslevel=3) as fh:
        json.dump(blob, fh, ensure_ascii=False)


def load_frames(folder: str | os.PathLike, name: str) -> list:
    """The frames :func:`save_frames` wrote, equal to those saved (values, dtypes, index, attrs)."""
    import gzip

    import numpy as np
    import pandas as pd

    with gzip.open(Path(folder) / f"{name}.json.gz", "rt", encoding="utf-8") as fh:
        blob = json.load(fh)
    with np.load(Path(folder) / f"{name}.npz", allow_pickle=False) as z:
        numeric = {s: z[a] for s, a in blob["numeric"].items()}
    objects = blob["objects"]
    offsets: dict[str, int] = {}
    frames = []
    for item in blob["layout"]:
        n, data = item["n"], {}
        for column, dtype, store in item["columns"]:
            start = offsets.get(store, 0)
            offsets[store] = start + n
            if store in numeric:
                values = numeric[store][start:start + n]
            else:
                values = [_from_json(v) for v in objects[store][start:start + n]]
                if dtype == "object":        # element by element: tuples and lists stay objects
                    held = np.empty(len(values), dtype=object)
                    held[:] = [None] * len(values)
                    for i, v in enumerate(values):
                        held[i] = v
                    values = held
            data[len(data)] = pd.Series(values, dtype=pd.api.types.pandas_dtype(dtype), copy=False)
        index = item["index"]
        if index is None:
            idx = pd.RangeIndex(n)
        else:
            names = _from_json(index["names"])
            values = _from_json(index["values"])
            idx = (pd.MultiIndex.from_tuples(values, names=names) if len(names) > 1 else
                   pd.Index(values, dtype=pd.api.types.pandas_dtype(index["dtype"]), name=names[0]))
        frame = pd.DataFrame({k: v.set_axis(idx) for k, v in data.items()}, index=idx)
        frame.columns = pd.Index([_from_json(c) for c, _, _ in item["columns"]],
                                 dtype=pd.api.types.pandas_dtype(item["columns_dtype"]))
        frame.attrs.update(_from_json(item["attrs"]))
        frames.append(frame)
    return frames
