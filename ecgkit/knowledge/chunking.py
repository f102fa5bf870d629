"""Sentence-preserving chunking (ALFRED: chunks of at most 1,024 characters, no sentence cut).

:func:`split_units` reads markdown/plain text into *units*: sentences of paragraphs and list
items, heading lines, table rows and code lines. :func:`chunk_text` packs units greedily into
chunks of at most ``max_chars`` characters; a chunk always ends at a unit end, so no sentence
is ever cut, except a single sentence longer than ``max_chars``: that one is split at clause
boundaries (``;``, then ``,``), then between words, then (a word longer than a chunk) anywhere,
and counted in :class:`ChunkStats` so the invariant ``len(chunk) <= max_chars`` always holds.
A heading that would end a chunk moves to the next chunk, with the content it introduces.

Sentence boundaries: ``.``, ``!`` or ``?`` (plus closing quotes/brackets) followed by
whitespace and a capital letter, a digit, an opening quote/bracket or markdown emphasis.
Decimals (``0.12 s``) never split (no space after the point); common abbreviations
(``e.g.``, ``i.e.``, ``vs.``, ``Dr.``, ``Fig.``, ``et al.``, ``approx.``, ``cf.``, ``ed.`` ...),
dotted acronyms (``U.S.``), list markers (``1.``) and a journal name before a citation's
year and volume (``Circulation. 2007;115:1325``) never end a sentence; a unit such as ``25 mm/s.`` or ``120 ms.``
followed by a capitalised word does.

:func:`chunk_corpus` chunks every :class:`~ecgkit.knowledge.corpus.Doc` section by section
(``#``/``##``/``###`` headings) and prefixes each chunk with the document's title and section,
e.g. ``"Atrial fibrillation — Criteria:"``; the prefix counts in ``max_chars``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

__all__ = [
    "MAX_CHARS",
    "ABBREVIATIONS",
    "Unit",
    "Chunk",
    "ChunkStats",
    "split_units",
    "split_sentences",
    "chunk_text",
    "chunk_corpus",
    "chunk_prefix",
]

MAX_CHARS = 1024

#: Tokens ending in "." that do not end a sentence (matched case-sensitively, leading
#: brackets/quotes stripped). Units such as "ms." / "mm/s." / "mV." are deliberately absent.
ABBREVIATIONS = frozenset(
    """e.g. i.e. E.g. I.e. vs. Vs. v. cf. Cf. viz. al. approx. Approx. ca. c.
    Dr. Drs. Mr. Mrs. Ms. Prof. St. Jr. Sr. Fig. Figs. fig. figs. Eq. Eqs. eq. Ref. Refs. ref.
    No. Nos. no. Nr. Vol. vol. pp. Ch. Chap. Sec. Sect. sect. resp. incl. excl. esp. Tab.
    ed. eds. Ed. Eds. min. max. Inc. Ltd. Co. Corp. Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec.""".split()
)

_BOUNDARY = re.compile(
    r"[.!?]+[\"'”’)\]]*"                      # the end mark, closing quotes/brackets
    r"(?P<ws>\s+)"                            # whitespace
    r"(?=[\"'“‘(\[*_`]*(?:[A-Z0-9]|aV[RLF]\b))"  # a capitalised word, a digit, aVR/aVL/aVF
    r"(?!\d{4}\s*[;:(])"                     # not a citation's "Journal. 2007;115:..."
)
_MARKER_ONLY = re.compile(r"^\s*(?:[-*+•]\s+)?(?:\d{1,3}|[A-Za-z]|[ivxIVX]{1,4})[.)]$")
_DOTTED = re.compile(r"^(?:[A-Za-z]\.){2,}$")  # U.S., e.g. variants, a.m.
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_BULLET = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S")
_TABLE = re.compile(r"^[ \t]*\|")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_RULE = re.compile(r"^[ \t]*(?:-{3,}|\*{3,}|_{3,})[ \t]*$")


@dataclass
class Unit:
    """One indivisible piece of text: a sentence, a heading line, a table row or a code line."""

    text: str
    kind: str  # "sentence", "heading", "table", "code"
    block: int  # units of one paragraph / list item share a block
    sep: str = "\n\n"  # separator before the unit's block ("\n" when no blank line before it)
    level: int = 0  # heading level
    oversize: bool = False  # a piece of a sentence longer than a chunk


@dataclass
class ChunkStats:
    """Counts from chunking (``oversize``: sentences longer than a chunk, split anyway)."""

    chunks: int = 0
    units: int = 0
    oversize: int = 0
    oversize_sources: list[str] = field(default_factory=list)
    max_len: int = 0

    def as_dict(self) -> dict:
        return {"chunks": self.chunks, "units": self.units, "oversize_sentences": self.oversize,
                "oversize_sources": sorted(set(self.oversize_sources)), "max_chunk_chars": self.max_len}


@dataclass
class Chunk:
    """A chunk of a corpus document and its metadata.

    ``metadata``: collection, source, kind, key, name, title, section, chunk (index within its
    document), n_chars, oversize (part of a sentence split for length).
    """

    text: str
    metadata: dict

    @property
    def id(self) -> str:
        return f"{self.metadata.get('source', '')}#{self.metadata.get('chunk', 0)}"


# ----------------------------------------------------------------------------- sentences


def _sentence_spans(text: str) -> list[str]:
    """Split one block's text into sentences (whitespace-normalised)."""
    text = " ".join(text.split())
    if not text:
        return []
    out, start = [], 0
    for match in _BOUNDARY.finditer(text):
        end = match.start("ws")
        piece = text[start:end]
        last = piece.rsplit(" ", 1)[-1].lstrip("(\"'“‘[*_")
        if last.endswith(".") and (last in ABBREVIATIONS or _DOTTED.match(last)):
            continue
        if _MARKER_ONLY.match(piece):  # "1. Item": the list marker is not a sentence
            continue
        if piece.strip():
            out.append(piece.strip())
        start = match.end("ws")
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return out


