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

from dataclasses import dataclass

from ..config import ProfileSettings

__all__ = ["EcgllmSettings", "DEFAULTS", "defaults"]


@dataclass(frozen=True)
class EcgllmSettings(ProfileSettings):
    """Sizes of chapters 06-08 (the quick profile's as defaults); ``None`` means everything."""

    eval_fraction: float = 0.25
    n_train: int | None = 128        # training chats (1.5 epochs, rank 8 on the top 4 blocks, <= 192 tokens each)
    n_mcq: int | None = 24           # evaluation multiple-choice questions
    n_open: int | None = 12          # evaluation open questions
    max_new_tokens: int = 40         # per open answer
    top_k: int = 1                   # retrieved chunks per question (RAG)
    n_judge: int | None = 3          # open questions judged per configuration
    n_control: int = 8               # judge control pairs
    n_boot: int = 1000

    PROFILES = {"full": dict(n_train=None, n_mcq=None, n_open=None, max_new_tokens=256, top_k=3,
                             n_judge=None, n_control=40, n_boot=2000)}


#: sizes per profile, as dictionaries
DEFAULTS = {name: EcgllmSettings.for_profile(name).as_dict() for name in ("quick", "full")}


def defaults(profile: str | None = None, **overrides) -> dict:
    """The profile's sizes with ``overrides`` (``None`` ones ignored; an unknown name is an error)."""
    return EcgllmSettings.for_profile(profile, **overrides).as_dict()
