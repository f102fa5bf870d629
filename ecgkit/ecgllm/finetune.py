"""LoRA fine-tuning of a causal LM on the ECG-LLM training split (peft + accelerate).

ECG-LLM fine-tuned Llama 3.1 8B and 70B with QLoRA. The same loop runs here on any local causal
LM (default: SmolLM2-135M-Instruct on the CPU) and on GPUs:

* the training chats are the items' questions and reference answers in the evaluation prompt
  format (:func:`ecgkit.ecgllm.prompts.training_messages`); the loss covers the answer tokens
  only (the system and user turns are masked);
* LoRA adapters (peft) on all linear layers by default; with CUDA and ``bitsandbytes`` the base
  model is loaded in 4 bits (NF4, QLoRA) unless ``quantize="none"``; bf16 mixed precision on GPU;
* the loop is a plain torch loop prepared by ``accelerate`` (``Accelerator.prepare``), so
  ``accelerate launch -m ecgkit.ecgllm.finetune ...`` trains on several GPUs (data parallel);
* the adapter is saved as safetensors (``adapter_model.safetensors`` + ``adapter_config.json``,
  with the tokenizer and ``training.json``: settings, loss history, timings) under
  ``cache_dir("ecgllm", "adapters", <key>)``, the key hashing the base model's identity, the
  training data and the settings; a rerun with the same inputs loads it instead of training;
* for inference the adapter is merged into the base weights (:func:`load_finetuned`) and wrapped
  as a :class:`~ecgkit.llm.LocalLLM` whose name carries the key (:func:`finetuned_llm`), so
  cached generations of different adapters never mix.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..cache import key as cache_key
from ..config import ProfileSettings, cache_dir
from ..config import settings as environment
from .prompts import SYSTEM, training_messages
from ..versions import VERSIONS

__all__ = ["LoraSettings", "FinetuneResult", "tokenize_chat", "finetune", "load_adapter", "load_finetuned",
           "finetuned_llm", "reference_nll", "main"]

log = logging.getLogger(__name__)

FORMAT_VERSION = VERSIONS["ecgllm_adapter"]
TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class LoraSettings(ProfileSettings):
    """LoRA and optimisation hyperparameters (part of the adapter's cache key).

    ``target_modules``: module names or ``"all-linear"`` (every linear layer of the transformer
    blocks). ``top_layers``: adapt only the last N transformer blocks (None: all); on a CPU this
    halves the cost of a step, since the backward pass stops at the lowest adapted block.
    ``quantize``: ``"auto"`` (4-bit NF4 when CUDA and bitsandbytes are present), ``"4bit"`` or
    ``"none"``. ``max_steps`` caps the optimizer steps (None: ``epochs`` over the data).
    ``max_length``: chats with more tokens are skipped (counted in the result).
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    top_layers: int | None = 8
    learning_rate: float = 2e-3
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 192
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    quantize: str = "auto"
    gradient_checkpointing: bool = False
    eval_every: int | None = 5
    seed: int = 0

    #: ``quick``: rank 8 on the top 4 blocks, 1.5 epochs in batches of 4 at a high learning rate
    #: (2e-3), short chats (CPU minutes; the held-out loss measured every 5 steps). ``full``: a QLoRA
    #: run of the paper's kind (rank 16 on every block, three epochs, 1,024 tokens, effective batch
    #: 16; the held-out loss every 50 steps).
    PROFILES = {
        "quick": dict(top_layers=4, batch_size=4, epochs=1.5),
        "full": dict(r=16, alpha=32, top_layers=None, learning_rate=2e-4, epochs=3.0, batch_size=4,
                     gradient_accumulation=4, max_length=1024, gradient_checkpointing=True, eval_every=50),
    }
    #: ``make smoke``: batch 1 x accumulation 2 (accumulation and checkpointing on every block stay)
    SMOKE = dict(batch_size=1, gradient_accumulation=2)


@dataclass
class FinetuneResult:
    """A trained (or cached) adapter: where it is, how it was made, what training measured."""

    adapter_dir: Path
    key: str
    base: str
    base_name: str
    settings: dict
    history: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)  # per eval step: mean training loss since the last, held-out loss
    eval_examples: int = 0
    examples: int = 0
    skipped: int = 0
    tokens: int = 0  # processed in training (padding excluded)
    steps: int = 0
    train_seconds: float = 0.0
    quantized: bool = False
    device: str = "cpu"
    cached: bool = False
    model: object = field(default=None, repr=False, compare=False)  # the trained peft model (None when cached)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.train_seconds if self.train_seconds else float("nan")

    @property
    def tokens_per_second(self) -> float:
        """Training tokens processed (prompt + answer, padding excluded) per second."""
        return self.tokens / self.train_seconds if self.train_seconds else float("nan")

    @property
    def name(self) -> str:
        """The fine-tuned model's name: the base model's plus the adapter key."""
        return f"{self.base_name.removeprefix('local:')}+lora-{self.key[:12]}"

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        out["adapter_dir"] = str(self.adapter_dir)
        return out


