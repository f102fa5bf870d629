"""ALFRED prompt assembly (every configuration, fake index) and answer parsing."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from ecgkit.alfred import prompt as P
from ecgkit.alfred.answer import SUPERCLASSES, parse_answer, parse_many
from ecgkit.alfred.features import feature_names
from ecgkit.alfred.rules import evaluate_rules
from ecgkit.knowledge.index import Hit


class FakeIndex:
    """Returns, for every query, ``top_k`` hits per collection tagged with the collection; the
    expert hit scores highest for every other query, so both collections show up at top_k=1."""

    def __init__(self):
        self.calls = []

    def retrieve_many(self, queries, top_k=5, collections=("documents", "expert")):
        self.calls.append((list(queries), tuple(collections)))
        out = []
        for j, q in enumerate(queries):
            hits = []
            for c in collections:
                bonus = 0.05 if (c == "expert") == (j % 2 == 0) else 0.0
                for i in range(top_k):
                    hits.append(Hit(f"[{c.upper()}-TEXT] about {q} #{i} " + "lorem ipsum " * 20,
                                    1.0 - i / 10 + bonus, {"collection": c, "source": f"{c}/{q}"},
                                    f"{c}:{q}:{i}"))
            hits.sort(key=lambda h: -h.score)
            out.append(hits[:top_k])
        return out

    def retrieve(self, query, top_k=5, collections=("documents", "expert")):
        return self.retrieve_many([query], top_k, collections)[0]


def _features():
    f = {n: 0.1 for n in feature_names()}
    f.update(age=63, sex=1, heart_rate=72, pr_interval=160, qrs_duration=90, qt_interval=380,
             qtc_bazett=415, qtc_fridericia=410, p_axis=50, qrs_axis=40, t_axis=40,
             p_wave_ratio=1.0, rr_irregularity=0.02, rr_sd=20)
    f["st_j_V1"] = math.nan
    return f


def _budget(**options):
    """The budget of these tests: the whole prompt, the default lead table, chunks of ≤ 600 characters."""
    return P.PromptBudget(**{"lead_features": None, "max_chunk_chars": 600, **options})


def _prompt(features, rule_result, index, config, **options):
    """One record's :class:`BuiltPrompt`."""
    return P.build_prompts([features], [rule_result], index, config, _budget(**options))[0]


def _texts(features_list, rule_results, index, config):
    return [p.text for p in P.build_prompts(features_list, rule_results, index, config, _budget())]


@pytest.fixture
def record():
    f = _features()
    rr = evaluate_rules(f)
    rr["positive"] = rr["positive"].astype(object)
    rr.loc[:, "positive"] = [False] * len(rr)
    rr.at["complete_lbbb", "positive"] = True
    rr.at["q_waves_inferior", "positive"] = True
    rr.at["rvh", "positive"] = None
    return f, rr


def test_configurations():
    assert set(P.CONFIGURATIONS) == {"Base", "Ablation 1", "Ablation 2", "Ablation 3", "Proposed",
                                     "LLM without retrieval", "Rules only"}
    c = P.CONFIGURATIONS
    assert not c["Base"].rules and c["Base"].feature_collections == ("documents",)
    assert c["Ablation 2"].feature_collections == ("documents", "expert")
    assert c["Ablation 2"].rule_collections == ("documents",)
    assert c["Ablation 3"].rule_collections == ("documents", "expert")
    assert c["LLM without retrieval"].feature_collections is None and not c["LLM without retrieval"].retrieval
    assert not c["Rules only"].llm
    assert sum(x.paper for x in c.values()) == 5
    with pytest.raises(ValueError):
        P.build_prompts([{}], None, None, "Rules only")
    with pytest.raises(KeyError):
        P.get_config("nope")


@pytest.mark.parametrize("name", ["Base", "Ablation 1", "Ablation 2", "Ablation 3", "Proposed",
                                  "LLM without retrieval"])
