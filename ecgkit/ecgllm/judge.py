"""LLM as a judge: a written 1-5 rubric, checked on control pairs before its scores are used.

The judge sees the question, the reference answer, the source passage (context) and the answer
to grade, and replies with one digit (:data:`RUBRIC`). A backend that can score options (a local
model; an endpoint with ``top_logprobs``) gives the probabilities of the replies 1..5 (the one
scorer, :meth:`ecgkit.llm.LLM.option_logprobs`, cached per answer): ``expected`` is the expected
rating (sum of digit × probability, normalised over the five digits) and ``score`` the most likely
digit. A backend that cannot writes its reply, and a reply without a digit 1-5 is counted
(``unparsed``) and left out, never guessed (:func:`judge_answers`, ``by``). Compare answers, and
agree with experts (Spearman), on ``expected``: a continuous rating that ties far less often than
the top digit.

**Control pairs.** Before the judge's scores rank anything, it grades, for each of some
evaluation questions, the reference answer and a deliberately wrong answer to the same question
(the reference answer of another card for the same kind of question: the definition of another
condition, the criteria of another...). A judge that can read should score the right one higher.
:func:`control_check` reports how often it does, the ties, and an exact one-sided sign test
(binomial, ties left out) against a judge that cannot tell them apart; ``better_than_chance`` is
False when that test is not significant, and then the results table must not rank by the judge.
"""
from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["RUBRIC", "JUDGE_SYSTEM", "DIGITS", "judge_prompt", "parse_score", "judge_answers", "control_pairs",
           "control_check", "to_four_levels", "expected_rating"]

#: The judge's possible replies, scored as options.
DIGITS = ("1", "2", "3", "4", "5")
#: Two expected ratings closer than this count as a tie.
TIE_TOLERANCE = 1e-6

log = logging.getLogger(__name__)

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


def expected_rating(logprobs: dict, status: dict | None = None) -> float:
    """The expected 1-5 rating from the log-probabilities of the replies ``"1"``..``"5"``,
    normalised over the five digits. A digit an endpoint did not return in its top list
    (``status "bound"``) counts as probability 0. NaN when no digit was scored."""
    weights = []
    for d in DIGITS:
        value = logprobs.get(d, float("nan"))
        if value != value or (status is not None and status.get(d) in ("bound", "nan")):
            weights.append(0.0)
        else:
            weights.append(float(np.exp(value)))
    total = sum(weights)
    if not total > 0:
        return float("nan")
    return float(sum(int(d) * w for d, w in zip(DIGITS, weights)) / total)


def judge_answers(llm, rows: Sequence[dict], max_new_tokens: int = 4, use_context: bool = True,
                  by: str = "auto", cache: bool = True) -> pd.DataFrame:
    """Scores of answers: ``rows`` hold ``question``, ``reference``, ``answer`` and optionally
    ``context``. Returns ``score`` (the top digit 1-5, or NaN when the reply had none),
    ``expected`` (the expected rating, NaN when the judge wrote its reply), ``p1``..``p5`` (the
    digits' probabilities, normalised), ``reply`` and ``error``.

    ``by="probabilities"`` (alias ``"loglikelihood"``): the five replies are scored as options
    (:meth:`ecgkit.llm.LLM.option_logprobs`; cached per answer when ``cache``); ``score`` is the
    most likely digit and ``expected`` the expected rating. ``by="generate"``: the judge writes a
    reply and its first digit 1-5 is the score. ``"auto"``: the former when the backend can
    score options (a local model, an endpoint with log-probabilities), else the latter; and
    the latter too when no answer got probabilities (an endpoint without ``logprobs``).
    """
    prompts = [judge_prompt(r["question"], r["reference"], r["answer"], r.get("context", "") if use_context else "")
               for r in rows]
    auto = by == "auto"
    if auto:
        by = "probabilities" if getattr(llm, "option_scoring", None) else "generate"
    probs = np.full((len(prompts), len(DIGITS)), np.nan)
    expected = [float("nan")] * len(prompts)
    if by in ("probabilities", "loglikelihood"):
        from .mcq import _scorer

        scored = _scorer(llm, cache).option_logprobs([(p, None, list(DIGITS)) for p in prompts],
                                                     system=JUDGE_SYSTEM) if prompts else []
        if auto and scored and not any(s.ok for s in scored):
            log.warning("the judge gave no digit probabilities (%s); it writes its replies instead",
                        scored[0].error)
            return judge_answers(llm, rows, max_new_tokens=max_new_tokens, use_context=use_context,
                                 by="generate", cache=cache)
        scores, replies, errors = [], [], []
        for k, s in enumerate(scored):
            expected[k] = expected_rating(s.logprobs, s.status) if s.ok else float("nan")
            valid = {d: s.logprobs[d] for d in DIGITS
                     if s.ok and s.logprobs.get(d) == s.logprobs.get(d) and s.status.get(d) not in ("bound", "nan")}
            top = int(max(valid, key=valid.get)) if valid else None
            if valid:
                w = np.array([np.exp(valid[d]) if d in valid else 0.0 for d in DIGITS])
                probs[k] = w / w.sum()
            scores.append(top)
            replies.append(f"most likely digit: {top}")
            errors.append(s.error or "")
    elif by == "generate":
        generations = llm.generate(prompts, max_new_tokens=max_new_tokens, system=JUDGE_SYSTEM) if prompts else []
        scores = [parse_score(g.text) if g.ok else None for g in generations]
        replies = [g.text for g in generations]
        errors = [g.error or "" for g in generations]
    else:
        raise ValueError(f"by must be 'auto', 'generate' or 'probabilities', not {by!r}")
    frame = pd.DataFrame({
        "score": pd.array([np.nan if s is None else float(s) for s in scores], dtype=float),
        "expected": pd.array(expected, dtype=float),
    })
    for j, d in enumerate(DIGITS):
        frame[f"p{d}"] = probs[:, j]
    frame["reply"] = replies
    frame["error"] = errors
    return frame


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


