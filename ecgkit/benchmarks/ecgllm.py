"""ECG-LLM speeds: LoRA training steps per second and evaluation tokens per second, batched.

``python -m ecgkit.benchmarks ecgllm``. On the local LLM (SmolLM2-135M by default):

* LoRA training with the quick profile's settings (rank 8 on the top 8 blocks) on real training
  chats of the ECG-LLM dataset: steps/s and tokens/s over ``steps`` optimizer steps after one
  warm-up step (the adapter goes to a temporary folder, deleted afterwards);
* multiple-choice scoring by option log-likelihood (each question's prompt run once for its four
  options, batched): prompt + option tokens per second;
* batched greedy generation of short open answers: completion tokens per second.
"""
from __future__ import annotations

import shutil
import time


def run(name=None, steps: int = 3, batch_size: int = 8, n_questions: int = 16, n_answers: int = 8,
        max_new_tokens: int = 16, threads: int | None = 1) -> dict:
    """Speeds of one short LoRA run and of the two evaluation passes (``threads``: torch CPU
    threads; 1 gives stable numbers on a small shared machine, None torch's default)."""
    import torch

    from ..ecgllm.dataset import build_dataset, sample_items
    from ..ecgllm.finetune import LoraSettings, finetune
    from ..ecgllm.mcq import option_loglikelihoods
    from ..ecgllm.prompts import SYSTEM, open_prompt
    from ..llm import LocalLLM, to_messages

    data = build_dataset()
    train = sample_items(data.select("train"), batch_size * (steps + 1), seed=0)
    settings = LoraSettings.for_profile("quick", max_steps=steps + 1, batch_size=batch_size, warmup_ratio=0.0)
    result = finetune(name, train, settings, cache=False, progress=False, threads=threads)
    shutil.rmtree(result.adapter_dir, ignore_errors=True)
    first = result.history[0]["seconds"]
    timed = result.train_seconds - first
    per_step_tokens = result.tokens / max(result.steps, 1)

    llm = LocalLLM(name, batch_size=batch_size, threads=threads)
    llm.generate(["warm-up"], max_new_tokens=1, progress=False)
    questions = sample_items(data.select("eval", "mcq"), n_questions, seed=0)
    prompts = [open_prompt(q["question"]) for q in questions]
    options = [q["options"] for q in questions]
    tok = llm.tokenizer
    tokens = sum(len(tok(tok.apply_chat_template(to_messages(p, SYSTEM), add_generation_prompt=True, tokenize=False),
                         add_special_tokens=False)["input_ids"]) for p in prompts)
    tokens += sum(sum(llm.count_tokens(o)) for o in options)
    start = time.perf_counter()
    option_loglikelihoods(llm, prompts, options, cache=False)
    score_s = time.perf_counter() - start

    opens = sample_items(data.select("eval", "open"), n_answers, seed=0)
    start = time.perf_counter()
    generations = llm.generate([open_prompt(q["question"]) for q in opens], max_new_tokens=max_new_tokens,
                               system=SYSTEM, batch_size=n_answers, progress=False)
    generate_s = time.perf_counter() - start
    completion = sum(g.completion_tokens or 0 for g in generations)
    return {
        "model": llm.name,
        "threads": threads or torch.get_num_threads(),
        "lora_steps": steps,
        "lora_batch_size": batch_size,
        "lora_steps_per_s": steps / timed if timed > 0 else float("nan"),
        "lora_tokens_per_s": per_step_tokens * steps / timed if timed > 0 else float("nan"),
        "mcq_questions": len(questions),
        "mcq_scored_tokens_per_s": tokens / score_s,
        "generation_batch": len(opens),
        "generation_tokens_per_s": completion / generate_s,
        "errors": sum(not g.ok for g in generations),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(), indent=2))
