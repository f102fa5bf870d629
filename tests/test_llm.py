"""Tests for ecgkit.llm: the local LLM, the OpenAI-compatible client (against a fake server on
127.0.0.1), the generation cache and get_llm.

The local model is resolved once, with the user's default cache (where the converted SmolLM2 lives),
before any test redirects ``ECGKIT_CACHE``; its folder is then passed explicitly.
"""
from __future__ import annotations

import logging
import math
import socket
import threading
import time

import pytest

from ecgkit.llm import (
    CachedLLM,
    Generation,
    GenerationCache,
    LLM,
    LocalLLM,
    OpenAIChat,
    get_llm,
    to_messages,
    usage,
)
from ecgkit.llm.openai import _retry_after
from ecgkit.standin import StandIn

# ----------------------------------------------------------------------------- local model


@pytest.fixture(scope="module")
def local(llm_dir):
    # one thread: several torch threads crawl on a CPU shared with other busy processes
    return LocalLLM(str(llm_dir), batch_size=4, max_input_tokens=64, device="cpu", threads=1)


QUESTIONS = [
    "What is the normal range of the PR interval?",
    "Answer yes or no: is the sky blue?",
    "Describe atrial fibrillation on an ECG in detail, including P waves and the ventricular rhythm.",
    "Name a fruit.",
]
LONG = "Please repeat the following words. " + "sinus rhythm " * 60


def test_local_name_is_stable_and_lazy(llm_dir, local):
    other = LocalLLM(str(llm_dir), batch_size=2)
    assert other.name == local.name
    assert other.name.startswith("local:SmolLM2-135M-Instruct")
    assert other._model is None  # nothing loaded until used
    assert LocalLLM(str(llm_dir), dtype="bfloat16").name != local.name


def test_local_batched_deterministic_and_errors(local):
    prompts = QUESTIONS + [LONG]
    first = local.generate(prompts, max_new_tokens=8)
    again = local.generate(prompts, max_new_tokens=8)
    assert [g.text for g in first] == [g.text for g in again]  # greedy: deterministic
    # one-by-one gives the same answers as the (left-padded, length-sorted) batch
    single = [local.generate([p], max_new_tokens=8)[0] for p in QUESTIONS]
    assert [g.text for g in single] == [g.text for g in first[:4]]
    assert [g.completion_tokens for g in single] == [g.completion_tokens for g in first[:4]]
    for g in first[:4]:
        assert g.ok and g.error is None and g.text.strip()
        assert g.finish_reason in ("stop", "length")
        assert 0 < g.completion_tokens <= 8 and g.prompt_tokens > 10
        assert not g.cached and not g.truncated
    assert first[1].finish_reason == "stop"  # a short answer, ended by the end-of-turn token
    assert first[1].completion_tokens < 8
    assert first[2].finish_reason == "length" and first[2].completion_tokens == 8
    # the over-long prompt is an error item, the rest of the batch went through
    err = first[4]
    assert err.finish_reason == "error" and err.text == ""
    assert err.error.startswith(f"prompt has {err.prompt_tokens} tokens, limit 64")
    assert err.prompt_tokens > 64
    assert usage(first)["errors"] == 1


def test_local_max_new_tokens_and_truncation(local):
    out = local.generate([QUESTIONS[2], LONG], max_new_tokens=3, truncate=True)
    assert out[0].finish_reason == "length" and out[0].completion_tokens == 3
    assert out[1].ok and out[1].truncated and out[1].prompt_tokens == 64
    assert out[1].completion_tokens == 3


def test_local_context_limit(local):
    # max_new_tokens eats the whole context: every prompt is reported, nothing crashes
    out = local.generate(["Hi"], max_new_tokens=local.context_length + 1)
    assert out[0].finish_reason == "error" and "limit" in out[0].error


def test_local_stop_strings_and_messages(local):
    plain = local.generate([QUESTIONS[0]], max_new_tokens=8)[0]
    assert " PR" in plain.text
    stopped = local.generate([QUESTIONS[0]], max_new_tokens=8, stop=[" PR"])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == plain.text[: plain.text.index(" PR")]
    # a message list and a string prompt with system= are the same chat
    system = "You are a cardiologist."
    a = local.generate(["Hi"], max_new_tokens=4, system=system)[0]
    b = local.generate([[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]],
                       max_new_tokens=4)[0]
    assert a.text == b.text
    with pytest.raises(ValueError):
        local.generate([[{"role": "system", "content": "x"}, {"role": "user", "content": "Hi"}]],
                       system="y")
    with pytest.raises(TypeError):
        local.generate("not a list")


