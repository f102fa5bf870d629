"""ESI's CQA: statements, cached descriptions, record texts, card exclusion, BERTScore."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ecgkit.esi import cqa
from ecgkit.llm import LLM, Generation

CARD = """---
kind: condition
key: {key}
name: {name}
scp_codes: [{code}]
---
# {title}

## Definition
{title} is a condition of the heart seen on the electrocardiogram.

## Waveform
{waveform}

## PTB-XL statements
{code}.
"""


class FakeLLM(LLM):
    """Canned answers; counts calls and prompts; fails on prompts containing a marker."""

    def __init__(self, name="fake-llm", fail_on=None, text="The QRS is wide and notched in V6."):
        self.name = name
        self.fail_on = fail_on
        self.text = text
        self.calls = 0
        self.prompts: list[str] = []

    def generate(self, prompts, max_new_tokens=128, temperature=0.0, system=None, stop=None,
                 seed=0, **options):
        self.calls += 1
        self.prompts.extend(prompts)
        out = []
        for p in prompts:
            if self.fail_on and self.fail_on in p:
                out.append(Generation.failed("server said no"))
            else:
                out.append(Generation(text=f"Answer: {self.text}", completion_tokens=9))
        return out


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """A corpus of one document and three condition cards."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "documents").mkdir()
    (root / "documents" / "conduction.md").write_text(
        "# Conduction\n\n## Bundle branches\nA bundle branch block widens the QRS complex beyond 120 ms.\n\n"
        "## Rhythm\nAtrial fibrillation has no P waves and irregular RR intervals.\n")
    cards = root / "expert" / "conditions"
    cards.mkdir(parents=True)
    for key, name, code, waveform in [
        ("complete_lbbb", "complete left bundle branch block", "CLBBB",
         "Broad notched R waves in I, aVL, V5 and V6 with a wide QRS and discordant ST-T."),
        ("atrial_fibrillation", "atrial fibrillation", "AFIB",
         "No P waves; an irregular fibrillatory baseline and irregularly irregular RR intervals."),
        ("lvh_cornell", "left ventricular hypertrophy", "LVH",
         "Tall R waves in aVL and deep S waves in V3 with a strain pattern."),
    ]:
        (cards / f"{key}.md").write_text(CARD.format(key=key, name=name, code=code, waveform=waveform,
                                                     title=name.capitalize()))
    return root


@pytest.fixture(scope="module")
def tiny_index(tiny_corpus):
    """A flat index of the tiny corpus, built in memory."""
    from ecgkit.knowledge import KnowledgeIndex

    return KnowledgeIndex.build(corpus_root=tiny_corpus, kind="flat", cache=False, use_env=False)


# ----------------------------------------------------------------------------- record text


def test_record_text_has_the_papers_parts_in_order():
    row = {"age": 66.0, "sex": 0}
    text = cqa.record_text(row, {"SR": "sinus rhythm", "1AVB": "first-degree AV block"},
                           {"SR": "Regular P waves before every QRS.", "1AVB": "PR over 200 ms."})
    assert text == ("This patient is a 66-year-old male. ECG findings: sinus rhythm; first-degree AV block. "
                    "Potential ECG waveforms: Regular P waves before every QRS. PR over 200 ms.")


@pytest.mark.parametrize("row, start", [
    ({"age": 81, "sex": 1}, "This patient is an 81-year-old female."),
    ({"age": 18.0, "sex": "M"}, "This patient is an 18-year-old male."),
    ({"age": float("nan"), "sex": 1}, "This patient is female."),
    ({"age": 40, "sex": None}, "This patient is 40 years old."),
    ({"age": 300, "sex": 0}, "This patient is a male over 89 years old."),
    ({}, "ECG findings:"),
    (pd.Series({"age": None, "sex": float("nan")}), "ECG findings:"),
])
def test_record_text_handles_missing_or_coded_demographics(row, start):
    text = cqa.record_text(row, ["NORM"], {"NORM": "A normal tracing."})
    assert text.startswith(start)
    assert "nan" not in text.lower() and "none" not in text.lower()


def test_record_text_skips_failed_and_missing_descriptions():
    table = pd.DataFrame({"description": ["Wide QRS.", ""], "status": ["ok", "error"]},
                         index=pd.Index(["CLBBB", "AFIB"], name="statement"))
    text = cqa.record_text({"age": 50, "sex": 1}, ["CLBBB", "AFIB", "XYZ"], table)
    assert "ECG findings: CLBBB; AFIB; XYZ." in text
    assert text.endswith("Potential ECG waveforms: Wide QRS.")
    assert "Potential ECG waveforms" not in cqa.record_text({}, ["AFIB"], table)


