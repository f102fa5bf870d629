"""The HTTP backend: :class:`OpenAIChat`, an OpenAI-compatible chat endpoint (vLLM, llama.cpp
server, a hosted API) with time-outs, retries and first-token option scoring."""
from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence
from urllib.parse import urlsplit, urlunsplit

from .base import (LLM, Generation, OptionScores, Prompt, ScoreItem, _check_items, _check_prompts,
                   _stop_list, to_messages)

log = logging.getLogger(__name__)

ENV_BASE_URL = "ECGKIT_LLM_BASE_URL"
ENV_MODEL = "ECGKIT_LLM_MODEL"
ENV_API_KEY = "ECGKIT_LLM_API_KEY"

#: ``progress=None`` shows a progress bar from this many requests on.
PROGRESS_MIN_REQUESTS = 32


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
        from ..config import settings

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

