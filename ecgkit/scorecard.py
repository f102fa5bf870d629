"""Which of the papers' claims held here: one verdict per claim, chosen from a recorded comparison.

* :func:`verdict`: the one rule that turns a comparison (our estimate, its 95 % interval or test,
  the number of items it rests on) and the paper's direction into a verdict from :data:`VERDICTS`.
* :data:`CLAIMS`: the claims, one declarative row each: the paper, what it claims, which recorded
  table or metric of which results file is the evidence, the paper's number (keys into
  ``resources/paper_numbers.csv``) or, where it reports none, its words, and the chapter section.
* :func:`scorecard`: the claims against the recorded results, one row each (the book's scorecard
  page and the opening of every chapter render it with :func:`show_scorecard`).

A claim whose comparison is not recorded says so ("not recorded"); nothing is computed that the
notebooks did not record, apart from reading a difference off two recorded numbers.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

#: the verdicts, in the order the scorecard counts them
REPRODUCED, NOT_REPRODUCED, OPPOSITE, NOT_TESTABLE, NOT_RECORDED = (
    "reproduced", "not reproduced", "opposite", "not testable at this scale", "not recorded")
VERDICTS = (REPRODUCED, NOT_REPRODUCED, OPPOSITE, NOT_TESTABLE, NOT_RECORDED)
#: below this many items (records, questions, statements, patients) a comparison is not a test
MIN_ITEMS = 10
#: a comparison decided by a test instead of an interval: significant below this p
ALPHA = 0.05


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Comparison:
    """What a results file recorded for one claim. ``estimate`` is ours (a difference, or a level
    when the claim is the paper's value itself), ``low``/``high`` its 95 % interval, ``p`` a
    two-sided test where no interval was recorded, ``items`` how many records, questions or
    statements it rests on, ``reference`` the value it is tested against (0 for a difference),
    ``untestable`` why this data cannot test the claim at all, ``data`` the data it ran on."""

    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    p: float | None = None
    items: int | None = None
    reference: float = 0.0
    untestable: str = ""
    missing: str = ""
    data: str = ""
    items_name: str = "items"


@dataclass(frozen=True)
class Verdict:
    label: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}" if self.reason else self.label


def _side(c: Comparison) -> int | None:
    """+1 / −1 when the interval (or the test) puts the estimate clearly above / below the
    reference, 0 when it does not, None when neither an interval nor a test was recorded."""
    if _finite(c.low) and _finite(c.high):
        return 1 if c.low > c.reference else -1 if c.high < c.reference else 0
    if _finite(c.p):
        return int(np.sign(c.estimate - c.reference)) if c.p < ALPHA else 0
    return None


def verdict(direction: int, c: Comparison | None, min_items: int = MIN_ITEMS) -> Verdict:
    """The verdict on a claim from its recorded comparison.

    ``direction``: +1 when the paper found the estimate above ``c.reference`` (A beats B: the
    difference above 0), −1 below, 0 when the claim is the paper's value itself (``reference``).
    Not recorded: no estimate (or no interval and no test). Not testable at this scale: fewer than
    ``min_items`` items, or ``c.untestable``. Otherwise, for a direction: the interval excludes
    the reference on the paper's side → reproduced, on the other → opposite, else not
    reproduced; for a value: the interval holds the paper's value → reproduced, else not
    reproduced (above or below it)."""
    if direction not in (-1, 0, 1):
        raise ValueError(f"direction must be +1, -1 or 0 (the paper's value), not {direction!r}")
    if c is None or c.missing:
        return Verdict(NOT_RECORDED, c.missing if c is not None else "no comparison recorded")
    if c.untestable:
        return Verdict(NOT_TESTABLE, c.untestable)
    if not _finite(c.estimate):
        return Verdict(NOT_RECORDED, "the results hold no estimate for it")
    if c.items is not None and c.items < min_items:
        return Verdict(NOT_TESTABLE, f"rests on {c.items} {c.items_name}, fewer than {min_items}")
    side = _side(c)
    if side is None:
        return Verdict(NOT_RECORDED, "recorded without an interval or a test")
    how = "interval" if _finite(c.low) and _finite(c.high) else f"test (p = {c.p:.2g})"
    ref = f"{c.reference:g}"
    if direction == 0:
        if side == 0:
            return Verdict(REPRODUCED, f"the {how} holds the paper's value {ref}")
        return Verdict(NOT_REPRODUCED, f"the {how} lies {'above' if side > 0 else 'below'} the paper's value {ref}")
    said = "above" if direction > 0 else "below"
    if side == direction:
        return Verdict(REPRODUCED, f"the {how} lies {said} {ref}, as in the paper")
    if side == -direction:
        return Verdict(OPPOSITE, f"the {how} lies {'below' if direction > 0 else 'above'} {ref}, "
                                 f"against the paper")
    return Verdict(NOT_REPRODUCED, f"the {how} includes {ref}: no difference shown on "
                                   f"{c.items if c.items is not None else '?'} {c.items_name}")


# ----------------------------------------------------------------------------- reading the evidence
# Each reader takes a notebook's Results and returns a Comparison (``missing`` says what is absent).


def _absent(what: str) -> Comparison:
    return Comparison(missing=what)


def table_row(table: str, row, estimate: str = "difference", low: str = "low", high: str = "high",
              items: str | None = None, p: str | None = None, items_name: str = "records",
              data: str | None = None) -> Callable:
    """A row of a recorded table: its estimate, interval (or p) and item count columns. ``row`` is
    an index label, or a callable that picks the label from the index."""
    def read(r) -> Comparison:
        if table not in r.tables:
            return _absent(f"{r.notebook} recorded no table {table!r}")
        frame = r.tables[table]
        key = row(frame.index) if callable(row) else row
        if key is None or key not in frame.index:
            return _absent(f"no row {key if key is not None else ''} in {table!r}".replace("  ", " "))
        line = frame.loc[key]
        get = lambda col: line[col] if col and col in line.index and _finite(line[col]) else None  # noqa: E731
        return Comparison(get(estimate), get(low), get(high), get(p) if p else None,
                          int(line[items]) if items and _finite(line.get(items)) else None,
                          data=data(key) if callable(data) else (data or ""), items_name=items_name)
    return read


def task_row(prefix: str, baseline: str):
    """The (task, baseline) row of ESI's comparisons whose task name starts with ``prefix``."""
    def pick(index):
        rows = [k for k in index if str(k[0]).startswith(prefix) and k[1] == baseline]
        return rows[0] if rows else None
    return pick


def mcnemar_row(comparison: str, method: str) -> Callable:
    """A paired accuracy difference from the exact McNemar table: (only A right − only B right)
    / items, with the test's p."""
    def read(r) -> Comparison:
        if "mcnemar" not in r.tables or (comparison, method) not in r.tables["mcnemar"].index:
            return _absent(f"no McNemar test of {comparison} ({method}) recorded")
        line = r.tables["mcnemar"].loc[(comparison, method)]
        n = int(line["items"])
        diff = (line["only A right"] - line["only B right"]) / n if n else None
        return Comparison(diff, p=float(line["p"]), items=n, items_name="questions")
    return read


def agreement_row(a: str, b: str, column: str = "spearman") -> Callable:
    """The agreement of two rating methods (e.g. the judge and an expert) on the same answers."""
    def read(r) -> Comparison:
        if "agreement" not in r.tables or not len(r.tables["agreement"]):
            return _absent("no agreement table: no filled expert sheet was imported")
        frame = r.tables["agreement"]
        rows = frame[frame["method_a"].astype(str).str.contains(a) & frame["method_b"].astype(str).str.contains(b)
                     | frame["method_a"].astype(str).str.contains(b) & frame["method_b"].astype(str).str.contains(a)]
        if not len(rows):
            return _absent(f"no {a} against {b} agreement: no filled expert sheet was imported")
        line = rows.iloc[0]
        return Comparison(line[column] if _finite(line[column]) else None, p=line.get("spearman_p"),
                          items=int(line["n"]), items_name="answers")
    return read


def ablation_difference(setting: str, against: str = "ESI (full)", column_suffix: str = "linear probe AUC") -> Callable:
    """ESI's ablation table: the full model minus ``setting`` on the first task (means over the
    ablation seeds; no interval is recorded for it)."""
    def read(r) -> Comparison:
        if "ablation" not in r.tables:
            return _absent("no ablation table")
        frame = r.tables["ablation"]
        cols = [c for c in frame.columns if str(c).endswith(column_suffix)]
        if not cols or setting not in frame.index or against not in frame.index:
            return _absent(f"no {column_suffix} for {setting} in the ablation table")
        col = cols[0]
        return Comparison(frame.loc[against, col] - frame.loc[setting, col], data=str(col).split(":")[0],
                          items=_task_records(r, str(col).split(":")[0]), items_name="test records")
    return read


def identification_difference(prefix: str, a: str = "ESI", b: str = "SimCLR",
                              column: str = "lp_accuracy") -> Callable:
    """Identification linear-probe accuracy of ``a`` minus ``b`` on the set whose name starts with
    ``prefix`` (means over seeds; no interval is recorded for the difference)."""
    def read(r) -> Comparison:
        if "identification" not in r.tables:
            return _absent("no identification table")
        frame = r.tables["identification"]
        sets = [t for t in dict.fromkeys(frame.index.get_level_values(0)) if str(t).startswith(prefix)]
        if not sets or (sets[0], a) not in frame.index or (sets[0], b) not in frame.index:
            return _absent(f"no identification set {prefix!r} with {a} and {b}")
        ta, tb = frame.loc[(sets[0], a)], frame.loc[(sets[0], b)]
        return Comparison(ta[column] - tb[column], items=int(ta["patients"]), items_name="patients",
                          data=f"{sets[0]}")
    return read


def zero_shot_above_chance(prefix: str = "") -> Callable:
    """Zero-shot macro AUC on the first task whose name starts with ``prefix``, against chance (0.5);
    the interval is Student's t over the seeds, from the recorded mean and sd (as the
    classification table's)."""
    def read(r) -> Comparison:
        if "zero_shot" not in r.tables:
            return _absent("no zero-shot table")
        frame = r.tables["zero_shot"]
        tasks = [t for t in frame.index if str(t).startswith(prefix)]
        if not tasks:
            return _absent(f"no zero-shot task {prefix!r} in this run")
        line = frame.loc[tasks[0]]
        n = len(r.info.get("seeds") or [])
        low = high = None
        if n >= 2 and _finite(line["AUC sd"]):
            from scipy.stats import t as student

            half = float(line["AUC sd"]) * student.ppf(0.975, n - 1) / math.sqrt(n)
            low, high = line["AUC mean"] - half, line["AUC mean"] + half
        items = _task_records(r, tasks[0])
        return Comparison(line["AUC mean"], low, high, items=items, reference=0.5, data=f"{tasks[0]}; {n} seeds",
                          items_name="test records")
    return read


def _task_records(r, task) -> int | None:
    frame = r.tables.get("comparisons")
    if frame is None or "test records" not in frame.columns:
        return None
    rows = frame[frame.index.get_level_values(0) == task]
    return int(rows["test records"].iloc[0]) if len(rows) else None


def cell_rate(table: str, row: str, metric: str, reference: float | None = None,
              items: tuple = ("run", "records")) -> Callable:
    """A rate of ALFRED's ablation table, recorded as ``estimate [low, high]`` text (the interval
    rounded to two decimals), against the paper's value ``reference``."""
    import re

    def read(r) -> Comparison:
        if table not in r.tables or row not in r.tables[table].index:
            return _absent(f"no {row} row in {table!r}")
        line = r.tables[table].loc[row]
        text = str(line[("ours", metric)])
        numbers = [float(x) for x in re.findall(r"-?\d+\.\d+", text.split("(")[0])]
        n = int(line[items]) if items in line.index else None
        if not numbers:
            return Comparison(None, items=n)
        low, high = (numbers[1], numbers[2]) if len(numbers) >= 3 else (None, None)
        return Comparison(numbers[0], low, high, items=n, reference=reference if reference is not None else 0.0,
                          items_name="records")
    return read


def metric_value(name: str, estimate: str = "ours", items_metric: str | None = None,
                 items_name: str = "items") -> Callable:
    """A recorded metric's number (``estimate`` key) with the item count of another metric."""
    def read(r) -> Comparison:
        if name not in r.metrics:
            return _absent(f"{r.notebook} recorded no metric {name!r}")
        m = r.metrics[name]
        value = m.get(estimate) if estimate != "value" else m.get("value")
        n = r.metrics.get(items_metric, {}).get("value") if items_metric else None
        return Comparison(value if _finite(value) else None, items=int(n) if _finite(n) else None,
                          items_name=items_name)
    return read


def gap_row(row: str, reference: float = 0.0, needs_gap: bool = False) -> Callable:
    """A row of chapter 09's gap table (estimate, interval) on the test records; with
    ``needs_gap`` the claim cannot be tested when the multimodal model is not clearly better than
    signal-only (there is no gap to close)."""
    def read(r) -> Comparison:
        if "gap_closed" not in r.tables:
            return _absent("no gap table")
        gap = r.tables["gap_closed"]
        line = gap.loc[row]
        n = (r.metrics.get("records", {}).get("value") or {}).get("test")
        untestable = ""
        if needs_gap and not (_finite(gap.loc["multimodal − signal-only", "low"])
                              and gap.loc["multimodal − signal-only", "low"] > 0):
            d = gap.loc["multimodal − signal-only"]
            untestable = (f"no gap to close: multimodal − signal-only = {d['estimate']:+.3f} "
                          f"[{d['low']:+.3f}, {d['high']:+.3f}] is not clearly above 0")
        return Comparison(line["estimate"] if _finite(line["estimate"]) else None,
                          line["low"] if _finite(line["low"]) else None,
                          line["high"] if _finite(line["high"]) else None,
                          items=int(n) if _finite(n) else None, reference=reference, untestable=untestable,
                          items_name="test records")
    return read


def lab_heads(r) -> Comparison:
    """The lab-abnormality heads: how many beat chance is recorded per head, but no pooled
    comparison (all heads together against 0.5) is."""
    if "lab_heads" not in r.tables:
        if "lab_head_auroc_mean" in r.metrics:
            return Comparison(untestable="no laboratory values in this data (real PTB-XL: biometrics only), "
                                         "so there are no lab heads")
        return _absent("no lab-head table")
    heads = r.tables["lab_heads"]
    above = int((heads["low"] > 0.5).sum())
    return Comparison(missing=f"{above} of {len(heads)} heads have an interval above 0.5; "
                              "no pooled comparison of the heads is recorded")


# ----------------------------------------------------------------------------- the claims


@dataclass(frozen=True)
class Claim:
    """One claim of one paper and where its evidence is recorded.

    ``paper_number`` / ``versus``: (paper, table, configuration, metric) keys into the table of
    published numbers; ``paper_says``: the paper's words where it reports no number;
    ``section``: the chapter page (and heading anchor) with the evidence."""

    paper: str
    claim: str
    notebook: str
    read: Callable
    measure: str
    direction: int = 1
    paper_number: tuple | None = None
    versus: tuple | None = None
    paper_says: str = ""
    source: str = ""
    section: str = ""
    data: str = ""


PAPERS = {
    "ALFRED": "Yu J., Park J., Park T., Kim G., Lee J., Lee M. S., Kwon J., Son J. M., Jo Y.-Y. "
              "*ALFRED: Ask a Large-language model For Reliable ECG Diagnosis*. arXiv:2505.03781 (2025).",
    "ESI": "Yu H., Guo P., Sano A. *ECG Semantic Integrator (ESI): A Foundation ECG Model Pretrained with "
           "LLM-Enhanced Cardiological Text*. Transactions on Machine Learning Research (2024).",
    "ECG-LLM": "Ahrens L., Haverkamp W., Strodthoff N. *ECG-LLM: training and evaluation of domain-specific "
               "large language models for electrocardiography*. arXiv:2510.18339 (2025).",
    "Clinical knowledge transfer": "Fernandes et al. *Transferring Clinical Knowledge into ECGs Representation*. "
                                   "arXiv:2512.07021 (2025).",
}

_ALF, _ESI, _LLM, _CKT = "03_alfred_evaluation", "05_esi_pretraining", "08_ecgllm_evaluation", "09_clinical_transfer"
_PAIRED = "03_alfred_evaluation.html#label-probabilities-on-every-fold-10-record"
_ESI_CLS = "05_esi_pretraining.html#classification-esi-against-its-baselines"


def instrument_checked(read: Callable) -> Callable:
    """``read``, unless chapter 03's label-probability instrument failed its positive control:
    then the claim is not testable with this model (the control's numbers say why)."""
    def checked(r) -> Comparison:
        m = r.metrics.get("label_probability_instrument_passed")
        if m is not None and not m.get("value"):
            return Comparison(untestable=(
                f"not testable with this model: its label probabilities failed the positive control "
                f"(macro AUROC {m.get('positive', float('nan')):.2f} with the true classes stated in the prompt, "
                f"{m.get('negative', float('nan')):.2f} with shuffled ones, on {m.get('records', '?')} records); "
                "an endpoint model (ECGKIT_LLM_BASE_URL) tests it"))
        return read(r)
    return checked


def _alfred(config, metric):
    return ("alfred", "ablation", config, metric)


def _rate_claim(metric):
    return Claim("ALFRED", f"Proposed reaches the paper's {metric}", _ALF,
                 cell_rate("ablation", "Proposed", metric), f"macro {metric}, text answers", 0,
                 _alfred("Proposed", metric), section="03_alfred_evaluation.html#the-ablation-table")


_BASELINE_NAMES = {"SimCLR": "SimCLR", "supervised (scratch)": "the supervised encoder",
                   "random init": "a random, untrained encoder"}


def _esi_vs(baseline, config, prefix, where):
    return Claim("ESI", f"ESI beats {_BASELINE_NAMES[baseline]} ({where})", _ESI,
                 table_row("comparisons", task_row(prefix, baseline), items="test records", p=None,
                           items_name="test records", data=lambda k: k[0]),
                 "linear-probe macro AUC, ESI − baseline", 1,
                 ("esi", "classification", "ESI-tiny linear probe", "AUC"),
                 ("esi", "classification", config, "AUC") if config else None,
                 paper_says="" if config else "no random-encoder row in the paper; the book's floor",
                 section=_ESI_CLS)


CLAIMS: tuple[Claim, ...] = (
    # ALFRED (Table 1 and section 3.2)
    Claim("ALFRED", "Rule results help the LLM (Ablation 1 over Base)", _ALF,
          instrument_checked(table_row("paired_comparisons", "Ablation 1 − Base", items="records")),
          "macro AUROC of the label probabilities, A − B", 1, _alfred("Ablation 1", "Sens"), _alfred("Base", "Sens"),
          section=_PAIRED),
    Claim("ALFRED", "Expert knowledge and rules: Proposed over Base", _ALF,
          instrument_checked(table_row("paired_comparisons", "Proposed − Base", items="records")),
          "macro AUROC of the label probabilities, A − B", 1, _alfred("Proposed", "Sens"), _alfred("Base", "Sens"),
          section=_PAIRED),
    Claim("ALFRED", "Expert knowledge helps on top of rules (Ablation 3 over Ablation 1)", _ALF,
          instrument_checked(table_row("paired_comparisons", "Ablation 3 − Ablation 1", items="records")),
          "macro AUROC of the label probabilities, A − B", 1, _alfred("Ablation 3", "PPV"),
          _alfred("Ablation 1", "PPV"), section=_PAIRED),
    *(_rate_claim(m) for m in ("PPV", "NPV", "Sens", "Spec")),
    # ESI (Tables 2-5, appendix Table 8)
    _esi_vs("SimCLR", "SimCLR linear probe", "ptbxl", "real PTB-XL"),
    _esi_vs("SimCLR", "SimCLR linear probe", "synthetic", "synthetic cohort"),
    _esi_vs("supervised (scratch)", "supervised ConvNeXt-tiny", "ptbxl", "real PTB-XL"),
    _esi_vs("supervised (scratch)", "supervised ConvNeXt-tiny", "synthetic", "synthetic cohort"),
    _esi_vs("random init", None, "ptbxl", "real PTB-XL"),
    _esi_vs("random init", None, "synthetic", "synthetic cohort"),
    Claim("ESI", "Zero-shot diagnosis works (above chance, 0.5)", _ESI, zero_shot_above_chance(),
          "zero-shot macro AUC", 1, ("esi", "zero_shot", "ESI zero-shot", "AUC"),
          section="05_esi_pretraining.html#zero-shot"),
    Claim("ESI", "CQA descriptions beat plain labels (w/o CQA)", _ESI, ablation_difference("w/o CQA"),
          "linear-probe AUC, full − ablated", 1, ("esi", "ablation", "ESI (full)", "arrhythmia"),
          ("esi", "ablation", "w/o CQA", "arrhythmia"), section="05_esi_pretraining.html#ablations-the-paper-s-table-5"),
    Claim("ESI", "The captioning loss helps (w/o L_cap)", _ESI, ablation_difference("w/o L_cap"),
          "linear-probe AUC, full − ablated", 1, ("esi", "ablation", "ESI (full)", "arrhythmia"),
          ("esi", "ablation", "w/o L_cap", "arrhythmia"), section="05_esi_pretraining.html#ablations-the-paper-s-table-5"),
    Claim("ESI", "The contrastive loss helps (w/o L_con)", _ESI, ablation_difference("w/o L_con"),
          "linear-probe AUC, full − ablated", 1, ("esi", "ablation", "ESI (full)", "arrhythmia"),
          ("esi", "ablation", "w/o L_con", "arrhythmia"), section="05_esi_pretraining.html#ablations-the-paper-s-table-5"),
    Claim("ESI", "ESI identifies patients better than SimCLR (real PTB-XL)", _ESI, identification_difference("ptbxl"),
          "identification linear-probe accuracy, ESI − SimCLR", 1, ("esi", "identification", "ESI linear probe", "accuracy"),
          ("esi", "identification", "SimCLR linear probe", "accuracy"), section="05_esi_pretraining.html#identification"),
    Claim("ESI", "ESI identifies patients better than SimCLR (synthetic cohort)", _ESI,
          identification_difference("synthetic"), "identification linear-probe accuracy, ESI − SimCLR", 1,
          ("esi", "identification", "ESI linear probe", "accuracy"),
          ("esi", "identification", "SimCLR linear probe", "accuracy"), section="05_esi_pretraining.html#identification"),
    Claim("ESI", "Retrieval improves the CQA descriptions (both sources over none)", "04_esi_descriptions",
          metric_value("retrieval_direction", "ours", "ablation_statements", "statements"),
          "BERTScore F1, documents + expert − no retrieval", 1, ("esi", "cqa_retrieval", "both textbooks", "F1"),
          ("esi", "cqa_retrieval", "no textbook", "F1"), section="04_esi_descriptions.html#description-quality-beside-the-paper"),
    # ECG-LLM (abstract)
    Claim("ECG-LLM", "Fine-tuned beats its base model: multiple choice", _LLM,
          mcnemar_row("fine-tuned vs base", "generated letter"), "accuracy, A − B (exact McNemar)", 1,
          paper_says="fine-tuned models significantly outperformed their base counterparts across nearly all "
                     "evaluation modes", source="abstract", section="08_ecgllm_evaluation.html#multiple-choice"),
    Claim("ECG-LLM", "Fine-tuned beats its base model: open answers", _LLM,
          table_row("paired_text_tests", ("fine-tuned vs base", "rougeL"), "mean difference", items="questions",
                    items_name="questions"), "ROUGE-L per question, A − B", 1,
          paper_says="fine-tuned models significantly outperformed their base counterparts across nearly all "
                     "evaluation modes", source="abstract", section="08_ecgllm_evaluation.html#open-questions"),
    Claim("ECG-LLM", "Retrieval (RAG) helps the base model: multiple choice", _LLM,
          mcnemar_row("RAG vs base", "generated letter"), "accuracy, A − B (exact McNemar)", 1,
          paper_says="fine-tuning and RAG achieve competitive performance with proprietary models; experts "
                     "favoured Claude 3.7 and RAG for complex queries", source="abstract",
          section="08_ecgllm_evaluation.html#multiple-choice"),
    Claim("ECG-LLM", "Retrieval (RAG) helps the base model: open answers", _LLM,
          table_row("paired_text_tests", ("RAG vs base", "rougeL"), "mean difference", items="questions",
                    items_name="questions"), "ROUGE-L per question, A − B", 1,
          paper_says="fine-tuning and RAG achieve competitive performance with proprietary models; experts "
                     "favoured Claude 3.7 and RAG for complex queries", source="abstract",
          section="08_ecgllm_evaluation.html#open-questions"),
    Claim("ECG-LLM", "Fine-tuned leads on multiple choice (over RAG)", _LLM,
          mcnemar_row("fine-tuned vs RAG", "generated letter"), "accuracy, A − B (exact McNemar)", 1,
          ("ecgllm", "abstract", "fine-tuned Llama 3.1 70B", "rank: multiple choice"),
          section="08_ecgllm_evaluation.html#multiple-choice"),
    Claim("ECG-LLM", "Fine-tuned leads on the text metrics (over RAG)", _LLM,
          table_row("paired_text_tests", ("fine-tuned vs RAG", "rougeL"), "mean difference", items="questions",
                    items_name="questions"), "ROUGE-L per question, A − B", 1,
          ("ecgllm", "abstract", "fine-tuned Llama 3.1 70B", "rank: automatic text metrics"),
          section="08_ecgllm_evaluation.html#open-questions"),
    Claim("ECG-LLM", "The LLM judge agrees with the experts", _LLM, agreement_row("judge", "expert"),
          "Spearman's rho, judge against expert", 1,
          ("ecgllm", "abstract", "fine-tuned Llama 3.1 70B", "rank: LLM-as-a-judge"),
          paper_says="the judge ranked fine-tuned Llama second to Claude 3.7; experts favoured Claude 3.7 and RAG: "
                     "rankings differ between evaluation methods",
          section="08_ecgllm_evaluation.html#rankings-and-agreement-between-the-methods"),
    # Clinical knowledge transfer (abstract)
    Claim("Clinical knowledge transfer", "Beats the signal-only baseline", _CKT, gap_row("ours − signal-only"),
          "macro AUROC, ours − signal-only", 1,
          paper_says="outperforms a standard signal-only baseline in multi-label diagnosis (MIMIC-IV-ECG)",
          source="abstract", section="09_clinical_transfer.html#does-the-clinical-record-help-an-ecg-only-model"),
    Claim("Clinical knowledge transfer", "Closes a substantial part of the gap to multimodal (≥ 0.3)", _CKT,
          gap_row("gap closed", reference=0.3, needs_gap=True), "share of the gap closed", 1,
          paper_says="bridges a substantial portion of the performance gap to a fully multimodal model",
          source="abstract", section="09_clinical_transfer.html#does-the-clinical-record-help-an-ecg-only-model"),
    Claim("Clinical knowledge transfer", "Lab-abnormality heads predict labs from the ECG", _CKT, lab_heads,
          "lab-head AUROC against 0.5", 1,
          paper_says="predicts associated laboratory abnormalities directly from the ECG embedding, as explanations",
          source="abstract", section="09_clinical_transfer.html#lab-abnormalities-from-the-ecg-alone"),
)


def _model(r) -> str:
    """The model a results file's claims rest on, from its recorded info."""
    info = r.info
    if r.notebook.startswith("05_"):
        return f"ConvNeXt-V2 1D {info.get('encoder', '?')}, text {info.get('text_encoder', '?')}"
    if r.notebook.startswith("09_"):
        return f"ConvNeXt-V2 1D {info.get('encoder', '?')}"
    if r.notebook.startswith("08_"):
        return f"{info.get('llm', '?')} (base; fine-tuned with LoRA); judge {info.get('judge', '?')}"
    return str(info.get("llm") or info.get("model") or "–")


def _paper_text(claim: Claim, numbers: pd.DataFrame) -> tuple[str, str]:
    """The paper's number(s) for a claim (``A vs B`` for a comparison) and its source."""
    def look(key):
        rows = numbers[(numbers["paper"] == key[0]) & (numbers["table"] == key[1])
                       & (numbers["configuration"].astype(str) == key[2]) & (numbers["metric"] == key[3])]
        if not len(rows):
            raise KeyError(f"no published number {key} in paper_numbers.csv")
        return rows.iloc[0]

    parts, source = [], claim.source
    if claim.paper_number:
        a = look(claim.paper_number)
        source = source or a["source"]
        if claim.versus:
            b = look(claim.versus)
            parts.append(f"{claim.paper_number[3]} {a['value']:g} vs {b['value']:g} "
                         f"({claim.paper_number[2]} vs {claim.versus[2]}; {a['value'] - b['value']:+.3g})")
        elif str(claim.paper_number[3]).startswith("rank"):
            parts.append(f"{claim.paper_number[2]}, {claim.paper_number[3]} {a['value']:g}")
        else:
            parts.append(f"{claim.paper_number[2]}: {claim.paper_number[3]} {a['value']:g}")
    if claim.paper_says:
        parts.append(("“" + claim.paper_says + "”") if not claim.paper_number else claim.paper_says)
    return "; ".join(parts), source


def _ours_text(c: Comparison, claim: Claim) -> str:
    if c.missing and not _finite(c.estimate):
        return "–"
    if not _finite(c.estimate):
        return "–"
    text = f"{c.estimate:+.3f}" if claim.direction else f"{c.estimate:.3f}"
    if _finite(c.low) and _finite(c.high):
        text += f" [{c.low:+.3f}, {c.high:+.3f}]" if claim.direction else f" [{c.low:.2f}, {c.high:.2f}]"
    elif _finite(c.p):
        text += f" (p = {c.p:.2g})"
    else:
        text += " (no interval)"
    return text


def scorecard(directory: str | Path | None = None, papers=None, claims=CLAIMS) -> pd.DataFrame:
    """One row per claim: paper, claim, the paper's number and source, ours with its interval,
    what was measured, the data and the number of items, the model, the verdict and its reason,
    and the evidence (a chapter section). A notebook that has not run makes its claims "not
    recorded"."""
    from .results import load_results, paper_numbers

    numbers = paper_numbers()
    loaded: dict[str, object] = {}
    rows = []
    for claim in claims:
        if papers and claim.paper not in papers:
            continue
        if claim.notebook not in loaded:
            try:
                loaded[claim.notebook] = load_results(claim.notebook, directory)
            except FileNotFoundError:
                loaded[claim.notebook] = None
        r = loaded[claim.notebook]
        if r is None:
            c = _absent(f"notebook {claim.notebook} has not run")
        else:
            c = claim.read(r)
            if claim.direction == 0 and claim.paper_number and not c.missing:
                from dataclasses import replace

                c = replace(c, reference=float(_paper_value(numbers, claim.paper_number)))
        v = verdict(claim.direction, c)
        paper_text, source = _paper_text(claim, numbers)
        data = c.data or (str(r.info.get("dataset", "–")) if r is not None else "–")
        rows.append({"paper": claim.paper, "claim": claim.claim, "paper's number": paper_text, "source": source,
                     "ours": _ours_text(c, claim), "measured": claim.measure, "data": data,
                     "n": c.items if c.items is not None else None, "n of": c.items_name if c.items is not None else "",
                     "model": _model(r) if r is not None else "–", "verdict": v.label, "why": v.reason,
                     "evidence": claim.section})
    return pd.DataFrame(rows)


def _paper_value(numbers: pd.DataFrame, key) -> float:
    rows = numbers[(numbers["paper"] == key[0]) & (numbers["table"] == key[1])
                   & (numbers["configuration"].astype(str) == key[2]) & (numbers["metric"] == key[3])]
    return float(rows["value"].iloc[0])


def summary_sentence(card: pd.DataFrame) -> str:
    """How many claims got each verdict, in words."""
    counts = card["verdict"].value_counts()
    parts = [f"{counts[v]} {v}" for v in VERDICTS if v in counts]
    return f"{len(card)} claims: " + ", ".join(parts) + "." if len(card) else "No claims."


VERDICT_COLOURS = {REPRODUCED: "#1a7f37", NOT_REPRODUCED: "#9a6700", OPPOSITE: "#cf222e",
                   NOT_TESTABLE: "#57606a", NOT_RECORDED: "#8c959f"}


def scorecard_html(card: pd.DataFrame, caption: str = "", show_paper: bool = True) -> str:
    """The scorecard as an HTML table in the book's style, in three columns that fit the text
    column: the claim (with its paper and the evidence as a link), the paper's number beside
    ours (with what was measured, the data, the items and the model), and the verdict with its
    reason."""
    from .results import TABLE_CSS

    def small(text: str) -> str:
        return f'<br><span style="color:#555;font-size:0.85em">{text}</span>' if text else ""

    head = "".join(f'<th class="ek-text">{c}</th>' for c in ("claim", "paper · ours", "verdict"))
    body = []
    for _, row in card.iterrows():
        claim = (f'<strong>{html.escape(str(row["paper"]))}</strong><br>' if show_paper else "") + html.escape(str(row["claim"]))
        if row["evidence"]:
            target = row["evidence"].split("#")[0].removesuffix(".html")
            claim += small(f'evidence: <a href="{html.escape(row["evidence"])}">{html.escape(target)}</a>')
        n = f"{int(row['n'])} {row['n of']}" if _finite(row["n"]) else ""
        paper_number = html.escape(row["paper's number"] or "–")
        numbers = (f"paper: {paper_number}"
                   + small(html.escape(row["source"] or ""))
                   + f'<br>ours: {html.escape(str(row["ours"]))}'
                   + small(html.escape(str(row["measured"])))
                   + small(html.escape(", ".join(x for x in (str(row["data"]), n,
                                                             f"model: {row['model']}" if row["model"] not in ("", "–") else "")
                                                 if x))))
        colour = VERDICT_COLOURS.get(row["verdict"], "#000")
        verdict = (f'<strong style="color:{colour}">{html.escape(row["verdict"])}</strong>'
                   + (f'<br><span style="font-size:0.85em">{html.escape(row["why"])}</span>' if row["why"] else ""))
        body.append("<tr>" + "".join(f'<td class="ek-text">{c}</td>' for c in (claim, numbers, verdict)) + "</tr>")
    cap = f'<div class="ek-caption">{html.escape(caption)}</div>' if caption else ""
    # a fixed layout over the text column's width: long claims and reasons wrap in their cell
    fit = ('<style>.ek-scorecard table{table-layout:fixed;width:100%}'
           '.ek-scorecard td,.ek-scorecard th{overflow-wrap:break-word;word-break:normal;min-width:0}</style>')
    return (TABLE_CSS + fit + '<div class="ek-table ek-scorecard">' + cap + f"<table><thead><tr>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def show_scorecard(papers=None, directory: str | Path | None = None, caption: str = ""):
    """The scorecard (all papers, or ``papers``) for a book page: a line of counts and the table."""
    from IPython.display import HTML

    card = scorecard(directory, papers=papers)
    return HTML(f"<p>{html.escape(summary_sentence(card))}</p>"
                + scorecard_html(card, caption, show_paper=not papers or len(papers) > 1))


#: a chapter's opening shows at most this many claims unfolded; more are folded under one line
OPENING_ROWS = 4


def paper_opening(paper: str, directory: str | Path | None = None, evidence_in: str | None = None):
    """The opening of a chapter: the paper's full reference, then its claims and our verdicts
    (``evidence_in``: only the claims whose evidence is that notebook's; with none, a line saying
    where they are)."""
    from IPython.display import HTML

    from .results import results_dir

    claims = [c for c in CLAIMS if evidence_in is None or c.notebook == evidence_in]
    card = scorecard(directory or results_dir(), papers=[paper], claims=claims)
    reference = PAPERS[paper]
    import re

    ref_html = html.escape(reference)
    ref_html = re.sub(r"\*(.+?)\*", r"<em>\1</em>", ref_html)
    if not len(card):
        where = sorted({c.notebook for c in CLAIMS if c.paper == paper})
        return HTML(f"<p><strong>Paper.</strong> {ref_html}</p>"
                    f"<p>Its claims rest on {', '.join(html.escape(w) for w in where)}, where their verdicts open "
                    f'the chapter (all papers: <a href="scorecard.html">the scorecard</a>); this chapter builds '
                    "the measurements they stand on.</p>")
    table = scorecard_html(card, show_paper=False)
    if len(card) > OPENING_ROWS:     # a long list stays one line until the reader opens it
        table = (f'<details class="ek-collapsed"><summary>The {len(card)} claims, each with the paper\'s number '
                 f"beside ours and the verdict's reason (click to show)</summary>{table}</details>")
    return HTML(f"<p><strong>Paper.</strong> {ref_html}</p>"
                f"<p><strong>Its claims and our verdicts</strong> ({html.escape(summary_sentence(card))} "
                f'All papers: <a href="scorecard.html">the scorecard</a>.)</p>' + table)


def sentence_for(claim: str, directory: str | Path | None = None) -> Verdict:
    """The verdict on one claim of :data:`CLAIMS` (by its ``claim`` text), for a chapter's prose."""
    card = scorecard(directory, claims=[c for c in CLAIMS if c.claim == claim])
    if not len(card):
        raise KeyError(f"no claim {claim!r} in ecgkit.scorecard.CLAIMS")
    row = card.iloc[0]
    return Verdict(row["verdict"], row["why"])
