"""The ECG-LLM instruction dataset: open questions and four-option questions from the expert cards.

ECG-LLM generated question-answer pairs from ECG literature with an LLM. Here the source is the
project's knowledge corpus (:func:`ecgkit.knowledge.load_corpus`, the user's extra files included):
every expert card (a condition or a measured feature) gives

* **open questions** with a reference answer taken from one card section (``What is X?`` from
  the definition, the criteria, the waveform, a differential diagnosis, how a feature is measured,
  its normal values, its clinical significance), and
* **multiple-choice questions**, four options, one correct, three distractors drawn from other
  cards of the same kind and category (other conditions' criteria, other features' names, other
  PTB-XL codes...), options shuffled;

by templates always, and by LLM generation from each card section when a capable backend is
configured (``generator``: the ``$ECGKIT_LLM_BASE_URL`` endpoint by default, or any spec for
:func:`ecgkit.llm.get_llm`), as in the paper. A generated answer that is not valid JSON, or an
item with missing fields, is skipped and counted with its source; it never stops the build.

**Split by topic.** A topic is a card, or a family of near-duplicate cards (``FAMILIES``: the
three Q-wave territories, the bundle branch blocks, the QT measures...), so that no evaluation
question's fact is trained on: every topic is wholly in ``train`` or wholly in ``eval``, and
every item is built from cards of its own split only (distractors included). :func:`topic_leaks`
checks the first property and :func:`ngram_overlap` measures what still overlaps in wording
(cards cite each other's thresholds).

Every item is a dict (one JSONL line) with ``id``, ``type`` ("open" | "mcq"), ``template``,
``method`` ("template" or "llm:<model>"), ``split``, ``topic``, ``key``, ``kind``, ``name``,
``question``, ``reference`` (the reference answer; for a multiple-choice item the correct option),
``options`` and ``answer`` (index of the correct option; multiple choice only) and provenance:
``source`` (card file), ``section``, ``chunk_ids`` (the knowledge-index chunks of that section)
and ``context`` (the passage the item was made from). Duplicates (same normalised question and
options) are removed, evaluation items kept first.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from ..config import cache_dir
from ..knowledge.chunking import chunk_corpus, split_sentences
from ..knowledge.corpus import discover_files, load_corpus
from ..versions import VERSIONS

__all__ = [
    "FAMILIES",
    "SPLITS",
    "Card",
    "Dataset",
    "load_cards",
    "topic_of",
    "split_topics",
    "template_items",
    "generation_prompt",
    "parse_generated",
    "generate_items",
    "deduplicate",
    "topic_leaks",
    "ngram_overlap",
    "sample_items",
    "write_jsonl",
    "read_jsonl",
    "build_dataset",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = VERSIONS["ecgllm_dataset"]
SPLITS = ("train", "eval")

#: Cards that share their facts, kept on one side of the split (key -> topic).
FAMILIES: dict[str, tuple[str, ...]] = {
    "bundle_branch_block": ("complete_lbbb", "incomplete_lbbb", "complete_rbbb", "incomplete_rbbb"),
    "fascicular_block": ("left_anterior_fascicular_block", "left_posterior_fascicular_block"),
    "q_waves": ("q_waves_anterior", "q_waves_inferior", "q_waves_lateral"),
    "st_elevation": ("st_elevation_anterior", "st_elevation_inferior", "st_elevation_lateral"),
    "lvh": ("lvh_cornell", "lvh_sokolow_lyon"),
    "atrial_enlargement": ("left_atrial_enlargement", "right_atrial_enlargement"),
    "axis": ("left_axis_deviation", "right_axis_deviation", "qrs_axis"),
    "qt": ("qt_interval", "qt_interval_lead", "qtc_bazett", "qtc_fridericia", "long_qt", "short_qt"),
    "pr": ("pr_interval", "pr_interval_lead", "first_degree_av_block", "short_pr"),
    "qrs_duration": ("qrs_duration", "qrs_duration_lead", "nonspecific_ivcd"),
    "qrs_voltage": ("low_qrs_voltage", "high_qrs_voltage", "qrs_amplitude"),
    "sinus": ("sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "sinus_arrhythmia", "heart_rate"),
    "rr_irregularity": ("irregular_rhythm", "rr_irregularity", "rr_sd"),
    "pre_excitation": ("wpw_pattern", "delta_wave"),
    "signal_quality": ("noisy_signal", "noise_level", "baseline_wander", "baseline_drift", "flat_lead"),
}

#: Card sections an item may come from (PTB-XL statements are used through the codes).
OPEN_SECTIONS = {
    "condition": ("Definition", "Criteria", "Waveform", "Differential diagnosis"),
    "feature": ("Definition", "Measurement", "Normal values", "Clinical significance"),
}


# ----------------------------------------------------------------------------- cards


@dataclass
class Card:
    """One expert card: its identity and its sections (text without the chunk prefixes)."""

    key: str
    kind: str  # "condition" | "feature"
    name: str
    category: str  # a condition's category, a feature's unit: distractors prefer the same
    source: str
    unit: str = ""
    scp_codes: tuple[str, ...] = ()
    sections: dict[str, str] = field(default_factory=dict)
    chunk_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def the_name(self) -> str:
        """The name as it reads in a question (features take "the")."""
        return f"the {self.name}" if self.kind == "feature" else self.name


def load_cards(docs=None) -> list[Card]:
    """The condition and feature cards of the corpus (default: :func:`load_corpus`), by key.

    A card without a key or a definition is skipped with a warning.
    """
    docs = load_corpus() if docs is None else docs
    cards = []
    for doc in docs:
        meta = doc.metadata
        if meta.get("collection") != "expert" or meta.get("kind") not in OPEN_SECTIONS:
            continue
        key, kind = str(meta.get("key") or ""), meta["kind"]
        sections: dict[str, list[str]] = defaultdict(list)
        chunk_ids: dict[str, list[str]] = defaultdict(list)
        for chunk in chunk_corpus([doc]):
            body = chunk.text.split("\n", 1)[1] if "\n" in chunk.text else chunk.text
            sections[chunk.metadata["section"]].append(body.strip())
            chunk_ids[chunk.metadata["section"]].append(chunk.id)
        if not key or "Definition" not in sections:
            log.warning("ecgllm: card %s skipped (no key or no Definition section)", meta.get("source"))
            continue
        scp = meta.get("scp_codes") or []
        cards.append(Card(
            key=key, kind=kind, name=str(meta.get("name") or meta.get("title") or key),
            category=str(meta.get("category") or meta.get("unit") or ""), source=str(meta.get("source")),
            unit=str(meta.get("unit") or ""),
            scp_codes=tuple(str(c) for c in (scp if isinstance(scp, list) else str(scp).split())),
            sections={s: "\n".join(parts) for s, parts in sections.items()},
            chunk_ids=dict(chunk_ids)))
    return sorted(cards, key=lambda c: (c.kind, c.key))


def topic_of(key: str, families: Mapping[str, Sequence[str]] = FAMILIES) -> str:
    """The topic of a card: its family when it has one, else its own key."""
    for topic, members in families.items():
        if key in members:
            return topic
    return key


def split_topics(cards: Sequence[Card], eval_fraction: float = 0.25, seed: int = 0,
                 families: Mapping[str, Sequence[str]] = FAMILIES) -> dict[str, str]:
    """Card key -> "train" | "eval"; whole topics go to one side (seeded shuffle of the topics,
    added to ``eval`` until it holds ``eval_fraction`` of the cards)."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    by_topic: dict[str, list[str]] = defaultdict(list)
    for card in cards:
        by_topic[topic_of(card.key, families)].append(card.key)
    topics = sorted(by_topic)
    random.Random(seed).shuffle(topics)
    target = round(eval_fraction * len(cards))
    split: dict[str, str] = {}
    n_eval = 0
    for topic in topics:
        side = "eval" if n_eval < target else "train"
        if side == "eval" and n_eval + len(by_topic[topic]) > target + max(2, target // 4):
            side = "train"  # a big family would overshoot the target: keep looking
        n_eval += len(by_topic[topic]) if side == "eval" else 0
        for key in by_topic[topic]:
            split[key] = side
    return split


# ----------------------------------------------------------------------------- text helpers


def _clean(text: str) -> str:
    text = re.sub(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", "", text.strip())
    return " ".join(text.split())


def _sentences(text: str, n: int) -> str:
    parts = [_clean(s) for s in split_sentences(text or "") if _clean(s)]
    return " ".join(parts[:n])


def _bullets(text: str) -> list[str]:
    return [_clean(line) for line in (text or "").split("\n") if re.match(r"^\s*[-*+•]\s+\S", line)]


def _mask(text: str, card: Card) -> str:
    """The text with the card's own name (and its abbreviation) replaced, so it does not give the answer away."""
    noun = "this measurement" if card.kind == "feature" else "this finding"
    names = {card.name}
    names |= set(re.findall(r"\(([^)]+)\)", card.name))
    names.add(re.sub(r"\s*\([^)]*\)", "", card.name).strip())
    for name in sorted((n for n in names if len(n) > 2), key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", noun, text, flags=re.I)
    text = re.sub(rf"^{noun}", noun[0].upper() + noun[1:], text)
    return text


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w%<>≥≤=+-]+", " ", str(text).lower()).split())


def _item_id(kind: str, question: str, options: Sequence[str]) -> str:
    blob = json.dumps([kind, _norm(question), sorted(_norm(o) for o in options)], ensure_ascii=False)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _item(card: Card, split: str, topic: str, kind: str, template: str, section: str, question: str,
          reference: str, options: Sequence[str] = (), answer: int | None = None,
          method: str = "template", context: str | None = None) -> dict:
    return {
        "id": _item_id(kind, question, options), "type": kind, "template": template, "method": method,
        "split": split, "topic": topic, "key": card.key, "kind": card.kind, "name": card.name,
        "question": question, "reference": reference, "options": list(options), "answer": answer,
        "source": card.source, "section": section, "chunk_ids": card.chunk_ids.get(section, []),
        "context": context if context is not None else card.sections.get(section, ""),
    }


# ----------------------------------------------------------------------------- templates


def _open_templates(card: Card) -> list[tuple[str, str, str, str]]:
    """(template, section, question, reference) for one card."""
    s = card.sections
    out = [("open_definition", "Definition", f"What is {card.the_name}?", _sentences(s["Definition"], 2))]
    if card.kind == "condition":
        crit = _bullets(s.get("Criteria", ""))[:2]
        if crit:
            out.append(("open_criteria", "Criteria", f"What are the ECG criteria for {card.name}?",
                        " ".join(c if c.endswith(".") else c + "." for c in crit)))
        if s.get("Waveform"):
            out.append(("open_waveform", "Waveform", f"How does {card.name} look on a 12-lead ECG?",
                        _sentences(s["Waveform"], 2)))
        for bullet in _bullets(s.get("Differential diagnosis", ""))[:2]:
            other, _, why = bullet.partition(":")
            if why.strip() and len(other) < 80:
                out.append(("open_differential", "Differential diagnosis",
                            f"How is {card.name} told apart from {other.strip()[:1].lower() + other.strip()[1:]}?",
                            _sentences(why, 1)))
    else:
        for template, section, question in (
            ("open_measurement", "Measurement", f"How is {card.the_name} measured?"),
            ("open_normal", "Normal values", f"What are the normal values of {card.the_name}?"),
            ("open_significance", "Clinical significance", f"What is the clinical significance of {card.the_name}?"),
        ):
            if s.get(section):
                out.append((template, section, question, _sentences(s[section], 2)))
    return [o for o in out if o[3]]


def _mcq_specs(card: Card) -> list[tuple[str, str, str, str, callable]]:
    """(template, section, question, correct option, value of another card) for one card."""
    s = card.sections
    names = lambda other: other.name  # noqa: E731
    specs = []
    noun = "ECG measurement" if card.kind == "feature" else "ECG finding"
    definition = _mask(_sentences(s["Definition"], 1), card)
    specs.append(("mcq_definition", "Definition", f"Which {noun} matches this definition? {definition}",
                  card.name, names))
    if card.kind == "condition":
        if s.get("Waveform"):
            specs.append(("mcq_waveform", "Waveform",
                          f"Which ECG finding is described here? {_mask(_sentences(s['Waveform'], 1), card)}",
                          card.name, names))
        for i, bullet in enumerate(_bullets(s.get("Criteria", ""))[:2]):
            specs.append(("mcq_criterion", "Criteria", f"Which criterion belongs to {card.name}?",
                          _mask(bullet, card),
                          lambda other, i=i: (lambda b: _mask(b[i], other) if len(b) > i else None)(
                              _bullets(other.sections.get("Criteria", "")))))
        if card.scp_codes:
            specs.append(("mcq_ptbxl_code", "PTB-XL statements",
                          f"Which PTB-XL statement code stands for {card.name}?", card.scp_codes[0],
                          lambda other: other.scp_codes[0] if other.scp_codes else None))
    else:
        for template, section, lead in (("mcq_measurement", "Measurement", "Which measurement is obtained this way?"),
                                        ("mcq_normal", "Normal values", "Which measurement has these normal values?")):
            if s.get(section):
                specs.append((template, section, f"{lead} {_mask(_sentences(s[section], 1), card)}", card.name, names))
        if card.unit:
            specs.append(("mcq_unit", "Measurement", f"In which unit is {card.the_name} reported?", card.unit,
                          lambda other: other.unit or None))
    return specs


def _distractors(card: Card, correct: str, pool: Sequence[Card], value, rng: random.Random,
                 topic: Mapping[str, str], n: int = 3) -> list[str] | None:
    """``n`` distinct wrong options from other topics' cards, same kind and category first."""
    others = [c for c in pool if topic[c.key] != topic[card.key]]
    rng.shuffle(others)
    others.sort(key=lambda c: (c.kind != card.kind, c.category != card.category))
    chosen, seen = [], {_norm(correct)}
    for other in others:
        option = value(other)
        if option and _norm(option) not in seen:
            chosen.append(option)
            seen.add(_norm(option))
            if len(chosen) == n:
                return chosen
    return None


def template_items(cards: Sequence[Card], split: Mapping[str, str], seed: int = 0,
                   families: Mapping[str, Sequence[str]] = FAMILIES) -> tuple[list[dict], Counter]:
    """Open and multiple-choice items from templates; returns ``(items, skipped)`` where
    ``skipped`` counts the items that could not be made (template -> count), e.g. a question
    with fewer than three distinct distractors in its split."""
    topic = {c.key: topic_of(c.key, families) for c in cards}
    units = sorted({c.unit for c in cards if c.unit})
    items, skipped = [], Counter()
    for card in cards:
        side = split[card.key]
        pool = [c for c in cards if split[c.key] == side]
        rng = random.Random(f"{seed}:{card.key}")
        for template, section, question, reference in _open_templates(card):
            items.append(_item(card, side, topic[card.key], "open", template, section, question, reference))
        for template, section, question, correct, value in _mcq_specs(card):
            if template == "mcq_unit":  # units are shared by many features: any other unit is wrong
                wrong = [u for u in units if u != correct]
                rng.shuffle(wrong)
                wrong = wrong[:3] if len(wrong) >= 3 else None
            else:
                wrong = _distractors(card, correct, pool, value, rng, topic)
            if not correct or wrong is None:
                skipped[template] += 1
                continue
            options = [correct, *wrong]
            rng.shuffle(options)
            items.append(_item(card, side, topic[card.key], "mcq", template, section, question, correct,
                               options, options.index(correct)))
    return items, skipped


# ----------------------------------------------------------------------------- LLM generation

GENERATION_PROMPT = """Write exam questions for physicians about electrocardiography from the passage below, using only facts stated in it.
Write {n_open} open question(s), each with a correct answer of one or two sentences, and {n_mcq} multiple-choice question(s), each with four options of which exactly one is correct and three are plausible but wrong.
Reply with JSON only, in this form:
{{"open": [{{"question": "...", "answer": "..."}}], "mcq": [{{"question": "...", "options": ["...", "...", "...", "..."], "correct": 0}}]}}

Passage ({title}, {section}):
{text}"""


def generation_prompt(card: Card, section: str, n_open: int = 2, n_mcq: int = 1) -> str:
    """The prompt asking an LLM for questions on one card section (the paper's generation step)."""
    return GENERATION_PROMPT.format(n_open=n_open, n_mcq=n_mcq, title=card.name, section=section,
                                    text=card.sections[section])


def _json_span(text: str):
    """The first JSON object in a reply (code fences and chatter around it allowed)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the reply")
    obj, _ = json.JSONDecoder().raw_decode(text[start:])
    if not isinstance(obj, dict):
        raise ValueError("the reply's JSON is not an object")
    return obj


def parse_generated(text: str) -> tuple[list[dict], list[str]]:
    """Questions from a generation reply: ``([{"type", "question", "reference", "options",
    "answer"}], problems)``; each malformed question is a problem, the others are kept."""
    try:
        obj = _json_span(text)
    except ValueError as exc:
        return [], [str(exc)]
    out, problems = [], []
    for i, q in enumerate(obj.get("open") or []):
        if not (isinstance(q, dict) and str(q.get("question", "")).strip() and str(q.get("answer", "")).strip()):
            problems.append(f"open question {i}: needs non-empty 'question' and 'answer'")
            continue
        out.append({"type": "open", "question": _clean(q["question"]), "reference": _clean(q["answer"]),
                    "options": [], "answer": None})
    for i, q in enumerate(obj.get("mcq") or []):
        if not isinstance(q, dict):
            problems.append(f"multiple-choice question {i}: not an object")
            continue
        options = [_clean(str(o)) for o in (q.get("options") or [])]
        correct = q.get("correct")
        if isinstance(correct, str) and correct.strip().upper() in ("A", "B", "C", "D"):
            correct = "ABCD".index(correct.strip().upper())
        if not str(q.get("question", "")).strip():
            problems.append(f"multiple-choice question {i}: no question")
        elif len(options) != 4 or len({_norm(o) for o in options}) != 4 or not all(options):
            problems.append(f"multiple-choice question {i}: needs four distinct non-empty options")
        elif not isinstance(correct, int) or isinstance(correct, bool) or not 0 <= correct < 4:
            problems.append(f"multiple-choice question {i}: 'correct' must be 0-3 or A-D, got {correct!r}")
        else:
            out.append({"type": "mcq", "question": _clean(q["question"]), "reference": options[correct],
                        "options": options, "answer": correct})
    if not out and not problems:
        problems.append("the reply's JSON holds no questions")
    return out, problems


def generate_items(llm, cards: Sequence[Card], split: Mapping[str, str], n_open: int = 2, n_mcq: int = 1,
                   max_new_tokens: int = 768, families: Mapping[str, Sequence[str]] = FAMILIES
                   ) -> tuple[list[dict], dict[str, str]]:
    """Items written by ``llm`` from every card section (one prompt each, batched).

    Returns ``(items, problems)``, ``problems`` mapping ``"source#section"`` to what was wrong
    (a failed generation, unparseable JSON, a malformed question); nothing raises.
    """
    jobs = [(card, section) for card in cards for section in OPEN_SECTIONS[card.kind]
            if card.sections.get(section)]
    generations = llm.generate([generation_prompt(c, s, n_open, n_mcq) for c, s in jobs],
                               max_new_tokens=max_new_tokens, temperature=0.0)
    items, problems = [], {}
    method = f"llm:{llm.name}"
    for (card, section), gen in zip(jobs, generations):
        where = f"{card.source}#{section}"
        if not gen.ok:
            problems[where] = f"generation failed: {gen.error}"
            continue
        found, issues = parse_generated(gen.text)
        if issues:
            problems[where] = "; ".join(issues)
        for q in found:
            items.append(_item(card, split[card.key], topic_of(card.key, families), q["type"],
                               f"llm_{q['type']}", section, q["question"], q["reference"], q["options"],
                               q["answer"], method=method))
    return items, problems


# ----------------------------------------------------------------------------- checks


def deduplicate(items: Iterable[dict]) -> tuple[list[dict], int]:
    """Items without repeats of (type, normalised question, options); evaluation items are kept
    first so a repeat across splits is dropped from training. Returns ``(items, removed)``."""
    items = list(items)
    order = sorted(range(len(items)), key=lambda i: items[i]["split"] != "eval")
    seen, keep = set(), set()
    for i in order:
        key = _item_id(items[i]["type"], items[i]["question"], items[i]["options"])
        if key not in seen:
            seen.add(key)
            keep.add(i)
    return [items[i] for i in sorted(keep)], len(items) - len(keep)


def topic_leaks(items: Iterable[dict]) -> list[str]:
    """Topics (and card keys) found in more than one split; empty for a clean split."""
    sides: dict[str, set] = defaultdict(set)
    for item in items:
        sides[f"topic:{item['topic']}"].add(item["split"])
        sides[f"key:{item['key']}"].add(item["split"])
    return sorted(name for name, s in sides.items() if len(s) > 1)


def _ngrams(text: str, n: int) -> set:
    words = _norm(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def ngram_overlap(items: Iterable[dict], n: int = 8) -> float:
    """Share of the evaluation references' word ``n``-grams that occur anywhere in the training
    items (questions, references, options): wording the split could not separate."""
    items = list(items)
    seen = set()
    for item in items:
        if item["split"] == "train":
            for text in (item["question"], item["reference"], *item["options"]):
                seen |= _ngrams(text, n)
    grams = [g for item in items if item["split"] == "eval" for g in _ngrams(item["reference"], n)]
    return sum(g in seen for g in grams) / len(grams) if grams else 0.0


def sample_items(items: Sequence[dict], n: int | None, seed: int = 0) -> list[dict]:
    """Up to ``n`` items, spread over templates and topics (seeded round-robin); all when ``n`` is None."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    rng = random.Random(seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for item in sorted(items, key=lambda x: x["id"]):
        groups[item["template"]].append(item)
    for group in groups.values():
        rng.shuffle(group)
    names = sorted(groups)
    rng.shuffle(names)
    out = []
    while len(out) < n:
        for name in names:
            if groups[name] and len(out) < n:
                out.append(groups[name].pop())
    return out


# ----------------------------------------------------------------------------- files


def write_jsonl(items: Iterable[dict], path: str | os.PathLike) -> Path:
    """One JSON object per line, written to a temporary file and moved into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


REQUIRED = ("id", "type", "split", "topic", "key", "question", "reference", "source")


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], dict[int, str]]:
    """Items from a JSONL file and ``{line number: problem}`` for the lines that were skipped."""
    items, problems = [], {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                problems[number] = f"not JSON ({exc.msg})"
                continue
            missing = [k for k in REQUIRED if not isinstance(item, dict) or k not in item]
            if missing:
                problems[number] = f"missing {', '.join(missing)}"
            elif item["type"] == "mcq" and (len(item.get("options") or []) != 4
                                            or item.get("answer") not in (0, 1, 2, 3)):
                problems[number] = "a multiple-choice item needs four options and an answer index 0-3"
            else:
                items.append(item)
    return items, problems


# ----------------------------------------------------------------------------- the dataset


@dataclass
class Dataset:
    """The items, what the build did (``report``), its cache ``key`` and its JSONL ``path``."""

    items: list[dict]
    report: dict = field(default_factory=dict)
    key: str = ""
    path: Path | None = None

    def select(self, split: str | None = None, type: str | None = None) -> list[dict]:
        return [i for i in self.items if (split is None or i["split"] == split)
                and (type is None or i["type"] == type)]

    @property
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.items)

    def counts(self) -> pd.DataFrame:
        """Items per split, type and method; cards and topics per split."""
        frame = self.frame
        table = frame.pivot_table(index=["split", "method"], columns="type", values="id",
                                  aggfunc="count", fill_value=0)
        cards = frame.groupby("split")["key"].nunique()
        topics = frame.groupby("split")["topic"].nunique()
        table["cards"] = [cards[s] for s, _ in table.index]
        table["topics"] = [topics[s] for s, _ in table.index]
        table.columns.name = None
        return table


def _corpus_fingerprint(docs_files) -> list:
    return [[f.collection, f.source, f.sha256()] for f in docs_files if f.collection == "expert"]


def _resolve_generator(generator):
    from ..config import settings
    from ..llm import get_llm

    if generator == "auto":
        if not settings().endpoint_configured:
            return None
        generator = None
    if generator is None or generator is False:
        return None
    return get_llm(generator, cache=True)


def build_dataset(eval_fraction: float = 0.25, seed: int = 0, generator="auto", docs=None,
                  families: Mapping[str, Sequence[str]] = FAMILIES, n_open: int = 2, n_mcq: int = 1,
                  cache: bool = True) -> Dataset:
    """The instruction dataset, from templates and (when ``generator`` gives a backend) an LLM.

    ``generator``: ``"auto"`` (the ``$ECGKIT_LLM_BASE_URL`` endpoint when configured, else
    templates only), None (templates only) or any :func:`ecgkit.llm.get_llm` spec / LLM. ``docs``:
    a corpus (default: :func:`load_corpus`, with the user's extra folders). With ``cache``, the
    JSONL is written under ``cache_dir("ecgllm", "datasets")``, keyed by the expert files, the
    parameters, the generator and ``VERSIONS['ecgllm_dataset']``, and read back on a rerun.
    """
    llm = _resolve_generator(generator)
    spec = {"eval_fraction": eval_fraction, "seed": seed,
            "families": {k: list(v) for k, v in sorted(families.items())},
            "generator": llm.name if llm is not None else None, "n_open": n_open, "n_mcq": n_mcq}
    key = None
    if docs is None:
        spec["corpus"] = _corpus_fingerprint(discover_files())
        from ..cache import key as cache_key

        key = cache_key("ecgllm_dataset", spec)
        path = cache_dir("ecgllm", "datasets") / f"dataset-{key}.jsonl"
        report_path = path.with_suffix(".report.json")
        if cache and path.is_file() and report_path.is_file():
            items, problems = read_jsonl(path)
            if not problems:
                return Dataset(items, json.loads(report_path.read_text()), key, path)
            log.warning("ecgllm: cached dataset %s has unreadable lines %s; rebuilding", path, problems)
    cards = load_cards(docs)
    if not cards:
        raise ValueError("the corpus has no condition or feature cards to make questions from")
    split = split_topics(cards, eval_fraction, seed, families)
    items, skipped = template_items(cards, split, seed, families)
    problems: dict[str, str] = {}
    generated = 0
    if llm is not None:
        more, problems = generate_items(llm, cards, split, n_open, n_mcq, families=families)
        generated = len(more)
        items += more
    items, removed = deduplicate(items)
    report = {
        "cards": len(cards),
        "cards_by_split": dict(Counter(split.values())),
        "topics_by_split": {s: len({topic_of(k, families) for k, v in split.items() if v == s}) for s in SPLITS},
        "eval_topics": sorted({topic_of(k, families) for k, v in split.items() if v == "eval"}),
        "template_items_skipped": dict(skipped),
        "generator": llm.name if llm is not None else None,
        "generated_items": generated,
        "generation_problems": problems,
        "duplicates_removed": removed,
        "items": len(items),
        "topic_leaks": topic_leaks(items),
        "ngram8_overlap": ngram_overlap(items, 8),
    }
    dataset = Dataset(items, report, key or "", None)
    retry = any(p.startswith("generation failed") for p in problems.values())
    if cache and key is not None and not retry:  # failed generations are retried by the next build
        dataset.path = write_jsonl(items, path)
        report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return dataset