# ----------------------------------------------------------------------------- data


def tokenize_chat(tokenizer, messages: Sequence[dict], max_length: int) -> tuple[list[int], list[int]] | None:
    """``(input_ids, labels)`` of a chat whose last message is the assistant's answer.

    Labels are -100 on the system and user turns, so the loss covers the answer (and its end-of-turn
    token). None when the chat has more than ``max_length`` tokens.
    """
    prompt = tokenizer.apply_chat_template(list(messages[:-1]), add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not extend the prompt with the answer; cannot mask the prompt")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    if len(prompt_ids) + len(answer_ids) > max_length or not answer_ids:
        return None
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def _collate(pad_id: int):
    import torch

    def collate(rows):
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (x, y) in enumerate(rows):
            ids[i, :len(x)] = torch.tensor(x)
            labels[i, :len(y)] = torch.tensor(y)
            mask[i, :len(x)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def _data_hash(chats: Sequence[list[dict]]) -> str:
    return hashlib.sha256(json.dumps(list(chats), ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _base_name(base) -> str:
    from ..llm import LocalLLM

    return LocalLLM(base).name  # resolves the folder and hashes its identity; loads nothing


# ----------------------------------------------------------------------------- training


def _use_4bit(quantize: str) -> bool:
    import importlib.util

    import torch

    if quantize not in ("auto", "4bit", "none"):
        raise ValueError(f"quantize must be 'auto', '4bit' or 'none', not {quantize!r}")
    available = torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None
    if quantize == "4bit" and not available:
        raise RuntimeError("4-bit QLoRA needs a CUDA GPU and the bitsandbytes package")
    return quantize != "none" and available


def _load_for_training(base, four_bit: bool, accelerator, gradient_checkpointing: bool):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import llm_path

    folder = llm_path(base)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    cuda = accelerator.device.type == "cuda"
    if four_bit:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=torch.bfloat16,
                                                     device_map={"": accelerator.local_process_index})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if cuda else torch.float32)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    return model, tokenizer, folder


def _lora_config(model, settings: LoraSettings):
    """The peft config; with ``top_layers``, the target modules named explicitly (peft needs names
    to restrict layers) and ``layers_to_transform`` set to the last blocks."""
    import torch
    from peft import LoraConfig

    targets = settings.target_modules if isinstance(settings.target_modules, str) else list(settings.target_modules)
    layers = None
    n_layers = getattr(model.config, "num_hidden_layers", None)
    if settings.top_layers is not None and n_layers and settings.top_layers < n_layers:
        layers = list(range(n_layers - settings.top_layers, n_layers))
        if targets == "all-linear":
            targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                              if ".layers." in name and isinstance(module, torch.nn.Linear)})
    return LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets,
                      layers_to_transform=layers, task_type="CAUSAL_LM")


def finetune(base, items: Sequence[dict], settings: LoraSettings = LoraSettings(), cache: bool = True,
             progress: bool = True, system: str = SYSTEM, threads: int | None = None,
             eval_items: Sequence[dict] | None = None) -> FinetuneResult:
    """Train a LoRA adapter of ``base`` (any :func:`ecgkit.models.llm_path` name) on ``items``.

    ``items``: dataset items (their split is not checked here: pass the training split). Chats
    longer than ``settings.max_length`` tokens are skipped and counted. ``eval_items``: held-out
    items (e.g. the evaluation split, whose topics are never trained on) whose answer loss is
    measured before training and every ``settings.eval_every`` optimizer steps (the result's
    ``curve``). Returns the cached adapter when the same base, data and settings were trained
    before. ``threads``: torch CPU threads while training (None: ``$ECGKIT_LLM_THREADS``, else
    torch's default).
    """
    import torch

    if not items:
        raise ValueError("no training items")
    chats = [training_messages(item, system) for item in items]
    eval_chats = [training_messages(item, system) for item in eval_items or ()]
    base_name = _base_name(base)
    spec = {"base": base_name, "data": _data_hash(chats),
            "eval_data": _data_hash(eval_chats) if eval_chats else None,
            "settings": dataclasses.asdict(settings)}
    key = cache_key("ecgllm_adapter", spec)
    target = cache_dir("ecgllm", "adapters") / key
    if cache and (target / TRAINING_FILE).is_file():
        info = json.loads((target / TRAINING_FILE).read_text())
        return FinetuneResult(**{**info, "adapter_dir": target, "cached": True})

    threads = threads or environment().llm_threads
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train(base, chats, settings, key, target, base_name, cache, progress, eval_chats)
    finally:
        torch.set_num_threads(previous_threads)


