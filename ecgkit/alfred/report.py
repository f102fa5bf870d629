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
from ..data.wfdb_io import LEADS, standard_columns, standard_lead
from .answer import SUPERCLASSES
from .plausibility import answer_flags, check_record, measure
from .prompt import CONFIGURATIONS

__all__ = ["read_record", "diagnose_record", "main"]

CPSC_FS = 500.0


def _age_sex(comments) -> tuple[float | None, float | None]:
    age = sex = None
    for line in comments or []:
        key, _, value = str(line).partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "age":
            try:
                age = float(value)
            except ValueError:
                pass
        elif key == "sex":
            sex = {"male": 0.0, "m": 0.0, "female": 1.0, "f": 1.0}.get(value.lower())
    return age, sex


def _record_name(path) -> str:
    path = Path(path)
    return path.stem if path.suffix else path.name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(path: Path, suffix: str, name: str) -> tuple[np.ndarray, list | None]:
    """A .npy or .csv file as a float32 array, with the lead names of a .csv header row (else
    None)."""
    if not path.is_file():
        raise RecordError(name, f"file {path} is missing")
    try:
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32), None
        with path.open() as f:
            first = [t.strip() for t in f.readline().split(",")]
        names = None if all(_is_number(t) for t in first) else first
        table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=int(names is not None))
        return table.astype(np.float32), names
    except Exception as exc:
        raise RecordError(name, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def _as_standard_leads(table: np.ndarray, names, name: str, suffix: str) -> tuple[np.ndarray, list]:
    """(samples × 12 with all-NaN columns for missing leads, the table's lead names)."""
    if table.ndim == 1:
        table = table[:, None]
    n = len(names) if names else len(LEADS)
    if table.ndim != 2 or n not in table.shape:
        if names is None and table.ndim == 2 and min(table.shape) < len(LEADS):
            raise RecordError(name, f"has {min(table.shape)} lead(s) (shape {table.shape}) and a "
                                    f"{suffix} carries no lead names: name them with --leads, "
                                    "e.g. --leads II,V1")
        raise RecordError(name, f"expected samples × {n} leads, got shape {table.shape}")
    if table.shape[1] != n:
        table = table.T
    names = list(names or LEADS)
    signal = np.full((table.shape[0], len(LEADS)), np.nan, dtype=np.float32)
    for pos, col in standard_columns(names).items():
        signal[:, pos] = table[:, col]
    return signal, names


def read_record(path, fs: float | None = None, leads=None) -> tuple[np.ndarray, float, dict]:
    """(samples × 12 float32 mV in standard lead order, sampling rate, info).

    A lead the record lacks (or that is all NaN) is an all-NaN column. ``leads``: names of the
    columns of a .npy/.csv (default: its header row, else the 12 standard leads in order).
    ``info``: name, age, sex, nan_filled, ``leads`` (those present), ``other_signals`` (names
    that are not standard leads, left out), ``rate_from`` (header, --fs or CPSC default) and
    ``warnings`` (missing leads, left-out signals).
    Raises :class:`~ecgkit.data.errors.RecordError` naming the record when it cannot be used.
    """
    from ..data.preprocess import ecg_fill_nan

    path = Path(path)
    name = _record_name(path)
    suffix = path.suffix.lower()
    base = path.with_suffix("") if suffix in (".hea", ".dat", ".mat") else path
    rate_from = "--fs"
    if suffix in ("", ".hea", ".dat") or (suffix == ".mat" and base.with_suffix(".hea").is_file()):
        from ..data.cinc2021 import read_cinc_record
        from ..data.wfdb_io import read_header, read_wfdb

        if not base.with_suffix(".hea").is_file():
            raise RecordError(name, f"no WFDB header {base.with_suffix('.hea')}")
        header = read_header(base, name)
        if all(str(f).lower().endswith(".mat") for f in header.file_name or ["?"]):
            signal, rate, _ = read_cinc_record(base, name, header=header)   # CinC challenge
        else:
            signal, rate, _ = read_wfdb(base, None, None, name, allow_nan=True, partial=True)
        names = list(header.sig_name or [])
        age, sex = _age_sex(header.comments)
        rate_from = "header"
    elif suffix == ".mat":
        from ..data.cpsc2018 import read_cpsc_mat

        signal, info = read_cpsc_mat(path, name)
        names = list(LEADS)
        rate = float(fs or CPSC_FS)
        rate_from = "--fs" if fs else "CPSC default"
        age = None if info.get("age") is None or math.isnan(info["age"]) else float(info["age"])
        sex = {"Male": 0.0, "Female": 1.0}.get(info.get("sex"))
    elif suffix in (".npy", ".csv"):
        if fs is None:
            raise RecordError(name, f"a {suffix} file carries no sampling rate: pass --fs")
        table, header_names = _read_table(path, suffix, name)
        signal, names = _as_standard_leads(table, leads or header_names, name, suffix)
        rate, age, sex = float(fs), None, None
    else:
        raise RecordError(name, f"unsupported format {suffix!r}: use WFDB (.hea), .mat, .npy or .csv")
    if fs is not None and abs(rate - float(fs)) > 1e-6:
        raise RecordError(name, f"sampling rate is {rate:g} Hz, --fs says {fs:g} Hz")
    if signal.shape[0] < 2 * rate:
        raise RecordError(name, f"only {signal.shape[0] / rate:.1f} s of signal; ALFRED needs ≥ 2 s")
    signal = np.array(signal, dtype=np.float32)
    in_file = sorted(standard_columns(names))
    blank = [LEADS[i] for i in in_file if np.isnan(signal[:, i]).all()]
    present = [i for i in in_file if LEADS[i] not in blank]
    other = [str(n) for n in names if standard_lead(n) is None]
    if not present:
        has = (f"its leads {', '.join(blank)} are all NaN" if blank else
               f"none of its signals ({', '.join(other) or 'none'}) is one of the 12 standard "
               f"leads ({', '.join(LEADS)})")
        raise RecordError(name, f"no usable lead: {has}")
    try:
        filled_part, filled = ecg_fill_nan(signal[:, present], leads=[LEADS[i] for i in present])
    except ValueError as exc:
        raise RecordError(name, str(exc)) from exc
    signal[:, present] = filled_part
    warnings = []
    if blank:
        warnings.append(f"lead(s) {', '.join(blank)} all NaN: treated as missing")
    if len(present) < len(LEADS):
        missing = [l for i, l in enumerate(LEADS) if i not in present]
        warnings.append(f"only {len(present)} of the 12 leads ({', '.join(LEADS[i] for i in present)})"
                        f"; missing {', '.join(missing)}: their features, and the rules that need "
                        "them, are undetermined")
    if other:
        warnings.append(f"signal(s) {', '.join(other)} not among the 12 standard lead names: ignored")
    return signal, rate, {"name": name, "age": age, "sex": sex, "nan_filled": int(filled),
                          "leads": [LEADS[i] for i in present], "other_signals": other,
                          "rate_from": rate_from,
                          "warnings": warnings}


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
    ``leads``: lead names of a .npy/.csv (see :func:`read_record`)."""
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
    use_llm = cfg.llm and llm is not None
    probabilities = {}
    with keep_prefix(llm):
        # P(yes) per class first; a local model keeps that prefill, so the answer only runs the tail
        if use_llm and getattr(llm, "option_scoring", None):
            from .probabilities import diagnose_probabilities

            try:
                row = diagnose_probabilities(measured, cfg, llm, index, profile=profile).iloc[0]
                probabilities = {s: _num(row.get(s)) for s in SUPERCLASSES}
            except Exception as exc:   # the text answer stands; say why the probabilities are missing
                info["warnings"].append(f"label probabilities not available ({type(exc).__name__}: {exc})")
        d = diagnose(measured, cfg if use_llm else "Rules only", llm if use_llm else None,
                     index if use_llm else None, profile=profile)
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
        "global_features": {f.key: _num(feats.get(f.key)) for f in GLOBAL_FEATURES},
        "lead_features": {f.key: {l: _num(feats.get(f"{f.key}_{l}")) for l in LEADS}
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


def _num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


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
                         (_record_name(record), f"unexpected {type(exc).__name__}: {exc}"))
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
