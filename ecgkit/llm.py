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
- **One option scorer** (multiple choice, the LLM judge, ALFRED label probabilities):
  :meth:`LLM.option_logprobs` takes items ``(prompt, answer prefix, options)`` and returns one
  :class:`OptionScores` per item (log-probability of each option as the continuation of the
  prefilled answer); :meth:`LLM.score_options` for one item. :class:`LocalLLM` runs each prompt
  once for all its items (shared prefill: the key/value cache of the prompt, then the short
  continuations), exact for every token of an option; :class:`OpenAIChat` asks for
  ``logprobs``/``top_logprobs`` of the first answer token (vLLM ``continue_final_message`` for
  the prefix, or a request in the user message), flagging options scored only by their first
  token or missing from the top list (an upper bound). :attr:`LLM.option_scoring` says which.
- :class:`GenerationCache` (SQLite under ``cache_dir("generations")``) and :class:`CachedLLM`: a rerun
  returns stored answers (``cached=True``) and only sends the misses to the backend. Errors are not
  stored. Option scores are cached per item in a second table (``scores``), keyed by
  :func:`cache_key` of the model, prompt, prefix, options and system.
- Loops: ``repetition_penalty`` / ``no_repeat_ngram_size`` (local) and ``frequency_penalty`` /
  ``presence_penalty`` (endpoint) as backend defaults or per call; :meth:`LLM.settings` reports
  them for a results record, :class:`CachedLLM` keys on them; :attr:`Generation.cut` and
  :func:`count_cut` count answers cut at the token limit.
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
    "ANTI_LOOP",
    "anti_loop_options",
    "keep_prefix",
    "Generation",
    "LLM",
    "LocalLLM",
    "OpenAIChat",
    "GenerationCache",
    "CachedLLM",
    "get_llm",
    "usage",
    "count_cut",
    "to_messages",
    "OptionScores",
    "cache_key",
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

#: :meth:`LocalLLM.option_logprobs` with one prompt in a batch runs its continuations one by one on
#: the prompt's cache (True) rather than as one batch on a copy of the cache per continuation.
SEQUENTIAL_CONTINUATIONS = True
#: :meth:`LocalLLM.option_logprobs` scores prompts one at a time in token order and keeps the
#: key/value cache of the previous prompt: a prompt that starts like the previous one (ALFRED's
#: configurations share the features part, the five questions the whole prompt) runs only the
#: tokens after the shared start.
REUSE_PREFIX = True

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
    prompt was shortened from the middle to fit (``truncate=True``); :attr:`cut` when the *answer*
    was cut at ``max_new_tokens`` (``finish_reason == "length"``, see :func:`count_cut`).
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

    @property
    def cut(self) -> bool:
        """The answer was cut at the token limit (``finish_reason == "length"``), e.g. a loop."""
        return self.finish_reason == "length"

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


#: generate() options against looping answers, per backend kind (recorded with the results)
ANTI_LOOP = {"local": {"repetition_penalty": 1.15, "no_repeat_ngram_size": 4},
             "endpoint": {"frequency_penalty": 0.5}}


def anti_loop_options(llm) -> dict:
    """The :data:`ANTI_LOOP` options that ``llm``'s backend understands (``{}`` for others)."""
    inner = getattr(llm, "llm", llm)          # a CachedLLM wraps its backend
    if isinstance(inner, LocalLLM):
        return dict(ANTI_LOOP["local"])
    if isinstance(inner, OpenAIChat):
        return dict(ANTI_LOOP["endpoint"])
    return {}


@contextlib.contextmanager
def keep_prefix(llm):
    """:meth:`LocalLLM.keep_prefix` of ``llm`` (or of the local model a :class:`CachedLLM` wraps);
    nothing for other backends."""
    inner = getattr(llm, "llm", llm)
    if isinstance(inner, LocalLLM):
        with inner.keep_prefix():
            yield llm
    else:
        yield llm


def count_cut(generations: Iterable[Generation]) -> int:
    """How many answers were cut at the token limit (:attr:`Generation.cut`)."""
    return sum(g.cut for g in generations)


@dataclass
class OptionScores:
    """The log-probabilities of the options of one scoring item (prompt, answer prefix, options).

    ``logprobs[option]``: the log-probability that the answer (after the prefix) continues with
    ``option``. ``status[option]``: ``"full"`` (every token of the option scored: a local model,
    or an endpoint whose top list had the option as one token), ``"first_token"`` (an endpoint:
    only the option's first token was found, an upper bound), ``"bound"`` (an endpoint: the
    option was not in the top list; the lowest returned log-probability, an upper bound) or
    ``"nan"`` (not scored: over the context or an error). ``tokens[option]``: the number of
    tokens scored (None when unknown). ``error``: why the item failed (then ``logprobs`` are NaN).
    """

    logprobs: dict
    status: dict
    tokens: dict
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def probabilities(self) -> dict:
        """``exp(logprob)`` per option (NaN stays NaN)."""
        import math

        return {o: math.exp(v) if v == v else float("nan") for o, v in self.logprobs.items()}

    def best(self) -> str | None:
        """The most likely option (None when nothing was scored)."""
        valid = {o: v for o, v in self.logprobs.items() if v == v}
        return max(valid, key=valid.get) if valid else None

    def to_dict(self) -> dict:
        return {"logprobs": self.logprobs, "status": self.status, "tokens": self.tokens, "error": self.error}

    @classmethod
    def from_dict(cls, data: dict, cached: bool = False) -> "OptionScores":
        return cls(dict(data["logprobs"]), dict(data["status"]), dict(data["tokens"]), data.get("error"), cached)

    @classmethod
    def failed(cls, options: Sequence[str], message: str) -> "OptionScores":
        options = list(dict.fromkeys(options))
        return cls({o: float("nan") for o in options}, {o: "nan" for o in options},
                   {o: None for o in options}, message)