def test_local_sampling_is_seeded(local):
    a = local.generate(QUESTIONS[:1], max_new_tokens=6, temperature=1.0, seed=3)
    b = local.generate(QUESTIONS[:1], max_new_tokens=6, temperature=1.0, seed=3)
    assert a[0].text == b[0].text and a[0].ok


def test_local_loglikelihood(local):
    # verified on SmolLM2-135M: chat "Paris" -2.7 vs "Banana" -13.0; raw " Paris" -0.26 vs " banana" -17.2
    q = "What is the capital of France? Answer with one word."
    paris, banana = local.loglikelihood([q, q], ["Paris", "Banana"])
    assert paris > banana + 3
    raw = local.loglikelihood(["The capital of France is"] * 2, [" Paris", " banana"], chat=False)
    assert raw[0] > raw[1] + 5 and raw[0] < 0
    # batched (padded) equals one by one; empty continuation scores 0
    prompts = ["a", q, "x y z", q]
    conts = ["b c d e f", "Paris", "Paris is nice", ""]
    batched = local.loglikelihood(prompts, conts, batch_size=4)
    single = [local.loglikelihood([p], [c])[0] for p, c in zip(prompts, conts)]
    assert batched[3] == 0.0
    assert all(math.isclose(x, y, abs_tol=1e-3) for x, y in zip(batched, single))
    with pytest.raises(ValueError):
        local.loglikelihood([q], ["a", "b"])


# ----------------------------------------------------------------------------- fake endpoint

KEY = "sk-test-SECRET-0123456789"