def split_units(text: str) -> list[Unit]:
    """Markdown/plain text -> units (sentences, headings, table rows, code lines)."""
    units: list[Unit] = []
    block = -1
    para: list[str] = []  # lines of the paragraph or list item being read
    para_sep = "\n\n"
    blank_before = True
    in_fence = False

    def flush():
        nonlocal para
        if para:
            for i, sentence in enumerate(_sentence_spans(" ".join(para))):
                units.append(Unit(sentence, "sentence", block, para_sep))
        para = []

    for raw in text.split("\n"):
        line = raw.rstrip()
        sep = "\n\n" if blank_before else "\n"
        if in_fence or _FENCE.match(line):
            flush()
            if _FENCE.match(line):
                in_fence = not in_fence
            if line.strip():
                block += 1
                units.append(Unit(line, "code", block, sep))
            blank_before = not line.strip() and blank_before
            continue
        if not line.strip():
            flush()
            blank_before = True
            continue
        heading = _HEADING.match(line.strip())
        if heading:
            flush()
            block += 1
            units.append(Unit(line.strip(), "heading", block, sep, level=len(heading.group(1))))
        elif _RULE.match(line):
            flush()
        elif _TABLE.match(line):
            flush()
            block += 1
            units.append(Unit(line.strip(), "table", block, sep))
        elif _BULLET.match(line) or not para:
            flush()
            block += 1
            para, para_sep = [line.strip()], sep
        else:  # continuation of a paragraph or list item
            para.append(line.strip())
        blank_before = False
    flush()
    return units


def split_sentences(text: str) -> list[str]:
    """The units of ``text`` as strings: its sentences, headings, table rows and code lines."""
    return [u.text for u in split_units(text)]


# ----------------------------------------------------------------------------- packing


