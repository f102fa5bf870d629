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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from .mcq import accuracy_ci, mcnemar, score_by_letter, score_by_loglikelihood
from .prompts import SYSTEM, open_prompt

__all__ = ["Configuration", "configurations", "endpoint_llm", "retrieve", "run_mcq", "mcq_table", "mcnemar_table",
           "run_open", "text_table", "judge_table", "results_table", "rankings", "ranking_agreement",
           "findings", "PAPER_FINDINGS"]

#: The paper's qualitative findings (as summarised in the project's issue; no numbers are restated).
PAPER_FINDINGS = {
    "fine_tuned_vs_base": "Fine-tuned models beat their base models in nearly every evaluation mode.",
    "rankings_differ": "The rankings of the configurations differ between evaluation methods.",
    "rag": "RAG over the same literature is compared with fine-tuning (no direction restated here).",
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
    from ..llm import ENV_BASE_URL, get_llm

    if not (os.environ.get(ENV_BASE_URL) or "").strip():
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
             max_new_tokens: int = 64) -> pd.DataFrame:
    """One row per (configuration, item): the answer, how it ended and the error if any."""
    frames = []
    for config in configs:
        h = _hits(config, items, hits or {})
        prompts = [open_prompt(i["question"], hs) for i, hs in zip(items, h)]
        gens = config.llm.generate(prompts, max_new_tokens=max_new_tokens, system=SYSTEM)
        frames.append(pd.DataFrame({
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


def judge_table(judged: pd.DataFrame) -> pd.DataFrame:
    """Mean judge score (1-5), answers judged and unparsed replies per configuration."""
    grouped = judged.groupby("configuration", sort=False)
    table = pd.DataFrame({"mean score": grouped["judge_score"].mean(), "judged": grouped.size(),
                          "unparsed": grouped["judge_score"].apply(lambda s: int(s.isna().sum()))})
    table.index.name = "configuration"
    return table


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
    table[("LLM judge", "status")] = ("passed the control pairs" if judge_ok else
                                      "failed the control pairs: not used to rank")
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


def findings(table: pd.DataFrame, ranks: pd.DataFrame, mcnemar: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's qualitative findings beside ours, with whether they agree."""
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
        agree = "yes" if len(wins) >= len(usable) - 1 and len(usable) >= 2 else "no"
        if agree == "yes" and p_values and min(p_values) >= 0.05:
            agree = "in direction only (multiple choice not significant)"
        rows.append({"finding": "fine-tuned vs base", "paper": PAPER_FINDINGS["fine_tuned_vs_base"],
                     "ours": f"fine-tuned better by {len(wins)} of {len(usable)} methods, worse by {len(losses)}{tested}",
                     "agree": agree})
    if len(usable) >= 2:
        orders = {tuple(ranks[c].to_numpy()) for c in usable}
        rows.append({"finding": "rankings between methods", "paper": PAPER_FINDINGS["rankings_differ"],
                     "ours": f"{len(orders)} different rankings from {len(usable)} methods",
                     "agree": "yes" if len(orders) > 1 else "no"})
    if {"base", "RAG"} <= set(ranks.index) and usable:
        wins = [c for c in usable if ranks.loc["RAG", c] < ranks.loc["base", c]]
        ft = ""
        if "fine-tuned" in ranks.index:
            ft_wins = [c for c in usable if ranks.loc["RAG", c] < ranks.loc["fine-tuned", c]]
            ft = f"; RAG better than fine-tuned by {len(ft_wins)} of {len(usable)}"
        rows.append({"finding": "RAG", "paper": PAPER_FINDINGS["rag"],
                     "ours": f"RAG better than base by {len(wins)} of {len(usable)} methods{ft}", "agree": "–"})
    return pd.DataFrame(rows, columns=["finding", "paper", "ours", "agree"]).set_index("finding")
