"""Multiple-choice accuracy two ways, with bootstrap intervals and McNemar tests.

* **Option log-likelihood**: each option is scored as the continuation of the open question
  (``Question: ...\\nAnswer:``, with retrieved chunks for RAG), by the mean log-probability of
  its tokens (:meth:`ecgkit.llm.LocalLLM.loglikelihood`); the best-scoring option is the answer.
  Needs a local model (an endpoint gives no log-probabilities: NaN with a note).
* **Generated letter**: the question with lettered options is asked and the first standalone
  letter A-D of the reply is the answer; a reply without one is counted as wrong and reported
  (``unparsed``).

Scores of a local model are cached on disk (``cache_dir("ecgllm", "scores")``), keyed by the
model's name, the prompts and the options, so a rerun does not score again.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..config import cache_dir
from .prompts import SYSTEM, mcq_prompt, open_prompt, parse_letter

__all__ = ["option_loglikelihoods", "shared_prefix_loglikelihoods", "score_by_loglikelihood", "score_by_letter", "accuracy_ci", "mcnemar",
           "has_loglikelihood"]


def has_loglikelihood(llm) -> bool:
    """Whether a backend can score continuations (a local model, possibly behind a cache)."""
    return callable(getattr(llm, "loglikelihood", None))


def _cache_path(spec: dict):
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
    return cache_dir("ecgllm", "scores") / f"{digest}.json"


def _local(llm):
    """The :class:`~ecgkit.llm.LocalLLM` behind a backend (unwrapping a cache), or None."""
    from ..llm import CachedLLM, LocalLLM

    inner = llm.llm if isinstance(llm, CachedLLM) else llm
    return inner if isinstance(inner, LocalLLM) else None


def shared_prefix_loglikelihoods(local, prompts: Sequence[str], options: Sequence[Sequence[str]],
                                 system: str | None = SYSTEM, batch_size: int | None = None) -> list[list[float]]:
    """Summed log-likelihoods of each prompt's options, each prompt run once for all its options.

    The same numbers as :meth:`ecgkit.llm.LocalLLM.loglikelihood` (chat template, generation
    prompt, continuation tokens), but a batch of prompts (left-padded) is run once and its
    key/value cache repeated for the options, instead of running prompt + option for every
    option: about four times less work for four-option questions with a long retrieved context.
    An item over the context length scores NaN; an empty option scores 0.
    """
    import torch

    from ..llm import to_messages

    model, tok = local.model, local.tokenizer
    device = next(model.parameters()).device
    limit = local.context_length
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    size = max(1, int(batch_size or local.batch_size))
    out: list[list[float]] = [[] for _ in prompts]
    todo = []
    for i, (prompt, opts) in enumerate(zip(prompts, options)):
        text = tok.apply_chat_template(to_messages(prompt, system), add_generation_prompt=True, tokenize=False)
        ctx = tok(text, add_special_tokens=False)["input_ids"]
        conts = [tok(o, add_special_tokens=False)["input_ids"] if o else [] for o in opts]
        width = max((len(c) for c in conts), default=0)
        if len(ctx) + width > limit:
            out[i] = [0.0 if not c else float("nan") for c in conts]
        elif not width:
            out[i] = [0.0] * len(conts)
        else:
            todo.append((i, ctx, conts))
    # batches of similar option lengths (the options' padding costs four times), then prompt lengths
    todo.sort(key=lambda item: (-max(len(c) for c in item[2]), -len(item[1])))
    old_threads = torch.get_num_threads()
    flush = device.type == "cpu" and torch.set_flush_denormal(True)  # left padding makes slow subnormals
    if local.threads:
        torch.set_num_threads(int(local.threads))
    try:
        with torch.inference_mode():
            for k in range(0, len(todo), size):
                for i, row in zip([t[0] for t in todo[k:k + size]], _score_batch(model, todo[k:k + size], pad, device)):
                    out[i] = row
    finally:
        torch.set_num_threads(old_threads)
        if flush:
            torch.set_flush_denormal(False)
    return out


def _score_batch(model, batch, pad: int, device) -> list[list[float]]:
    """One batch of (index, prompt ids, option ids): prompts left-padded and run once, options
    right-padded and run on the prompts' repeated cache."""
    import torch

    length = max(len(ctx) for _, ctx, _ in batch)
    ids = torch.tensor([[pad] * (length - len(ctx)) + ctx for _, ctx, _ in batch], device=device)
    mask = torch.tensor([[0] * (length - len(ctx)) + [1] * len(ctx) for _, ctx, _ in batch], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    try:
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    except TypeError:  # a model without logits_to_keep
        first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)
    counts = [len(conts) for _, _, conts in batch]
    cache = first.past_key_values
    if len(set(counts)) == 1:
        cache.batch_repeat_interleave(counts[0])
    else:
        cache.batch_select_indices(torch.tensor([b for b, n in enumerate(counts) for _ in range(n)], device=device))
    rows = [(b, c) for b, (_, _, conts) in enumerate(batch) for c in conts]
    width = max(1, max(len(c) for _, c in rows))
    opt_ids = torch.tensor([(c + [pad] * (width - len(c))) if c else [pad] * width for _, c in rows], device=device)
    opt_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for _, c in rows], device=device)
    full_mask = torch.cat([mask[[b for b, _ in rows]], opt_mask], dim=1)
    start = mask.sum(-1)[[b for b, _ in rows]]
    opt_positions = start[:, None] + torch.arange(width, device=device)[None, :]
    # the option tokens' log-probabilities: the output layer only where a next option token is scored
    picks = [(r, j) for r, (_, c) in enumerate(rows) for j in range(len(c) - 1)]
    targets = torch.tensor([rows[r][1][j + 1] for r, j in picks], dtype=torch.long, device=device)
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    kwargs = dict(attention_mask=full_mask, position_ids=opt_positions, past_key_values=cache)
    if picks and decoder is not None and head is not None and not getattr(model.config, "final_logit_softcapping", None):
        hidden = decoder(input_ids=opt_ids, **kwargs).last_hidden_state
        rr, jj = (torch.tensor(x, device=device) for x in zip(*picks))
        logits = head(hidden[rr, jj])
    elif picks:
        logits = model(input_ids=opt_ids, **kwargs).logits[[r for r, _ in picks], [j for _, j in picks]]
    taken = (torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None])[:, 0].tolist()
             if picks else [])
    sums = [0.0] * len(rows)
    for (r, _), value in zip(picks, taken):
        sums[r] += value
    scores = [sums[r] + float(first_lp[b, c[0]]) if c else 0.0 for r, (b, c) in enumerate(rows)]
    out, k = [], 0
    for n in counts:
        out.append(scores[k:k + n])
        k += n
    return out


