"""The ECG-LLM dataset: templates over the expert cards, a topic split without leaks, provenance, JSONL."""
import json
import re

import pytest

from ecgkit.ecgllm.dataset import (FAMILIES, build_dataset, deduplicate, generate_items, load_cards, ngram_overlap,
                                   parse_generated, read_jsonl, sample_items, split_topics, template_items,
                                   topic_leaks, topic_of, write_jsonl)
from ecgkit.knowledge import load_corpus

from ecgllm_fakes import ScriptedLLM


@pytest.fixture(scope="module")
def cards():
    return load_cards(load_corpus(use_env=False))


@pytest.fixture(scope="module")
def built(cards):
    return build_dataset(docs=load_corpus(use_env=False), generator=None, cache=False)


def test_cards_have_their_sections(cards):
    assert len(cards) == 87
    af = next(c for c in cards if c.key == "atrial_fibrillation")
    assert af.kind == "condition" and af.scp_codes == ("AFIB",) and af.category == "rhythm"
    assert set(af.sections) >= {"Definition", "Criteria", "Waveform", "Differential diagnosis"}
    assert "References" not in af.sections and not af.sections["Criteria"].startswith("Atrial fibrillation —")
    assert all(cid.startswith("expert/conditions/atrial_fibrillation.md#") for cid in af.chunk_ids["Criteria"])
    qrs = next(c for c in cards if c.key == "qrs_duration")
    assert qrs.kind == "feature" and qrs.unit == "ms" and qrs.the_name == "the QRS duration"


def test_split_keeps_topics_and_families_on_one_side(cards, built):
    split = split_topics(cards, 0.25, seed=0)
    assert set(split) == {c.key for c in cards}
    for members in FAMILIES.values():
        assert len({split[k] for k in members if k in split}) == 1
    n_eval = sum(v == "eval" for v in split.values())
    assert 0.15 * len(cards) <= n_eval <= 0.35 * len(cards)
    assert split == split_topics(cards, 0.25, seed=0)          # seeded
    assert split != split_topics(cards, 0.25, seed=1)
    assert topic_leaks(built.items) == []
    train_topics = {i["topic"] for i in built.items if i["split"] == "train"}
    eval_topics = {i["topic"] for i in built.items if i["split"] == "eval"}
    assert train_topics and eval_topics and not train_topics & eval_topics
    assert built.report["topic_leaks"] == [] and 0 <= built.report["ngram8_overlap"] < 0.2


def test_topic_leaks_are_found():
    items = [{"topic": "qt", "key": "long_qt", "split": "train"}, {"topic": "qt", "key": "short_qt", "split": "eval"},
             {"topic": "af", "key": "atrial_fibrillation", "split": "eval"}]
    assert topic_leaks(items) == ["topic:qt"]
    assert topic_of("q_waves_inferior") == "q_waves" and topic_of("rvh") == "rvh"
    with pytest.raises(ValueError):
        split_topics([], 1.5)


def test_items_are_well_formed_with_provenance(built, cards):
    names = {c.key: c for c in cards}
    split_of = {i["key"]: i["split"] for i in built.items}
    assert len({i["id"] for i in built.items}) == len(built.items)
    assert {i["type"] for i in built.items} == {"open", "mcq"}
    for item in built.items:
        assert item["question"].strip() and item["reference"].strip(), item
        assert item["source"] == names[item["key"]].source and item["chunk_ids"] and item["context"].strip()
        assert item["method"] == "template"
        if item["type"] == "mcq":
            assert len(item["options"]) == 4 and len(set(item["options"])) == 4
            assert item["options"][item["answer"]] == item["reference"]
            if item["template"] in ("mcq_definition", "mcq_waveform", "mcq_measurement", "mcq_normal"):
                # distractors are names of cards of the same split, never of the other one
                by_name = {c.name: c.key for c in cards}
                assert all(split_of.get(by_name[o], item["split"]) == item["split"] for o in item["options"])
    definition = next(i for i in built.items if i["template"] == "mcq_definition" and i["key"] == "qrs_duration")
    assert "qrs duration" not in definition["question"].lower()      # the name is masked


def test_dataset_counts_and_sampling(built):
    counts = built.counts()
    assert counts.loc[("eval", "template"), "mcq"] > 30 and counts.loc[("train", "template"), "open"] > 100
    mcq = built.select("eval", "mcq")
    sample = sample_items(mcq, 10, seed=0)
    assert len(sample) == 10 and sample == sample_items(mcq, 10, seed=0)
    assert len({i["template"] for i in sample}) >= 4                 # spread over templates
    assert sample_items(mcq, None) == mcq


def test_deduplicate_keeps_the_evaluation_copy():
    a = {"type": "open", "question": "What is X?", "options": [], "split": "train", "n": 1}
    b = {"type": "open", "question": "what is  x ?", "options": [], "split": "eval", "n": 2}
    c = {"type": "open", "question": "What is Y?", "options": [], "split": "train", "n": 3}
    kept, removed = deduplicate([a, b, c])
    assert removed == 1 and [k["n"] for k in kept] == [2, 3]