def _split_long(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters: at ``;``, then ``,``, then words, then anywhere."""
    if len(text) <= limit:
        return [text]
    for pattern in (r"(?<=;)\s+", r"(?<=,)\s+", r"\s+"):
        parts = [p for p in re.split(pattern, text) if p]
        if len(parts) > 1:
            pieces, cur = [], ""
            for part in parts:
                if not cur:
                    cur = part
                elif len(cur) + 1 + len(part) <= limit:
                    cur = f"{cur} {part}"
                else:
                    pieces.append(cur)
                    cur = part
            pieces.append(cur)
            out: list[str] = []
            for piece in pieces:
                out.extend(_split_long(piece, limit))
            return out
    return [text[i:i + limit] for i in range(0, len(text), limit)]


def _join(units: Sequence[Unit]) -> str:
    parts = []
    for i, unit in enumerate(units):
        if i:
            parts.append(" " if unit.block == units[i - 1].block else unit.sep)
        parts.append(unit.text)
    return "".join(parts)


def _pack(units: Sequence[Unit], max_chars: int) -> list[tuple[str, bool]]:
    """Greedy packing; returns ``[(chunk text, holds a piece of an over-long sentence)]``."""
    groups: list[list[Unit]] = []
    cur: list[Unit] = []
    for unit in units:
        if cur and len(_join(cur + [unit])) > max_chars:
            trailing = 0
            while trailing < len(cur) and cur[-1 - trailing].kind == "heading":
                trailing += 1
            if 0 < trailing < len(cur) and len(_join(cur[-trailing:] + [unit])) <= max_chars:
                groups.append(cur[:-trailing])
                cur = cur[-trailing:]
            else:
                groups.append(cur)
                cur = []
        cur.append(unit)
    if cur:
        groups.append(cur)
    out = [(_join(g).strip(), any(u.oversize for u in g)) for g in groups]
    return [(text, flag) for text, flag in out if text]


def _expand(units: Iterable[Unit], max_chars: int, stats: ChunkStats | None, source: str) -> list[Unit]:
    out = []
    for unit in units:
        if len(unit.text) <= max_chars:
            out.append(unit)
            continue
        if stats is not None:
            stats.oversize += 1
            stats.oversize_sources.append(source)
        for piece in _split_long(unit.text, max_chars):
            out.append(Unit(piece, unit.kind, unit.block, unit.sep, unit.level, oversize=True))
    if stats is not None:
        stats.units += len(out)
    return out


def _chunks(text: str, max_chars: int, stats: ChunkStats | None, source: str) -> list[tuple[str, bool]]:
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    return _pack(_expand(split_units(text), max_chars, stats, source), max_chars)


def chunk_text(text: str, max_chars: int = MAX_CHARS, stats: ChunkStats | None = None,
               source: str = "") -> list[str]:
    """Chunks of at most ``max_chars`` characters that never cut a sentence.

    Units are packed greedily; a sentence longer than ``max_chars`` is split (and counted in
    ``stats.oversize`` when ``stats`` is given).
    """
    chunks = [c for c, _ in _chunks(text, max_chars, stats, source)]
    if stats is not None:
        stats.chunks += len(chunks)
        stats.max_len = max([stats.max_len, *map(len, chunks)])
    return chunks


# ----------------------------------------------------------------------------- documents


def chunk_prefix(title: str, section: str = "", max_len: int | None = None) -> str:
    """``"Title — Section:"`` (or ``"Title:"``), shortened to ``max_len`` characters."""
    title = " ".join(str(title).split()) or "Untitled"
    prefix = f"{title} — {section}:" if section else f"{title}:"
    if max_len is not None and len(prefix) > max_len:
        prefix = prefix[: max(max_len - 2, 1)].rstrip() + "…:"
    return prefix


def _heading_text(line: str) -> str:
    match = _HEADING.match(line)
    text = match.group(2) if match else line
    return " ".join(text.replace("**", "").replace("`", "").split())


def _sections(text: str, title: str) -> list[tuple[str, str]]:
    """``[(section, body)]`` split at headings of level 1-3 (the title's own H1 is dropped)."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    h2 = h3 = ""
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line.strip())
        if match and len(match.group(1)) <= 3:
            level, name = len(match.group(1)), _heading_text(line.strip())
            if level == 1:
                h2 = h3 = ""
                if name.lower() != title.lower():
                    h2 = name
            elif level == 2:
                h2, h3 = name, ""
            else:
                h3 = name
            section = " / ".join(s for s in (h2, h3) if s)
            sections.append((section, []))
            continue
        sections[-1][1].append(line)
    return [(name, "\n".join(lines).strip()) for name, lines in sections if "\n".join(lines).strip()]


_KEEP = ("collection", "source", "kind", "key", "name", "title", "format")


SKIP_SECTIONS = {"references"}  # bibliography lists match queries by keyword and answer nothing


def chunk_corpus(docs: Iterable, max_chars: int = MAX_CHARS,
                 stats: ChunkStats | None = None) -> list[Chunk]:
    """Chunk every document section by section; each chunk starts with ``"Title — Section:"``.

    ``docs``: :class:`~ecgkit.knowledge.corpus.Doc` objects (anything with ``text`` and
    ``metadata``). Every chunk has at most ``max_chars`` characters, prefix included. The
    "References" section is not chunked; the front matter's references go into each chunk's
    metadata so a retrieved chunk still names its sources.
    """
    chunks: list[Chunk] = []
    for doc in docs:
        meta = doc.metadata
        title = str(meta.get("title") or meta.get("name") or meta.get("source") or "Untitled")
        base = {k: ("" if meta.get(k) is None else str(meta.get(k))) for k in _KEEP}
        topics = meta.get("topics")
        if topics:
            base["topics"] = ", ".join(map(str, topics)) if isinstance(topics, list) else str(topics)
        refs = meta.get("references")
        if refs:  # a card's references travel with each of its chunks instead of being retrieved
            base["references"] = " | ".join(map(str, refs)) if isinstance(refs, list) else str(refs)
        index = 0
        for section, body in _sections(doc.text, title):
            if section.strip().lower() in SKIP_SECTIONS:
                continue
            prefix = chunk_prefix(title, section, max_len=max(max_chars // 4, 8))
            limit = max_chars - len(prefix) - 1
            if limit < 1:  # absurdly small max_chars: no room for a prefix
                prefix, limit = "", max_chars
            pieces = _chunks(body, limit, stats, base["source"])
            if stats is not None:
                stats.chunks += len(pieces)
            for piece, oversize in pieces:
                text = f"{prefix}\n{piece}" if prefix else piece
                chunks.append(Chunk(text, {**base, "section": section, "chunk": index,
                                           "n_chars": len(text), "oversize": oversize}))
                index += 1
    if stats is not None:
        stats.max_len = max([stats.max_len, *(len(c.text) for c in chunks)])
    return chunks
