"""ECG-LLM: domain fine-tuning vs RAG vs base models, evaluated four ways.

* :mod:`.dataset`: open and multiple-choice questions from the expert cards (and an LLM), split by topic;
* :mod:`.prompts`: the prompts all configurations share;
* :mod:`.finetune`: LoRA / QLoRA with peft and accelerate, cached adapters, merged for inference;
* :mod:`.mcq`, :mod:`.textmetrics`, :mod:`.judge`, :mod:`.rating`: the four evaluation layers;
* :mod:`.evaluate`: the configurations and the table that puts the layers side by side.

:func:`defaults` holds the sizes of each profile, shared by the three notebooks so that they
train and evaluate the same thing.
"""
from __future__ import annotations

__all__ = ["DEFAULTS", "defaults"]

#: Sizes per profile; ``None`` means everything.
DEFAULTS = {
    "quick": {
        "eval_fraction": 0.25,
        "n_train": 128,          # training chats (1.5 epochs, rank 8 on the top 4 blocks, <= 192 tokens each)
        "n_mcq": 24,             # evaluation multiple-choice questions
        "n_open": 12,            # evaluation open questions
        "max_new_tokens": 40,    # per open answer
        "top_k": 1,              # retrieved chunks per question (RAG)
        "n_judge": 3,            # open questions judged per configuration
        "n_control": 8,          # judge control pairs
        "n_boot": 1000,
    },
    "full": {
        "eval_fraction": 0.25,
        "n_train": None,
        "n_mcq": None,
        "n_open": None,
        "max_new_tokens": 256,
        "top_k": 3,
        "n_judge": None,
        "n_control": 40,
        "n_boot": 2000,
    },
}


def defaults(profile: str, **overrides) -> dict:
    """The profile's sizes, with the given overrides (``None`` overrides are ignored)."""
    if profile not in DEFAULTS:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(DEFAULTS)}")
    return {**DEFAULTS[profile], **{k: v for k, v in overrides.items() if v is not None}}
