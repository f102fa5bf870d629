"""ESI's CQA: a retrieval-augmented LLM turns ECG statements into waveform descriptions.

For each statement (a PTB-XL / synthetic-cohort SCP code, or a MIMIC-IV-ECG report line) the LLM
is asked "How is {condition} reflected in a 12-lead ECG?" with the top-k chunks of the knowledge
base in its prompt. Descriptions are cached on disk per statement (not per record), keyed by
every input that changes them. Each record's text is then assembled as in the ESI paper::

    This patient is a 66-year-old male. ECG findings: sinus rhythm; first-degree AV block.
    Potential ECG waveforms: <description of SR> <description of 1AVB>

Description quality is BERTScore (local encoder) against the expert cards' "Waveform" sections,
with the card being scored kept out of retrieval; :func:`cqa_ablation` runs the paper's appendix
ablations (top-k 1-5, retrieval sources, five rephrasings of the question).

Main entry points: :func:`dataset_statements`, :func:`describe_statements`, :func:`record_text`,
:func:`cqa_texts`, :func:`evaluation_items`, :func:`bertscore`, :func:`cqa_ablation`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..config import ProfileSettings, cache_dir
from ..versions import VERSIONS

__all__ = [
    "QUESTION", "REPHRASINGS", "SYSTEM", "RETRIEVAL_SETTINGS", "PAPER_RETRIEVAL",
    "MAX_NEW_TOKENS", "CqaSettings", "ptbxl_statements", "report_statements", "dataset_statements",
    "record_statements", "expert_cards", "statement_cards", "retrieve_excluding",
    "cqa_prompt", "describe_statements", "statement_names", "grade_descriptions", "text_quality",
    "record_text", "cqa_texts", "card_texts", "evaluation_items", "bertscore",
    "cqa_ablation", "with_paper",
]

#: The paper's CQA question.
QUESTION = "How is {condition} reflected in a 12-lead ECG?"
#: Five wordings of the question (the first is the paper's) for the prompt ablation.
REPHRASINGS = (
    QUESTION,
    "What does {condition} look like on a 12-lead ECG?",
    "Describe the 12-lead ECG waveform changes caused by {condition}.",
    "Which waveform features of a standard 12-lead ECG indicate {condition}?",
    "Explain how {condition} shows in the waves, intervals and segments of a 12-lead ECG.",
)
SYSTEM = ("You are a cardiologist. Using the context when it helps, answer in two short sentences: how the "
          "condition changes the waves, intervals and segments of a 12-lead ECG. Do not invent measurements.")
#: the answer's length, asked for after the question (SmolLM2-135M ignores it in the system message: on
#: five PTB-XL statements 5 of 5 answers hit an 80- or 112-token limit with it there, 2 of 5 hit 96 tokens
#: with it here; measured for issue 25)
LENGTH_INSTRUCTION = "Answer in two sentences."
#: Retrieval settings of the ablation: name -> collections searched (empty: no retrieval).
RETRIEVAL_SETTINGS = {"none": (), "documents": ("documents",), "expert": ("expert",),
                      "documents + expert": ("documents", "expert")}
#: Our retrieval settings beside the paper's (two textbooks): no / one / both textbooks.
PAPER_RETRIEVAL = {"none": "no textbook", "documents": "one textbook", "expert": "one textbook",
                   "documents + expert": "both textbooks"}
@dataclass(frozen=True)
class CqaSettings(ProfileSettings):
    """Description length per profile: room for the two sentences :data:`LENGTH_INSTRUCTION` asks for
    on a CPU, a paragraph with a GPU or an endpoint."""

    max_new_tokens: int = 96

    PROFILES = {"full": dict(max_new_tokens=192)}


#: description length per profile
MAX_NEW_TOKENS = {name: CqaSettings.for_profile(name).max_new_tokens for name in ("quick", "full")}
DEFAULT_COLLECTIONS = ("documents", "expert")
#: Bumped when the prompt assembly or the cleaning of answers changes (part of the cache key).
FORMAT_VERSION = VERSIONS["cqa"]


# ----------------------------------------------------------------------------- statements


def _statement_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["statement", "condition", "source", "records"])
    return frame.set_index("statement")


def ptbxl_statements(dataset, present_only: bool = True) -> pd.DataFrame:
    """The SCP statements of a PTB-XL-style dataset (real PTB-XL or the synthetic cohort).

    ``dataset``: anything with ``.scp`` (the scp_statements table) and ``.meta`` (with
    ``scp_codes`` dicts), or an scp_statements DataFrame. One row per statement code (index
    ``statement``): ``condition`` (its description, used in the question), ``source``,
    ``records`` (how many records carry it; NaN without ``meta``). ``present_only``: only the
    codes that occur in the records, most frequent first.
    """
    scp = dataset if isinstance(dataset, pd.DataFrame) else dataset.scp
    meta = None if isinstance(dataset, pd.DataFrame) else dataset.meta
    if scp is None or "description" not in scp.columns:
        raise ValueError("the dataset has no scp_statements table with a 'description' column")
    counts = Counter(code for codes in meta["scp_codes"] for code in codes) if meta is not None else Counter()
    rows = []
    for code, description in scp["description"].items():
        n = counts.get(code, 0) if meta is not None else math.nan
        if present_only and meta is not None and not n:
            continue
        text = description.strip() if isinstance(description, str) else ""
        condition = text or str(code)
        rows.append({"statement": str(code), "condition": condition, "source": "scp", "records": n})
    frame = _statement_frame(rows)
    if meta is not None and present_only:
        frame = frame.sort_values("records", ascending=False, kind="stable")
    return frame


def _report_line(text) -> str:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    line = " ".join(str(text).split()).strip()
    return "" if line.lower() == "nan" else line.rstrip(".").strip()


def report_statements(lines: Iterable[str] | pd.DataFrame) -> pd.DataFrame:
    """Free-text report lines (e.g. MIMIC-IV-ECG's machine statements) as statements.

    ``lines``: a list of lines, or a records table with ``report_0`` ... ``report_N`` columns
    (MIMIC-IV-ECG's ``machine_measurements``). Each distinct non-empty line (whitespace
    normalised, trailing period dropped) is one statement, its own condition; most frequent first.
    """
    if isinstance(lines, str):
        raise TypeError("report_statements takes a list of report lines, not one string")
    if isinstance(lines, pd.DataFrame):
        columns = _report_columns(lines)
        if not columns:
            raise ValueError("the table has no report_N columns")
        lines = [line for row in lines[columns].to_numpy(dtype=object)
                 for line in dict.fromkeys(map(_report_line, row))]
    counts = Counter(line for line in map(_report_line, lines) if line)
    rows = [{"statement": line, "condition": line, "source": "report", "records": n}
            for line, n in counts.most_common()]
    return _statement_frame(rows)


def _report_columns(meta: pd.DataFrame) -> list[str]:
    return [c for c in meta.columns if re.fullmatch(r"report_\d+", str(c))]


def record_statements(dataset) -> pd.Series:
    """Record id -> its statements in order: SCP codes by likelihood (PTB-XL), or report lines."""
    meta = dataset.meta
    if "scp_codes" in meta.columns and getattr(dataset, "scp", None) is not None:
        def ordered(codes):
            return [c for c, _ in sorted(codes.items(), key=lambda kv: -(kv[1] or 0))]
        return pd.Series([ordered(c) for c in meta["scp_codes"]], index=meta.index, name="statements")
    columns = _report_columns(meta)
    if columns:
        values = meta[columns].to_numpy(dtype=object)
        return pd.Series([[s for s in dict.fromkeys(map(_report_line, row)) if s] for row in values],
                         index=meta.index, name="statements")
    raise ValueError("the dataset has neither scp_codes with an scp table nor report_N columns")


def dataset_statements(dataset, present_only: bool = True) -> pd.DataFrame:
    """The statements of a dataset: SCP codes (PTB-XL, synthetic cohort) or report lines (MIMIC)."""
    if "scp_codes" in dataset.meta.columns and getattr(dataset, "scp", None) is not None:
        return ptbxl_statements(dataset, present_only)
    return report_statements(line for lines in record_statements(dataset) for line in lines)


def _as_statements(statements) -> pd.DataFrame:
    """A statements table from a table, a mapping statement -> condition, or a list of strings."""
    if isinstance(statements, pd.DataFrame):
        if "condition" not in statements.columns:
            raise ValueError("a statements table needs a 'condition' column (index: statement)")
        frame = statements
    elif isinstance(statements, Mapping):
        frame = _statement_frame([{"statement": str(k), "condition": str(v), "source": "given",
                                   "records": math.nan} for k, v in statements.items()])
    elif isinstance(statements, str):
        raise TypeError("statements must be a list of strings, a mapping or a table, not one string")
    else:
        frame = _statement_frame([{"statement": str(s), "condition": str(s), "source": "given",
                                   "records": math.nan} for s in dict.fromkeys(statements)])
    if frame.index.has_duplicates:
        dupes = sorted(set(frame.index[frame.index.duplicated()]))
        raise ValueError(f"duplicate statements: {dupes}")
    return frame


# ----------------------------------------------------------------------------- expert cards


_SECTION = re.compile(r"^##[ \t]+(.+?)[ \t#]*$", re.M)


def card_section(text: str, name: str) -> str:
    """The body of a ``## name`` section of a card ("" when absent), whitespace normalised."""
    heads = list(_SECTION.finditer(text))
    for i, head in enumerate(heads):
        if head.group(1).strip().lower() == name.lower():
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            return " ".join(text[head.end():end].split())
    return ""


def expert_cards(corpus=None) -> pd.DataFrame:
    """The condition cards of the knowledge corpus: index ``key``; ``name``, ``scp_codes``, ``waveform``.

    ``corpus``: a list of docs from :func:`ecgkit.knowledge.load_corpus` (default: load it).
    Cards without a Waveform section are left out.
    """
    if corpus is None:
        from ..knowledge import load_corpus

        corpus = load_corpus()
    rows = []
    for doc in corpus:
        meta = doc.metadata
        if meta.get("collection") != "expert" or meta.get("kind") != "condition":
            continue
        waveform = card_section(doc.text, "Waveform")
        if not waveform:
            continue
        codes = meta.get("scp_codes") or []
        rows.append({"key": str(meta.get("key")), "name": str(meta.get("name") or meta.get("key")),
                     "scp_codes": [str(c) for c in codes], "waveform": waveform,
                     "source": meta.get("source", "")})
    return pd.DataFrame(rows, columns=["key", "name", "scp_codes", "waveform", "source"]).set_index("key")


def statement_cards(statements, cards: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Statement -> keys of the expert cards listing it in their ``scp_codes`` (only mapped ones)."""
    cards = expert_cards() if cards is None else cards
    index = _as_statements(statements).index if not isinstance(statements, pd.Index) else statements
    out: dict[str, list[str]] = {}
    for key, codes in cards["scp_codes"].items():
        for code in codes:
            if code in index:
                out.setdefault(code, []).append(key)
    return {s: out[s] for s in index if s in out}


# ----------------------------------------------------------------------------- retrieval


def retrieve_excluding(index, queries: Sequence[str], top_k: int, collections=DEFAULT_COLLECTIONS,
                       exclude: Sequence[Iterable[str]] | None = None) -> list[list]:
    """Top-k hits per query from ``collections``, skipping expert chunks of the excluded cards.

    ``exclude``: per query, the card keys to keep out (chunks whose collection is ``expert`` and
    whose key is one of them). More hits are retrieved and filtered until ``top_k`` remain or
    the collections are exhausted, so exclusion never shortens the context.
    """
    queries = list(queries)
    if not collections or not queries:
        return [[] for _ in queries]
    exclude = [set(e) for e in exclude] if exclude is not None else [set() for _ in queries]
    if len(exclude) != len(queries):
        raise ValueError(f"{len(exclude)} exclusion sets for {len(queries)} queries")
    if not any(exclude):
        return index.retrieve_many(queries, top_k=top_k, collections=collections)
    sizes = getattr(index, "collections", {}) or {}
    total = sum(sizes.get(c, 0) for c in collections) if sizes else None
    vectors = index.embed_queries(queries) if hasattr(index, "embed_queries") else None
    out: list[list | None] = [None] * len(queries)
    todo = list(range(len(queries)))
    k = top_k + 8 * max(len(e) for e in exclude)
    while todo:
        k_now = min(k, total) if total else k
        hits = index.retrieve_many([queries[i] for i in todo], top_k=k_now, collections=collections,
                                   **({"query_embeddings": vectors[todo]} if vectors is not None else {}))
        left = []
        for i, found in zip(todo, hits):
            kept = [h for h in found if not (h.collection == "expert" and h.key in exclude[i])]
            if len(kept) >= top_k or len(found) < k_now or (total is not None and k_now >= total):
                out[i] = kept[:top_k]
            else:
                left.append(i)
        todo, k = left, k * 2
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class Request:
    """One description to write: a statement, the question's wording and the retrieval setting."""

    statement: str
    condition: str
    template: str = QUESTION
    collections: tuple[str, ...] = DEFAULT_COLLECTIONS
    top_k: int = 2
    exclude: tuple[str, ...] = ()

    @property
    def question(self) -> str:
        return self.template.format(condition=self.condition)


def _index_identity(index) -> str:
    """What identifies the retrieved text: the index's cache key, else a hash of its chunks."""
    key = getattr(index, "key", "")
    if key:
        return str(key)
    if hasattr(index, "chunks"):
        digest = hashlib.sha256()
        for hit in index.chunks():
            digest.update(f"{hit.collection}\0{hit.id}\0{hit.text}\0".encode())
        return "chunks:" + digest.hexdigest()[:24]
    return f"{type(index).__module__}.{type(index).__qualname__}"


def description_key(request: Request, llm_name: str, index_id: str, max_new_tokens: int,
                    system: str, instruction: str = LENGTH_INSTRUCTION) -> str:
    """The cache key (:func:`ecgkit.cache.key`, ``cqa``) of every input of a description (statement text, wording, retrieval, LLM, length)."""
    spec = {"condition": request.condition, "template": request.template, "instruction": instruction,
            "system": system, "collections": list(request.collections),
            "top_k": int(request.top_k) if request.collections else 0,
            "exclude": sorted(request.exclude) if request.collections else [],
            "index": index_id if request.collections else "", "llm": llm_name,
            "max_new_tokens": int(max_new_tokens)}
    from ..cache import key

    return key("cqa", spec)


class DescriptionCache:
    """Descriptions on disk, one small JSON file per key under ``cache_dir("esi", "cqa")``."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else cache_dir("esi", "cqa")
        self.path.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict | None:
        file = self.path / f"{key}.json"
        try:
            return json.loads(file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def put(self, key: str, entry: dict) -> None:
        file = self.path / f"{key}.json"
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, ensure_ascii=False))
        tmp.replace(file)


_PREAMBLE = re.compile(r"^(?:answer|description|the answer is)\s*:\s*", re.I)


def clean_description(text: str, finish_reason: str = "stop") -> str:
    """One paragraph: whitespace collapsed, an "Answer:" preamble dropped and, when the answer was
    cut at ``max_new_tokens``, the unfinished last sentence dropped (if a full one precedes it)."""
    text = " ".join((text or "").split())
    text = _PREAMBLE.sub("", text).strip()
    if finish_reason == "length":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        if text and text[-1] not in ".!?" and cut > 0:
            text = text[:cut + 1]
    return text


def cqa_prompt(question: str, hits, instruction: str = LENGTH_INSTRUCTION) -> str:
    """The user message: the retrieved chunks' text, then the question and the length asked for.

    Unlike :func:`ecgkit.knowledge.rag.rag_prompt`, chunks carry no ``[i] (source)`` markers: a
    small model copies them into its answer (the sources are kept beside each description).
    """
    ask = f"{question} {instruction}".strip()
    if not hits:
        return f"Question: {ask}"
    context = "\n\n".join(h.text for h in hits)
    return f"Context:\n{context}\n\nQuestion: {ask}"


DESCRIPTION_COLUMNS = ["statement", "condition", "question", "description", "sources", "status", "error",
                       "finish", "completion_tokens", "llm", "cached", "context"]


def _sources(hits) -> str:
    return "; ".join(f"{h.source} ({h.score:.2f})" for h in hits)


def _default_index():
    from ..knowledge import KnowledgeIndex

    return KnowledgeIndex.build()


def _describe(requests: Sequence[Request], llm, index, max_new_tokens: int, system: str,
              cache: DescriptionCache | None, progress: bool | None = None,
              instruction: str = LENGTH_INSTRUCTION) -> pd.DataFrame:
    """Describe every request (deduplicated, cached, one batched LLM call); one row per request."""
    requests = list(requests)
    needs_index = any(r.collections for r in requests)
    if needs_index and index is None:
        index = _default_index()
    index_id = _index_identity(index) if needs_index else ""
    keys = [description_key(r, llm.name, index_id, max_new_tokens, system, instruction) for r in requests]
    found = {k: cache.get(k) for k in dict.fromkeys(keys)} if cache is not None else {}
    found = {k: v for k, v in found.items() if v is not None}
    todo = {}  # key -> first request with that key
    for key, request in zip(keys, requests):
        if key not in found and key not in todo:
            todo[key] = request
    fresh: dict[str, dict] = {}
    if todo:
        pending = list(todo.items())
        hits: list[list] = [[] for _ in pending]
        groups: dict[tuple, list[int]] = {}
        for j, (_, r) in enumerate(pending):
            if r.collections:
                groups.setdefault((r.collections, r.top_k), []).append(j)
        for (collections, top_k), members in groups.items():
            found_hits = retrieve_excluding(index, [pending[j][1].question for j in members], top_k,
                                            collections, [pending[j][1].exclude for j in members])
            for j, h in zip(members, found_hits):
                hits[j] = h
        prompts = [cqa_prompt(r.question, h, instruction) for (_, r), h in zip(pending, hits)]
        if progress is None:  # generation takes minutes on a CPU: show a bar unless told not to
            progress = len(prompts) > 1
        from ..llm import anti_loop_options

        options = {"progress": progress, **anti_loop_options(llm)}   # no looping descriptions
        generations = llm.generate(prompts, max_new_tokens=max_new_tokens, system=system, **options)
        if len(generations) != len(prompts):
            raise RuntimeError(f"{llm.name} returned {len(generations)} answers for {len(prompts)} prompts")
        for (key, request), h, gen in zip(pending, hits, generations):
            text = clean_description(gen.text, gen.finish_reason) if gen.ok else ""
            status = "ok" if text else ("error" if not gen.ok else "empty")
            error = gen.error or "" if not gen.ok else ("" if text else "the LLM returned no text")
            entry = {"statement": request.statement, "condition": request.condition,
                     "question": request.question, "description": text, "sources": _sources(h),
                     "status": status, "error": error, "finish": gen.finish_reason,
                     "completion_tokens": gen.completion_tokens, "llm": llm.name,
                     "context": [x.text for x in h]}
            fresh[key] = {**entry, "cached": False}
            if cache is not None and status == "ok":
                cache.put(key, entry)
    rows = []
    for key, request in zip(keys, requests):
        entry = dict(found[key], cached=True) if key in found else fresh[key]
        rows.append({"context": [], **entry, "statement": request.statement, "condition": request.condition})
    return pd.DataFrame(rows, columns=DESCRIPTION_COLUMNS)


def _tokens(max_new_tokens, profile) -> int:
    return int(CqaSettings.for_profile(profile, max_new_tokens=max_new_tokens or None).max_new_tokens)


def describe_statements(statements, llm=None, index=None, top_k: int = 2,
                        collections=DEFAULT_COLLECTIONS, prompt_template: str = QUESTION,
                        max_new_tokens: int | None = None, system: str = SYSTEM,
                        exclude: Mapping[str, Iterable[str]] | None = None, cache: bool = True,
                        profile: str | None = None, progress: bool | None = None,
                        grade: bool = True) -> pd.DataFrame:
    """A waveform description for each statement, written by ``llm`` from the top-k retrieved chunks.

    ``statements``: a table from :func:`dataset_statements` (index statement, column condition),
    a mapping statement -> condition, or a list of condition strings. ``llm``: an
    :mod:`ecgkit.llm` backend or spec (None: :func:`~ecgkit.llm.get_llm` with its generation
    cache). ``index``: a :class:`~ecgkit.knowledge.KnowledgeIndex` (None: the default, cached).
    ``collections``: what is searched (empty: no retrieval). ``exclude``: statement -> expert
    card keys kept out of its retrieval. ``max_new_tokens``: None is the profile's default.

    One row per statement (index ``statement``): condition, question, description, sources,
    context (the retrieved chunks' text), status (of the generation: ok / error / empty), error,
    finish, cached. A failed generation is a row with an empty description, counted in
    ``attrs["failed"]``; it is not cached, so a rerun retries it. With ``grade``, the columns of
    :func:`grade_descriptions` follow (``grade`` is "ok" only for a description with no quality
    flag; ``attrs["flagged"]`` counts the others).
    """
    from ..llm import get_llm

    frame = _as_statements(statements)
    llm = get_llm(llm, cache=True)
    tokens = _tokens(max_new_tokens, profile)
    collections = tuple(collections or ())
    exclude = exclude or {}
    requests = [Request(s, str(c), prompt_template, collections, int(top_k),
                        tuple(sorted(exclude.get(s, ())))) for s, c in frame["condition"].items()]
    out = _describe(requests, llm, index, tokens, system, DescriptionCache() if cache else None, progress)
    out = out.set_index("statement")
    out.attrs.update(n=len(out), failed=int((out["status"] != "ok").sum()), cached=int(out["cached"].sum()),
                     llm=llm.name, top_k=int(top_k), collections=list(collections),
                     template=prompt_template, max_new_tokens=tokens)
    if grade:
        attrs = dict(out.attrs)
        out = pd.concat([out, grade_descriptions(out, tokens)], axis=1)
        out.attrs.update(attrs)
        out.attrs["flagged"] = int((out["grade"] != "ok").sum() - out.attrs["failed"])
    return out


def statement_names(statements, cards: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Statement -> what names it: its condition text, its code, and the names of the expert cards
    that list it among their PTB-XL codes (the synonyms the ``unnamed`` flag accepts)."""
    frame = _as_statements(statements)
    cards = expert_cards() if cards is None else cards
    mapped = statement_cards(frame.index, cards)
    return {s: list(dict.fromkeys([str(c), str(s)] + [str(cards.loc[k, "name"]) for k in mapped.get(s, [])]))
            for s, c in frame["condition"].items()}


def grade_descriptions(descriptions: pd.DataFrame, max_new_tokens: int | None = None,
                       cards: pd.DataFrame | None = None, encoder=None) -> pd.DataFrame:
    """The quality flags of each description (:func:`ecgkit.textquality.grade_texts`): cut at the
    token limit, repetition, not naming its statement (:func:`statement_names`), unsupported by
    its retrieved chunks (the ``context`` column), template text. Same index as ``descriptions``;
    a failed generation is graded "no text"."""
    from ..textquality import grade_texts

    names = statement_names(descriptions.loc[~descriptions.index.duplicated(), ["condition"]], cards)
    context = descriptions["context"] if "context" in descriptions else [[]] * len(descriptions)
    grades = grade_texts(descriptions["description"].tolist(), names=[names[s] for s in descriptions.index],
                         sources=[list(c) if isinstance(c, (list, tuple)) else [] for c in context],
                         finish=descriptions["finish"].tolist(),
                         completion_tokens=descriptions["completion_tokens"].tolist(),
                         max_new_tokens=max_new_tokens, encoder=encoder)
    return grades.set_axis(descriptions.index)


# ----------------------------------------------------------------------------- record text


_SEX = {"0": "male", "m": "male", "male": "male", "man": "male",
        "1": "female", "f": "female", "female": "female", "woman": "female"}


def _sex(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    key = str(int(value)) if isinstance(value, (int, float, np.integer, np.floating)) else str(value)
    return _SEX.get(key.strip().lower(), "")


def _age(value) -> float | None:
    try:
        age = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(age) or age < 0 else age


def _demographics(meta_row) -> str:
    get = meta_row.get if hasattr(meta_row, "get") else (lambda k, d=None: d)
    age, sex = _age(get("age")), _sex(get("sex"))
    who = sex or "patient"
    if age is None:
        return f"This patient is {sex}." if sex else ""
    if age >= 300:  # PTB-XL codes ages over 89 as 300
        return f"This patient is a {who} over 89 years old."
    years = int(round(age))
    article = "an" if str(years).startswith("8") or years in (11, 18) else "a"
    return f"This patient is {article} {years}-year-old {who}." if sex else \
        f"This patient is {years} years old."


def record_text(meta_row, statements_of_record, descriptions) -> str:
    """The paper's text for one record.

    ``meta_row``: the record's metadata (``age``, ``sex`` as 0 male / 1 female or "M"/"F"; either
    may be missing). ``statements_of_record``: its statements in order, as a list of keys or a
    mapping key -> readable name (the finding). ``descriptions``: statement -> description (a
    mapping, a Series, or a table from :func:`describe_statements`); statements without one are
    left out of the waveform part.
    """
    if isinstance(descriptions, pd.DataFrame):
        ok = descriptions["status"] == "ok" if "status" in descriptions else slice(None)
        descriptions = descriptions.loc[ok, "description"]
    if isinstance(statements_of_record, Mapping):
        items = [(str(k), str(v)) for k, v in statements_of_record.items()]
    else:
        items = [(str(k), str(k)) for k in statements_of_record]
    parts = [_demographics(meta_row)]
    findings = [name.rstrip(".") for _, name in items if name]
    if findings:
        parts.append("ECG findings: " + "; ".join(findings) + ".")
    waves = []
    for key, _ in items:
        text = descriptions.get(key) if hasattr(descriptions, "get") else None
        if isinstance(text, str) and text.strip():
            waves.append(text.strip())
    if waves:
        parts.append("Potential ECG waveforms: " + " ".join(waves))
    return " ".join(p for p in parts if p)


def cqa_texts(dataset, llm=None, index=None, top_k: int = 2, collections=DEFAULT_COLLECTIONS,
              prompt_template: str = QUESTION, max_new_tokens: int | None = None,
              profile: str | None = None, progress: bool | None = None) -> pd.Series:
    """Record id -> the paper's text, for every record of ``dataset`` (PTB-XL, synthetic, MIMIC).

    Describes every statement present in the dataset (cached per statement, so a second call
    only reads the cache), then assembles each record's text with :func:`record_text`.
    ``attrs``: ``statements``, ``failed`` (statements whose description failed; their records
    keep their findings without a waveform description), ``cached``, ``llm``, ``quality``
    (:func:`text_quality`: how much of the texts' descriptions passed the grading).
    """
    statements = dataset_statements(dataset)
    descriptions = describe_statements(statements, llm=llm, index=index, top_k=top_k,
                                       collections=collections, prompt_template=prompt_template,
                                       max_new_tokens=max_new_tokens, profile=profile, progress=progress)
    ok = descriptions.loc[descriptions["status"] == "ok", "description"].to_dict()
    names = statements["condition"].to_dict()
    per_record = record_statements(dataset)
    meta = dataset.meta
    texts = [record_text(row, {s: names.get(s, s) for s in codes}, ok)
             for row, codes in zip(meta.to_dict("records"), per_record)]
    out = pd.Series(texts, index=meta.index, name="text")
    out.attrs.update(statements=len(statements), failed=descriptions.attrs["failed"],
                     cached=descriptions.attrs["cached"], llm=descriptions.attrs["llm"],
                     quality=text_quality(per_record, descriptions))
    return out


def card_texts(dataset, cards: pd.DataFrame | None = None) -> pd.Series:
    """Record id -> the paper's text with each statement's waveform part taken from the knowledge
    base's hand-written expert card (its Waveform section) instead of an LLM: the third text source
    of chapter 05's ablation, beside CQA and the plain statement names.

    A statement mapped to several cards takes the first; one without a card keeps its finding and
    adds no waveform sentence. ``attrs``: ``statements``, ``described`` (statements with a card).
    """
    cards = expert_cards() if cards is None else cards
    statements = dataset_statements(dataset)
    mapped = statement_cards(statements, cards)
    waveform = {s: cards.loc[keys[0], "waveform"] for s, keys in mapped.items()}
    names = statements["condition"].to_dict()
    meta = dataset.meta
    texts = [record_text(row, {s: names.get(s, s) for s in codes}, waveform)
             for row, codes in zip(meta.to_dict("records"), record_statements(dataset))]
    out = pd.Series(texts, index=meta.index, name="text")
    out.attrs.update(statements=len(statements), described=len(waveform))
    return out


def text_quality(per_record: pd.Series, descriptions: pd.DataFrame) -> dict:
    """How much of the record texts' waveform part passed the grading (:func:`grade_descriptions`).

    ``per_record``: record -> its statements; ``descriptions``: graded descriptions. Returns
    ``descriptions`` (how many statements were described), ``passed`` (of those, how many have no
    flag), ``used`` (description occurrences in the record texts), ``used_passed_share`` (the share of
    those that passed) and ``records_all_passed_share`` (records whose every description passed,
    among records with at least one).
    """
    ok = descriptions["status"] == "ok"
    good = set(descriptions.index[ok & (descriptions["grade"] == "ok")]) if "grade" in descriptions else set()
    described = set(descriptions.index[ok])
    used = [[s in good for s in codes if s in described] for codes in per_record]
    n_used = sum(len(u) for u in used)
    with_any = [u for u in used if u]
    return {"descriptions": len(described), "passed": len(good & described), "used": n_used,
            "used_passed_share": sum(map(sum, used)) / n_used if n_used else float("nan"),
            "records_all_passed_share": (sum(all(u) for u in with_any) / len(with_any)) if with_any else float("nan")}


# ----------------------------------------------------------------------------- quality


def evaluation_items(statements=None, cards: pd.DataFrame | None = None, n: int | None = None,
                     seed: int = 0) -> pd.DataFrame:
    """What description quality is measured on, with its references and the cards to exclude.

    With ``statements`` (a statements table): one item per statement mapped to expert cards via
    their ``scp_codes``; its references are those cards' Waveform sections. Without: one item per
    condition card (condition = the card's name). ``n``: a seeded random subsample.
    Index ``statement``; columns ``condition``, ``cards`` (keys excluded from retrieval),
    ``references`` (list of texts).
    """
    cards = expert_cards() if cards is None else cards
    if statements is None:
        rows = [{"statement": key, "condition": row["name"], "cards": [key], "references": [row["waveform"]]}
                for key, row in cards.iterrows()]
    else:
        frame = _as_statements(statements)
        mapped = statement_cards(frame, cards)
        rows = [{"statement": s, "condition": frame.loc[s, "condition"], "cards": keys,
                 "references": [cards.loc[k, "waveform"] for k in keys]} for s, keys in mapped.items()]
    columns = ["statement", "condition", "cards", "references"]
    items = pd.DataFrame(rows, columns=columns).set_index("statement")
    if n is not None and n < len(items):
        pick = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
        items = items.iloc[pick]
    return items


@functools.lru_cache(maxsize=2)
def _scorer(folder: str, num_layers: int):
    from bert_score import BERTScorer

    return BERTScorer(model_type=folder, num_layers=num_layers, device="cpu"
                      if not _cuda() else None, batch_size=32)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


def bertscore(candidates: Sequence[str], references: Sequence, model=None,
              num_layers: int | None = None) -> pd.DataFrame:
    """BERTScore P, R, F1 of each candidate against its reference (or best of a list of references).

    ``model``: a local encoder folder or a name :func:`ecgkit.models.text_encoder_path` resolves
    (None: the packaged all-MiniLM-L6-v2). bert-score needs ``num_layers`` for a model it does
    not know; None uses the model's last layer. No baseline rescaling (none exists for a local
    model), so values are not on the scale of the default roberta-large scores.
    """
    from ..ecgllm.textmetrics import bertscore as score  # the one BERTScore

    return score(candidates, references, model, num_layers).set_axis(["P", "R", "F1"], axis=1)


def _summary(scores: pd.DataFrame, by: str) -> pd.DataFrame:
    def one(group):
        good = group[group["status"] == "ok"]
        return pd.Series({"P": good["P"].mean(), "R": good["R"].mean(), "F1": good["F1"].mean(),
                          "n": len(good), "failed": int((group["status"] != "ok").sum())})
    rows = {key: one(group) for key, group in scores.groupby(by, sort=False)}
    out = pd.DataFrame(rows).T
    out.index.name = by
    return out.astype({"n": int, "failed": int})


def cqa_ablation(items: pd.DataFrame, llm=None, index=None, top_ks: Sequence[int] = (1, 2, 3, 4, 5),
                 retrievals: Mapping[str, Sequence[str]] | None = None,
                 prompts: Sequence[str] = REPHRASINGS, top_k: int = 2,
                 max_new_tokens: int | None = None, system: str = SYSTEM, model=None,
                 num_layers: int | None = None, profile: str | None = None,
                 progress: bool | None = None) -> dict[str, pd.DataFrame]:
    """The paper's appendix ablations of CQA, scored with :func:`bertscore` against the cards.

    ``items``: from :func:`evaluation_items` (each item's own cards are kept out of retrieval in
    every setting). Settings: ``top_ks`` with documents + expert; ``retrievals`` (default
    :data:`RETRIEVAL_SETTINGS`) at ``top_k``; ``prompts`` (question wordings) at ``top_k`` with
    documents + expert. All generations go to the LLM in one batched call (shared settings are
    generated once). Returns tidy tables: ``topk`` (index top_k), ``retrieval`` (index setting),
    ``prompts`` (index prompt, with its wording), ``prompts_summary`` (mean and sd of F1 over the
    wordings), and ``scores`` (one row per item and setting, with the description's quality
    ``grade``, :func:`grade_descriptions`). Failed generations are not scored; each table counts
    them in ``failed``.
    """
    from ..llm import get_llm

    llm = get_llm(llm, cache=True)
    tokens = _tokens(max_new_tokens, profile)
    retrievals = dict(RETRIEVAL_SETTINGS if retrievals is None else retrievals)
    both = DEFAULT_COLLECTIONS
    settings = ([("topk", str(k), QUESTION, both, int(k)) for k in top_ks]
                + [("retrieval", name, QUESTION, tuple(c), top_k) for name, c in retrievals.items()]
                + [("prompts", str(i), t, both, top_k) for i, t in enumerate(prompts, start=1)])
    requests, labels = [], []
    for ablation, setting, template, collections, k in settings:
        for statement, item in items.iterrows():
            requests.append(Request(str(statement), str(item["condition"]), template, tuple(collections),
                                    int(k), tuple(sorted(item["cards"]))))
            labels.append((ablation, setting, statement))
    described = _describe(requests, llm, index, tokens, system, DescriptionCache(), progress)
    scores = pd.DataFrame(labels, columns=["ablation", "setting", "statement"])
    scores["description"] = described["description"].to_numpy()
    scores["status"] = described["status"].to_numpy()
    scores["cached"] = described["cached"].to_numpy()
    graded = described.assign(statement=scores["statement"].to_numpy(),
                              condition=[items.loc[x, "condition"] for x in scores["statement"]]).set_index("statement")
    scores["grade"] = grade_descriptions(graded, tokens)["grade"].to_numpy()
    refs = [items.loc[s, "references"] for s in scores["statement"]]
    good = scores["status"] == "ok"
    scored = bertscore(scores.loc[good, "description"].tolist(),
                       [r for r, g in zip(refs, good) if g], model=model, num_layers=num_layers)
    for col in ("P", "R", "F1"):
        scores[col] = np.nan
        scores.loc[good, col] = scored[col].to_numpy()
    out = {}
    for ablation, by in (("topk", "top_k"), ("retrieval", "setting"), ("prompts", "prompt")):
        part = scores[scores["ablation"] == ablation].rename(columns={"setting": by})
        out[ablation] = _summary(part, by)
    out["topk"].index = out["topk"].index.astype(int)
    out["prompts"].insert(0, "wording", list(prompts))
    f1 = out["prompts"]["F1"]
    out["prompts_summary"] = pd.DataFrame(
        {"F1 mean": [f1.mean()], "F1 sd": [f1.std(ddof=1) if f1.notna().sum() > 1 else np.nan],
         "wordings": [len(prompts)], "n": [len(items)]}, index=pd.Index(["prompt wordings"], name="ablation"))
    out["scores"] = scores
    return out


def with_paper(frame: pd.DataFrame, table: str, mapping: Mapping | None = None,
               metric: str = "F1") -> pd.DataFrame:
    """``frame`` with a ``paper F1`` column from :func:`ecgkit.results.paper_numbers` ("esi", table).

    Rows are matched by index (as text) to the paper's ``configuration``, through ``mapping``
    (our index value -> the paper's configuration) when given; several paper values for one
    configuration are joined with " / ".
    """
    from ..results import paper_numbers

    paper = paper_numbers("esi", table)
    paper = paper[paper["metric"] == metric]
    values: dict[str, list[float]] = {}
    for config, value in zip(paper["configuration"], paper["value"]):
        values.setdefault(str(config), []).append(float(value))
    out = frame.copy()
    column = []
    for key in out.index:
        config = str(mapping.get(key, key) if mapping else key)
        found = values.get(config, [])
        if len(found) > 1:
            column.append(" / ".join(f"{v:.4f}" for v in found))
        else:
            column.append(found[0] if found else np.nan)
    out[f"paper {metric}"] = column
    return out


# ----------------------------------------------------------------------------- reading checks

_SIDES = {"left": "right", "right": "left"}


def suspect_descriptions(descriptions: pd.DataFrame) -> pd.DataFrame:
    """Descriptions that visibly contradict their statement's own name (a cheap, partial check).

    Flags: a bundle-branch or fascicle statement described with the other side ("right" in a
    left bundle branch block); an *incomplete* block described as "complete" without "incomplete";
    a statement about low voltage described as high voltage, or the reverse. Rows: statement,
    condition, problem. A description that passes is not thereby correct.
    """
    rows = []
    for statement, row in descriptions.iterrows():
        condition = str(row.get("condition", "")).lower()
        text = str(row.get("description", "")).lower()
        if not text:
            continue
        problems = []
        for side, other in _SIDES.items():
            if re.search(rf"\b{side}\b", condition) and ("bundle" in condition or "fascic" in condition) \
                    and re.search(rf"\b{other}\b (bundle|fascic)", text) and not re.search(rf"\b{side}\b (bundle|fascic)", text):
                problems.append(f"describes the {other} instead of the {side} side")
        if "incomplete" in condition and re.search(r"\bcomplete\b", text) and "incomplete" not in text:
            problems.append("an incomplete block described as complete")
        low = bool(re.search(r"\b(low|small)\b", condition)) and "voltage" in condition or "small qrs" in condition
        if low and re.search(r"\bhigh (qrs )?voltage|\bincreased (qrs )?voltage|\btall\b", text):
            problems.append("low voltage described as high")
        if re.search(r"\bhigh voltage\b", condition) and re.search(r"\blow voltage\b", text):
            problems.append("high voltage described as low")
        if problems:
            rows.append({"statement": statement, "condition": row.get("condition", ""), "problem": "; ".join(problems)})
    return pd.DataFrame(rows, columns=["statement", "condition", "problem"]).set_index("statement")


def retrieval_direction(retrieval: pd.DataFrame, ours: str = "F1", paper: str = "paper F1",
                        none: str = "none", both: str = "documents + expert") -> dict:
    """Whether retrieval helps here as it does in the paper: the sign of F1(both) − F1(none), ours and
    the paper's. ``verdict``: "same direction", "reversed" or "not comparable"."""
    def value(v):
        if isinstance(v, str):   # several paper values joined with " / "
            v = np.mean([float(x) for x in v.split("/")])
        return float(v)

    try:
        d_ours = value(retrieval.loc[both, ours]) - value(retrieval.loc[none, ours])
        d_paper = value(retrieval.loc[both, paper]) - value(retrieval.loc[none, paper])
    except (KeyError, ValueError):
        return {"verdict": "not comparable", "ours": np.nan, "paper": np.nan}
    if not (np.isfinite(d_ours) and np.isfinite(d_paper)) or d_ours == 0 or d_paper == 0:
        verdict = "not comparable"
    else:
        verdict = "same direction" if np.sign(d_ours) == np.sign(d_paper) else "reversed"
    return {"verdict": verdict, "ours": float(d_ours), "paper": float(d_paper)}
