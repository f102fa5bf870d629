"""``ecgkit diagnose RECORD ...``: ALFRED on single ECGs, written as a report a clinician can read.

For each record: the 12-lead ECG on grid paper, the 12 leads with the U-Net delineation overlaid,
the features, the rule findings, the retrieved evidence with its sources, and the LLM's
diagnosis and explanation, in ``<out>/<record>/report.md`` (+ ``report.json``, ``ecg.png``,
``delineation.png``). Formats: a WFDB record (``.hea``, with or without the extension; CinC
``.mat`` + ``.hea`` included), a CPSC 2018 ``.mat`` (500 Hz), or a samples × 12 ``.npy`` / ``.csv``
in mV with ``--fs``. A record that cannot be read is reported with what is wrong; the others go on.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import RecordError
from ..data.wfdb_io import LEADS
from .answer import SUPERCLASSES
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


def read_record(path, fs: float | None = None) -> tuple[np.ndarray, float, dict]:
    """(samples × 12 float32 mV in standard lead order, sampling rate, info with name, age, sex).

    Raises :class:`~ecgkit.data.errors.RecordError` naming the record when it cannot be used.
    """
    from ..data.preprocess import ecg_fill_nan

    path = Path(path)
    name = path.stem if path.suffix else path.name
    suffix = path.suffix.lower()
    base = path.with_suffix("") if suffix in (".hea", ".dat", ".mat") else path
    if suffix in ("", ".hea", ".dat") or (suffix == ".mat" and base.with_suffix(".hea").is_file()):
        from ..data.cinc2021 import read_cinc_record
        from ..data.wfdb_io import read_header, read_wfdb

        if not base.with_suffix(".hea").is_file():
            raise RecordError(name, f"no WFDB header {base.with_suffix('.hea')}")
        header = read_header(base, name)
        if all(str(f).lower().endswith(".mat") for f in header.file_name or ["?"]):
            signal, rate, _ = read_cinc_record(base, name, header=header)   # CinC challenge
        else:
            signal, rate, _ = read_wfdb(base, None, 12, name, allow_nan=True)
        age, sex = _age_sex(header.comments)
    elif suffix == ".mat":
        from ..data.cpsc2018 import read_cpsc_mat

        signal, info = read_cpsc_mat(path, name)
        rate = float(fs or CPSC_FS)
        age = None if info.get("age") is None or math.isnan(info["age"]) else float(info["age"])
        sex = {"Male": 0.0, "Female": 1.0}.get(info.get("sex"))
    elif suffix in (".npy", ".csv"):
        if fs is None:
            raise RecordError(name, f"a {suffix} file carries no sampling rate: pass --fs")
        if not path.is_file():
            raise RecordError(name, f"file {path} is missing")
        try:
            signal = (np.load(path, allow_pickle=False) if suffix == ".npy"
                      else np.loadtxt(path, delimiter=",", ndmin=2))
        except Exception as exc:
            raise RecordError(name, f"cannot be read ({type(exc).__name__}: {exc})") from exc
        signal = np.asarray(signal, dtype=np.float32)
        if signal.ndim != 2 or 12 not in signal.shape:
            raise RecordError(name, f"expected samples × 12 leads, got shape {signal.shape}")
        if signal.shape[1] != 12:
            signal = signal.T
        rate, age, sex = float(fs), None, None
    else:
        raise RecordError(name, f"unsupported format {suffix!r}: use WFDB (.hea), .mat, .npy or .csv")
    if fs is not None and abs(rate - float(fs)) > 1e-6:
        raise RecordError(name, f"sampling rate is {rate:g} Hz, --fs says {fs:g} Hz")
    if signal.shape[0] < 2 * rate:
        raise RecordError(name, f"only {signal.shape[0] / rate:.1f} s of signal; ALFRED needs ≥ 2 s")
    signal, filled = ecg_fill_nan(signal)
    if np.isnan(signal).any():
        raise RecordError(name, "signal has gaps of NaN samples too long to fill")
    return signal.astype(np.float32), rate, {"name": name, "age": age, "sex": sex,
                                             "nan_filled": int(filled)}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not measurable"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _markdown(report: dict) -> str:
    lines = [f"# ALFRED report: {report['record']}", "",
             f"Configuration **{report['configuration']}**, LLM `{report['llm']}`; "
             f"{report['seconds']:.1f} s. Age "
             f"{'unknown' if report['age'] is None else format(report['age'], 'g')}, sex "
             f"{ {0.0: 'male', 1.0: 'female'}.get(report['sex'], 'unknown') }.", "",
             "![12-lead ECG](ecg.png)", "", "![Delineation](delineation.png)", "",
             "## Diagnosis", "", "| superclass | LLM | rules only |", "|---|---|---|"]
    for s in SUPERCLASSES:
        lines.append(f"| {s} | {_fmt(report['diagnosis'][s])} | {report['rules_only'][s]} |")
    lines += ["", f"**Explanation.** {report['explanation'] or '(none)'}", ""]
    if report["problem"]:
        lines += [f"*The answer could not be read completely: {report['problem']}.*", ""]
    lines += ["## Rule findings", ""]
    lines += [f"- **{r['name']}**: {r['criterion']} ({r['evidence']})" for r in report["positive_rules"]]
    if not report["positive_rules"]:
        lines.append("- no rule positive")
    if report["undetermined_rules"]:
        lines += ["", "Undetermined (features missing): " + ", ".join(report["undetermined_rules"])]
    lines += ["", "## Retrieved evidence", ""]
    lines += [f"- *{src}*: {text}" for text, src in report["evidence"]] or ["- none"]
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
                    delineator=None, figures: bool = True) -> dict:
    """ALFRED on one record; returns the report (dict) and writes it under ``out_dir/<record>``
    when ``out_dir`` is given. ``llm``: an :class:`ecgkit.llm.LLM` (None: no LLM, rules only)."""
    from ..knowledge.catalog import GLOBAL_FEATURES, LEAD_FEATURES
    from .pipeline import diagnose, measure_ecgs
    from .rules import rules_to_superclasses

    start = time.perf_counter()
    signal, rate, info = read_record(path, fs)
    age = info["age"] if age is None else age
    sex = info["sex"] if sex is None else sex
    measured = measure_ecgs(signal[None], rate, [age], [sex], [info["name"]], model=delineator,
                            progress=False)
    if measured.failed:
        raise RecordError(info["name"], f"cannot be measured: {measured.failed[info['name']]}")
    cfg = CONFIGURATIONS[config]
    use_llm = cfg.llm and llm is not None
    d = diagnose(measured, cfg if use_llm else "Rules only", llm if use_llm else None,
                 index if use_llm else None, profile=profile)
    rules = measured.rules[0]
    feats = measured.features.iloc[0]
    prompt = d.prompts[0] if d.prompts else None
    report = {
        "record": info["name"], "source": str(path), "fs": rate, "age": age, "sex": sex,
        "configuration": d.config, "llm": d.llm,
        "diagnosis": {s: d.predictions.iloc[0][s] for s in SUPERCLASSES},
        "rules_only": rules_to_superclasses(rules),
        "explanation": d.answers.iloc[0]["explanation"], "answer": d.answers.iloc[0]["text"],
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
        "nan_filled": info["nan_filled"],
    }
    report["seconds"] = time.perf_counter() - start
    if out_dir is not None:
        folder = Path(out_dir) / info["name"]
        folder.mkdir(parents=True, exist_ok=True)
        if figures:
            _figures(signal, rate, measured.fiducials[0], folder, info["name"])
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
    parser = argparse.ArgumentParser(prog="ecgkit diagnose", description=__doc__.split("\n")[0])
    parser.add_argument("records", nargs="+", help="WFDB record (.hea), .mat, .npy or .csv")
    parser.add_argument("--llm", default=None,
                        help="'local', 'local:<folder or hub id>', 'openai[:<model>]', or 'none' "
                             "for rules only (default: endpoint if $ECGKIT_LLM_BASE_URL, else local)")
    parser.add_argument("--config", default="Proposed", choices=list(CONFIGURATIONS))
    parser.add_argument("--out", default="alfred-reports", help="folder for the reports")
    parser.add_argument("--fs", type=float, default=None, help="sampling rate of .npy/.csv input")
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
    failed = 0
    for record in args.records:
        try:
            report = diagnose_record(record, llm, index, args.config, args.out, args.fs, args.age,
                                     sex, args.profile, delineator, not args.no_figures)
        except RecordError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            continue
        found = [s for s in SUPERCLASSES if report["diagnosis"][s] is True] or ["none"]
        note = f" ({report['problem']})" if report["problem"] else ""
        print(f"{report['record']}: {', '.join(found)}{note}; {report['seconds']:.1f} s -> "
              f"{report['folder']}/report.md")
    if failed:
        print(f"{failed} of {len(args.records)} record(s) could not be diagnosed", file=sys.stderr)
    return 0 if failed < len(args.records) else 2