ScoreItem = tuple  # (prompt, answer prefix or None, options)


def _check_items(items) -> list[tuple]:
    """Scoring items as ``(prompt, prefix, options)`` tuples (a 2-tuple has no prefix)."""
    if isinstance(items, (str, dict)):
        raise TypeError("items must be a list of (prompt, prefix, options) tuples")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise TypeError(f"item {i} must be (prompt, prefix, options) or (prompt, options)")
        prompt, prefix, options = (item[0], None, item[1]) if len(item) == 2 else item
        _check_prompts([prompt])
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"item {i}: the answer prefix must be a string or None")
        if isinstance(options, str) or not all(isinstance(o, str) for o in options):
            raise TypeError(f"item {i}: options must be a list of strings")
        out.append((prompt, prefix or None, list(options)))
    return out


def _with_prefix(prompt: Prompt, prefix: str | None):
    """The prompt with the answer prefix as a final assistant message (to be continued)."""
    if not prefix:
        return prompt
    return to_messages(prompt) + [{"role": "assistant", "content": prefix}]


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

    # -- settings

    def generation_defaults(self) -> dict:
        """Backend defaults that change the answers (e.g. a repetition penalty); None = unset.

        :class:`CachedLLM` keys its entries on them, and :meth:`settings` reports them."""
        return {}

    def settings(self) -> dict:
        """What identifies this backend and its generation defaults, for a results record."""
        return {"llm": self.name, **{k: v for k, v in self.generation_defaults().items() if v is not None}}

    # -- option scoring: one scorer for multiple choice, judges and label probabilities

    @property
    def option_scoring(self) -> str | None:
        """``"full"`` (every token of an option is scored), ``"first_token"`` (an endpoint's top
        log-probabilities: the first answer token only) or None (this backend cannot score)."""
        return "full" if callable(getattr(self, "loglikelihood", None)) else None

    def option_logprobs(self, items: Sequence[ScoreItem], system: str | None = None,
                        progress: bool | None = None, batch_size: int | None = None) -> list[OptionScores]:
        """The log-probability of each option of each item ``(prompt, answer prefix, options)``.

        The answer is made to start with the prefix (None: nothing), and each option is scored
        as its continuation. The base class scores through ``self.loglikelihood`` (one call for
        all options); :class:`LocalLLM` runs each prompt once for all its items and options;
        :class:`OpenAIChat` reads the first answer token's top log-probabilities.
        """
        items = _check_items(items)
        if not callable(getattr(self, "loglikelihood", None)):
            raise NotImplementedError(f"{type(self).__name__} cannot score options")
        flat = [(k, o) for k, (_, _, options) in enumerate(items) for o in dict.fromkeys(options)]
        scores = self.loglikelihood([_with_prefix(items[k][0], items[k][1]) for k, _ in flat],
                                    [o for _, o in flat], system=system, batch_size=batch_size) if flat else []
        counter = getattr(self, "count_tokens", None)
        counts = counter([o for _, o in flat]) if callable(counter) and flat else [None] * len(flat)
        out = [OptionScores({}, {}, {}) for _ in items]
        for (k, o), s, n in zip(flat, scores, counts):
            out[k].logprobs[o] = float(s)
            out[k].status[o] = "full" if s == s else "nan"
            out[k].tokens[o] = n
        return out

    def score_options(self, prompt: Prompt, prefix: str | None, options: Sequence[str],
                      system: str | None = None) -> dict:
        """``{option: log-probability}`` for one item (see :meth:`option_logprobs`)."""
        return self.option_logprobs([(prompt, prefix, list(options))], system=system)[0].logprobs

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
    from .config import settings

    return settings().llm_threads


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


def _common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """The length of the longest common prefix of token lists."""
    if not rows:
        return 0
    n = min(len(r) for r in rows)
    first = rows[0]
    for j in range(n):
        t = first[j]
        if any(r[j] != t for r in rows[1:]):
            return j
    return n


def _cache_argument(module) -> str:
    """The name of a model's key/value cache argument (``cache`` in recent transformers)."""
    import inspect

    with contextlib.suppress(TypeError, ValueError):
        if "cache" in inspect.signature(module.forward).parameters:
            return "cache"
    return "past_key_values"


def _worth_reusing(groups, share: float = 0.3) -> bool:
    """Whether scoring the contexts one by one in token order, each reusing the previous one's
    cache, saves enough to give up batching: the tokens neighbours share (after sorting) are at
    least ``share`` of all context tokens (ALFRED's configurations of one record: yes; unrelated
    short questions sharing only the chat header: no, they batch better)."""
    contexts = sorted(g[0] for g in groups)
    total = sum(len(c) for c in contexts)
    shared = sum(_common_prefix_length([a, b]) for a, b in zip(contexts, contexts[1:]))
    return len(contexts) > 1 and total > 0 and shared >= share * total


