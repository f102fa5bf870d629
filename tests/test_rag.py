from ecgkit.knowledge.index import Hit
from ecgkit.knowledge.rag import answer_questions, rag_prompt
from ecgkit.llm import Generation


class FakeLLM:
    name = "fake"

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, max_new_tokens=128, system=None, **kw):
        self.prompts += prompts
        return [Generation(text=" answer ", finish_reason="stop", prompt_tokens=1, completion_tokens=1)
                if "fail" not in p else Generation.failed("endpoint timed out") for p in prompts]


class FakeIndex:
    def __init__(self):
        self.calls = []

    def retrieve_many(self, queries, top_k, collections):
        self.calls.append((tuple(queries), top_k, tuple(collections)))
        return [[Hit(f"chunk about {q}", 0.9, {"source": "expert/conditions/x.md"})] for q in queries]


def test_prompt_numbers_context_with_sources():
    hits = [Hit("AF has no P waves.", 0.8, {"source": "expert/conditions/atrial_fibrillation.md"})]
    prompt = rag_prompt("How is AF seen?", hits)
    assert prompt.startswith("Context:\n[1] (expert/conditions/atrial_fibrillation.md) AF has no P waves.")
    assert prompt.endswith("Question: How is AF seen?\nAnswer:")
    assert rag_prompt("Q?", []) == "Question: Q?\nAnswer:"


def test_answers_keep_sources_and_report_failures():
    llm, index = FakeLLM(), FakeIndex()
    table = answer_questions(llm, index, ["What is AF?", "please fail"], top_k=3, collections=("documents",))
    assert index.calls == [(("What is AF?", "please fail"), 3, ("documents",))]
    assert table.loc[0, "answer"] == "answer" and "x.md (0.90)" in table.loc[0, "sources"]
    assert table.loc[1, "finish"] == "error" and "timed out" in table.loc[1, "error"]
    without = answer_questions(llm, None, ["What is AF?"])
    assert without.loc[0, "sources"] == "" and "Context" not in llm.prompts[-1]
