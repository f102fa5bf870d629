"""The knowledge corpus: textbook-style documents and expert cards, plus the user's own files.

Layout of a corpus root (default: the packaged ``ecgkit/knowledge/corpus``)::

    documents/*.md                      # chapters (front matter: kind: document, title, topics, ...)
    expert/conditions/<key>.md          # one card per catalog condition (kind: condition, key, name)
    expert/features/<key>.md            # one card per catalog feature (kind: feature, key, name)

Two collections: ``documents`` (everything under ``documents/``) and ``expert`` (everything
under ``expert/``). Files elsewhere in the root (a README, say) are not part of the corpus.

Users add their own files to either collection without touching the package:

- ``load_corpus(extra={"documents": ["/path/a"], "expert": ["/path/b"]})``, or
- ``ECGKIT_KNOWLEDGE_EXTRA="documents=/path/a:expert=/path/b"`` (several folders per
  collection allowed; ``;`` works as a separator too).

Readable formats: Markdown (``.md``, ``.markdown``), plain text (``.txt``) and PDF (``.pdf``,
text extracted with pypdf). Markdown and text files may start with a YAML front matter block
(``---`` ... ``---``), parsed with ``yaml.safe_load`` and stripped from the text (the
``# Title`` line below it is kept). A file that cannot be read (bad PDF, not UTF-8, broken
front matter, no text) is skipped and listed in the :class:`CorpusReport` attached to the
returned list (``docs.report``); it never stops the load. A corpus with no readable document
raises :class:`ValueError`.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from ..config import settings

__all__ = [
    "COLLECTIONS",
    "SUFFIXES",
    "Doc",
    "Corpus",
    "CorpusReport",
    "CorpusFile",
    "default_root",
    "discover_files",
    "parse_extra",
    "load_corpus",
    "read_file",
]

log = logging.getLogger(__name__)

COLLECTIONS = ("documents", "expert")
SUFFIXES = (".md", ".markdown", ".txt", ".pdf")
EXTRA_ENV = "ECGKIT_KNOWLEDGE_EXTRA"
_KIND_BY_FOLDER = {"conditions": "condition", "features": "feature"}


class MetadataFields:
    """Read-only views of the usual ``metadata`` entries (empty string when absent)."""

    metadata: dict

    def _field(self, name: str) -> str:
        return self.metadata.get(name, "")

    title = property(lambda self: self._field("title"))
    source = property(lambda self: self._field("source"))
    collection = property(lambda self: self._field("collection"))
    kind = property(lambda self: self._field("kind"))
    key = property(lambda self: self._field("key"))
    section = property(lambda self: self._field("section"))


@dataclass
class Doc(MetadataFields):
    """One corpus file: its text (front matter stripped) and metadata.

    ``metadata`` always holds ``collection`` ("documents"|"expert"), ``source`` (the path
    relative to the corpus root, or ``extra:<folder name>/<relative path>`` for an extra folder),
    ``kind`` (document, condition, feature, ...), ``key``, ``name`` and ``title`` (empty strings
    when unknown), plus every other front matter field.
    """

    text: str
    metadata: dict = field(default_factory=dict)


@dataclass
class CorpusReport:
    """What a load read and what it skipped (``skipped``: source -> reason)."""

    loaded: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    by_collection: dict[str, int] = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_collection.items()))
        text = f"{self.loaded} files loaded ({parts or 'none'}), {self.n_skipped} skipped"
        for source, reason in self.skipped.items():
            text += f"\n  skipped {source}: {reason}"
        return text


class Corpus(list):
    """A ``list[Doc]`` that also carries the load's :class:`CorpusReport` as ``.report``."""

    def __init__(self, docs: Iterable[Doc] = (), report: CorpusReport | None = None):
        super().__init__(docs)
        self.report = report or CorpusReport()


@dataclass(frozen=True)
class CorpusFile:
    """A candidate corpus file before it is read."""

    collection: str
    path: Path
    source: str
    kind_hint: str = ""  # "condition"/"feature" from an expert/conditions|features folder

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def default_root() -> Path:
    """The packaged corpus folder."""
    return Path(__file__).resolve().parent / "corpus"


