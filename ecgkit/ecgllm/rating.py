"""Expert rating: a blinded sheet to fill in, its import, per-configuration scores and agreement.

ECG-LLM's experts rated answers on four levels: incorrect, partially incorrect, correct but
incomplete, correct (:data:`SCALE`, scored 1-4).

* :func:`export_sheet` writes ``<name>.csv`` for the raters: one row per answer, shuffled, with
  the question, the reference answer (optional), the answer and empty ``rating`` and ``comment``
  columns, and no trace of which configuration wrote it; the key that un-blinds it
  (row -> item, configuration, answer, question) goes to a separate ``<name>.key.csv`` that raters
  do not get.
* :func:`import_ratings` reads filled sheets (one per rater; the rater is the ``rater`` column
  or the file name), joins them to the key, and reports what it skipped: empty ratings, values
  not on the scale, rows not in the key, rows whose answer text no longer matches the key (a
  sheet made from older answers). Ratings may be written as the level's words or its number.
  It also reads the layout in which the ECG-LLM authors published their ratings: columns
  ``Question, Answer, Model`` and one column per level (``Incorrect, Partially incorrect, Corret
  incomplete, Correct``; header case, spacing and small typos do not matter), an "x" under the
  chosen level, no row label: each row is matched to the book's answer by question (case and
  spacing ignored) and model (= configuration). Rows with no mark or several, and rows that match
  no answer, are counted and named in the report and in a warning.
* :func:`expert_scores` gives per-configuration means and the share of each level;
  :func:`agreement` gives, for every pair of methods (experts, judge, automatic metrics), the
  Spearman correlation and, where both are on the four-level scale, the quadratic-weighted kappa.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import random
import re
import warnings
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SCALE", "export_sheet", "read_sheet", "import_ratings", "expert_scores", "agreement", "parse_rating"]

SCALE = ("incorrect", "partially incorrect", "correct but incomplete", "correct")
SHEET_COLUMNS = ["row", "question", "reference", "answer", "rating", "comment", "rater"]
_FIELDS = ("row", "question", "reference", "answer", "model", "rating", "comment", "rater")
# the words of the level names, and which words make which level ("but" is ignored)
_LEVEL_WORDS = ("incorrect", "partially", "correct", "incomplete")
_LEVELS_BY_WORDS = {frozenset({"incorrect"}): 1, frozenset({"partially", "incorrect"}): 2,
                    frozenset({"correct", "incomplete"}): 3, frozenset({"correct"}): 4}


def _answer_hash(text: str) -> str:
    return hashlib.sha1(" ".join(str(text).split()).encode()).hexdigest()[:12]


def export_sheet(answers: pd.DataFrame, folder: str | os.PathLike, name: str = "ecgllm_rating_sheet",
                 seed: int = 0, with_reference: bool = True) -> tuple[Path, Path]:
    """Write the blinded sheet and its key; returns ``(sheet_path, key_path)``.

    ``answers`` has columns ``id`` (item), ``configuration``, ``question``, ``answer`` and
    ``reference``. Row labels and order come from a seeded shuffle, so a rerun with the same
    answers writes the same sheet.
    """
    missing = {"id", "configuration", "question", "answer", "reference"} - set(answers.columns)
    if missing:
        raise ValueError(f"answers lack the columns {sorted(missing)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = answers.reset_index(drop=True).copy()
    order = list(range(len(frame)))
    random.Random(seed).shuffle(order)
    frame = frame.iloc[order].reset_index(drop=True)
    frame["row"] = [f"R{i + 1:04d}" for i in range(len(frame))]
    sheet = pd.DataFrame({"row": frame["row"], "question": frame["question"],
                          "reference": frame["reference"] if with_reference else "",
                          "answer": frame["answer"], "rating": "", "comment": "", "rater": ""})
    key = pd.DataFrame({"row": frame["row"], "id": frame["id"], "configuration": frame["configuration"],
                        "answer_sha1": [_answer_hash(a) for a in frame["answer"]], "question": frame["question"]})
    sheet_path, key_path = folder / f"{name}.csv", folder / f"{name}.key.csv"
    sheet.to_csv(sheet_path, index=False)
    key.to_csv(key_path, index=False)
    return sheet_path, key_path


def parse_rating(value) -> int | None:
    """1-4 from a level's words (any case and spacing) or its number; None when empty.
    Raises ValueError for anything else."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = " ".join(str(value).strip().lower().replace("_", " ").replace("-", " ").split())
    if not text:
        return None
    if re.fullmatch(r"[1-4](?:\.0)?", text):
        return int(float(text))
    if text in SCALE:
        return SCALE.index(text) + 1
    raise ValueError(f"{value!r} is not on the scale ({' / '.join(SCALE)}, or 1-4)")


def _plain(text) -> str:
    """Lower case, runs of spaces as one: how questions, models and headers are compared."""
    return " ".join(str(text).lower().split())


