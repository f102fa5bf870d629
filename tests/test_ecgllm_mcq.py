"""Multiple-choice scoring on hand-made questions whose answers are known; intervals and McNemar."""
import math

import numpy as np
import pytest

from ecgkit.ecgllm.mcq import (accuracy_ci, mcnemar, option_loglikelihoods, score_by_letter, score_by_loglikelihood,
                               shared_prefix_loglikelihoods)
from ecgkit.ecgllm.prompts import SYSTEM, mcq_prompt, open_prompt, parse_letter
from ecgkit.llm import LocalLLM

from ecgllm_fakes import ScriptedLLM, tiny_llama


def _item(i, question, options, answer):
    return {"id": f"q{i}", "type": "mcq", "template": "hand", "question": question, "options": options,
            "answer": answer, "reference": options[answer]}


ITEMS = [
    _item(0, "Which wave shows atrial depolarisation?", ["T wave", "P wave", "U wave", "QRS complex"], 1),
    _item(1, "Which rhythm has no P waves and irregular RR intervals?",
          ["atrial fibrillation", "sinus rhythm", "sinus bradycardia", "first-degree AV block"], 0),
    _item(2, "What unit is the QRS duration reported in?", ["mV", "degrees", "bpm", "ms"], 3),
]


def test_parse_letter():
    assert parse_letter("B) P wave") == 1 and parse_letter("The answer is D.") == 3
    assert parse_letter("  a") is None and parse_letter("Atrial") is None and parse_letter("") is None
    assert parse_letter("C") == 2 and parse_letter(None) is None


def test_prompts_list_the_options_and_refuse_a_wrong_count():
    text = mcq_prompt("Q?", ["w", "x", "y", "z"])
    assert "A) w\nB) x\nC) y\nD) z" in text and text.endswith("Answer:")
    with pytest.raises(ValueError):
        mcq_prompt("Q?", ["w", "x"])


def test_loglikelihood_scoring_picks_the_most_likely_option(tmp_cache):
    right = {item["question"]: item["reference"] for item in ITEMS}

    def score(prompt, continuation):
        question = prompt.split("Question: ")[1].split("\n")[0]
        return -1.0 if continuation == right[question] else -5.0 * len(continuation)

    llm = ScriptedLLM(lambda p: "", score=score)
    frame = score_by_loglikelihood(llm, ITEMS)
    assert list(frame["predicted"]) == [1, 0, 3] and frame["correct"].all()
    assert frame["scores"][0][1] == pytest.approx(-1.0 / len("P wave"))    # mean per token
    # the endpoint case: no log-likelihoods, NaN rather than a guess
    no_ll = score_by_loglikelihood(ScriptedLLM(lambda p: "A"), ITEMS)
    assert no_ll["predicted"].isna().all() and no_ll["correct"].isna().all()


def test_letter_scoring_counts_unparsed_replies_and_errors_as_wrong():
    replies = iter(["B) P wave", "I do not know", None])
    frame = score_by_letter(ScriptedLLM(lambda p: next(replies)), ITEMS)
    assert list(frame["correct"]) == [True, False, False]
    assert list(frame["unparsed"]) == [False, True, False] and frame["error"][2] == "scripted failure"


def test_smollm2_prefers_the_obvious_option(llm_dir, tmp_cache):
    items = [_item(0, "What comes after Monday, Tuesday, Wednesday?", ["Thursday", "purple", "seventeen", "banana"], 0),
             _item(1, "What is the capital of France?", ["Paris", "a small dog", "the letter q", "blue"], 0)]
    frame = score_by_loglikelihood(LocalLLM(llm_dir, threads=1), items, cache=False)
    assert list(frame["predicted"]) == [0, 0]


def test_shared_prefix_matches_loglikelihood_on_a_tiny_model(llm_dir, tmp_path, tmp_cache):
    llm = LocalLLM(tiny_llama(tmp_path / "tiny", llm_dir))
    prompts = [open_prompt(i["question"]) for i in ITEMS]
    options = [i["options"] for i in ITEMS]
    fast = shared_prefix_loglikelihoods(llm, prompts, options)
    slow = llm.loglikelihood([p for p, o in zip(prompts, options) for _ in o], [x for o in options for x in o],
                             system=SYSTEM)
    assert np.allclose(np.ravel(fast), slow, atol=1e-4)
    scored = option_loglikelihoods(llm, prompts, options, normalize=False)
    assert np.allclose(np.ravel(scored), slow, atol=1e-4)
    assert option_loglikelihoods(llm, prompts, options, normalize=False) == scored     # cached on disk


def test_accuracy_interval():
    ci = accuracy_ci([True, True, False, False], n_boot=500)
    assert ci["accuracy"] == 0.5 and ci["low"] <= 0.5 <= ci["high"] and ci["n"] == 4
    assert accuracy_ci([True] * 5)["low"] == 1.0
    assert accuracy_ci([np.nan, True, False])["n"] == 2
    assert math.isnan(accuracy_ci([])["accuracy"])


def test_mcnemar_exact():
    a = [1, 1, 1, 1, 1, 1, 0, 1]
    b = [0, 0, 0, 0, 0, 0, 0, 1]
    test = mcnemar(a, b)
    assert test["a_only"] == 6 and test["b_only"] == 0 and test["p_value"] == pytest.approx(2 * 0.5 ** 6)
    assert mcnemar(a, a)["p_value"] == 1.0
    assert mcnemar([1, np.nan], [0, 1])["n"] == 1
    with pytest.raises(ValueError):
        mcnemar([1, 0], [1])


def test_scores_are_cached_per_question(tmp_cache):
    asked = []

    def score(prompt, continuation):
        asked.append(prompt)
        return -float(len(continuation))

    llm = ScriptedLLM(lambda p: "", score=score, name="counting")
    prompts = [open_prompt(i["question"]) for i in ITEMS]
    options = [i["options"] for i in ITEMS]
    first = option_loglikelihoods(llm, prompts[:2], options[:2])
    assert len(asked) == 8
    both = option_loglikelihoods(llm, prompts, options)       # one more question: only its options
    assert len(asked) == 12 and both[:2] == first
    assert option_loglikelihoods(llm, prompts, options, normalize=False)[2] == [-2.0, -7.0, -3.0, -2.0]
    assert len(asked) == 12                                    # normalising does not score again