class FakeServer(StandIn):
    """A chat/completions server whose behaviour is chosen by the prompt's prefix:

    ``fail<N>:`` 503 for the first N requests of that prompt, then an answer; ``err500:`` always 500;
    ``ratelimit:`` 429 with ``Retry-After: 0.3`` once; ``sleep:`` sleeps 1 s; ``bad400:`` 400 with an
    OpenAI error body; ``malformed:`` invalid JSON; ``nochoices:`` no choices; ``slow<ms>:`` answers
    after a delay; anything else is answered with ``ECHO <prompt>``.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        super().__init__(model="fake-70b", responder=self.respond)

    def respond(self, path, headers, body):
        prompt = body["messages"][-1]["content"]
        with self.lock:
            self.requests.append({"headers": headers, "body": body, "path": path})
            n = self.hits[prompt] = self.hits.get(prompt, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._answer(prompt, n, body)
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def _answer(prompt, n, body):
        head = prompt.split(":", 1)[0]
        if head.startswith("fail") and n <= int(head[4:]):
            return 503, {"error": {"message": "overloaded"}}
        if head == "err500":
            return 500, b"internal error"
        if head == "ratelimit" and n == 1:
            return 429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}
        if head == "sleep":
            time.sleep(1.0)
        if head == "bad400":
            return 400, {"error": {"message": "This model's maximum context length is 8192 tokens", "type": "invalid_request_error"}}
        if head == "malformed":
            return 200, b'{"choices": [{"message": '
        if head == "nochoices":
            return 200, {"id": "x", "choices": []}
        if head.startswith("slow"):
            time.sleep(int(head[4:]) / 1000)
        text = f"ECHO {prompt}"
        words = text.split()
        reason = "stop"
        if len(words) > body["max_tokens"]:
            text, reason = " ".join(words[: body["max_tokens"]]), "length"
        return 200, {
            "id": "cmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": reason}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                      "total_tokens": 0},
        }


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def client(server, **kwargs):
    opts = dict(model="fake-70b", base_url=server.url, api_key=KEY, timeout=5, retries=3,
                backoff=0.01, max_workers=4)
    opts.update(kwargs)
    return OpenAIChat(**opts)


def test_openai_answers_in_order_concurrently(server):
    llm = client(server)
    prompts = [f"slow{(7 * i) % 5 * 20}: question {i}" for i in range(12)]
    out = llm.generate(prompts, max_new_tokens=50, system="be brief", stop=["\n\n"])
    assert [g.text for g in out] == [f"ECHO {p}" for p in prompts]
    assert all(g.ok and g.finish_reason == "stop" and g.completion_tokens == 4 for g in out)
    assert server.max_in_flight >= 2  # requests really ran concurrently
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "fake-70b" and body["max_tokens"] == 50 and body["temperature"] == 0.0
    assert body["stop"] == ["\n\n"] and "seed" not in body
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    # max_tokens reached -> "length"; chat message lists pass through
    short = llm.generate([[{"role": "user", "content": "one two three four five"}]], max_new_tokens=2)
    assert short[0].finish_reason == "length" and short[0].text == "ECHO one"


def test_openai_retries_then_succeeds(server):
    llm = client(server)
    out = llm.generate(["fail2: hello", "fine"], max_new_tokens=20)
    assert out[0].ok and out[0].text == "ECHO fail2: hello"
    assert server.hits["fail2: hello"] == 3 and server.hits["fine"] == 1
    # more failures than retries: an error item that says what happened, the rest is fine
    out = client(server, retries=1).generate(["err500: x", "fine again"])
    assert out[0].finish_reason == "error" and "failed after 2 attempts" in out[0].error
    assert "HTTP 500" in out[0].error and out[1].ok
    assert server.hits["err500: x"] == 2


def test_openai_honours_retry_after(server):
    llm = client(server, backoff=0.001)
    start = time.perf_counter()
    out = llm.generate(["ratelimit: please"])
    assert out[0].ok and server.hits["ratelimit: please"] == 2
    assert time.perf_counter() - start >= 0.3


def test_openai_timeout_becomes_error_item(server):
    llm = client(server, timeout=0.2, retries=1)
    start = time.perf_counter()
    out = llm.generate(["sleep: zzz", "quick"])
    assert out[0].finish_reason == "error" and "timed out" in out[0].error
    assert "after 2 attempts" in out[0].error and server.hits["sleep: zzz"] == 2
    assert out[1].ok
    assert time.perf_counter() - start < 3


def test_openai_400_fails_at_once(server):
    out = client(server).generate(["bad400: too long"])
    assert out[0].finish_reason == "error"
    assert out[0].error.startswith("HTTP 400") and "maximum context length" in out[0].error
    assert server.hits["bad400: too long"] == 1


def test_openai_malformed_responses(server):
    out = client(server).generate(["malformed: a", "nochoices: b", "ok"])
    assert out[0].finish_reason == "error" and "invalid JSON" in out[0].error
    assert out[1].finish_reason == "error" and "no choices" in out[1].error
    assert out[2].ok
    assert server.hits["malformed: a"] == 1  # not retried


def test_openai_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAIChat(model="m", base_url=f"http://127.0.0.1:{port}/v1", retries=1, backoff=0.01, timeout=1)
    out = llm.generate(["hello"])
    assert out[0].finish_reason == "error" and "connection error" in out[0].error


def test_openai_key_never_shown(server, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ECGKIT_LLM_API_KEY", KEY)
    llm = OpenAIChat(model="fake-70b", base_url=server.url, retries=1, backoff=0.01, timeout=0.2)
    out = llm.generate(["fail5: x", "bad400: y", "sleep: z", "malformed: w", "ok"])
    assert [g.ok for g in out] == [False, False, False, False, True]
    assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    shown = [repr(llm), str(llm), llm.name, caplog.text] + [g.error or "" for g in out] + [repr(g) for g in out]
    assert "retry" in caplog.text  # retries were logged...
    assert not any(KEY in s for s in shown)  # ...without the key
    assert "api_key=***" in repr(llm)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(llm)
    # credentials in the URL do not leak into the name either
    creds = OpenAIChat(model="m", base_url="http://user:hunter2@127.0.0.1:9/v1")
    assert "hunter2" not in creds.name and "hunter2" not in repr(creds)


def test_openai_no_key_no_header(server, monkeypatch):
    monkeypatch.delenv("ECGKIT_LLM_API_KEY", raising=False)
    OpenAIChat(model="m", base_url=server.url).generate(["hello"])
    assert "Authorization" not in server.requests[-1]["headers"]


def test_openai_model_discovery_and_sampling(server, monkeypatch):
    monkeypatch.delenv("ECGKIT_LLM_MODEL", raising=False)
    llm = OpenAIChat(base_url=server.url + "/")
    assert llm.name == f"openai:{server.url}/fake-70b"
    llm.generate(["hello"], temperature=0.7, seed=5)
    body = server.requests[-1]["body"]
    assert body["model"] == "fake-70b" and body["seed"] == 5 and body["temperature"] == 0.7


def test_openai_needs_an_endpoint(monkeypatch):
    monkeypatch.delenv("ECGKIT_LLM_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="ECGKIT_LLM_BASE_URL"):
        OpenAIChat(model="m")


# ----------------------------------------------------------------------------- cache


class CountingLLM(LLM):
    """Echoes prompts, records what it was asked; prompts containing FAIL come back as errors."""

    def __init__(self, name="fake:echo"):
        self.name = name
        self.calls: list[list] = []

    def generate(self, prompts, max_new_tokens=128, temperature=0.0, system=None, stop=None,
                 seed=0, **options):
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            text = p if isinstance(p, str) else p[-1]["content"]
            if "FAIL" in text:
                out.append(Generation.failed("backend unavailable"))
            else:
                out.append(Generation(text=f"{text}|{max_new_tokens}|{temperature}|{system}",
                                      prompt_tokens=len(text), completion_tokens=3))
        return out

    @property
    def sent(self):
        return sum(len(c) for c in self.calls)


def test_cache_hits_and_misses(tmp_cache):
    fake = CountingLLM()
    llm = CachedLLM(fake, GenerationCache())
    assert str(llm.cache.path).startswith(str(tmp_cache))
    first = llm.generate(["a", "b", "a"], max_new_tokens=5)
    assert fake.sent == 2  # duplicates sent once
    assert [g.text for g in first] == ["a|5|0.0|None", "b|5|0.0|None", "a|5|0.0|None"]
    assert not any(g.cached for g in first)
    second = llm.generate(["a", "b", "a"], max_new_tokens=5)
    assert fake.sent == 2 and all(g.cached for g in second)
    assert [g.text for g in second] == [g.text for g in first]
    assert second[0].prompt_tokens == 1 and second[0].completion_tokens == 3
    # mixed: only the miss goes to the backend, order is kept
    mixed = llm.generate(["c", "a"], max_new_tokens=5)
    assert fake.calls[-1] == ["c"] and [g.cached for g in mixed] == [False, True]
    # any parameter that changes the answer is a miss
    for kwargs in ({"max_new_tokens": 6}, {"max_new_tokens": 5, "temperature": 0.5},
                   {"max_new_tokens": 5, "system": "sys"}, {"max_new_tokens": 5, "stop": ["."]},
                   {"max_new_tokens": 5, "temperature": 0.5, "seed": 1}):
        before = fake.sent
        assert not llm.generate(["a"], **kwargs)[0].cached
        assert fake.sent == before + 1
    # the seed does not matter for greedy decoding; progress does not matter at all
    assert llm.generate(["a"], max_new_tokens=5, seed=123, progress=False)[0].cached
    # a message list is a different prompt from its string; cached as well
    msgs = [{"role": "user", "content": "a"}]
    assert not llm.generate([msgs], max_new_tokens=5)[0].cached
    assert llm.generate([msgs], max_new_tokens=5)[0].cached
    # another backend name never shares entries
    other = CachedLLM(CountingLLM("fake:other"), llm.cache)
    assert not other.generate(["a"], max_new_tokens=5)[0].cached


def test_cache_errors_not_stored_and_persisted(tmp_path):
    folder = tmp_path / "gens"
    fake = CountingLLM()
    llm = CachedLLM(fake, GenerationCache(folder))
    out = llm.generate(["ok", "FAIL now"])
    assert out[0].ok and out[1].finish_reason == "error"
    again = llm.generate(["ok", "FAIL now"])
    assert again[0].cached and not again[1].cached and fake.calls[-1] == ["FAIL now"]
    assert len(llm.cache) == 1
    llm.cache.close()
    # a new cache object on the same folder (a rerun of the book) finds the answers
    fake2 = CountingLLM()
    rerun = CachedLLM(fake2, GenerationCache(folder)).generate(["ok"])
    assert rerun[0].cached and rerun[0].text == "ok|128|0.0|None" and fake2.sent == 0
    assert (folder / GenerationCache.FILENAME).is_file()


def test_cache_threads(tmp_path):
    llm = CachedLLM(CountingLLM(), GenerationCache(tmp_path / "g.sqlite"))
    errors = []

    def work(k):
        try:
            for i in range(20):
                llm.generate([f"p{i % 7}", f"t{k}-{i}"])
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(llm.cache) == 7 + 80


def test_cached_local_llm(local, tmp_cache):
    llm = CachedLLM(local)
    assert llm.name == local.name and llm.context_length == local.context_length
    a = llm.generate(["Hi", LONG], max_new_tokens=4)
    b = llm.generate(["Hi", LONG], max_new_tokens=4)
    assert a[0].text == b[0].text and b[0].cached and not b[1].cached and b[1].finish_reason == "error"
    # truncation changes the answer, so it is part of the key
    c = llm.generate([LONG], max_new_tokens=4, truncate=True)
    assert c[0].ok and c[0].truncated and not c[0].cached
    assert llm.generate([LONG], max_new_tokens=4, truncate=True)[0].cached
    assert llm.generate([LONG], max_new_tokens=4)[0].finish_reason == "error"


# ----------------------------------------------------------------------------- get_llm


def test_get_llm_resolution(monkeypatch, llm_dir, tmp_cache):
    for var in ("ECGKIT_LLM_BASE_URL", "ECGKIT_LLM_MODEL", "ECGKIT_LLM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ECGKIT_LLM", str(llm_dir))  # the converted model, not a new conversion
    default = get_llm()
    assert isinstance(default, LocalLLM) and default.path == llm_dir
    assert isinstance(get_llm("local"), LocalLLM)
    explicit = get_llm(f"local:{llm_dir}", batch_size=3)
    assert explicit.batch_size == 3 and explicit.name == default.name
    with pytest.raises(ValueError):
        get_llm("openai:some-model")  # no endpoint configured: nothing leaves the machine

    monkeypatch.setenv("ECGKIT_LLM_BASE_URL", "http://127.0.0.1:8000/v1/")
    monkeypatch.setenv("ECGKIT_LLM_MODEL", "meta-llama/Llama-3.1-70B-Instruct")
    monkeypatch.setenv("ECGKIT_LLM_API_KEY", KEY)
    remote = get_llm()
    assert isinstance(remote, OpenAIChat)
    assert remote.name == "openai:http://127.0.0.1:8000/v1/meta-llama/Llama-3.1-70B-Instruct"
    assert remote._api_key == KEY and KEY not in repr(remote)
    assert get_llm("openai:llama3.1:70b").model == "llama3.1:70b"
    assert get_llm("openai").model == "meta-llama/Llama-3.1-70B-Instruct"
    assert isinstance(get_llm("local"), LocalLLM)  # explicit local wins over the endpoint

    cached = get_llm(cache=True)
    assert isinstance(cached, CachedLLM) and isinstance(cached.llm, OpenAIChat)
    assert str(cached.cache.path).startswith(str(tmp_cache))
    assert get_llm(cached) is cached
    with pytest.raises(ValueError, match="unknown LLM spec"):
        get_llm("gpt4all")


def test_to_messages_and_usage():
    assert to_messages("hi", system="s") == [{"role": "system", "content": "s"},
                                             {"role": "user", "content": "hi"}]
    msgs = [{"role": "user", "content": "x"}]
    assert to_messages(msgs) == msgs and to_messages(msgs) is not msgs
    u = usage([Generation("a", completion_tokens=2, prompt_tokens=3),
               Generation.failed("boom"), Generation("b", cached=True, finish_reason="length")])
    assert u["n"] == 3 and u["errors"] == 1 and u["cached"] == 1 and u["length"] == 1
    assert u["completion_tokens"] == 2
    assert _retry_after("2") == 2.0 and _retry_after(None) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
