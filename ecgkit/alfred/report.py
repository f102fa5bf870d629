"""``ecgkit diagnose RECORD ...``: ALFRED on single ECGs, written as a report a clinician can read.

For each record: the 12-lead ECG on grid paper, the 12 leads with the U-Net delineation overlaid,
the features, the rule findings, the retrieved evidence with its sources, and the LLM's
diagnosis and explanation, in ``<out>/<record>/report.md`` (+ ``report.json``, ``ecg.png``,
``delineation.png``). Formats: a WFDB record (``.hea``, with or without the extension; CinC
``.mat`` + ``.hea`` included), a CPSC 2018 ``.mat`` (500 Hz), or a samples × leads ``.npy`` /
``.csv`` in mV with ``--fs`` (and ``--leads`` or a ``.csv`` header row when not the 12 standard
leads in order). A WFDB/.npy/.csv record with fewer leads is diagnosed on the leads it has (the
others are missing, and so are their features and the rules that need them). A record that
cannot be diagnosed is reported with what is wrong; the others go on. Warnings (an implausible
sampling rate or units, see :mod:`ecgkit.alfred.plausibility`; missing leads) and dubious LLM
answers are written into the report and printed on stderr.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import RecordError
from ..data.records import read_record, record_name
from ..data.wfdb_io import LEADS
from .answer import SUPERCLASSES
from .plausibility import answer_flags, check_record, measure
from .prompt import CONFIGURATIONS, PromptBudget
from .rules import as_number

__all__ = ["diagnose_record", "main"]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not measurable"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _md(text) -> str:
    """Model or source text made safe for markdown/HTML (``<your reasoning>`` stays visible)."""
    return html.escape(str(text), quote=False)


def _markdown(report: dict) -> str:
    asked = report["llm_asked"]
    llm = f"LLM `{report['llm']}`" if asked else "LLM not asked (rules only)"
    lines = [f"# ALFRED report: {_md(report['record'])}", "",
             f"Configuration **{report['configuration']}**, {llm}; "
             f"{report['seconds']:.1f} s. Age "
             f"{'unknown' if report['age'] is None else format(report['age'], 'g')}, sex "
             f"{ {0.0: 'male', 1.0: 'female'}.get(report['sex'], 'unknown') }. Leads: "
             f"{', '.join(report['leads'])}.", ""]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {_md(w)}" for w in report["warnings"]] + [""]
    if report.get("figures"):
        lines += ["![12-lead ECG](ecg.png)", "", "![Delineation](delineation.png)", ""]
    lines += ["## Diagnosis", ""]
    if asked:
        probs = report.get("probabilities") or {}
        lines += ["| superclass | LLM answer | LLM P(yes) | rules only |", "|---|---|---|---|"]
        lines += [f"| {s} | {_fmt(report['diagnosis'][s])} | "
                  f"{'–' if probs.get(s) is None else format(probs[s], '.2f')} | {_fmt(report['rules_only'][s])} |"
                  for s in SUPERCLASSES]
        if probs:
            lines += ["", "*P(yes)*: the probability the model gives to \"yes\" over \"no\" after the "
                      "class's answer line; a small model's text answer can say yes while this stays near 0.5."]
    else:
        lines += ["The LLM was not asked: the diagnosis is the rule module's alone.", "",
                  "| superclass | rules only |", "|---|---|"]
        lines += [f"| {s} | {_fmt(report['rules_only'][s])} |" for s in SUPERCLASSES]
    lines.append("")
    if report["answer_flags"]:
        lines += ["**Answer flags:** " + "; ".join(_md(f) for f in report["answer_flags"]) + ".", ""]
    if asked:
        lines += [f"**Explanation.** {_md(report['explanation']) or '(none)'}", ""]
    if report["problem"]:
        lines += [f"*The answer could not be read completely: {_md(report['problem'])}.*", ""]
    lines += ["## Rule findings", ""]
    lines += [f"- **{_md(r['name'])}**: {_md(r['criterion'])} ({_md(r['evidence'])})"
              for r in report["positive_rules"]]
    if not report["positive_rules"]:
        lines.append("- no rule positive")
    if report["undetermined_rules"]:
        lines += ["", "Undetermined (features missing): "
                  + ", ".join(_md(r) for r in report["undetermined_rules"])]
    if asked:
        lines += ["", "## Retrieved evidence", ""]
        lines += [f"- *{_md(src)}*: {_md(text)}" for text, src in report["evidence"]] or ["- none"]
    lines += ["", "## Global features", "", "| feature | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["global_features"].items()]
    lines += ["", "## Lead features", ""]
    lead = pd.DataFrame(report["lead_features"]).T
    lines.append("| feature | " + " | ".join(LEADS) + " |")
    lines.append("|---" * (len(LEADS) + 1) + "|")
    for key, row in lead.iterrows():
        lines.append(f"| {key} | " + " | ".join(_fmt(row.get(l)) for l in LEADS) + " |")
    return "\n".join(lines) + "\n"


def _figures(signal, fs, fiducials, folder: Path, title: str) -> None:
    from ..plots import plot_ecg, plot_leads      # Figure objects: no pyplot, no GUI backend

    fig = plot_ecg(signal, fs, title=title)
    fig.savefig(folder / "ecg.png", dpi=100)
    consensus = fiducials[fiducials["lead"] == "all"]
    ticks = {label: consensus[col].to_numpy() for label, col in (
        ("P on", "p_on"), ("QRS on", "qrs_on"), ("QRS off", "qrs_off"), ("T off", "t_off"))
        if col in consensus}
    ticks = {k: v[v >= 0] for k, v in ticks.items()}
    fig = plot_leads(signal, fs, leads=LEADS, seconds=(0, min(4.0, len(signal) / fs)),
                     fiducials=ticks, title=f"{title}: U-Net delineation (beat consensus)", height=0.9)
    fig.savefig(folder / "delineation.png", dpi=90)


def diagnose_record(path, llm=None, index=None, config: str = "Proposed", out_dir=None,
                    fs: float | None = None, age=None, sex=None, profile: str | None = None,
                    delineator=None, figures: bool = True, leads=None) -> dict:
    """ALFRED on one record; returns the report (dict) and writes it under ``out_dir/<record>``
    when ``out_dir`` is given. ``llm``: an :class:`ecgkit.llm.LLM` (None: no LLM, rules only).
    ``leads``: lead names of a .npy/.csv (see :func:`ecgkit.data.records.read_record`)."""
    from ..knowledge.catalog import GLOBAL_FEATURES, LEAD_FEATURES
    from .pipeline import diagnose, measure_ecgs
    from .rules import rules_to_superclasses
    from ..llm import keep_prefix

    start = time.perf_counter()
    signal, rate, info = read_record(path, fs, leads)
    name = info["name"]
    age = info["age"] if age is None else age
    sex = info["sex"] if sex is None else sex
    measured = measure_ecgs(signal[None], rate, [age], [sex], [name], model=delineator,
                            progress=False)
    if measured.failed:
        raise RecordError(name, f"cannot be measured: {measured.failed[name]}")
    fiducials = measured.fiducials[0]
    fix_rate = (f"correct the sampling rate in its header {name}.hea"
                if info["rate_from"] == "header" else "pass --fs {fs:g}")
    implausible = check_record(measure(signal, measured.features.iloc[0]), rate, fix_rate)
    if not (fiducials["lead"].astype(str) == "all").any():
        why = ["its 12 leads" if len(info["leads"]) == len(LEADS) else
               f"its {len(info['leads'])} standard lead(s) {', '.join(info['leads'])}"]
        if info["other_signals"]:
            why.append(f"its other signal(s) {', '.join(info['other_signals'])} are not standard "
                       "12-lead names")
        if len(info["leads"]) < 2:
            why.append("a beat is kept where at least 2 leads agree")
        raise RecordError(name, f"no heartbeat could be delineated in {'; '.join(why + implausible)}")
    cfg = CONFIGURATIONS[config]
    budget = PromptBudget.for_profile(profile)
    use_llm = cfg.llm and llm is not None
    probabilities = {}
    with keep_prefix(llm):
        # P(yes) per class first; a local model keeps that prefill, so the answer only runs the tail
        if use_llm and getattr(llm, "option_scoring", None):
            from .probabilities import diagnose_probabilities

            try:
                row = diagnose_probabilities(measured, cfg, llm, index, budget).iloc[0]
                probabilities = {s: as_number(row.get(s)) for s in SUPERCLASSES}
            except Exception as exc:   # the text answer stands; say why the probabilities are missing
                info["warnings"].append(f"label probabilities not available ({type(exc).__name__}: {exc})")
        d = diagnose(measured, cfg if use_llm else "Rules only", llm if use_llm else None,
                     index if use_llm else None, budget)
    rules = measured.rules[0]
    feats = measured.features.iloc[0]
    prompt = d.prompts[0] if d.prompts else None
    diagnosis = {s: d.predictions.iloc[0][s] for s in SUPERCLASSES}
    explanation = d.answers.iloc[0]["explanation"]
    report = {
        "record": name, "source": str(path), "fs": rate, "age": age, "sex": sex,
        "leads": info["leads"], "configuration": d.config, "llm": d.llm, "llm_asked": bool(use_llm),
        "warnings": info["warnings"] + implausible,
        "diagnosis": diagnosis, "probabilities": probabilities,
        "rules_only": rules_to_superclasses(rules),
        "answer_flags": answer_flags(diagnosis, explanation) if use_llm else [],
        "explanation": explanation, "answer": d.answers.iloc[0]["text"],
        "problem": d.answers.iloc[0]["problem"],
        "positive_rules": [{"key": k, "name": r["name"], "criterion": r["criterion"],
                            "evidence": r["evidence"]}
                           for k, r in rules.iterrows() if r["positive"] is True],
        "undetermined_rules": [r["name"] for _, r in rules.iterrows() if r["positive"] is None],
        "evidence": ([(c, prompt.sources.get(c, "")) for c in prompt.feature_chunks
                      + prompt.condition_chunks] if prompt else []),
        "global_features": {f.key: as_number(feats.get(f.key)) for f in GLOBAL_FEATURES},
        "lead_features": {f.key: {l: as_number(feats.get(f"{f.key}_{l}")) for l in LEADS}
                          for f in LEAD_FEATURES},
        "nan_filled": info["nan_filled"], "figures": bool(figures and out_dir is not None),
    }
    report["seconds"] = time.perf_counter() - start
    if out_dir is not None:
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        if figures:
            _figures(signal, rate, fiducials, folder, name)
        report["seconds"] = time.perf_counter() - start
        (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (folder / "report.md").write_text(_markdown(report))
        report["folder"] = str(folder)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="ecgkit diagnose", description=__doc__.split("\n")[0],
        epilog="Exit status: 0 when every record was diagnosed, 1 when some could not be, 2 when "
               "none could; each failure is named on stderr with its reason, and a summary line "
               "ends the run. Warnings (sampling rate or units that look wrong, missing leads) "
               "are printed on stderr and written into the report; they are not failures.")
    parser.add_argument("records", nargs="+", help="WFDB record (.hea), .mat, .npy or .csv")
    parser.add_argument("--llm", default=None,
                        help="'local', 'local:<folder or hub id>', 'openai[:<model>]', or 'none' "
                             "for rules only (default: endpoint if $ECGKIT_LLM_BASE_URL, else local)")
    parser.add_argument("--config", default="Proposed", choices=list(CONFIGURATIONS))
    parser.add_argument("--out", default="alfred-reports", help="folder for the reports")
    parser.add_argument("--fs", type=float, default=None, help="sampling rate of .npy/.csv input")
    parser.add_argument("--leads", default=None,
                        help="comma-separated lead names of the .npy/.csv columns, e.g. II,V1 "
                             "(default: the .csv header row, else the 12 standard leads in order)")
    parser.add_argument("--age", type=float, default=None)
    parser.add_argument("--sex", choices=["male", "female"], default=None)
    parser.add_argument("--profile", choices=["quick", "full"], default=None,
                        help="prompt budget and delineator (default $ECGKIT_PROFILE or quick)")
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)

    from ..llm import get_llm
    from .delineation import load_delineator

    cfg = CONFIGURATIONS[args.config]
    llm = None
    if cfg.llm and (args.llm or "").lower() != "none":
        llm = get_llm(args.llm, cache=True)
    index = None
    if llm is not None and cfg.retrieval:
        from ..knowledge import KnowledgeIndex

        index = KnowledgeIndex.build()
    delineator = load_delineator(args.profile, progress=False)
    sex = None if args.sex is None else float(args.sex == "female")
    leads = [l.strip() for l in args.leads.split(",")] if args.leads else None
    failed = []
    for record in args.records:
        try:
            report = diagnose_record(record, llm, index, args.config, args.out, args.fs, args.age,
                                     sex, args.profile, delineator, not args.no_figures, leads)
        except Exception as exc:    # a record that fails is named and skipped; the others go on
            name, why = ((exc.record, exc.problem) if isinstance(exc, RecordError) else
                         (record_name(record), f"unexpected {type(exc).__name__}: {exc}"))
            failed.append((name, why))
            print(f"error: record {name}: {why}", file=sys.stderr)
            continue
        for warning in report["warnings"]:
            print(f"warning: record {report['record']}: {warning}", file=sys.stderr)
        found = [s for s in SUPERCLASSES if report["diagnosis"][s] is True] or ["none"]
        notes = [] if report["llm_asked"] else ["rules only"]
        notes += [report["problem"]] if report["problem"] else []
        notes += [f"answer flagged: {f}" for f in report["answer_flags"]]
        notes += [f"{len(report['warnings'])} warning(s)"] if report["warnings"] else []
        print(f"{report['record']}: {', '.join(found)}"
              + (f" ({'; '.join(notes)})" if notes else "")
              + f"; {report['seconds']:.1f} s -> {report['folder']}/report.md")
    if failed:
        print(f"{len(failed)} of {len(args.records)} records could not be diagnosed: "
              + ", ".join(f"{name} ({why})" for name, why in failed), file=sys.stderr)
    return 0 if not failed else 1 if len(failed) < len(args.records) else 2
