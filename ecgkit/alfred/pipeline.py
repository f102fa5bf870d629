"""ALFRED end to end: 12-lead ECG → delineation → features → rules → prompt → LLM → superclasses.

* :func:`measure_ecgs`: the signal side for many records (U-Net delineation, the 30 + 12
  features, the rule module); a record that cannot be measured keeps its row (all features
  missing, rules undetermined) and is named in ``failed``. The result is cached by the signals'
  content and the delineator (:func:`cached_measurement`): a rerun loads it in seconds.
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
           "label_choices", "measurement_spec", "cached_measurement"]


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
                 progress: bool = True, leads=None, cache: bool = True) -> Measured:
    """Delineate, measure and apply the rules to records × samples × 12 ``signals`` (mV).

    Fewer leads: pass ``leads`` (their names, e.g. ``["I", "II"]`` or ``["MLII", "V1"]``) with
    records × samples × len(leads), or pass 12 columns with the missing leads all NaN. Missing
    leads are not delineated and have no features; rules that need them are undetermined
    (``None``, their evidence lists the missing features) rather than guessed.

    ``cache`` (default): the result is kept under the cache key of the signals' content, rate,
    ages and sexes and the delineator (``model.meta["key"]``, its weights and rate;
    :func:`cached_measurement`), so a rerun loads it; a model without ``meta`` is not cached.
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
    if model is None:
        from .delineation import load_delineator

        model = load_delineator()

    def compute() -> Measured:
        nonlocal signals
        fiducials = delineate(signals, fs, model=model)
        if isinstance(fiducials, pd.DataFrame):   # a single record
            fiducials, signals = [fiducials], [signals]
        index = pd.Index(range(len(fiducials)) if ids is None else list(ids))
        features, failed = extract_features_many(signals, fs, fiducials, ages=ages, sexes=sexes,
                                                 ids=index, progress=progress)
        rules = [evaluate_rules(row) for _, row in features.iterrows()]
        return Measured(index, float(fs), fiducials, features, rules, failed)

    meta = getattr(model, "meta", None)
    if not cache or not isinstance(meta, dict) or not meta.get("key"):
        return compute()
    from ..hashing import content_sha256

    delineator = {"key": meta["key"], "fs": float(getattr(model, "fs", 500.0)),
                  "weights": content_sha256(*model.state_dict().values()),
                  "class_weights": getattr(model, "class_weights", None)}
    return cached_measurement(measurement_spec(signals, fs, ages, sexes, delineator), compute, ids,
                              f"U-Net {meta['key']}")


def _plain(values) -> list | None:
    """Ages or sexes as JSON values (None for missing) for a cache key."""
    if values is None:
        return None
    out = []
    for v in list(values):
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            out.append(None)
        else:
            out.append(v.item() if hasattr(v, "item") else v)
    return out


def measurement_spec(signals, fs: float, ages, sexes, delineator: dict) -> dict:
    """What a measurement's result depends on: the signals' content (shape, dtype, values), the
    rate, ages, sexes and the delineator (never the record ids: the rows are named on loading)."""
    from ..hashing import content_sha256

    content = (content_sha256(signals) if isinstance(signals, np.ndarray)
               else content_sha256(*[np.asarray(r) for r in signals]))
    n = len(signals) if not (isinstance(signals, np.ndarray) and signals.ndim == 2) else 1
    return {"signals": content, "records": n, "fs": float(fs), "ages": _plain(ages),
            "sexes": _plain(sexes), "delineator": delineator}


def _save_measured(folder, measured: Measured) -> None:
    import json

    from ..cache import save_frames

    save_frames(folder, "fiducials", measured.fiducials)
    save_frames(folder, "features", [measured.features.reset_index(drop=True)])
    save_frames(folder, "rules", measured.rules)
    position = {i: p for p, i in enumerate(measured.ids)}
    (folder / "measured.json").write_text(json.dumps({
        "records": len(measured), "index_name": measured.features.index.name,
        "failed": [[position[k], v] for k, v in measured.failed.items()]}))


def _load_measured(folder, ids, fs: float) -> Measured:
    import json

    from ..cache import load_frames

    info = json.loads((folder / "measured.json").read_text())
    index = pd.Index(range(info["records"]) if ids is None else list(ids))
    if len(index) != info["records"]:
        raise ValueError(f"{len(index)} ids for {info['records']} cached records")
    features = load_frames(folder, "features")[0]
    features.index = pd.Index(list(index), name=info["index_name"])
    return Measured(index, float(fs), load_frames(folder, "fiducials"), features,
                    load_frames(folder, "rules"), {index[p]: v for p, v in info["failed"]})


def cached_measurement(spec: dict, compute, ids=None, label: str = "") -> Measured:
    """``compute()`` (a :class:`Measured`) kept in the cache (``alfred_measured``) under the key of
    ``spec`` (:func:`measurement_spec`), or loaded from there; one line says which. What is
    returned is always what the cache holds, so a first run and a rerun give equal objects."""
    import time

    from ..cache import build_or_load

    started = time.perf_counter()
    measured, k, built = build_or_load("alfred_measured", spec, lambda folder: _save_measured(folder, compute()),
                                       lambda folder: _load_measured(folder, ids, spec["fs"]))
    done = (f"computed and cached in {time.perf_counter() - started:.0f} s" if built else "from cache")
    print(f"measurements ({label}): {len(measured)} records {done} (key {k})", flush=True)
    return measured


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