# ----------------------------------------------------------------------------- statements


def test_ptbxl_statements_and_record_statements(tiny_ptbxl):
    from ecgkit.data import load_ptbxl

    data = load_ptbxl(tiny_ptbxl, 100, cache=False)
    st = cqa.dataset_statements(data)
    assert st.index.name == "statement" and st.loc["IMI", "condition"] == "inferior MI"
    assert st.loc["SR", "records"] == 4 and st.index[0] == "SR"          # most frequent first
    assert set(st.index) == {"NORM", "IMI", "LVH", "CLBBB", "NDT", "SR", "AFIB", "LVOLT"}
    per_record = cqa.record_statements(data)
    assert per_record.loc[2] == ["LVH", "IMI", "SR"]                     # by likelihood
    assert len(cqa.ptbxl_statements(data.scp)) == 8


def test_report_statements_from_lines():
    st = cqa.report_statements(["Sinus rhythm.", "sinus rhythm", "Sinus rhythm", " ", None,
                                "Left axis deviation"])
    assert list(st.index) == ["Sinus rhythm", "sinus rhythm", "Left axis deviation"]
    assert st.loc["Sinus rhythm", "records"] == 2 and st.loc["Left axis deviation", "condition"] == "Left axis deviation"
    with pytest.raises(TypeError):
        cqa.report_statements("Sinus rhythm")


def test_cards_map_statements_via_scp_codes():
    cards = cqa.expert_cards()
    assert "atrial_fibrillation" in cards.index
    assert cards.loc["atrial_fibrillation", "waveform"].startswith("The baseline between QRS")
    assert "## " not in "".join(cards["waveform"])
    mapped = cqa.statement_cards({"AFIB": "atrial fibrillation", "LVH": "lvh", "XYZ": "unknown"}, cards)
    assert mapped["AFIB"] == ["atrial_fibrillation"]
    assert set(mapped["LVH"]) == {"lvh_cornell", "lvh_sokolow_lyon"} and "XYZ" not in mapped
    items = cqa.evaluation_items(pd.DataFrame({"condition": ["atrial fibrillation", "lvh"]},
                                              index=pd.Index(["AFIB", "LVH"], name="statement")), cards)
    assert len(items.loc["LVH", "references"]) == 2
    assert len(cqa.evaluation_items(cards=cards, n=3, seed=1)) == 3


# ----------------------------------------------------------------------------- retrieval


def test_exclusion_keeps_the_scored_card_out_and_fills_top_k(tiny_index):
    query = "How is complete left bundle branch block reflected in a 12-lead ECG?"
    plain = cqa.retrieve_excluding(tiny_index, [query], top_k=2)[0]
    assert any(h.key == "complete_lbbb" for h in plain)                   # it would be retrieved
    kept = cqa.retrieve_excluding(tiny_index, [query], top_k=2, exclude=[{"complete_lbbb"}])[0]
    assert len(kept) == 2 and all(h.key != "complete_lbbb" for h in kept)
    everything = cqa.retrieve_excluding(tiny_index, [query], top_k=50, exclude=[{"complete_lbbb"}])[0]
    n_card = sum(h.key == "complete_lbbb" for h in tiny_index.chunks("expert"))
    assert n_card >= 1 and len(everything) == len(tiny_index) - n_card
    assert cqa.retrieve_excluding(tiny_index, [query], top_k=2, collections=())[0] == []


def test_ablation_prompts_never_contain_the_scored_card(tiny_corpus, tiny_index, tmp_cache):
    from ecgkit.knowledge import load_corpus

    items = cqa.evaluation_items(cards=cqa.expert_cards(load_corpus(tiny_corpus, use_env=False)))
    assert len(items) == 3
    llm = FakeLLM()
    res = cqa.cqa_ablation(items, llm=llm, index=tiny_index, max_new_tokens=8)
    checked = 0
    for prompt in llm.prompts:
        question = prompt.rsplit("Question: ", 1)[1]
        item = next(row for _, row in items.iterrows() if row["condition"] in question)
        assert item["references"][0] not in prompt
        checked += 1
    assert checked == len(llm.prompts) > 0
    waveforms = set(items["references"].str[0])
    assert any(w in p for p in llm.prompts for w in waveforms)            # other cards do appear
    assert list(res["topk"].index) == [1, 2, 3, 4, 5]
    assert list(res["retrieval"].index) == list(cqa.RETRIEVAL_SETTINGS)
    assert len(res["prompts"]) == 5 and res["prompts"]["n"].eq(len(items)).all()
    assert ((res["topk"]["F1"] > 0) & (res["topk"]["F1"] <= 1)).all()
    summary = res["prompts_summary"].iloc[0]
    assert summary["F1 mean"] == pytest.approx(res["prompts"]["F1"].mean())
    # shared settings (top-k 2 = documents + expert = wording 1) are generated once
    n_unique = 5 + 3 + 4
    assert len(llm.prompts) == n_unique * len(items)


