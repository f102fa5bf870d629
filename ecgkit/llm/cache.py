"""The generation cache: :class:`GenerationCache` (SQLite) and :class:`CachedLLM`, a backend that
looks answers and option scores up there first."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config import cache_dir
from .base import LLM, Generation, OptionScores, Prompt, ScoreItem, _check_items, _check_prompts, _stop_list


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
    from ..cache import key

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
        return self._through_cache(
            requests_, self.cache.get_scores, self.cache.put_scores, "scores",
            lambda order: self.llm.option_logprobs([items[i] for i in order], system=system,
                                                   progress=progress, batch_size=batch_size))

    def _through_cache(self, requests_: list[dict], get, put, what: str, compute) -> list:
        """One result per request: the cached ones from ``get``, the others computed once per
        distinct key by ``compute(positions)`` and stored with ``put``; copies, in order."""
        keys = [cache_key(r) for r in requests_]
        found = get(keys)
        missing: dict[str, int] = {}  # key -> position of its first request
        for i, key in enumerate(keys):
            if key not in found and key not in missing:
                missing[key] = i
        self.hits += sum(k in found for k in keys)
        self.misses += len(missing)
        fresh = {}
        if missing:
            order = list(missing.values())
            outs = compute(order)
            if len(outs) != len(order):
                raise RuntimeError(f"{self.name} returned {len(outs)} {what} for {len(order)} requests")
            fresh = {keys[i]: out for i, out in zip(order, outs)}
            put((keys[i], requests_[i], fresh[keys[i]]) for i in order)
        return [dataclasses.replace(found[k] if k in found else fresh[k]) for k in keys]

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
        return self._through_cache(
            requests_, self.cache.get_many, self.cache.put_many, "generations",
            lambda order: self.llm.generate([prompts[i] for i in order], max_new_tokens=max_new_tokens,
                                            temperature=temperature, system=system, stop=stop, seed=seed,
                                            **options))

