"""ALFRED label probabilities: P(yes) per superclass from the LLM's option scores, not its text.

The 135M local model answers "yes" to every class when it writes its answer, so configurations
cannot be told apart by their labels. Its *probabilities* still vary from record to record, and
AUROC (with a threshold chosen on validation data) compares configurations on them.

* :func:`label_scores` / :func:`label_probabilities`: for each record's prompt and each class,
  the answer is prefilled with the class's own line start (``"NORM:"``, ``"MI:"``... the format
  of :data:`ecgkit.alfred.prompt.RESPONSE_FORMAT`, whose lines read ``CLASS: yes or no``) and
  the next token is scored among the yes/no variants (``" yes"``, ``"yes"``, ``" Yes"``,
  ``"Yes"`` and the same for no). The probability masses of the variants that are single tokens
  are summed, and ``P(yes) / (P(yes) + P(no))`` is the class's probability. The five questions
  of a record share one prefill of the prompt (:meth:`ecgkit.llm.LocalLLM.option_logprobs`; an
  endpoint gets one request per class, with ``top_logprobs``). Scores are cached per item when
  the LLM is a :class:`~ecgkit.llm.CachedLLM`.
* :func:`diagnose_probabilities`: the same for measured records and a configuration (the
  prompts of :func:`ecgkit.alfred.pipeline.diagnose`).
* :func:`threshold_from_validation`: per class, the threshold maximising Youden's J
  (sensitivity + specificity - 1) on validation records (PTB-XL fold 9), never on the test
  records; :func:`apply_thresholds` turns probabilities into labels.

AUROC with bootstrap intervals, and the paired difference of two configurations, are
:func:`ecgkit.metrics.auroc_ci` and :func:`ecgkit.metrics.paired_auroc_difference`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .answer import SUPERCLASSES
from .prompt import SYSTEM_PROMPT

__all__ = ["YES_VARIANTS", "NO_VARIANTS", "answer_prefix", "label_items", "label_scores",
           "label_probabilities", "diagnose_probabilities", "diagnose_probabilities_many",
           "threshold_from_validation",
           "apply_thresholds"]

log = logging.getLogger(__name__)

YES_VARIANTS = (" yes", "yes", " Yes", "Yes")
NO_VARIANTS = (" no", "no", " No", "No")


def answer_prefix(cls: str) -> str:
    """The answer prefix for one class: its line start in the response format (``"MI:"``)."""
    return f"{cls}:"


def _text(prompt) -> str:
    return prompt.text if hasattr(prompt, "text") else prompt


def label_items(prompts: Sequence, classes: Sequence[str] = SUPERCLASSES) -> list[tuple]:
    """The scoring items ``(prompt, prefix, yes/no variants)``: record-major, class-minor."""
    options = list(YES_VARIANTS + NO_VARIANTS)
    return [(_text(p), answer_prefix(c), options) for p in prompts for c in classes]


def _mass(scores, variants) -> tuple[float, int]:
    """Summed probability of the variants that are single tokens and were scored exactly (an
    endpoint's variant missing from its top list is left out: its bound is not a probability)."""
    total, used = 0.0, 0
    for v in variants:
        lp = scores.logprobs.get(v, float("nan"))
        if lp != lp or scores.status.get(v) != "full" or scores.tokens.get(v) != 1:
            continue
        total += math.exp(lp)
        used += 1
    return total, used


def label_scores(llm, prompts: Sequence, classes: Sequence[str] = SUPERCLASSES, ids=None,
                 system: str | None = SYSTEM_PROMPT, progress: bool | None = None) -> pd.DataFrame:
    """One row per (record, class): ``p_yes`` and ``p_no`` (summed probability of the single-token
    yes / no variants after the class's prefix), ``mass`` (their sum: how much of the next-token
    probability the answer format gets), ``probability`` (``p_yes / mass``, NaN when neither was
    scored) and ``error``.

    ``prompts``: the user prompts (strings or :class:`~ecgkit.alfred.prompt.BuiltPrompt`), one per
    record; ``ids``: the records' ids (default 0..n-1); ``llm``: a backend that can score options
    (:attr:`ecgkit.llm.LLM.option_scoring`).
    """
    prompts = list(prompts)
    classes = list(classes)
    ids = list(range(len(prompts))) if ids is None else list(ids)
    if len(ids) != len(prompts):
        raise ValueError(f"{len(ids)} ids for {len(prompts)} prompts")
    if not getattr(llm, "option_scoring", None):
        raise ValueError(f"{getattr(llm, 'name', llm)!r} cannot score options (no log-probabilities)")
    items = label_items(prompts, classes)
    scored = llm.option_logprobs(items, system=system, progress=progress) if items else []
    rows = []
    for k, scores in enumerate(scored):
        record, cls = ids[k // len(classes)], classes[k % len(classes)]
        p_yes, n_yes = _mass(scores, YES_VARIANTS)
        p_no, n_no = _mass(scores, NO_VARIANTS)
        mass = p_yes + p_no
        rows.append({"record": record, "class": cls, "p_yes": p_yes if n_yes else float("nan"),
                     "p_no": p_no if n_no else float("nan"), "mass": mass,
                     "probability": p_yes / mass if scores.ok and mass > 0 else float("nan"),
                     "error": scores.error or ""})
    return pd.DataFrame(rows, columns=["record", "class", "p_yes", "p_no", "mass", "probability", "error"])


def label_probabilities(llm, prompts: Sequence, classes: Sequence[str] = SUPERCLASSES, ids=None,
                        system: str | None = SYSTEM_PROMPT, progress: bool | None = None) -> pd.DataFrame:
    """Records × classes of ``P(yes) / (P(yes) + P(no))`` (see :func:`label_scores`)."""
    scores = label_scores(llm, prompts, classes, ids=ids, system=system, progress=progress)
    index = pd.Index(list(range(len(prompts))) if ids is None else list(ids), name="record")
    if scores.empty:
        return pd.DataFrame(index=index, columns=list(classes), dtype=float)
    table = scores.pivot(index="record", columns="class", values="probability")
    return table.reindex(index=index, columns=list(classes)).astype(float)


def diagnose_probabilities(measured, config="Proposed", llm=None, index=None, budget=None,
                           classes: Sequence[str] = SUPERCLASSES,
                           progress: bool | None = None) -> pd.DataFrame:
    """:func:`label_probabilities` for measured records with the prompts of one configuration
    (as :func:`ecgkit.alfred.pipeline.diagnose` builds them, with ``budget``, a
    :class:`~ecgkit.alfred.prompt.PromptBudget`); rows are the records' ids."""
    from .prompt import get_config

    cfg = get_config(config)
    if not cfg.llm:
        raise ValueError(f"configuration {cfg.name!r} has no LLM")
    if llm is None:
        raise ValueError(f"configuration {cfg.name!r} needs an LLM")
    prompts = measured.prompts(cfg, index, budget)
    return label_probabilities(llm, prompts, classes, ids=list(measured.ids), progress=progress)


def diagnose_probabilities_many(measured, configs: Sequence[str], llm=None, index=None, budget=None,
                                classes: Sequence[str] = SUPERCLASSES,
                                progress: bool | None = None) -> dict:
    """:func:`diagnose_probabilities` for several configurations in one scoring call, so that a
    local model reads each record's shared prompt start (features, rules) once for all of them
    (:data:`ecgkit.llm.local.REUSE_PREFIX`). Returns ``{configuration: records × classes}``."""
    from .prompt import get_config

    if llm is None:
        raise ValueError("label probabilities need an LLM")
    prompts, keys = [], []
    for name in configs:
        cfg = get_config(name)
        if not cfg.llm:
            raise ValueError(f"configuration {cfg.name!r} has no LLM")
        prompts += measured.prompts(cfg, index, budget)
        keys += [(name, rid) for rid in measured.ids]
    probs = label_probabilities(llm, prompts, classes, ids=list(range(len(keys))), progress=progress)
    out = {}
    for name in configs:
        rows = [k for k, (n, _) in enumerate(keys) if n == name]
        frame = probs.iloc[rows].copy()
        frame.index = pd.Index([keys[k][1] for k in rows], name=probs.index.name)
        out[name] = frame
    return out


def threshold_from_validation(probs_val: pd.DataFrame, y_val: pd.DataFrame,
                              classes: Sequence[str] | None = None, default: float = 0.5) -> pd.Series:
    """Per class, the threshold on validation probabilities that maximises Youden's J.

    ``probs_val`` (records × classes) and ``y_val`` (the same records' true labels) come from the
    validation fold only (PTB-XL fold 9); apply the result to the test records with
    :func:`apply_thresholds` (a record is positive when its probability is ``>=`` the threshold).
    Among thresholds with the same J the one closest to the middle of the tied interval is taken,
    as the midpoint between that validation probability and the next lower one. A class whose
    validation labels are all one value (or whose probabilities are all missing) gets
    ``default`` (with a warning).
    """
    from sklearn.metrics import roc_curve

    classes = list(probs_val.columns) if classes is None else list(classes)
    if len(probs_val) != len(y_val):
        raise ValueError(f"{len(probs_val)} validation probabilities for {len(y_val)} labels")
    out = {}
    for c in classes:
        p = np.asarray(probs_val[c], dtype=float)
        y = np.asarray(y_val[c], dtype=float)
        keep = ~np.isnan(p)
        p, y = p[keep], y[keep].astype(bool)
        if p.size == 0 or y.all() or not y.any():
            log.warning("class %s: validation labels are all one value (or no probabilities); threshold %s",
                        c, default)
            out[c] = float(default)
            continue
        fpr, tpr, thresholds = roc_curve(y, p)
        j = tpr - fpr
        best = np.flatnonzero(np.isclose(j, j.max()))
        k = best[len(best) // 2]
        t = float(thresholds[k])
        if not np.isfinite(t):   # "nothing positive": just above the highest probability
            t = float(np.nextafter(p.max(), np.inf))
        else:   # the midpoint to the next lower validation probability (robust on new records)
            lower = p[p < t]
            if lower.size:
                t = float((t + lower.max()) / 2)
        out[c] = t
    return pd.Series(out, name="threshold", dtype=float)


def apply_thresholds(probs: pd.DataFrame, thresholds: pd.Series) -> pd.DataFrame:
    """Labels from probabilities: True where ``probability >= threshold``; None where missing."""
    out = pd.DataFrame(index=probs.index, columns=list(thresholds.index), dtype=object)
    for c, t in thresholds.items():
        p = probs[c].astype(float)
        out[c] = [None if v != v else bool(v >= t) for v in p]
    return out
