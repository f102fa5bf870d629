"""Retrieval-augmented answers: retrieve chunks, put them in the prompt, ask an LLM, keep sources."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .index import ALL, Hit, KnowledgeIndex

SYSTEM = ("You are a cardiologist. Answer from the context when it helps, in at most three "
          "sentences, and do not invent measurements.")


def rag_prompt(question: str, hits: Sequence[Hit]) -> str:
    """The user message: numbered context chunks with their sources, then the question."""
    if not hits:
        return f"Question: {question}\nAnswer:"
    context = "\n\n".join(f"[{i}] ({h.source}) {h.text}" for i, h in enumerate(hits, start=1))
    return f"Context:\n{context}\n\nQuestion: {question}\nAnswer:"


def answer_questions(llm, index: KnowledgeIndex | None, questions: Sequence[str], top_k: int = 2,
                     collections=ALL, max_new_tokens: int = 96, system: str = SYSTEM) -> pd.DataFrame:
    """Answer each question with ``llm`` (an :mod:`ecgkit.llm` backend), with retrieval when an
    index is given. One row per question: answer, sources, tokens, and the error if any (a failed
    item is reported in its row, never raised)."""
    hits = (index.retrieve_many(list(questions), top_k=top_k, collections=collections)
            if index is not None else [[] for _ in questions])
    prompts = [rag_prompt(q, h) for q, h in zip(questions, hits)]
    generations = llm.generate(prompts, max_new_tokens=max_new_tokens, system=system)
    return pd.DataFrame({
        "question": list(questions),
        "answer": [g.text.strip() for g in generations],
        "sources": ["; ".join(f"{h.source} ({h.score:.2f})" for h in hs) for hs in hits],
        "finish": [g.finish_reason for g in generations],
        "completion_tokens": [g.completion_tokens for g in generations],
        "cached": [g.cached for g in generations],
        "error": [g.error or "" for g in generations],
    })
