"""ALFRED end to end: 12-lead ECG → delineation → features → rules → prompt → LLM → superclasses.

* :func:`measure_ecgs`: the signal side for many records (U-Net delineation, the 30 + 12
  features, the rule module); a record that cannot be measured keeps its row (all features
  missing, rules undetermined) and is named in ``failed``.
* :func:`diagnose`: one configuration of :data:`ecgkit.alfred.prompt.CONFIGURATIONS` on the
  measured records: ``"Rules only"`` maps the rule results to superclasses without an LLM; the
  others assemble the five-part prompt, ask the LLM (batched, greedy) and parse the answers.
  An LLM error or an unparseable answer is counted and kept (labels ``None``), never raised.

Prompt size and answer length depend on the profile (:class:`~ecgkit.alfred.prompt.PromptBudget`):
the quick profile trims retrieved text to fit a small local model on a CPU; the full profile sends
the whole prompt, as the paper does with GPT-4o-mini.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .answer import SUPERCLASSES, parse_many
from .features import extract_features_many
from .prompt import SYSTEM_PROMPT, BuiltPrompt, PromptBudget, build_prompts, get_config
from .rules import evaluate_rules, rules_to_superclasses

__all__ = ["Measured", "Diagnoses", "measure_ecgs", "diagnose", "truth_labels", "sample_ids",
           "label_choices"]


@dataclass
class Measured:
    """The signal side of ALFRED for some records (all lists aligned with ``ids``)."""

    ids: pd.Index
    fs: float
    fiducials: list
    features: pd.DataFrame
    rules: list                     # one evaluate_rules frame per record
    failed: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def prompts(self, config="Proposed", index=None, budget: PromptBudget | None = None) -> list[BuiltPrompt]:
        """The five-part prompt of every record for one configuration (its rules and retrieval
        only where the configuration uses them); ``budget``: the active profile's when None."""
        cfg = get_config(config)
        return build_prompts([row for _, row in self.features.iterrows()], self.rules if cfg.rules else None,
                             index if cfg.retrieval else None, cfg, budget)

    def subset(self, ids) -> "Measured":
        pos = [self.ids.get_loc(i) for i in ids]
        return Measured(self.ids[pos], self.fs, [self.fiducials[p] for p in pos],
                        self.features.iloc[pos], [self.rules[p] for p in pos],
                        {k: v for k, v in self.failed.items() if k in set(ids)})


def measure_ecgs(signals, fs: float, ages=None, sexes=None, ids=None, model=None,
                 progress: bool = True, leads=None) -> Measured:
    """Delineate, measure and apply the rules to records × samples × 12 ``signals`` (mV).

    Fewer leads: pass ``leads`` (their names, e.g. ``["I", "II"]`` or ``["MLII", "V1"]``) with
    records × samples × len(leads), or pass 12 columns with the missing leads all NaN. Missing
    leads are not delineated and have no features; rules that need them are undetermined
    (``None``, their evidence lists the missing features) rather than guessed.
    """
    from .delineation import delineate
    from .features import pad_leads

    if leads is not None:
        arr = np.asarray(signals, dtype=float)
        if arr.ndim == 3:
            signals = np.stack([pad_leads(r, leads) for r in arr])
        elif arr.ndim == 2 and arr.shape[1] == len(leads):
            signals = pad_leads(arr, leads)
        else:
            signals = [pad_leads(r, leads) for r in signals]
    fiducials = delineate(signals, fs, model=model)
    if isinstance(fiducials, pd.DataFrame):   # a single record
        fiducials, signals = [fiducials], [signals]
    ids = pd.Index(range(len(fiducials)) if ids is None else list(ids))
    features, failed = extract_features_many(signals, fs, fiducials, ages=ages, sexes=sexes,
                                             ids=ids, progress=progress)
    rules = [evaluate_rules(row) for _, row in features.iterrows()]
    return Measured(ids, float(fs), fiducials, features, rules, failed)


@dataclass
class Diagnoses:
    """One configuration's answers: ``predictions`` (records × NORM/MI/STTC/CD/HYP, object
    True/False/None), ``answers`` (raw text, explanation, ok, problem, prompt characters, what
    the budget trimmed), the prompts, and counts of LLM errors and unparseable answers."""

    config: str
    predictions: pd.DataFrame
    answers: pd.DataFrame
    prompts: list = field(default_factory=list)
    llm: str = ""
    errors: int = 0
    unparsed: int = 0

    @property
    def n(self) -> int:
        return len(self.predictions)


def _rules_only(measured: Measured) -> Diagnoses:
    rows = [rules_to_superclasses(r) for r in measured.rules]
    predictions = pd.DataFrame(rows, index=measured.ids, columns=list(SUPERCLASSES)).astype(object)
    answers = pd.DataFrame({"text": "", "explanation": [
        "positive rules: " + (", ".join(k for k, v in r["positive"].items() if v is True) or "none")
        for r in measured.rules], "ok": True, "problem": ""}, index=measured.ids)
    return Diagnoses("Rules only", predictions, answers, llm="none")


