"""Configurations and the one table: layers side by side, rankings only from usable methods."""
import numpy as np
import pandas as pd
import pytest

from ecgkit.ecgllm.evaluate import (configurations, findings, judge_table, mcnemar_table, mcq_table, rankings,
                                    ranking_agreement, results_table, run_mcq, run_open, text_table)
from ecgkit.ecgllm.textmetrics import text_metrics

from ecgllm_fakes import ScriptedLLM

MCQ = [{"id": f"m{k}", "type": "mcq", "template": "t", "question": f"Question {k}?",
        "options": ["right", "wrong one", "wrong two", "wrong three"], "answer": 0, "reference": "right"}
       for k in range(6)]
OPEN = [{"id": f"o{k}", "type": "open", "template": "t", "question": f"What is {k}?", "reference": f"It is {k}.",
         "context": ""} for k in range(3)]


class Hit:
    source, text, score = "card.md", "Context: the answer is right.", 1.0


def test_configurations_and_their_answers(tmp_cache):
    good = ScriptedLLM(lambda p: "A) right" if "A) right" in p else "It is 1.", name="good",
                       score=lambda p, c: 0.0 if c == "right" else -9.0)
    bad = ScriptedLLM(lambda p: "B" if "Context" not in p else "A", name="bad", score=lambda p, c: -len(c))
    configs = configurations(bad, good, endpoint=ScriptedLLM(lambda p: "no letter", name="endpoint"))
    assert [c.name for c in configs] == ["base", "fine-tuned", "RAG", "fine-tuned + RAG", "endpoint"]
    assert [c.name for c in configurations(bad, None, rag=False)] == ["base"]
    hits = {i["id"]: [Hit()] for i in MCQ + OPEN}
    results = run_mcq(configs, MCQ, hits)
    assert results["fine-tuned"]["loglik_correct"].all() and results["fine-tuned"]["letter_correct"].all()
    assert not results["base"]["letter_correct"].any() and results["RAG"]["letter_correct"].all()
    assert results["endpoint"]["loglik_correct"].isna().all() and results["endpoint"]["letter_unparsed"].all()
    table = mcq_table(results, n_boot=200)
    assert table.loc["fine-tuned", ("generated letter", "accuracy")] == 1.0
    assert table.loc["endpoint", ("generated letter", "unparsed")] == 6
    assert np.isnan(table.loc["endpoint", ("option log-likelihood", "accuracy")])
    tests = mcnemar_table(results)
    assert tests.loc[("fine-tuned vs base", "generated letter"), "only A right"] == 6
    assert tests.loc[("fine-tuned vs base", "generated letter"), "p"] == pytest.approx(2 * 0.5 ** 6)
    with pytest.raises(ValueError, match="retrieved chunks"):
        run_mcq(configs[2:3], MCQ, {})

    answers = run_open(configs[:3], OPEN, hits, max_new_tokens=8)
    assert len(answers) == 9 and set(answers["configuration"]) == {"base", "fine-tuned", "RAG"}
    answers = pd.concat([answers, text_metrics(answers["answer"], answers["reference"], bertscore_model=False)
                         .assign(bertscore_f1=0.5)], axis=1)
    text = text_table(answers)
    assert text.loc["fine-tuned", "answers"] == 3 and text.loc["fine-tuned", "errors"] == 0


def _tables(judge_means=(2.0, 4.0, 3.0)):
    configs = ["base", "fine-tuned", "RAG"]
    mcq = pd.DataFrame({("option log-likelihood", "accuracy"): [0.3, 0.5, 0.4],
                        ("generated letter", "accuracy"): [0.25, 0.3, 0.5]}, index=configs)
    text = pd.DataFrame({"BLEU": [1.0, 3.0, 2.0], "ROUGE-1": [0.1, 0.3, 0.2], "ROUGE-2": [0.0, 0.1, 0.05],
                         "ROUGE-L": [0.1, 0.2, 0.3], "BERTScore F1": [0.5, 0.7, 0.6]}, index=configs)
    judged = pd.DataFrame({"configuration": np.repeat(configs, 2),
                           "judge_score": np.repeat(judge_means, 2)})
    return mcq, text, judge_table(judged)


def test_a_judge_that_failed_its_control_is_shown_but_never_ranks():
    mcq, text, judge = _tables()
    table = results_table(mcq, text, judge, judge_ok=False, experts=None, notes={"endpoint": "not configured"})
    assert table.loc["fine-tuned", ("LLM judge", "mean (1-5)")] == 4.0
    assert (table[("LLM judge", "status")].drop("endpoint") == "failed the control pairs: not used to rank").all()
    assert table.loc["endpoint", ("LLM judge", "status")] == "not run"           # skipped, never judged
    assert (table[("experts", "status")] == "no filled rating sheet imported").all()
    assert table.loc["endpoint", ("", "note")] == "not configured"
    ranks = rankings(table, judge_ok=False)
    assert not any("judge" in c for c in ranks.columns) and not any("experts" in c for c in ranks.columns)
    assert "LLM judge / mean (1-5)" in rankings(table, judge_ok=True).columns