def option_loglikelihoods(llm, prompts: Sequence[str], options: Sequence[Sequence[str]], system: str = SYSTEM,
                          normalize: bool = True, cache: bool = True, batch_size: int | None = None
                          ) -> list[list[float]]:
    """Per prompt, the log-likelihood of each of its options (mean per token when ``normalize``).

    A local model is scored with :func:`shared_prefix_loglikelihoods`; any other backend with a
    ``loglikelihood`` method through it.
    """
    flat_prompts = [p for p, opts in zip(prompts, options) for _ in opts]
    flat_options = [o.strip() for opts in options for o in opts]
    spec = {"llm": llm.name, "system": system, "normalize": normalize,
            "pairs": [[p, o] for p, o in zip(flat_prompts, flat_options)]}
    path = _cache_path(spec)
    if cache and path.is_file():
        flat = json.loads(path.read_text())
    else:
        local = _local(llm)
        if local is not None:
            grouped = shared_prefix_loglikelihoods(local, prompts, [[o.strip() for o in opts] for opts in options],
                                                   system)
            flat = [s for row in grouped for s in row]
        else:
            flat = llm.loglikelihood(flat_prompts, flat_options, system=system, batch_size=batch_size)
        if normalize:
            counts = llm.count_tokens(flat_options)
            flat = [s / max(c, 1) for s, c in zip(flat, counts)]
        if cache:
            path.write_text(json.dumps(flat))
    out, k = [], 0
    for opts in options:
        out.append(list(flat[k:k + len(opts)]))
        k += len(opts)
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