# ----------------------------------------------------------------------------- descriptions


STATEMENTS = pd.DataFrame({"condition": ["complete left bundle branch block", "atrial fibrillation"]},
                          index=pd.Index(["CLBBB", "AFIB"], name="statement"))


def test_describe_caches_per_statement_and_keys_on_every_input(tiny_index, tmp_cache):
    llm = FakeLLM()
    first = cqa.describe_statements(STATEMENTS, llm=llm, index=tiny_index, max_new_tokens=8)
    assert llm.calls == 1 and len(llm.prompts) == 2
    assert list(first.index) == ["CLBBB", "AFIB"] and not first["cached"].any()
    assert first.loc["CLBBB", "description"] == "The QRS is wide and notched in V6."   # preamble dropped
    assert "How is complete left bundle branch block reflected in a 12-lead ECG?" in llm.prompts[0]
    assert first.loc["CLBBB", "sources"]
    again = cqa.describe_statements(STATEMENTS, llm=llm, index=tiny_index, max_new_tokens=8)
    assert llm.calls == 1 and again["cached"].all() and again.attrs["cached"] == 2
    pd.testing.assert_series_equal(first["description"], again["description"])
    assert len(list((tmp_cache / "esi" / "cqa").glob("*.json"))) == 2
    # a new statement alone is generated; the others come from the cache
    more = pd.concat([STATEMENTS, pd.DataFrame({"condition": ["left ventricular hypertrophy"]},
                                               index=pd.Index(["LVH"], name="statement"))])
    cqa.describe_statements(more, llm=llm, index=tiny_index, max_new_tokens=8)
    assert len(llm.prompts) == 3
    # every input is part of the key
    for kwargs in ({"top_k": 3}, {"prompt_template": cqa.REPHRASINGS[1]}, {"max_new_tokens": 9},
                   {"collections": ("documents",)}, {"exclude": {"CLBBB": ["complete_lbbb"]}}):
        before = len(llm.prompts)
        cqa.describe_statements(STATEMENTS.head(1), llm=llm, index=tiny_index,
                                **{"max_new_tokens": 8, **kwargs})
        assert len(llm.prompts) == before + 1, kwargs
    other = FakeLLM(name="another-llm")
    cqa.describe_statements(STATEMENTS, llm=other, index=tiny_index, max_new_tokens=8)
    assert len(other.prompts) == 2


def test_description_key_changes_with_each_input():
    base = cqa.Request("AFIB", "atrial fibrillation")
    key = cqa.description_key(base, "llm", "index", 48, cqa.SYSTEM)
    variants = [
        cqa.description_key(cqa.Request("AFIB", "atrial flutter"), "llm", "index", 48, cqa.SYSTEM),
        cqa.description_key(cqa.Request("AFIB", "atrial fibrillation", top_k=3), "llm", "index", 48, cqa.SYSTEM),
        cqa.description_key(cqa.Request("AFIB", "atrial fibrillation", template=cqa.REPHRASINGS[2]),
                            "llm", "index", 48, cqa.SYSTEM),
        cqa.description_key(cqa.Request("AFIB", "atrial fibrillation", collections=("expert",)),
                            "llm", "index", 48, cqa.SYSTEM),
        cqa.description_key(cqa.Request("AFIB", "atrial fibrillation", exclude=("atrial_fibrillation",)),
                            "llm", "index", 48, cqa.SYSTEM),
        cqa.description_key(base, "llm2", "index", 48, cqa.SYSTEM),
        cqa.description_key(base, "llm", "index2", 48, cqa.SYSTEM),
        cqa.description_key(base, "llm", "index", 64, cqa.SYSTEM),
        cqa.description_key(base, "llm", "index", 48, cqa.SYSTEM, "Answer in one sentence."),
        cqa.description_key(base, "llm", "index", 48, "Be brief."),
    ]
    assert len({key, *variants}) == len(variants) + 1
    # without retrieval, the index does not matter
    none = cqa.Request("AFIB", "atrial fibrillation", collections=())
    assert cqa.description_key(none, "llm", "a", 48, "s") == cqa.description_key(none, "llm", "b", 48, "s")


