"""Estimates of memory and time at paper scale, from model sizes and throughput (``Running at
paper scale`` in the book).

Everything here is an estimate, stated with its assumptions:

* GPU memory of a model: parameters × bytes per parameter (bf16 2, 4-bit 0.5 plus 10 % for the
  quantisation constants), plus a serving KV cache (``2 × layers × kv_heads × head_dim × 2``
  bytes per token) or, for training, AdamW's state of the trainable parameters and the
  activations;
* time of LLM work: prefill at ``mfu`` of the GPUs' peak bf16 FLOP/s (2 FLOPs per parameter and
  token), decoding bound by memory bandwidth (the weights are read once per step for the whole
  concurrent batch);
* time of training: 6 FLOPs per parameter and token (4 for LoRA: no weight gradients of the
  frozen base) or the FLOPs of one forward pass counted by torch (×3 for a training step) at
  ``mfu`` of peak;
* CPU rates (delineation, features) from measured throughput (``make bench``), divided by the
  cores.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = ["LLMSpec", "GPUSpec", "LLAMA_70B", "LLAMA_8B", "SMOLLM2_135M", "H100", "A100",
           "weights_gb", "kv_cache_gb", "serving_memory_gb", "lora_memory_gb", "llm_hours",
           "training_hours", "forward_flops", "chapter_estimates", "PAPER_SIZES", "CPU_RATES", "signal_rate"]


@dataclass(frozen=True)
class LLMSpec:
    name: str
    params_b: float      # billions of parameters
    layers: int
    kv_heads: int
    head_dim: int
    hidden: int


@dataclass(frozen=True)
class GPUSpec:
    name: str
    memory_gb: float
    bf16_tflops: float   # dense peak
    bandwidth_tb_s: float


LLAMA_70B = LLMSpec("Llama-3.1-70B-Instruct", 70.6, 80, 8, 128, 8192)
LLAMA_8B = LLMSpec("Llama-3.1-8B-Instruct", 8.03, 32, 8, 128, 4096)
SMOLLM2_135M = LLMSpec("SmolLM2-135M-Instruct", 0.135, 30, 3, 64, 576)
H100 = GPUSpec("H100 80GB SXM", 80, 989, 3.35)
A100 = GPUSpec("A100 80GB", 80, 312, 2.0)

#: the paper-scale work per chapter (PTB-XL 21,799 records, fold 10 2,198, folds 1-8 17,418)
PAPER_SIZES = {
    "ptbxl_records": 21_799, "ptbxl_test": 2_198, "ptbxl_train": 17_418, "ptbxl_val": 2_183,
    "alfred_llm_configs": 5, "alfred_prompt_tokens": 6_000, "alfred_answer_tokens": 400,
    "alfred_labels": 5, "prefix_cached_tokens": 50,   # vLLM --enable-prefix-caching: the record's prompt is prefilled once
    "cqa_statements": 71, "cqa_ablation_runs": 4 + 5, "cqa_prompt_tokens": 1_500, "cqa_answer_tokens": 192,
    "esi_epochs": 30, "esi_seeds": 5, "esi_runs_per_seed": 8, "esi_finetune_epochs": 30,
    "ecgllm_train_chats": 1_200, "ecgllm_chat_tokens": 600, "ecgllm_epochs": 3,
    "ecgllm_eval_questions": 400, "ecgllm_configs": 4, "ecgllm_answer_tokens": 256,
    "clinical_records": 800_000, "clinical_steps": 8_000, "clinical_batch": 128,
}


#: measured CPU throughput, records per second per core: chapter 02 in CI's quick run (500 real
#: records delineated, measured and checked in 212 s on 2 cores, the baseline on 150 of them)
CPU_RATES = {"signal": 500 / (212 * 2)}


def signal_rate(seconds: float, records: int, cores: int) -> float:
    """Records per second per core from a measured run."""
    if seconds <= 0 or records <= 0 or cores <= 0:
        raise ValueError(f"need a positive time, record count and core count, not {seconds}, {records}, {cores}")
    return records / (seconds * cores)


def weights_gb(params_b: float, bits: int = 16) -> float:
    """GB of the weights at ``bits`` per parameter (4-bit: +10 % for the NF4 constants)."""
    extra = 1.1 if bits == 4 else 1.0
    return params_b * 1e9 * bits / 8 * extra / 1e9


def kv_cache_gb(spec: LLMSpec, tokens: int) -> float:
    """GB of bf16 keys and values for ``tokens`` tokens in flight (all sequences together)."""
    return 2 * spec.layers * spec.kv_heads * spec.head_dim * 2 * tokens / 1e9


def serving_memory_gb(spec: LLMSpec, context: int = 8192, concurrency: int = 16, bits: int = 16,
                      overhead: float = 0.1) -> float:
    """GPU memory to serve ``spec`` (weights, KV cache of ``concurrency`` full contexts, runtime
    ``overhead`` share)."""
    return (weights_gb(spec.params_b, bits) + kv_cache_gb(spec, context * concurrency)) * (1 + overhead)


def lora_memory_gb(spec: LLMSpec, seq_len: int = 1024, batch: int = 4, rank: int = 16, bits: int = 4,
                   checkpointing: bool = True) -> float:
    """GPU memory of a (Q)LoRA fine-tune: the frozen base at ``bits``, the adapters in fp32 with
    AdamW (16 bytes per trainable parameter), and bf16 activations (one hidden state per layer
    with gradient checkpointing, about 16 per layer without)."""
    targets = 7 * 2 * rank * spec.hidden          # q k v o gate up down, A and B, per layer (approx.)
    adapters = spec.layers * targets * 16 / 1e9
    per_layer = 1 if checkpointing else 16
    activations = spec.layers * per_layer * seq_len * batch * spec.hidden * 2 / 1e9
    logits = seq_len * batch * 128_256 * 4 / 1e9  # fp32 logits of the last layer (Llama 3 vocabulary)
    return weights_gb(spec.params_b, bits) + adapters + activations + logits


def llm_hours(spec: LLMSpec, requests: int, prompt_tokens: int, new_tokens: int, gpu: GPUSpec = H100,
              n_gpus: int = 4, concurrency: int = 32, mfu: float = 0.4, bandwidth_use: float = 0.6) -> float:
    """Hours to answer ``requests`` prompts: prefill at ``mfu`` of peak FLOP/s, decoding at
    ``bandwidth_use`` of the memory bandwidth for ``concurrency`` sequences per step."""
    prefill = requests * prompt_tokens * 2 * spec.params_b * 1e9 / (gpu.bf16_tflops * 1e12 * n_gpus * mfu)
    step = weights_gb(spec.params_b) * 1e9 / (gpu.bandwidth_tb_s * 1e12 * n_gpus * bandwidth_use)
    decode = requests * new_tokens / concurrency * step
    return (prefill + decode) / 3600


def training_hours(flops: float, gpu: GPUSpec = H100, n_gpus: int = 1, mfu: float = 0.3) -> float:
    """Hours for ``flops`` floating-point operations at ``mfu`` of the GPUs' peak."""
    return flops / (gpu.bf16_tflops * 1e12 * n_gpus * mfu) / 3600


