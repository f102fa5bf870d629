"""The in-process backend: :class:`LocalLLM`, a transformers causal LM (generation, log-likelihoods
and option scoring on one prefill of each prompt)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

from .base import (LLM, Generation, OptionScores, Prompt, ScoreItem, _check_items, _check_prompts,
                   _cut_at_stop, _stop_list, _with_prefix, to_messages)

log = logging.getLogger(__name__)

#: :meth:`LocalLLM.option_logprobs` with one prompt in a batch runs its continuations one by one on
#: the prompt's cache (True) rather than as one batch on a copy of the cache per continuation.
SEQUENTIAL_CONTINUATIONS = True
#: :meth:`LocalLLM.option_logprobs` scores prompts one at a time in token order and keeps the
#: key/value cache of the previous prompt: a prompt that starts like the previous one (ALFRED's
#: configurations share the features part, the five questions the whole prompt) runs only the
#: tokens after the shared start.
REUSE_PREFIX = True
#: ``progress=None`` shows a progress bar from this many batches on.
PROGRESS_MIN_BATCHES = 4


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
    from ..config import settings

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
        from ..models import llm_path

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
                from ..models import load_llm

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
