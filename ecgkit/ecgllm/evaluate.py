"""The ECG-LLM comparison: configurations, their answers, and one table over the four layers.

Configurations (:func:`configurations`): ``base`` (the base model), ``fine-tuned`` (its LoRA
adapter merged), ``RAG`` (the base model with the top chunks of the knowledge index in the
prompt), ``fine-tuned + RAG``, and ``endpoint`` (the model behind ``$ECGKIT_LLM_BASE_URL``, in the
role of the paper's general-purpose model) when one is configured. Every configuration gets the
same system message and prompts (:mod:`ecgkit.ecgllm.prompts`); the RAG ones also get the chunks
retrieved for the question (the same chunks for both).

Layers: multiple choice (:mod:`.mcq`), text metrics (:mod:`.textmetrics`), the LLM judge
(:mod:`.judge`) and the experts (:mod:`.rating`). :func:`results_table` puts them side by side;
:func:`rankings` ranks the configurations by each usable method (the judge only when it passed
its control pairs) and :func:`findings` sets the paper's qualitative findings beside ours.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from .mcq import accuracy_ci, mcnemar, score_by_letter, score_by_loglikelihood
from .prompts import SYSTEM, open_prompt

__all__ = ["Configuration", "configurations", "endpoint_llm", "retrieve", "run_mcq", "mcq_table", "mcnemar_table",
           "run_open", "text_table", "paired_text_tests", "heldout_verdict", "judge_table", "results_table", "rankings", "ranking_agreement",
           "findings", "PAPER_FINDINGS"]

#: The paper's qualitative findings (as summarised in the project's issue; no numbers are restated).
PAPER_FINDINGS = {
    "fine_tuned_vs_base": "Fine-tuned models beat their base models in nearly every evaluation mode.",
    "rankings_differ": "The rankings of the configurations differ between evaluation methods.",
    "rag": "The fine-tuned models were ahead of RAG on multiple choice and on the automatic text metrics (abstract).",
}


@dataclass
class Configuration:
    """A named way of answering: a backend, with or without retrieval."""

    name: str
    llm: object
    rag: bool = False

    @property
    def model(self) -> str:
        return self.llm.name


def endpoint_llm():
    """The configured endpoint (``$ECGKIT_LLM_BASE_URL``) with a generation cache, or None."""
    from ..config import settings
    from ..llm import get_llm

    if not settings().endpoint_configured:
        return None
    return get_llm("openai", cache=True)


def configurations(base, finetuned=None, endpoint=None, rag: bool = True) -> list[Configuration]:
    """base, fine-tuned, RAG, fine-tuned + RAG (those that apply) and the endpoint when given."""
    out = [Configuration("base", base)]
    if finetuned is not None:
        out.append(Configuration("fine-tuned", finetuned))
    if rag:
        out.append(Configuration("RAG", base, rag=True))
        if finetuned is not None:
            out.append(Configuration("fine-tuned + RAG", finetuned, rag=True))
    if endpoint is not None:
        out.append(Configuration("endpoint", endpoint))
    return out


def retrieve(index, items: Sequence[dict], top_k: int = 2, collections=("documents", "expert")) -> dict[str, list]:
    """Item id -> the chunks retrieved for its question (shared by every RAG configuration)."""
    if index is None:
        return {}
    hits = index.retrieve_many([i["question"] for i in items], top_k=top_k, collections=collections)
    return {item["id"]: h for item, h in zip(items, hits)}


def _hits(config: Configuration, items: Sequence[dict], hits: dict) -> list:
    if not config.rag:
        return [()] * len(items)
    missing = [i["id"] for i in items if i["id"] not in hits]
    if missing:
        raise ValueError(f"configuration {config.name!r} needs retrieved chunks for items {missing[:3]}...")
    return [hits[i["id"]] for i in items]


# ----------------------------------------------------------------------------- multiple choice


def run_mcq(configs: Sequence[Configuration], items: Sequence[dict], hits: dict | None = None,
            letter_tokens: int = 2) -> dict[str, pd.DataFrame]:
    """Per configuration, one row per item: log-likelihood choice and generated-letter choice."""
    out = {}
    for config in configs:
        h = _hits(config, items, hits or {})
        ll = score_by_loglikelihood(config.llm, items, h)
        letter = score_by_letter(config.llm, items, h, max_new_tokens=letter_tokens)
        out[config.name] = pd.DataFrame({
            "id": ll["id"], "answer": [i["answer"] for i in items], "template": [i["template"] for i in items],
            "loglik_choice": ll["predicted"], "loglik_correct": ll["correct"],
            "letter_reply": letter["reply"], "letter_choice": letter["predicted"],
            "letter_correct": letter["correct"], "letter_unparsed": letter["unparsed"], "error": letter["error"]})
    return out


def mcq_table(results: dict[str, pd.DataFrame], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy with 95 % bootstrap intervals by both methods, per configuration."""
    rows = {}
    for name, frame in results.items():
        ll = accuracy_ci(frame["loglik_correct"], n_boot=n_boot, seed=seed)
        lt = accuracy_ci(frame["letter_correct"], n_boot=n_boot, seed=seed)
        rows[name] = {
            ("option log-likelihood", "accuracy"): ll["accuracy"], ("option log-likelihood", "low"): ll["low"],
            ("option log-likelihood", "high"): ll["high"],
            ("generated letter", "accuracy"): lt["accuracy"], ("generated letter", "low"): lt["low"],
            ("generated letter", "high"): lt["high"],
            ("generated letter", "unparsed"): int(frame["letter_unparsed"].sum()),
            ("", "n"): len(frame)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "configuration"
    return table


def mcnemar_table(results: dict[str, pd.DataFrame],
                  pairs: Sequence[tuple[str, str]] = (("fine-tuned", "base"), ("RAG", "base"),
                                                      ("fine-tuned + RAG", "RAG"), ("fine-tuned + RAG", "fine-tuned"),
                                                      ("endpoint", "base"))) -> pd.DataFrame:
    """Exact McNemar tests between configurations on the same questions, for both methods."""
    rows = []
    for a, b in pairs:
        if a not in results or b not in results:
            continue
        for method, column in (("option log-likelihood", "loglik_correct"), ("generated letter", "letter_correct")):
            test = mcnemar(results[a][column], results[b][column])
            rows.append({"comparison": f"{a} vs {b}", "method": method, "items": test["n"],
                         "only A right": test["a_only"], "only B right": test["b_only"], "p": test["p_value"]})
    return pd.DataFrame(rows).set_index(["comparison", "method"]) if rows else pd.DataFrame()


# ----------------------------------------------------------------------------- open questions


def run_open(configs: Sequence[Configuration], items: Sequence[dict], hits: dict | None = None,
             max_new_tokens: int = 64, anti_loop: bool = True) -> pd.DataFrame:
    """One row per (configuration, item): the answer, how it ended and the error if any.

    ``anti_loop``: generate with the backend's repetition control (:func:`ecgkit.llm.anti_loop_options`:
    a repetition penalty and no repeated 4-grams locally, a frequency penalty on an endpoint); the
    options used are in the ``repetition_control`` column."""
    from ..llm import anti_loop_options

    frames = []
    for config in configs:
        h = _hits(config, items, hits or {})
        prompts = [open_prompt(i["question"], hs) for i, hs in zip(items, h)]
        options = anti_loop_options(config.llm) if anti_loop else {}
        gens = config.llm.generate(prompts, max_new_tokens=max_new_tokens, system=SYSTEM, **options)
        frames.append(pd.DataFrame({
            "repetition_control": ", ".join(f"{k}={v}" for k, v in options.items()) or "none",
            "configuration": config.name, "id": [i["id"] for i in items], "template": [i["template"] for i in items],
            "question": [i["question"] for i in items], "reference": [i["reference"] for i in items],
            "context": [i.get("context", "") for i in items], "answer": [g.text.strip() for g in gens],
            "finish": [g.finish_reason for g in gens], "completion_tokens": [g.completion_tokens for g in gens],
            "error": [g.error or "" for g in gens]}))
    return pd.concat(frames, ignore_index=True)


def text_table(answers: pd.DataFrame) -> pd.DataFrame:
    """Corpus BLEU, mean ROUGE-1/2/L and BERTScore F1 per configuration (``answers`` with
    :func:`~ecgkit.ecgllm.textmetrics.text_metrics` columns added)."""
    from .textmetrics import corpus_bleu

    rows = {}
    for name, frame in answers.groupby("configuration", sort=False):
        rows[name] = {"BLEU": corpus_bleu(frame["answer"], frame["reference"]),
                      "ROUGE-1": frame["rouge1"].mean(), "ROUGE-2": frame["rouge2"].mean(),
                      "ROUGE-L": frame["rougeL"].mean(), "BERTScore F1": frame["bertscore_f1"].mean(),
                      "answers": len(frame), "errors": int((frame["error"] != "").sum()),
                      "cut at max tokens": int((frame["finish"] == "length").sum())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "configuration"
    return table


#: per-answer text metrics compared by :func:`paired_text_tests`
PAIRED_METRICS = ("rouge1", "rougeL", "bertscore_f1")


def paired_text_tests(answers: pd.DataFrame,
                      pairs: Sequence[tuple[str, str]] = (("fine-tuned", "base"), ("RAG", "base"),
                                                          ("fine-tuned", "RAG"), ("fine-tuned + RAG", "RAG"),
                                                          ("endpoint", "base")),
                      metrics: Sequence[str] = PAIRED_METRICS, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> pd.DataFrame:
    """Configuration A vs B on the same open questions, per text metric: the mean per-question
    difference A - B with a paired bootstrap interval (questions resampled) and the two-sided
    Wilcoxon signed-rank p (zero differences split). ``verdict``: "A better" / "B better" when the
    interval excludes 0, else "no difference shown"."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(seed)
    rows = []
    for a, b in pairs:
        if a not in set(answers["configuration"]) or b not in set(answers["configuration"]):
            continue
        for metric in metrics:
            wide = answers[answers["configuration"].isin([a, b])].pivot_table(
                index="id", columns="configuration", values=metric, aggfunc="first").dropna()
            diff = (wide[a] - wide[b]).to_numpy(dtype=float)
            n = len(diff)
            if n == 0:
                continue
            boots = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
            low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
            p = float(wilcoxon(diff, zero_method="zsplit").pvalue) if n >= 2 and np.any(diff != 0) else 1.0
            verdict = f"{a} better" if low > 0 else f"{b} better" if high < 0 else "no difference shown"
            rows.append({"comparison": f"{a} vs {b}", "metric": metric, "questions": n,
                         "mean difference": float(diff.mean()), "low": float(low), "high": float(high),
                         "A better on": int((diff > 0).sum()), "B better on": int((diff < 0).sum()),
                         "wilcoxon p": p, "verdict": verdict})
    columns = ["comparison", "metric", "questions", "mean difference", "low", "high", "A better on", "B better on",
               "wilcoxon p", "verdict"]
    return pd.DataFrame(rows, columns=columns).set_index(["comparison", "metric"])


def judge_table(judged: pd.DataFrame) -> pd.DataFrame:
    """Mean judge score (1-5), answers judged and unparsed replies per configuration."""
    grouped = judged.groupby("configuration", sort=False)
    table = pd.DataFrame({"mean score": grouped["judge_score"].mean(), "judged": grouped.size(),
                          "unparsed": grouped["judge_score"].apply(lambda s: int(s.isna().sum()))})
    table.index.name = "configuration"
    return table


def heldout_verdict(curve, clear: float = 0.05) -> dict:
    """What the held-out loss curve says: ``start`` (before training), ``end``, ``best`` (and its
    ``best_step``), the relative change ``end / start - 1``, and ``verdict``: "falls clearly" (by
    at least ``clear``, 5 %), "falls slightly", "does not fall" or "no curve" (none recorded)."""
    points = [(int(c["step"]), float(c["heldout_loss"])) for c in (curve.reset_index().to_dict("records")
              if hasattr(curve, "reset_index") else curve)]
    if len(points) < 2:
        return {"verdict": "no curve", "points": len(points)}
    start, end = points[0][1], points[-1][1]
    best_step, best = min(points, key=lambda p: p[1])
    change = end / start - 1
    verdict = "falls clearly" if change <= -clear else "falls slightly" if change < 0 else "does not fall"
    return {"verdict": verdict, "points": len(points), "start": start, "end": end, "best": best,
            "best_step": best_step, "relative_change": change}


# ----------------------------------------------------------------------------- one table


def results_table(mcq: pd.DataFrame, text: pd.DataFrame, judge: pd.DataFrame | None, judge_ok: bool,
                  experts: pd.DataFrame | None, notes: dict[str, str] | None = None) -> pd.DataFrame:
    """Every configuration x every layer. The judge's column says whether it passed its control
    pairs; the experts' column says when no filled sheet was imported. ``notes``: configuration ->
    a note (e.g. the endpoint skipped)."""
    configs = list(dict.fromkeys([*mcq.index, *text.index, *(notes or {})]))
    table = pd.DataFrame(index=pd.Index(configs, name="configuration"))
    table[("multiple choice", "accuracy (log-likelihood)")] = mcq[("option log-likelihood", "accuracy")]
    table[("multiple choice", "accuracy (letter)")] = mcq[("generated letter", "accuracy")]
    for column in ("BLEU", "ROUGE-1", "ROUGE-2", "ROUGE-L", "BERTScore F1"):
        table[("open questions", column)] = text[column]
    judge_scores = judge["mean score"] if judge is not None else pd.Series(dtype=float)
    table[("LLM judge", "mean (1-5)")] = judge_scores
    judged = set(judge_scores.dropna().index)
    table[("LLM judge", "status")] = [("passed the control pairs" if judge_ok else
                                       "failed the control pairs: not used to rank") if c in judged
                                      else "not run" if c in (notes or {}) else "not judged" for c in table.index]
    if experts is not None and not experts.empty:
        table[("experts", "mean (1-4)")] = experts["mean"]
        table[("experts", "status")] = [f"{int(experts.loc[c, 'raters'])} rater(s)" if c in experts.index else "not rated"
                                        for c in table.index]
    else:
        table[("experts", "mean (1-4)")] = np.nan
        table[("experts", "status")] = "no filled rating sheet imported"
    if notes:
        table[("", "note")] = [notes.get(c, "") for c in table.index]
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


#: Columns of :func:`results_table` that rank configurations (higher is better).
RANKED = [("multiple choice", "accuracy (log-likelihood)"), ("multiple choice", "accuracy (letter)"),
          ("open questions", "BLEU"), ("open questions", "ROUGE-L"), ("open questions", "BERTScore F1"),
          ("LLM judge", "mean (1-5)"), ("experts", "mean (1-4)")]


def rankings(table: pd.DataFrame, judge_ok: bool) -> pd.DataFrame:
    """Rank of each configuration (1 = best, ties share the best rank) by each usable method:
    the judge only when it passed its control pairs, the experts only when they rated."""
    out = {}
    for column in RANKED:
        if column not in table.columns or table[column].isna().all():
            continue
        if column[0] == "LLM judge" and not judge_ok:
            continue
        out[" / ".join(column)] = table[column].astype(float).rank(ascending=False, method="min")
    frame = pd.DataFrame(out)
    frame.index.name = "configuration"
    return frame


def ranking_agreement(ranks: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau between the rankings of every pair of methods (configurations ranked by both)."""
    from scipy.stats import kendalltau

    rows = []
    for a, b in combinations(ranks.columns, 2):
        both = ranks[[a, b]].dropna()
        tau = float(kendalltau(both[a], both[b]).statistic) if len(both) >= 2 else np.nan
        rows.append({"method_a": a, "method_b": b, "configurations": len(both), "kendall_tau": tau,
                     "same order": bool(len(both) >= 2 and (both[a].to_numpy() == both[b].to_numpy()).all())})
    return pd.DataFrame(rows, columns=["method_a", "method_b", "configurations", "kendall_tau", "same order"])


def _paired(text_tests: pd.DataFrame | None, comparison: str) -> tuple[str, int, int]:
    """'; paired tests on k metrics: ...' text, and how many metrics favour A / B (intervals excluding 0)."""
    if text_tests is None or text_tests.empty or comparison not in text_tests.index.get_level_values(0):
        return "", 0, 0
    rows = text_tests.loc[comparison]
    a, b = comparison.split(" vs ")
    a_wins = int((rows["verdict"] == f"{a} better").sum())
    b_wins = int((rows["verdict"] == f"{b} better").sum())
    return (f"; paired bootstrap on {len(rows)} per-question text metrics: {a} better on {a_wins}, "
            f"{b} better on {b_wins}", a_wins, b_wins)


def findings(table: pd.DataFrame, ranks: pd.DataFrame, mcnemar: pd.DataFrame | None = None,
             text_tests: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's qualitative findings beside ours: ``agree`` (yes / partly / in direction only /
    no) and, where it is not a plain yes, ``why`` from the same counts and tests."""
    rows = []
    usable = list(ranks.columns)
    if {"base", "fine-tuned"} <= set(ranks.index) and usable:
        wins = [c for c in usable if ranks.loc["fine-tuned", c] < ranks.loc["base", c]]
        losses = [c for c in usable if ranks.loc["fine-tuned", c] > ranks.loc["base", c]]
        tested, p_values = "", []
        if mcnemar is not None and not mcnemar.empty:
            for method in ("option log-likelihood", "generated letter"):
                if ("fine-tuned vs base", method) in mcnemar.index:
                    p_values.append(float(mcnemar.loc[("fine-tuned vs base", method), "p"]))
                    tested += f"; McNemar ({method}) p = {p_values[-1]:.2g}"
        paired, ft_better, base_better = _paired(text_tests, "fine-tuned vs base")
        agree = "yes" if len(wins) >= len(usable) - 1 and len(usable) >= 2 else "no"
        why = ""
        if agree == "no":
            why = (f"the fine-tuned model is ahead by only {len(wins)} of {len(usable)} methods "
                   f"and behind by {len(losses)}")
        significant = (p_values and min(p_values) < 0.05) or ft_better > 0
        if agree == "yes" and (p_values or paired) and not significant:
            agree = "in direction only (no paired test significant)"
            why = "ahead in direction, but no McNemar test below 0.05 and no paired text-metric interval excluding 0"
        rows.append({"finding": "fine-tuned vs base", "paper": PAPER_FINDINGS["fine_tuned_vs_base"],
                     "ours": f"fine-tuned better by {len(wins)} of {len(usable)} methods, worse by {len(losses)}"
                             f"{tested}{paired}",
                     "agree": agree, "why": why})
    if len(usable) >= 2:
        orders = {tuple(ranks[c].to_numpy()) for c in usable}
        rows.append({"finding": "rankings between methods", "paper": PAPER_FINDINGS["rankings_differ"],
                     "ours": f"{len(orders)} different rankings from {len(usable)} methods",
                     "agree": "yes" if len(orders) > 1 else "no",
                     "why": "" if len(orders) > 1 else "every usable method ranks the configurations alike"})
    if {"fine-tuned", "RAG"} <= set(ranks.index):
        # the paper's claim covers multiple choice and the text metrics
        named = [c for c in usable if c.startswith(("multiple choice", "open questions"))]
        ft_wins = [c for c in named if ranks.loc["fine-tuned", c] < ranks.loc["RAG", c]]
        rag_wins = [c for c in named if ranks.loc["RAG", c] < ranks.loc["fine-tuned", c]]
        paired, ft_better, rag_better = _paired(text_tests, "fine-tuned vs RAG")
        base_wins = ([c for c in usable if ranks.loc["RAG", c] < ranks.loc["base", c]]
                     if "base" in ranks.index else [])
        n = len(named)
        agree = ("yes" if n and len(ft_wins) >= n - 1 else "no" if len(ft_wins) * 2 < n else "partly")
        why = ""
        if agree != "yes":
            why = (f"RAG is ahead of the fine-tuned model by {len(rag_wins)} of the {n} multiple-choice and "
                   f"text-metric methods")
        rows.append({"finding": "fine-tuned vs RAG", "paper": PAPER_FINDINGS["rag"],
                     "ours": f"fine-tuned better than RAG by {len(ft_wins)} of {n} multiple-choice and text methods"
                             f"{paired}; RAG better than base by {len(base_wins)} of {len(usable)} methods",
                     "agree": agree, "why": why})
    return pd.DataFrame(rows, columns=["finding", "paper", "ours", "agree", "why"]).set_index("finding")
