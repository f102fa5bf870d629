"""Controls for ALFRED's label-probability instrument: does a score rise with the truth at all?

Chapter 03 ranks records by an LLM's label scores. An instrument that cannot rank records whose
prompt *states* the answer cannot measure whether rules or retrieval help. So each scoring design
(:data:`DESIGNS`) is run on two controls before its numbers are reported:

* **positive control**: the record's prompt with its true superclasses stated in it
  (:func:`state_classes`: a cardiologist's report line before the instructions). A working
  instrument ranks these records almost perfectly: macro AUROC near 1.
* **negative control**: the same, with the stated superclasses shuffled across records
  (:func:`shuffled_truth`), scored against the real ones: near 0.5 (the statement is unrelated to
  the truth; an instrument that is above chance here leaks the truth some other way).

:func:`run_controls` runs both for one design and returns per-class and macro AUROC with
bootstrap intervals (:func:`ecgkit.metrics.auroc_ci`) and whether the design passed
(:func:`passed`). :func:`inversion_by_prompt_part` measures, per class, the mean score of positive
and negative records and the AUROC with each part of the prompt left out, to show which part moves
the scores the wrong way.

Scoring designs (each returns records × classes, higher = more likely present):

* ``"answer line"``: the chapter's original instrument (:func:`ecgkit.alfred.probabilities.label_probabilities`):
  the answer is prefilled with the class's line start (``"HYP:"``) and P(yes)/(P(yes)+P(no)) read.
* ``"question"``: one yes/no question per class appended to the prompt (``Is HYP (hypertrophy ...)
  present in this ECG? Answer yes or no.``), P(yes)/(P(yes)+P(no)) of the first answer token.
* ``"class name"``: the answer is prefilled with ``"Diagnosis:"`` and the five class names are
  scored as its continuation; a class's score is its probability among the five (softmax).

A per-class calibration against a content-free prompt (subtracting a constant log-odds per class)
is not a design here: it is a monotone transform of each class's scores, so it leaves every AUROC
unchanged.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metrics import auroc, auroc_ci
from .answer import SUPERCLASSES
from .prompt import SUPERCLASS_DESCRIPTIONS, SYSTEM_PROMPT

__all__ = ["DESIGNS", "DEFAULT_DESIGN", "PASS_MACRO", "PASS_CLASS", "CLASS_NAMES", "design_scores",
           "state_classes", "shuffled_truth", "run_controls", "passed", "control_table",
           "inversion_by_prompt_part", "without_parts", "PROMPT_PARTS", "balanced_sample"]

#: readable names for the stated report (the positive control's line)
CLASS_NAMES = {"NORM": "a normal ECG (NORM)", "MI": "myocardial infarction (MI)",
               "STTC": "ST/T change (STTC)", "CD": "conduction disturbance (CD)",
               "HYP": "hypertrophy (HYP)"}
#: the positive control passes with macro AUROC ≥ PASS_MACRO and every class ≥ PASS_CLASS
PASS_MACRO = 0.8
PASS_CLASS = 0.7

DESIGNS = ("answer line", "question", "class name")
DEFAULT_DESIGN = "answer line"

YES = (" yes", "yes", " Yes", "Yes")
NO = (" no", "no", " No", "No")
INSTRUCTIONS_HEADER = "## 5. Instructions"


def _text(prompt) -> str:
    return prompt.text if hasattr(prompt, "text") else str(prompt)


def _short(cls: str) -> str:
    return SUPERCLASS_DESCRIPTIONS[cls].split(" (")[0]


def question(cls: str) -> str:
    """The per-class question of the ``"question"`` design."""
    return (f"\n\nQuestion: is {cls} ({_short(cls)}) present in this ECG? "
            "Answer with one word, yes or no.")


def _yes_share(scores) -> float:
    """P(yes) / (P(yes) + P(no)) over the single-token yes/no variants (NaN when none scored)."""
    def mass(variants):
        return sum(math.exp(scores.logprobs[v]) for v in variants
                   if scores.logprobs.get(v, math.nan) == scores.logprobs.get(v, math.nan)
                   and scores.status.get(v) == "full" and scores.tokens.get(v) == 1)
    yes, no = mass(YES), mass(NO)
    return yes / (yes + no) if scores.ok and yes + no > 0 else math.nan


def design_scores(llm, prompts: Sequence, design: str = DEFAULT_DESIGN,
                  classes: Sequence[str] = SUPERCLASSES, ids=None,
                  progress: bool | None = None) -> pd.DataFrame:
    """Records × classes of one design's scores (higher = more likely present; see the module doc)."""
    texts = [_text(p) for p in prompts]
    classes = list(classes)
    index = pd.Index(list(range(len(texts))) if ids is None else list(ids), name="record")
    if len(index) != len(texts):
        raise ValueError(f"{len(index)} ids for {len(texts)} prompts")
    if design not in DESIGNS:
        raise ValueError(f"unknown scoring design {design!r}; choose one of {DESIGNS}")
    if not getattr(llm, "option_scoring", None):
        raise ValueError(f"{getattr(llm, 'name', llm)!r} cannot score options (no log-probabilities)")
    if design == "answer line":
        from .probabilities import label_probabilities

        table = label_probabilities(llm, texts, classes, progress=progress)
        table.index = index
        return table
    if design == "question":
        items = [(t + question(c), None, list(YES + NO)) for t in texts for c in classes]
        scored = llm.option_logprobs(items, system=SYSTEM_PROMPT, progress=progress) if items else []
        values = np.array([_yes_share(s) for s in scored], dtype=float).reshape(len(texts), len(classes))
        return pd.DataFrame(values, index=index, columns=classes)
    options = [f" {c}" for c in classes]
    scored = llm.option_logprobs([(t, "Diagnosis:", options) for t in texts], system=SYSTEM_PROMPT,
                                 progress=progress) if texts else []
    rows = []
    for s in scored:
        lp = np.array([s.logprobs.get(o, math.nan) if s.ok and s.status.get(o) == "full" else math.nan
                       for o in options], dtype=float)   # an endpoint's bound is not a probability
        rows.append(np.exp(lp - np.logaddexp.reduce(lp)) if np.isfinite(lp).all() else np.full(len(lp), math.nan))
    return pd.DataFrame(np.array(rows, dtype=float).reshape(len(texts), len(classes)), index=index, columns=classes)


