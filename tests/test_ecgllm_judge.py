"""The LLM judge: rubric prompt, score parsing, and the control-pair check against chance."""
import re

import numpy as np
import pytest

from ecgkit.ecgllm.judge import (RUBRIC, control_check, control_pairs, judge_answers, judge_prompt, parse_score,
                                 to_four_levels)

from ecgllm_fakes import ScriptedLLM

ITEMS = [{"id": f"i{k}", "type": "open", "template": "open_definition" if k % 2 else "open_criteria",
          "topic": f"t{k}", "question": f"Question {k}?", "reference": f"Reference answer number {k}.",
          "context": f"Passage {k}."} for k in range(12)]


def _graded(prompt):
    reference = re.search(r"Reference answer: (.*)\n", prompt).group(1)
    answer = re.search(r"Answer to grade: (.*)\n", prompt).group(1)
    return reference, answer


def test_prompt_and_parsing():
    text = judge_prompt("Q?", "ref", "ans", "ctx")
    assert RUBRIC in text and "Reference answer: ref" in text and "Answer to grade: ans" in text
    assert "Source passage:\nctx" in text and "Source passage" not in judge_prompt("Q?", "ref", "ans")
    assert "(empty)" in judge_prompt("Q?", "ref", "  ")
    assert parse_score("Score: 4") == 4 and parse_score("5/5") == 5 and parse_score("12") is None
    assert parse_score("I'd say 0 or 7") is None and parse_score("") is None
    assert to_four_levels(5) == 4 and to_four_levels(2.0) == 2 and np.isnan(to_four_levels(np.nan))


def test_control_pairs_pair_each_reference_with_another_topics_answer():
    pairs = control_pairs(ITEMS, n=8, seed=0)
    assert len(pairs) == 8 and len({p["id"] for p in pairs}) == 8
    by_id = {i["id"]: i for i in ITEMS}
    for p in pairs:
        assert p["right"] == by_id[p["id"]]["reference"] and p["wrong"] != p["right"]
        assert by_id[p["wrong_from"]]["template"] == by_id[p["id"]]["template"]
        assert by_id[p["wrong_from"]]["topic"] != by_id[p["id"]]["topic"]
    assert control_pairs(ITEMS, n=8, seed=0) == pairs


def test_a_judge_that_reads_passes_the_control_check():
    judge = ScriptedLLM(lambda p: "5" if _graded(p)[0] == _graded(p)[1] else "1")
    summary, frame = control_check(judge, control_pairs(ITEMS, n=8))
    assert summary["right_preferred"] == 8 and summary["ties"] == 0 and summary["preference_rate"] == 1.0
    assert summary["p_value"] == pytest.approx(0.5 ** 8) and summary["better_than_chance"]
    assert (frame["right_score"] == 5).all() and (frame["wrong_score"] == 1).all()


def test_a_judge_that_always_answers_3_is_at_chance():
    summary, _ = control_check(ScriptedLLM(lambda p: "3"), control_pairs(ITEMS, n=8))
    assert summary["ties"] == 8 and summary["right_preferred"] == 0 and summary["p_value"] == 1.0
    assert not summary["better_than_chance"]


def test_a_contrary_or_unreadable_judge_is_not_better_than_chance():
    contrary = ScriptedLLM(lambda p: "1" if _graded(p)[0] == _graded(p)[1] else "5")
    assert not control_check(contrary, control_pairs(ITEMS, n=8))[0]["better_than_chance"]
    mumbling = ScriptedLLM(lambda p: "The answer is good.")
    summary, frame = control_check(mumbling, control_pairs(ITEMS, n=4))
    assert summary["unparsed"] == 4 and not summary["better_than_chance"] and frame["right_score"].isna().all()
    # too few pairs cannot beat chance even when all are right (4 of 4: p = 0.0625)
    reader = ScriptedLLM(lambda p: "5" if _graded(p)[0] == _graded(p)[1] else "2")
    assert not control_check(reader, control_pairs(ITEMS, n=4))[0]["better_than_chance"]


def test_judge_answers_keeps_failures_as_missing_scores():
    replies = iter(["4", None, "no idea"])
    rows = [{"question": "q", "reference": "r", "answer": "a"}] * 3
    frame = judge_answers(ScriptedLLM(lambda p: next(replies)), rows)
    assert frame["score"].iloc[0] == 4 and frame["score"].iloc[1:].isna().all()
    assert frame["error"].iloc[1] == "scripted failure"