def _answer_loss(model, rows, batch_size: int, pad_id: int) -> float:
    """Mean negative log-likelihood per answer token of ``rows`` (eval mode, no gradients)."""
    import torch

    collate = _collate(pad_id)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start:start + batch_size]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            labels = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((labels != -100).sum())
    if was_training:
        model.train()
    return total / max(count, 1)


def _train(base, chats, settings: LoraSettings, key: str, target: Path, base_name: str, cache: bool,
           progress: bool, eval_chats=()) -> FinetuneResult:
    import torch
    from accelerate import Accelerator
    from peft import get_peft_model
    from tqdm import tqdm
    from transformers import get_scheduler

    four_bit = _use_4bit(settings.quantize)
    mixed = "bf16" if torch.cuda.is_available() else "no"
    # cpu=True without CUDA: several CPU processes (accelerate launch) then use gloo; without it each
    # process would train alone (found by `make smoke`)
    accelerator = Accelerator(gradient_accumulation_steps=settings.gradient_accumulation, mixed_precision=mixed,
                              cpu=not torch.cuda.is_available())
    torch.manual_seed(settings.seed)
    model, tokenizer, folder = _load_for_training(base, four_bit, accelerator, settings.gradient_checkpointing)
    model = get_peft_model(model, _lora_config(model, settings))
    rows = [tokenize_chat(tokenizer, chat, settings.max_length) for chat in chats]
    skipped = sum(r is None for r in rows)
    rows = [r for r in rows if r is not None]
    if not rows:
        raise ValueError(f"all {len(chats)} training chats are longer than max_length={settings.max_length} tokens")
    eval_rows = [r for r in (tokenize_chat(tokenizer, chat, settings.max_length) for chat in eval_chats) if r is not None]
    generator = torch.Generator().manual_seed(settings.seed)
    loader = torch.utils.data.DataLoader(rows, batch_size=settings.batch_size, shuffle=True,
                                         collate_fn=_collate(tokenizer.pad_token_id), generator=generator)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    # optimizer steps from the loader as prepared (sharded over the processes); the prepared
    # scheduler advances once per process at each optimizer step
    per_epoch = math.ceil(len(loader) / settings.gradient_accumulation)
    steps = settings.max_steps or max(1, math.ceil(per_epoch * settings.epochs))
    n = accelerator.num_processes
    scheduler = accelerator.prepare(get_scheduler("linear", optimizer, num_training_steps=steps * n,
                                                  num_warmup_steps=int(settings.warmup_ratio * steps) * n))
    curve: list[dict] = []
    every = settings.eval_every if eval_rows and settings.eval_every else None
    if every:
        curve.append({"step": 0, "train_loss": None,
                      "heldout_loss": _answer_loss(model, eval_rows, settings.batch_size, tokenizer.pad_token_id)})
    model.train()
    history, step, tokens, start = [], 0, 0, time.perf_counter()
    since_eval: list[float] = []
    eval_seconds = 0.0
    bar = tqdm(total=steps, desc="LoRA", unit="step", disable=not progress or not accelerator.is_main_process)
    window: list[float] = []
    while step < steps:
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                tokens += int(batch["attention_mask"].sum())
                accelerator.backward(loss)
                window.append(float(loss.detach()))
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                history.append({"step": step, "loss": sum(window) / len(window),
                                "lr": scheduler.get_last_lr()[0],
                                "seconds": round(time.perf_counter() - start, 3)})
                since_eval.append(history[-1]["loss"])
                window = []
                if every and (step % every == 0 or step == steps):
                    tic = time.perf_counter()
                    curve.append({"step": step, "train_loss": sum(since_eval) / len(since_eval),
                                  "heldout_loss": _answer_loss(model, eval_rows, settings.batch_size,
                                                               tokenizer.pad_token_id)})
                    since_eval = []
                    eval_seconds += time.perf_counter() - tic
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
                if step >= steps:
                    break
    bar.close()
    seconds = time.perf_counter() - start - eval_seconds   # training only (the held-out evaluations excluded)
    model.eval()
    result = FinetuneResult(
        adapter_dir=target, key=key, base=str(folder), base_name=base_name,
        settings=dataclasses.asdict(settings), history=history, curve=curve, eval_examples=len(eval_rows),
        examples=len(rows), skipped=skipped,
        tokens=tokens, steps=step, train_seconds=seconds, quantized=four_bit,
        device=str(accelerator.device), cached=False)
    accelerator.wait_for_everyone()
    result.model = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        _save(result.model, tokenizer, result, target, cache)
    accelerator.wait_for_everyone()
    return result


