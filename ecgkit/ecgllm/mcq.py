"""Multiple-choice accuracy two ways, with bootstrap intervals and McNemar tests.

* **Option log-likelihood**: each option is scored as the continuation of the open question
  (``Question: ...\\nAnswer:``, with retrieved chunks for RAG), by the mean log-probability of
  its tokens (:meth:`ecgkit.llm.LLM.option_logprobs`, the one scorer of :mod:`ecgkit.llm`); the
  best-scoring option is the answer.
  Needs a local model (an endpoint gives no log-probabilities: NaN with a note).
* **Generated letter**: the question with lettered options is asked and the first standalone
  letter A-D of the reply is the answer; a reply without one is counted as wrong and reported
  (``unparsed``).

Scores are cached per question (the ``scores`` table of :class:`ecgkit.llm.GenerationCache`),
keyed by the model, the prompt and the options, so a rerun, or a run with one more question,
scores only what is new.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .prompts import SYSTEM, mcq_prompt, open_prompt, parse_letter

__all__ = ["option_loglikelihoods", "shared_prefix_loglikelihoods", "score_by_loglikelihood", "score_by_letter", "accuracy_ci", "mcnemar",
           "has_loglikelihood"]


def has_loglikelihood(llm) -> bool:
    """Whether a backend scores whole options (a local model, possibly behind a cache; an
    endpoint reads only the first answer token, see :attr:`ecgkit.llm.LLM.option_scoring`)."""
    return getattr(llm, "option_scoring", None) == "full"


def _scorer(llm, cache: bool):
    """The backend that scores: behind the per-item score cache when ``cache``, else unwrapped."""
    from ..llm import CachedLLM, get_llm

    if cache:
        return get_llm(llm, cache=True)
    return llm.llm if isinstance(llm, CachedLLM) else llm


def shared_prefix_loglikelihoods(local, prompts: Sequence[str], options: Sequence[Sequence[str]],
                                 system: str | None = SYSTEM, batch_size: int | None = None) -> list[list[float]]:
    """Summed log-likelihoods of each prompt's options, each prompt run once for all its options.

    A thin wrapper of :meth:`ecgkit.llm.LocalLLM.option_logprobs` (no answer prefix, no cache):
    the same numbers as :meth:`ecgkit.llm.LocalLLM.loglikelihood`. An item over the context
    length scores NaN; an empty option scores 0.
    """
    scored = local.option_logprobs([(p, None, list(opts)) for p, opts in zip(prompts, options)],
                                   system=system, batch_size=batch_size)
    return [[s.logprobs[o] if o else 0.0 for o in opts] for s, opts in zip(scored, options)]


def option_loglikelihoods(llm, prompts: Sequence[str], options: Sequence[Sequence[str]], system: str = SYSTEM,
                          normalize: bool = True, cache: bool = True, batch_size: int | None = None
                          ) -> list[list[float]]:
    """Per prompt, the log-likelihood of each of its options (mean per token when ``normalize``).

    Scored by the backend's :meth:`~ecgkit.llm.LLM.option_logprobs` (a local model runs each
    prompt once for all its options), behind the per-item score cache of
    :class:`~ecgkit.llm.CachedLLM` when ``cache`` (a new question scores only that question).
    """
    stripped = [[o.strip() for o in opts] for opts in options]
    scored = _scorer(llm, cache).option_logprobs([(p, None, opts) for p, opts in zip(prompts, stripped)],
                                                 system=system, batch_size=batch_size) if prompts else []
    out = []
    for s, opts in zip(scored, stripped):
        row = []
        for o in opts:
            value = s.logprobs.get(o, float("nan"))
            if normalize:
                n = s.tokens.get(o)
                if n is None:
                    n = llm.count_tokens([o])[0]
                value = value / max(int(n), 1)
            row.append(float(value))
        out.append(row)
    return out


def score_by_loglikelihood(llm, items: Sequence[dict], hits: Sequence[Sequence] | None = None,
                           normalize: bool = True, cache: bool = True, batch_size: int | None = None) -> pd.DataFrame:
    """One row per item: the chosen option (``predicted``), ``correct``, the options' scores.

    ``hits``: retrieved chunks per item (RAG), else none. A backend without log-likelihoods gives
    ``predicted`` None and ``correct`` NaN for every item.
    """
    hits = hits if hits is not None else [()] * len(items)
    if not has_loglikelihood(llm):
        return pd.DataFrame({"id": [i["id"] for i in items], "predicted": None, "correct": np.nan,
                             "scores": None})
    prompts = [open_prompt(item["question"], h) for item, h in zip(items, hits)]
    scores = option_loglikelihoods(llm, prompts, [item["options"] for item in items], normalize=normalize,
                                   cache=cache, batch_size=batch_size)
    predicted = [None if all(math.isnan(s) for s in row) else int(np.nanargmax(row)) for row in scores]
    return pd.DataFrame({
        "id": [i["id"] for i in items],
        "predicted": predicted,
        "correct": [p is not None and p == item["answer"] for p, item in zip(predicted, items)],
        "scores": scores,
    })


def score_by_letter(llm, items: Sequence[dict], hits: Sequence[Sequence] | None = None,
                    max_new_tokens: int = 4) -> pd.DataFrame:
    """One row per item: the reply, the letter found (``predicted``, None if none), ``correct``,
    and the generation error if any (an error or an unparsed reply counts as wrong)."""
    hits = hits if hits is not None else [()] * len(items)
    prompts = [mcq_prompt(item["question"], item["options"], h) for item, h in zip(items, hits)]
    generations = llm.generate(prompts, max_new_tokens=max_new_tokens, system=SYSTEM)
    predicted = [parse_letter(g.text) if g.ok else None for g in generations]
    return pd.DataFrame({
        "id": [i["id"] for i in items],
        "reply": [g.text for g in generations],
        "predicted": predicted,
        "correct": [p is not None and p == item["answer"] for p, item in zip(predicted, items)],
        "unparsed": [g.ok and p is None for g, p in zip(generations, predicted)],
        "error": [g.error or "" for g in generations],
    })


def accuracy_ci(correct, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Accuracy of a boolean vector with a percentile bootstrap interval (NaN entries dropped)."""
    from ..metrics import bootstrap_ci

    values = np.asarray(pd.Series(correct, dtype=float).dropna(), dtype=float)
    if values.size == 0:
        return {"accuracy": np.nan, "low": np.nan, "high": np.nan, "n": 0}
    ci = bootstrap_ci(np.ones_like(values), values, metric_fn=lambda _, p: float(np.mean(p)),
                      n_boot=n_boot, seed=seed, alpha=alpha)
    row = ci.iloc[0]
    return {"accuracy": float(row["estimate"]), "low": float(row["low"]), "high": float(row["high"]),
            "n": int(values.size)}


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test of two configurations on the same items: a binomial test on the
    discordant pairs (``a_only``: items only A got right; ``b_only``: only B)."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"the two configurations were scored on {a.size} and {b.size} items")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep].astype(bool), b[keep].astype(bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    p = binomtest(a_only, n, 0.5).pvalue if n else 1.0
    return {"n": int(a.size), "a_only": a_only, "b_only": b_only, "p_value": float(p)}