def test_a_local_judge_scores_by_the_most_likely_digit(tmp_cache):
    def score(prompt, digit):
        reference, answer = _graded(prompt)
        return 0.0 if digit == ("5" if reference == answer else "2") else -3.0

    reader = ScriptedLLM(lambda p: "unused", score=score, name="local-reader")
    summary, frame = control_check(reader, control_pairs(ITEMS, n=8))
    assert summary["better_than_chance"] and summary["unparsed"] == 0
    assert (frame["right_score"] == 5).all() and (frame["wrong_score"] == 2).all()
    assert frame["right_reply"][0] == "most likely digit: 5"
    always_3 = ScriptedLLM(lambda p: "unused", score=lambda p, d: 0.0 if d == "3" else -1.0, name="local-3")
    summary, _ = control_check(always_3, control_pairs(ITEMS, n=8))
    assert summary["ties"] == 8 and not summary["better_than_chance"]
    # the same backend asked to write its reply is parsed instead
    rows = [{"question": "q", "reference": "r", "answer": "a"}]
    assert judge_answers(reader, rows, by="generate")["score"].isna().all()
    with pytest.raises(ValueError):
        judge_answers(reader, rows, by="vote")


def test_expected_rating_from_digit_probabilities():
    from ecgkit.ecgllm.judge import expected_rating

    probs = {"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.2, "5": 0.2}
    logprobs = {d: float(np.log(p)) for d, p in probs.items()}
    assert expected_rating(logprobs) == pytest.approx(3.2)
    # normalised over the five digits: the rest of the vocabulary does not matter
    assert expected_rating({d: v - 2.0 for d, v in logprobs.items()}) == pytest.approx(3.2)
    # an endpoint digit missing from the top list (an upper bound) counts as 0
    status = {d: "full" for d in probs} | {"1": "bound"}
    assert expected_rating(logprobs, status) == pytest.approx((3.2 - 0.1) / 0.9)
    assert np.isnan(expected_rating({d: float("nan") for d in probs}))


def test_the_expected_rating_separates_what_the_top_digit_ties(tmp_cache):
    def score(prompt, digit):
        reference, answer = _graded(prompt)
        if digit == "4":
            return 0.0                       # the top digit is always 4
        if digit == "5":
            return -0.5 if reference == answer else -3.0
        return -3.0

    judge = ScriptedLLM(lambda p: "unused", score=score, name="local-4")
    frame = judge_answers(judge, [{"question": "q", "reference": "r", "answer": "r"}])
    assert frame["score"][0] == 4 and 4 < frame["expected"][0] < 5
    assert frame[[f"p{d}" for d in "12345"]].sum(axis=1)[0] == pytest.approx(1.0)
    assert frame["p4"][0] > frame["p5"][0] > frame["p1"][0]
    summary, pairs = control_check(judge, control_pairs(ITEMS, n=8))
    assert summary["compared_on"] == "expected"
    assert summary["top_ties"] == 8 and summary["top_right_preferred"] == 0
    assert summary["right_preferred"] == 8 and summary["ties"] == 0 and summary["better_than_chance"]
    assert (pairs["right_expected"] > pairs["wrong_expected"]).all() and (pairs["right_score"] == 4).all()
    # a judge that writes its reply is compared on its digits; it has no expected rating
    writer = ScriptedLLM(lambda p: "4")
    summary, pairs = control_check(writer, control_pairs(ITEMS, n=4))
    assert summary["compared_on"] == "score" and summary["ties"] == 4 and pairs["right_expected"].isna().all()
    assert to_four_levels(4.6) == 4 and to_four_levels(2.4) == 2 and to_four_levels(2.5) == 3


def test_judge_scores_are_cached_per_answer(tmp_cache):
    calls = []

    def score(prompt, digit):
        calls.append(prompt)
        return 0.0 if digit == "3" else -1.0

    judge = ScriptedLLM(lambda p: "unused", score=score, name="local-cache")
    rows = [{"question": f"q{k}", "reference": "r", "answer": "a"} for k in range(3)]
    judge_answers(judge, rows[:2])
    assert len(calls) == 10
    frame = judge_answers(judge, rows)              # one more answer: only it is scored
    assert len(calls) == 15 and frame["score"].tolist() == [3.0, 3.0, 3.0]
    judge_answers(judge, rows, cache=False)
    assert len(calls) == 30


def test_a_judge_without_probabilities_writes_its_reply(tmp_cache):
    from ecgkit.llm import OptionScores

    class NoLogprobs(ScriptedLLM):
        option_scoring = "first_token"

        def option_logprobs(self, items, system=None, progress=None, batch_size=None):
            return [OptionScores.failed(options, "response has no logprobs") for _, _, options in items]

    frame = judge_answers(NoLogprobs(lambda p: "Score: 2", name="nolp"), [{"question": "q", "reference": "r",
                                                                          "answer": "a"}])
    assert frame["score"][0] == 2 and np.isnan(frame["expected"][0]) and frame["reply"][0] == "Score: 2"
