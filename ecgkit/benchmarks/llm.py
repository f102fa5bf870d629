"""Batched vs one-by-one greedy generation with the local LLM (tokens per second).

``python -m ecgkit.benchmarks llm``. The same prompts are generated twice, greedily: one prompt at a
time (``batch_size=1``) and all together in batches; tokens/s counts the completion tokens actually
returned (up to the end of each answer). Also reports how many answers are identical between the two
runs (greedy decoding with left padding should give the same text, up to float rounding).
"""
from __future__ import annotations

import time

PROMPTS = [
    "Describe the normal P wave on an electrocardiogram.",
    "What does a prolonged PR interval suggest?",
    "Explain what atrial fibrillation looks like on an ECG.",
    "List the twelve leads of a standard ECG.",
    "What is the normal duration of the QRS complex?",
    "Describe the ECG signs of left ventricular hypertrophy.",
    "What is a left bundle branch block?",
    "How is the heart rate estimated from an ECG strip?",
    "Explain ST elevation and why it matters.",
    "What is the QT interval and how is it corrected for heart rate?",
    "Describe sinus rhythm in two sentences.",
    "What are T wave inversions?",
    "Explain the difference between the limb leads and the chest leads.",
    "What is an inferior myocardial infarction on an ECG?",
    "Describe low QRS voltage.",
    "Why is ECG signal filtering needed?",
]


def run(n_prompts: int = 16, max_new_tokens: int = 32, batch_size: int = 16, name=None,
        threads: int | None = 1) -> dict:
    """tokens/s of one-by-one vs batched greedy generation of ``n_prompts`` short prompts.

    ``threads``: torch CPU threads (None: torch's default, one per core). The default, 1, gives
    stable numbers on a small machine shared with other work: with 2 threads on 2 busy cores the
    same run took 5x longer (threads wait on each other), which says nothing about batching.
    """
    import torch

    from ..llm import LocalLLM

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_prompts)]
    llm = LocalLLM(name, batch_size=batch_size, device="cpu", threads=threads)
    t = time.perf_counter()
    llm.generate(prompts[:1], max_new_tokens=2, progress=False)  # load and warm up
    load_s = time.perf_counter() - t

    t = time.perf_counter()
    sequential = [llm.generate([p], max_new_tokens=max_new_tokens, progress=False)[0] for p in prompts]
    seq_s = time.perf_counter() - t

    t = time.perf_counter()
    batched = llm.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False)
    batch_s = time.perf_counter() - t

    seq_tokens = sum(g.completion_tokens or 0 for g in sequential)
    batch_tokens = sum(g.completion_tokens or 0 for g in batched)
    seq_rate = seq_tokens / seq_s
    batch_rate = batch_tokens / batch_s
    return {
        "model": llm.name,
        "prompts": n_prompts,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "threads": threads or torch.get_num_threads(),
        "load_s": load_s,
        "sequential_s": seq_s,
        "batched_s": batch_s,
        "sequential_tokens": seq_tokens,
        "batched_tokens": batch_tokens,
        "sequential_tok_per_s": seq_rate,
        "batched_tok_per_s": batch_rate,
        "speedup": batch_rate / seq_rate if seq_rate else float("nan"),
        "identical_answers": sum(a.text == b.text for a, b in zip(sequential, batched)),
        "errors": sum(not g.ok for g in sequential + batched),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(), indent=2))