def _level_of(header) -> int | None:
    """1-4 when a column header names a level of :data:`SCALE`, tolerating case, spacing,
    punctuation and a typo per word ("Corret incomplete" is correct but incomplete); else None."""
    words = [w for w in re.sub(r"[^a-z]+", " ", str(header).lower()).split() if w != "but"]
    found = set()
    for word in words:
        close = difflib.get_close_matches(word, _LEVEL_WORDS, n=1, cutoff=0.9)
        if not close:
            return None
        found.add(close[0])
    return _LEVELS_BY_WORDS.get(frozenset(found))


def _level_columns(columns) -> dict[str, int]:
    """Columns named after a level of :data:`SCALE` → 1-4 (see :func:`_level_of`). ValueError when
    two columns name the same level."""
    levels: dict[str, int] = {}
    for col in columns:
        level = _level_of(col)
        if level is None:
            continue
        other = next((c for c, k in levels.items() if k == level), None)
        if other is not None:
            raise ValueError(f"columns {other!r} and {col!r} both name the level {SCALE[level - 1]!r}")
        levels[col] = level
    return levels


def _marked_rating(row, levels: dict[str, int]) -> int | None:
    """The level whose column is marked ("x", "1", "yes", ...) in a one-column-per-level sheet;
    None when none is marked; ValueError when several are."""
    marked = [k for col, k in levels.items() if str(row[col]).strip().lower() not in ("", "0", "no", "false", "nan")]
    if len(marked) > 1:
        raise ValueError(f"marked under {len(marked)} levels ({', '.join(SCALE[k - 1] for k in marked)})")
    return marked[0] if marked else None


def read_sheet(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rated rows of one filled sheet and ``{label: problem}`` for rows skipped (empty or
    off-scale rating, no level or several levels marked).

    The rated rows have ``row`` (the sheet's row label, None when it has none), ``line`` (the row's
    line in the file, the header being line 1), ``question``, ``model``, ``answer``, ``rating`` 1-4
    and ``rater``. A skipped row is labelled by its row label, or ``"line N"`` without one.

    Layouts read: the project's own (``row``, ``answer`` and a ``rating`` column holding a
    level's words or 1-4); the same with one column per level of :data:`SCALE`, the chosen one
    marked ("x"); and the ECG-LLM authors' (``Question, Answer, Model``, one column per level,
    no row label). Header case and spacing do not matter."""
    path = Path(path)
    sheet = pd.read_csv(path, dtype=str, keep_default_na=False)
    sheet = sheet.rename(columns=lambda c: _plain(c) if _plain(c) in _FIELDS else c)
    columns = set(sheet.columns)
    levels = {} if "rating" in columns else _level_columns(sheet.columns)
    lacks = [] if "answer" in columns else ["answer"]
    if "row" not in columns and not {"question", "model"} <= columns:
        lacks.append("row (or question and model)")
    if "rating" not in columns and len(levels) < len(SCALE):
        absent = [level for k, level in enumerate(SCALE, start=1) if k not in levels.values()]
        lacks.append(f"rating (or one column per level; {', '.join(absent)} not found)")
    if lacks:
        raise ValueError(f"{path.name} is not a rating sheet: no column(s) {'; '.join(lacks)}")
    keyed = "row" in columns
    rows, problems = [], {}
    for i, r in enumerate(sheet.to_dict("records")):
        label = r["row"] if keyed else f"line {i + 2}"
        try:
            rating = _marked_rating(r, levels) if levels else parse_rating(r["rating"])
        except ValueError as exc:
            problems[label] = str(exc)
            continue
        if rating is None:
            problems[label] = "not rated"
            continue
        rater = (r.get("rater") or "").strip() or path.stem
        rows.append({"row": r["row"] if keyed else None, "line": i + 2, "question": r.get("question", ""),
                     "model": r.get("model", ""), "answer": r["answer"], "rating": rating, "rater": rater})
    return pd.DataFrame(rows, columns=["row", "line", "question", "model", "answer", "rating", "rater"]), problems


def _find_in_key(key: pd.DataFrame, rated, key_name: str) -> tuple[str | None, str]:
    """The key row of a rated row without a row label, found by question and model (case and
    spacing ignored; the answer decides between several): ``(row, "")`` or ``(None, why)``."""
    if "question" not in key.columns:
        raise ValueError(f"{key_name} has no question column, needed to match sheets without row labels: "
                         "export the sheet again")
    hits = key.index[((key["question"].map(_plain) == _plain(rated["question"]))
                      & (key["configuration"].map(_plain) == _plain(rated["model"]))).to_numpy()]
    if len(hits) > 1:
        same = hits[(key.loc[hits, "answer_sha1"] == _answer_hash(rated["answer"])).to_numpy()]
        hits = same if len(same) else hits[:1]    # none the same: the answer check below names it
    if len(hits) > 1:
        return None, f"{len(hits)} answers of {rated['model']!r} to {rated['question']!r} in the key"
    if not len(hits):
        return None, f"no answer of {rated['model']!r} to {rated['question']!r} in the key"
    return hits[0], ""


def import_ratings(sheets: Iterable[str | os.PathLike], key_path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Filled sheets joined to their key: ``(ratings, report)``.

    ``ratings``: one row per rating with ``rater``, ``row``, ``id``, ``configuration``, ``rating``.
    Rows with a row label are found in the key by it; rows without (the ECG-LLM authors' layout)
    by question and model.
    ``report``: per file, how many ratings were used, how many rows were skipped (``unrated``: no
    rating, one off the scale or several levels marked; ``unmatched``: no answer of the key, or
    not the key's answer text; ``duplicates``) and which rows, and why. A file with skipped rows
    also gives a warning.
    """
    key_name = Path(key_path).name
    key = pd.read_csv(key_path, dtype=str, keep_default_na=False).set_index("row")
    parts, report = [], {}
    for path in sheets:
        rated, problems = read_sheet(path)
        unrated, unmatched = len(problems), 0
        used, seen = [], {}
        for _, r in rated.iterrows():
            keyed = r["row"] is not None
            label = r["row"] if keyed else f"line {r['line']}"
            if keyed:
                row, why = (r["row"], "") if r["row"] in key.index else (None, "row not in the key")
            else:
                row, why = _find_in_key(key, r, key_name)
            pair = (r["rater"], key.loc[row, "id"], key.loc[row, "configuration"]) if row is not None else None
            if pair is not None and pair in seen:   # reported, never averaged: the first rating stays
                problems[label] = (f"duplicate of {seen[pair]} (same rater, question and "
                                   "configuration): the first rating is used")
                continue
            if pair is not None:
                seen[pair] = f"row {label}" if keyed else label
            if row is None:
                problems[label] = why
                unmatched += 1
            elif _answer_hash(r["answer"]) != key.loc[row, "answer_sha1"]:
                problems[label] = "the answer differs from the key's (a sheet from other answers?)"
                unmatched += 1
            else:
                used.append({"rater": r["rater"], "row": row, "id": key.loc[row, "id"],
                             "configuration": key.loc[row, "configuration"], "rating": int(r["rating"])})
        parts.append(pd.DataFrame(used, columns=["rater", "row", "id", "configuration", "rating"]))
        duplicates = sum(p.startswith("duplicate") for p in problems.values())
        name = Path(path).name
        report[name] = {"used": len(used), "skipped": len(problems), "problems": problems,
                        "unrated": unrated, "unmatched": unmatched, "duplicates": duplicates}
        if problems:
            named = "; ".join(f"{label}: {why}" for label, why in list(problems.items())[:5])
            more = f"; and {len(problems) - 5} more (see the report)" if len(problems) > 5 else ""
            warnings.warn(f"{name}: {len(problems)} row(s) skipped ({unrated} without a usable rating, {unmatched} "
                          f"matching no answer of the key, {duplicates} duplicate(s)): {named}{more}", stacklevel=2)
    ratings = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["rater", "row", "id", "configuration", "rating"])
    return ratings, report