def _statement(row: pd.Series) -> str:
    present = [c for c in row.index if bool(row[c])]
    if not present:
        return "Cardiologist's report: this ECG has none of the five superclasses."
    names = [CLASS_NAMES.get(c, c) for c in present]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Cardiologist's report: this ECG shows {listed} and nothing else."


def state_classes(prompts: Sequence, stated: pd.DataFrame) -> list[str]:
    """The prompts with a report line naming each record's ``stated`` superclasses (records ×
    classes, booleans, aligned by position) inserted before the instructions (at the end of a
    prompt without them)."""
    texts = [_text(p) for p in prompts]
    if len(texts) != len(stated):
        raise ValueError(f"{len(texts)} prompts for {len(stated)} rows of stated classes")
    out = []
    for text, (_, row) in zip(texts, stated.iterrows()):
        line = _statement(row)
        if INSTRUCTIONS_HEADER in text:
            head, tail = text.split(INSTRUCTIONS_HEADER, 1)
            out.append(f"{head}{line}\n\n{INSTRUCTIONS_HEADER}{tail}")
        else:
            out.append(f"{text}\n\n{line}")
    return out


def balanced_sample(truth: pd.DataFrame, per_class: int = 4, seed: int = 0) -> pd.Index:
    """Up to ``per_class`` positive records of each class (drawn in turn, rarest class first, a
    record counting for all its classes), in the truth's order: every class gets positives and
    negatives, so that a control's per-class AUROC is defined on a few records."""
    rng = np.random.default_rng(seed)
    chosen: list = []
    for c in truth.sum().sort_values().index:
        have = int(truth.loc[chosen, c].sum()) if chosen else 0
        pool = [i for i in truth.index[truth[c].astype(bool)] if i not in chosen]
        take = max(0, min(per_class - have, len(pool)))
        chosen += list(rng.choice(np.array(pool, dtype=object), size=take, replace=False)) if take else []
    return truth.index[truth.index.isin(chosen)]


