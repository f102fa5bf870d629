"""Quality flags for generated text (CQA descriptions, open answers, explanations).

:func:`grade_texts` gives each text the flags of :data:`FLAGS`; a text with any flag is graded
``"flagged: ..."``, never ``"ok"``:

=============  ===========================================================================
flag           raised when
=============  ===========================================================================
cut            the generation hit its length limit (finish reason ``"length"``, or as many
               generated tokens as ``max_new_tokens``), even if its unfinished last sentence
               was dropped afterwards
repetition     the share of repeated word n-grams (:func:`repeated_share`, n = 3) is above
               :data:`REPETITION_THRESHOLD`
unnamed        the text names none of its statement's names: the statement's text, its code
               or abbreviation, a synonym (e.g. an expert card's name), the initials of a
               multi-word name, or most of the name's content words (:func:`names_any`)
unsupported    the text's all-MiniLM-L6-v2 embedding is less similar than
               :data:`SUPPORT_THRESHOLD` (cosine) to every one of its retrieved sources
placeholder    template text such as ``<your reasoning>`` (:data:`PLACEHOLDER`)
=============  ===========================================================================

A flag that cannot be judged (no names given, no sources retrieved, no token count) is left
False. :data:`SUPPORT_EXAMPLES` are the hand-checked (text, source) pairs the support threshold
was set on; ``tests/test_textquality.py`` checks that the threshold still separates them.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["FLAGS", "REPETITION_THRESHOLD", "REPETITION_N", "SUPPORT_THRESHOLD", "SUPPORT_EXAMPLES",
           "PLACEHOLDER", "repeated_share", "names_any", "support_similarity", "grade_texts",
           "flag_counts", "passed", "flagged_examples"]

FLAGS = ("cut", "repetition", "unnamed", "unsupported", "placeholder")
#: word n-grams counted for repetition
REPETITION_N = 3
#: a text whose repeated n-grams are more than this share of its n-grams loops
REPETITION_THRESHOLD = 0.2
#: cosine similarity (all-MiniLM-L6-v2, normalised mean-pooled) below which a text is unsupported by
#: its best-matching source. Set between the hand-checked examples (:data:`SUPPORT_EXAMPLES`): the
#: supported ones scored 0.60-0.79, the unsupported ones -0.08-0.18; 0.4 lies between (checked by
#: tests/test_textquality.py).
SUPPORT_THRESHOLD = 0.4
#: template text a model copied instead of answering
PLACEHOLDER = re.compile(r"<\s*[A-Za-z][A-Za-z _./-]{0,60}>|\byour\s+(?:reasoning|explanation|answer)\b",
                         re.IGNORECASE)

_SOURCE_LBBB = ("Broad notched or slurred R waves in I, aVL, V5 and V6, absent septal q waves in the lateral "
                "leads, a QRS of 120 ms or more, and ST-T waves opposite in direction to the QRS.")
_SOURCE_AF = ("The baseline between QRS complexes has no organised P waves; instead it shows fine or coarse "
              "irregular undulations. RR intervals vary from beat to beat with no recurring pattern.")
_SOURCE_SR = ("A P wave precedes every QRS complex with a constant PR interval; the P wave is upright in I "
              "and II and inverted in aVR, at a rate of 60 to 100 beats per minute.")
#: hand-checked (text, its retrieved source, supported?) pairs: the first four say what the source
#: says in other words; the last four are SmolLM2-135M outputs of the kind chapter 04 showed
#: (an invented syndrome, a run-together word, a text about microphones, the question repeated)
SUPPORT_EXAMPLES = (
    ("In left bundle branch block the QRS is wide, at least 120 ms, with broad notched R waves in the "
     "lateral leads I, aVL, V5 and V6, and the ST segment and T wave point opposite to the QRS.", _SOURCE_LBBB, True),
    ("Atrial fibrillation shows no P waves: the baseline undulates irregularly and the RR intervals are "
     "irregularly irregular.", _SOURCE_AF, True),
    ("In sinus rhythm each QRS complex is preceded by an upright P wave in leads I and II with a fixed PR "
     "interval, and the rate is between 60 and 100 per minute.", _SOURCE_SR, True),
    ("The lateral leads show wide slurred R waves without septal q waves and discordant ST-T changes.",
     _SOURCE_LBBB, True),
    ("Aleksey's syndrome, also known as cardiac tampon syndrome, is a rare disorder of the pericardium "
     "first described in Russia.", _SOURCE_AF, False),
    ("atrinvendorubcebiloadblock", _SOURCE_LBBB, False),
    ("A microphone converts sound into an electrical signal; the diaphragm moves with the sound pressure "
     "and a coil or capacitor turns this motion into a voltage.", _SOURCE_SR, False),
    ("You are a cardiologist. Please answer the question in a friendly way and thank the user.",
     _SOURCE_AF, False),
)

_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"a", "an", "the", "of", "in", "on", "and", "or", "with", "to", "for", "by", "at", "as", "is", "ecg",
         "possible", "probable", "non", "diagnostic", "abnormal", "abnormalities", "changes", "change"}


def _words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower())


def repeated_share(text: str, n: int = REPETITION_N) -> float:
    """The share of the text's word n-grams that repeat an earlier one (0: none; NaN: fewer than n words)."""
    words = _words(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return float("nan")
    return sum(c - 1 for c in Counter(grams).values()) / len(grams)


def _initials(name: str) -> str:
    return "".join(w[0] for w in _words(name) if w not in ("of", "and", "the", "with"))


def names_any(text: str, names: Sequence[str]) -> bool:
    """Whether ``text`` names one of ``names`` (a statement's text, code, synonyms): a name as a
    phrase (case and punctuation ignored), a short code or the initials of a multi-word name as a
    word, or at least two thirds of a name's content words (by their first five letters)."""
    words = _words(text)
    if not words:
        return False
    padded = " " + " ".join(words) + " "
    prefixes = {w[:5] for w in words}
    for name in names:
        parts = _words(name)
        if not parts:
            continue
        if " " + " ".join(parts) + " " in padded:
            return True
        initials = _initials(name)
        if len(parts) >= 2 and len(initials) >= 2 and f" {initials} " in padded:
            return True
        content = [w for w in parts if w not in _STOP and len(w) > 1]
        if len(content) >= 2 and sum(w[:5] in prefixes for w in content) >= 2 * len(content) / 3:
            return True
    return False


def support_similarity(texts: Sequence[str], sources: Sequence[Sequence[str]], encoder=None) -> np.ndarray:
    """Per text, the highest cosine similarity of its embedding to its sources' (NaN: no sources or
    no text). ``encoder``: a text encoder name or folder for :func:`ecgkit.models.embed_texts`
    (None: all-MiniLM-L6-v2, the project's text encoder)."""
    texts = ["" if t is None else str(t) for t in texts]
    sources = [[str(s) for s in (group or []) if str(s).strip()] for group in sources]
    if len(sources) != len(texts):
        raise ValueError(f"{len(sources)} source lists for {len(texts)} texts")
    out = np.full(len(texts), np.nan)
    todo = [i for i, t in enumerate(texts) if t.strip() and sources[i]]
    if not todo:
        return out
    from .models import embed_texts

    unique = list(dict.fromkeys([texts[i] for i in todo] + [s for i in todo for s in sources[i]]))
    vectors = dict(zip(unique, embed_texts(unique, name=encoder, normalize=True, cache=True)))
    for i in todo:
        own = vectors[texts[i]]
        out[i] = max(float(own @ vectors[s]) for s in sources[i])
    return out


def _column(values, n: int, name: str) -> list:
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{len(values)} {name} for {n} texts")
    return values


def grade_texts(texts: Sequence[str], names: Sequence[Sequence[str]] | None = None,
                sources: Sequence[Sequence[str]] | None = None, finish: Sequence[str] | None = None,
                completion_tokens: Sequence[int] | None = None, max_new_tokens: int | None = None,
                encoder=None) -> pd.DataFrame:
    """The quality flags of each generated text (see the module's table), in the texts' order.

    ``names``: per text, what names its statement (None: ``unnamed`` not judged); ``sources``:
    per text, the retrieved chunks' text (None or an empty list: ``unsupported`` not judged);
    ``finish``: the generations' finish reasons; ``completion_tokens`` with ``max_new_tokens``:
    the generated length against the limit. Columns: one bool per flag, ``repeated`` (share),
    ``support`` (similarity), ``flags`` ("cut, unnamed"; "" for none) and ``grade`` ("ok",
    "flagged: ..." or "no text" for an empty text).
    """
    if isinstance(texts, str):
        raise TypeError("grade_texts takes a list of texts, not one string")
    texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
    n = len(texts)
    names, finish = _column(names, n, "name lists"), _column(finish, n, "finish reasons")
    tokens = _column(completion_tokens, n, "token counts")
    support = support_similarity(texts, _column(sources, n, "source lists"), encoder) if sources is not None \
        else np.full(n, np.nan)
    rows = []
    for i, text in enumerate(texts):
        repeated = repeated_share(text)
        limit_hit = (max_new_tokens is not None and tokens[i] is not None and not pd.isna(tokens[i])
                     and int(tokens[i]) >= int(max_new_tokens))
        flags = {
            "cut": bool(finish[i] == "length" or limit_hit),
            "repetition": bool(repeated > REPETITION_THRESHOLD),
            "unnamed": bool(text.strip() and names[i] is not None and not names_any(text, names[i])),
            "unsupported": bool(support[i] < SUPPORT_THRESHOLD),
            "placeholder": bool(PLACEHOLDER.search(text)),
        }
        raised = [f for f in FLAGS if flags[f]]
        grade = "no text" if not text.strip() else ("flagged: " + ", ".join(raised) if raised else "ok")
        rows.append({**flags, "repeated": repeated, "support": support[i], "flags": ", ".join(raised),
                     "grade": grade})
    return pd.DataFrame(rows, columns=[*FLAGS, "repeated", "support", "flags", "grade"])


def passed(grades: pd.DataFrame) -> pd.Series:
    """True where a graded text has no flag (and is not empty)."""
    return grades["grade"] == "ok"


def flag_counts(grades: pd.DataFrame, label: str = "texts") -> pd.DataFrame:
    """How many graded texts raised each flag, how many none (``passed``) and how many were empty."""
    counts = {flag: int(grades[flag].sum()) for flag in FLAGS}
    counts["no text"] = int((grades["grade"] == "no text").sum())
    counts["passed (no flag)"] = int(passed(grades).sum())
    counts["graded"] = len(grades)
    out = pd.DataFrame({label: counts})
    out.index.name = "flag"
    out["share"] = out[label] / max(len(grades), 1)
    return out


def flagged_examples(grades: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """Up to ``n`` flagged rows of ``grades`` (or of a table with its columns), one per combination of
    flags, the most frequent combination first (ties in order of appearance)."""
    flagged = grades[grades["flags"] != ""]
    counts = flagged["flags"].value_counts(sort=False)
    order = sorted(counts.index, key=lambda combo: -counts[combo])      # stable: appearance breaks ties
    firsts = flagged.groupby("flags", sort=False).head(1).set_index("flags", append=True)
    picked = [firsts.xs(combo, level="flags", drop_level=False) for combo in order[:n]]
    if not picked:
        return flagged.iloc[:0]
    return pd.concat(picked).reset_index(level="flags")[flagged.columns]
