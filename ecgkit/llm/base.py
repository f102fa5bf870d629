"""What every backend shares: the results, the prompt helpers and the :class:`LLM` base class.

:class:`Generation` (one answer) and :class:`OptionScores` (one scored item), :func:`usage` and
:func:`count_cut`, the anti-loop options (:data:`ANTI_LOOP`, :func:`anti_loop_options`),
:func:`keep_prefix`, :func:`to_messages` and the checks of prompts and scoring items.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, Union

Message = dict
Prompt = Union[str, Sequence[Message]]


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
    from .local import LocalLLM
    from .openai import OpenAIChat

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
    from .local import LocalLLM

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