def test_findings_set_ours_beside_the_papers():
    mcq, text, judge = _tables()
    experts = pd.DataFrame({"mean": [1.5, 3.5, 2.5], "raters": [2, 2, 2]}, index=["base", "fine-tuned", "RAG"])
    table = results_table(mcq, text, judge, judge_ok=True, experts=experts)
    ranks = rankings(table, judge_ok=True).drop(index="endpoint", errors="ignore")
    found = findings(table, ranks)
    assert found.loc["fine-tuned vs base", "agree"] == "yes"                  # better by all 7 methods
    assert found.loc["rankings between methods", "agree"] == "yes"           # letter and ROUGE-L put RAG first
    # fine-tuned vs RAG on multiple choice and text: ahead by log-likelihood, BLEU, BERTScore (3 of 5)
    assert found.loc["fine-tuned vs RAG", "agree"] == "partly"
    assert "by 2 of the 5" in found.loc["fine-tuned vs RAG", "why"]
    swapped = table.copy()
    swapped.loc["fine-tuned"], swapped.loc["RAG"] = table.loc["RAG"], table.loc["fine-tuned"]
    against = findings(swapped, rankings(swapped, judge_ok=True)).loc["fine-tuned vs RAG"]
    assert against["agree"] == "no" and "by 3 of the 5" in against["why"]
    tests = pd.DataFrame({"p": [0.4, 0.7]}, index=pd.MultiIndex.from_tuples(
        [("fine-tuned vs base", "option log-likelihood"), ("fine-tuned vs base", "generated letter")]))
    qualified = findings(table, ranks, tests).loc["fine-tuned vs base"]
    assert qualified["agree"].startswith("in direction only") and "p = 0.4" in qualified["ours"]
    assert "no McNemar test below 0.05" in qualified["why"]
    agreement = ranking_agreement(ranks)
    assert len(agreement) == 21 and agreement["kendall_tau"].between(-1, 1).all()
    same = ranks[["multiple choice / accuracy (log-likelihood)"]].assign(copy=lambda f: f.iloc[:, 0])
    assert ranking_agreement(same)["same order"].all()
    # fine-tuned worse than base by most methods: the paper's finding is not reproduced
    flipped = table.copy()
    flipped.loc["fine-tuned"], flipped.loc["base"] = table.loc["base"], table.loc["fine-tuned"]
    assert findings(flipped, rankings(flipped, judge_ok=True)).loc["fine-tuned vs base", "agree"] == "no"


def test_paired_text_tests_find_a_consistent_gain_and_refuse_a_noisy_one():
    from ecgkit.ecgllm.evaluate import paired_text_tests

    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.3, 20)
    answers = pd.DataFrame({"configuration": ["base"] * 20 + ["fine-tuned"] * 20 + ["RAG"] * 20,
                            "id": [f"q{i}" for i in range(20)] * 3,
                            "rouge1": np.r_[base, base + 0.05, base + rng.normal(0, 0.05, 20)]})
    tests = paired_text_tests(answers, pairs=(("fine-tuned", "base"), ("RAG", "base"), ("endpoint", "base")),
                              metrics=("rouge1",))
    gain = tests.loc[("fine-tuned vs base", "rouge1")]
    assert gain["mean difference"] == pytest.approx(0.05) and gain["low"] > 0 and gain["wilcoxon p"] < 0.001
    assert gain["verdict"] == "fine-tuned better" and gain["A better on"] == 20
    noisy = tests.loc[("RAG vs base", "rouge1")]
    assert noisy["low"] < 0 < noisy["high"] and noisy["verdict"] == "no difference shown"
    assert ("endpoint vs base", "rouge1") not in tests.index                   # absent configuration skipped
    ties = paired_text_tests(answers.assign(rouge1=0.2), pairs=(("fine-tuned", "base"),), metrics=("rouge1",))
    assert ties.iloc[0]["wilcoxon p"] == 1.0 and ties.iloc[0]["verdict"] == "no difference shown"


def test_open_answers_are_generated_with_the_backends_repetition_control(tmp_cache, monkeypatch):
    import ecgkit.llm

    seen = []

    class Recording(ScriptedLLM):
        def generate(self, prompts, **kwargs):
            seen.append(kwargs)
            return super().generate(prompts, **kwargs)

    llm = Recording(lambda p: "It is.", name="rec")
    monkeypatch.setattr(ecgkit.llm, "anti_loop_options",
                        lambda x: {"repetition_penalty": 1.15, "no_repeat_ngram_size": 4} if x is llm else {})
    answers = run_open(configurations(llm, None, rag=False), OPEN, {}, max_new_tokens=8)
    assert seen[-1]["repetition_penalty"] == 1.15 and seen[-1]["no_repeat_ngram_size"] == 4
    assert set(answers["repetition_control"]) == {"repetition_penalty=1.15, no_repeat_ngram_size=4"}
    plain = run_open(configurations(llm, None, rag=False), OPEN, {}, max_new_tokens=8, anti_loop=False)
    assert "repetition_penalty" not in seen[-1] and set(plain["repetition_control"]) == {"none"}