# ----------------------------------------------------------------------------- discovery


def parse_extra(value: str | None) -> dict[str, list[Path]]:
    """``"documents=/a:expert=/b;documents=/c"`` -> ``{"documents": [/a, /c], "expert": [/b]}``."""
    out: dict[str, list[Path]] = {}
    if not value or not value.strip():
        return out
    names = "|".join(COLLECTIONS)
    for item in re.split(rf"[;:](?=\s*(?:{names})\s*=)", value.strip()):
        item = item.strip().strip(";:").strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(
                f"{EXTRA_ENV}: {item!r} is not 'collection=folder' (collections: {COLLECTIONS})"
            )
        name, folder = (s.strip() for s in item.split("=", 1))
        if name not in COLLECTIONS:
            raise ValueError(f"{EXTRA_ENV}: unknown collection {name!r}; choose one of {COLLECTIONS}")
        if folder:
            out.setdefault(name, []).append(Path(folder).expanduser())
    return out


def _normalise_extra(extra: Mapping | None) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for name, folders in (extra or {}).items():
        if name not in COLLECTIONS:
            raise ValueError(f"unknown collection {name!r}; choose one of {COLLECTIONS}")
        if isinstance(folders, (str, os.PathLike)):
            folders = [folders]
        out.setdefault(name, []).extend(Path(f).expanduser() for f in folders)
    return out


def _walk(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith((".", "_")) for part in rel.parts):
            continue  # hidden files, __pycache__, editor droppings
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            files.append(path)
    return files


def _kind_hint(rel: Path) -> str:
    for part in rel.parts[:-1]:
        if part in _KIND_BY_FOLDER:
            return _KIND_BY_FOLDER[part]
    return ""


def discover_files(root: str | os.PathLike | None = None, extra: Mapping | None = None,
                   use_env: bool = True) -> list[CorpusFile]:
    """Every candidate file of the corpus (root + ``extra`` + ``$ECGKIT_KNOWLEDGE_EXTRA``), sorted."""
    root = Path(root).expanduser() if root is not None else default_root()
    files: list[CorpusFile] = []
    for collection in COLLECTIONS:
        folder = root / collection
        if folder.is_dir():
            for path in _walk(folder):
                rel = path.relative_to(root)
                files.append(CorpusFile(collection, path, rel.as_posix(),
                                        _kind_hint(path.relative_to(folder))))
    extras = _normalise_extra(extra)
    if use_env:
        for name, folders in parse_extra(settings().knowledge_extra).items():
            extras.setdefault(name, []).extend(folders)
    seen = {f.path.resolve() for f in files}
    sources = {f.source for f in files}
    for collection, folders in extras.items():
        for folder in folders:
            if folder.is_file():  # a single file is allowed too
                candidates, base = [folder], folder.parent
            elif folder.is_dir():
                candidates, base = _walk(folder), folder
            else:
                raise FileNotFoundError(f"extra {collection} folder {str(folder)!r} does not exist")
            for path in candidates:
                if path.resolve() in seen:
                    continue
                seen.add(path.resolve())
                rel = path.relative_to(base)
                source = f"extra:{base.name}/{rel.as_posix()}"
                n = 2
                while source in sources:
                    source = f"extra:{base.name}-{n}/{rel.as_posix()}"
                    n += 1
                sources.add(source)
                files.append(CorpusFile(collection, path, source, _kind_hint(rel)))
    return files


# ----------------------------------------------------------------------------- reading