def _is_local(llm) -> bool:
    from ..llm import CachedLLM, LocalLLM

    inner = llm.llm if isinstance(llm, CachedLLM) else llm
    return isinstance(inner, LocalLLM)


def diagnose(measured: Measured, config="Proposed", llm=None, index=None,
             budget: PromptBudget | None = None, answer_prefix: str | None = "auto",
             constrain="auto") -> Diagnoses:
    """Diagnose the measured records with one configuration (see the module doc).

    ``llm``: an :class:`ecgkit.llm.LLM` (e.g. ``get_llm(cache=True)``); ``index``: a
    :class:`~ecgkit.knowledge.index.KnowledgeIndex` for the configurations that retrieve;
    ``budget``: the prompt's :class:`~ecgkit.alfred.prompt.PromptBudget` and the answer's length
    (``max_new_tokens``), the active profile's when None. ``answer_prefix``: text the
    answer is made to start with (prefilled assistant message, parsed together with the
    continuation); ``"auto"`` = ``"NORM:"`` for a local model, which otherwise rarely keeps the
    format, and none for an endpoint, where prefill is not universally supported.
    ``constrain``: with a local model, decode the five label lines under a constraint (each
    value is " yes" or " no", the model picks; :meth:`ecgkit.llm.LocalLLM.generate`
    ``choices``), then the explanation freely; ``"auto"`` = on for a local model.
    """
    cfg = get_config(config)
    if not cfg.llm:
        return _rules_only(measured)
    if llm is None:
        raise ValueError(f"configuration {cfg.name!r} needs an LLM")
    budget = budget if budget is not None else PromptBudget.for_profile()
    prompts = measured.prompts(cfg, index, budget)
    if answer_prefix == "auto":
        answer_prefix = f"{SUPERCLASSES[0]}:" if _is_local(llm) else None
    messages = [[{"role": "user", "content": p.text}]
                + ([{"role": "assistant", "content": answer_prefix}] if answer_prefix else [])
                for p in prompts]
    extra = {}
    if (_is_local(llm) if constrain == "auto" else constrain):
        if answer_prefix != f"{SUPERCLASSES[0]}:":
            raise ValueError(f"constrained answers start with the prefix {SUPERCLASSES[0]!r}:")
        extra["choices"] = label_choices()
    generations = llm.generate(messages, max_new_tokens=budget.max_new_tokens, temperature=0.0,
                               system=SYSTEM_PROMPT, **extra)
    prefix = answer_prefix or ""
    texts = [prefix + g.text if g.ok else None for g in generations]
    parsed, _ = parse_many(pd.Series(texts, index=measured.ids))
    errors = 0
    for i, g in zip(measured.ids, generations):
        if not g.ok:
            errors += 1
            parsed.loc[i, "problem"] = f"LLM error: {g.error}"
    answers = parsed[["explanation", "ok", "problem", "form"]].copy()
    answers.insert(0, "text", [prefix + g.text if g.ok else "" for g in generations])
    answers["finish_reason"] = [g.finish_reason for g in generations]
    answers["prompt_chars"] = [p.n_chars for p in prompts]
    answers["trimmed"] = [sum(p.trimmed.values()) for p in prompts]
    predictions = parsed[list(SUPERCLASSES)].astype(object)
    unparsed = int((~parsed["ok"]).sum()) - errors
    return Diagnoses(cfg.name, predictions, answers, prompts, getattr(llm, "name", str(llm)),
                     errors, unparsed)


def label_choices() -> list[str]:
    """The 32 possible label blocks after the prefix ``"NORM:"`` (for constrained decoding)."""
    out = []
    for values in itertools.product(("yes", "no"), repeat=len(SUPERCLASSES)):
        lines = [f" {values[0]}"] + [f"{s}: {v}" for s, v in zip(SUPERCLASSES[1:], values[1:])]
        out.append("\n".join(lines) + "\nExplanation:")
    return out


def truth_labels(dataset, ids=None, view: str = "superdiagnostic50") -> pd.DataFrame:
    """The five superclass labels of ``dataset`` (PTB-XL layout) as booleans, ALFRED's
    definition by default (a diagnostic statement with likelihood ≥ 50)."""
    y = dataset.label_view(view).y
    y = y.reindex(columns=list(SUPERCLASSES), fill_value=0)
    if ids is not None:
        y = y.loc[list(ids)]
    return y.astype(bool)


def sample_ids(ids, n: int | None, seed: int = 0) -> pd.Index:
    """``n`` of ``ids`` drawn without replacement (all when ``n`` is None or larger), in their
    original order; a smaller ``n`` gives a subset of a larger one (cached answers are reused)."""
    ids = pd.Index(ids)
    if n is None or n >= len(ids):
        return ids
    order = np.random.default_rng(seed).permutation(len(ids))   # nested: n=4 ⊂ n=10
    return ids[np.sort(order[:n])]