def _save(model, tokenizer, result: FinetuneResult, target: Path, cache: bool) -> None:
    """Adapter (safetensors), tokenizer and training.json, written aside and moved into place."""
    if not cache:
        target = Path(tempfile.mkdtemp(prefix="ecgllm-adapter-"))
        result.adapter_dir = target
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {k: v for k, v in result.to_dict().items() if k not in ("adapter_dir", "cached")}
        (tmp / TRAINING_FILE).write_text(json.dumps(info, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- inference


def load_adapter(key_or_dir) -> FinetuneResult:
    """A trained adapter from its cache key (as recorded by notebook 07) or its folder."""
    folder = Path(key_or_dir)
    if not (folder / TRAINING_FILE).is_file():
        folder = cache_dir("ecgllm", "adapters") / str(key_or_dir)
    if not (folder / TRAINING_FILE).is_file():
        raise FileNotFoundError(f"no trained adapter {key_or_dir!r} (looked for {TRAINING_FILE} in the folder and in "
                                f"the adapter cache): run notebook 07 first")
    info = json.loads((folder / TRAINING_FILE).read_text())
    return FinetuneResult(**{**info, "adapter_dir": folder, "cached": True})


def _as_dir(adapter) -> Path:
    return Path(adapter.adapter_dir if isinstance(adapter, FinetuneResult) else adapter)


def load_finetuned(adapter, base=None, merge: bool = True, dtype=None, device=None):
    """``(model, tokenizer)``: the base model with the adapter, merged into its weights by default.

    ``adapter``: a :class:`FinetuneResult` or an adapter folder; ``base``: the base model (default:
    the one it was trained on, from ``training.json``). The base is loaded unquantized, so a QLoRA
    adapter merges into bf16/fp32 weights.
    """
    from peft import PeftModel

    from ..models import load_llm

    folder = _as_dir(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no LoRA adapter (adapter_config.json is missing)")
    if base is None:
        info = json.loads((folder / TRAINING_FILE).read_text()) if (folder / TRAINING_FILE).is_file() else {}
        base = info.get("base") or json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    model, tokenizer = load_llm(base, dtype=dtype, device=device)
    model = PeftModel.from_pretrained(model, str(folder))
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def finetuned_llm(result: FinetuneResult, batch_size: int = 8, cache: bool = True, **kwargs):
    """The merged fine-tuned model as an :mod:`ecgkit.llm` backend named after its adapter key."""
    from ..llm import CachedLLM, LocalLLM

    model, tokenizer = load_finetuned(result)
    llm = LocalLLM.from_model(model, tokenizer, name=result.name, batch_size=batch_size, **kwargs)
    return CachedLLM(llm) if cache else llm


def reference_nll(llm, items: Sequence[dict], system: str = SYSTEM, batch_size: int | None = None):
    """Mean negative log-likelihood per token of each item's reference answer given its question
    (open items: the answer; multiple-choice items: the taught ``"B) option"`` reply). Lower is better."""
    import pandas as pd

    from .prompts import mcq_answer, mcq_prompt, open_prompt

    prompts, replies = [], []
    for item in items:
        if item["type"] == "mcq":
            prompts.append(mcq_prompt(item["question"], item["options"]))
            replies.append(mcq_answer(item["options"], item["answer"]))
        else:
            prompts.append(open_prompt(item["question"]))
            replies.append(item["reference"])
    scores = llm.loglikelihood(prompts, replies, system=system, batch_size=batch_size)
    counts = llm.count_tokens(replies)
    return pd.DataFrame({"id": [i["id"] for i in items], "split": [i["split"] for i in items],
                         "type": [i["type"] for i in items], "tokens": counts,
                         "nll_per_token": [-s / max(c, 1) for s, c in zip(scores, counts)]})


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``[accelerate launch] python -m ecgkit.ecgllm.finetune --base MODEL [--data FILE.jsonl]``."""
    from ..config import profile as resolve_profile
    from .dataset import build_dataset, read_jsonl

    parser = argparse.ArgumentParser(prog="python -m ecgkit.ecgllm.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--base", default=None, help="base model: local folder or hub id (default: SmolLM2-135M)")
    parser.add_argument("--data", default=None, help="dataset JSONL (default: build the ECG-LLM dataset)")
    parser.add_argument("--profile", default=None, choices=["quick", "full"])
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--quantize", default="auto", choices=["auto", "4bit", "none"])
    args = parser.parse_args(argv)
    if args.data:
        items, problems = read_jsonl(args.data)
        for line, problem in problems.items():
            print(f"{args.data}:{line}: skipped ({problem})", file=sys.stderr)
    else:
        items = build_dataset().items
    train = [i for i in items if i["split"] == "train"]
    settings = LoraSettings.for_profile(resolve_profile(args.profile), max_steps=args.max_steps, quantize=args.quantize)
    result = finetune(args.base, train, settings)
    print(json.dumps({k: v for k, v in result.to_dict().items() if k != "history"}, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
