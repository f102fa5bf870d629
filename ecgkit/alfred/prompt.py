"""ALFRED step 4: the five-part prompt for zero-shot diagnosis of the PTB-XL superclasses.

The prompt has five parts, in this order:

1. **Patient and features**: age, sex, then the 12 global features (name, value, unit) and a
   compact lead table (one row per lead feature, one column per lead): the budget's
   ``lead_features``, ``"all"`` 30 of them, or, with ``None``, the ones the rules use most
   (:data:`DEFAULT_LEAD_FEATURES`). A missing value (NaN) is written ``not measurable``
   (``n/m`` inside the lead table, with a legend).
2. **Rule results** (configurations with ``rules=True``): every positive condition with its
   criterion and the evidence (the feature values the rule used; ``rule_detail`` shortens this
   to the evidence or the names), then the names of the undetermined conditions (features
   missing). The Base configuration has no rule section.
3. **Retrieved knowledge on the features**: ALFRED retrieves for each feature *name*. To keep
   the prompt short we query the global features plus the lead features of the table (or the
   budget's ``retrieval_features``), with ``top_k`` (default 1) hits per query, drop duplicate
   chunks, cut every chunk to ``max_chunk_chars`` and keep at most ``max_feature_docs`` chunks.
   The collections come from the configuration (``documents`` or ``documents`` + ``expert``).
4. **Retrieved knowledge on the positive conditions**: one query per positive condition name,
   from the configuration's ``rule_collections``. Without rule results (Base) there are no
   positive conditions, so this part is absent.
5. **Instructions**: how to read an ECG systematically, what the five superclasses mean and a
   strict response format (:data:`RESPONSE_FORMAT`: five ``CLASS: yes|no`` lines, then
   ``Explanation: ...``), which :func:`ecgkit.alfred.answer.parse_answer` reads.

Queries use the index's template ``"{name} is defined as"``
(:data:`ecgkit.knowledge.index.QUERY_TEMPLATE`).

:func:`build_prompts` is the one entry point; its :class:`PromptBudget` (a profile's, by default)
holds these options and the answer's length. Prompt length: ``max_chars`` is a budget for the
whole prompt. Retrieved text is trimmed first (feature chunks from the last one backwards, then
condition chunks), then lead-table rows from the bottom, then the undetermined-conditions line;
the instructions and the response format are never cut. Each :class:`BuiltPrompt` reports what
was trimmed; a warning is logged when the budget could not be met.

Configurations (:data:`CONFIGURATIONS`) follow the ALFRED ablation table (Base, Ablation 1-3,
Proposed) plus two baselines of the book: ``"LLM without retrieval"`` (features + rules, no
retrieved text) and ``"Rules only"`` (no LLM at all: ``llm=False``; the caller uses
:func:`ecgkit.alfred.rules.rules_to_superclasses` and must not build a prompt for it).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pandas as pd

from ..config import ProfileSettings
from ..knowledge.catalog import GLOBAL_FEATURES, LEAD_FEATURES, condition, feature
from ..vocabulary import LEADS, SUPERCLASSES
from .rules import as_number

__all__ = [
    "PromptConfig", "CONFIGURATIONS", "get_config", "DEFAULT_LEAD_FEATURES", "SUPERCLASSES",
    "SUPERCLASS_DESCRIPTIONS", "SYSTEM_PROMPT", "INSTRUCTIONS", "RESPONSE_FORMAT", "QUERY_TEMPLATE",
    "PromptBudget", "BuiltPrompt", "build_prompts", "feature_queries", "condition_queries",
]

log = logging.getLogger(__name__)

QUERY_TEMPLATE = "{name} is defined as"   # same as ecgkit.knowledge.index.QUERY_TEMPLATE
DOCS = ("documents",)
DOCS_EXPERT = ("documents", "expert")

SUPERCLASS_DESCRIPTIONS = {
    "NORM": "normal ECG (no diagnostic abnormality)",
    "MI": "myocardial infarction (acute or old: pathological Q waves, ST elevation, poor R-wave "
          "progression)",
    "STTC": "ST/T change (ST depression, T-wave inversion or flattening, long QT; ischaemic or "
            "non-specific)",
    "CD": "conduction disturbance (AV block, bundle branch or fascicular block, WPW, "
          "intraventricular conduction delay)",
    "HYP": "hypertrophy (ventricular hypertrophy or atrial enlargement)",
}

#: The lead table of ``lead_features=None``: the lead features the rules use most.
DEFAULT_LEAD_FEATURES = (
    "p_amplitude", "p_duration", "q_amplitude", "q_duration", "r_amplitude", "r_prime_amplitude",
    "s_amplitude", "qrs_duration_lead", "st_j", "st_j60", "t_amplitude",
)


@dataclass(frozen=True)
class PromptConfig:
    """One prompt configuration.

    ``rules``: include the rule results (part 2) and condition retrieval (part 4).
    ``feature_collections`` / ``rule_collections``: the knowledge collections searched for the
    features (part 3) and the positive conditions (part 4); ``None`` = no retrieval.
    ``llm``: ``False`` for the rules-only baseline (no prompt, no LLM; handled by the caller).
    """

    name: str
    rules: bool = True
    feature_collections: Optional[tuple[str, ...]] = DOCS
    rule_collections: Optional[tuple[str, ...]] = DOCS
    llm: bool = True
    paper: bool = True        # a configuration of the ALFRED ablation table
    description: str = ""

    @property
    def retrieval(self) -> bool:
        return bool(self.feature_collections) or (self.rules and bool(self.rule_collections))


CONFIGURATIONS: dict[str, PromptConfig] = {
    c.name: c for c in (
        PromptConfig("Base", rules=False, feature_collections=DOCS, rule_collections=DOCS,
                     description="features + document retrieval, no rule module"),
        PromptConfig("Ablation 1", rules=True, feature_collections=DOCS, rule_collections=DOCS,
                     description="+ rule module; documents only"),
        PromptConfig("Ablation 2", rules=True, feature_collections=DOCS_EXPERT,
                     rule_collections=DOCS,
                     description="+ expert knowledge for the features"),
        PromptConfig("Ablation 3", rules=True, feature_collections=DOCS,
                     rule_collections=DOCS_EXPERT,
                     description="+ expert knowledge for the rule results"),
        PromptConfig("Proposed", rules=True, feature_collections=DOCS_EXPERT,
                     rule_collections=DOCS_EXPERT,
                     description="expert knowledge for features and rule results"),
        PromptConfig("LLM without retrieval", rules=True, feature_collections=None,
                     rule_collections=None, paper=False,
                     description="features + rule results, no retrieved text (book baseline)"),
        PromptConfig("Rules only", rules=True, feature_collections=None, rule_collections=None,
                     llm=False, paper=False,
                     description="no LLM: rules_to_superclasses (book baseline; no prompt)"),
    )
}


def get_config(config) -> PromptConfig:
    """A :class:`PromptConfig` from itself or its name in :data:`CONFIGURATIONS`."""
    if isinstance(config, PromptConfig):
        return config
    try:
        return CONFIGURATIONS[config]
    except KeyError:
        raise KeyError(f"unknown configuration {config!r}; choose among {list(CONFIGURATIONS)}")


@dataclass(frozen=True)
class PromptBudget(ProfileSettings):
    """How a prompt is built and how long its answer may be; the defaults are the full profile's
    (the whole prompt, as the paper sends it), ``for_profile("quick")`` trims it for a small model.

    ``top_k`` hits per query; ``retrieval_features``: the catalog keys queried for part 3 (None:
    the global features and the lead table's); ``max_chunk_chars``: each chunk cut to this
    length; ``max_feature_docs`` / ``max_condition_docs``: chunks kept in parts 3 / 4;
    ``lead_features``: the lead table's rows; ``rule_detail``: "full", "evidence" or "names";
    ``max_chars``: the whole prompt's budget; ``max_new_tokens``: the diagnosis's length (five
    label lines need ~25 tokens, the explanation the rest). None: no limit.
    """

    top_k: int = 1
    retrieval_features: Optional[tuple] = None
    max_chars: Optional[int] = None
    max_chunk_chars: Optional[int] = None
    max_feature_docs: Optional[int] = None
    max_condition_docs: Optional[int] = None
    lead_features: tuple | str | None = "all"
    rule_detail: str = "full"
    max_new_tokens: int = 400

    PROFILES = {"quick": dict(max_chars=4800, max_chunk_chars=200, max_feature_docs=2,
                              max_condition_docs=2, lead_features=("q_amplitude", "st_j60", "t_amplitude"),
                              rule_detail="names", max_new_tokens=32)}

    def table(self, label: str) -> pd.DataFrame:
        """The budget as a one-row table (row ``label``; lists of features joined), for a page."""
        row = {k: ", ".join(v) if isinstance(v, tuple) else v for k, v in self.as_dict().items()}
        return pd.DataFrame([row], index=[label])


SYSTEM_PROMPT = ("You are an experienced cardiologist interpreting 12-lead ECGs from measured "
                 "features. You answer exactly in the requested format.")

INSTRUCTIONS = """\
How to read the ECG: go through it systematically. (1) Rhythm and rate: sinus rhythm needs a P wave before every QRS with a normal P axis; check the heart rate and RR irregularity. (2) Intervals: PR (120-200 ms), QRS (< 120 ms), QTc (male < 450 ms, female < 460 ms). (3) Axis: normal QRS axis is -30° to +90°. (4) Hypertrophy: QRS voltage criteria (Sokolow-Lyon, Cornell), P-wave size and duration. (5) Ischaemia and infarction: pathological Q waves, ST elevation or depression, T-wave inversion, R-wave progression, always in anatomically contiguous leads. Use the rule results as evidence, but weigh them against the features: measurements can be noisy. Amplitudes are in mV relative to the PR segment, Q and S amplitudes are depths (positive numbers).

Decide for each of the five diagnostic superclasses of PTB-XL whether it is present:
""" + "\n".join(f"- {k}: {v}" for k, v in SUPERCLASS_DESCRIPTIONS.items()) + """
More than one of MI, STTC, CD and HYP can be present. NORM is yes only when none of the others is."""

RESPONSE_FORMAT = ("Answer in exactly this format: five lines, each with the superclass, a colon "
                   "and yes or no, then one line starting with \"Explanation:\" (at most three "
                   "sentences). Nothing else.\n"
                   + "\n".join(f"{s}: yes or no" for s in SUPERCLASSES)
                   + "\nExplanation: <your reasoning>")


# ----------------------------------------------------------------------------- formatting
def _get(features: Mapping, name: str):
    try:
        return features[name]
    except (KeyError, IndexError, TypeError):
        return None


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "not measurable"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def _unit(u: str) -> str:
    return {"degrees": "°", "ratio": "", "count": ""}.get(u, u)


def _patient_line(features: Mapping) -> str:
    age = as_number(_get(features, "age"))
    sex = as_number(_get(features, "sex"))
    age_s = "unknown" if age is None else f"{age:.0f} years"
    sex_s = {0.0: "male", 1.0: "female"}.get(sex, "unknown")
    return f"Patient: age {age_s}, sex {sex_s}."


def _global_lines(features: Mapping) -> list[str]:
    out = ["Global features:"]
    for f in GLOBAL_FEATURES:
        v = as_number(_get(features, f.key))
        u = _unit(f.unit)
        val = _fmt(v) + ("" if not u or v is None else u if u == "°" else f" {u}")
        out.append(f"- {f.name}: {val}")
    return out


def _lead_rows(features: Mapping, lead_features: Sequence[str]) -> list[str]:
    rows = []
    for key in lead_features:
        f = feature(key)
        u = _unit(f.unit)
        label = f"{f.name}" + (f" ({u})" if u else "")
        vals = []
        for lead in LEADS:
            v = as_number(_get(features, f"{key}_{lead}"))
            vals.append("n/m" if v is None else _fmt(v))
        rows.append(f"{label} | " + " | ".join(vals))
    return rows


def _lead_header() -> list[str]:
    return ["Lead features (n/m = not measurable):", "feature | " + " | ".join(LEADS)]


def _resolve_lead_features(lead_features) -> tuple[str, ...]:
    if lead_features is None:
        return DEFAULT_LEAD_FEATURES
    if isinstance(lead_features, str):
        if lead_features == "all":
            return tuple(f.key for f in LEAD_FEATURES)
        lead_features = (lead_features,)
    keys = tuple(lead_features)
    for k in keys:
        if feature(k).scope != "lead":
            raise ValueError(f"{k!r} is not a lead feature")
    return keys


RULE_DETAILS = ("full", "evidence", "names")


def _rule_lines(rule_result: pd.DataFrame, detail: str = "full") -> tuple[list[str], str, list[str]]:
    """(positive lines, undetermined line, positive keys). ``detail``: "full" (criterion and
    evidence), "evidence" (the feature values only) or "names"."""
    if detail not in RULE_DETAILS:
        raise ValueError(f"rule_detail must be one of {RULE_DETAILS}, not {detail!r}")
    if rule_result is None or len(rule_result) == 0:
        return ["Rule results: no rule was evaluated."], "", []
    pos = [k for k, v in rule_result["positive"].items() if v is True]
    und = [k for k, v in rule_result["positive"].items() if v is None or
           (isinstance(v, float) and math.isnan(v))]
    lines = ["Rule results (documented criteria applied to the features):"]
    if pos:
        lines.append("Positive conditions:")
        for k in pos:
            row = rule_result.loc[k]
            if detail == "full":
                lines.append(f"- {row['name']}: {row['criterion']} Evidence: {row['evidence']}.")
            elif detail == "evidence":
                lines.append(f"- {row['name']} ({_clip(row['evidence'], 120)})")
            else:
                lines.append(f"- {row['name']}")
    else:
        lines.append("Positive conditions: none.")
    undetermined = ""
    if und:
        names = ", ".join(str(rule_result.loc[k, "name"]) for k in und)
        undetermined = f"Undetermined (features missing): {names}."
    lines.append("All other conditions were checked and are negative.")
    return lines, undetermined, pos


def _clip(text: str, n: Optional[int]) -> str:
    text = " ".join(str(text).split())
    if n is None or len(text) <= n:
        return text
    cut = text[: max(n - 1, 0)]
    sp = cut.rfind(" ")
    if sp > n // 2:
        cut = cut[:sp]
    return cut.rstrip() + "…"


# ----------------------------------------------------------------------------- retrieval
def feature_queries(lead_features=None, retrieval_features=None) -> list[str]:
    """The queries of part 3: one per feature name (global features + lead-table features,
    or the catalog keys given in ``retrieval_features``)."""
    if retrieval_features is None:
        keys = [f.key for f in GLOBAL_FEATURES] + list(_resolve_lead_features(lead_features))
    else:
        keys = list(retrieval_features)
    return [QUERY_TEMPLATE.format(name=feature(k).name) for k in dict.fromkeys(keys)]


def condition_queries(keys: Sequence[str]) -> list[str]:
    """The queries of part 4: one per positive condition name."""
    return [QUERY_TEMPLATE.format(name=condition(k).name) for k in dict.fromkeys(keys)]


def _hit_key(hit) -> str:
    return getattr(hit, "id", "") or getattr(hit, "text", "")


def _retrieve(index, queries: Sequence[str], top_k: int, collections, cache: dict) -> None:
    """Fill ``cache[(collections, query)]`` with hits; one retrieve_many call for the new ones."""
    if not collections or not queries:
        return
    coll = tuple(collections)
    todo = [q for q in dict.fromkeys(queries) if (coll, q) not in cache]
    if not todo:
        return
    if index is None:
        raise ValueError("this configuration retrieves text: pass a knowledge index")
    results = index.retrieve_many(todo, top_k=top_k, collections=coll)
    for q, hits in zip(todo, results):
        cache[(coll, q)] = list(hits)


def _chunks(queries, collections, cache, seen: set, max_chunk_chars, limit,
            sources: dict | None = None) -> list[str]:
    if not collections:
        return []
    out = []
    for q in queries:
        for h in cache.get((tuple(collections), q), []):
            k = _hit_key(h)
            if k in seen:
                continue
            seen.add(k)
            out.append(_clip(h.text, max_chunk_chars))
            if sources is not None:
                sources[out[-1]] = f"{h.collection}: {h.source}" if h.source else h.collection
            if limit is not None and len(out) >= limit:
                return out
    return out


# ----------------------------------------------------------------------------- assembly
@dataclass
class BuiltPrompt:
    """A prompt and how it was built: the text, its parts, the retrieved chunks kept and what
    the ``max_chars`` budget trimmed (``trimmed``: counts by kind; ``over_budget``: the budget
    could not be met even without retrieved text and lead rows)."""

    text: str
    config: str
    parts: dict = field(default_factory=dict)
    feature_chunks: list = field(default_factory=list)
    condition_chunks: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)     # chunk text -> "collection: source file"
    positive: list = field(default_factory=list)
    trimmed: dict = field(default_factory=dict)
    over_budget: bool = False

    @property
    def n_chars(self) -> int:
        return len(self.text)

    def __str__(self) -> str:
        return self.text


def _render(features, lead_rows, rule_lines, undetermined, feat_chunks, cond_chunks, config,
            n_lead_features) -> tuple[str, dict]:
    parts = {}
    p1 = [_patient_line(features), ""] + _global_lines(features)
    if lead_rows:
        p1 += [""] + _lead_header() + lead_rows
    if len(lead_rows) < n_lead_features:
        p1.append(f"({n_lead_features - len(lead_rows)} lead-feature rows omitted for length.)")
    parts["features"] = "## 1. Patient and ECG features\n" + "\n".join(p1)
    if config.rules:
        body = list(rule_lines) + ([undetermined] if undetermined else [])
        parts["rules"] = "## 2. Rule results\n" + "\n".join(body)
    if feat_chunks:
        parts["feature_knowledge"] = ("## 3. Background on the features\n"
                                      + "\n".join(f"- {c}" for c in feat_chunks))
    if cond_chunks:
        parts["condition_knowledge"] = ("## 4. Background on the positive conditions\n"
                                        + "\n".join(f"- {c}" for c in cond_chunks))
    parts["instructions"] = "## 5. Instructions\n" + INSTRUCTIONS + "\n\n" + RESPONSE_FORMAT
    return "\n\n".join(parts.values()), parts


def _assemble(features, rule_result, config: PromptConfig, cache: dict,
              budget: PromptBudget) -> BuiltPrompt:
    lead_keys = _resolve_lead_features(budget.lead_features)
    lead_rows = _lead_rows(features, lead_keys)
    if config.rules:
        rule_lines, undetermined, pos = _rule_lines(rule_result, budget.rule_detail)
    else:
        rule_lines, undetermined, pos = [], "", []
    seen: set = set()
    sources: dict = {}
    fq = feature_queries(lead_keys, budget.retrieval_features)
    feat = _chunks(fq, config.feature_collections, cache, seen, budget.max_chunk_chars,
                   budget.max_feature_docs, sources)
    cond = []
    if config.rules and pos:
        cond = _chunks(condition_queries(pos), config.rule_collections, cache, seen,
                       budget.max_chunk_chars, budget.max_condition_docs, sources)
    trimmed = {"feature_chunks": 0, "condition_chunks": 0, "lead_rows": 0, "undetermined": 0}
    n_lead = len(lead_rows)

    def render():
        return _render(features, lead_rows, rule_lines, undetermined, feat, cond, config, n_lead)

    text, parts = render()
    over = False
    max_chars = budget.max_chars
    if max_chars is not None:
        while len(text) > max_chars:
            if feat:
                feat.pop()
                trimmed["feature_chunks"] += 1
            elif cond:
                cond.pop()
                trimmed["condition_chunks"] += 1
            elif lead_rows:
                lead_rows.pop()
                trimmed["lead_rows"] += 1
            elif undetermined:
                undetermined = ""
                trimmed["undetermined"] = 1
            else:
                over = True
                break
            text, parts = render()
        if any(trimmed.values()):
            # recorded in BuiltPrompt.trimmed (and counted in chapter 03's tables); a warning only
            # when the budget could not be met, so that a batch of prompts does not flood the log
            (log.warning if over else log.debug)(
                "prompt trimmed to %d characters (budget %d): %s%s", len(text), max_chars,
                {k: v for k, v in trimmed.items() if v}, "; still over budget" if over else "")
    kept = {c: sources[c] for c in feat + cond if c in sources}
    return BuiltPrompt(text, config.name, parts, feat, cond, kept, pos,
                       {k: v for k, v in trimmed.items() if v}, over)


def _check(config) -> PromptConfig:
    config = get_config(config)
    if not config.llm:
        raise ValueError(f"configuration {config.name!r} uses no LLM: use "
                         "ecgkit.alfred.rules.rules_to_superclasses instead of a prompt")
    return config


def _all_queries(rule_results, config, lead_features, retrieval_features):
    fq = feature_queries(lead_features, retrieval_features) if config.feature_collections else []
    cq = []
    if config.rules and config.rule_collections:
        keys = []
        for rr in rule_results:
            if rr is not None and len(rr):
                keys += [k for k, v in rr["positive"].items() if v is True]
        cq = condition_queries(keys)
    return fq, cq


def build_prompts(features_list: Sequence[Mapping], rule_results: Optional[Sequence], index,
                  config="Proposed", budget: Optional[PromptBudget] = None) -> list[BuiltPrompt]:
    """The five-part prompt of each record, with its build report (:class:`BuiltPrompt`).

    ``features_list``: mappings from :func:`ecgkit.alfred.features.extract_features`;
    ``rule_results``: :func:`ecgkit.alfred.rules.evaluate_rules` of each (may be ``None`` when
    ``config.rules`` is false); ``index``: a :class:`~ecgkit.knowledge.index.KnowledgeIndex`
    (anything with ``retrieve_many``; ``None`` for configurations without retrieval);
    ``config``: a :class:`PromptConfig` or a name of :data:`CONFIGURATIONS`; ``budget``: the
    active profile's :class:`PromptBudget` when None. Retrieval is batched: every distinct query
    (feature names are the same for every record, condition names vary) is sent once, in one
    ``index.retrieve_many`` call per collection set.
    """
    config = _check(config)
    budget = budget if budget is not None else PromptBudget.for_profile()
    features_list = list(features_list)
    if rule_results is None:
        rule_results = [None] * len(features_list)
    rule_results = list(rule_results)
    if len(rule_results) != len(features_list):
        raise ValueError(f"{len(features_list)} feature sets but {len(rule_results)} rule results")
    if config.rules and any(r is None for r in rule_results):
        raise ValueError(f"configuration {config.name!r} needs the rule results of every record")
    cache: dict = {}
    fq, cq = _all_queries(rule_results, config, budget.lead_features, budget.retrieval_features)
    if config.feature_collections == config.rule_collections:
        _retrieve(index, fq + cq, budget.top_k, config.feature_collections, cache)
    else:
        _retrieve(index, fq, budget.top_k, config.feature_collections, cache)
        _retrieve(index, cq, budget.top_k, config.rule_collections, cache)
    return [_assemble(f, r, config, cache, budget) for f, r in zip(features_list, rule_results)]