def _continuation_rows(members):
    """The distinct sequences to run after a shared context, and how to score every option.

    ``members``: ``[(item, tail ids, {option: option ids})]`` where ``tail`` continues the shared
    context (the rest of the answer prefix). The token at index ``t`` of ``tail + option`` is
    predicted at position ``t - 1`` of a row that starts with ``(tail + option)[:t]`` (or, for
    ``t == 0``, at the context's last position: row None). Rows that are prefixes of others are
    merged. Returns ``(rows, needs)``, ``needs`` = ``[(item, option, [(row, position, target)])]``.
    """
    inputs = []
    for k, tail, opt_ids in members:
        for option, ids in opt_ids.items():
            if ids:
                inputs.append((tail + ids)[:-1])
    rows: list[list[int]] = []
    for seq in sorted({tuple(q) for q in inputs if q}, key=len, reverse=True):
        if not any(list(seq) == r[:len(seq)] for r in rows):
            rows.append(list(seq))
    needs = []
    for k, tail, opt_ids in members:
        for option, ids in opt_ids.items():
            if not ids:
                continue
            seq = tail + ids
            steps = []
            for t in range(len(tail), len(seq)):
                if t == 0:
                    steps.append((None, 0, seq[0]))
                else:
                    row = next(r for r, q in enumerate(rows) if len(q) >= t and q[:t] == seq[:t])
                    steps.append((row, t - 1, seq[t]))
            needs.append((k, option, steps))
    return rows, needs