_FRONT = re.compile(r"\A---[ \t]*\n(?:(.*?)\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_H1 = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    return "\n\n".join(p for p in pages if p)


def _split_front_matter(text: str) -> tuple[dict, str]:
    match = _FRONT.match(text)
    if not match:
        if text.startswith("---\n") or text.startswith("---\r\n"):
            raise ValueError("front matter opened with '---' is never closed")
        return {}, text
    meta = yaml.safe_load(match.group(1) or "")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ValueError(f"front matter is a {type(meta).__name__}, not a mapping")
    return meta, text[match.end():]


def _jsonable(value):
    """Front matter values as JSON-friendly types (dates become ISO strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def read_file(file: CorpusFile) -> Doc:
    """Read one corpus file; raises (ValueError, UnicodeDecodeError, pypdf errors...) when unreadable."""
    suffix = file.path.suffix.lower()
    meta: dict = {}
    if suffix == ".pdf":
        text = _read_pdf(file.path)
    else:
        raw = file.path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        if "\x00" in text:
            raise ValueError("binary content (NUL bytes) in a text file")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        try:
            meta, text = _split_front_matter(text)
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"broken YAML front matter: {first}") from exc
    text = text.strip()
    if not text:
        raise ValueError("no text" + (" could be extracted (scanned PDF?)" if suffix == ".pdf" else ""))
    meta = _jsonable(meta)
    kind = str(meta.get("kind") or file.kind_hint or "document")
    key = str(meta.get("key") or (file.path.stem if kind in ("condition", "feature") else ""))
    name = str(meta.get("name") or "")
    title = str(meta.get("title") or "")
    if not title:
        h1 = _H1.search(text)
        if h1:
            title = h1.group(1).strip()
        elif name:
            title = name[:1].upper() + name[1:]
        else:
            title = file.path.stem.replace("_", " ").replace("-", " ").strip().capitalize()
    meta.update(collection=file.collection, source=file.source, kind=kind, key=key, name=name,
                title=title, format=suffix.lstrip("."))
    return Doc(text=text, metadata=meta)


def load_corpus(root: str | os.PathLike | None = None, extra: Mapping | None = None,
                use_env: bool = True, files: list[CorpusFile] | None = None) -> Corpus:
    """All readable corpus files as :class:`Doc` objects (a :class:`Corpus`, with ``.report``).

    ``root``: the corpus folder (default: the packaged corpus). ``extra``: collection -> folder
    or list of folders with the user's own files; ``$ECGKIT_KNOWLEDGE_EXTRA`` adds more unless
    ``use_env=False``. ``files``: an already discovered file list (:func:`discover_files`),
    read instead of discovering again. Unreadable files are skipped and reported; raises
    ``ValueError`` when nothing readable is left.
    """
    if files is None:
        files = discover_files(root, extra, use_env=use_env)
    report = CorpusReport()
    docs: list[Doc] = []
    for file in files:
        try:
            doc = read_file(file)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, never fatal
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            report.skipped[file.source] = reason
            log.warning("knowledge corpus: skipped %s (%s)", file.source, reason)
            continue
        docs.append(doc)
        report.by_collection[file.collection] = report.by_collection.get(file.collection, 0) + 1
    report.loaded = len(docs)
    if not docs:
        where = Path(root) if root is not None else default_root()
        detail = f"; {report.n_skipped} unreadable file(s) skipped: {report.skipped}" if report.skipped else ""
        raise ValueError(
            f"the knowledge corpus is empty: no readable {'/'.join(SUFFIXES)} file under "
            f"{where}/documents or {where}/expert (nor in extra folders){detail}"
        )
    return Corpus(docs, report)


def corpus_stats(chunks):
    """Files, chunks and chunk lengths per collection and kind of text."""
    import pandas as pd

    frame = pd.DataFrame([{"collection": c.metadata.get("collection"), "kind": c.metadata.get("kind"),
                           "source": c.metadata.get("source"), "chars": len(c.text)} for c in chunks])
    table = frame.groupby(["collection", "kind"]).agg(
        files=("source", "nunique"), chunks=("chars", "size"), characters=("chars", "sum"),
        median_chunk=("chars", "median"), max_chunk=("chars", "max"))
    table.loc[("all", ""), :] = [frame["source"].nunique(), len(frame), frame["chars"].sum(),
                                 frame["chars"].median(), frame["chars"].max()]
    return table.astype({"files": int, "chunks": int, "characters": int, "max_chunk": int})
