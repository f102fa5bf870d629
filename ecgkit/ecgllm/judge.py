"""LLM as a judge: a written 1-5 rubric, checked on control pairs before its scores are used.

The judge sees the question, the reference answer, the source passage (context) and the answer
to grade, and replies with one digit (:data:`RUBRIC`). An endpoint writes its reply, and a reply
without a digit 1-5 is counted (``unparsed``) and left out, never guessed; a local model's score is
the digit it finds most likely as its reply (:func:`judge_answers`, ``by``).

**Control pairs.** Before the judge's scores rank anything, it grades, for each of some
evaluation questions, the reference answer and a deliberately wrong answer to the same question
(the reference answer of another card for the same kind of question: the definition of another
condition, the criteria of another...). A judge that can read should score the right one higher.
:func:`control_check` reports how often it does, the ties, and an exact one-sided sign test
(binomial, ties left out) against a judge that cannot tell them apart; ``better_than_chance`` is
False when that test is not significant, and then the results table must not rank by the judge.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["RUBRIC", "JUDGE_SYSTEM", "judge_prompt", "parse_score", "judge_answers", "control_pairs",
           "control_check", "to_four_levels"]

JUDGE_SYSTEM = "You are an expert cardiologist grading answers to questions about electrocardiography."

RUBRIC = """Score the answer against the reference answer and the source passage:
5 = correct and complete: agrees with the reference on every point that matters.
4 = correct, with minor omissions or imprecise wording.
3 = correct but incomplete: what it says is right, but important points of the reference are missing.
2 = partially incorrect: some statements contradict the reference or the passage.
1 = incorrect: wrong, off the question, or empty.
Reply with the score only: one digit from 1 to 5."""

_DIGIT = re.compile(r"(?<!\d)([1-5])(?!\d)")


def judge_prompt(question: str, reference: str, answer: str, context: str = "") -> str:
    """The user message asking for a 1-5 score."""
    passage = f"Source passage:\n{context.strip()}\n\n" if context and context.strip() else ""
    return (f"{passage}Question: {question}\n\nReference answer: {reference}\n\n"
            f"Answer to grade: {answer.strip() or '(empty)'}\n\n{RUBRIC}")


def parse_score(text: str) -> int | None:
    """The first standalone digit 1-5 in a judge's reply, None when there is none."""
    match = _DIGIT.search(text or "")
    return int(match.group(1)) if match else None


def judge_answers(llm, rows: Sequence[dict], max_new_tokens: int = 4, use_context: bool = True,
                  by: str = "auto") -> pd.DataFrame:
    """Scores of answers: ``rows`` hold ``question``, ``reference``, ``answer`` and optionally
    ``context``. Returns ``score`` (1-5, or NaN when the reply had none), ``reply`` and ``error``.

    ``by="generate"``: the judge writes a reply and its first digit 1-5 is the score.
    ``by="loglikelihood"``: the score is the digit 1-5 the judge finds most likely as its reply
    (decoding constrained to the five valid answers; a local model only). ``"auto"``: the latter
    when the backend gives log-likelihoods, else the former.
    """
    from .mcq import has_loglikelihood, option_loglikelihoods

    prompts = [judge_prompt(r["question"], r["reference"], r["answer"], r.get("context", "") if use_context else "")
               for r in rows]
    if by == "auto":
        by = "loglikelihood" if has_loglikelihood(llm) else "generate"
    if by == "loglikelihood":
        digits = ["1", "2", "3", "4", "5"]
        scored = option_loglikelihoods(llm, prompts, [digits] * len(prompts), system=JUDGE_SYSTEM,
                                       normalize=False) if prompts else []
        scores = [None if np.all(np.isnan(row)) else int(np.nanargmax(row)) + 1 for row in scored]
        replies = [f"most likely digit: {s}" for s in scores]
        errors = ["" for _ in scores]
    elif by == "generate":
        generations = llm.generate(prompts, max_new_tokens=max_new_tokens, system=JUDGE_SYSTEM) if prompts else []
        scores = [parse_score(g.text) if g.ok else None for g in generations]
        replies = [g.text for g in generations]
        errors = [g.error or "" for g in generations]
    else:
        raise ValueError(f"by must be 'auto', 'generate' or 'loglikelihood', not {by!r}")
    return pd.DataFrame({
        "score": pd.array([np.nan if s is None else float(s) for s in scores], dtype=float),
        "reply": replies,
        "error": errors,
    })


