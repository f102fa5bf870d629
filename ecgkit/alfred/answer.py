"""ALFRED step 5: reading the LLM's answer into the five PTB-XL superclass labels.

:func:`parse_answer` never raises. It reads, in this order of preference:

1. **Label lines**: ``NORM: yes`` (the format the prompt asks for; also ``MI = No``,
   ``**STTC**: Yes``, ``- CD: present``, ``HYP: no (reason)``, several on one line, full
   names such as ``Myocardial infarction: yes`` or ``MI (myocardial infarction): yes``).
2. **JSON**: an object anywhere in the text (also inside a ```json fence), with the classes as
   keys (``{"MI": true, "NORM": "no"}``), optionally nested under ``labels``/``diagnosis``,
   or a list of positive classes (``{"diagnosis": ["MI", "STTC"]}``) plus ``explanation``.
3. **A list of positive classes**: ``Diagnosis: MI, STTC`` (also ``Diagnoses:``, ``Labels:``,
   ``Superclasses:``, ``Answer:``); the classes not listed are ``no``; ``none`` means none.

Values: yes/no, true/false, present/absent, positive/negative, detected/not detected, y/n, 1/0
(case and markdown emphasis ignored). The answer is ``ok`` only when all five labels are
determined and no class got two different values (a contradiction makes that label ``None``
and the answer not ok). The explanation is the text after ``Explanation:`` (or the JSON
``explanation``), else whatever is left after the labels.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

import pandas as pd

from ..vocabulary import SUPERCLASSES

__all__ = ["ParsedAnswer", "parse_answer", "parse_many", "parse_value", "SUPERCLASSES"]


_ALIASES = {
    "NORM": ["norm", "normal ecg", "normal", "normal ekg"],
    "MI": ["mi", "myocardial infarction", "infarction"],
    "STTC": ["sttc", "st/t changes?", "st-t changes?", "st/t", "st-t", "st t changes?",
             "st/t abnormalit(?:y|ies)"],
    "CD": ["cd", "conduction disturbances?", "conduction abnormalit(?:y|ies)",
           "conduction defects?"],
    "HYP": ["hyp", "hypertrophy"],
}
_CLASS_RE = "|".join(sorted((a for v in _ALIASES.values() for a in v), key=len, reverse=True))

_TRUE = ("yes", "true", "present", "positive", "detected", "y", "1")
_FALSE = ("no", "false", "absent", "negative", "not present", "not detected", "none", "n", "0")
_VALUE_RE = (r"not\s+present|not\s+detected|yes|true|present|positive|detected|no|false|absent|"
             r"negative|none|y|n|1|0")

# CLASS [ (full name) ] : VALUE    (value must end at a word boundary)
_LABEL = re.compile(
    rf"(?<![\w/-])(?P<cls>{_CLASS_RE})(?:\s*\([^)\n]{{0,60}}\))?\s*(?::|=|-|–|—|\s+is\b)\s*"
    rf"(?P<val>{_VALUE_RE})(?![\w/])(?!\s*(?:or|/|\|)\s*(?:{_VALUE_RE})\b)",
    re.IGNORECASE,
)
_EXPL = re.compile(r"(?im)^[^\w\n]*(?:explanation|reasoning|rationale)\b[^\w\n]*[:\-–]\s*")
_LIST = re.compile(r"(?im)^[^\w\n]*(?:final\s+)?(?:diagnos[ie]s|labels?|superclass(?:es)?|answer|"
                   r"classes|findings?)[^\w\n]*[:\-–]\s*(?P<items>.+)$")
_MARKDOWN = re.compile(r"\*\*|__|`+|^#+\s*", re.MULTILINE)


@dataclass
class ParsedAnswer:
    """Labels (superclass -> True/False/None), explanation, whether the answer is complete and
    consistent (``ok``) and, when not, the ``problem``."""

    labels: dict = field(default_factory=lambda: {s: None for s in SUPERCLASSES})
    explanation: str = ""
    ok: bool = False
    problem: str = ""
    form: str = ""            # "lines", "json", "list" or "" (nothing found)

    def to_dict(self) -> dict:
        return {**self.labels, "explanation": self.explanation, "ok": self.ok,
                "problem": self.problem, "form": self.form}


def _canon(name: str) -> Optional[str]:
    n = " ".join(name.lower().replace("*", "").split())
    for cls, aliases in _ALIASES.items():
        for a in aliases:
            if re.fullmatch(a, n):
                return cls
    return None


def parse_value(value) -> Optional[bool]:
    """``True``/``False`` from a yes/no-like value (bool, 0/1, string); ``None`` otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = " ".join(value.lower().strip(" .!*_`'\"").split())
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    return None


class _Collector:
    def __init__(self):
        self.values: dict[str, set] = {s: set() for s in SUPERCLASSES}

    def add(self, cls: Optional[str], val: Optional[bool]) -> None:
        if cls is not None and val is not None:
            self.values[cls].add(val)

    @property
    def found(self) -> bool:
        return any(self.values.values())

    def result(self) -> tuple[dict, list, list]:
        labels, missing, contradictory = {}, [], []
        for s, vals in self.values.items():
            if len(vals) == 1:
                labels[s] = next(iter(vals))
            else:
                labels[s] = None
                (contradictory if vals else missing).append(s)
        return labels, missing, contradictory