def forward_flops(model, example) -> float:
    """FLOPs of one forward pass of ``model`` on ``example``, counted by torch (both may live on
    the ``meta`` device: counted without computing)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return float(counter.get_total_flops())


@functools.lru_cache(maxsize=None)
def _convnext_flops(variant: str, samples: int = 5000) -> float:
    """Forward FLOPs of the ESI encoder for one 12-lead record of ``samples`` samples."""
    import torch

    from .nn import ecg_encoder

    with torch.device("meta"):
        return forward_flops(ecg_encoder(variant).eval(), torch.zeros(1, 12, samples))


@functools.lru_cache(maxsize=None)
def _params_m(variant: str) -> float:
    import torch

    from .nn import ecg_encoder

    with torch.device("meta"):
        return sum(p.numel() for p in ecg_encoder(variant).parameters()) / 1e6


def chapter_estimates(gpu: GPUSpec = H100, n_gpus: int = 4, serve: LLMSpec = LLAMA_70B,
                      tune: LLMSpec = LLAMA_8B, cpu_rates: dict | None = None, cores: int = 32,
                      sizes: dict | None = None):
    """A table (one row per chapter) of the work at paper scale, the GPU memory it needs and the
    estimated hours. ``cpu_rates``: measured records/s per core of the CPU steps
    (``delineation`` and ``features``; defaults: the U-Net benchmark's order of magnitude on one
    core). Every number is an estimate."""
    import pandas as pd

    s = {**PAPER_SIZES, **(sizes or {})}
    rates = {**CPU_RATES, **(cpu_rates or {})}
    serve_mem = serving_memory_gb(serve)
    tiny = _convnext_flops("tiny")
    per_sample = 3 * tiny                                # forward + backward
    esi_pretrain = per_sample * s["ptbxl_train"] * s["esi_epochs"] * 1.3   # + text tower and decoder
    esi_all = esi_pretrain * s["esi_seeds"] * s["esi_runs_per_seed"]
    finetune = per_sample * s["ptbxl_train"] * s["esi_finetune_epochs"] * s["esi_seeds"] * 6
    lora_tokens = s["ecgllm_train_chats"] * s["ecgllm_chat_tokens"] * s["ecgllm_epochs"]
    rows = [
        ("02 delineation, features, rules", "CPU", f"{s['ptbxl_records']:,} records at 500 Hz", "< 2 GB RAM per core",
         s["ptbxl_records"] / rates["signal"] / cores / 3600),
        ("03 ALFRED evaluation", f"{serve.name} served", f"{s['ptbxl_test']:,} records x {s['alfred_llm_configs']} "
         f"configurations (answers and label probabilities)", f"{serve_mem:.0f} GB",
         llm_hours(serve, s["ptbxl_test"] * s["alfred_llm_configs"], s["alfred_prompt_tokens"],
                   s["alfred_answer_tokens"], gpu, n_gpus)
         + llm_hours(serve, s["ptbxl_test"] * s["alfred_llm_configs"] * s["alfred_labels"] * 2,
                     s["prefix_cached_tokens"], 1, gpu, n_gpus)),
        ("04 ESI descriptions (CQA)", f"{serve.name} served", f"{s['cqa_statements']} statements x "
         f"{s['cqa_ablation_runs']} settings", f"{serve_mem:.0f} GB",
         llm_hours(serve, s["cqa_statements"] * s["cqa_ablation_runs"], s["cqa_prompt_tokens"],
                   s["cqa_answer_tokens"], gpu, n_gpus)),
        ("05 ESI pretraining and experiments", f"ConvNeXt1D tiny ({_params_m('tiny'):.1f} M)",
         f"{s['esi_seeds']} seeds x {s['esi_runs_per_seed']} pretrainings of {s['esi_epochs']} epochs on "
         f"{s['ptbxl_train']:,} records, fine-tuning", "< 24 GB (batch 128, bf16)",
         training_hours(esi_all + finetune, gpu, n_gpus)),
        ("07 ECG-LLM fine-tuning (QLoRA)", tune.name, f"{lora_tokens:,} tokens", f"{lora_memory_gb(tune):.0f} GB",
         training_hours(4 * tune.params_b * 1e9 * lora_tokens, gpu, 1)),
        ("08 ECG-LLM evaluation", f"{tune.name} + {serve.name} judge", f"{s['ecgllm_eval_questions']} questions x "
         f"{s['ecgllm_configs']} configurations", f"{serve_mem:.0f} GB (judge)",
         llm_hours(tune, s["ecgllm_eval_questions"] * s["ecgllm_configs"], 1_000, s["ecgllm_answer_tokens"], gpu, 1)
         + llm_hours(serve, s["ecgllm_eval_questions"] * s["ecgllm_configs"], 1_500, 1, gpu, n_gpus)),
        ("09 clinical transfer", "ConvNeXt1D tiny + tabular", f"{s['clinical_steps']:,} steps of "
         f"{s['clinical_batch']} (MIMIC-IV-ECG)", "< 40 GB (batch 128)",
         training_hours(_convnext_flops("tiny", 1000) * 3 * 2 * s["clinical_steps"] * s["clinical_batch"], gpu, 1)),
    ]
    table = pd.DataFrame(rows, columns=["chapter", "model", "work", "GPU memory", "hours"])
    table["hours"] = table["hours"].astype(float)
    return table
