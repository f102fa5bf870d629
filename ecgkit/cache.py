"""Cache keys and the build-or-load step every cached artefact goes through.

:func:`key` is the one key function: the sha256 of a canonical JSON of ``{namespace, version,
spec}``, cut to :data:`DIGEST_CHARS` hex characters. ``version`` defaults to the namespace's entry
in :data:`ecgkit.versions.VERSIONS` (bumped by hand when what an artefact holds changes); a
module's own source is never part of a key (a comment edit must not rebuild anything).

:func:`build_or_load` keeps an artefact in ``cache_dir(namespace, key)``: it loads a complete
folder, else builds into a temporary folder, writes ``spec.json`` and a ``complete`` marker, and
renames it into place (a half-written artefact is never read).

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

__all__ = ["DIGEST_CHARS", "canonical_json", "key", "keys_used", "build_or_load", "artefact_folder"]

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
