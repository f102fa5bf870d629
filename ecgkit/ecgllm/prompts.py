"""The prompts every ECG-LLM configuration sees: one system message, open questions, multiple choice.

Training and evaluation use the same formats, so that the fine-tuned model is asked questions the
way it was taught and the base model is asked the same way. RAG configurations put the retrieved
chunks in front of the question (:func:`ecgkit.knowledge.rag.rag_prompt`).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from ..knowledge.rag import rag_prompt

SYSTEM = "You are a cardiologist. Answer correctly, in one or two sentences."
LETTERS = "ABCD"
_LETTER = re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])")


def open_prompt(question: str, hits: Sequence = ()) -> str:
    """The user message of an open question, with retrieved chunks when ``hits`` are given."""
    return rag_prompt(question, list(hits))


def mcq_prompt(question: str, options: Sequence[str], hits: Sequence = ()) -> str:
    """The user message of a four-option question: options lettered A-D, answer by letter."""
    if len(options) != len(LETTERS):
        raise ValueError(f"a multiple-choice question needs {len(LETTERS)} options, got {len(options)}")
    listed = "\n".join(f"{letter}) {option}" for letter, option in zip(LETTERS, options))
    stem = f"{question}\n{listed}\nReply with the letter of the correct option."
    return rag_prompt(stem, list(hits))


def mcq_answer(options: Sequence[str], answer: int) -> str:
    """The taught reply to a multiple-choice question: ``"B) <option>"``."""
    return f"{LETTERS[answer]}) {options[answer]}"


def parse_letter(text: str) -> int | None:
    """The option index of the first standalone letter A-D in a reply, None when there is none."""
    match = _LETTER.search(text or "")
    return LETTERS.index(match.group(1)) if match else None


def training_messages(item: dict, system: str = SYSTEM) -> list[dict]:
    """A dataset item as the chat the fine-tuning teaches (system, question, reference answer)."""
    if item["type"] == "mcq":
        user, reply = mcq_prompt(item["question"], item["options"]), mcq_answer(item["options"], item["answer"])
    else:
        user, reply = open_prompt(item["question"]), item["reference"]
    return [{"role": "system", "content": system}, {"role": "user", "content": user},
            {"role": "assistant", "content": reply}]