def expert_scores(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: mean rating (1-4), ratings, raters, answers and the share of each level."""
    if ratings.empty:
        return pd.DataFrame(columns=["mean", "ratings", "raters", "answers", *SCALE])
    grouped = ratings.groupby("configuration")
    table = pd.DataFrame({"mean": grouped["rating"].mean(), "ratings": grouped.size(),
                          "raters": grouped["rater"].nunique(), "answers": grouped["row"].nunique()})
    for level, label in enumerate(SCALE, start=1):
        table[label] = grouped["rating"].apply(lambda s, level=level: float(np.mean(s == level)))
    return table


def agreement(scores: pd.DataFrame, four_level: Sequence[str] = ()) -> pd.DataFrame:
    """Pairwise agreement between the methods in ``scores`` (one column per method, one row per answer).

    Spearman's rho (and its p-value) for every pair, on the answers both scored; the
    quadratic-weighted Cohen's kappa for pairs where both columns are in ``four_level`` (values
    1-4, e.g. two experts, or an expert and the judge mapped by :func:`~ecgkit.ecgllm.judge.to_four_levels`).
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    rows = []
    for a, b in combinations(scores.columns, 2):
        both = scores[[a, b]].dropna()
        rho = p = kappa = np.nan
        if len(both) >= 3 and both[a].nunique() > 1 and both[b].nunique() > 1:
            result = spearmanr(both[a], both[b])
            rho, p = float(result.statistic), float(result.pvalue)
        if a in four_level and b in four_level and len(both) >= 2:
            x, y = both[a].round().astype(int), both[b].round().astype(int)
            if len(set(x) | set(y)) > 1:
                kappa = float(cohen_kappa_score(x, y, weights="quadratic", labels=[1, 2, 3, 4]))
        rows.append({"method_a": a, "method_b": b, "n": len(both), "spearman": rho, "spearman_p": p,
                     "weighted_kappa": kappa})
    return pd.DataFrame(rows, columns=["method_a", "method_b", "n", "spearman", "spearman_p", "weighted_kappa"])
