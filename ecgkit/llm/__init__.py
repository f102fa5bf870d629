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
- Modules: :mod:`.base` (results, prompts, the base class), :mod:`.local`, :mod:`.openai`,
  :mod:`.cache`; this package re-exports their public names and defines :func:`get_llm`.
- :func:`get_llm`: ``None`` / ``"local"`` / ``"local:<folder or hub id>"`` / ``"openai"`` /
  ``"openai:<model>"``.

``ECGKIT_LLM_THREADS`` sets the CPU threads of a local model (1 is best on a machine shared with
other busy processes).

No data leaves the machine unless an endpoint was configured (``ECGKIT_LLM_BASE_URL`` or an explicit
``base_url``).
"""
from __future__ import annotations

import os

from .base import (ANTI_LOOP, LLM, Generation, OptionScores, anti_loop_options, count_cut, keep_prefix,
                   to_messages, usage)
from .cache import CachedLLM, GenerationCache, cache_key
from .local import LocalLLM
from .openai import ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, OpenAIChat

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
        from ..config import settings

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