def _from_json(text: str):
    """(collector, explanation) from the first JSON object that parses, else None."""
    starts = [m.start() for m in re.finditer(r"\{", text)][:20]
    for st in starts:
        end = text.rfind("}")
        while end > st:
            try:
                obj = json.loads(text[st:end + 1])
            except (ValueError, RecursionError):
                end = text.rfind("}", st, end)
                continue
            if isinstance(obj, dict):
                col, expl = _Collector(), ""
                _walk_json(obj, col)
                for k, v in obj.items():
                    if isinstance(k, str) and k.lower() in ("explanation", "reasoning",
                                                            "rationale") and isinstance(v, str):
                        expl = v.strip()
                if col.found:
                    return col, expl
            break  # this start parsed (or was not an object): try the next one
    return None


def _walk_json(obj: dict, col: _Collector, depth: int = 0) -> None:
    if depth > 3:
        return
    for k, v in obj.items():
        if not isinstance(k, str):
            continue
        cls = _canon(k)
        if cls is not None and not isinstance(v, (dict, list)):
            col.add(cls, parse_value(v))
        elif isinstance(v, dict):
            _walk_json(v, col, depth + 1)
        elif isinstance(v, list) and k.lower().rstrip("s") in (
                "diagnosi", "diagnose", "label", "superclass", "superclasse", "class", "classe",
                "positive", "finding", "answer"):
            names = [_canon(str(x)) for x in v]
            if all(n is not None for n in names):
                for s in SUPERCLASSES:
                    col.add(s, s in names)


def _from_list(text: str):
    for m in _LIST.finditer(text):
        items = m.group("items").strip().strip(".[]")
        tokens = [t.strip(" .'\"[]") for t in re.split(r",|;|\band\b|\+", items)]
        tokens = [t for t in tokens if t]
        if not tokens:
            continue
        if len(tokens) == 1 and tokens[0].lower() in ("none", "nothing", "no abnormality"):
            col = _Collector()
            for s in SUPERCLASSES:
                col.add(s, False)
            return col, m
        names = [_canon(t) for t in tokens]
        if all(n is not None for n in names):
            col = _Collector()
            for s in SUPERCLASSES:
                col.add(s, s in names)
            return col, m
    return None


def parse_answer(text) -> ParsedAnswer:
    """The five superclass labels from an LLM answer (see the module doc). Never raises."""
    try:
        return _parse(text)
    except Exception as exc:  # pragma: no cover - defensive: the parser must not raise
        return ParsedAnswer(problem=f"parser error: {type(exc).__name__}: {exc}")


def _parse(text) -> ParsedAnswer:
    if text is None or (isinstance(text, float) and text != text):
        return ParsedAnswer(problem="no answer")
    if not isinstance(text, str):
        return ParsedAnswer(problem=f"answer is not text ({type(text).__name__})")
    if not text.strip():
        return ParsedAnswer(problem="empty answer")

    clean = _MARKDOWN.sub("", text)
    m = _EXPL.search(clean)
    head, tail = (clean[: m.start()], clean[m.end():]) if m else (clean, "")

    # 1. label lines (in the head; in the tail only lines that are nothing but a label)
    col, form, explanation = _Collector(), "", ""
    for lm in _LABEL.finditer(head):
        col.add(_canon(lm.group("cls")), parse_value(lm.group("val")))
    expl_lines = []
    for line in tail.splitlines():
        full = _LABEL.fullmatch(line.strip(" \t-*•.,;"))
        if full:
            col.add(_canon(full.group("cls")), parse_value(full.group("val")))
        else:
            expl_lines.append(line)
    if col.found:
        form = "lines"
        explanation = "\n".join(expl_lines).strip()
        if not m:
            explanation = _LABEL.sub("", head)
            explanation = "\n".join(l for l in explanation.splitlines()
                                    if l.strip(" \t-*•.,;:")).strip()
    else:
        js = _from_json(clean)
        if js is not None:
            col, explanation = js
            form = "json"
            if not explanation and m:
                explanation = tail.strip()
        else:
            ls = _from_list(head)
            if ls is not None:
                col, lm = ls
                form = "list"
                explanation = tail.strip() if m else (head[: lm.start()] + head[lm.end():]).strip()

    if not col.found:
        snippet = " ".join(text.split())[:80]
        return ParsedAnswer(explanation=tail.strip(), problem=f"no labels found in {snippet!r}")
    labels, missing, contradictory = col.result()
    problems = []
    if contradictory:
        problems.append("contradictory answers for " + ", ".join(contradictory))
    if missing:
        problems.append("no answer for " + ", ".join(missing))
    return ParsedAnswer(labels, explanation, not problems, "; ".join(problems), form)


def parse_many(texts: Iterable) -> tuple[pd.DataFrame, int]:
    """:func:`parse_answer` for many answers: a DataFrame (columns NORM, MI, STTC, CD, HYP as
    object True/False/None, explanation, ok, problem, form; the index of ``texts`` when it is
    a Series or dict) and the number of answers that are not ok."""
    if isinstance(texts, dict):
        index, values = list(texts.keys()), list(texts.values())
    elif isinstance(texts, pd.Series):
        index, values = texts.index, list(texts.values)
    else:
        values = list(texts)
        index = range(len(values))
    rows = [parse_answer(t).to_dict() for t in values]
    cols = list(SUPERCLASSES) + ["explanation", "ok", "problem", "form"]
    df = pd.DataFrame(rows, columns=cols, index=index)
    for s in SUPERCLASSES:
        df[s] = df[s].astype(object).where(df[s].notna(), None)
    df["ok"] = df["ok"].astype(bool)
    return df, int((~df["ok"]).sum())