def test_failed_generations_are_counted_not_cached_and_retried(tiny_index, tmp_cache):
    llm = FakeLLM(fail_on="atrial fibrillation")
    out = cqa.describe_statements(STATEMENTS, llm=llm, index=tiny_index, max_new_tokens=8)
    assert out.attrs["failed"] == 1 and out.attrs["n"] == 2
    assert out.loc["AFIB", "status"] == "error" and out.loc["AFIB", "description"] == ""
    assert "server said no" in out.loc["AFIB", "error"]
    assert out.loc["CLBBB", "status"] == "ok"
    before = len(llm.prompts)
    cqa.describe_statements(STATEMENTS, llm=llm, index=tiny_index, max_new_tokens=8)
    assert len(llm.prompts) == before + 1                                 # only the failed one again
    empty = FakeLLM(name="empty-llm", text="   ")
    out = cqa.describe_statements(STATEMENTS, llm=empty, index=tiny_index, max_new_tokens=8)
    assert out.attrs["failed"] == 2 and set(out["status"]) == {"empty"}


def test_clean_description_drops_an_unfinished_sentence():
    assert cqa.clean_description("Answer: Wide QRS. Notched R in", "length") == "Wide QRS."
    assert cqa.clean_description("Wide QRS. Notched R in", "stop") == "Wide QRS. Notched R in"
    assert cqa.clean_description("Notched R in", "length") == "Notched R in"


def test_cqa_texts_for_ptbxl_and_report_datasets(tiny_ptbxl, tiny_index, tmp_cache):
    from ecgkit.data import load_ptbxl

    data = load_ptbxl(tiny_ptbxl, 100, cache=False)
    llm = FakeLLM()
    texts = cqa.cqa_texts(data, llm=llm, index=tiny_index, max_new_tokens=8)
    assert list(texts.index) == list(data.meta.index) and texts.attrs["statements"] == 8
    assert texts.loc[3].startswith("This patient is a 53-year-old female. ECG findings: "
                                   "complete left bundle branch block; atrial fibrillation.")
    assert texts.loc[3].count("The QRS is wide and notched in V6.") == 2
    calls = llm.calls
    again = cqa.cqa_texts(data, llm=llm, index=tiny_index, max_new_tokens=8)
    assert llm.calls == calls and again.attrs["cached"] == 8
    pd.testing.assert_series_equal(texts, again)
    meta = pd.DataFrame({"report_0": ["Sinus rhythm.", "Atrial fibrillation"],
                         "report_1": ["Left axis deviation", np.nan]},
                        index=pd.Index([11, 12], name="study_id"))
    mimic = SimpleNamespace(meta=meta, scp=None)
    texts = cqa.cqa_texts(mimic, llm=llm, index=tiny_index, max_new_tokens=8)
    assert texts.loc[11].startswith("ECG findings: Sinus rhythm; Left axis deviation. Potential ECG waveforms:")


# ----------------------------------------------------------------------------- quality


def test_bertscore_prefers_the_matching_reference():
    ref = "Broad notched R waves in I, aVL, V5 and V6 with a wide QRS complex."
    scores = cqa.bertscore([ref, "The patient enjoyed a sunny walk in the park."], [ref, ref])
    assert scores.loc[0, "F1"] == pytest.approx(1.0, abs=1e-4)
    assert scores.loc[1, "F1"] < scores.loc[0, "F1"] - 0.2
    best = cqa.bertscore(["No P waves and irregular RR intervals."],
                         [["Tall R waves in aVL.", "Absent P waves with irregularly irregular RR intervals."]])
    single = cqa.bertscore(["No P waves and irregular RR intervals."], ["Tall R waves in aVL."])
    assert best.loc[0, "F1"] > single.loc[0, "F1"]
    with pytest.raises(ValueError):
        cqa.bertscore(["a"], ["b", "c"])


def test_with_paper_puts_the_papers_numbers_beside_ours():
    ours = pd.DataFrame({"F1": [0.5, 0.6]}, index=pd.Index([1, 2], name="top_k"))
    out = cqa.with_paper(ours, "cqa_topk")
    assert out["paper F1"].tolist() == [0.8256, 0.8296]
    ret = pd.DataFrame({"F1": [0.1, 0.2, 0.3]}, index=["none", "documents", "documents + expert"])
    out = cqa.with_paper(ret, "cqa_retrieval", cqa.PAPER_RETRIEVAL)
    assert out["paper F1"].tolist() == [0.7928, "0.8217 / 0.8285", 0.8296]