def control_pairs(items: Sequence[dict], n: int | None = None, seed: int = 0) -> list[dict]:
    """Up to ``n`` pairs (reference answer, wrong answer) for open evaluation items: the wrong
    answer is the reference of another topic's item made by the same template (or, failing that,
    of any other topic's item)."""
    items = [i for i in items if i["type"] == "open"]
    rng = random.Random(seed)
    chosen = sorted(items, key=lambda i: i["id"])
    rng.shuffle(chosen)
    pairs = []
    for item in chosen:
        same = [o for o in items if o["template"] == item["template"] and o["topic"] != item["topic"]]
        others = same or [o for o in items if o["topic"] != item["topic"]]
        if not others:
            continue
        wrong = rng.choice(sorted(others, key=lambda o: o["id"]))
        pairs.append({"id": item["id"], "question": item["question"], "reference": item["reference"],
                      "context": item.get("context", ""), "right": item["reference"], "wrong": wrong["reference"],
                      "wrong_from": wrong["id"]})
        if n is not None and len(pairs) >= n:
            break
    return pairs


def control_check(llm, pairs: Sequence[dict], alpha: float = 0.05, max_new_tokens: int = 4,
                  use_context: bool = True, by: str = "auto") -> tuple[dict, pd.DataFrame]:
    """How well the judge separates right from deliberately wrong answers.

    Returns ``(summary, frame)``: ``summary`` has ``n``, ``right_preferred``, ``ties``,
    ``wrong_preferred``, ``unparsed`` (a pair with an unscored side), ``preference_rate``
    (right preferred / n), ``p_value`` (one-sided exact sign test, ties and unparsed pairs left
    out) and ``better_than_chance``; ``frame`` one row per pair with both scores.
    """
    from scipy.stats import binomtest

    rows = [{**p, "answer": p["right"]} for p in pairs] + [{**p, "answer": p["wrong"]} for p in pairs]
    scored = judge_answers(llm, rows, max_new_tokens=max_new_tokens, use_context=use_context, by=by)
    n = len(pairs)
    frame = pd.DataFrame({"id": [p["id"] for p in pairs], "question": [p["question"] for p in pairs],
                          "right_score": scored["score"].to_numpy()[:n], "wrong_score": scored["score"].to_numpy()[n:],
                          "right_reply": scored["reply"].to_numpy()[:n], "wrong_reply": scored["reply"].to_numpy()[n:]})
    valid = frame[["right_score", "wrong_score"]].notna().all(axis=1)
    right = int((frame["right_score"] > frame["wrong_score"])[valid].sum())
    wrong = int((frame["right_score"] < frame["wrong_score"])[valid].sum())
    ties = int(valid.sum()) - right - wrong
    decided = right + wrong
    p_value = float(binomtest(right, decided, 0.5, alternative="greater").pvalue) if decided else 1.0
    summary = {"n": n, "right_preferred": right, "ties": ties, "wrong_preferred": wrong,
               "unparsed": int((~valid).sum()), "preference_rate": right / n if n else float("nan"),
               "p_value": p_value, "better_than_chance": bool(decided and p_value < alpha), "alpha": alpha}
    return summary, frame


def to_four_levels(score) -> float:
    """A 1-5 judge score on the experts' four-level scale (1 incorrect, 2 partially incorrect,
    3 correct but incomplete, 4 correct): 4 and 5 both mean correct. NaN stays NaN."""
    if score is None or (isinstance(score, float) and np.isnan(score)):
        return float("nan")
    return float(min(int(score), 4))
