"""Helpers for the ECG-LLM tests: a scripted LLM and a tiny random Llama with SmolLM2's tokenizer."""
from __future__ import annotations

from pathlib import Path

from ecgkit.llm import LLM, Generation


class ScriptedLLM(LLM):
    """Answers each prompt with ``reply(prompt_text)``; optional ``score(prompt, continuation)``
    gives it a ``loglikelihood`` method (one token per character for ``count_tokens``)."""

    def __init__(self, reply, score=None, name="scripted"):
        self.reply, self.score, self.name = reply, score, name
        self.prompts = []
        if score is not None:
            self.loglikelihood = self._loglikelihood
            self.count_tokens = lambda texts: [max(1, len(t)) for t in texts]

    def generate(self, prompts, max_new_tokens=128, temperature=0.0, system=None, stop=None, seed=0, **options):
        out = []
        for p in prompts:
            text = p if isinstance(p, str) else p[-1]["content"]
            self.prompts.append(text)
            reply = self.reply(text)
            out.append(Generation.failed("scripted failure") if reply is None else Generation(text=reply))
        return out

    def _loglikelihood(self, prompts, continuations, system=None, chat=True, batch_size=None, progress=None):
        return [float(self.score(p, c)) for p, c in zip(prompts, continuations)]


def tiny_llama(folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama (hidden size 32) with the given tokenizer, saved to ``folder``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return folder
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder

