"""One small LLM interface for every chapter: a local transformers model or an OpenAI-compatible endpoint.

The same chapter code runs SmolLM2-135M on a laptop and a 70B model behind a vLLM / llama.cpp
server (or a hosted API)::

    from ecgkit.llm import get_llm
    llm = get_llm(cache=True)          # endpoint if ECGKIT_LLM_BASE_URL is set, else the local model
    out = llm.generate(["What is a normal PR interval?"], max_new_tokens=64)
    out[0].text, out[0].finish_reason  # "stop" | "length" | "error"

Pieces:

- :class:`Generation`: one answer (text, finish_reason, token counts, error, cached).
- :class:`LLM`: the base class. ``generate(prompts, max_new_tokens, temperature, system, stop, seed)``
  takes a list of prompts, each a user message string or a chat message list
  (``[{"role": "user", "content": ...}, ...]``), and returns one :class:`Generation` per prompt, in
  order. An item that fails (over-long prompt, time-out after retries, server error) comes back with
  ``finish_reason="error"`` and a message in ``error``; it never crashes the batch, so callers count
  errors (:func:`usage`). Malformed arguments (a prompt that is neither a string nor a message list)
  are programming errors and raise at once.
- :class:`LocalLLM`: a transformers causal LM loaded with :func:`ecgkit.models.load_llm` (lazily, on
  first use); chat template applied; greedy when ``temperature == 0``; batched generation sorted by
  length; prompts over the context (or ``max_input_tokens``) are error items, or middle-truncated
  with ``truncate=True``. A message list that ends with an assistant message is continued
  (answer prefill, e.g. ``"NORM:"`` to start a fixed format). Also :meth:`LocalLLM.loglikelihood`
  for multiple-choice scoring.
- :class:`OpenAIChat`: ``POST {base_url}/chat/completions`` with ``requests``, concurrent, with
  time-outs and retries (exponential backoff; ``Retry-After`` honoured) on connection errors,
  time-outs, 429 and 5xx. Configured by ``ECGKIT_LLM_BASE_URL``, ``ECGKIT_LLM_MODEL`` and
  ``ECGKIT_LLM_API_KEY``; the key is sent as a Bearer header and never logged or shown.
- :class:`GenerationCache` (SQLite under ``cache_dir("generations")``) and :class:`CachedLLM`: a rerun
  returns stored answers (``cached=True``) and only sends the misses to the backend. Errors are not
  stored.
- :func:`get_llm`: ``None`` / ``"local"`` / ``"local:<folder or hub id>"`` / ``"openai"`` /
  ``"openai:<model>"``.

``ECGKIT_LLM_THREADS`` sets the CPU threads of a local model (1 is best on a machine shared with
other busy processes).

No data leaves the machine unless an endpoint was configured (``ECGKIT_LLM_BASE_URL`` or an explicit
``base_url``).
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import email.utils
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, Union
from urllib.parse import urlsplit, urlunsplit

from .config import cache_dir

__all__ = [
    "Generation",
    "LLM",
    "LocalLLM",
    "OpenAIChat",
    "GenerationCache",
    "CachedLLM",
    "get_llm",
    "usage",
    "to_messages",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "ENV_API_KEY",
]

log = logging.getLogger(__name__)

ENV_BASE_URL = "ECGKIT_LLM_BASE_URL"
ENV_MODEL = "ECGKIT_LLM_MODEL"
ENV_API_KEY = "ECGKIT_LLM_API_KEY"

Message = dict
Prompt = Union[str, Sequence[Message]]

#: ``progress=None`` shows a progress bar from this many batches (local) / requests (endpoint) on.
PROGRESS_MIN_BATCHES = 4
PROGRESS_MIN_REQUESTS = 32


# ----------------------------------------------------------------------------- results


@dataclass
class Generation:
    """One generated answer.

    ``finish_reason`` is ``"stop"`` (end of turn or a stop string), ``"length"``
    (``max_new_tokens`` reached) or ``"error"`` (then ``error`` says why and ``text`` is empty).
    Token counts are None when the backend did not report them. ``truncated`` is True when the
    prompt was shortened from the middle to fit (``truncate=True``).
    """

    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    cached: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def failed(cls, message: str, prompt_tokens: int | None = None) -> "Generation":
        return cls(text="", finish_reason="error", prompt_tokens=prompt_tokens,
                   completion_tokens=0, error=message)


def usage(generations: Iterable[Generation]) -> dict:
    """Counts over a list of generations: n, errors, cached, truncated, lengths, token totals."""
    gens = list(generations)
    return {
        "n": len(gens),
        "errors": sum(not g.ok for g in gens),
        "length": sum(g.finish_reason == "length" for g in gens),
        "cached": sum(g.cached for g in gens),
        "truncated": sum(g.truncated for g in gens),
        "prompt_tokens": sum(g.prompt_tokens or 0 for g in gens),
        "completion_tokens": sum(g.completion_tokens or 0 for g in gens),
    }


# ----------------------------------------------------------------------------- prompts


def _check_prompts(prompts) -> list:
    if isinstance(prompts, (str, dict)):
        raise TypeError("prompts must be a list of prompts (wrap a single prompt in a list)")
    prompts = list(prompts)
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            continue
        if isinstance(p, (list, tuple)) and p and all(
            isinstance(m, dict) and "role" in m and "content" in m for m in p
        ):
            continue
        raise TypeError(
            f"prompt {i} must be a string or a non-empty list of {{'role', 'content'}} messages, "
            f"got {type(p).__name__}"
        )
    return prompts


def to_messages(prompt: Prompt, system: str | None = None) -> list[dict]:
    """A chat message list for a prompt: a string becomes one user message; ``system`` goes first.

    Giving ``system`` for a message list that already starts with a system message is ambiguous
    and raises ValueError.
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
    if system is not None:
        if messages and messages[0].get("role") == "system":
            raise ValueError("system= was given for a prompt that already has a system message")
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _stop_list(stop) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    stop = [s for s in stop if s]
    return list(stop) or None


def _cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# ----------------------------------------------------------------------------- base class


class LLM(abc.ABC):
    """A chat LLM: ``name`` (stable identity, used as cache key) and batched :meth:`generate`."""

    name: str

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        system: str | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int = 0,
        **options: Any,
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in the prompts' order; failures are error items."""

    def generate_one(self, prompt: Prompt, **kwargs) -> Generation:
        """:meth:`generate` for a single prompt."""
        return self.generate([prompt], **kwargs)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ----------------------------------------------------------------------------- local model


def _folder_identity(folder: Path, dtype) -> str:
    """A short hash of what determines a local model's outputs: config, tokenizer, weight files, dtype."""
    digest = hashlib.sha256()
    for fname in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "chat_template.jinja", "special_tokens_map.json", "adapter_config.json"):
        path = folder / fname
        if path.is_file():
            digest.update(fname.encode() + b"\0" + path.read_bytes() + b"\0")
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{path.name}:{path.stat().st_size}\0".encode())
    digest.update(f"dtype={dtype}".encode())
    return digest.hexdigest()[:12]


def _folder_label(folder: Path) -> str:
    """A readable, machine-independent label: ``org/name@rev`` for a hub snapshot, else the folder name."""
    parts = folder.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i >= 1 and parts[i - 1].startswith("models--"):
            repo = parts[i - 1][len("models--"):].replace("--", "/")
            rev = parts[i + 1][:12] if i + 1 < len(parts) else ""
            return f"{repo}@{rev}" if rev else repo
    return folder.name


@contextlib.contextmanager
def _flush_denormals(model):
    """Treat subnormal floats as zero while running a model on the CPU.

    Left-padded batches produce subnormal activations at the padded positions, which make CPU
    matrix products dozens of times slower (seen on SmolLM2: 36 s instead of 1.3 s for a batch of
    4). Flushing them changes nothing visible in the outputs. The CPU flag is reset afterwards
    (to off, torch's default), since it also affects numpy in this thread.
    """
    import torch

    on_cpu = next(model.parameters()).device.type == "cpu"
    enabled = on_cpu and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


def _env_threads() -> int | None:
    value = (os.environ.get("ECGKIT_LLM_THREADS") or "").strip()
    if not value:
        return None
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"ECGKIT_LLM_THREADS must be a whole number, not {value!r}") from None


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run with ``n`` intra-op CPU threads (None: leave torch's setting), restored afterwards."""
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _middle_truncate(ids: list[int], limit: int) -> list[int]:
    """Keep the first and last tokens (chat header and generation prompt), drop the middle."""
    if len(ids) <= limit:
        return ids
    head = limit // 2
    tail = limit - head
    return ids[:head] + (ids[-tail:] if tail else [])


class LocalLLM(LLM):
    """A transformers causal LM run in-process (default: SmolLM2-135M-Instruct, see :mod:`ecgkit.models`).

    ``name`` is anything :func:`ecgkit.models.llm_path` accepts (None: ``$ECGKIT_LLM`` or the
    default). The model is loaded on first use, so a fully cached run never loads it.
    ``max_input_tokens`` caps prompt length below the context; ``truncate`` is the default for
    :meth:`generate`'s ``truncate``. ``threads`` sets torch's CPU threads while this model runs
    (None: ``$ECGKIT_LLM_THREADS``, else torch's default, one per core); 1 is much faster on a CPU
    shared with other busy processes, where several threads wait on each other.
    """

    def __init__(
        self,
        name: str | os.PathLike | None = None,
        batch_size: int = 8,
        max_input_tokens: int | None = None,
        device: str | None = None,
        dtype=None,
        truncate: bool = False,
        threads: int | None = None,
    ):
        from .models import llm_path

        self.path = Path(llm_path(name))
        self.batch_size = max(1, int(batch_size))
        self.max_input_tokens = max_input_tokens
        self.device = device
        self.dtype = dtype
        self.truncate = truncate
        self.threads = threads if threads is not None else _env_threads()
        self.name = f"local:{_folder_label(self.path)}@{_folder_identity(self.path, dtype)}"
        self._model = None
        self._tokenizer = None
        self._lock = threading.RLock()

    @classmethod
    def from_model(cls, model, tokenizer, name: str, batch_size: int = 8,
                   max_input_tokens: int | None = None, truncate: bool = False,
                   threads: int | None = None) -> "LocalLLM":
        """Wrap an already loaded model (e.g. a fine-tuned one); ``name`` must identify it for caching.

        The tokenizer should pad on the left and have a pad token (as :func:`load_llm` sets).
        """
        self = cls.__new__(cls)
        self.path = None
        self.batch_size = max(1, int(batch_size))
        self.max_input_tokens = max_input_tokens
        self.device = None
        self.dtype = None
        self.truncate = truncate
        self.threads = threads if threads is not None else _env_threads()
        self.name = name if name.startswith("local:") else f"local:{name}"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self._model, self._tokenizer = model, tokenizer
        self._lock = threading.RLock()
        return self

    # -- lazily loaded pieces

    def _load(self):
        with self._lock:
            if self._model is None:
                from .models import load_llm

                self._model, self._tokenizer = load_llm(str(self.path), dtype=self.dtype, device=self.device)
        return self._model, self._tokenizer

    @property
    def model(self):
        return self._load()[0]

    @property
    def tokenizer(self):
        return self._load()[1]

    @property
    def context_length(self) -> int:
        """The model's context window (max positions), capped by the tokenizer's limit if it has one."""
        model, tok = self._load()
        limits = [getattr(model.config, "max_position_embeddings", None),
                  getattr(tok, "model_max_length", None)]
        limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**7]
        return min(limits) if limits else 2048

    def _input_limit(self, max_new_tokens: int) -> tuple[int, str]:
        ctx = self.context_length
        limit, why = ctx - max_new_tokens, f"context {ctx} - max_new_tokens {max_new_tokens}"
        if self.max_input_tokens is not None and self.max_input_tokens < limit:
            limit, why = int(self.max_input_tokens), "max_input_tokens"
        return limit, why

    def _encode(self, prompt: Prompt, system: str | None, chat: bool = True) -> list[int]:
        tok = self._load()[1]
        if not chat:
            if not isinstance(prompt, str):
                raise TypeError("chat=False needs string prompts")
            return tok(prompt, add_special_tokens=True)["input_ids"]
        messages = to_messages(prompt, system)
        if messages[-1].get("role") == "assistant":   # prefilled answer: the model continues it
            text = tok.apply_chat_template(messages, continue_final_message=True, tokenize=False)
        else:
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]

    def _eos_ids(self) -> set[int]:
        model, tok = self._load()
        eos = model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            ids.add(tok.eos_token_id)
        return ids

    def _pad(self, rows: list[list[int]]):
        import torch

        model, tok = self._load()
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        device = next(model.parameters()).device
        return ids.to(device), mask.to(device)

    # -- generation

    def generate(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        system: str | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int = 0,
        truncate: bool | None = None,
        progress: bool | None = None,
        batch_size: int | None = None,
        choices: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Batched generation; greedy when ``temperature == 0``, else sampling seeded by ``seed``.

        Prompts are sorted by length (less padding) and answers returned in the original order.
        A prompt longer than the limit is an error item ("prompt has N tokens, limit M"), or, with
        ``truncate=True``, shortened from the middle (``Generation.truncated``). Sampled outputs
        depend on how prompts are batched; greedy ones do not (up to float rounding).
        ``choices``: constrained decoding; every answer starts with one of these texts (the model
        picks among them token by token) and continues freely after it.
        """
        import torch
        from tqdm import tqdm

        prompts = _check_prompts(prompts)
        stop = _stop_list(stop)
        truncate = self.truncate if truncate is None else truncate
        if not prompts:
            return []
        for p in prompts:  # raise on ambiguous prompts before any work
            to_messages(p, system)
        results: list[Generation | None] = [None] * len(prompts)
        limit, why = self._input_limit(max_new_tokens)
        todo: list[tuple[int, list[int], bool]] = []
        for i, prompt in enumerate(prompts):
            try:
                ids = self._encode(prompt, system)
            except Exception as exc:  # e.g. a chat template refusing the roles
                results[i] = Generation.failed(f"could not format the prompt: {type(exc).__name__}: {exc}")
                continue
            if limit <= 0:
                results[i] = Generation.failed(
                    f"prompt has {len(ids)} tokens, limit {limit} ({why}): max_new_tokens is too large",
                    prompt_tokens=len(ids))
            elif len(ids) > limit:
                if truncate:
                    todo.append((i, _middle_truncate(ids, limit), True))
                else:
                    results[i] = Generation.failed(
                        f"prompt has {len(ids)} tokens, limit {limit} ({why}); shorten it or pass "
                        f"truncate=True", prompt_tokens=len(ids))
            else:
                todo.append((i, ids, False))

        todo.sort(key=lambda item: -len(item[1]))
        size = max(1, int(batch_size or self.batch_size))
        batches = [todo[k:k + size] for k in range(0, len(todo), size)]
        show = progress if progress is not None else len(batches) >= PROGRESS_MIN_BATCHES
        model = self._load()[0]
        with self._lock, contextlib.ExitStack() as stack:
            stack.enter_context(_flush_denormals(model))
            stack.enter_context(_torch_threads(self.threads))
            if temperature > 0:
                devices = []
                if torch.cuda.is_available() and next(model.parameters()).is_cuda:
                    devices = [next(model.parameters()).device]
                stack.enter_context(torch.random.fork_rng(devices=devices))
                torch.manual_seed(int(seed))
            for batch in tqdm(batches, desc="generate", unit="batch", disable=not show):
                for (i, _, _), gen in zip(batch, self._generate_batch(batch, max_new_tokens,
                                                                      temperature, stop, choices)):
                    results[i] = gen
        return results  # type: ignore[return-value]

    def _generate_batch(self, batch, max_new_tokens, temperature, stop, choices=None) -> list[Generation]:
        try:
            return self._run_batch(batch, max_new_tokens, temperature, stop, choices)
        except Exception as exc:
            if len(batch) > 1:  # find the culprit: one by one
                log.warning("batch of %d failed (%s: %s); retrying one by one",
                            len(batch), type(exc).__name__, exc)
                self._free_memory()
                return [self._generate_batch([item], max_new_tokens, temperature, stop, choices)[0]
                        for item in batch]
            self._free_memory()
            return [Generation.failed(f"generation failed: {type(exc).__name__}: {exc}",
                                      prompt_tokens=len(batch[0][1]))]

    @staticmethod
    def _free_memory():
        with contextlib.suppress(Exception):
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _choice_constraint(self, choices: Sequence[str], width: int):
        """``prefix_allowed_tokens_fn`` for :meth:`generate`: the tokens that keep the answer on
        one of ``choices`` (a token trie), then any token."""
        tok = self._load()[1]
        trie: dict = {}
        for text in dict.fromkeys(choices):
            node = trie
            for t in tok(text, add_special_tokens=False)["input_ids"]:
                node = node.setdefault(t, {})
        everything = list(range(len(tok)))

        def allowed(_, ids):
            node = trie
            for t in ids[width:].tolist():
                node = node.get(t)
                if not node:
                    return everything
            return list(node)

        return allowed

    def _run_batch(self, batch, max_new_tokens, temperature, stop, choices=None) -> list[Generation]:
        import torch

        model, tok = self._load()
        input_ids, mask = self._pad([ids for _, ids, _ in batch])
        kwargs: dict[str, Any] = {"max_new_tokens": int(max_new_tokens),
                                  "pad_token_id": tok.pad_token_id}
        if choices:
            kwargs["prefix_allowed_tokens_fn"] = self._choice_constraint(choices, input_ids.shape[1])
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tok)
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        new = out[:, input_ids.shape[1]:].tolist()
        eos, pad = self._eos_ids(), tok.pad_token_id
        results = []
        for (_, ids, truncated), row in zip(batch, new):
            n, ended = 0, False
            for token in row:
                if token in eos:
                    n, ended = n + 1, True
                    break
                if token == pad:
                    break
                n += 1
            text = tok.decode(row[:n], skip_special_tokens=True)
            text, stopped = _cut_at_stop(text, stop)
            if stopped or ended or n < max_new_tokens:
                reason = "stop"
            else:
                reason = "length"
            results.append(Generation(text=text, finish_reason=reason, prompt_tokens=len(ids),
                                      completion_tokens=n, truncated=truncated))
        return results

    # -- scoring

    def loglikelihood(
        self,
        prompts: Sequence[Prompt],
        continuations: Sequence[str],
        system: str | None = None,
        chat: bool = True,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[float]:
        """Sum of the log-probabilities of each continuation's tokens given its prompt.

        With ``chat=True`` the prompt is formatted with the chat template and the generation prompt
        (the continuation is the start of the assistant's answer, e.g. ``"B"`` or ``"Paris"``); with
        ``chat=False`` the prompt string is used as raw text. An empty continuation scores 0.0; a
        prompt + continuation over the context scores NaN (with a warning). Batched like
        :meth:`generate`; for multiple choice, compare options' scores (or scores divided by their
        token counts, see :meth:`count_tokens`).
        """
        import torch
        from tqdm import tqdm

        prompts = _check_prompts(prompts)
        continuations = list(continuations)
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        if not all(isinstance(c, str) for c in continuations):
            raise TypeError("continuations must be strings")
        if not chat and system is not None:
            raise ValueError("system= needs chat=True")
        model, tok = self._load()
        scores: list[float] = [0.0] * len(prompts)
        ctx_len = self.context_length
        todo = []
        for i, (prompt, cont) in enumerate(zip(prompts, continuations)):
            cont_ids = tok(cont, add_special_tokens=False)["input_ids"] if cont else []
            if not cont_ids:
                continue
            ctx_ids = self._encode(prompt, system, chat=chat)
            if not ctx_ids:  # nothing to condition on: start from BOS if there is one
                bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
                ctx_ids = [bos]
            if len(ctx_ids) + len(cont_ids) > ctx_len:
                log.warning("loglikelihood item %d has %d tokens, limit %d: NaN", i,
                            len(ctx_ids) + len(cont_ids), ctx_len)
                scores[i] = float("nan")
                continue
            todo.append((i, ctx_ids + cont_ids, len(cont_ids)))
        todo.sort(key=lambda item: -len(item[1]))
        size = max(1, int(batch_size or self.batch_size))
        batches = [todo[k:k + size] for k in range(0, len(todo), size)]
        show = progress if progress is not None else len(batches) >= PROGRESS_MIN_BATCHES
        with self._lock, _flush_denormals(model), _torch_threads(self.threads):
            for batch in tqdm(batches, desc="loglikelihood", unit="batch", disable=not show):
                ids, mask = self._pad([row for _, row, _ in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                keep = max(c for _, _, c in batch) + 1
                with torch.inference_mode():
                    try:
                        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                       logits_to_keep=keep).logits
                    except TypeError:  # a model without logits_to_keep
                        logits = model(input_ids=ids, attention_mask=mask,
                                       position_ids=positions).logits
                    logits = logits[:, -keep:].float()
                    logprobs = torch.log_softmax(logits, dim=-1)
                for b, (i, row, c) in enumerate(batch):
                    # logits at kept index k predict the token at kept index k + 1
                    target = ids[b, -c:]
                    lp = logprobs[b, keep - c - 1: keep - 1].gather(-1, target.unsqueeze(-1))
                    scores[i] = float(lp.sum().item())
        return scores

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of plain texts (no chat template, no special tokens)."""
        if isinstance(texts, str):
            raise TypeError("count_tokens takes a list of texts, not a single string")
        tok = self._load()[1]
        return [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


# ----------------------------------------------------------------------------- HTTP endpoint


def _public_url(url: str) -> str:
    """The URL without user:password and query (for names, logs and messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(Exception):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _server_message(resp) -> str:
    """The error message a server gave (OpenAI ``{"error": {"message": ...}}`` or text)."""
    text = ""
    with contextlib.suppress(Exception):
        body = resp.json()
        if isinstance(body, dict):
            err = body.get("error", body.get("detail", body.get("message")))
            if isinstance(err, dict):
                err = err.get("message") or json.dumps(err)
            if err:
                text = str(err)
    if not text:
        with contextlib.suppress(Exception):
            text = resp.text
    text = " ".join(text.split())
    return (text[:500] + "...") if len(text) > 500 else (text or resp.reason or "")


class OpenAIChat(LLM):
    """An OpenAI-compatible chat endpoint (vLLM, llama.cpp server, a hosted API).

    ``base_url`` (e.g. ``http://localhost:8000/v1``), ``model`` and ``api_key`` default to
    ``$ECGKIT_LLM_BASE_URL``, ``$ECGKIT_LLM_MODEL`` and ``$ECGKIT_LLM_API_KEY``; keep the key in
    the environment. Without a model name, the first model of ``GET {base_url}/models`` is used.
    Each request gets ``timeout`` seconds; connection errors, time-outs, 429 and 5xx are retried
    ``retries`` times with exponential backoff (``backoff * 2**attempt`` s, or the server's
    ``Retry-After``, at most ``max_retry_after`` s); other 4xx fail at once with the server's
    message. ``max_workers`` requests run concurrently.
    """

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        retries: int = 4,
        backoff: float = 1.0,
        max_workers: int = 4,
        max_retry_after: float = 120.0,
    ):
        base_url = base_url or os.environ.get(ENV_BASE_URL) or ""
        if not base_url.strip():
            raise ValueError(
                f"no endpoint configured: pass base_url= or set {ENV_BASE_URL} "
                "(e.g. http://localhost:8000/v1 for a vLLM or llama.cpp server)"
            )
        self.base_url = base_url.strip().rstrip("/")
        self._model = model or os.environ.get(ENV_MODEL) or None
        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
        self._api_key = key or None
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_workers = max(1, int(max_workers))
        self.max_retry_after = float(max_retry_after)
        self._local = threading.local()
        self._model_lock = threading.Lock()

    # -- identity; the key never appears here

    @property
    def model(self) -> str:
        with self._model_lock:
            if self._model is None:
                self._model = self._discover_model()
        return self._model

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"openai:{_public_url(self.base_url)}/{self.model}"

    def __repr__(self) -> str:
        model = self._model or "?"
        key = "***" if self._api_key else None
        return f"OpenAIChat(model={model!r}, base_url={_public_url(self.base_url)!r}, api_key={key})"

    def __getstate__(self):
        raise TypeError("OpenAIChat holds an API key and is not picklable; build it from the environment")

    def _scrub(self, text: str) -> str:
        """Remove secrets (the key, URL credentials) from a message."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        parts = urlsplit(self.base_url)
        if parts.password:
            text = text.replace(parts.password, "***")
        return text

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _discover_model(self) -> str:
        url = f"{self.base_url}/models"
        try:
            resp = self._session().get(url, headers=self._headers(), timeout=self.timeout)
            resp.raise_for_status()
            data = resp.json().get("data") or []
            return str(data[0]["id"])
        except Exception as exc:
            raise ValueError(self._scrub(
                f"no model name given and none found at {_public_url(url)} "
                f"({type(exc).__name__}: {exc}); pass model= or set {ENV_MODEL}"
            )) from None

    # -- requests

    def generate(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        system: str | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int = 0,
        truncate: bool | None = None,
        progress: bool | None = None,
    ) -> list[Generation]:
        """Concurrent requests, answers in order. ``truncate`` is ignored: the server has the
        tokenizer, and an over-long prompt comes back as its 400 error (an error item)."""
        from tqdm import tqdm

        prompts = _check_prompts(prompts)
        if not prompts:
            return []
        messages = [to_messages(p, system) for p in prompts]
        payload = {"model": self.model, "max_tokens": int(max_new_tokens),
                   "temperature": float(temperature)}
        stop = _stop_list(stop)
        if stop:
            payload["stop"] = stop
        if temperature > 0:
            payload["seed"] = int(seed)
        show = progress if progress is not None else len(prompts) >= PROGRESS_MIN_REQUESTS

        def one(msgs):
            try:
                return self._request({**payload, "messages": msgs})
            except Exception as exc:  # never crash the batch
                return Generation.failed(self._scrub(f"{type(exc).__name__}: {exc}"))

        workers = min(self.max_workers, len(prompts))
        if workers == 1:
            return [one(m) for m in tqdm(messages, desc="generate", unit="req", disable=not show)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ecgkit-llm") as pool:
            return list(tqdm(pool.map(one, messages), total=len(messages), desc="generate",
                             unit="req", disable=not show))

    def _request(self, payload: dict) -> Generation:
        import requests

        url = f"{self.base_url}/chat/completions"
        attempts = self.retries + 1
        last = ""
        for attempt in range(attempts):
            delay = self.backoff * (2 ** attempt)
            try:
                resp = self._session().post(url, json=payload, headers=self._headers(),
                                            timeout=self.timeout)
            except requests.Timeout:
                last = f"timed out after {self.timeout:g} s"
            except requests.ConnectionError as exc:
                last = f"connection error: {type(exc).__name__}"
                detail = str(exc).split("\n")[0][:200]
                if detail:
                    last += f" ({detail})"
            except requests.RequestException as exc:
                return Generation.failed(self._scrub(f"request failed: {type(exc).__name__}: {exc}"))
            else:
                status = resp.status_code
                if status == 429 or status >= 500:
                    last = f"HTTP {status}: {_server_message(resp)}"
                    after = _retry_after(resp.headers.get("Retry-After"))
                    if after is not None:
                        delay = min(after, self.max_retry_after)
                elif status >= 400:
                    return Generation.failed(self._scrub(f"HTTP {status}: {_server_message(resp)}"))
                else:
                    return self._parse(resp)
            last = self._scrub(last)
            if attempt + 1 < attempts:
                log.warning("%s: %s; retry %d/%d in %.2g s", _public_url(url), last,
                            attempt + 1, self.retries, delay)
                time.sleep(delay * (1 + 0.1 * random.random()))
        return Generation.failed(f"failed after {attempts} attempts: {last}")

    def _parse(self, resp) -> Generation:
        try:
            body = resp.json()
        except ValueError:
            snippet = " ".join((resp.text or "").split())[:200]
            return Generation.failed(self._scrub(f"invalid JSON in the response: {snippet!r}"))
        if not isinstance(body, dict):
            return Generation.failed(f"unexpected response: {type(body).__name__}, not an object")
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            err = body.get("error")
            why = f": {err.get('message') if isinstance(err, dict) else err}" if err else ""
            return Generation.failed(self._scrub(f"response has no choices{why}"))
        choice = choices[0]
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content = message.get("content", choice.get("text"))
        if not isinstance(content, str):
            return Generation.failed("response has no message content")
        usage_ = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        reason = "length" if choice.get("finish_reason") == "length" else "stop"

        def count(key):
            value = usage_.get(key)
            return int(value) if isinstance(value, (int, float)) else None

        return Generation(text=content, finish_reason=reason, prompt_tokens=count("prompt_tokens"),
                          completion_tokens=count("completion_tokens"))


# ----------------------------------------------------------------------------- cache


def _cache_request(llm_name: str, prompt: Prompt, max_new_tokens: int, temperature: float,
                   system: str | None, stop, seed: int, options: dict) -> dict:
    temperature = float(temperature)
    request = {
        "llm": llm_name,
        "prompt": prompt if isinstance(prompt, str) else [dict(m) for m in prompt],
        "max_new_tokens": int(max_new_tokens),
        "temperature": temperature,
        "system": system,
        "stop": _stop_list(stop),
        "seed": int(seed) if temperature > 0 else None,
    }
    for key, value in sorted(options.items()):
        if value is not None and value is not False:
            request[key] = value
    return request


def cache_key(request: dict) -> str:
    """sha256 of a request's canonical JSON."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class GenerationCache:
    """Generations on disk, in one SQLite file (WAL), keyed by the sha256 of the request.

    ``path`` is a ``.sqlite`` file or a folder (default: ``cache_dir("generations")``); the file is
    ``generations.sqlite`` in a folder. Safe for use from several threads, and from several
    processes with one writer at a time (SQLite locking with a busy timeout).
    """

    FILENAME = "generations.sqlite"

    def __init__(self, path: str | os.PathLike | None = None):
        path = Path(path) if path is not None else cache_dir("generations")
        if path.suffix not in (".sqlite", ".sqlite3", ".db"):
            path.mkdir(parents=True, exist_ok=True)
            path = path / self.FILENAME
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        with contextlib.suppress(sqlite3.DatabaseError):  # WAL is not possible on every filesystem
            self._conn.execute("PRAGMA journal_mode=WAL")
        with self._lock, self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS generations ("
                " key TEXT PRIMARY KEY, llm TEXT NOT NULL, request TEXT NOT NULL, text TEXT NOT NULL,"
                " finish_reason TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,"
                " truncated INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)"
            )

    def __repr__(self) -> str:
        return f"GenerationCache({str(self.path)!r})"

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def get_many(self, keys: Sequence[str]) -> dict[str, Generation]:
        found: dict[str, Generation] = {}
        keys = list(dict.fromkeys(keys))
        with self._lock:
            for k in range(0, len(keys), 500):
                chunk = keys[k:k + 500]
                rows = self._conn.execute(
                    "SELECT key, text, finish_reason, prompt_tokens, completion_tokens, truncated "
                    f"FROM generations WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for key, text, reason, pt, ct, truncated in rows:
                    found[key] = Generation(text=text, finish_reason=reason, prompt_tokens=pt,
                                            completion_tokens=ct, cached=True, truncated=bool(truncated))
        return found

    def get(self, key: str) -> Generation | None:
        return self.get_many([key]).get(key)

    def put_many(self, items: Iterable[tuple[str, dict, Generation]]) -> int:
        """Store ``(key, request, generation)`` items; error items are skipped. Returns how many were stored."""
        rows = [
            (key, request["llm"], json.dumps(request, sort_keys=True, ensure_ascii=False, default=str),
             gen.text, gen.finish_reason, gen.prompt_tokens, gen.completion_tokens,
             int(gen.truncated), time.time())
            for key, request, gen in items if gen.ok
        ]
        if rows:
            with self._lock, self._conn:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def clear(self, llm_name: str | None = None) -> int:
        """Delete all entries (or those of one LLM name); returns how many."""
        with self._lock, self._conn:
            if llm_name is None:
                cur = self._conn.execute("DELETE FROM generations")
            else:
                cur = self._conn.execute("DELETE FROM generations WHERE llm = ?", (llm_name,))
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class CachedLLM(LLM):
    """An LLM whose answers are looked up in a :class:`GenerationCache` first.

    Hits come back with ``cached=True``; misses (deduplicated) go to the wrapped LLM in one call
    and successful answers are stored. Errors are never stored, so they are retried on the next
    run. Other attributes (``loglikelihood``, ``tokenizer``...) are those of the wrapped LLM.
    """

    #: generate() options that do not change the answer (left out of the key).
    NEUTRAL_OPTIONS = frozenset({"progress", "batch_size"})

    def __init__(self, llm: LLM, cache: GenerationCache | str | os.PathLike | None = None):
        self.llm = llm
        self.cache = cache if isinstance(cache, GenerationCache) else GenerationCache(cache)
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.llm.name

    def __getattr__(self, attr):
        if attr in ("llm", "cache"):  # not yet set (e.g. while unpickling)
            raise AttributeError(attr)
        return getattr(self.llm, attr)

    def __repr__(self) -> str:
        return f"CachedLLM({self.llm!r}, {self.cache!r})"

    def generate(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        system: str | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int = 0,
        **options: Any,
    ) -> list[Generation]:
        prompts = _check_prompts(prompts)
        if not prompts:
            return []
        key_options = {k: v for k, v in options.items() if k not in self.NEUTRAL_OPTIONS}
        # truncation changes the answer: key on the effective setting (the LLM's default if not given)
        truncate = key_options.pop("truncate", None)
        if truncate is None:
            truncate = getattr(self.llm, "truncate", None)
        if truncate:
            key_options["truncate"] = True
        name = self.llm.name
        requests_ = [_cache_request(name, p, max_new_tokens, temperature, system, stop, seed, key_options)
                     for p in prompts]
        keys = [cache_key(r) for r in requests_]
        found = self.cache.get_many(keys)
        missing: dict[str, int] = {}  # key -> index of its first prompt
        for i, key in enumerate(keys):
            if key not in found and key not in missing:
                missing[key] = i
        self.hits += sum(k in found for k in keys)
        self.misses += len(missing)
        fresh: dict[str, Generation] = {}
        if missing:
            order = list(missing.values())
            outs = self.llm.generate([prompts[i] for i in order], max_new_tokens=max_new_tokens,
                                     temperature=temperature, system=system, stop=stop, seed=seed,
                                     **options)
            if len(outs) != len(order):
                raise RuntimeError(f"{name} returned {len(outs)} generations for {len(order)} prompts")
            fresh = {keys[i]: gen for i, gen in zip(order, outs)}
            self.cache.put_many((keys[i], requests_[i], fresh[keys[i]]) for i in order)
        results = []
        for key in keys:
            if key in found:
                results.append(dataclasses.replace(found[key]))
            else:
                results.append(dataclasses.replace(fresh[key]))
        return results


# ----------------------------------------------------------------------------- resolution


def get_llm(spec: str | LLM | None = None, *, cache: bool | GenerationCache | str | os.PathLike = False,
            **kwargs) -> LLM:
    """An LLM from a short spec, so that chapter code does not care where the model runs.

    - ``None``: an :class:`OpenAIChat` endpoint if ``$ECGKIT_LLM_BASE_URL`` is set, else the
      :class:`LocalLLM` (``$ECGKIT_LLM`` or SmolLM2-135M-Instruct).
    - ``"local"`` / ``"local:<folder, .gguf or hub id>"``: a :class:`LocalLLM`.
    - ``"openai"`` / ``"openai:<model>"``: an :class:`OpenAIChat` (the endpoint from
      ``$ECGKIT_LLM_BASE_URL`` unless ``base_url=`` is given).
    - an :class:`LLM`: returned as is.

    ``kwargs`` go to the constructor. ``cache=True`` (or a :class:`GenerationCache` / a path)
    wraps the LLM in a :class:`CachedLLM`.
    """
    if isinstance(spec, LLM):
        llm = spec
    elif spec is None or not str(spec).strip():
        if (os.environ.get(ENV_BASE_URL) or "").strip() or kwargs.get("base_url"):
            llm = OpenAIChat(**kwargs)
        else:
            llm = LocalLLM(**kwargs)
    else:
        kind, _, arg = str(spec).strip().partition(":")
        kind = kind.lower()
        arg = arg.strip() or None
        if kind == "local":
            llm = LocalLLM(name=arg, **kwargs)
        elif kind == "openai":
            llm = OpenAIChat(model=arg, **kwargs)
        else:
            raise ValueError(
                f"unknown LLM spec {spec!r}: use 'local', 'local:<folder or hub id>', 'openai' "
                "or 'openai:<model>'"
            )
    if cache is False or cache is None:
        return llm
    if isinstance(llm, CachedLLM):
        return llm
    return CachedLLM(llm, None if cache is True else cache)
