"""Expert rating: a blinded sheet to fill in, its import, per-configuration scores and agreement.

ECG-LLM's experts rated answers on four levels: incorrect, partially incorrect, correct but
incomplete, correct (:data:`SCALE`, scored 1-4).

* :func:`export_sheet` writes ``<name>.csv`` for the raters: one row per answer, shuffled, with
  the question, the reference answer (optional), the answer and empty ``rating`` and ``comment``
  columns, and no trace of which configuration wrote it; the key that un-blinds it
  (row -> item, configuration, answer) goes to a separate ``<name>.key.csv`` that raters do not get.
* :func:`import_ratings` reads filled sheets (one per rater; the rater is the ``rater`` column
  or the file name), joins them to the key, and reports what it skipped: empty ratings, values
  not on the scale, rows not in the key, rows whose answer text no longer matches the key (a
  sheet made from older answers). Ratings may be written as the level's words or its number.
* :func:`expert_scores` gives per-configuration means and the share of each level;
  :func:`agreement` gives, for every pair of methods (experts, judge, automatic metrics), the
  Spearman correlation and, where both are on the four-level scale, the quadratic-weighted kappa.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SCALE", "export_sheet", "read_sheet", "import_ratings", "expert_scores", "agreement", "parse_rating"]

SCALE = ("incorrect", "partially incorrect", "correct but incomplete", "correct")
SHEET_COLUMNS = ["row", "question", "reference", "answer", "rating", "comment", "rater"]


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
                        "answer_sha1": [_answer_hash(a) for a in frame["answer"]]})
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


def _level_columns(columns) -> dict[str, int]:
    """Columns named after a level of :data:`SCALE` (any case, spacing, ``_``/``-``) → 1-4."""
    norm = {" ".join(str(c).strip().lower().replace("_", " ").replace("-", " ").split()): c for c in columns}
    return {norm[level]: k for k, level in enumerate(SCALE, start=1) if level in norm}


def _marked_rating(row, levels: dict[str, int]) -> int | None:
    """The level whose column is marked ("x", "1", "yes", ...) in a one-column-per-level sheet;
    None when none is marked; ValueError when several are."""
    marked = [k for col, k in levels.items() if str(row[col]).strip().lower() not in ("", "0", "no", "false", "nan")]
    if len(marked) > 1:
        raise ValueError(f"marked under {len(marked)} levels ({', '.join(SCALE[k - 1] for k in marked)})")
    return marked[0] if marked else None


def read_sheet(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rated rows of one filled sheet (``row``, ``answer``, ``rating`` 1-4, ``rater``) and
    ``{row: problem}`` for rows skipped (empty or off-scale rating, several levels marked).

    Two layouts are read: the project's own (a ``rating`` column holding a level's words or
    1-4) and a sheet with one column per level of :data:`SCALE`, the chosen one marked ("x")."""
    path = Path(path)
    sheet = pd.read_csv(path, dtype=str, keep_default_na=False)
    levels = {} if "rating" in sheet.columns else _level_columns(sheet.columns)
    missing = {"row", "answer"} - set(sheet.columns) | ({"rating"} if "rating" not in sheet.columns
                                                       and len(levels) < len(SCALE) else set())
    if missing:
        raise ValueError(f"{path.name} is not a rating sheet: no column(s) {sorted(missing)} "
                         f"(a 'rating' column, or one column per level: {', '.join(SCALE)})")
    rows, problems = [], {}
    for _, r in sheet.iterrows():
        try:
            rating = _marked_rating(r, levels) if levels else parse_rating(r["rating"])
        except ValueError as exc:
            problems[r["row"]] = str(exc)
            continue
        if rating is None:
            problems[r["row"]] = "not rated"
            continue
        rater = (r.get("rater") or "").strip() or path.stem
        rows.append({"row": r["row"], "answer": r["answer"], "rating": rating, "rater": rater})
    return pd.DataFrame(rows, columns=["row", "answer", "rating", "rater"]), problems


def import_ratings(sheets: Iterable[str | os.PathLike], key_path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Filled sheets joined to their key: ``(ratings, report)``.

    ``ratings``: one row per rating with ``rater``, ``row``, ``id``, ``configuration``, ``rating``.
    ``report``: per file, how many ratings were used and which rows were skipped and why.
    """
    key = pd.read_csv(key_path, dtype=str, keep_default_na=False).set_index("row")
    parts, report = [], {}
    for path in sheets:
        rated, problems = read_sheet(path)
        used, seen = [], {}
        for _, r in rated.iterrows():
            pair = (r["rater"], key.loc[r["row"], "id"], key.loc[r["row"], "configuration"]) \
                if r["row"] in key.index else None
            if pair is not None and pair in seen:   # reported, never averaged: the first rating stays
                problems[r["row"]] = (f"duplicate of row {seen[pair]} (same rater, question and "
                                      "configuration): the first rating is used")
                continue
            if pair is not None:
                seen[pair] = r["row"]
            if r["row"] not in key.index:
                problems[r["row"]] = "row not in the key"
            elif _answer_hash(r["answer"]) != key.loc[r["row"], "answer_sha1"]:
                problems[r["row"]] = "the answer differs from the key's (a sheet from other answers?)"
            else:
                used.append({"rater": r["rater"], "row": r["row"], "id": key.loc[r["row"], "id"],
                             "configuration": key.loc[r["row"], "configuration"], "rating": int(r["rating"])})
        parts.append(pd.DataFrame(used, columns=["rater", "row", "id", "configuration", "rating"]))
        report[Path(path).name] = {"used": len(used), "skipped": len(problems), "problems": problems,
                                   "duplicates": sum(p.startswith("duplicate") for p in problems.values())}
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