def test_report_statements_from_a_mimic_table():
    meta = pd.DataFrame({"report_0": ["Sinus rhythm.", "Sinus rhythm", "Atrial fibrillation"],
                         "report_1": ["Sinus rhythm", np.nan, "Low QRS voltages."]})
    st = cqa.report_statements(meta)
    assert st["records"].to_dict() == {"Sinus rhythm": 2, "Atrial fibrillation": 1, "Low QRS voltages": 1}
    with pytest.raises(ValueError, match="report_N"):
        cqa.report_statements(pd.DataFrame({"x": [1]}))


def test_cqa_prompt_has_the_chunks_and_the_question_but_no_source_markers(tiny_index):
    hits = tiny_index.retrieve("atrial fibrillation", top_k=2)
    prompt = cqa.cqa_prompt("How is atrial fibrillation reflected in a 12-lead ECG?", hits)
    assert all(h.text in prompt for h in hits) and "[1]" not in prompt
    assert prompt.endswith("Question: How is atrial fibrillation reflected in a 12-lead ECG? "
                           + cqa.LENGTH_INSTRUCTION)
    assert cqa.cqa_prompt("Q?", []) == f"Question: Q? {cqa.LENGTH_INSTRUCTION}"
    assert cqa.cqa_prompt("Q?", [], instruction="") == "Question: Q?"


def test_descriptions_are_graded_and_a_flagged_one_is_never_ok(tiny_corpus, tiny_index, tmp_cache):
    from ecgkit.knowledge import load_corpus

    good = FakeLLM(text="In complete left bundle branch block the QRS is wide with broad notched R waves "
                        "in I, aVL, V5 and V6 and discordant ST-T waves.")
    out = cqa.describe_statements(STATEMENTS.head(1), llm=good, index=tiny_index, max_new_tokens=64)
    assert out.loc["CLBBB", "context"] and out.loc["CLBBB", "support"] > 0.4
    assert out.loc["CLBBB", "grade"] == "ok" and out.attrs["flagged"] == 0
    bad = FakeLLM(name="bad-llm", text="A microphone turns sound into a voltage.")
    out = cqa.describe_statements(STATEMENTS, llm=bad, index=tiny_index, max_new_tokens=9)  # 9 tokens: the limit
    assert out["cut"].all() and out["unnamed"].all() and out["unsupported"].all()
    assert not (out["grade"] == "ok").any() and out.attrs["flagged"] == 2
    assert out.loc["AFIB", "flags"] == "cut, unnamed, unsupported"
    # the synonyms: a card's name and the code name a statement
    names = cqa.statement_names({"AFIB": "AF"}, cqa.expert_cards(load_corpus(tiny_corpus, use_env=False)))
    assert names["AFIB"] == ["AF", "AFIB", "atrial fibrillation"]


def test_text_quality_counts_the_passed_descriptions_the_texts_use():
    described = pd.DataFrame({"status": ["ok", "ok", "error"], "grade": ["ok", "flagged: cut", "no text"]},
                             index=pd.Index(["SR", "LVH", "AFIB"], name="statement"))
    per_record = pd.Series([["SR"], ["SR", "LVH"], ["AFIB"], ["SR", "AFIB"]])
    q = cqa.text_quality(per_record, described)
    assert q["descriptions"] == 2 and q["passed"] == 1 and q["used"] == 4
    assert q["used_passed_share"] == pytest.approx(3 / 4)
    assert q["records_all_passed_share"] == pytest.approx(2 / 3)


def test_no_statements_give_an_empty_table(tiny_index, tmp_cache):
    llm = FakeLLM()
    out = cqa.describe_statements([], llm=llm, index=tiny_index, max_new_tokens=8)
    assert len(out) == 0 and out.attrs["failed"] == 0 and "description" in out.columns
    assert llm.calls == 0


def test_card_texts_take_the_waveform_from_the_expert_card(tiny_ptbxl):
    from ecgkit.data import load_ptbxl

    data = load_ptbxl(tiny_ptbxl, 100, cache=False)
    cards = cqa.expert_cards()
    texts = cqa.card_texts(data, cards)
    assert list(texts.index) == list(data.meta.index) and texts.attrs["described"] >= 1
    clbbb = cards.loc[cqa.statement_cards(pd.Index(["CLBBB"]), cards)["CLBBB"][0], "waveform"]
    assert texts.loc[3].startswith("This patient is a 53-year-old female. ECG findings: "
                                   "complete left bundle branch block; atrial fibrillation. Potential ECG waveforms: ")
    assert clbbb in texts.loc[3]                                   # the card's hand-written words, no LLM
    plain = cqa.record_text(data.meta.loc[3], {"CLBBB": "x"}, {})
    assert "Potential ECG waveforms" not in plain                  # a statement without a card adds no waveform