def test_ngram_overlap_counts_shared_wording():
    train = {"split": "train", "question": "q", "reference": "one two three four", "options": []}
    ev = {"split": "eval", "question": "q", "reference": "one two three four five six", "options": []}
    assert ngram_overlap([train, ev], n=4) == pytest.approx(1 / 3)
    assert ngram_overlap([ev], n=4) == 0.0


def test_parse_generated_keeps_good_questions_and_names_bad_ones():
    reply = ("Sure!\n```json\n" + json.dumps({
        "open": [{"question": "What is a delta wave?", "answer": "A slurred QRS upstroke."}, {"question": ""}],
        "mcq": [{"question": "Which lead?", "options": ["I", "II", "III", "aVF"], "correct": "C"},
                {"question": "Bad", "options": ["a", "a", "b", "c"], "correct": 0},
                {"question": "Bad index", "options": ["a", "b", "c", "d"], "correct": 7}]}) + "\n```")
    items, problems = parse_generated(reply)
    assert [i["type"] for i in items] == ["open", "mcq"]
    assert items[1]["answer"] == 2 and items[1]["reference"] == "III"
    assert len(problems) == 3 and any("four distinct" in p for p in problems)
    assert parse_generated("no json here")[1] == ["no JSON object in the reply"]


def test_generation_by_an_llm_is_kept_with_provenance_and_failures_counted(cards):
    good = json.dumps({"open": [{"question": "Q about {}?", "answer": "A."}],
                       "mcq": [{"question": "M?", "options": ["w", "x", "y", "z"], "correct": 1}]})

    def reply(prompt):
        if "(atrial fibrillation, Criteria)" in prompt:
            return None                                     # a failed request
        if "(atrial fibrillation, Waveform)" in prompt:
            return "I cannot do that."
        title = re.search(r"Passage \((.+?), ", prompt).group(1)
        return good.replace("{}", title)

    few = [c for c in cards if c.key in ("atrial_fibrillation", "qrs_duration")]
    split = {c.key: "train" for c in few}
    llm = ScriptedLLM(reply, name="fake-70b")
    items, problems = generate_items(llm, few, split, n_open=1, n_mcq=1)
    assert problems["expert/conditions/atrial_fibrillation.md#Criteria"].startswith("generation failed")
    assert "no JSON" in problems["expert/conditions/atrial_fibrillation.md#Waveform"]
    assert len(items) == 2 * (4 + 4 - 2)                    # 8 sections, 2 failed, 2 items each
    assert all(i["method"] == "llm:fake-70b" and i["source"] and i["chunk_ids"] for i in items)
    mcq = next(i for i in items if i["type"] == "mcq")
    assert mcq["reference"] == "x" and mcq["answer"] == 1


def test_build_with_a_generator_and_the_cache(tmp_cache, monkeypatch):
    calls = []

    def reply(prompt):
        calls.append(prompt)
        return '{"open": [{"question": "Generated question %d?", "answer": "Generated."}]}' % len(calls)

    built = build_dataset(docs=load_corpus(use_env=False), generator=ScriptedLLM(reply, name="gen"), cache=False)
    generated = [i for i in built.items if i["method"] == "llm:gen"]
    assert built.report["generated_items"] == len(generated) == len(calls) > 100
    assert topic_leaks(built.items) == []
    # the packaged corpus, cached: the second build reads the JSONL back
    monkeypatch.delenv("ECGKIT_LLM_BASE_URL", raising=False)
    first = build_dataset(generator="auto")
    assert first.path is not None and first.path.is_file() and first.report["generator"] is None
    again = build_dataset(generator="auto")
    assert again.items == first.items and again.key == first.key


def test_jsonl_round_trip_reports_bad_lines(tmp_path, built):
    path = write_jsonl(built.items[:5], tmp_path / "d.jsonl")
    with open(path, "a") as fh:
        fh.write("{not json\n")
        fh.write(json.dumps({"id": "x"}) + "\n")
        bad_mcq = {**built.select(type="mcq")[0], "options": ["a", "b"]}
        fh.write(json.dumps(bad_mcq) + "\n")
    items, problems = read_jsonl(path)
    assert items == built.items[:5]
    assert sorted(problems) == [6, 7, 8] and "not JSON" in problems[6] and "missing" in problems[7]


def test_a_question_without_enough_distractors_in_its_split_is_skipped_and_counted(cards):
    few = [c for c in cards if c.key in ("atrial_fibrillation", "rvh", "wpw_pattern", "short_qt", "p_axis")]
    split = {c.key: "train" for c in few} | {"atrial_fibrillation": "eval"}
    items, skipped = template_items(few, split)
    assert skipped["mcq_definition"] >= 1 and skipped["mcq_criterion"] >= 1     # alone in its split
    assert not [i for i in items if i["key"] == "atrial_fibrillation" and i["template"] == "mcq_definition"]
    assert [i for i in items if i["key"] == "atrial_fibrillation" and i["type"] == "open"]
    assert all(len(set(i["options"])) == 4 for i in items if i["type"] == "mcq")
