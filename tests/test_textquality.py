"""Quality flags of generated text: every flag on small fixed texts, the support threshold on the
hand-checked examples it was set on."""
from __future__ import annotations

import numpy as np
import pytest

from ecgkit import textquality as tq

LBBB = ["complete left bundle branch block", "CLBBB"]
GOOD = ("The QRS lasts 120 ms or more with broad notched R waves in I, aVL, V5 and V6; "
        "in complete left bundle branch block the T waves point opposite to the QRS.")


def test_a_clean_text_is_ok_and_each_flag_is_raised_by_its_own_defect():
    texts = [GOOD,
             GOOD,                                                          # cut: finish reason
             "A wide QRS in CLBBB. " + "the wide QRS the wide QRS " * 6,     # repetition
             "Aleksey's syndrome, also known as cardiac tampon syndrome, is rare.",  # unnamed
             "Explanation: <your reasoning>"]                               # placeholder
    grades = tq.grade_texts(texts, names=[LBBB] * 5, finish=["stop", "length", "stop", "stop", "stop"])
    assert grades["grade"].tolist()[0] == "ok"
    assert grades.loc[1, "flags"] == "cut"
    assert grades.loc[2, "repetition"] and grades.loc[2, "repeated"] > tq.REPETITION_THRESHOLD
    assert grades.loc[3, "flags"] == "unnamed"
    assert grades.loc[4, "placeholder"]
    for i in range(1, 5):
        assert grades.loc[i, "grade"].startswith("flagged: ")   # a flagged text is never "ok"


def test_cut_from_the_token_count_against_the_limit():
    grades = tq.grade_texts([GOOD, GOOD], completion_tokens=[80, 41], max_new_tokens=80)
    assert grades["cut"].tolist() == [True, False]


def test_unjudgeable_flags_stay_false_and_an_empty_text_is_not_ok():
    grades = tq.grade_texts([GOOD, ""], sources=[[], ["some source text"]])
    assert not grades.loc[0, ["cut", "unnamed", "unsupported"]].any()
    assert np.isnan(grades.loc[0, "support"])
    assert grades.loc[1, "grade"] == "no text"


@pytest.mark.parametrize("text, named", [
    ("A complete left-bundle-branch block widens the QRS.", True),       # the name, punctuation ignored
    ("In CLBBB the QRS is wide.", True),                                 # the code
    ("The left bundle branch is blocked, so the QRS is wide.", True),    # most content words
    ("The QRS is wide and notched.", False),
])
def test_names_any(text, named):
    assert tq.names_any(text, LBBB) is named


def test_initials_of_a_multi_word_name_count_as_naming_it():
    assert tq.names_any("LVH gives tall R waves.", ["left ventricular hypertrophy"])
    assert not tq.names_any("Tall R waves.", ["left ventricular hypertrophy"])


def test_repeated_share():
    assert tq.repeated_share("one two three four five") == 0
    assert tq.repeated_share("a b c a b c a b c") == pytest.approx(4 / 7)
    assert np.isnan(tq.repeated_share("too short"))


def test_support_threshold_separates_the_hand_checked_examples():
    texts, sources, supported = zip(*tq.SUPPORT_EXAMPLES)
    similarity = tq.support_similarity(texts, [[s] for s in sources])
    supported = np.array(supported)
    assert (similarity[supported] >= tq.SUPPORT_THRESHOLD + 0.1).all(), similarity
    assert (similarity[~supported] < tq.SUPPORT_THRESHOLD - 0.1).all(), similarity
    grades = tq.grade_texts(texts, sources=[[s] for s in sources])
    assert grades["unsupported"].tolist() == [not s for s in supported]


def test_support_is_the_best_of_several_sources():
    text, source, _ = tq.SUPPORT_EXAMPLES[0]
    alone = tq.support_similarity([text], [[source]])[0]
    both = tq.support_similarity([text], [["A microphone turns sound into a voltage.", source]])[0]
    assert both == pytest.approx(alone, abs=1e-5)


def test_flag_counts_and_bad_input():
    grades = tq.grade_texts([GOOD, "<your answer>", ""], finish=["stop", "length", "stop"])
    counts = tq.flag_counts(grades)
    assert counts.loc["cut", "texts"] == 1 and counts.loc["placeholder", "texts"] == 1
    assert counts.loc["passed (no flag)", "texts"] == 1 and counts.loc["no text", "texts"] == 1
    with pytest.raises(TypeError, match="list of texts"):
        tq.grade_texts("one text")
    with pytest.raises(ValueError, match="2 finish reasons for 1 texts"):
        tq.grade_texts([GOOD], finish=["stop", "stop"])


def test_flagged_examples_one_per_combination_most_frequent_first():
    grades = tq.grade_texts([GOOD, "<x>", "<y>", GOOD, "Aleksey's syndrome is rare."], names=[LBBB] * 5,
                            finish=["stop", "stop", "stop", "length", "stop"]).set_axis(list("abcde"))
    picked = tq.flagged_examples(grades, n=2)
    assert list(picked.index) == ["b", "d"]      # placeholder, unnamed twice; then cut (first of the singles)
    assert picked.loc["b", "flags"] == "unnamed, placeholder"
    assert len(tq.flagged_examples(grades.loc[["a"]])) == 0