def test_every_configuration(record, name):
    f, rr = record
    cfg = P.CONFIGURATIONS[name]
    index = FakeIndex()
    built = _prompt(f, rr, index, name)
    text = built.text
    # part 1: patient and features, missing value marked, compact lead table
    assert "age 63 years, sex female" in text and "heart rate: 72 bpm" in text
    assert "n/m" in text and "| V6" in text
    # part 5 always: instructions and the strict format
    assert P.RESPONSE_FORMAT in text
    for s in SUPERCLASSES:
        assert f"{s}: yes or no" in text
    assert text.rstrip().endswith("Explanation: <your reasoning>")
    # part 2
    if cfg.rules:
        assert "## 2. Rule results" in text
        assert "complete left bundle branch block" in text and "Evidence:" in text
        assert "Undetermined (features missing): right ventricular hypertrophy" in text
    else:
        assert "Rule results" not in text and "Evidence:" not in text
        assert "## 4." not in text
    # parts 3 and 4: collections
    feat_expert = cfg.feature_collections and "expert" in cfg.feature_collections
    rule_expert = cfg.rules and cfg.rule_collections and "expert" in cfg.rule_collections
    if not cfg.retrieval:
        assert "-TEXT]" not in text and index.calls == []
        assert _prompt(f, rr, None, name).text == text   # no index needed
        return
    sec3 = built.parts["feature_knowledge"]
    assert ("[EXPERT-TEXT]" in sec3) == bool(feat_expert)
    assert "[DOCUMENTS-TEXT]" in sec3
    if cfg.rules:
        sec4 = built.parts["condition_knowledge"]
        assert "complete left bundle branch block is defined as" in sec4
        assert "pathological Q waves, inferior leads is defined as" in sec4
        assert ("[EXPERT-TEXT]" in sec4) == bool(rule_expert)
        assert "[DOCUMENTS-TEXT]" in sec4
    if not feat_expert and not rule_expert:
        assert "EXPERT" not in text
    for queries, colls in index.calls:
        assert colls in (cfg.feature_collections, cfg.rule_collections)
    assert len(index.calls) <= 2


def test_retrieval_queries_dedup_and_limits(record):
    f, rr = record
    index = FakeIndex()
    built = _prompt(f, rr, index, "Ablation 1", max_feature_docs=3, max_chunk_chars=80)
    assert len(built.feature_chunks) == 3
    assert all(len(c) <= 80 for c in built.feature_chunks + built.condition_chunks)
    queries = index.calls[0][0]
    assert "heart rate is defined as" in queries and "ST level at the J point is defined as" in queries
    assert len(queries) == len(set(queries))
    # top_k=2 with dedup: no chunk appears twice
    built = _prompt(f, rr, FakeIndex(), "Proposed", top_k=2)
    chunks = built.feature_chunks + built.condition_chunks
    assert len(chunks) == len(set(chunks))
    # lead feature selection
    t_all = _prompt(f, rr, None, "LLM without retrieval", lead_features="all").text
    t_two = _prompt(f, rr, None, "LLM without retrieval", lead_features=["r_amplitude", "st_j"]).text
    assert "T-wave symmetry" in t_all and "T-wave symmetry" not in t_two and len(t_two) < len(t_all)


@pytest.mark.parametrize("budget", [6000, 4500, 3500])
def test_max_chars_budget(record, budget):
    f, rr = record
    full = _prompt(f, rr, FakeIndex(), "Proposed")
    assert full.n_chars > 6000
    built = _prompt(f, rr, FakeIndex(), "Proposed", max_chars=budget)
    assert built.n_chars <= budget and not built.over_budget
    assert built.trimmed.get("feature_chunks", 0) > 0
    assert P.RESPONSE_FORMAT in built.text
    # retrieved text goes first: lead rows are only cut once no retrieved text is left
    if built.trimmed.get("lead_rows"):
        assert not built.feature_chunks and not built.condition_chunks


def test_max_chars_impossible_is_reported(record):
    f, rr = record
    built = _prompt(f, rr, FakeIndex(), "Proposed", max_chars=500)
    assert built.over_budget and P.RESPONSE_FORMAT in built.text


def test_build_prompts_batches_retrieval(record):
    f, rr = record
    rr2 = rr.copy()
    rr2["positive"] = [False] * len(rr2)
    rr2.at["lvh_cornell", "positive"] = True
    index = FakeIndex()
    texts = _texts([f, f], [rr, rr2], index, "Proposed")
    assert len(index.calls) == 1                     # same collections: one batched call
    assert "left bundle branch" in texts[0] and "(Cornell) is defined as" in texts[1]
    assert "(Cornell) is defined as" not in texts[0]
    assert texts[0] == _prompt(f, rr, FakeIndex(), "Proposed").text
    index = FakeIndex()
    _texts([f, f], [rr, rr2], index, "Ablation 2")
    assert len(index.calls) == 2
    with pytest.raises(ValueError):
        _texts([f, f], [rr], index, "Proposed")
    base = _texts([f], None, FakeIndex(), "Base")
    assert "Rule results" not in base[0]


# ----------------------------------------------------------------------------- answers
def _labels(**kw):
    return {s: kw.get(s, False) for s in SUPERCLASSES}


