"""A local stand-in for an OpenAI-compatible LLM server (vLLM's answers, deterministic content).

``make smoke`` starts one on 127.0.0.1 and points ``ECGKIT_LLM_BASE_URL`` at it, so that the
chapters that use an endpoint (ALFRED, CQA, ECG-LLM) go through :class:`ecgkit.llm.OpenAIChat`
end to end: HTTP, JSON parsing, ``logprobs``/``top_logprobs`` scoring, time-outs and retries.

The answers come from a deterministic stub, not a model: the smoke run checks the code path, not
answer quality, and a model behind the server would take the two CPU cores the smoke run needs
for the full-profile training branches. Answers are a function of the request only (SHA-256 of
the messages), so two runs agree.

Served like vLLM: ``GET /v1/models``; ``POST /v1/chat/completions`` with ``max_tokens``,
``stop``, ``logprobs``/``top_logprobs`` (the chosen token and the ``top_logprobs`` most likely
tokens, each with ``bytes``), ``continue_final_message``; ``usage`` token counts (words).
Faults on purpose, to exercise the client's retries: every ``fail_every``-th completion request
is answered 503 with ``Retry-After: 0``, and every ``stall_every``-th one waits ``stall_seconds``
before answering (longer than the client's time-out). :attr:`StandIn.stats` counts them.
A ``responder`` replaces the stub's answers (the tests' scripted servers: errors, malformed bodies).

``python -m ecgkit.standin --port 8000`` serves until interrupted.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["StandIn", "CANDIDATES", "reply_text", "top_tokens"]

#: tokens the stub ranks for ``top_logprobs``: the yes/no variants ALFRED scores, the letters of
#: multiple-choice answers and the judge's digits
CANDIDATES = (" yes", "yes", " Yes", "Yes", " no", "no", " No", "No", "A", "B", "C", "D", "E",
              "1", "2", "3", "4", "5")
WORDS = ("the", "ECG", "shows", "sinus", "rhythm", "with", "normal", "axis", "PR", "interval",
         "QRS", "duration", "ST", "segment", "T", "wave", "changes", "in", "leads", "V1", "V2",
         "II", "aVF", "no", "acute", "findings", "rate", "is", "regular", "and")


def _digest(payload: dict) -> bytes:
    return hashlib.sha256(json.dumps(payload.get("messages"), sort_keys=True,
                                     default=str).encode()).digest()


def reply_text(payload: dict) -> tuple[str, str]:
    """(text, finish_reason) of the deterministic answer to a chat request."""
    digest = _digest(payload)
    limit = max(1, int(payload.get("max_tokens") or 16))
    words = [WORDS[b % len(WORDS)] for b in (digest * 8)[:limit]]
    text = " ".join(words).capitalize() + "."
    for stop in payload.get("stop") or []:
        if stop and stop in text:
            return text[:text.index(stop)], "stop"
    return text, ("length" if limit <= len(words) else "stop")


def top_tokens(payload: dict, k: int) -> list[dict]:
    """The ``k`` most likely candidate tokens with normalised log-probabilities (vLLM's entries)."""
    digest = _digest(payload)
    raw = [digest[i % len(digest)] / 32.0 for i in range(len(CANDIDATES))]
    top = max(raw)
    norm = top + math.log(sum(math.exp(r - top) for r in raw))
    ranked = sorted(zip(CANDIDATES, raw), key=lambda t: -t[1])[:max(1, k)]
    return [{"token": t, "logprob": r - norm, "bytes": list(t.encode())} for t, r in ranked]


class StandIn:
    """The server in a daemon thread: ``with StandIn() as s: os.environ[...] = s.url``.

    ``responder(path, headers, payload)``, when given, answers each chat-completions request (after
    the planned faults) instead of :meth:`answer`: ``(status, body)`` or ``(status, body, headers)``,
    the body a JSON object or raw bytes.
    """

    def __init__(self, port: int = 0, model: str = "ecgkit-standin", fail_every: int = 0,
                 stall_every: int = 0, stall_seconds: float = 0.0, responder=None):
        self.model, self.fail_every, self.stall_every = model, int(fail_every), int(stall_every)
        self.stall_seconds = float(stall_seconds)
        self.responder = responder
        self.stats = {"requests": 0, "completions": 0, "logprob_requests": 0, "continued": 0,
                      "failed_503": 0, "stalled": 0}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", int(port)), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def __enter__(self) -> "StandIn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _count(self, key: str) -> int:
        with self._lock:
            self.stats[key] += 1
            return self.stats[key]

    def answer(self, payload: dict) -> dict:
        """The JSON body vLLM would send for a chat-completions request."""
        text, reason = reply_text(payload)
        completion = 1 + text.count(" ")
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": reason}
        if payload.get("continue_final_message"):
            self._count("continued")
        if payload.get("logprobs"):
            self._count("logprob_requests")
            top = top_tokens(payload, int(payload.get("top_logprobs") or 1))
            first = dict(top[0])
            choice["message"]["content"] = first["token"]
            choice["logprobs"] = {"content": [{**first, "top_logprobs": top}]}
            completion = 1
        prompt = sum(len(str(m.get("content", "")).split()) for m in payload.get("messages") or [])
        return {"id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": [choice],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):   # quiet
                pass

            def _send(self, status: int, body: dict | bytes, headers: dict | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up (time-out)
                    pass

            def do_GET(self):
                standin._count("requests")
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": standin.model, "object": "model",
                                                                 "owned_by": "ecgkit"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                standin._count("requests")
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    return self._send(400, {"error": {"message": "invalid JSON"}})
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if not isinstance(payload.get("messages"), list) or not payload["messages"]:
                    return self._send(400, {"error": {"message": "messages must be a non-empty list"}})
                n = standin._count("completions")
                if standin.fail_every and n % standin.fail_every == 0:
                    standin._count("failed_503")
                    return self._send(503, {"error": {"message": "stand-in: overloaded on purpose"}},
                                      {"Retry-After": "0"})
                if standin.stall_every and n % standin.stall_every == 0:
                    standin._count("stalled")
                    time.sleep(standin.stall_seconds)
                if standin.responder is not None:
                    return self._send(*standin.responder(self.path, dict(self.headers), payload))
                self._send(200, standin.answer(payload))

        return Handler


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ecgkit.standin", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model", default="ecgkit-standin")
    args = ap.parse_args(argv)
    with StandIn(args.port, args.model) as server:
        print(f"stand-in serving {server.url} (model {args.model}); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