def _preferences(right: pd.Series, wrong: pd.Series, tolerance: float = 0.0) -> tuple[int, int, int, pd.Series]:
    valid = right.notna() & wrong.notna()
    diff = (right - wrong)[valid]
    better = int((diff > tolerance).sum())
    worse = int((diff < -tolerance).sum())
    return better, int(valid.sum()) - better - worse, worse, valid


def control_check(llm, pairs: Sequence[dict], alpha: float = 0.05, max_new_tokens: int = 4,
                  use_context: bool = True, by: str = "auto") -> tuple[dict, pd.DataFrame]:
    """How well the judge separates right from deliberately wrong answers.

    Returns ``(summary, frame)``: ``summary`` has ``n``, ``right_preferred``, ``ties``,
    ``wrong_preferred``, ``unparsed`` (a pair with an unscored side), ``preference_rate``
    (right preferred / n), ``p_value`` (one-sided exact sign test, ties and unparsed pairs left
    out), ``better_than_chance`` and ``compared_on`` (``"expected"``: the expected ratings, when
    the judge gave probabilities, two ratings within 1e-6 being a tie; else ``"score"``, the
    digits); ``top_right_preferred``, ``top_ties``, ``top_wrong_preferred`` count the same on the
    top digits. ``frame``: one row per pair with both sides' digits and expected ratings.
    """
    from scipy.stats import binomtest

    rows = [{**p, "answer": p["right"]} for p in pairs] + [{**p, "answer": p["wrong"]} for p in pairs]
    scored = judge_answers(llm, rows, max_new_tokens=max_new_tokens, use_context=use_context, by=by)
    n = len(pairs)
    frame = pd.DataFrame({"id": [p["id"] for p in pairs], "question": [p["question"] for p in pairs],
                          "right_score": scored["score"].to_numpy()[:n], "wrong_score": scored["score"].to_numpy()[n:],
                          "right_expected": scored["expected"].to_numpy()[:n],
                          "wrong_expected": scored["expected"].to_numpy()[n:],
                          "right_reply": scored["reply"].to_numpy()[:n], "wrong_reply": scored["reply"].to_numpy()[n:]})
    on = "expected" if frame[["right_expected", "wrong_expected"]].notna().any().any() else "score"
    tolerance = TIE_TOLERANCE if on == "expected" else 0.0
    right, ties, wrong, valid = _preferences(frame[f"right_{on}"], frame[f"wrong_{on}"], tolerance)
    top_right, top_ties, top_wrong, _ = _preferences(frame["right_score"], frame["wrong_score"])
    decided = right + wrong
    p_value = float(binomtest(right, decided, 0.5, alternative="greater").pvalue) if decided else 1.0
    summary = {"n": n, "right_preferred": right, "ties": ties, "wrong_preferred": wrong,
               "unparsed": int((~valid).sum()), "preference_rate": right / n if n else float("nan"),
               "p_value": p_value, "better_than_chance": bool(decided and p_value < alpha), "alpha": alpha,
               "compared_on": on, "top_right_preferred": top_right, "top_ties": top_ties,
               "top_wrong_preferred": top_wrong}
    return summary, frame


def to_four_levels(score) -> float:
    """A 1-5 judge score on the experts' four-level scale (1 incorrect, 2 partially incorrect,
    3 correct but incomplete, 4 correct): 4 and 5 both mean correct. An expected rating is
    rounded first (for kappa; use it unrounded for Spearman). NaN stays NaN."""
    if score is None or (isinstance(score, float) and np.isnan(score)):
        return float("nan")
    return float(min(int(np.floor(float(score) + 0.5)), 4))