def shuffled_truth(truth: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The truth's rows permuted across records (the index kept): what the negative control states."""
    order = np.random.default_rng(seed).permutation(len(truth))
    return pd.DataFrame(truth.to_numpy()[order], index=truth.index, columns=truth.columns)


@dataclass
class ControlResult:
    """One design's controls: ``table`` (rows (control, class) incl. ``macro``; columns estimate,
    low, high), the scores behind it and whether it :func:`passed`."""

    design: str
    table: pd.DataFrame
    positive_scores: pd.DataFrame
    negative_scores: pd.DataFrame
    passed: bool

    def summary(self) -> dict:
        macro = self.table.xs("macro", level="class")
        return {"design": self.design, "passed": self.passed,
                "positive": round(float(macro.loc["positive", "estimate"]), 3),
                "negative": round(float(macro.loc["negative", "estimate"]), 3),
                "negative_low": round(float(macro.loc["negative", "low"]), 3),
                "negative_high": round(float(macro.loc["negative", "high"]), 3)}


def passed(table: pd.DataFrame, macro: float = PASS_MACRO, per_class: float = PASS_CLASS) -> bool:
    """The design passes when the positive control's macro AUROC is ≥ ``macro``, each class's is
    ≥ ``per_class`` and the negative control's macro interval covers 0.5."""
    pos = table.xs("positive", level="control")["estimate"]
    neg = table.loc[("negative", "macro")]
    classes = [c for c in pos.index if c != "macro"]
    return bool(pos["macro"] >= macro and (pos[classes].dropna() >= per_class).all()
                and neg["low"] <= 0.5 <= neg["high"])


def run_controls(llm, prompts: Sequence, truth: pd.DataFrame, design: str = DEFAULT_DESIGN,
                 n_boot: int = 500, seed: int = 0, progress: bool | None = None) -> ControlResult:
    """Both controls of one design on ``prompts`` (one per record, aligned with ``truth``'s rows)."""
    if len(prompts) != len(truth):
        raise ValueError(f"{len(prompts)} prompts for {len(truth)} records")
    classes = list(truth.columns)
    shuffled = shuffled_truth(truth, seed)
    scores, tables = {}, {}
    for control, stated in (("positive", truth), ("negative", shuffled)):
        scores[control] = design_scores(llm, state_classes(prompts, stated), design, classes,
                                        ids=truth.index, progress=progress)
        tables[control] = auroc_ci(truth.astype(float), scores[control], classes, n_boot=n_boot,
                                   seed=seed)[["estimate", "low", "high"]]
    table = pd.concat(tables, names=["control", "class"])
    return ControlResult(design, table, scores["positive"], scores["negative"], passed(table))


def control_table(results) -> pd.DataFrame:
    """Rows: designs (``results``: a list of :class:`ControlResult`, or a mapping of row labels to
    them); columns: (control, class) AUROC as ``estimate [low, high]`` and ``passed``."""
    rows = {}
    results = results if isinstance(results, dict) else {r.design: r for r in results}
    for label, r in results.items():
        row = {}
        for (control, cls), v in r.table.iterrows():
            row[(control, cls)] = (f"{v['estimate']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"
                                   if v["estimate"] == v["estimate"] else "–")
        row[("", "passed")] = "yes" if r.passed else "no"
        rows[label] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    out.index.name = "design"
    return out


#: the prompt parts left out one at a time by :func:`inversion_by_prompt_part`
PROMPT_PARTS = {"rule results": ("rules",),
                "retrieved text": ("feature_knowledge", "condition_knowledge"),
                "features": ("features",)}


def without_parts(prompt, parts: Sequence[str]) -> str:
    """A built prompt's text with some of its parts (:attr:`BuiltPrompt.parts` keys) left out."""
    if not hasattr(prompt, "parts"):
        raise TypeError("without_parts needs a BuiltPrompt (its parts), not a string")
    return "\n\n".join(v for k, v in prompt.parts.items() if k not in set(parts))


def inversion_by_prompt_part(llm, prompts: Sequence, truth: pd.DataFrame, design: str = DEFAULT_DESIGN,
                             parts: dict | None = None, progress: bool | None = None) -> pd.DataFrame:
    """Per class and prompt variant (the whole prompt, then each part of ``parts`` left out): the
    mean score of the class's positive and negative records and the AUROC. A part that turns a
    class's AUROC below 0.5 when present (and not when left out) is what inverts it."""
    parts = PROMPT_PARTS if parts is None else parts
    classes = list(truth.columns)
    variants = {"whole prompt": [_text(p) for p in prompts]}
    for name, keys in parts.items():
        if any(k in p.parts for p in prompts for k in keys):
            variants[f"without {name}"] = [without_parts(p, keys) for p in prompts]
    rows = []
    for variant, texts in variants.items():
        scores = design_scores(llm, texts, design, classes, ids=truth.index, progress=progress)
        aucs = auroc(truth.astype(float), scores, classes)
        for c in classes:
            y = truth[c].astype(bool).to_numpy()
            s = scores[c].to_numpy(dtype=float)
            rows.append({"prompt": variant, "class": c,
                         "mean score, positive records": float(np.nanmean(s[y])) if y.any() else math.nan,
                         "mean score, negative records": float(np.nanmean(s[~y])) if (~y).any() else math.nan,
                         "AUROC": aucs[c]})
        rows.append({"prompt": variant, "class": "macro", "AUROC": aucs["macro"]})
    return pd.DataFrame(rows).set_index(["prompt", "class"])