class LocalLLM(LLM):
    """A transformers causal LM run in-process (default: SmolLM2-135M-Instruct, see :mod:`ecgkit.models`).

    ``name`` is anything :func:`ecgkit.models.llm_path` accepts (None: ``$ECGKIT_LLM`` or the
    default). The model is loaded on first use, so a fully cached run never loads it.
    ``max_input_tokens`` caps prompt length below the context; ``truncate`` is the default for
    :meth:`generate`'s ``truncate``. ``threads`` sets torch's CPU threads while this model runs
    (None: ``$ECGKIT_LLM_THREADS``, else torch's default, one per core); 1 is much faster on a CPU
    shared with other busy processes, where several threads wait on each other.
    ``repetition_penalty`` (e.g. 1.15) and ``no_repeat_ngram_size`` (e.g. 4) are defaults of
    :meth:`generate` against answers that loop (None: off); :meth:`settings` reports them.
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
        repetition_penalty: float | None = None,
        no_repeat_ngram_size: int | None = None,
    ):
        from .models import llm_path

        self.path = Path(llm_path(name))
        self.batch_size = max(1, int(batch_size))
        self.max_input_tokens = max_input_tokens
        self.device = device
        self.dtype = dtype
        self.truncate = truncate
        self.threads = threads if threads is not None else _env_threads()
        self.repetition_penalty = repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.name = f"local:{_folder_label(self.path)}@{_folder_identity(self.path, dtype)}"
        self._model = None
        self._tokenizer = None
        self._lock = threading.RLock()

    @classmethod
    def from_model(cls, model, tokenizer, name: str, batch_size: int = 8,
                   max_input_tokens: int | None = None, truncate: bool = False,
                   threads: int | None = None, repetition_penalty: float | None = None,
                   no_repeat_ngram_size: int | None = None) -> "LocalLLM":
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
        self.repetition_penalty = repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.name = name if name.startswith("local:") else f"local:{name}"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self._model, self._tokenizer = model, tokenizer
        self._lock = threading.RLock()
        return self

    def generation_defaults(self) -> dict:
        return {"repetition_penalty": self.repetition_penalty,
                "no_repeat_ngram_size": self.no_repeat_ngram_size}

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
        repetition_penalty: float | None = None,
        no_repeat_ngram_size: int | None = None,
    ) -> list[Generation]:
        """Batched generation; greedy when ``temperature == 0``, else sampling seeded by ``seed``.

        Prompts are sorted by length (less padding) and answers returned in the original order.
        A prompt longer than the limit is an error item ("prompt has N tokens, limit M"), or, with
        ``truncate=True``, shortened from the middle (``Generation.truncated``). Sampled outputs
        depend on how prompts are batched; greedy ones do not (up to float rounding).
        ``choices``: constrained decoding; every answer starts with one of these texts (the model
        picks among them token by token) and continues freely after it.
        ``repetition_penalty`` / ``no_repeat_ngram_size``: against loops (None: the backend's
        default, see the constructor); an answer that still runs to ``max_new_tokens`` has
        ``finish_reason == "length"`` (:attr:`Generation.cut`).
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
        repetition_penalty = self.repetition_penalty if repetition_penalty is None else repetition_penalty
        no_repeat_ngram_size = self.no_repeat_ngram_size if no_repeat_ngram_size is None else no_repeat_ngram_size
        extra = {}
        if repetition_penalty is not None and float(repetition_penalty) != 1.0:
            extra["repetition_penalty"] = float(repetition_penalty)
        if no_repeat_ngram_size:
            extra["no_repeat_ngram_size"] = int(no_repeat_ngram_size)
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
                                                                      temperature, stop, choices, extra)):
                    results[i] = gen
        return results  # type: ignore[return-value]

    def _generate_batch(self, batch, max_new_tokens, temperature, stop, choices=None,
                        extra=None) -> list[Generation]:
        try:
            return self._run_batch(batch, max_new_tokens, temperature, stop, choices, extra)
        except Exception as exc:
            if len(batch) > 1:  # find the culprit: one by one
                log.warning("batch of %d failed (%s: %s); retrying one by one",
                            len(batch), type(exc).__name__, exc)
                self._free_memory()
                return [self._generate_batch([item], max_new_tokens, temperature, stop, choices, extra)[0]
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

    def _run_batch(self, batch, max_new_tokens, temperature, stop, choices=None, extra=None) -> list[Generation]:
        import torch

        model, tok = self._load()
        input_ids, mask = self._pad([ids for _, ids, _ in batch])
        kwargs: dict[str, Any] = {"max_new_tokens": int(max_new_tokens),
                                  "pad_token_id": tok.pad_token_id, **(extra or {})}
        if choices:
            kwargs["prefix_allowed_tokens_fn"] = self._choice_constraint(choices, input_ids.shape[1])
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tok)
        kept = getattr(self, "_kept", None) if getattr(self, "_keeping", False) else None
        if kept is not None and input_ids.shape[0] == 1:
            # start from the cache of the prompt scored last (keep_prefix): prefill only the rest
            ctx, cache = kept
            shared = min(_common_prefix_length([list(ctx), input_ids[0].tolist()]), input_ids.shape[1] - 1,
                         cache.get_seq_length())
            if shared > 0:
                extra = cache.get_seq_length() - shared
                if extra > 0:
                    cache.crop(-extra)
                kwargs[_cache_argument(model)] = cache      # "cache" in recent transformers
                self._kept = None           # generation extends the cache: not reusable afterwards
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

    @contextlib.contextmanager
    def keep_prefix(self):
        """Within the block, the key/value cache of the last prompt scored by :meth:`option_logprobs`
        survives the call: the next scoring call, or a one-prompt :meth:`generate` that starts
        like it, runs only the tokens after the shared start (e.g. ``ecgkit diagnose``: the label
        probabilities, then the answer, on one prefill of the prompt)."""
        self._keeping, self._kept = True, None
        try:
            yield self
        finally:
            self._keeping, self._kept = False, None

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

    def option_logprobs(self, items: Sequence[ScoreItem], system: str | None = None,
                        progress: bool | None = None, batch_size: int | None = None) -> list[OptionScores]:
        """Summed log-probabilities of each item's options, each prompt run once (shared prefill).

        Items with the same prompt (and ``system``) share one forward pass over their common
        tokens (the chat-formatted prompt, up to where their answer prefixes differ); the distinct
        continuations (prefix rest + option tokens but the last) then run on the key/value cache
        of that pass: one after the other (the cache cut back after each) when the batch holds
        one prompt, else as one short batch on the cache repeated per continuation. An option is scored from the output
        at the position before each of its tokens, so single-token options after the same prefix
        (" yes", " no"...) need no extra pass. The numbers equal :meth:`loglikelihood` of
        prompt + prefix (as a prefilled assistant message) + option (to float rounding). An item
        over the context scores NaN (``status "nan"``); an empty option scores 0.
        """
        import torch
        from tqdm import tqdm

        items = _check_items(items)
        model, tok = self._load()
        limit = self.context_length
        results: list[OptionScores | None] = [None] * len(items)
        groups: dict[str, list] = {}
        for k, (prompt, prefix, options) in enumerate(items):
            options = list(dict.fromkeys(options))
            try:
                ids = self._encode(_with_prefix(prompt, prefix), system)
            except Exception as exc:  # e.g. a chat template refusing the roles
                results[k] = OptionScores.failed(options, f"could not format the prompt: {type(exc).__name__}: {exc}")
                continue
            opt_ids = {o: (tok(o, add_special_tokens=False)["input_ids"] if o else []) for o in options}
            if len(ids) + max((len(v) for v in opt_ids.values()), default=0) > limit:
                results[k] = OptionScores.failed(options, f"prompt and option have over {limit} tokens (the context)")
                continue
            key = json.dumps([prompt if isinstance(prompt, str) else [dict(m) for m in prompt], system],
                             sort_keys=True, ensure_ascii=False, default=str)
            groups.setdefault(key, []).append((k, ids, opt_ids))
        todo = []
        for members in groups.values():
            common = _common_prefix_length([ids for _, ids, _ in members])
            if common == 0:   # nothing shared (no chat header): one group per item
                todo.extend((ids, [(k, [], opt_ids)]) for k, ids, opt_ids in members)
                continue
            todo.append((members[0][1][:common], [(k, ids[common:], opt_ids) for k, ids, opt_ids in members]))
        todo.sort(key=lambda g: -len(g[0]))
        size = max(1, int(batch_size or self.batch_size))
        budget = size * 1024     # repeated key/value cache, in tokens x rows, per batch
        if REUSE_PREFIX and SEQUENTIAL_CONTINUATIONS and _worth_reusing(todo):
            todo.sort(key=lambda g: g[0])      # token order: neighbours share the longest start
            size = 1
        batches, current, used = [], [], 0
        for group in todo:
            cost = len(group[0]) * max(1, len(_continuation_rows(group[1])[0]))
            if current and (len(current) >= size or used + cost > budget):
                batches.append(current)
                current, used = [], 0
            current.append(group)
            used += cost
        if current:
            batches.append(current)
        show = progress if progress is not None else len(batches) >= PROGRESS_MIN_BATCHES
        with self._lock, _flush_denormals(model), _torch_threads(self.threads), torch.inference_mode():
            # (context ids, cache) of the previous single-prompt batch; inside keep_prefix(), the
            # last one of the previous call
            self._prefix = getattr(self, "_kept", None)
            try:
                for batch in tqdm(batches, desc="score", unit="batch", disable=not show):
                    for k, scores in self._score_groups(batch):
                        results[k] = scores
            finally:
                if getattr(self, "_keeping", False):
                    self._kept = self._prefix
                self._prefix = None
        return results  # type: ignore[return-value]

    def _first_pass(self, model, batch, ids, mask, positions, use_cache: bool):
        """The forward pass over the contexts; for a single context, only the tokens after the
        start it shares with the previous one (whose cache is cut back to that start)."""
        prev = getattr(self, "_prefix", None)
        ctx = batch[0][0] if len(batch) == 1 else None
        shared = 0
        if prev is not None and ctx is not None:
            shared = min(_common_prefix_length([prev[0], ctx]), len(ctx) - 1)   # ≥ 1 token to run
        if shared > 0:
            cache = prev[1]
            extra = cache.get_seq_length() - shared
            if extra > 0:
                cache.crop(-extra)      # transformers 5 crops by a negative count
            kwargs = {"input_ids": ids[:, shared:], "attention_mask": mask,
                      "position_ids": positions[:, shared:], _cache_argument(model): cache, "use_cache": True}
        else:
            kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                      "use_cache": use_cache or ctx is not None}
        try:
            out = model(**kwargs, logits_to_keep=1)
        except TypeError:  # a model without logits_to_keep
            out = model(**kwargs)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        keep = (REUSE_PREFIX and ctx is not None and cache is not None
                and callable(getattr(cache, "crop", None)))
        self._prefix = (list(ctx), cache) if keep else None
        return out

    def _score_groups(self, batch):
        """One batch of groups ``(context ids, [(item, tail ids, {option: ids})])``: the contexts
        left-padded and run once, then the distinct continuations on their repeated cache."""
        import torch

        model, tok = self._load()
        device = next(model.parameters()).device
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        length = max(len(ctx) for ctx, _ in batch)
        ids = torch.tensor([[pad] * (length - len(ctx)) + ctx for ctx, _ in batch], device=device)
        mask = torch.tensor([[0] * (length - len(ctx)) + [1] * len(ctx) for ctx, _ in batch], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        plan = [_continuation_rows(members) for _, members in batch]
        need_rows = any(rows for rows, _ in plan)
        first = self._first_pass(model, batch, ids, mask, positions, need_rows)
        first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)
        # (batch row, row index in that group) of every continuation row
        flat_rows = [(b, r) for b, (rows, _) in enumerate(plan) for r in range(len(rows))]
        row_of = {(b, r): n for n, (b, r) in enumerate(flat_rows)}
        picks: dict[tuple[int, int], int] = {}   # (flat row, position) -> index into picked logits
        wanted = []   # per group: (item, option, [(source, index, target)])
        for b, (rows, needs) in enumerate(plan):
            for k, option, steps in needs:
                refs = []
                for row, pos, target in steps:
                    if row is None:
                        refs.append(("first", b, target))
                    else:
                        key = (row_of[(b, row)], pos)
                        picks.setdefault(key, len(picks))
                        refs.append(("pick", picks[key], target))
                wanted.append((k, option, refs))
        picked = None
        if flat_rows:
            cache = getattr(first, "cache", None)   # "past_key_values" before transformers 5.2x
            if cache is None:
                cache = first.past_key_values
            order = sorted(picks, key=picks.get)
            decoder, head = model.get_decoder(), model.get_output_embeddings()
            split = decoder is not None and head is not None and not getattr(model.config, "final_logit_softcapping", None)
            argument = _cache_argument(decoder if split else model)
            seqs = [plan[b][0][r] for b, r in flat_rows]
            if (SEQUENTIAL_CONTINUATIONS and len(batch) == 1 and len(seqs) > 1
                    and callable(getattr(cache, "crop", None))):
                # one prompt (no padding): the rows one after the other on the same cache, cut back
                # after each; measured faster on a CPU than copying a long cache once per row
                start = len(batch[0][0])
                by_row: dict[int, Any] = {}
                for n, q in enumerate(seqs):
                    kwargs = {"position_ids": torch.arange(start, start + len(q), device=device)[None],
                              argument: cache}
                    q_ids = torch.tensor([q], device=device)
                    if split:
                        by_row[n] = decoder(input_ids=q_ids, **kwargs).last_hidden_state[0]
                    else:
                        by_row[n] = model(input_ids=q_ids, **kwargs).logits[0]
                    cache.crop(-len(q))
                chosen = torch.stack([by_row[r][j] for r, j in order])
                logits = head(chosen) if split else chosen
            else:
                self._prefix = None      # this cache is extended by the rows: not reusable
                cache.batch_select_indices(torch.tensor([b for b, _ in flat_rows], device=device))
                width = max(len(q) for q in seqs)
                row_ids = torch.tensor([q + [pad] * (width - len(q)) for q in seqs], device=device)
                row_mask = torch.tensor([[1] * len(q) + [0] * (width - len(q)) for q in seqs], device=device)
                sel = [b for b, _ in flat_rows]
                full_mask = torch.cat([mask[sel], row_mask], dim=1)
                start = mask.sum(-1)[sel]
                row_pos = start[:, None] + torch.arange(width, device=device)[None, :]
                rr = torch.tensor([r for r, _ in order], device=device)
                jj = torch.tensor([j for _, j in order], device=device)
                kwargs = {"attention_mask": full_mask, "position_ids": row_pos, argument: cache}
                if split:
                    hidden = decoder(input_ids=row_ids, **kwargs).last_hidden_state
                    logits = head(hidden[rr, jj])
                else:
                    logits = model(input_ids=row_ids, **kwargs).logits[rr, jj]
            picked = torch.log_softmax(logits.float(), dim=-1)
        out: dict[int, OptionScores] = {}
        for k, option, refs in wanted:
            scores = out.setdefault(k, OptionScores({}, {}, {}))
            total = 0.0
            for source, index, target in refs:
                table = first_lp if source == "first" else picked
                total += float(table[index, target])
            scores.logprobs[option] = total
            scores.status[option] = "full"
            scores.tokens[option] = len(refs)
        for _, members in batch:   # items whose options are all empty
            for k, _, opt_ids in members:
                scores = out.setdefault(k, OptionScores({}, {}, {}))
                for option in opt_ids:
                    if option not in scores.logprobs:
                        scores.logprobs[option], scores.status[option], scores.tokens[option] = 0.0, "full", 0
        return list(out.items())

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
    Each request gets ``timeout`` seconds (None: ``$ECGKIT_LLM_TIMEOUT``, else 60); connection errors, time-outs, 429 and 5xx are retried
    ``retries`` times with exponential backoff (``backoff * 2**attempt`` s, or the server's
    ``Retry-After``, at most ``max_retry_after`` s); other 4xx fail at once with the server's
    message. ``max_workers`` requests run concurrently.

    ``frequency_penalty`` / ``presence_penalty``: defaults of :meth:`generate` against answers
    that loop (None: not sent). Option scoring (:meth:`option_logprobs`) asks for
    ``top_logprobs`` log-probabilities of the first answer token; ``prefill`` says how an answer
    prefix is given: ``"continue"`` as a final assistant message continued by the server (vLLM:
    ``continue_final_message``), ``"user"`` as a request in the user message (any server), and
    ``"auto"`` tries the former and falls back to the latter when the server refuses it (HTTP 400).
    """

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int = 4,
        backoff: float = 1.0,
        max_workers: int = 4,
        max_retry_after: float = 120.0,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        top_logprobs: int = 20,
        prefill: str = "auto",
    ):
        if prefill not in ("auto", "continue", "user"):
            raise ValueError(f"prefill must be 'auto', 'continue' or 'user', not {prefill!r}")
        from .config import settings

        env = settings()
        base_url = base_url or env.llm_base_url or ""
        if not base_url.strip():
            raise ValueError(
                f"no endpoint configured: pass base_url= or set {ENV_BASE_URL} "
                "(e.g. http://localhost:8000/v1 for a vLLM or llama.cpp server)"
            )
        self.base_url = base_url.strip().rstrip("/")
        self._model = model or env.llm_model or None
        key = api_key if api_key is not None else env.llm_api_key
        self._api_key = key or None
        self.timeout = float(timeout if timeout is not None else env.llm_timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_workers = max(1, int(max_workers))
        self.max_retry_after = float(max_retry_after)
        self.frequency_penalty = frequency_penalty
        self.presence_penalty = presence_penalty
        self.top_logprobs = max(1, int(top_logprobs))
        self.prefill = prefill
        self._prefill_mode = None if prefill == "auto" else prefill   # "auto" settles on first use
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

    def generation_defaults(self) -> dict:
        return {"frequency_penalty": self.frequency_penalty, "presence_penalty": self.presence_penalty}

    def settings(self) -> dict:
        return {**super().settings(), "top_logprobs": self.top_logprobs, "prefill": self.prefill}

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
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
    ) -> list[Generation]:
        """Concurrent requests, answers in order. ``truncate`` is ignored: the server has the
        tokenizer, and an over-long prompt comes back as its 400 error (an error item).
        ``frequency_penalty`` / ``presence_penalty``: None = the client's default (not sent if unset)."""
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
        for key, value in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)):
            value = getattr(self, key) if value is None else value
            if value is not None:
                payload[key] = float(value)
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

    def _request(self, payload: dict, parse=None, fail=None):
        """POST with retries; ``parse(resp)`` reads a 2xx answer (default: a :class:`Generation`),
        ``fail(message)`` makes the error result (default: :meth:`Generation.failed`)."""
        import requests

        parse = parse or self._parse
        fail = fail or Generation.failed
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
                return fail(self._scrub(f"request failed: {type(exc).__name__}: {exc}"))
            else:
                status = resp.status_code
                if status == 429 or status >= 500:
                    last = f"HTTP {status}: {_server_message(resp)}"
                    after = _retry_after(resp.headers.get("Retry-After"))
                    if after is not None:
                        delay = min(after, self.max_retry_after)
                elif status >= 400:
                    return fail(self._scrub(f"HTTP {status}: {_server_message(resp)}"))
                else:
                    return parse(resp)
            last = self._scrub(last)
            if attempt + 1 < attempts:
                log.warning("%s: %s; retry %d/%d in %.2g s", _public_url(url), last,
                            attempt + 1, self.retries, delay)
                time.sleep(delay * (1 + 0.1 * random.random()))
        return fail(f"failed after {attempts} attempts: {last}")

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

    # -- option scoring

    @property
    def option_scoring(self) -> str | None:  # type: ignore[override]
        return "first_token"

    def option_logprobs(self, items: Sequence[ScoreItem], system: str | None = None,
                        progress: bool | None = None, batch_size: int | None = None) -> list[OptionScores]:
        """Options scored by the first answer token's ``top_logprobs`` (one request per item,
        ``max_tokens=1``, greedy).

        An option equal to a returned token gets its log-probability (``status "full"``); an
        option that only starts with a returned token gets that token's (``"first_token"``, an
        upper bound); an option missing from the list gets the lowest returned log-probability
        (``"bound"``, an upper bound). Several returned tokens with the same text are summed.
        The answer prefix is given as :attr:`prefill` says. A failed request is an error item.
        """
        from tqdm import tqdm

        items = _check_items(items)
        if not items:
            return []
        show = progress if progress is not None else len(items) >= PROGRESS_MIN_REQUESTS

        def one(item):
            try:
                return self._score_item(*item, system=system)
            except Exception as exc:  # never crash the batch
                return OptionScores.failed(item[2], self._scrub(f"{type(exc).__name__}: {exc}"))

        workers = min(self.max_workers, len(items))
        if workers == 1:
            return [one(i) for i in tqdm(items, desc="score", unit="req", disable=not show)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ecgkit-llm") as pool:
            return list(tqdm(pool.map(one, items), total=len(items), desc="score", unit="req",
                             disable=not show))

    def _score_payload(self, prompt, prefix, options, system, mode) -> dict:
        messages = to_messages(prompt, system)
        payload = {"model": self.model, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                   "top_logprobs": self.top_logprobs}
        if prefix and mode == "continue":
            messages.append({"role": "assistant", "content": prefix})
            payload.update(continue_final_message=True, add_generation_prompt=False)
        elif prefix:
            shown = ", ".join(dict.fromkeys(o.strip() for o in options if o.strip()))
            ask = (f"\n\nYour answer starts with \"{prefix}\". Reply only with the word that comes "
                   f"next ({shown}).")
            last = next(i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user")
            messages[last] = {**messages[last], "content": str(messages[last]["content"]) + ask}
        payload["messages"] = messages
        return payload

    def _score_item(self, prompt, prefix, options, system=None) -> OptionScores:
        mode = self._prefill_mode or "continue"
        result = self._request(self._score_payload(prompt, prefix, options, system, mode),
                               parse=lambda resp: self._parse_logprobs(resp, options),
                               fail=lambda message: OptionScores.failed(options, message))
        if (prefix and self.prefill == "auto" and self._prefill_mode is None and not result.ok
                and (result.error or "").startswith("HTTP 400")):
            log.warning("%s refused to continue an assistant message (%s); asking in the user "
                        "message instead", _public_url(self.base_url), result.error)
            self._prefill_mode = "user"
            return self._score_item(prompt, prefix, options, system)
        if prefix and self.prefill == "auto" and self._prefill_mode is None and result.ok:
            self._prefill_mode = "continue"
        return result

    def _parse_logprobs(self, resp, options: Sequence[str]) -> OptionScores:
        import math

        options = list(dict.fromkeys(options))
        try:
            body = resp.json()
            entry = body["choices"][0]["logprobs"]["content"][0]
        except Exception:
            return OptionScores.failed(options, "response has no logprobs (does the server support logprobs?)")
        found: dict[str, list[float]] = {}
        seen = set()
        for cand in [entry] + list(entry.get("top_logprobs") or []):
            token, value = cand.get("token"), cand.get("logprob")
            if not isinstance(token, str) or not isinstance(value, (int, float)):
                continue
            ident = (token, tuple(cand.get("bytes") or ()), float(value))
            if ident in seen:   # the chosen token is usually also in the top list
                continue
            seen.add(ident)
            found.setdefault(token, []).append(float(value))
        if not found:
            return OptionScores.failed(options, "response has no top_logprobs")
        merged = {t: _logsumexp(v) for t, v in found.items()}
        lowest = min(v for vs in found.values() for v in vs)
        scores = OptionScores({}, {}, {})
        for option in options:
            if option in merged:
                scores.logprobs[option], scores.status[option], scores.tokens[option] = merged[option], "full", 1
                continue
            starts = [t for t in merged if t and option.startswith(t)]
            if option and starts:
                t = max(starts, key=len)
                scores.logprobs[option], scores.status[option], scores.tokens[option] = merged[t], "first_token", 1
            elif not option:
                scores.logprobs[option], scores.status[option], scores.tokens[option] = 0.0, "full", 0
            else:
                scores.logprobs[option], scores.status[option], scores.tokens[option] = lowest, "bound", None
        if not all(math.isfinite(v) or v == -math.inf for v in scores.logprobs.values()):
            return OptionScores.failed(options, "invalid log-probabilities in the response")
        return scores


def _logsumexp(values: Sequence[float]) -> float:
    import math

    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


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
    """The request's key in the one key scheme (:func:`ecgkit.cache.key`, ``llm_generation``)."""
    from .cache import key

    return key("llm_generation", request)


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
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS scores ("
                " key TEXT PRIMARY KEY, llm TEXT NOT NULL, request TEXT NOT NULL, result TEXT NOT NULL,"
                " created REAL NOT NULL)"
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

    def get_scores(self, keys: Sequence[str]) -> dict[str, OptionScores]:
        """Stored option scores (table ``scores``) by key; absent keys are left out."""
        found: dict[str, OptionScores] = {}
        keys = list(dict.fromkeys(keys))
        with self._lock:
            for k in range(0, len(keys), 500):
                chunk = keys[k:k + 500]
                rows = self._conn.execute(
                    f"SELECT key, result FROM scores WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for key, result in rows:
                    data = json.loads(result)
                    data["logprobs"] = {o: (float("nan") if v is None else float(v))
                                        for o, v in data["logprobs"].items()}
                    found[key] = OptionScores.from_dict(data, cached=True)
        return found

    def put_scores(self, items: Iterable[tuple[str, dict, OptionScores]]) -> int:
        """Store ``(key, request, scores)`` items; failed items are skipped. Returns how many."""
        def clean(scores: OptionScores) -> str:
            data = scores.to_dict()
            data["logprobs"] = {o: (None if v != v else v) for o, v in data["logprobs"].items()}
            return json.dumps(data, ensure_ascii=False)

        rows = [(key, request["llm"], json.dumps(request, sort_keys=True, ensure_ascii=False, default=str),
                 clean(scores), time.time()) for key, request, scores in items if scores.ok]
        if rows:
            with self._lock, self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    def n_scores(self) -> int:
        """How many option-score items are stored."""
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def clear(self, llm_name: str | None = None) -> int:
        """Delete all entries, generations and scores (or those of one LLM name); returns how many."""
        n = 0
        with self._lock, self._conn:
            for table in ("generations", "scores"):
                if llm_name is None:
                    cur = self._conn.execute(f"DELETE FROM {table}")
                else:
                    cur = self._conn.execute(f"DELETE FROM {table} WHERE llm = ?", (llm_name,))
                n += cur.rowcount
        return n

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

    def generation_defaults(self) -> dict:
        return self.llm.generation_defaults()

    def settings(self) -> dict:
        return self.llm.settings()

    @property
    def option_scoring(self) -> str | None:  # type: ignore[override]
        return self.llm.option_scoring

    def _score_request(self, prompt, prefix, options, system) -> dict:
        settings = self.llm.settings()
        request = {"llm": self.llm.name, "kind": "option_logprobs",
                   "prompt": prompt if isinstance(prompt, str) else [dict(m) for m in prompt],
                   "prefix": prefix, "options": list(dict.fromkeys(options)), "system": system}
        for key in ("top_logprobs", "prefill"):   # how an endpoint scores
            if key in settings:
                request[key] = settings[key]
        return request

    def option_logprobs(self, items: Sequence[ScoreItem], system: str | None = None,
                        progress: bool | None = None, batch_size: int | None = None) -> list[OptionScores]:
        """:meth:`LLM.option_logprobs` with a per-item cache (table ``scores``): the key is the
        model, prompt, answer prefix, options and system, so only new items are scored."""
        items = _check_items(items)
        requests_ = [self._score_request(p, prefix, opts, system) for p, prefix, opts in items]
        keys = [cache_key(r) for r in requests_]
        found = self.cache.get_scores(keys)
        missing: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in found and key not in missing:
                missing[key] = i
        self.hits += sum(k in found for k in keys)
        self.misses += len(missing)
        fresh: dict[str, OptionScores] = {}
        if missing:
            order = list(missing.values())
            outs = self.llm.option_logprobs([items[i] for i in order], system=system, progress=progress,
                                            batch_size=batch_size)
            if len(outs) != len(order):
                raise RuntimeError(f"{self.name} returned {len(outs)} scores for {len(order)} items")
            fresh = {keys[i]: out for i, out in zip(order, outs)}
            self.cache.put_scores((keys[i], requests_[i], fresh[keys[i]]) for i in order)
        return [dataclasses.replace(found[k]) if k in found else dataclasses.replace(fresh[k]) for k in keys]

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
        # the backend's defaults that change answers (repetition penalties...), unless overridden
        for key, value in self.llm.generation_defaults().items():
            if key_options.get(key) is None and value is not None:
                key_options[key] = value
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
        from .config import settings

        if settings().endpoint_configured or kwargs.get("base_url"):
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