@pytest.mark.parametrize("text", [
    "NORM: no\nMI: yes\nSTTC: no\nCD: no\nHYP: no\nExplanation: Q waves in II, III and aVF.",
    "**NORM:** No\n**MI:** **Yes**\n- STTC: absent\n- CD: false\n- HYP: negative\n"
    "**Explanation:** Q waves in II, III and aVF.",
    "norm: NO\nmi: Present\nsttc: No\ncd: no\nhyp: no\nexplanation: Q waves in II, III and aVF.",
    "Sure! Here is my answer.\n\nNORM: no, MI: yes, STTC: no, CD: no, HYP: no\n"
    "Explanation: Q waves in II, III and aVF.",
    '```json\n{"NORM": false, "MI": "yes", "STTC": 0, "CD": "no", "HYP": false, '
    '"explanation": "Q waves in II, III and aVF."}\n```',
    '{"labels": {"NORM": "No", "MI": "Yes", "STTC": "No", "CD": "No", "HYP": "No"}, '
    '"explanation": "Q waves in II, III and aVF."}',
    "Diagnosis: MI\nExplanation: Q waves in II, III and aVF.",
    "Explanation: Q waves in II, III and aVF.\nNORM: no\nMI: yes\nSTTC: no\nCD: no\nHYP: no",
    "Normal ECG: no\nMyocardial infarction (MI): yes\nST/T change: no\n"
    "Conduction disturbance: no\nHypertrophy: no\nExplanation: Q waves in II, III and aVF.",
])
def test_parse_well_formed(text):
    a = parse_answer(text)
    assert a.ok, a.problem
    assert a.labels == _labels(MI=True)
    assert a.explanation == "Q waves in II, III and aVF."


def test_parse_lists_and_json_lists():
    a = parse_answer("Diagnosis: MI, STTC")
    assert a.ok and a.labels == _labels(MI=True, STTC=True)
    a = parse_answer('{"diagnosis": ["CD", "HYP"], "explanation": "wide QRS"}')
    assert a.ok and a.labels == _labels(CD=True, HYP=True) and a.explanation == "wide QRS"
    a = parse_answer("Diagnoses: ST/T changes and conduction disturbance.")
    assert a.ok and a.labels == _labels(STTC=True, CD=True)


@pytest.mark.parametrize("text, problem", [
    ("NORM: no\nMI: yes\nSTTC: no", "no answer for CD, HYP"),
    ("NORM: no\nMI: yes\nSTTC: no\nCD: no\nHYP: no\nMI: no", "contradictory answers for MI"),
    ("I am not able to interpret this ECG.", "no labels found"),
    ("", "empty answer"),
    (None, "no answer"),
    (42, "not text"),
    ("{broken json: ", "no labels found"),
    ("NORM: maybe\nMI: no\nSTTC: no\nCD: no\nHYP: no", "no answer for NORM"),
    ("Diagnosis: MI, pericarditis", "no labels found"),
])
def test_parse_malformed(text, problem):
    a = parse_answer(text)
    assert not a.ok and problem in a.problem


def test_contradiction_and_partial_labels():
    a = parse_answer("NORM: no\nMI: yes\nSTTC: no\nCD: no\nHYP: no\n**MI**: No")
    assert a.labels["MI"] is None and a.labels["NORM"] is False and not a.ok
    a = parse_answer("NORM: no\nMI: yes\nMI: yes\nSTTC: no\nCD: no\nHYP: no")   # same value twice
    assert a.ok and a.labels["MI"] is True
    a = parse_answer("NORM: no\nMI: yes")
    assert a.labels["MI"] is True and a.labels["CD"] is None


def test_parse_many():
    df, bad = parse_many(pd.Series(["NORM: yes\nMI: no\nSTTC: no\nCD: no\nHYP: no", "garbage", None],
                                   index=["a", "b", "c"]))
    assert bad == 2 and list(df.index) == ["a", "b", "c"]
    assert list(df.columns[:5]) == list(SUPERCLASSES)
    assert df.loc["a", "NORM"] is True and df.loc["b", "NORM"] is None
    assert df["ok"].tolist() == [True, False, False]
    df, bad = parse_many([])
    assert bad == 0 and len(df) == 0


def test_the_prompt_format_parses():
    """An answer that copies the format of the prompt, filled in, parses."""
    filled = P.RESPONSE_FORMAT.split("Nothing else.\n", 1)[1]
    filled = filled.replace("yes or no", "no").replace("NORM: no", "NORM: yes")
    a = parse_answer(filled.replace("<your reasoning>", "normal"))
    assert a.ok and a.labels == _labels(NORM=True) and a.explanation == "normal"


def test_a_budget_shows_as_one_row():
    from ecgkit.alfred.prompt import PromptBudget

    table = PromptBudget.for_profile("quick").table("quick")
    assert list(table.index) == ["quick"] and table.loc["quick", "max_new_tokens"] == 32
    assert table.loc["quick", "lead_features"] == "q_amplitude, st_j60, t_amplitude"
